/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Maps of the hook engine and the per-CPU scratch area its stages share. Part of hook.bpf.c
 * (one translation unit); see that file for how the stages fit together.
 */
#ifndef VIGIL_HOOK_MAPS_H
#define VIGIL_HOOK_MAPS_H

/* Set by the sensor for instances loaded per attach point (see hook.bpf.c). */
volatile const __u32 VIGIL_ATTACH_ID = 0;
/* BPF-LSM instances: how many arguments the hook has (see vigil_lsm). */
volatile const __u32 VIGIL_LSM_NARGS = 0;

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct vigil_config);
} vigil_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, VIGIL_MAX_POLICIES);
	__type(key, __u32);
	__type(value, struct vigil_policy_cfg);
} vigil_policies SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, VIGIL_MAX_POLICIES * VIGIL_STAT_NUM);
	__type(key, __u32);
	__type(value, __u64);
} vigil_policy_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, VIGIL_MAX_HOOKS);
	__type(key, __u32);
	__type(value, struct vigil_hook_cfg);
} vigil_hooks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, VIGIL_MAX_ATTACH);
	__type(key, __u32);
	__type(value, struct vigil_attach_hooks);
} vigil_attach SEC(".maps");

/*
 * Syscall number -> attach id (0: no hook), for the programs on the per-syscall tracepoints and
 * on the raw sys_enter / sys_exit route (a kernel uses one or the other for syscall hooks).
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, VIGIL_SYSCALL_MAX);
	__type(key, __u32);
	__type(value, __u32);
} vigil_sys_attach SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct vigil_int_key);
	__type(value, __u8);
} vigil_ints SEC(".maps");

/*
 * Cgroup ids of this node's containers, of any runtime, whether or not the pod inventory knows
 * their pod: a task whose cgroup is not here is a host process (hostSelector). A dedicated map
 * rather than a vigil_ints set so that policies filling vigil_ints cannot crowd containers out
 * (a container missing here would count as the host). Kept by the sensor (see pods.rs).
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, VIGIL_MAX_CONTAINERS);
	__type(key, __u64);
	__type(value, __u8);
} vigil_containers SEC(".maps");

/* Exact, prefix and (with reversed strings) postfix matching; no hash-only comparison. */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 16384);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct vigil_str_key);
	__type(value, __u32); /* the stored string's length */
} vigil_strs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 4096);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct vigil_addr_key);
	__type(value, __u8);
} vigil_addrs SEC(".maps");

/* Entry state of return probes, by (tid << 32 | hook slot). LRU: calls that never return. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 8192);
	__type(key, __u64);
	__type(value, struct vigil_pending);
} vigil_pending SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 8192);
	__type(key, struct vigil_rate_key);
	__type(value, __u64);
} vigil_ratelimit SEC(".maps");

/*
 * Arguments are laid out back to back in `data`, each starting at most at DATA_OFF_MAX and
 * taking at most VIGIL_ARG_SLOT bytes, so every write the verifier sees stays inside `data`.
 */
#define DATA_SIZE (VIGIL_HOOK_DATA_MAX + VIGIL_ARG_SLOT)
#define DATA_OFF_MAX ((VIGIL_HOOK_ARGS - 1) * VIGIL_ARG_SLOT)

#define STAGE_ENTRY 0
#define STAGE_EXIT 1

/* s->args_read: bit i when argument i is in `data`; ARGS_PEEK_CUT when a peek cut one short. */
#define ARGS_PEEK_CUT (1u << 31)
#define NO_SELECTORS (1u << 31) /* selector mask of a hook without selectors */

struct hook_scratch {
	struct vigil_hook_rec rec;
	char data[DATA_SIZE]; /* must follow rec: the record is output as one block */
	/* The call, as the program entry found it. */
	__u64 regs[6];
	__u64 tp_ctx;
	__s64 ret;
	__u32 stage;
	__s32 override; /* what an LSM program returns (0: allow) */
	/* The hook being evaluated. */
	__u64 raw[VIGIL_HOOK_ARGS];
	__u32 arg_off[VIGIL_HOOK_ARGS];
	__u32 data_len;
	__u32 args_read;
	__u32 have_proc;
	__u32 bin_len; /* length of the binary path in `bin` (matchBinaries) */
	/*
	 * Selectors still in the running, and what the actions decided. Kept here rather than in
	 * registers on purpose: the verifier then sees an unknown value instead of tracking every
	 * combination of bits as a separate state.
	 */
	__u32 mask;
	__u32 done;    /* bit (1 << VIGIL_ACT_*) per action that ran */
	__u32 hflags;  /* VIGIL_HF_* for the record */
	__u32 no_post; /* NoPost */
	__u32 rate_scope;
	__u32 sel; /* the selector whose actions ran (0xffff: none) */
	__u64 rate_ns;
	struct vigil_proc proc; /* the current process, as the table has it (VIGIL_HOOK_NEED_PROC) */
	__u32 live_ns[VIGIL_NS_COUNT];
	__u64 live_caps[3]; /* effective, inheritable, permitted */
	__u32 live_userns;
	__u32 pad;
	char bin[VIGIL_BIN_KEEP]; /* the binary a matchBinaries filter is looking at */
	/* Room for values the stages would otherwise keep on the (512-byte) BPF stack. */
	union {
		struct vigil_sock_arg sock;
		struct vigil_sockaddr_arg sa;
		struct vigil_creds cred;
		struct vigil_pending pending;
		__u64 words[8];
	} tmp;
	struct vigil_str_key skey;
	struct vigil_addr_key akey;
};

/*
 * One scratch area per CPU. Larger than the 32 KiB a per-CPU map value may have, so this is a
 * plain array indexed by CPU number; the sensor sizes it to the possible CPUs at load.
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 512);
	__type(key, __u32);
	__type(value, struct hook_scratch);
} vigil_hook_scratch SEC(".maps");

static __always_inline struct hook_scratch *scratch(void)
{
	__u32 cpu = bpf_get_smp_processor_id();

	return bpf_map_lookup_elem(&vigil_hook_scratch, &cpu);
}

static __always_inline struct vigil_hook_cfg *hook_cfg(__u32 slot)
{
	return bpf_map_lookup_elem(&vigil_hooks, &slot);
}

/*
 * Bounded element pointers. Each checks the index right where the pointer is formed: an index
 * checked earlier and then spilled across a call loses its bounds on older verifiers (6.1),
 * which then refuse the pointer arithmetic. barrier_var() keeps the compiler from moving the
 * check away from the use.
 */
static __always_inline struct vigil_selector *sel_at(struct vigil_hook_cfg *h, __u64 i)
{
	barrier_var(i);
	if (i >= VIGIL_HOOK_SELECTORS)
		return 0;
	return &h->sel[i];
}

static __always_inline struct vigil_arg_cfg *arg_at(struct vigil_hook_cfg *h, __u64 i)
{
	barrier_var(i);
	if (i >= VIGIL_HOOK_ARGS)
		return 0;
	return &h->args[i];
}

static __always_inline void stat_add(__u32 policy, __u32 which, __u64 n)
{
	__u32 idx = policy * VIGIL_STAT_NUM + which;
	__u64 *v = bpf_map_lookup_elem(&vigil_policy_stats, &idx);

	if (v)
		*v += n;
}

static __always_inline void stat(__u32 policy, __u32 which)
{
	stat_add(policy, which, 1);
}

static __always_inline bool in_int_set(__u32 set, __u64 value)
{
	struct vigil_int_key k = { .set = set, .value = value };

	return bpf_map_lookup_elem(&vigil_ints, &k) != 0;
}

/*
 * Look up s->skey (data already filled with `n` bytes) in string set `set`. Returns the stored
 * string's length + 1 when a prefix of the key is in the set, 0 otherwise.
 */
static __always_inline __u32 str_lookup(struct hook_scratch *s, __u32 set, __u32 n)
{
	__u32 *len;

	if (n > VIGIL_STR_MAX)
		n = VIGIL_STR_MAX;
	s->skey.prefixlen = 32 + 8 * n;
	s->skey.set = set;
	len = bpf_map_lookup_elem(&vigil_strs, &s->skey);
	return len ? *len + 1 : 0;
}

#define REV_FROM_BIN 0
#define REV_FROM_DATA 1

/*
 * Fill s->skey.data with the `n` bytes ending at offset `last` of s->bin (REV_FROM_BIN) or
 * s->data (REV_FROM_DATA), last byte first: postfix sets hold reversed strings, so a postfix
 * match is a prefix lookup of the reversed tail. Eight bytes at a time, byte-swapped: bytes
 * read from before the string's start only land in key positions past `n`, which the lookup's
 * prefix length leaves out.
 */
__noinline int vigil_reverse_key(__u32 from, __u32 last, __u32 n)
{
	struct hook_scratch *s = scratch();
	__u64 base, w;
	__u32 words;

	if (!s)
		return 0;
	if (from == REV_FROM_BIN) {
		if (last >= VIGIL_BIN_KEEP)
			return 0;
		base = (__u64)s->bin;
	} else {
		if (last >= DATA_SIZE)
			return 0;
		base = (__u64)s->data;
	}
	base += last + 1;
	words = (n + 7) / 8;
	for (__u32 j = 0; j < VIGIL_STR_MAX / 8; j++) {
		if (j >= words)
			break;
		w = 0;
		bpf_probe_read_kernel(&w, 8, (void *)(base - 8 * (j + 1)));
		*(__u64 *)&s->skey.data[8 * j] = __builtin_bswap64(w);
	}
	return 0;
}

#endif /* VIGIL_HOOK_MAPS_H */

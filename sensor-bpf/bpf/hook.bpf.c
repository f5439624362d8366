// SPDX-License-Identifier: GPL-2.0-only
/*
 * Generic hook programs: every TracingPolicy hook runs through the code in this file.
 *
 * A policy is not compiled into a program. The sensor lowers it to entries in the maps below
 * (hook configuration, selectors, value sets) and attaches one of the generic programs at each
 * attach point. When the program runs it finds the hooks of its attach point, evaluates their
 * selectors against the current process and the call's arguments, runs the actions of the first
 * selector that matches, and writes one record to the shared ring buffer. Nothing reaches user
 * space for a call that matches no selector.
 *
 * How a program knows its attach point:
 *   - sys_enter / sys_exit (one pair for all syscall hooks): vigil_sys_attach[syscall number];
 *   - every other program is loaded once per attach point with VIGIL_ATTACH_ID set in .rodata.
 * Several hooks (of one or many policies) on one attach point share one program run.
 *
 * Process-level filters (pids, binaries, namespaces, capabilities) run before any argument is
 * copied. Loops over hooks, selectors, filters and arguments run under bpf_loop, so the verifier
 * checks each body once.
 */
#define __VIGIL_BPF__
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include "vigil_abi.h"
#include "vigil_common.h"

char LICENSE[] SEC("license") = "GPL";

/* Set by the sensor for each loaded instance (see the header comment). */
volatile const __u32 VIGIL_ATTACH_ID = 0;

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

/* Syscall number -> attach id (0: no hook) for the shared sys_enter / sys_exit programs. */
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

#define DATA_SIZE 32768 /* power of two >= VIGIL_HOOK_DATA_MAX + VIGIL_ARG_SLOT */
#define DATA_MASK (DATA_SIZE - 1)

struct hook_scratch {
	struct vigil_hook_rec rec;
	char data[DATA_SIZE]; /* must follow rec: the record is output as one block */
	__u64 regs[6];
	__u64 raw[VIGIL_HOOK_ARGS];
	__u32 arg_off[VIGIL_HOOK_ARGS];
	__u64 tp_ctx;
	__u32 data_len;
	__u32 have_proc;
	struct vigil_proc proc; /* the current process, as the table has it */
	__u32 live_ns[VIGIL_NS_COUNT];
	__u64 live_caps[3]; /* effective, inheritable, permitted */
	__u32 live_userns;
	__u32 pad;
	struct vigil_str_key skey;
	struct vigil_addr_key akey;
	char tmp[VIGIL_BIN_KEEP]; /* a binary path being reversed */
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

#define STAGE_ENTRY 0
#define STAGE_EXIT 1

/* State of one program run, shared with the bpf_loop callbacks. */
struct run_ctx {
	__u32 attach;
	__u32 stage;
	__s64 ret;
	__s32 override; /* value an LSM / fmod_ret program returns */
	__u32 slot;     /* hook being evaluated */
	__u32 sel;      /* selector being evaluated */
	__u32 ok;       /* result of the current filter loop */
	__u32 mask;     /* selectors still in the running */
};

#define AF_INET 2
#define AF_INET6 10
#define S_IFMT 00170000
#define S_IFSOCK 0140000

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
 * checked earlier and then spilled across a helper call loses its bounds on older verifiers
 * (6.1), which then refuse the pointer arithmetic. barrier_var() keeps the compiler from moving
 * the check away from the use.
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

static __always_inline void stat(__u32 policy, __u32 which)
{
	__u32 idx = policy * VIGIL_STAT_NUM + which;
	__u64 *v = bpf_map_lookup_elem(&vigil_policy_stats, &idx);

	if (v)
		*v += 1;
}

static __always_inline bool in_int_set(__u32 set, __u64 value)
{
	struct vigil_int_key k = { .set = set, .value = value };

	return bpf_map_lookup_elem(&vigil_ints, &k) != 0;
}

static __always_inline __s64 sign_extend(__u64 v, __u8 size)
{
	switch (size) {
	case 1:
		return (__s8)v;
	case 2:
		return (__s16)v;
	case 4:
		return (__s32)v;
	default:
		return (__s64)v;
	}
}

static __always_inline __u64 zero_extend(__u64 v, __u8 size)
{
	switch (size) {
	case 1:
		return (__u8)v;
	case 2:
		return (__u16)v;
	case 4:
		return (__u32)v;
	default:
		return v;
	}
}

/* ---------------------------------------------------------------- string and address sets */

/*
 * Look up s->skey (data already filled with `n` bytes) in set `set`. Returns the stored
 * string's length + 1 when a prefix of the key is in the set, 0 otherwise.
 */
static __always_inline __u32 str_lookup(struct hook_scratch *s, __u32 set, __u32 n)
{
	__u32 *len;

	s->skey.prefixlen = 32 + 8 * (n & 511);
	s->skey.set = set;
	len = bpf_map_lookup_elem(&vigil_strs, &s->skey);
	return len ? *len + 1 : 0;
}

struct rev_ctx {
	__u32 src;      /* offset of the last byte */
	__u32 from_tmp; /* in s->tmp rather than s->data */
};

static long rev_cb(__u64 j, void *c)
{
	struct rev_ctx *r = c;
	struct hook_scratch *s = scratch();

	if (!s)
		return 1;
	barrier_var(j);
	if (j >= VIGIL_STR_MAX)
		return 1;
	s->skey.data[j] = r->from_tmp ? s->tmp[(r->src - j) & (VIGIL_BIN_KEEP - 1)]
				      : s->data[(r->src - j) & DATA_MASK];
	return 0;
}

/*
 * Match the string s->data[off..off+len) (of full length `full`) with a string operator.
 * Values longer than VIGIL_STR_MAX are compared on their first (prefix, equal) or last
 * (postfix) VIGIL_STR_MAX bytes; equality still needs the full length to agree.
 */
static __always_inline bool match_string(struct hook_scratch *s, __u8 op, __u32 set, __u32 off,
					 __u32 len, __u32 full)
{
	__u32 n = len > VIGIL_STR_MAX ? VIGIL_STR_MAX : len;
	__u32 found;
	bool hit;

	if (op == VIGIL_OP_POSTFIX || op == VIGIL_OP_NOT_POSTFIX) {
		struct rev_ctx r = { .src = off + len - 1 };

		bpf_loop(n, rev_cb, &r, 0);
		found = str_lookup(s, set, n);
		hit = found != 0;
		return op == VIGIL_OP_POSTFIX ? hit : !hit;
	}
	n &= 511;
	if (n > VIGIL_STR_MAX)
		n = VIGIL_STR_MAX;
	if (n)
		bpf_probe_read_kernel(s->skey.data, n, &s->data[off & DATA_MASK]);
	found = str_lookup(s, set, n);
	switch (op) {
	case VIGIL_OP_EQUAL:
		return found && found - 1 == full;
	case VIGIL_OP_NOT_EQUAL:
		return !(found && found - 1 == full);
	case VIGIL_OP_PREFIX:
		return found != 0;
	case VIGIL_OP_NOT_PREFIX:
		return found == 0;
	}
	return false;
}

static __always_inline bool addr_in_set(struct hook_scratch *s, __u32 set, __u16 family,
					const __u8 *addr)
{
	if (family == AF_INET) {
		s->akey.prefixlen = 32 + 32;
		s->akey.set = set;
		__builtin_memcpy(s->akey.addr, addr, 4);
	} else if (family == AF_INET6) {
		s->akey.prefixlen = 32 + 128;
		s->akey.set = set + 1;
		__builtin_memcpy(s->akey.addr, addr, 16);
	} else {
		return false;
	}
	return bpf_map_lookup_elem(&vigil_addrs, &s->akey) != 0;
}

static __always_inline bool in_ranges(struct vigil_filter *f, __u64 v)
{
	__u32 n = f->nranges;

#pragma unroll
	for (int i = 0; i < VIGIL_FILTER_RANGES; i++) {
		if (i >= n)
			break;
		if (f->is_signed) {
			if ((__s64)v >= (__s64)f->ranges[i][0] && (__s64)v <= (__s64)f->ranges[i][1])
				return true;
		} else if (v >= f->ranges[i][0] && v <= f->ranges[i][1]) {
			return true;
		}
	}
	return false;
}

static __always_inline bool match_int(struct vigil_filter *f, __u64 v)
{
	switch (f->op) {
	case VIGIL_OP_EQUAL:
	case VIGIL_OP_IN_MAP:
		return in_int_set(f->set, v);
	case VIGIL_OP_NOT_EQUAL:
	case VIGIL_OP_NOT_IN_MAP:
		return !in_int_set(f->set, v);
	case VIGIL_OP_GT:
		return f->is_signed ? (__s64)v > (__s64)f->value : v > f->value;
	case VIGIL_OP_LT:
		return f->is_signed ? (__s64)v < (__s64)f->value : v < f->value;
	case VIGIL_OP_MASK:
		return (v & f->value) != 0;
	case VIGIL_OP_IN_RANGE:
		return in_ranges(f, v);
	case VIGIL_OP_NOT_IN_RANGE:
		return !in_ranges(f, v);
	}
	return false;
}

static __always_inline bool match_sock(struct hook_scratch *s, struct vigil_filter *f,
				       struct vigil_sock_arg *k)
{
	switch (f->op) {
	case VIGIL_OP_SADDR:
		return addr_in_set(s, f->set, k->family, k->saddr);
	case VIGIL_OP_NOT_SADDR:
		return !addr_in_set(s, f->set, k->family, k->saddr);
	case VIGIL_OP_DADDR:
		return addr_in_set(s, f->set, k->family, k->daddr);
	case VIGIL_OP_NOT_DADDR:
		return !addr_in_set(s, f->set, k->family, k->daddr);
	case VIGIL_OP_SPORT:
		return in_ranges(f, k->sport);
	case VIGIL_OP_NOT_SPORT:
		return !in_ranges(f, k->sport);
	case VIGIL_OP_SPORT_PRIV:
		return k->sport < 1024;
	case VIGIL_OP_NOT_SPORT_PRIV:
		return k->sport >= 1024;
	case VIGIL_OP_DPORT:
		return in_ranges(f, k->dport);
	case VIGIL_OP_NOT_DPORT:
		return !in_ranges(f, k->dport);
	case VIGIL_OP_DPORT_PRIV:
		return k->dport < 1024;
	case VIGIL_OP_NOT_DPORT_PRIV:
		return k->dport >= 1024;
	case VIGIL_OP_PROTOCOL:
		return in_int_set(f->set, k->protocol);
	case VIGIL_OP_FAMILY:
		return in_int_set(f->set, k->family);
	case VIGIL_OP_STATE:
		return in_int_set(f->set, k->state);
	}
	return false;
}

/* A sockaddr has one address and port: the S* and D* operators both look at them. */
static __always_inline bool match_sockaddr(struct hook_scratch *s, struct vigil_filter *f,
					   struct vigil_sockaddr_arg *a)
{
	switch (f->op) {
	case VIGIL_OP_SADDR:
	case VIGIL_OP_DADDR:
		return addr_in_set(s, f->set, a->family, a->addr);
	case VIGIL_OP_NOT_SADDR:
	case VIGIL_OP_NOT_DADDR:
		return !addr_in_set(s, f->set, a->family, a->addr);
	case VIGIL_OP_SPORT:
	case VIGIL_OP_DPORT:
		return in_ranges(f, a->port);
	case VIGIL_OP_NOT_SPORT:
	case VIGIL_OP_NOT_DPORT:
		return !in_ranges(f, a->port);
	case VIGIL_OP_SPORT_PRIV:
	case VIGIL_OP_DPORT_PRIV:
		return a->port < 1024;
	case VIGIL_OP_NOT_SPORT_PRIV:
	case VIGIL_OP_NOT_DPORT_PRIV:
		return a->port >= 1024;
	case VIGIL_OP_FAMILY:
		return in_int_set(f->set, a->family);
	}
	return false;
}

/* ------------------------------------------------------------------------ process filters */

static __always_inline __u32 ns_pid(void)
{
	struct task_struct *task = (void *)bpf_get_current_task();
	struct pid *tpid = BPF_CORE_READ(task, group_leader, thread_pid);
	unsigned int level = BPF_CORE_READ(tpid, level);

	return BPF_CORE_READ(tpid, numbers[level & 31].nr);
}

struct walk_ctx {
	__u32 tgid;   /* the process whose parent comes next */
	__u32 set;    /* pids: int set; binaries: string set */
	__u8 op;      /* binaries: VIGIL_BIN_* */
	__u8 binaries;
	__u8 hit;
};

static __always_inline bool bin_match_entry(struct hook_scratch *s, struct vigil_proc *p, __u8 op,
					    __u32 set)
{
	__u32 len = p->bin_len, n = len > VIGIL_STR_MAX ? VIGIL_STR_MAX : len, found;

	switch (op) {
	case VIGIL_BIN_IN:
	case VIGIL_BIN_NOT_IN:
		bpf_probe_read_kernel(s->skey.data, VIGIL_STR_MAX, p->bin);
		found = str_lookup(s, set, n);
		return found && found - 1 == len;
	case VIGIL_BIN_PREFIX:
	case VIGIL_BIN_NOT_PREFIX:
		bpf_probe_read_kernel(s->skey.data, VIGIL_STR_MAX, p->bin);
		return str_lookup(s, set, n) != 0;
	case VIGIL_BIN_POSTFIX:
	case VIGIL_BIN_NOT_POSTFIX:
		/* Only the leading bytes are kept: a longer path has no known tail. */
		if (len > VIGIL_BIN_KEEP || len == 0)
			return false;
		{
			struct rev_ctx r = { .src = len - 1, .from_tmp = 1 };

			bpf_probe_read_kernel(s->tmp, sizeof(s->tmp), p->bin);
			bpf_loop(n, rev_cb, &r, 0);
		}
		return str_lookup(s, set, n) != 0;
	}
	return false;
}

/* One step up the process tree (followForks / followChildren). */
static long ancestor_cb(__u64 i, void *c)
{
	struct walk_ctx *w = c;
	struct hook_scratch *s = scratch();
	struct vigil_proc *p;
	__u32 tgid = w->tgid;

	if (!s || tgid <= 1)
		return 1;
	p = bpf_map_lookup_elem(&vigil_procs, &tgid);
	if (!p)
		return 1;
	tgid = p->ppid;
	p = bpf_map_lookup_elem(&vigil_procs, &tgid);
	if (!p)
		return 1;
	w->tgid = tgid;
	if (w->binaries) {
		if (bin_match_entry(s, p, w->op, w->set)) {
			w->hit = 1;
			return 1;
		}
	} else if (in_int_set(w->set, tgid)) {
		w->hit = 1;
		return 1;
	}
	return 0;
}

static __always_inline bool pids_match(struct hook_scratch *s, struct vigil_selector *sel)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	__u32 pid = (sel->pid_flags & VIGIL_PID_NAMESPACE) ? ns_pid() : tgid;
	bool hit = in_int_set(sel->pid_set, pid);

	if (!hit && (sel->pid_flags & VIGIL_PID_FOLLOW_FORKS) &&
	    !(sel->pid_flags & VIGIL_PID_NAMESPACE)) {
		struct walk_ctx w = { .tgid = tgid, .set = sel->pid_set };

		bpf_loop(VIGIL_ANCESTOR_DEPTH, ancestor_cb, &w, 0);
		hit = w.hit;
	}
	return sel->pid_op == VIGIL_SET_IN ? hit : !hit;
}

static __always_inline bool bin_filter_match(struct hook_scratch *s, struct vigil_bin_filter *b)
{
	bool positive = b->op == VIGIL_BIN_IN || b->op == VIGIL_BIN_PREFIX || b->op == VIGIL_BIN_POSTFIX;
	bool hit;

	if (!s->have_proc)
		return !positive;
	hit = bin_match_entry(s, &s->proc, b->op, b->set);
	if (!hit && b->follow) {
		struct walk_ctx w = {
			.tgid = s->proc.pid, .set = b->set, .op = b->op, .binaries = 1,
		};

		bpf_loop(VIGIL_ANCESTOR_DEPTH, ancestor_cb, &w, 0);
		hit = w.hit;
	}
	return positive ? hit : !hit;
}

static __always_inline __u64 cap_of(__u64 *caps, __u8 which)
{
	return which == 1 ? caps[1] : which == 2 ? caps[2] : caps[0];
}

static __always_inline __u64 exec_cap_of(struct vigil_proc *p, __u8 which)
{
	return which == 1 ? p->cap_inheritable : which == 2 ? p->cap_permitted : p->cap_effective;
}

/* Process-level part of selector rc->sel: pids, binaries, namespaces, capabilities, changes. */
static long sel_proc_cb(__u64 i, void *c)
{
	struct run_ctx *rc = c;
	struct hook_scratch *s = scratch();
	struct vigil_hook_cfg *h = hook_cfg(rc->slot);
	struct vigil_config *cfg;
	struct vigil_selector *sel;
	__u32 zero = 0;

	if (!s || !h)
		return 1;
	sel = sel_at(h, i);
	if (!sel)
		return 1;
	cfg = bpf_map_lookup_elem(&vigil_config, &zero);
	if (sel->pid_op && !pids_match(s, sel))
		return 0;
#pragma unroll
	for (int b = 0; b < VIGIL_SEL_BIN_FILTERS; b++) {
		if (b >= sel->n_bin)
			break;
		if (!bin_filter_match(s, &sel->bins[b]))
			return 0;
	}
#pragma unroll
	for (int n = 0; n < VIGIL_SEL_NS_FILTERS; n++) {
		struct vigil_ns_filter *f = &sel->ns[n];
		bool hit;

		if (n >= sel->n_ns)
			break;
		__u64 slot = f->slot;

		barrier_var(slot);
		if (slot >= VIGIL_NS_COUNT)
			return 0;
		hit = in_int_set(f->set, s->live_ns[slot]);
		if (f->op == VIGIL_SET_IN ? !hit : hit)
			return 0;
	}
#pragma unroll
	for (int k = 0; k < VIGIL_SEL_CAP_FILTERS; k++) {
		struct vigil_cap_filter *f = &sel->caps[k];
		bool hit;

		if (k >= sel->n_cap)
			break;
		hit = (cap_of(s->live_caps, f->which) & f->mask) != 0;
		if (f->ns_cap && cfg && s->live_userns == cfg->host_userns)
			return 0; /* namespace capabilities only count outside the host user ns */
		if (f->op == VIGIL_SET_IN ? !hit : hit)
			return 0;
	}
#pragma unroll
	for (int k = 0; k < VIGIL_SEL_CAP_FILTERS; k++) {
		struct vigil_cap_filter *f = &sel->capchg[k];
		bool hit;

		if (k >= sel->n_capchg)
			break;
		if (!s->have_proc)
			return 0;
		hit = ((cap_of(s->live_caps, f->which) ^ exec_cap_of(&s->proc, f->which)) & f->mask) != 0;
		if (f->op == VIGIL_SET_IN ? !hit : hit)
			return 0;
	}
	if (sel->nschg_op) {
		bool changed = false;

		if (!s->have_proc)
			return 0;
#pragma unroll
		for (int n = 0; n < VIGIL_NS_COUNT; n++) {
			if ((sel->nschg_mask & (1u << n)) && s->live_ns[n] != s->proc.ns[n])
				changed = true;
		}
		if (sel->nschg_op == VIGIL_SET_IN ? !changed : changed)
			return 0;
	}
	rc->mask |= 1u << i;
	return 0;
}

/* ------------------------------------------------------------------------- argument reading */

static __always_inline __u64 raw_arg(struct hook_scratch *s, struct vigil_hook_cfg *h,
				     struct vigil_arg_cfg *a)
{
	__u64 v = 0;

	switch (h->source) {
	case VIGIL_SRC_TRACEPOINT:
		bpf_probe_read_kernel(&v, a->size > 8 ? 8 : a->size & 15,
				      (void *)(s->tp_ctx + a->tp_offset));
		return v;
	case VIGIL_SRC_SYSCALL_WRAPPER: {
		struct pt_regs *inner = (struct pt_regs *)s->regs[0];

		switch (a->index) {
		case 0:
			return BPF_CORE_READ(inner, di);
		case 1:
			return BPF_CORE_READ(inner, si);
		case 2:
			return BPF_CORE_READ(inner, dx);
		case 3:
			return BPF_CORE_READ(inner, r10);
		case 4:
			return BPF_CORE_READ(inner, r8);
		default:
			return BPF_CORE_READ(inner, r9);
		}
	}
	default:
		v = a->index;
		barrier_var(v);
		return v < 6 ? s->regs[v] : 0;
	}
}

static __always_inline struct file *fd_file(__u64 fd)
{
	struct task_struct *task = (void *)bpf_get_current_task();
	struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
	unsigned int max = BPF_CORE_READ(fdt, max_fds);
	struct file **fds = BPF_CORE_READ(fdt, fd);
	struct file *f = 0;

	if ((__s64)fd < 0 || fd >= max)
		return 0;
	bpf_probe_read_kernel(&f, sizeof(f), &fds[fd]);
	return f;
}

static __always_inline struct sock *file_sock(struct file *f)
{
	umode_t mode = BPF_CORE_READ(f, f_inode, i_mode);
	struct socket *sock;

	if ((mode & S_IFMT) != S_IFSOCK)
		return 0;
	sock = BPF_CORE_READ(f, private_data);
	return BPF_CORE_READ(sock, sk);
}

static __always_inline void read_sock(struct sock *sk, struct vigil_sock_arg *o)
{
	o->family = BPF_CORE_READ(sk, __sk_common.skc_family);
	o->state = BPF_CORE_READ(sk, __sk_common.skc_state);
	o->sock_type = BPF_CORE_READ(sk, sk_type);
	o->protocol = BPF_CORE_READ(sk, sk_protocol);
	o->sport = BPF_CORE_READ(sk, __sk_common.skc_num);
	o->dport = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	o->cookie = (__u64)sk;
	if (o->family == AF_INET) {
		BPF_CORE_READ_INTO((__u32 *)o->saddr, sk, __sk_common.skc_rcv_saddr);
		BPF_CORE_READ_INTO((__u32 *)o->daddr, sk, __sk_common.skc_daddr);
	} else if (o->family == AF_INET6) {
		BPF_CORE_READ_INTO((struct in6_addr *)o->saddr, sk, __sk_common.skc_v6_rcv_saddr);
		BPF_CORE_READ_INTO((struct in6_addr *)o->daddr, sk, __sk_common.skc_v6_daddr);
	}
}

static __always_inline long read_mem(void *dst, __u32 len, const void *src, bool user)
{
	return user ? bpf_probe_read_user(dst, len, src) : bpf_probe_read_kernel(dst, len, src);
}

/* Write a resolved path into the record at `dst`; returns its length, sets aux flags. */
static __always_inline __u32 put_path(char *dst, __u32 pos, bool cut, __u32 *aux)
{
	char *pb = get_pathbuf();
	__u32 len;

	if (!pb)
		return 0;
	len = copy_path(dst, pb, pos);
	*aux = len | (cut ? VIGIL_AUX_CUT : 0);
	return len;
}

/* Read argument i of hook rc->slot into the record (appended at s->data_len). */
static long arg_cb(__u64 i, void *c)
{
	struct run_ctx *rc = c;
	struct hook_scratch *s = scratch();
	struct vigil_hook_cfg *h = hook_cfg(rc->slot);
	struct vigil_arg_cfg *a;
	__u64 *p_raw;
	__u32 *p_off, *p_len, *p_aux;
	__u8 *p_kind;
	__u32 off, len = 0, aux = 0;
	bool user, cut = false;
	char *dst;
	char *pb;
	__u64 v;
	long n;

	if (!s || !h)
		return 1;
	barrier_var(i);
	if (i >= VIGIL_HOOK_ARGS)
		return 1;
	/* Every element pointer is formed here, right after the check (see sel_at()). */
	a = &h->args[i];
	p_raw = &s->raw[i];
	p_off = &s->arg_off[i];
	p_kind = &s->rec.arg_kind[i];
	p_len = &s->rec.arg_len[i];
	p_aux = &s->rec.arg_aux[i];
	barrier_var(a);
	barrier_var(p_raw);
	barrier_var(p_off);
	barrier_var(p_kind);
	barrier_var(p_len);
	barrier_var(p_aux);
	user = h->flags & VIGIL_HOOK_USER_MEM;
	off = s->data_len;
	if (off > (VIGIL_HOOK_ARGS - 1) * VIGIL_ARG_SLOT)
		off = (VIGIL_HOOK_ARGS - 1) * VIGIL_ARG_SLOT;
	dst = &s->data[off & DATA_MASK];
	v = *p_raw;
	*p_off = off;
	switch (a->kind) {
	case VIGIL_ARGK_INT:
		v = (a->flags & VIGIL_ARGF_SIGNED) ? (__u64)sign_extend(v, a->size)
						   : zero_extend(v, a->size);
		__builtin_memcpy(dst, &v, 8);
		len = 8;
		break;
	case VIGIL_ARGK_STR:
		n = user ? bpf_probe_read_user_str(dst, VIGIL_ARG_SLOT, (void *)v)
			 : bpf_probe_read_kernel_str(dst, VIGIL_ARG_SLOT, (void *)v);
		if (n < 0 && !user)
			n = bpf_probe_read_user_str(dst, VIGIL_ARG_SLOT, (void *)v);
		if (n <= 0) {
			aux = VIGIL_AUX_ERR;
			break;
		}
		len = (n - 1) & (VIGIL_ARG_SLOT - 1);
		aux = len | (n == VIGIL_ARG_SLOT ? VIGIL_AUX_CUT : 0);
		break;
	case VIGIL_ARGK_BUF: {
		__u64 want = VIGIL_ARG_SLOT;

		if (a->flags & VIGIL_ARGF_SIZE_ARG)
		{
			__u64 si = a->size_arg;

			barrier_var(si);
			want = si < VIGIL_HOOK_ARGS ? s->raw[si] : 0;
		}
		if (a->flags & VIGIL_ARGF_RETURN_COPY) {
			if (rc->stage != STAGE_EXIT || rc->ret < 0)
				break; /* nothing was copied (yet) */
			if ((__u64)rc->ret < want)
				want = rc->ret;
		}
		len = want > VIGIL_ARG_SLOT ? VIGIL_ARG_SLOT : want;
		aux = (want > VIGIL_AUX_LEN_MASK ? VIGIL_AUX_LEN_MASK : want) |
		      (want > VIGIL_ARG_SLOT ? VIGIL_AUX_CUT : 0);
		len &= (VIGIL_ARG_SLOT * 2 - 1);
		if (len > VIGIL_ARG_SLOT)
			len = VIGIL_ARG_SLOT;
		if (len && read_mem(dst, len, (void *)v, user) < 0) {
			len = 0;
			aux = VIGIL_AUX_ERR;
		}
		break;
	}
	case VIGIL_ARGK_FD:
	case VIGIL_ARGK_FILE:
	case VIGIL_ARGK_PATH:
	case VIGIL_ARGK_BINPRM: {
		struct path *p;
		struct file *f;
		__u32 pos;

		pb = get_pathbuf();
		if (!pb)
			break;
		if (a->kind == VIGIL_ARGK_FD) {
			f = fd_file(v);
			if (!f) {
				aux = VIGIL_AUX_ERR;
				break;
			}
			p = (struct path *)&f->f_path;
		} else if (a->kind == VIGIL_ARGK_FILE) {
			p = (struct path *)&((struct file *)v)->f_path;
		} else if (a->kind == VIGIL_ARGK_BINPRM) {
			f = BPF_CORE_READ((struct linux_binprm *)v, file);
			p = (struct path *)&f->f_path;
		} else {
			p = (struct path *)v;
		}
		pos = resolve_path(p, pb, &cut);
		len = put_path(dst, pos, cut, &aux);
		break;
	}
	case VIGIL_ARGK_DENTRY: {
		__u32 pos;

		pb = get_pathbuf();
		if (!pb)
			break;
		pos = resolve_dentry((struct dentry *)v, pb, &cut);
		len = put_path(dst, pos, cut, &aux);
		break;
	}
	case VIGIL_ARGK_SOCK:
	case VIGIL_ARGK_FD_SOCK: {
		struct vigil_sock_arg k = {};
		struct sock *sk = (struct sock *)v;

		if (a->kind == VIGIL_ARGK_FD_SOCK) {
			struct file *f = fd_file(v);

			sk = f ? file_sock(f) : 0;
		}
		if (!sk) {
			aux = VIGIL_AUX_ERR;
			break;
		}
		read_sock(sk, &k);
		__builtin_memcpy(dst, &k, sizeof(k));
		len = sizeof(k);
		break;
	}
	case VIGIL_ARGK_SOCKADDR: {
		struct vigil_sockaddr_arg k = {};
		__u16 family = 0, port = 0;

		if (read_mem(&family, 2, (void *)v, user) < 0) {
			aux = VIGIL_AUX_ERR;
			break;
		}
		k.family = family;
		read_mem(&port, 2, (void *)(v + 2), user);
		k.port = bpf_ntohs(port);
		if (family == AF_INET)
			read_mem(k.addr, 4, (void *)(v + 4), user);
		else if (family == AF_INET6)
			read_mem(k.addr, 16, (void *)(v + 8), user);
		__builtin_memcpy(dst, &k, sizeof(k));
		len = sizeof(k);
		break;
	}
	case VIGIL_ARGK_CRED: {
		struct vigil_creds k = {};

		read_cred((const struct cred *)v, &k);
		__builtin_memcpy(dst, &k, sizeof(k));
		len = sizeof(k);
		break;
	}
	}
	*p_kind = a->kind;
	*p_len = len;
	*p_aux = aux;
	s->data_len = off + len;
	return 0;
}

/* ------------------------------------------------------------------------- argument filters */

static __always_inline bool filter_match(struct hook_scratch *s, struct vigil_hook_cfg *h,
					 struct vigil_filter *f)
{
	__u64 ai = f->arg, v = 0;
	__u32 off, len;
	__u8 kind;

	barrier_var(ai);
	if (ai >= VIGIL_HOOK_ARGS || ai >= h->nargs)
		return false;
	off = s->arg_off[ai] & DATA_MASK;
	len = s->rec.arg_len[ai];
	kind = h->args[ai].kind;
	switch (kind) {
	case VIGIL_ARGK_INT:
		if (len != 8)
			return false;
		bpf_probe_read_kernel(&v, 8, &s->data[off]);
		return match_int(f, v);
	case VIGIL_ARGK_SOCK:
	case VIGIL_ARGK_FD_SOCK: {
		struct vigil_sock_arg k;

		if (len != sizeof(k))
			return false;
		bpf_probe_read_kernel(&k, sizeof(k), &s->data[off]);
		return match_sock(s, f, &k);
	}
	case VIGIL_ARGK_SOCKADDR: {
		struct vigil_sockaddr_arg k;

		if (len != sizeof(k))
			return false;
		bpf_probe_read_kernel(&k, sizeof(k), &s->data[off]);
		return match_sockaddr(s, f, &k);
	}
	case VIGIL_ARGK_CRED:
		return false;
	default: {
		__u32 full = s->rec.arg_aux[ai] & VIGIL_AUX_LEN_MASK;

		if (s->rec.arg_aux[ai] & VIGIL_AUX_ERR)
			return f->op == VIGIL_OP_NOT_EQUAL || f->op == VIGIL_OP_NOT_PREFIX ||
			       f->op == VIGIL_OP_NOT_POSTFIX;
		if (full < len)
			full = len;
		return match_string(s, f->op, f->set, off, len & (VIGIL_ARG_SLOT * 2 - 1), full);
	}
	}
}

/* Filter j of selector rc->sel; clears rc->ok on the first miss. */
static long filter_cb(__u64 j, void *c)
{
	struct run_ctx *rc = c;
	struct hook_scratch *s = scratch();
	struct vigil_hook_cfg *h = hook_cfg(rc->slot);
	struct vigil_selector *sel;
	struct vigil_filter *f;
	__u64 v;

	if (!s || !h)
		return 1;
	sel = sel_at(h, rc->sel);
	if (!sel)
		return 1;
	barrier_var(j);
	if (rc->stage == STAGE_EXIT) {
		if (j >= VIGIL_SEL_RET_FILTERS)
			return 1;
		f = &sel->ret[j];
		v = h->ret_signed ? (__u64)rc->ret : (__u64)(__u32)rc->ret;
		if (!match_int(f, h->ret_signed ? (__u64)rc->ret : v)) {
			rc->ok = 0;
			return 1;
		}
		return 0;
	}
	if (j >= VIGIL_SEL_ARG_FILTERS)
		return 1;
	f = &sel->args[j];
	if (!filter_match(s, h, f)) {
		rc->ok = 0;
		return 1;
	}
	return 0;
}

/* Argument (or return) filters of selector i, if still in the running: clears its mask bit. */
static long sel_args_cb(__u64 i, void *c)
{
	struct run_ctx *rc = c;
	struct vigil_hook_cfg *h = hook_cfg(rc->slot);
	__u32 n;

	struct vigil_selector *sel;

	if (!h)
		return 1;
	sel = sel_at(h, i);
	if (!sel)
		return 1;
	if (!(rc->mask & (1u << i)))
		return 0;
	n = rc->stage == STAGE_EXIT ? sel->n_ret : sel->n_args;
	if (!n)
		return 0;
	rc->sel = i;
	rc->ok = 1;
	bpf_loop(n, filter_cb, rc, 0);
	if (!rc->ok)
		rc->mask &= ~(1u << i);
	return 0;
}

/* --------------------------------------------------------------------------------- actions */

static __always_inline __u64 args_hash(struct hook_scratch *s)
{
	__u64 hash = 14695981039346656037ULL, w[8] = {};
	__u32 len = s->data_len, n = len > sizeof(w) ? sizeof(w) : len;

	/* The first 64 bytes of the arguments identify "the same event" well enough. */
	n &= 127;
	if (n > sizeof(w))
		n = sizeof(w);
	if (n)
		bpf_probe_read_kernel(w, n, s->data);
#pragma unroll
	for (int i = 0; i < 8; i++) {
		hash ^= w[i];
		hash *= 1099511628211ULL;
	}
	return hash ^ len;
}

/* True when an identical event of this hook was posted less than rate_ns ago. */
static __always_inline bool rate_limited(struct hook_scratch *s, __u32 slot, struct vigil_action *a)
{
	struct vigil_rate_key k = { .hook = slot };
	__u64 now = bpf_ktime_get_ns(), *last;
	__u64 id = bpf_get_current_pid_tgid();

	if (a->scope == VIGIL_SCOPE_THREAD)
		k.scope_id = (__u32)id;
	else if (a->scope == VIGIL_SCOPE_PROCESS)
		k.scope_id = id >> 32;
	k.hash = args_hash(s);
	last = bpf_map_lookup_elem(&vigil_ratelimit, &k);
	if (last && now - *last < a->rate_ns)
		return true;
	bpf_map_update_elem(&vigil_ratelimit, &k, &now, BPF_ANY);
	return false;
}

/* Run the actions of selector `si` (0xffff: none) and post the record. */
static __always_inline void act(struct run_ctx *rc, struct hook_scratch *s,
				struct vigil_hook_cfg *h, __u32 si)
{
	struct vigil_policy_cfg *pol = bpf_map_lookup_elem(&vigil_policies, &h->policy);
	bool enforce = pol && pol->mode != VIGIL_MODE_MONITOR;
	bool post = true, limited = false;
	__u16 done = 0;
	__u32 flags = 0;
	__u64 size;

	stat(h->policy, VIGIL_STAT_MATCHED);
	if (si < VIGIL_HOOK_SELECTORS) {
		struct vigil_selector *sel = sel_at(h, si);

		if (!sel)
			return;

#pragma unroll
		for (int k = 0; k < VIGIL_SEL_ACTIONS; k++) {
			struct vigil_action *a = &sel->actions[k];

			if (k >= sel->n_actions)
				break;
			switch (a->kind) {
			case VIGIL_ACT_POST:
				done |= 1u << VIGIL_ACT_POST;
				if (a->rate_ns && rate_limited(s, rc->slot, a))
					limited = true;
				break;
			case VIGIL_ACT_NOPOST:
				post = false;
				break;
			case VIGIL_ACT_SIGKILL:
			case VIGIL_ACT_SIGNAL:
				done |= 1u << a->kind;
				if (enforce) {
					bpf_send_signal(a->kind == VIGIL_ACT_SIGKILL ? 9 : a->arg);
					stat(h->policy, a->kind == VIGIL_ACT_SIGKILL ? VIGIL_STAT_SIGKILL
										   : VIGIL_STAT_SIGNAL);
				} else {
					flags |= VIGIL_HF_MONITOR;
					stat(h->policy, VIGIL_STAT_MONITORED);
				}
				break;
			case VIGIL_ACT_OVERRIDE:
				if (!(h->flags & VIGIL_HOOK_CAN_OVERRIDE))
					break;
				done |= 1u << VIGIL_ACT_OVERRIDE;
				if (enforce) {
					rc->override = a->arg;
					stat(h->policy, VIGIL_STAT_OVERRIDE);
				} else {
					flags |= VIGIL_HF_MONITOR;
					stat(h->policy, VIGIL_STAT_MONITORED);
				}
				break;
			}
		}
	}
	if (!post)
		return;
	if (limited) {
		stat(h->policy, VIGIL_STAT_RATE_LIMITED);
		return;
	}
	s->rec.hdr.kind = VIGIL_MSG_HOOK;
	s->rec.hdr.time = bpf_ktime_get_boot_ns();
	s->rec.pid = bpf_get_current_pid_tgid() >> 32;
	s->rec.tid = (__u32)bpf_get_current_pid_tgid();
	s->rec.ktime = s->have_proc ? s->proc.ktime : 0;
	s->rec.hook = rc->slot;
	s->rec.policy = h->policy;
	s->rec.generation = h->generation;
	s->rec.selector = si;
	s->rec.actions = done | (1u << VIGIL_ACT_POST);
	s->rec.ret = rc->ret;
	s->rec.flags = flags | (rc->stage == STAGE_EXIT ? VIGIL_HF_RETURN : 0) |
		       (s->have_proc ? 0 : VIGIL_HF_NO_PROC);
	s->rec.nargs = h->nargs;
	size = s->data_len;
	if (size > VIGIL_HOOK_DATA_MAX)
		size = VIGIL_HOOK_DATA_MAX;
	size += sizeof(s->rec);
	s->rec.hdr.size = size;
	if (bpf_ringbuf_output(&vigil_events, &s->rec, size, wakeup_flag())) {
		count(VIGIL_CNT_RB_LOST_HOOK);
		stat(h->policy, VIGIL_STAT_LOST);
	} else {
		stat(h->policy, VIGIL_STAT_POSTED);
	}
}

/* ------------------------------------------------------------------------------ hook runs */

static __always_inline __u32 first_bit(__u32 mask)
{
#pragma unroll
	for (int i = 0; i < VIGIL_HOOK_SELECTORS; i++) {
		if (mask & (1u << i))
			return i;
	}
	return 0xffff;
}

static __always_inline void load_process(struct hook_scratch *s, struct vigil_hook_cfg *h)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct vigil_proc *p = bpf_map_lookup_elem(&vigil_procs, &tgid);
	struct task_struct *task;

	s->have_proc = p != 0;
	if (p)
		bpf_probe_read_kernel(&s->proc, sizeof(s->proc), p);
	if (!(h->flags & (VIGIL_HOOK_NEED_CAPS | VIGIL_HOOK_NEED_NS)))
		return;
	task = (void *)bpf_get_current_task();
	if (h->flags & VIGIL_HOOK_NEED_NS)
		read_namespaces(task, s->live_ns);
	if (h->flags & VIGIL_HOOK_NEED_CAPS) {
		const struct cred *cred = BPF_CORE_READ(task, cred);

		bpf_core_read(&s->live_caps[0], 8, &cred->cap_effective);
		bpf_core_read(&s->live_caps[1], 8, &cred->cap_inheritable);
		bpf_core_read(&s->live_caps[2], 8, &cred->cap_permitted);
		s->live_userns = BPF_CORE_READ(cred, user_ns, ns.inum);
	}
}

static __always_inline void read_args(struct run_ctx *rc, struct hook_scratch *s,
				      struct vigil_hook_cfg *h)
{
	s->data_len = 0;
	__builtin_memset(s->rec.arg_len, 0, sizeof(s->rec.arg_len));
	bpf_loop(h->nargs > VIGIL_HOOK_ARGS ? VIGIL_HOOK_ARGS : h->nargs, arg_cb, rc, 0);
}

#define NO_SELECTORS (1u << 31)

/* Entry of a call: filters, then actions and a record (or, for return probes, saved state). */
static __always_inline void run_entry(struct run_ctx *rc, struct hook_scratch *s,
				      struct vigil_hook_cfg *h)
{
	__u32 nsel = h->nsel > VIGIL_HOOK_SELECTORS ? VIGIL_HOOK_SELECTORS : h->nsel;

	load_process(s, h);
	rc->mask = 0;
	if (nsel) {
		bpf_loop(nsel, sel_proc_cb, rc, 0);
		if (!rc->mask)
			return; /* no selector can match this process: no argument is read */
	}
#pragma unroll
	for (int i = 0; i < VIGIL_HOOK_ARGS; i++) {
		if (i >= h->nargs)
			break;
		struct vigil_arg_cfg *a = arg_at(h, i);

		if (a)
			s->raw[i] = raw_arg(s, h, a);
	}
	read_args(rc, s, h);
	if (nsel)
		bpf_loop(nsel, sel_args_cb, rc, 0);
	else
		rc->mask = NO_SELECTORS;
	if (!rc->mask)
		return;
	if (h->flags & VIGIL_HOOK_RETURN) {
		struct vigil_pending p = { .sel_mask = rc->mask };
		__u64 key = (bpf_get_current_pid_tgid() << 32) | rc->slot;

		__builtin_memcpy(p.raw, s->raw, sizeof(p.raw));
		if (bpf_map_update_elem(&vigil_pending, &key, &p, BPF_ANY))
			count(VIGIL_CNT_PENDING_FULL);
		return;
	}
	act(rc, s, h, rc->mask == NO_SELECTORS ? 0xffff : first_bit(rc->mask));
}

/* Return of a call whose entry matched: return filters, actions, record. */
static __always_inline void run_exit(struct run_ctx *rc, struct hook_scratch *s,
				     struct vigil_hook_cfg *h)
{
	__u64 key = (bpf_get_current_pid_tgid() << 32) | rc->slot;
	struct vigil_pending *p = bpf_map_lookup_elem(&vigil_pending, &key);
	__u32 nsel = h->nsel > VIGIL_HOOK_SELECTORS ? VIGIL_HOOK_SELECTORS : h->nsel;

	if (!p)
		return;
	rc->mask = p->sel_mask;
	__builtin_memcpy(s->raw, p->raw, sizeof(s->raw));
	bpf_map_delete_elem(&vigil_pending, &key);
	load_process(s, h);
	read_args(rc, s, h);
	if (rc->mask != NO_SELECTORS) {
		bpf_loop(nsel, sel_args_cb, rc, 0);
		if (!rc->mask)
			return;
	}
	act(rc, s, h, rc->mask == NO_SELECTORS ? 0xffff : first_bit(rc->mask));
}

/*
 * Workload scope: the selected containers' cgroups (scope_set), or, when hostSelector matched
 * this node, any cgroup that is no container's. At most two hash lookups, so a task outside the
 * scope costs only these before the hook returns.
 */
static __always_inline bool in_scope(const struct vigil_policy_cfg *pol)
{
	__u64 cg = bpf_get_current_cgroup_id();

	if (pol->scope_set && in_int_set(pol->scope_set, cg))
		return true;
	return (pol->scope_flags & VIGIL_POL_HOST) && !bpf_map_lookup_elem(&vigil_containers, &cg);
}

static long hook_cb(__u64 i, void *c)
{
	struct run_ctx *rc = c;
	struct vigil_attach_hooks *at = bpf_map_lookup_elem(&vigil_attach, &rc->attach);
	struct hook_scratch *s = scratch();
	struct vigil_policy_cfg *pol;
	struct vigil_hook_cfg *h;

	if (!at || !s)
		return 1;
	barrier_var(i);
	if (i >= VIGIL_ATTACH_HOOKS)
		return 1;
	rc->slot = at->hooks[i];
	h = hook_cfg(rc->slot);
	if (!h)
		return 0;
	pol = bpf_map_lookup_elem(&vigil_policies, &h->policy);
	if (!pol || !pol->enabled)
		return 0;
	if ((pol->scope_flags & VIGIL_POL_SCOPED) && !in_scope(pol))
		return 0;
	if (rc->stage == STAGE_EXIT) {
		if (h->flags & VIGIL_HOOK_RETURN)
			run_exit(rc, s, h);
	} else {
		run_entry(rc, s, h);
	}
	return 0;
}

/* Runs every hook of attach point `attach`; returns the override value (0: none). */
static __always_inline int run(__u32 attach, __u32 stage, __s64 ret)
{
	struct run_ctx rc = { .attach = attach, .stage = stage, .ret = ret };
	struct vigil_attach_hooks *at = bpf_map_lookup_elem(&vigil_attach, &attach);
	struct vigil_config *cfg;
	__u32 zero = 0;

	if (!at || !at->n) {
		count(VIGIL_CNT_HOOK_NO_CFG);
		return 0;
	}
	cfg = bpf_map_lookup_elem(&vigil_config, &zero);
	if (cfg && cfg->self_tgid == bpf_get_current_pid_tgid() >> 32)
		return 0;
	bpf_loop(at->n > VIGIL_ATTACH_HOOKS ? VIGIL_ATTACH_HOOKS : at->n, hook_cb, &rc, 0);
	return rc.override;
}

static __always_inline void regs_syscall(struct hook_scratch *s, struct pt_regs *regs)
{
	s->regs[0] = BPF_CORE_READ(regs, di);
	s->regs[1] = BPF_CORE_READ(regs, si);
	s->regs[2] = BPF_CORE_READ(regs, dx);
	s->regs[3] = BPF_CORE_READ(regs, r10);
	s->regs[4] = BPF_CORE_READ(regs, r8);
	s->regs[5] = BPF_CORE_READ(regs, r9);
}

/* ------------------------------------------------------------------------ program entries */

/* Syscall hooks where kprobes are missing: one program for all syscalls, routed by number. */
SEC("tp_btf/sys_enter")
int BPF_PROG(vigil_sys_enter, struct pt_regs *regs, long id)
{
	struct hook_scratch *s;
	__u32 nr = id, *attach;

	if (id < 0 || id >= VIGIL_SYSCALL_MAX)
		return 0;
	attach = bpf_map_lookup_elem(&vigil_sys_attach, &nr);
	if (!attach || !*attach)
		return 0;
	s = scratch();
	if (!s)
		return 0;
	regs_syscall(s, regs);
	run(*attach, STAGE_ENTRY, 0);
	return 0;
}

SEC("tp_btf/sys_exit")
int BPF_PROG(vigil_sys_exit, struct pt_regs *regs, long ret)
{
	__u32 nr = BPF_CORE_READ(regs, orig_ax), *attach;

	if (nr >= VIGIL_SYSCALL_MAX)
		return 0;
	attach = bpf_map_lookup_elem(&vigil_sys_attach, &nr);
	if (!attach || !*attach)
		return 0;
	run(*attach, STAGE_EXIT, ret);
	return 0;
}

/* Function-call arguments (kprobes, uprobes): rdi, rsi, rdx, rcx, r8, r9. */
static __always_inline int run_function_entry(struct pt_regs *ctx)
{
	struct hook_scratch *s = scratch();

	if (!s)
		return 0;
	s->regs[0] = PT_REGS_PARM1(ctx);
	s->regs[1] = PT_REGS_PARM2(ctx);
	s->regs[2] = PT_REGS_PARM3(ctx);
	s->regs[3] = PT_REGS_PARM4(ctx);
	s->regs[4] = PT_REGS_PARM5(ctx);
	s->regs[5] = ctx->r9;
	run(VIGIL_ATTACH_ID, STAGE_ENTRY, 0);
	return 0;
}

SEC("kprobe/vigil")
int vigil_kprobe(struct pt_regs *ctx)
{
	return run_function_entry(ctx);
}

SEC("kretprobe/vigil")
int vigil_kretprobe(struct pt_regs *ctx)
{
	run(VIGIL_ATTACH_ID, STAGE_EXIT, PT_REGS_RC(ctx));
	return 0;
}

SEC("tracepoint/vigil")
int vigil_tracepoint(void *ctx)
{
	struct hook_scratch *s = scratch();

	if (!s)
		return 0;
	s->tp_ctx = (__u64)ctx;
	run(VIGIL_ATTACH_ID, STAGE_ENTRY, 0);
	return 0;
}

SEC("uprobe/vigil")
int vigil_uprobe(struct pt_regs *ctx)
{
	return run_function_entry(ctx);
}

/* BPF-LSM: the return value denies the operation (Override). */
SEC("lsm/vigil")
int vigil_lsm(unsigned long long *ctx)
{
	struct hook_scratch *s = scratch();

	if (!s)
		return 0;
#pragma unroll
	for (int i = 0; i < 6; i++) {
		s->regs[i] = 0;
		bpf_get_func_arg(ctx, i, &s->regs[i]);
	}
	return run(VIGIL_ATTACH_ID, STAGE_ENTRY, 0);
}

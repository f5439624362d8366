/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/*
 * The record ABI between Vigil's BPF programs and the sensor.
 *
 * Every struct here is mirrored field for field in sensor-bpf/src/abi/mod.rs; a test (abi/tests.rs)
 * compiles this header with the host C compiler and compares sizes and offsets, so a change on one side
 * that is not made on the other fails the build's tests. Fixed-width types only, explicit padding,
 * no bitfields.
 */
#ifndef VIGIL_ABI_H
#define VIGIL_ABI_H

#ifndef __VIGIL_BPF__
#include <stdint.h>
typedef uint8_t __u8;
typedef uint16_t __u16;
typedef uint32_t __u32;
typedef uint64_t __u64;
typedef int32_t __s32;
typedef int64_t __s64;
#endif

/* Record kinds (vigil_msg_header.kind). */
#define VIGIL_MSG_EXEC 1
#define VIGIL_MSG_FORK 2
#define VIGIL_MSG_EXIT 3
#define VIGIL_MSG_HOOK 4
#define VIGIL_MSG_PROTECT 5 /* self-protection refused an operation (protect.bpf.c) */

/* Size limits of the variable parts of an exec record (bytes, including no terminator). */
#define VIGIL_PATH_MAX 4096       /* binary and cwd: longer paths are cut and flagged */
#define VIGIL_ARGS_MAX 8192       /* the NUL-separated argv block; longer is cut, truncArgs */
#define VIGIL_CGROUP_NAME_MAX 256 /* last component of the cgroup v2 path */
#define VIGIL_BIN_KEEP 256        /* leading binary bytes kept in the kernel process table */
#define VIGIL_PATH_DEPTH 64       /* path components walked before giving up (flagged) */

/* vigil_exec.kflags: what the kernel side noticed while building the record. */
#define VIGIL_KF_TRUNC_ARGS (1u << 0)   /* argv block longer than VIGIL_ARGS_MAX */
#define VIGIL_KF_TRUNC_BINARY (1u << 1) /* binary path cut (too long or too deep) */
#define VIGIL_KF_TRUNC_CWD (1u << 2)    /* cwd path cut */
#define VIGIL_KF_CLONE (1u << 3)        /* the process was created by fork/clone */
#define VIGIL_KF_NO_PARENT (1u << 4)    /* the parent was not in the kernel process table */
#define VIGIL_KF_ERR_ARGS (1u << 5)     /* reading argv from user memory failed */
#define VIGIL_KF_ERR_CWD (1u << 6)      /* cwd could not be resolved */
#define VIGIL_KF_PROCFS (1u << 7)       /* table entry seeded from /proc by the sensor */
#define VIGIL_KF_EXECVE (1u << 8)       /* table entry set by an exec */

/* Indexes of vigil_counters (a per-CPU array of __u64). */
#define VIGIL_CNT_RB_LOST_EXEC 0  /* exec record not written: ring buffer full */
#define VIGIL_CNT_RB_LOST_FORK 1
#define VIGIL_CNT_RB_LOST_EXIT 2
#define VIGIL_CNT_PROC_TABLE_FULL 3 /* process table insert failed (capacity) */
#define VIGIL_CNT_EXEC_SEEN 4       /* exec tracepoint runs */
#define VIGIL_CNT_FORK_SEEN 5       /* new thread groups seen */
#define VIGIL_CNT_EXIT_SEEN 6       /* thread-group exits seen */
#define VIGIL_CNT_RB_LOST_HOOK 7    /* hook record not written: ring buffer full */
#define VIGIL_CNT_HOOK_NO_CFG 8     /* a program ran for an attach id without hooks */
#define VIGIL_CNT_PENDING_FULL 9    /* entry state for a return probe could not be saved */
#define VIGIL_CNT_NUM 12

/* Namespace slots, in the order of the event's `ns` object. */
#define VIGIL_NS_UTS 0
#define VIGIL_NS_IPC 1
#define VIGIL_NS_MNT 2
#define VIGIL_NS_PID 3
#define VIGIL_NS_PID_FOR_CHILDREN 4
#define VIGIL_NS_NET 5
#define VIGIL_NS_TIME 6
#define VIGIL_NS_TIME_FOR_CHILDREN 7
#define VIGIL_NS_CGROUP 8
#define VIGIL_NS_USER 9
#define VIGIL_NS_COUNT 10

struct vigil_msg_header {
	__u32 kind;
	__u32 size; /* bytes of the whole record, header included */
	__u64 time; /* bpf_ktime_get_boot_ns() when the record was built */
};

struct vigil_creds {
	__u32 uid, gid, euid, egid, suid, sgid, fsuid, fsgid;
	__u32 securebits;
	__u32 auid; /* loginuid; 4294967295 when unset */
	__u64 cap_permitted;
	__u64 cap_effective;
	__u64 cap_inheritable;
};

/*
 * Exec: the fixed part, then `data` holding binary, args, cwd and cgroup name back to back with
 * the lengths below (no terminators). args is the argv block as the kernel keeps it
 * (NUL-separated, argv[0] included).
 */
struct vigil_exec {
	struct vigil_msg_header hdr;
	__u32 pid; /* tgid */
	__u32 tid;
	__u32 ppid; /* real parent's tgid */
	__u32 kflags;
	__u64 ktime;        /* identity: boot ns at exec */
	__u64 parent_ktime; /* parent's identity from the table; 0 when unknown */
	struct vigil_creds creds;
	__u32 ns[VIGIL_NS_COUNT];
	__u64 cgroup_id;
	__u32 args_total; /* full size of the argv block in the process */
	__u16 binary_len;
	__u16 args_len;
	__u16 cwd_len;
	__u16 cgroup_name_len;
	__u32 nspid; /* tgid in the process's own PID namespace (the container's pid) */
};

#define VIGIL_EXEC_DATA_MAX (VIGIL_PATH_MAX + VIGIL_ARGS_MAX + VIGIL_PATH_MAX + VIGIL_CGROUP_NAME_MAX)

/* A new thread group (fork/clone without CLONE_THREAD). */
struct vigil_fork {
	struct vigil_msg_header hdr;
	__u32 pid;  /* child tgid */
	__u32 ppid; /* parent tgid */
	__u64 ktime;        /* child identity: boot ns at fork */
	__u64 parent_ktime; /* 0 when the parent was not in the table */
};

/* The last thread of a group exited. */
struct vigil_exit {
	struct vigil_msg_header hdr;
	__u32 pid; /* tgid */
	__u32 tid; /* the thread that exited last */
	__u64 ktime; /* the process identity from the table; 0 when unknown */
	__u32 exit_code; /* wait status: (status << 8) | signal */
	__u32 pad;
};

/* The kernel-side process table (map vigil_procs, key: tgid). */
struct vigil_proc {
	__u32 pid;
	__u32 ppid;
	__u64 ktime;
	__u64 parent_ktime;
	__u32 kflags;
	__u16 bin_len; /* full length of the binary path (may exceed VIGIL_BIN_KEEP) */
	__u16 pad;
	__u64 cap_permitted;
	__u64 cap_effective;
	__u64 cap_inheritable;
	__u32 ns[VIGIL_NS_COUNT];
	__u64 cgroup_id;
	char bin[VIGIL_BIN_KEEP]; /* leading bytes of the binary path */
};

/* ------------------------------------------------------------------------------------------
 * Hook engine: policies lowered to map entries read by shared generic programs.
 * See docs/bpf.md for the map layout and the memory each limit costs.
 * ------------------------------------------------------------------------------------------ */

#define VIGIL_MAX_POLICIES 256    /* policy slots (vigil_policies) */
#define VIGIL_MAX_HOOKS 512       /* hook slots (vigil_hooks) */
#define VIGIL_MAX_ATTACH 512      /* attach points (vigil_attach) */
#define VIGIL_ATTACH_HOOKS 8      /* hooks sharing one attach point */
#define VIGIL_SYSCALL_MAX 512     /* syscall numbers routed by sys_enter/sys_exit */
#define VIGIL_HOOK_ARGS 5         /* arguments read per hook */
#define VIGIL_HOOK_SELECTORS 5    /* selectors per hook */
#define VIGIL_SEL_ARG_FILTERS 5   /* matchArgs entries per selector */
#define VIGIL_SEL_RET_FILTERS 2   /* matchReturnArgs entries per selector */
#define VIGIL_SEL_BIN_FILTERS 2   /* matchBinaries entries per selector */
#define VIGIL_SEL_NS_FILTERS 4    /* matchNamespaces entries per selector */
#define VIGIL_SEL_CAP_FILTERS 2   /* matchCapabilities (and ...Changes) entries per selector */
#define VIGIL_SEL_ACTIONS 4       /* matchActions entries per selector */
#define VIGIL_FILTER_RANGES 4     /* ranges / port ranges per filter */
#define VIGIL_STR_MAX 248         /* leading bytes of a string compared by filters (LPM keys max 256) */
#define VIGIL_ARG_SLOT 4096       /* bytes of one argument kept in a record */
#define VIGIL_ANCESTOR_DEPTH 8    /* followForks / followChildren look this far up */
#define VIGIL_STAT_NUM 11         /* counters per policy (vigil_policy_stats) */
#define VIGIL_COST_SAMPLE 64      /* one hook evaluation in this many is timed (power of two) */
#define VIGIL_MAX_CONTAINERS 8192 /* container cgroups of the node (vigil_containers) */

/* Where a hook program found its arguments (vigil_hook_cfg.source). */
#define VIGIL_SRC_REGS 1          /* function/syscall registers (kprobe, uprobe, sys_enter) */
#define VIGIL_SRC_SYSCALL_WRAPPER 2 /* kprobe on __x64_sys_*: registers of the inner pt_regs */
#define VIGIL_SRC_TRACEPOINT 3    /* fields of a tracepoint record, by offset */
#define VIGIL_SRC_BTF_ARGS 4      /* trampoline programs (LSM, fmod_ret): bpf_get_func_arg */

/* vigil_hook_cfg.flags */
#define VIGIL_HOOK_RETURN (1u << 0)    /* the event is sent when the function returns */
#define VIGIL_HOOK_USER_MEM (1u << 1)  /* string/buffer pointers point into user memory */
#define VIGIL_HOOK_NEED_CAPS (1u << 2) /* some selector reads the current capabilities */
#define VIGIL_HOOK_NEED_NS (1u << 3)   /* some selector reads the current namespaces */
#define VIGIL_HOOK_CAN_OVERRIDE (1u << 4) /* the program can deny the call (LSM, fmod_ret) */
#define VIGIL_HOOK_NEED_PROC (1u << 5) /* some selector reads the process table entry */


/* Argument kinds (vigil_arg_cfg.kind): how the value is read and laid out in a record. */
#define VIGIL_ARGK_INT 1       /* integer of `size` bytes, signed if VIGIL_ARGF_SIGNED: s64/u64 */
#define VIGIL_ARGK_STR 2       /* NUL-terminated string: bytes without the NUL */
#define VIGIL_ARGK_BUF 3       /* buffer: bytes, length from size_arg (or the slot) */
#define VIGIL_ARGK_FD 4        /* file descriptor: the file's path */
#define VIGIL_ARGK_FILE 5      /* struct file *: path */
#define VIGIL_ARGK_PATH 6      /* struct path *: path */
#define VIGIL_ARGK_DENTRY 7    /* struct dentry *: path within its mount */
#define VIGIL_ARGK_BINPRM 8    /* struct linux_binprm *: the file's path */
#define VIGIL_ARGK_SOCK 9      /* struct sock *: vigil_sock_arg */
#define VIGIL_ARGK_FD_SOCK 10  /* file descriptor of a socket: vigil_sock_arg */
#define VIGIL_ARGK_SOCKADDR 11 /* struct sockaddr *: vigil_sockaddr_arg */
#define VIGIL_ARGK_CRED 12     /* struct cred *: vigil_creds */
#define VIGIL_ARGK_NETDEV 13   /* struct net_device *: its name (IFNAMSIZ), as a string */

/* vigil_arg_cfg.flags */
#define VIGIL_ARGF_SIGNED (1u << 0)
#define VIGIL_ARGF_RETURN_COPY (1u << 1) /* buffer read when the function returns */
#define VIGIL_ARGF_SIZE_ARG (1u << 2)    /* size_arg holds the buffer length */

/* Filter operators: the numbers of vigil.policy.v1.ArgOperator. */
#define VIGIL_OP_EQUAL 1
#define VIGIL_OP_NOT_EQUAL 2
#define VIGIL_OP_PREFIX 3
#define VIGIL_OP_NOT_PREFIX 4
#define VIGIL_OP_POSTFIX 5
#define VIGIL_OP_NOT_POSTFIX 6
#define VIGIL_OP_GT 7
#define VIGIL_OP_LT 8
#define VIGIL_OP_MASK 9
#define VIGIL_OP_IN_RANGE 10
#define VIGIL_OP_NOT_IN_RANGE 11
#define VIGIL_OP_IN_MAP 12
#define VIGIL_OP_NOT_IN_MAP 13
#define VIGIL_OP_SADDR 18
#define VIGIL_OP_NOT_SADDR 19
#define VIGIL_OP_DADDR 20
#define VIGIL_OP_NOT_DADDR 21
#define VIGIL_OP_SPORT 22
#define VIGIL_OP_NOT_SPORT 23
#define VIGIL_OP_SPORT_PRIV 24
#define VIGIL_OP_NOT_SPORT_PRIV 25
#define VIGIL_OP_DPORT 26
#define VIGIL_OP_NOT_DPORT 27
#define VIGIL_OP_DPORT_PRIV 28
#define VIGIL_OP_NOT_DPORT_PRIV 29
#define VIGIL_OP_PROTOCOL 30
#define VIGIL_OP_FAMILY 31
#define VIGIL_OP_STATE 32

/* Set operators (pids, namespaces, capabilities, namespace changes). */
#define VIGIL_SET_IN 1
#define VIGIL_SET_NOT_IN 2

/* Binary operators: the numbers of vigil.policy.v1.BinaryOperator. */
#define VIGIL_BIN_IN 1
#define VIGIL_BIN_NOT_IN 2
#define VIGIL_BIN_PREFIX 3
#define VIGIL_BIN_NOT_PREFIX 4
#define VIGIL_BIN_POSTFIX 5
#define VIGIL_BIN_NOT_POSTFIX 6

/* vigil_selector.pid_flags */
#define VIGIL_PID_FOLLOW_FORKS (1u << 0)
#define VIGIL_PID_NAMESPACE (1u << 1)

/* Actions: the numbers of vigil.policy.v1.ActionKind. vigil_hook_rec.actions has bit (1 << kind). */
#define VIGIL_ACT_POST 1
#define VIGIL_ACT_NOPOST 2
#define VIGIL_ACT_SIGKILL 3
#define VIGIL_ACT_SIGNAL 4
#define VIGIL_ACT_OVERRIDE 5

/* Rate-limit scopes (vigil_action.scope). */
#define VIGIL_SCOPE_THREAD 1
#define VIGIL_SCOPE_PROCESS 2
#define VIGIL_SCOPE_GLOBAL 3

/* vigil_policy_cfg.mode */
#define VIGIL_MODE_ENFORCE 1
#define VIGIL_MODE_MONITOR 2

/* vigil_policy_cfg.scope_flags */
#define VIGIL_POL_SCOPED (1u << 0) /* only tasks in the scope run the hooks (else every task) */
#define VIGIL_POL_HOST (1u << 1)   /* host tasks (cgroup not in vigil_containers) are in scope */

/* Per-policy counters: index policy * VIGIL_STAT_NUM + one of these. */
#define VIGIL_STAT_MATCHED 0
#define VIGIL_STAT_POSTED 1
#define VIGIL_STAT_LOST 2
#define VIGIL_STAT_RATE_LIMITED 3
#define VIGIL_STAT_SIGKILL 4
#define VIGIL_STAT_SIGNAL 5
#define VIGIL_STAT_OVERRIDE 6
#define VIGIL_STAT_MONITORED 7
/* Cost: evaluations (hook runs of an enabled policy, entry and return), and of the timed ones
 * (one in VIGIL_COST_SAMPLE per CPU) how many and their nanoseconds. The sensor estimates the
 * policy's CPU time as evaluations x ns / samples. */
#define VIGIL_STAT_EVALS 8
#define VIGIL_STAT_COST_SAMPLES 9
#define VIGIL_STAT_COST_NS 10

/* vigil_hook_rec.flags */
#define VIGIL_HF_RETURN (1u << 0)    /* `ret` holds the return value */
#define VIGIL_HF_MONITOR (1u << 1)   /* enforcing actions were not executed (monitor mode) */
#define VIGIL_HF_NO_PROC (1u << 2)   /* the process was not in the kernel table */

/* vigil_hook_rec.arg_aux bits for path-like and string arguments. */
#define VIGIL_AUX_CUT (1u << 31)     /* the value was cut to fit the record */
#define VIGIL_AUX_ERR (1u << 30)     /* the value could not be read */
#define VIGIL_AUX_LEN_MASK 0x3fffffffu /* the value's full length where known */

struct vigil_config {
	__u32 self_tgid;   /* the sensor: its own syscalls never match */
	__u32 host_userns; /* inode of the initial user namespace */
};

struct vigil_policy_cfg {
	__u32 enabled; /* 0: the policy's hooks do nothing */
	__u32 mode;    /* VIGIL_MODE_* */
	/*
	 * Workload scope (podSelector, containerSelector, TracingPolicyNamespaced): with
	 * VIGIL_POL_SCOPED, a task whose cgroup id is in vigil_ints under this set id is in scope.
	 * 0: no container is selected (a hostSelector-only policy).
	 */
	__u32 scope_set;
	/*
	 * VIGIL_POL_*. Without VIGIL_POL_SCOPED every task is in scope; with it, a task is in scope
	 * when its cgroup is in scope_set, or (VIGIL_POL_HOST: hostSelector matched this node) when
	 * its cgroup is no container's.
	 */
	__u32 scope_flags;
};

struct vigil_arg_cfg {
	__u8 kind;     /* VIGIL_ARGK_* */
	__u8 index;    /* register / BTF argument position */
	__u8 size;     /* VIGIL_ARGK_INT: bytes (1, 2, 4, 8); tracepoint fields: field size */
	__u8 flags;    /* VIGIL_ARGF_* */
	__u8 size_arg; /* VIGIL_ARGF_SIZE_ARG: position (in the hook's args) of the length */
	__u8 pad;
	__u16 tp_offset; /* VIGIL_SRC_TRACEPOINT: field offset in the record */
	/*
	 * Strings and buffers: bytes read before the selectors decide (0: the whole slot). The
	 * sensor sets it to the longest compared value + 2 when every filter on the argument is an
	 * (in)equality or (non-)prefix: enough to decide, and to tell a longer string apart. A
	 * record that posts reads the argument again in full.
	 */
	__u16 peek;
	__u16 pad2;
};

/* One matchArgs / matchReturnArgs entry. */
struct vigil_filter {
	__u8 op;       /* VIGIL_OP_* */
	__u8 arg;      /* position in the hook's args (ignored for return filters) */
	__u8 nranges;
	__u8 is_signed;
	__u32 set;     /* set id in vigil_ints / vigil_strs / vigil_addrs (v6: set + 1) */
	__u64 value;   /* GT, LT, MASK */
	__u64 ranges[VIGIL_FILTER_RANGES][2]; /* inclusive [min, max]; signed when is_signed */
};

struct vigil_bin_filter {
	__u8 op;     /* VIGIL_BIN_* */
	__u8 follow; /* followChildren: ancestors' binaries count too */
	__u16 pad;
	__u32 set;   /* vigil_strs set (postfix: reversed strings) */
};

struct vigil_ns_filter {
	__u8 slot; /* VIGIL_NS_* */
	__u8 op;   /* VIGIL_SET_* */
	__u16 pad;
	__u32 set; /* vigil_ints set of inode numbers */
};

struct vigil_cap_filter {
	__u8 which;  /* 0 effective, 1 inheritable, 2 permitted */
	__u8 op;     /* VIGIL_SET_* */
	__u8 ns_cap; /* isNamespaceCapability: only outside the host user namespace */
	__u8 pad;
	__u32 pad2;
	__u64 mask;
};

struct vigil_action {
	__u8 kind;  /* VIGIL_ACT_* */
	__u8 scope; /* VIGIL_SCOPE_* for rate limits */
	__u16 pad;
	__s32 arg;  /* SIGNAL: signal number; OVERRIDE: the return value (negative errno) */
	__u64 rate_ns; /* POST: minimum interval between identical events, 0 = none */
};

struct vigil_selector {
	__u8 n_bin, n_ns, n_cap, n_capchg;
	__u8 n_args, n_ret, n_actions;
	__u8 pid_op; /* 0: no matchPIDs */
	__u8 pid_flags;
	__u8 nschg_op;    /* 0: no matchNamespaceChanges */
	__u16 nschg_mask; /* bit per VIGIL_NS_* slot */
	__u32 pid_set;
	struct vigil_bin_filter bins[VIGIL_SEL_BIN_FILTERS];
	struct vigil_ns_filter ns[VIGIL_SEL_NS_FILTERS];
	struct vigil_cap_filter caps[VIGIL_SEL_CAP_FILTERS];
	struct vigil_cap_filter capchg[VIGIL_SEL_CAP_FILTERS];
	struct vigil_filter args[VIGIL_SEL_ARG_FILTERS];
	struct vigil_filter ret[VIGIL_SEL_RET_FILTERS];
	struct vigil_action actions[VIGIL_SEL_ACTIONS];
};

struct vigil_hook_cfg {
	__u32 policy; /* slot in vigil_policies */
	__u32 generation; /* of the slot, echoed in records */
	__u32 flags;  /* VIGIL_HOOK_* */
	__u8 source;  /* VIGIL_SRC_* */
	__u8 nargs;
	__u8 nsel;    /* 0: every call matches and is posted */
	__u8 ret_signed;
	__u8 filter_args; /* bit per argument some matchArgs filter reads */
	__u8 pad[3];
	struct vigil_arg_cfg args[VIGIL_HOOK_ARGS];
	struct vigil_selector sel[VIGIL_HOOK_SELECTORS];
};

/* Hooks served by one attach point (vigil_attach[attach id]). */
struct vigil_attach_hooks {
	__u32 n;
	__u32 hooks[VIGIL_ATTACH_HOOKS];
};

struct vigil_int_key {
	__u32 set;
	__u32 pad;
	__u64 value;
};

/* LPM key for string sets: set id then the string's bytes; prefixlen counts the set id. */
struct vigil_str_key {
	__u32 prefixlen;
	__u32 set;
	__u8 data[VIGIL_STR_MAX];
};

/* LPM key for address sets; IPv4 addresses use the first 4 bytes. */
struct vigil_addr_key {
	__u32 prefixlen;
	__u32 set;
	__u8 addr[16];
};

/* Entry state kept for a return probe until the function returns (vigil_pending). */
struct vigil_pending {
	__u64 raw[VIGIL_HOOK_ARGS];
	__u32 sel_mask; /* selectors whose entry filters passed; bit 31: no selectors */
	__u32 pad;
};

/* Rate-limit key (vigil_ratelimit). */
struct vigil_rate_key {
	__u32 hook;
	__u32 scope_id; /* tid, tgid or 0 */
	__u64 hash;     /* of the event's argument bytes */
};

struct vigil_sock_arg {
	__u16 family, sock_type, protocol, state;
	__u16 sport, dport; /* host order */
	__u32 pad;
	__u8 saddr[16];
	__u8 daddr[16];
	__u64 cookie; /* the socket's kernel address: identifies it across events */
};

struct vigil_sockaddr_arg {
	__u16 family;
	__u16 port; /* host order */
	__u32 pad;
	__u8 addr[16];
};

/*
 * A hook matched. The arguments follow back to back in `data`, argument i taking arg_len[i]
 * bytes laid out by arg_kind[i]: INT 8 bytes, strings/buffers/paths raw bytes, SOCK
 * vigil_sock_arg, SOCKADDR vigil_sockaddr_arg, CRED vigil_creds.
 */
struct vigil_hook_rec {
	struct vigil_msg_header hdr;
	__u32 pid;
	__u32 tid;
	__u64 ktime; /* process identity from the table; 0 when unknown */
	__u32 hook;  /* slot in vigil_hooks */
	__u32 policy;
	__u32 generation;
	__u16 selector; /* index of the selector that matched; 0xffff: hook without selectors */
	__u16 actions;  /* bit (1 << VIGIL_ACT_*) per action that ran (or would have, in monitor) */
	__s64 ret;
	__u32 flags; /* VIGIL_HF_* */
	__u32 nargs;
	__u32 arg_len[VIGIL_HOOK_ARGS];
	__u32 arg_aux[VIGIL_HOOK_ARGS];
	__u8 arg_kind[VIGIL_HOOK_ARGS];
	__u8 pad[3];
};

#define VIGIL_HOOK_DATA_MAX (VIGIL_HOOK_ARGS * VIGIL_ARG_SLOT)

/* ------------------------------------------------------------------------------------------
 * Task iterator (iter.bpf.c): the kernel's running processes, read to heal the sensor's process
 * cache after ring-buffer loss.
 * ------------------------------------------------------------------------------------------ */

/* vigil_task.flags */
#define VIGIL_TF_ENTRY 1 /* ktime, parent_ktime and kflags come from vigil_procs */

/* One running thread-group leader (kernel threads are left out). */
struct vigil_task {
	__u32 pid;  /* tgid */
	__u32 ppid; /* real parent's tgid */
	__u64 start_ns;     /* task->start_boottime: boot ns at fork */
	__u64 ktime;        /* identity in vigil_procs (boot ns of the last exec or the fork) */
	__u64 parent_ktime; /* the parent's identity, as the table has it */
	__u32 kflags;       /* VIGIL_KF_* of the table entry */
	__u32 flags;        /* VIGIL_TF_* */
};

/* ------------------------------------------------------------------------------------------
 * Self-protection (protect.bpf.c, `--self-protection`): LSM programs that refuse other
 * processes' attempts on the sensor, its pinned objects and its BPF links and maps.
 * ------------------------------------------------------------------------------------------ */

/* vigil_protect_rec.hook: the LSM hook that refused. */
#define VIGIL_PROTECT_PTRACE 1  /* ptrace_access_check */
#define VIGIL_PROTECT_KILL 2    /* task_kill */
#define VIGIL_PROTECT_UNLINK 3  /* inode_unlink */
#define VIGIL_PROTECT_RMDIR 4   /* inode_rmdir */
#define VIGIL_PROTECT_RENAME 5  /* inode_rename */
#define VIGIL_PROTECT_BPF 6     /* bpf (link detach / update) */
#define VIGIL_PROTECT_BPF_MAP 7 /* bpf_map (a writable descriptor of a protected map) */

#define VIGIL_PROTECT_NAME_MAX 64  /* bytes of a dentry name kept in a refusal record */
#define VIGIL_PROTECT_DEPTH 8      /* parent levels walked to find the instance directory */
#define VIGIL_PROTECT_IDS 4096     /* protected link ids and map ids (each map) */

/* The single entry of vigil_protect_cfg, written by the sensor once its programs are attached. */
struct vigil_protect_cfg {
	__u32 tgid;    /* the protected sensor; 0: protection dormant */
	__u32 pin_dev; /* kernel dev_t (MKDEV: major << 20 | minor) of the bpffs holding the pins */
	__u64 pin_ino; /* inode number of /sys/fs/bpf/vigil/<instance> */
};

/* A refused operation. */
struct vigil_protect_rec {
	struct vigil_msg_header hdr;
	__u32 pid;   /* the caller's tgid */
	__u32 tid;
	__u64 ktime; /* the caller's identity from vigil_procs; 0 when unknown */
	__u32 hook;  /* VIGIL_PROTECT_* */
	__u32 target_pid; /* ptrace, kill: the target thread's tgid */
	__u32 arg;   /* ptrace: mode; kill: signal; bpf: command; bpf_map: fmode */
	__u32 name_len; /* bytes of name in use */
	__u64 id;    /* bpf: link id; bpf_map: map id; inode hooks: the dentry's inode number */
	char name[VIGIL_PROTECT_NAME_MAX]; /* inode hooks: the name being removed or renamed */
};

#endif /* VIGIL_ABI_H */

/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/*
 * The record ABI between Vigil's BPF programs and the sensor.
 *
 * Every struct here is mirrored field for field in sensor-bpf/src/abi.rs; a test there compiles
 * this header with the host C compiler and compares sizes and offsets, so a change on one side
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
#endif

/* Record kinds (vigil_msg_header.kind). */
#define VIGIL_MSG_EXEC 1
#define VIGIL_MSG_FORK 2
#define VIGIL_MSG_EXIT 3

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
#define VIGIL_CNT_NUM 8

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
	__u32 pad;
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

#endif /* VIGIL_ABI_H */

// SPDX-License-Identifier: GPL-2.0-only
/*
 * Process lifecycle: exec, new thread groups, thread-group exit.
 *
 * Attaches to BTF tracepoints (tp_btf), which exist on every kernel Vigil targets (5.8+ with BTF)
 * and work where kprobes and trampolines do not. Each program keeps the kernel-side process
 * table (vigil_procs) current, so that later hooks can attach a process identity to their
 * records, and writes one record to the ring buffer. Nothing here allocates per event: the large
 * buffers live in a per-CPU scratch map.
 */
#define __VIGIL_BPF__
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "vigil_abi.h"
#include "vigil_common.h"

char LICENSE[] SEC("license") = "GPL";

/*
 * TGIDs whose exit was reported: two threads exiting together can both see the group's live
 * count at zero, and only the first to insert here reports. A fork deletes the child's TGID, so
 * a reused pid starts clean. LRU: an old key only matters for the microseconds of that race.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 8192);
	__type(key, __u32);
	__type(value, __u8);
} vigil_exited SEC(".maps");

/* Per-CPU room for the exec record: too large for the BPF stack. */
struct scratch {
	struct vigil_exec rec;
	char data[VIGIL_EXEC_DATA_MAX];
	struct vigil_proc proc;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct scratch);
} vigil_scratch SEC(".maps");

static __always_inline struct scratch *get_scratch(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&vigil_scratch, &zero);
}

/* The task's pid in its own (innermost) PID namespace: a container's view of it. At exec the
 * task leads its thread group, so this is the tgid there. */
static __always_inline __u32 task_nspid(struct task_struct *task)
{
	struct pid *tpid = BPF_CORE_READ(task, thread_pid);
	unsigned int level = BPF_CORE_READ(tpid, level);

	return BPF_CORE_READ(tpid, numbers[level & 31].nr);
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(vigil_exec, struct task_struct *task, pid_t old_pid, struct linux_binprm *bprm)
{
	struct scratch *s = get_scratch();
	char *pb = get_pathbuf();
	struct vigil_exec *r;
	struct vigil_proc *prev, *parent, *p;
	struct task_struct *real_parent;
	struct mm_struct *mm;
	struct path fpath, cwd;
	__u32 tgid, pos, off, len, kflags = 0;
	__u64 arg_start, arg_end, total;
	const char *cg_name;
	bool cut = false;
	long n;

	if (!s || !pb)
		return 0;
	count(VIGIL_CNT_EXEC_SEEN);
	r = &s->rec;
	tgid = BPF_CORE_READ(task, tgid);
	real_parent = BPF_CORE_READ(task, real_parent);

	r->hdr.kind = VIGIL_MSG_EXEC;
	r->hdr.time = bpf_ktime_get_boot_ns();
	r->pid = tgid;
	r->tid = BPF_CORE_READ(task, pid);
	r->ppid = BPF_CORE_READ(real_parent, tgid);
	r->ktime = r->hdr.time;
	r->cgroup_id = bpf_get_current_cgroup_id();
	r->nspid = task_nspid(task);
	read_creds(task, &r->creds);
	read_namespaces(task, r->ns);

	/* The first exec after a fork is flagged `clone`, as the process was born by one. */
	prev = bpf_map_lookup_elem(&vigil_procs, &tgid);
	if (prev && (prev->kflags & VIGIL_KF_CLONE))
		kflags |= VIGIL_KF_CLONE;
	parent = bpf_map_lookup_elem(&vigil_procs, &r->ppid);
	r->parent_ktime = parent ? parent->ktime : 0;
	if (!parent)
		kflags |= VIGIL_KF_NO_PARENT;

	/* Binary: the file being executed, resolved, not argv[0]. */
	BPF_CORE_READ_INTO(&fpath, bprm, file, f_path);
	pos = resolve_path(&fpath, pb, &cut);
	if (cut)
		kflags |= VIGIL_KF_TRUNC_BINARY;
	len = copy_path(s->data, pb, pos);
	r->binary_len = len;
	off = len;

	/* Arguments: the argv block of the new image, NUL-separated. */
	mm = BPF_CORE_READ(task, mm);
	arg_start = BPF_CORE_READ(mm, arg_start);
	arg_end = BPF_CORE_READ(mm, arg_end);
	total = arg_end > arg_start ? arg_end - arg_start : 0;
	len = total > VIGIL_ARGS_MAX ? VIGIL_ARGS_MAX : total;
	if (total > VIGIL_ARGS_MAX)
		kflags |= VIGIL_KF_TRUNC_ARGS;
	r->args_total = total;
	off &= (2 * VIGIL_PATH_MAX - 1);
	if (off > VIGIL_PATH_MAX)
		off = VIGIL_PATH_MAX;
	len &= (2 * VIGIL_ARGS_MAX - 1);
	if (len > VIGIL_ARGS_MAX)
		len = VIGIL_ARGS_MAX;
	n = bpf_probe_read_user(&s->data[off], len, (void *)arg_start);
	if (n < 0) {
		kflags |= VIGIL_KF_ERR_ARGS;
		len = 0;
	}
	r->args_len = len;
	off += len;

	/* Working directory. */
	cut = false;
	BPF_CORE_READ_INTO(&cwd, task, fs, pwd);
	pos = resolve_path(&cwd, pb, &cut);
	if (cut)
		kflags |= VIGIL_KF_TRUNC_CWD;
	if (off > VIGIL_PATH_MAX + VIGIL_ARGS_MAX)
		off = VIGIL_PATH_MAX + VIGIL_ARGS_MAX;
	len = copy_path(&s->data[off], pb, pos);
	r->cwd_len = len;
	off += len;

	/* Last component of the task's cgroup v2 path: the container id source. */
	if (off > 2 * VIGIL_PATH_MAX + VIGIL_ARGS_MAX)
		off = 2 * VIGIL_PATH_MAX + VIGIL_ARGS_MAX;
	cg_name = BPF_CORE_READ(task, cgroups, dfl_cgrp, kn, name);
	n = bpf_probe_read_kernel_str(&s->data[off], VIGIL_CGROUP_NAME_MAX, cg_name);
	len = n > 0 ? n - 1 : 0;
	len &= NAME_MASK;
	r->cgroup_name_len = len;
	off += len;

	r->kflags = kflags;
	if (off > VIGIL_EXEC_DATA_MAX)
		off = VIGIL_EXEC_DATA_MAX;
	r->hdr.size = sizeof(*r) + off;

	/* Table entry for later hooks; identity changes with every exec. */
	p = &s->proc;
	p->pid = tgid;
	p->ppid = r->ppid;
	p->ktime = r->ktime;
	p->parent_ktime = r->parent_ktime;
	p->kflags = VIGIL_KF_EXECVE;
	p->bin_len = r->binary_len;
	p->cap_permitted = r->creds.cap_permitted;
	p->cap_effective = r->creds.cap_effective;
	p->cap_inheritable = r->creds.cap_inheritable;
	__builtin_memcpy(p->ns, r->ns, sizeof(p->ns));
	p->cgroup_id = r->cgroup_id;
	bpf_probe_read_kernel(p->bin, VIGIL_BIN_KEEP, s->data);
	if (bpf_map_update_elem(&vigil_procs, &tgid, p, BPF_ANY))
		count(VIGIL_CNT_PROC_TABLE_FULL);

	len = r->hdr.size;
	if (len > sizeof(*r) + VIGIL_EXEC_DATA_MAX)
		len = sizeof(*r) + VIGIL_EXEC_DATA_MAX;
	if (bpf_ringbuf_output(&vigil_events, r, len, wakeup_flag()))
		count(VIGIL_CNT_RB_LOST_EXEC);
	return 0;
}

SEC("tp_btf/sched_process_fork")
int BPF_PROG(vigil_fork, struct task_struct *parent_task, struct task_struct *child)
{
	struct vigil_fork r = {};
	struct vigil_proc *parent;
	struct scratch *s;
	__u32 ptgid;

	/* Threads are not processes: only a new thread group gets an identity. */
	r.pid = BPF_CORE_READ(child, tgid);
	if (r.pid != BPF_CORE_READ(child, pid))
		return 0;
	if (BPF_CORE_READ(child, flags) & PF_KTHREAD)
		return 0;
	bpf_map_delete_elem(&vigil_exited, &r.pid);
	count(VIGIL_CNT_FORK_SEEN);
	s = get_scratch();
	if (!s)
		return 0;
	ptgid = BPF_CORE_READ(parent_task, tgid);
	r.hdr.kind = VIGIL_MSG_FORK;
	r.hdr.size = sizeof(r);
	r.hdr.time = bpf_ktime_get_boot_ns();
	r.ppid = ptgid;
	r.ktime = r.hdr.time;

	parent = bpf_map_lookup_elem(&vigil_procs, &ptgid);
	if (parent) {
		/* A child starts as a copy of its parent: same binary, caps, namespaces. */
		bpf_probe_read_kernel(&s->proc, sizeof(s->proc), parent);
		r.parent_ktime = parent->ktime;
	} else {
		__builtin_memset(&s->proc, 0, sizeof(s->proc));
	}
	s->proc.pid = r.pid;
	s->proc.ppid = ptgid;
	s->proc.ktime = r.ktime;
	s->proc.parent_ktime = r.parent_ktime;
	s->proc.kflags = VIGIL_KF_CLONE;
	if (bpf_map_update_elem(&vigil_procs, &r.pid, &s->proc, BPF_ANY))
		count(VIGIL_CNT_PROC_TABLE_FULL);

	if (bpf_ringbuf_output(&vigil_events, &r, sizeof(r), wakeup_flag()))
		count(VIGIL_CNT_RB_LOST_FORK);
	return 0;
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(vigil_exit, struct task_struct *task)
{
	struct vigil_exit r = {};
	struct vigil_proc *p;
	__u8 one = 1;
	int live;

	/*
	 * Fires for every exiting thread; the group is gone when its live count reached zero,
	 * which do_exit() decrements before this tracepoint on every kernel we support.
	 */
	live = BPF_CORE_READ(task, signal, live.counter);
	if (live != 0)
		return 0;
	if (BPF_CORE_READ(task, flags) & PF_KTHREAD)
		return 0;
	r.hdr.kind = VIGIL_MSG_EXIT;
	r.hdr.size = sizeof(r);
	r.hdr.time = bpf_ktime_get_boot_ns();
	r.pid = BPF_CORE_READ(task, tgid);
	r.tid = BPF_CORE_READ(task, pid);
	r.exit_code = BPF_CORE_READ(task, exit_code);
	/* Two threads exiting together can both read a zero live count: the first one reports. */
	if (bpf_map_update_elem(&vigil_exited, &r.pid, &one, BPF_NOEXIST))
		return 0;
	p = bpf_map_lookup_elem(&vigil_procs, &r.pid);
	if (p) {
		r.ktime = p->ktime;
		bpf_map_delete_elem(&vigil_procs, &r.pid);
	}
	count(VIGIL_CNT_EXIT_SEEN);
	if (bpf_ringbuf_output(&vigil_events, &r, sizeof(r), wakeup_flag()))
		count(VIGIL_CNT_RB_LOST_EXIT);
	return 0;
}

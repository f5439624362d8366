// SPDX-License-Identifier: GPL-2.0-only
/*
 * Task iterator: one vigil_task record per running thread-group leader, with the identity the
 * process table (vigil_procs) holds for it.
 *
 * The sensor reads it after exec, fork or exit records were lost (the ring buffer was full), to
 * heal its process cache: processes it never heard of are added, entries of processes that are
 * gone are expired. The process table itself is updated before a record is written, so it knows
 * every process whose record was lost. One run per heal; nothing here runs on a hot path.
 */
#define __VIGIL_BPF__
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "vigil_abi.h"
#include "vigil_common.h"

char LICENSE[] SEC("license") = "GPL";

SEC("iter/task")
int vigil_iter_tasks(struct bpf_iter__task *ctx)
{
	struct seq_file *seq = ctx->meta->seq;
	struct task_struct *task = ctx->task;
	struct vigil_task r = {};
	struct vigil_proc *p;

	/* The last call of a walk has no task. */
	if (!task)
		return 0;
	r.pid = BPF_CORE_READ(task, tgid);
	if (r.pid != (__u32)BPF_CORE_READ(task, pid))
		return 0;
	if (BPF_CORE_READ(task, flags) & PF_KTHREAD)
		return 0;
	r.ppid = BPF_CORE_READ(task, real_parent, tgid);
	r.start_ns = BPF_CORE_READ(task, start_boottime);
	p = bpf_map_lookup_elem(&vigil_procs, &r.pid);
	if (p) {
		r.ktime = p->ktime;
		r.parent_ktime = p->parent_ktime;
		r.kflags = p->kflags;
		r.flags = VIGIL_TF_ENTRY;
	}
	bpf_seq_write(seq, &r, sizeof(r));
	return 0;
}

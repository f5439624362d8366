// SPDX-License-Identifier: GPL-2.0-only
/*
 * Generic hook programs: every TracingPolicy hook runs through the code in this file.
 *
 * A policy is not compiled into a program. The sensor lowers it to entries in the maps of
 * hook_maps.h (hook configuration, selectors, value sets) and attaches one of the programs at
 * the end of this file wherever a hook needs it. When a program runs it finds the hooks of its
 * attach point, evaluates their selectors against the current process and the call's
 * arguments, runs the actions of the first selector that matches, and writes one record to the
 * shared ring buffer. Nothing reaches user space for a call that matches no selector.
 *
 * How a program knows its attach point (one verification per program kind, not per point):
 *   - syscall hooks on per-syscall tracepoints, and on the raw sys_enter / sys_exit route
 *     (kernels without per-syscall tracepoints): by syscall number through vigil_sys_attach;
 *   - tracepoints, kprobes, kretprobes, uprobes: the BPF cookie of the link (kernels >= 5.15);
 *     where cookies are missing, the *_id variants are loaded once per attach point with
 *     VIGIL_ATTACH_ID set;
 *   - BPF-LSM: the kernel binds an LSM program to its hook at load, so one instance per LSM
 *     hook, with VIGIL_ATTACH_ID.
 *
 * The stages of one run are global functions: the verifier checks each once, on its own,
 * instead of once per call site and path, which keeps every program far below its instruction
 * budget. They take only scalars (kernels before 5.12 accept nothing else) and share state
 * through the per-CPU scratch area.
 *
 *   entry program ─► vigil_run_attach ─► for each hook of the attach point: vigil_run_hook
 *       policy enabled? task in scope? (at most two lookups for a task out of scope)
 *       1. vigil_load_process, vigil_sel_process ── process filters of the selectors that
 *          have any
 *       2. vigil_read_arg (peek) ──────────────────── only the arguments the filters read
 *       3. vigil_filter_arg ──────────────────────── matchArgs; first selector left wins
 *          (return hooks save their state here and finish at return with vigil_sel_ret)
 *       4. vigil_act (vigil_action) ─ actions; then vigil_read_arg (full) and vigil_post:
 *          rate limit, record ─► ring buffer
 */
#define __VIGIL_BPF__
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include "vigil_abi.h"
#include "vigil_common.h"
#include "hook_maps.h"
#include "hook_process.h"
#include "hook_args.h"
#include "hook_filters.h"
#include "hook_actions.h"

char LICENSE[] SEC("license") = "GPL";

/*
 * Entry of a call: filters, then actions and a record (or, for return hooks, saved state).
 * Inlined into vigil_run_hook: on the path of a call that matches nothing it makes no calls
 * but the ones that do work (argument reads, filters). On some CPUs every function return is
 * expensive (return-thunk mitigations), so the common path keeps them few.
 */
static __always_inline int hook_entry(struct hook_scratch *s, struct vigil_hook_cfg *h,
				      __u32 slot)
{
	__u32 nsel, filter_args;
	struct vigil_selector *sl;

	nsel = h->nsel > VIGIL_HOOK_SELECTORS ? VIGIL_HOOK_SELECTORS : h->nsel;
	filter_args = h->filter_args;
	s->mask = 0;
	if (nsel) {
		if (h->flags & (VIGIL_HOOK_NEED_PROC | VIGIL_HOOK_NEED_CAPS | VIGIL_HOOK_NEED_NS))
			vigil_load_process(slot);
		for (__u32 i = 0; i < VIGIL_HOOK_SELECTORS; i++) {
			if (i >= nsel)
				break;
			sl = sel_at(h, i);
			if (!sl)
				break;
			if (!has_process_filters(sl) || vigil_sel_process(slot, i))
				s->mask |= 1u << i;
		}
		if (!s->mask)
			return 0; /* no selector can match this process: no argument is read */
	}
	fetch_raw(s, h);
	if (nsel && filter_args) {
		read_args(s, h, slot, filter_args, READ_PEEK);
		for (__u32 i = 0; i < VIGIL_HOOK_SELECTORS; i++) {
			if (i >= nsel)
				break;
			if (!(s->mask & (1u << i)))
				continue;
			sl = sel_at(h, i);
			if (!sl)
				break;
			for (__u32 j = 0; j < VIGIL_SEL_ARG_FILTERS; j++) {
				if (j >= sl->n_args)
					break;
				if (!vigil_filter_arg(slot, i, j)) {
					s->mask &= ~(1u << i);
					break;
				}
			}
		}
		if (!s->mask)
			return 0;
	} else {
		args_reset(s);
	}
	if (!nsel)
		s->mask = NO_SELECTORS;
	if (h->flags & VIGIL_HOOK_RETURN) {
		__u64 key = (bpf_get_current_pid_tgid() << 32) | slot;

		__builtin_memcpy(s->tmp.pending.raw, s->raw, sizeof(s->raw));
		s->tmp.pending.sel_mask = s->mask;
		s->tmp.pending.pad = 0;
		if (bpf_map_update_elem(&vigil_pending, &key, &s->tmp.pending, BPF_ANY))
			count(VIGIL_CNT_PENDING_FULL);
		return 0;
	}
	return act_and_post(s, h, slot);
}

/* Return of a call whose entry matched: return filters, actions, record. */
__noinline int vigil_hook_exit(__u32 slot)
{
	struct hook_scratch *s = scratch();
	__u64 key = (bpf_get_current_pid_tgid() << 32) | slot;
	struct vigil_hook_cfg *h = hook_cfg(slot);
	struct vigil_pending *p;
	__u32 nsel;

	if (!s || !h)
		return 0;
	p = bpf_map_lookup_elem(&vigil_pending, &key);
	if (!p)
		return 0;
	s->mask = p->sel_mask;
	__builtin_memcpy(s->raw, p->raw, sizeof(s->raw));
	bpf_map_delete_elem(&vigil_pending, &key);
	args_reset(s);
	nsel = h->nsel > VIGIL_HOOK_SELECTORS ? VIGIL_HOOK_SELECTORS : h->nsel;
	if (s->mask != NO_SELECTORS) {
		for (__u32 i = 0; i < VIGIL_HOOK_SELECTORS; i++) {
			if (i >= nsel)
				break;
			if ((s->mask & (1u << i)) && !vigil_sel_ret(slot, i))
				s->mask &= ~(1u << i);
		}
		if (!s->mask)
			return 0;
	}
	return act_and_post(s, h, slot);
}

/* The work of one hook for a task that may be in its policy's scope. */
static __always_inline int run_hook_body(struct hook_scratch *s, struct vigil_hook_cfg *h,
					 struct vigil_policy_cfg *pol, __u32 slot)
{
	if ((pol->scope_flags & VIGIL_POL_SCOPED) && !in_scope(pol))
		return 0;
	if (s->stage == STAGE_EXIT)
		return (h->flags & VIGIL_HOOK_RETURN) ? vigil_hook_exit(slot) : 0;
	return hook_entry(s, h, slot);
}

/*
 * One hook of the attach point: its policy must be enabled and the task in its scope.
 * Every evaluation is counted per policy, and one in VIGIL_COST_SAMPLE (per CPU) is timed, so
 * that what a policy costs is known at two clock reads per 64 evaluations. The body is called
 * once (not once per branch) so that it is inlined once.
 */
__noinline int vigil_run_hook(__u32 slot)
{
	struct hook_scratch *s = scratch();
	struct vigil_hook_cfg *h = hook_cfg(slot);
	struct vigil_policy_cfg *pol;
	__u32 idx, policy;
	__u64 *evals, t0 = 0;
	int r;

	if (!s || !h)
		return 0;
	policy = h->policy;
	pol = bpf_map_lookup_elem(&vigil_policies, &policy);
	if (!pol || !pol->enabled)
		return 0;
	idx = policy * VIGIL_STAT_NUM + VIGIL_STAT_EVALS;
	evals = bpf_map_lookup_elem(&vigil_policy_stats, &idx);
	if (evals) {
		*evals += 1;
		if (!(*evals & (VIGIL_COST_SAMPLE - 1)))
			t0 = bpf_ktime_get_ns();
	}
	r = run_hook_body(s, h, pol, slot);
	if (t0) {
		stat_add(policy, VIGIL_STAT_COST_NS, bpf_ktime_get_ns() - t0);
		stat(policy, VIGIL_STAT_COST_SAMPLES);
	}
	return r;
}

/* Runs every hook of attach point `attach`; returns the override value (0: none). */
__noinline int vigil_run_attach(__u32 attach)
{
	struct vigil_attach_hooks *at = bpf_map_lookup_elem(&vigil_attach, &attach);
	struct hook_scratch *s = scratch();
	struct vigil_config *cfg;
	__u32 zero = 0, n;

	if (!s)
		return 0;
	if (!at || !at->n) {
		count(VIGIL_CNT_HOOK_NO_CFG);
		return 0;
	}
	cfg = bpf_map_lookup_elem(&vigil_config, &zero);
	if (cfg && cfg->self_tgid == bpf_get_current_pid_tgid() >> 32)
		return 0;
	s->override = 0;
	n = at->n;
	for (__u32 i = 0; i < VIGIL_ATTACH_HOOKS; i++) {
		if (i >= n)
			break;
		vigil_run_hook(at->hooks[i]);
	}
	return s->override;
}

/* The call as a program entry sees it: stage and return value into the scratch area. */
static __always_inline struct hook_scratch *begin(__u32 stage, __s64 ret)
{
	struct hook_scratch *s = scratch();

	if (s) {
		s->stage = stage;
		s->ret = ret;
	}
	return s;
}

/* ------------------------------------------------------------------------ program entries */

/* Tracepoints: the attach point from the link's cookie (kernels >= 5.15). */
SEC("tracepoint/vigil")
int vigil_tp(void *ctx)
{
	struct hook_scratch *s = begin(STAGE_ENTRY, 0);

	if (!s)
		return 0;
	s->tp_ctx = (__u64)ctx;
	vigil_run_attach(bpf_get_attach_cookie(ctx));
	return 0;
}

/* Kernels without BPF cookies: one instance per tracepoint, VIGIL_ATTACH_ID set at load. */
SEC("tracepoint/vigil_id")
int vigil_tp_id(void *ctx)
{
	struct hook_scratch *s = begin(STAGE_ENTRY, 0);

	if (!s)
		return 0;
	s->tp_ctx = (__u64)ctx;
	vigil_run_attach(VIGIL_ATTACH_ID);
	return 0;
}

/*
 * Syscall hooks on the syscall's own tracepoints (syscalls/sys_enter_<name>, sys_exit_<name>):
 * one program pair for all of them, routed by the syscall number the record carries, so a
 * syscall no hook watches runs nothing of Vigil. The kernel hands these programs a record
 * whose first word is overwritten (a pt_regs pointer); the number follows it. It is an int in
 * newer kernels and a long in older ones: its low 32 bits serve both.
 */
SEC("tracepoint/syscalls/sys_enter_vigil")
int vigil_sc_enter(struct trace_event_raw_sys_enter *ctx)
{
	__u32 nr = (__u32)ctx->id, *attach;
	struct hook_scratch *s;

	if (nr >= VIGIL_SYSCALL_MAX)
		return 0;
	attach = bpf_map_lookup_elem(&vigil_sys_attach, &nr);
	if (!attach || !*attach)
		return 0;
	s = begin(STAGE_ENTRY, 0);
	if (!s)
		return 0;
	/*
	 * A helper read, not direct loads: the kernel refuses to attach a tracepoint program whose
	 * context reads reach past the event's record (max_ctx_offset), and close's record holds
	 * one argument. The words past a short record are never used (nargs bounds every read).
	 */
	bpf_probe_read_kernel(s->regs, sizeof(s->regs), ctx->args);
	vigil_run_attach(*attach);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_vigil")
int vigil_sc_exit(struct trace_event_raw_sys_exit *ctx)
{
	__u32 nr = (__u32)ctx->id, *attach;

	if (nr >= VIGIL_SYSCALL_MAX)
		return 0;
	attach = bpf_map_lookup_elem(&vigil_sys_attach, &nr);
	if (!attach || !*attach)
		return 0;
	if (begin(STAGE_EXIT, ctx->ret))
		vigil_run_attach(*attach);
	return 0;
}

/* Syscall hooks where neither kprobes nor per-syscall tracepoints exist: routed by number. */
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
	s = begin(STAGE_ENTRY, 0);
	if (!s)
		return 0;
	s->regs[0] = BPF_CORE_READ(regs, di);
	s->regs[1] = BPF_CORE_READ(regs, si);
	s->regs[2] = BPF_CORE_READ(regs, dx);
	s->regs[3] = BPF_CORE_READ(regs, r10);
	s->regs[4] = BPF_CORE_READ(regs, r8);
	s->regs[5] = BPF_CORE_READ(regs, r9);
	vigil_run_attach(*attach);
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
	if (begin(STAGE_EXIT, ret))
		vigil_run_attach(*attach);
	return 0;
}

/* Function-call arguments (kprobes, uprobes): rdi, rsi, rdx, rcx, r8, r9. */
static __always_inline int function_entry(struct pt_regs *ctx, __u32 attach)
{
	struct hook_scratch *s = begin(STAGE_ENTRY, 0);

	if (!s)
		return 0;
	s->regs[0] = PT_REGS_PARM1(ctx);
	s->regs[1] = PT_REGS_PARM2(ctx);
	s->regs[2] = PT_REGS_PARM3(ctx);
	s->regs[3] = PT_REGS_PARM4(ctx);
	s->regs[4] = PT_REGS_PARM5(ctx);
	s->regs[5] = ctx->r9;
	vigil_run_attach(attach);
	return 0;
}

static __always_inline int function_return(struct pt_regs *ctx, __u32 attach)
{
	if (begin(STAGE_EXIT, PT_REGS_RC(ctx)))
		vigil_run_attach(attach);
	return 0;
}

/* Attach point from the link's cookie: one program for every kprobe. */
SEC("kprobe/vigil")
int vigil_kprobe(struct pt_regs *ctx)
{
	return function_entry(ctx, bpf_get_attach_cookie(ctx));
}

SEC("kretprobe/vigil")
int vigil_kretprobe(struct pt_regs *ctx)
{
	return function_return(ctx, bpf_get_attach_cookie(ctx));
}

SEC("uprobe/vigil")
int vigil_uprobe(struct pt_regs *ctx)
{
	return function_entry(ctx, bpf_get_attach_cookie(ctx));
}

/* Kernels without BPF cookies: one instance per attach point, VIGIL_ATTACH_ID set at load. */
SEC("kprobe/vigil_id")
int vigil_kprobe_id(struct pt_regs *ctx)
{
	return function_entry(ctx, VIGIL_ATTACH_ID);
}

SEC("kretprobe/vigil_id")
int vigil_kret_id(struct pt_regs *ctx)
{
	return function_return(ctx, VIGIL_ATTACH_ID);
}

SEC("uprobe/vigil_id")
int vigil_uprobe_id(struct pt_regs *ctx)
{
	return function_entry(ctx, VIGIL_ATTACH_ID);
}

/*
 * BPF-LSM: the return value denies the operation (Override). The hook's arguments are the slots
 * of the program's context, read directly rather than with bpf_get_func_arg (5.17+), so that the
 * same program serves 5.10. The verifier refuses a read past the hook's last argument, so each
 * read is guarded by VIGIL_LSM_NARGS, which the sensor sets per instance from the hook's BTF
 * prototype: a frozen .rodata value the verifier knows, so it never walks the reads a hook with
 * fewer arguments does not have.
 */
#define LSM_ARG(i) (s->regs[i] = VIGIL_LSM_NARGS > (i) ? ctx[i] : 0)

SEC("lsm/vigil")
int vigil_lsm(unsigned long long *ctx)
{
	struct hook_scratch *s = begin(STAGE_ENTRY, 0);

	if (!s)
		return 0;
	LSM_ARG(0);
	LSM_ARG(1);
	LSM_ARG(2);
	LSM_ARG(3);
	LSM_ARG(4);
	LSM_ARG(5);
	/*
	 * Kernels from 6.8 refuse an LSM program whose return value may leave [-MAX_ERRNO, 0], and
	 * a global function's result is unknown to the verifier: bound it here, in 64 bits (the
	 * check is on the whole register). The policy's Override value is a negative errno.
	 */
	long ret = vigil_run_attach(VIGIL_ATTACH_ID);

	if (ret > 0)
		return 0;
	if (ret < -4095)
		return -4095;
	return ret;
}

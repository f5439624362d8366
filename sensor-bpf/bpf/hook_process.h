/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Stage 1 of a hook run: the workload scope and the process-level filters of each selector
 * (matchPIDs, matchBinaries, matchNamespaces, matchCapabilities and their changes). Nothing of
 * the call's arguments is read here. Part of hook.bpf.c.
 */
#ifndef VIGIL_HOOK_PROCESS_H
#define VIGIL_HOOK_PROCESS_H

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

/*
 * What the selectors of hook `slot` need to know about the current process: its table entry
 * (binary, exec-time capabilities and namespaces), live namespaces, live capabilities. Only
 * what some selector reads is fetched.
 */
__noinline int vigil_load_process(__u32 slot)
{
	struct hook_scratch *s = scratch();
	struct vigil_hook_cfg *h = hook_cfg(slot);
	struct task_struct *task;
	struct vigil_proc *p;
	__u32 tgid;

	if (!s || !h)
		return 0;
	s->have_proc = 0;
	if (h->flags & VIGIL_HOOK_NEED_PROC) {
		tgid = bpf_get_current_pid_tgid() >> 32;
		p = bpf_map_lookup_elem(&vigil_procs, &tgid);
		if (p) {
			bpf_probe_read_kernel(&s->proc, sizeof(s->proc), p);
			s->have_proc = 1;
		}
	}
	if (!(h->flags & (VIGIL_HOOK_NEED_CAPS | VIGIL_HOOK_NEED_NS)))
		return 0;
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
	return 0;
}

static __always_inline __u32 ns_pid(void)
{
	struct task_struct *task = (void *)bpf_get_current_task();
	struct pid *tpid = BPF_CORE_READ(task, group_leader, thread_pid);
	unsigned int level = BPF_CORE_READ(tpid, level);

	return BPF_CORE_READ(tpid, numbers[level & 31].nr);
}

/*
 * Does the binary in s->bin (s->bin_len bytes long in full) hit string set `set` under binary
 * operator `op`? Returns the raw hit (In: exact, Prefix: a stored prefix, Postfix: a stored
 * suffix); the caller applies the Not.
 */
__noinline int vigil_bin_hit(__u32 op, __u32 set)
{
	struct hook_scratch *s = scratch();
	__u32 len, n, found;

	if (!s)
		return 0;
	len = s->bin_len;
	n = len > VIGIL_STR_MAX ? VIGIL_STR_MAX : len;
	switch (op) {
	case VIGIL_BIN_IN:
	case VIGIL_BIN_NOT_IN:
		bpf_probe_read_kernel(s->skey.data, VIGIL_STR_MAX, s->bin);
		found = str_lookup(s, set, n);
		return found && found - 1 == len;
	case VIGIL_BIN_PREFIX:
	case VIGIL_BIN_NOT_PREFIX:
		bpf_probe_read_kernel(s->skey.data, VIGIL_STR_MAX, s->bin);
		return str_lookup(s, set, n) != 0;
	case VIGIL_BIN_POSTFIX:
	case VIGIL_BIN_NOT_POSTFIX:
		/* Only the leading bytes are kept: a longer path has no known tail. */
		if (len > VIGIL_BIN_KEEP || len == 0)
			return 0;
		vigil_reverse_key(REV_FROM_BIN, len - 1, n);
		return str_lookup(s, set, n) != 0;
	}
	return 0;
}

/* Puts the table entry of `tgid`'s parent into s->bin; returns the parent's tgid (0: none). */
static __always_inline __u32 parent_binary(struct hook_scratch *s, __u32 tgid)
{
	struct vigil_proc *p = bpf_map_lookup_elem(&vigil_procs, &tgid);

	if (!p || tgid <= 1)
		return 0;
	tgid = p->ppid;
	p = bpf_map_lookup_elem(&vigil_procs, &tgid);
	if (!p)
		return 0;
	bpf_probe_read_kernel(s->bin, sizeof(s->bin), p->bin);
	s->bin_len = p->bin_len;
	return tgid;
}

/* matchBinaries entry `b` of selector `sel` of hook `slot`: 1 when it passes. */
__noinline int vigil_bin_filter(__u32 slot, __u32 sel, __u32 b)
{
	struct hook_scratch *s = scratch();
	struct vigil_hook_cfg *h = hook_cfg(slot);
	struct vigil_selector *sl;
	struct vigil_bin_filter *f;
	__u32 op, set, tgid;
	bool positive;
	int hit;

	if (!s || !h)
		return 0;
	sl = sel_at(h, sel);
	if (!sl || b >= VIGIL_SEL_BIN_FILTERS)
		return 0;
	f = &sl->bins[b & (VIGIL_SEL_BIN_FILTERS - 1)];
	op = f->op;
	set = f->set;
	positive = op == VIGIL_BIN_IN || op == VIGIL_BIN_PREFIX || op == VIGIL_BIN_POSTFIX;
	if (!s->have_proc)
		return !positive;
	bpf_probe_read_kernel(s->bin, sizeof(s->bin), s->proc.bin);
	s->bin_len = s->proc.bin_len;
	hit = vigil_bin_hit(op, set);
	if (!hit && f->follow) {
		/* followChildren: an ancestor's binary counts too. */
		tgid = s->proc.pid;
		for (int k = 0; k < VIGIL_ANCESTOR_DEPTH; k++) {
			tgid = parent_binary(s, tgid);
			if (!tgid)
				break;
			if (vigil_bin_hit(op, set)) {
				hit = 1;
				break;
			}
		}
	}
	return positive ? hit : !hit;
}

/* matchPIDs of selector `sel`: 1 when it passes. */
__noinline int vigil_pid_filter(__u32 slot, __u32 sel)
{
	struct vigil_hook_cfg *h = hook_cfg(slot);
	struct vigil_selector *sl;
	struct vigil_proc *p;
	__u32 tgid, pid, set, flags, op;
	bool hit;

	if (!h)
		return 0;
	sl = sel_at(h, sel);
	if (!sl)
		return 0;
	set = sl->pid_set;
	flags = sl->pid_flags;
	op = sl->pid_op;
	tgid = bpf_get_current_pid_tgid() >> 32;
	pid = (flags & VIGIL_PID_NAMESPACE) ? ns_pid() : tgid;
	hit = in_int_set(set, pid);
	if (!hit && (flags & VIGIL_PID_FOLLOW_FORKS) && !(flags & VIGIL_PID_NAMESPACE)) {
		/* followForks: the ancestors' pids count too. */
		for (int k = 0; k < VIGIL_ANCESTOR_DEPTH; k++) {
			if (tgid <= 1)
				break;
			p = bpf_map_lookup_elem(&vigil_procs, &tgid);
			if (!p)
				break;
			tgid = p->ppid;
			if (!bpf_map_lookup_elem(&vigil_procs, &tgid))
				break;
			if (in_int_set(set, tgid)) {
				hit = true;
				break;
			}
		}
	}
	return op == VIGIL_SET_IN ? hit : !hit;
}

static __always_inline __u64 cap_of(__u64 *caps, __u8 which)
{
	return which == 1 ? caps[1] : which == 2 ? caps[2] : caps[0];
}

static __always_inline __u64 exec_cap_of(struct vigil_proc *p, __u8 which)
{
	return which == 1 ? p->cap_inheritable : which == 2 ? p->cap_permitted : p->cap_effective;
}

/* matchNamespaces, matchCapabilities, matchCapabilityChanges, matchNamespaceChanges. */
__noinline int vigil_ns_cap_filters(__u32 slot, __u32 sel)
{
	struct hook_scratch *s = scratch();
	struct vigil_hook_cfg *h = hook_cfg(slot);
	struct vigil_config *cfg;
	struct vigil_selector *sl;
	__u32 zero = 0;

	if (!s || !h)
		return 0;
	sl = sel_at(h, sel);
	if (!sl)
		return 0;
	cfg = bpf_map_lookup_elem(&vigil_config, &zero);
#pragma unroll
	for (int n = 0; n < VIGIL_SEL_NS_FILTERS; n++) {
		struct vigil_ns_filter *f = &sl->ns[n];
		__u64 slot_ns;
		bool hit;

		if (n >= sl->n_ns)
			break;
		slot_ns = f->slot;
		barrier_var(slot_ns);
		if (slot_ns >= VIGIL_NS_COUNT)
			return 0;
		hit = in_int_set(f->set, s->live_ns[slot_ns]);
		if (f->op == VIGIL_SET_IN ? !hit : hit)
			return 0;
	}
#pragma unroll
	for (int k = 0; k < VIGIL_SEL_CAP_FILTERS; k++) {
		struct vigil_cap_filter *f = &sl->caps[k];
		bool hit;

		if (k >= sl->n_cap)
			break;
		hit = (cap_of(s->live_caps, f->which) & f->mask) != 0;
		if (f->ns_cap && cfg && s->live_userns == cfg->host_userns)
			return 0; /* namespace capabilities only count outside the host user ns */
		if (f->op == VIGIL_SET_IN ? !hit : hit)
			return 0;
	}
#pragma unroll
	for (int k = 0; k < VIGIL_SEL_CAP_FILTERS; k++) {
		struct vigil_cap_filter *f = &sl->capchg[k];
		bool hit;

		if (k >= sl->n_capchg)
			break;
		if (!s->have_proc)
			return 0;
		hit = ((cap_of(s->live_caps, f->which) ^ exec_cap_of(&s->proc, f->which)) & f->mask) != 0;
		if (f->op == VIGIL_SET_IN ? !hit : hit)
			return 0;
	}
	if (sl->nschg_op) {
		bool changed = false;

		if (!s->have_proc)
			return 0;
#pragma unroll
		for (int n = 0; n < VIGIL_NS_COUNT; n++) {
			if ((sl->nschg_mask & (1u << n)) && s->live_ns[n] != s->proc.ns[n])
				changed = true;
		}
		if (sl->nschg_op == VIGIL_SET_IN ? !changed : changed)
			return 0;
	}
	return 1;
}

/* Whether selector `sl` has any process-level filter (else it passes without a call). */
static __always_inline bool has_process_filters(struct vigil_selector *sl)
{
	return sl->pid_op || sl->n_bin || sl->n_ns || sl->n_cap || sl->n_capchg || sl->nschg_op;
}

/* The process-level part of selector `sel` of hook `slot`: 1 when every filter passes. */
__noinline int vigil_sel_process(__u32 slot, __u32 sel)
{
	struct vigil_hook_cfg *h = hook_cfg(slot);
	struct vigil_selector *sl;
	__u32 n_bin;

	if (!h)
		return 0;
	sl = sel_at(h, sel);
	if (!sl)
		return 0;
	n_bin = sl->n_bin;
	if (sl->pid_op && !vigil_pid_filter(slot, sel))
		return 0;
	for (__u32 b = 0; b < VIGIL_SEL_BIN_FILTERS; b++) {
		if (b >= n_bin)
			break;
		if (!vigil_bin_filter(slot, sel, b))
			return 0;
	}
	if (sl->n_ns || sl->n_cap || sl->n_capchg || sl->nschg_op)
		return vigil_ns_cap_filters(slot, sel);
	return 1;
}

#endif /* VIGIL_HOOK_PROCESS_H */

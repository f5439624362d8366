/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Stage 4 of a hook run: the actions of the selector that matched (Post with rateLimit, NoPost,
 * Sigkill, Signal, Override) and the record. Part of hook.bpf.c.
 */
#ifndef VIGIL_HOOK_ACTIONS_H
#define VIGIL_HOOK_ACTIONS_H

static __always_inline __u64 args_hash(struct hook_scratch *s)
{
	__u64 hash = 14695981039346656037ULL;
	__u32 len = s->data_len, n = len > sizeof(s->tmp.words) ? sizeof(s->tmp.words) : len;

	/* The first 64 bytes of the arguments identify "the same event" well enough. */
	__builtin_memset(&s->tmp, 0, sizeof(s->tmp));
	if (n)
		bpf_probe_read_kernel(s->tmp.words, n, s->data);
#pragma unroll
	for (int i = 0; i < 8; i++) {
		hash ^= s->tmp.words[i];
		hash *= 1099511628211ULL;
	}
	return hash ^ len;
}

/* True when an identical event of this hook was posted less than rate_ns ago. */
static __always_inline bool rate_limited(struct hook_scratch *s, __u32 slot, __u32 scope,
					 __u64 rate_ns)
{
	struct vigil_rate_key k = { .hook = slot };
	__u64 now = bpf_ktime_get_ns(), *last;
	__u64 id = bpf_get_current_pid_tgid();

	if (scope == VIGIL_SCOPE_THREAD)
		k.scope_id = (__u32)id;
	else if (scope == VIGIL_SCOPE_PROCESS)
		k.scope_id = id >> 32;
	k.hash = args_hash(s);
	last = bpf_map_lookup_elem(&vigil_ratelimit, &k);
	if (last && now - *last < rate_ns)
		return true;
	bpf_map_update_elem(&vigil_ratelimit, &k, &now, BPF_ANY);
	return false;
}

static __always_inline __u32 first_bit(__u32 mask)
{
#pragma unroll
	for (int i = 0; i < VIGIL_HOOK_SELECTORS; i++) {
		if (mask & (1u << i))
			return i;
	}
	return 0xffff;
}

/* Output the record of hook `slot` (after its rate limit): header, identity, arguments. */
__noinline int vigil_post(__u32 slot)
{
	struct hook_scratch *s = scratch();
	struct vigil_hook_cfg *h = hook_cfg(slot);
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tgid = id >> 32;
	struct vigil_proc *p;
	__u64 size;

	if (!s || !h)
		return 0;
	if (s->rate_ns && rate_limited(s, slot, s->rate_scope, s->rate_ns)) {
		stat(h->policy, VIGIL_STAT_RATE_LIMITED);
		return 0;
	}
	p = bpf_map_lookup_elem(&vigil_procs, &tgid);
	s->rec.hdr.kind = VIGIL_MSG_HOOK;
	s->rec.hdr.time = bpf_ktime_get_boot_ns();
	s->rec.pid = tgid;
	s->rec.tid = (__u32)id;
	s->rec.ktime = p ? p->ktime : 0;
	s->rec.hook = slot;
	s->rec.policy = h->policy;
	s->rec.generation = h->generation;
	s->rec.selector = s->sel;
	s->rec.actions = s->done | (1u << VIGIL_ACT_POST);
	s->rec.ret = s->ret;
	s->rec.flags = s->hflags | (s->stage == STAGE_EXIT ? VIGIL_HF_RETURN : 0) |
		       (p ? 0 : VIGIL_HF_NO_PROC);
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
	return 0;
}

/* Action k of selector `si` of hook `slot`: its effect now, its trace in s->done/hflags. */
__noinline int vigil_action(__u32 slot, __u32 si, __u32 k)
{
	struct hook_scratch *s = scratch();
	struct vigil_hook_cfg *h = hook_cfg(slot);
	struct vigil_policy_cfg *pol;
	struct vigil_selector *sel;
	struct vigil_action *a;
	__u32 kind, which;
	bool enforce;

	if (!s || !h)
		return 0;
	sel = sel_at(h, si);
	if (!sel || k >= VIGIL_SEL_ACTIONS)
		return 0;
	a = &sel->actions[k & (VIGIL_SEL_ACTIONS - 1)];
	kind = a->kind;
	pol = bpf_map_lookup_elem(&vigil_policies, &h->policy);
	enforce = pol && pol->mode != VIGIL_MODE_MONITOR;
	switch (kind) {
	case VIGIL_ACT_POST:
		s->done |= 1u << VIGIL_ACT_POST;
		s->rate_ns = a->rate_ns;
		s->rate_scope = a->scope;
		return 0;
	case VIGIL_ACT_NOPOST:
		s->no_post = 1;
		return 0;
	case VIGIL_ACT_SIGKILL:
	case VIGIL_ACT_SIGNAL:
		which = kind == VIGIL_ACT_SIGKILL ? VIGIL_STAT_SIGKILL : VIGIL_STAT_SIGNAL;
		break;
	case VIGIL_ACT_OVERRIDE:
		if (!(h->flags & VIGIL_HOOK_CAN_OVERRIDE))
			return 0;
		which = VIGIL_STAT_OVERRIDE;
		break;
	default:
		return 0;
	}
	s->done |= 1u << kind;
	if (!enforce) {
		/* Monitor mode: counted and flagged on the record, not done. */
		s->hflags |= VIGIL_HF_MONITOR;
		stat(h->policy, VIGIL_STAT_MONITORED);
		return 0;
	}
	if (kind == VIGIL_ACT_OVERRIDE)
		s->override = a->arg;
	else
		bpf_send_signal(kind == VIGIL_ACT_SIGKILL ? 9 : a->arg);
	stat(h->policy, which);
	return 0;
}

/*
 * The selectors in s->mask matched (NO_SELECTORS: a hook without selectors): run the actions
 * of the first one. Returns 1 when a record is to be posted (no NoPost): the caller then reads
 * the arguments in full and calls vigil_post().
 */
__noinline int vigil_act(__u32 slot)
{
	struct hook_scratch *s = scratch();
	struct vigil_hook_cfg *h = hook_cfg(slot);
	struct vigil_selector *sel;
	__u32 si, n = 0;

	if (!s || !h)
		return 0;
	si = s->mask == NO_SELECTORS ? 0xffff : first_bit(s->mask);
	s->done = 0;
	s->hflags = 0;
	s->no_post = 0;
	s->rate_ns = 0;
	s->rate_scope = 0;
	stat(h->policy, VIGIL_STAT_MATCHED);
	sel = si < VIGIL_HOOK_SELECTORS ? sel_at(h, si) : 0;
	if (sel)
		n = sel->n_actions;
	for (__u32 k = 0; k < VIGIL_SEL_ACTIONS; k++) {
		if (k >= n)
			break;
		vigil_action(slot, si, k);
	}
	s->sel = si;
	return !s->no_post;
}

/* Act on a match; post its record with every argument read in full. */
static __always_inline int act_and_post(struct hook_scratch *s, struct vigil_hook_cfg *h,
					__u32 slot)
{
	__u32 all;

	if (!vigil_act(slot))
		return 0;
	/* The record carries every argument in full: read again what the filters cut short. */
	all = (1u << (h->nargs & 7)) - 1;
	if (s->args_read != all)
		read_args(s, h, slot, all, READ_FULL);
	return vigil_post(slot);
}

#endif /* VIGIL_HOOK_ACTIONS_H */

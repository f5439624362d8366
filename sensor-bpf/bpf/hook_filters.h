/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Stage 3 of a hook run: matchArgs against the arguments read so far, matchReturnArgs against
 * the return value. Strings are compared exactly through the vigil_strs LPM trie (see
 * docs/bpf.md, "Exact matching"). Part of hook.bpf.c.
 */
#ifndef VIGIL_HOOK_FILTERS_H
#define VIGIL_HOOK_FILTERS_H

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

/*
 * The string s->data[off..off+len) (of full length `full`) under a string operator. Values
 * longer than VIGIL_STR_MAX are compared on their first (prefix, equal) or last (postfix)
 * VIGIL_STR_MAX bytes; equality still needs the full length to agree.
 */
static __always_inline int match_string(struct hook_scratch *s, __u32 op, __u32 set, __u32 off,
					__u32 len, __u32 full)
{
	__u32 n = len > VIGIL_STR_MAX ? VIGIL_STR_MAX : len;
	__u32 found;

	if (op == VIGIL_OP_POSTFIX || op == VIGIL_OP_NOT_POSTFIX) {
		if (len)
			vigil_reverse_key(REV_FROM_DATA, off + len - 1, n);
		found = str_lookup(s, set, n);
		return op == VIGIL_OP_POSTFIX ? found != 0 : found == 0;
	}
	if (off > DATA_OFF_MAX)
		return 0;
	if (n)
		bpf_probe_read_kernel(s->skey.data, n, &s->data[off]);
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
	return 0;
}

/* Filter j of selector `sel` (matchArgs) against the arguments read: 1 when it passes. */
__noinline int vigil_filter_arg(__u32 slot, __u32 sel, __u32 j)
{
	struct hook_scratch *s = scratch();
	struct vigil_hook_cfg *h = hook_cfg(slot);
	struct vigil_selector *sl;
	struct vigil_filter *f;
	__u32 off, len, aux, full;
	__u64 ai, v = 0;
	__u8 kind;

	if (!s || !h)
		return 0;
	sl = sel_at(h, sel);
	if (!sl)
		return 0;
	barrier_var(j);
	if (j >= VIGIL_SEL_ARG_FILTERS)
		return 0;
	f = &sl->args[j];
	ai = f->arg;
	barrier_var(ai);
	if (ai >= VIGIL_HOOK_ARGS || ai >= h->nargs || !(s->args_read & (1u << ai)))
		return 0;
	off = s->arg_off[ai];
	if (off > DATA_OFF_MAX)
		return 0;
	len = s->rec.arg_len[ai];
	aux = s->rec.arg_aux[ai];
	kind = h->args[ai].kind;
	switch (kind) {
	case VIGIL_ARGK_INT:
		if (len != 8)
			return 0;
		bpf_probe_read_kernel(&v, 8, &s->data[off]);
		return match_int(f, v);
	case VIGIL_ARGK_SOCK:
	case VIGIL_ARGK_FD_SOCK:
		if (len != sizeof(s->tmp.sock))
			return 0;
		bpf_probe_read_kernel(&s->tmp.sock, sizeof(s->tmp.sock), &s->data[off]);
		return match_sock(s, f, &s->tmp.sock);
	case VIGIL_ARGK_SOCKADDR:
		if (len != sizeof(s->tmp.sa))
			return 0;
		bpf_probe_read_kernel(&s->tmp.sa, sizeof(s->tmp.sa), &s->data[off]);
		return match_sockaddr(s, f, &s->tmp.sa);
	case VIGIL_ARGK_CRED:
		return 0;
	default:
		/* An unreadable string matches only the negated operators. */
		if (aux & VIGIL_AUX_ERR)
			return f->op == VIGIL_OP_NOT_EQUAL || f->op == VIGIL_OP_NOT_PREFIX ||
			       f->op == VIGIL_OP_NOT_POSTFIX;
		full = aux & VIGIL_AUX_LEN_MASK;
		if (full < len)
			full = len;
		return match_string(s, f->op, f->set, off, len & (VIGIL_ARG_SLOT * 2 - 1), full);
	}
}

/* matchReturnArgs of selector `sel` against s->ret: 1 when every filter passes. */
__noinline int vigil_sel_ret(__u32 slot, __u32 sel)
{
	struct hook_scratch *s = scratch();
	struct vigil_hook_cfg *h = hook_cfg(slot);
	struct vigil_selector *sl;
	__u64 v;

	if (!s || !h)
		return 0;
	sl = sel_at(h, sel);
	if (!sl)
		return 0;
	v = h->ret_signed ? (__u64)s->ret : (__u64)(__u32)s->ret;
#pragma unroll
	for (int j = 0; j < VIGIL_SEL_RET_FILTERS; j++) {
		if (j >= sl->n_ret)
			break;
		if (!match_int(&sl->ret[j], v))
			return 0;
	}
	return 1;
}

#endif /* VIGIL_HOOK_FILTERS_H */

/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Stage 2 of a hook run: reading the call's arguments into the record. Before the selectors
 * decide, only the arguments some filter looks at are read, strings only as far as the
 * filters need (vigil_arg_cfg.peek); a record that posts reads every argument in full. Part of
 * hook.bpf.c.
 */
#ifndef VIGIL_HOOK_ARGS_H
#define VIGIL_HOOK_ARGS_H

#define AF_INET 2
#define AF_INET6 10
#define S_IFMT 00170000
#define S_IFSOCK 0140000
#define IFNAMSIZ 16

#define READ_PEEK 0 /* before the selectors decide */
#define READ_FULL 1 /* for the record */

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

/* The raw value (register, tracepoint field, BTF argument) of argument `a`. */
static __always_inline __u64 raw_arg(struct hook_scratch *s, __u8 source, struct vigil_arg_cfg *a)
{
	__u64 v = 0;

	switch (source) {
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

static __always_inline __u64 raw_at(struct hook_scratch *s, __u64 i)
{
	barrier_var(i);
	if (i >= VIGIL_HOOK_ARGS)
		return 0;
	return s->raw[i];
}

/* Raw values of every argument of hook `h` into s->raw. */
static __always_inline void fetch_raw(struct hook_scratch *s, struct vigil_hook_cfg *h)
{
	__u32 nargs = h->nargs;

#pragma unroll
	for (int i = 0; i < VIGIL_HOOK_ARGS; i++) {
		if (i >= nargs)
			break;
		s->raw[i] = raw_arg(s, h->source, &h->args[i]);
	}
}

/*
 * The open file behind descriptor fd of the current task, or NULL. Runs on every call of a hook
 * with an fd argument (close, read, write...), so it keeps helper calls few: each costs a call
 * and a return (expensive on CPUs with return-thunk mitigations). Where the kernel has
 * bpf_get_current_task_btf (5.11+) the task, its files and fd table are read by direct loads
 * (the verifier turns them into fault-safe loads); the fd array's slot needs one read either
 * way. Older kernels read the chain with helpers, max_fds and the array pointer in one read
 * where they sit side by side (every kernel so far; CO-RE checks it, the branch not taken is
 * removed at load).
 */
static __always_inline struct file *fd_file(__u64 fd)
{
	struct {
		unsigned int max;
		struct file **fds;
	} t = {};
	struct file *f = 0;

	if (bpf_core_enum_value_exists(enum bpf_func_id, BPF_FUNC_get_current_task_btf)) {
		struct task_struct *task = bpf_get_current_task_btf();
		struct fdtable *fdt = task->files->fdt;

		t.max = fdt->max_fds;
		t.fds = fdt->fd;
	} else {
		struct task_struct *task = (void *)bpf_get_current_task();
		struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
		__u32 max_off = bpf_core_field_offset(struct fdtable, max_fds);

		if (bpf_core_field_offset(struct fdtable, fd) == max_off + 8)
			bpf_probe_read_kernel(&t, sizeof(t), (void *)fdt + max_off);
		else {
			t.max = BPF_CORE_READ(fdt, max_fds);
			t.fds = BPF_CORE_READ(fdt, fd);
		}
	}
	if ((__s64)fd < 0 || fd >= t.max)
		return 0;
	bpf_probe_read_kernel(&f, sizeof(f), &t.fds[fd]);
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

/* Where argument i starts in the record: after what was read before it. */
static __always_inline __u32 arg_start(struct hook_scratch *s)
{
	__u32 off = s->data_len;

	if (off > DATA_OFF_MAX)
		off = DATA_OFF_MAX;
	return off;
}

/* Book argument i (its bytes already at `off`) into the record. */
static __always_inline void arg_done(struct hook_scratch *s, __u64 i, __u8 kind, __u32 off,
				     __u32 len, __u32 aux)
{
	barrier_var(i);
	if (i >= VIGIL_HOOK_ARGS)
		return;
	s->arg_off[i] = off;
	s->rec.arg_kind[i] = kind;
	s->rec.arg_len[i] = len;
	s->rec.arg_aux[i] = aux;
	s->data_len = off + len;
	s->args_read |= 1u << i;
}

/* String argument i (NUL-terminated, user or kernel memory), up to `limit` bytes. */
static __always_inline int read_str(struct hook_scratch *s, __u32 i, __u32 limit, __u32 user)
{
	__u32 off, len = 0, aux = 0, size;
	__u64 v;
	long n;

	if (i >= VIGIL_HOOK_ARGS)
		return 0;
	v = raw_at(s, i);
	off = arg_start(s);
	size = limit & (VIGIL_ARG_SLOT - 1);
	if (!size)
		size = VIGIL_ARG_SLOT;
	n = user ? bpf_probe_read_user_str(&s->data[off], size, (void *)v)
		 : bpf_probe_read_kernel_str(&s->data[off], size, (void *)v);
	if (n < 0 && !user)
		n = bpf_probe_read_user_str(&s->data[off], size, (void *)v);
	if (n <= 0) {
		aux = VIGIL_AUX_ERR;
	} else {
		len = (n - 1) & (VIGIL_ARG_SLOT - 1);
		aux = len;
		if (n >= size) {
			aux |= VIGIL_AUX_CUT;
			if (size < VIGIL_ARG_SLOT)
				s->args_read |= ARGS_PEEK_CUT;
		}
	}
	arg_done(s, i, VIGIL_ARGK_STR, off, len, aux);
	return 0;
}

/* Buffer argument i: its length from another argument, the slot, or (return copies) ret. */
__noinline int vigil_read_buf(__u32 slot, __u32 i, __u32 limit)
{
	struct hook_scratch *s = scratch();
	struct vigil_hook_cfg *h = hook_cfg(slot);
	struct vigil_arg_cfg *a;
	__u32 off, len = 0, aux = 0;
	__u64 want = VIGIL_ARG_SLOT, v;

	if (!s || !h)
		return 0;
	a = arg_at(h, i);
	if (!a)
		return 0;
	v = raw_at(s, i);
	off = arg_start(s);
	if (a->flags & VIGIL_ARGF_SIZE_ARG) {
		__u64 si = a->size_arg;

		barrier_var(si);
		want = si < VIGIL_HOOK_ARGS ? s->raw[si] : 0;
	}
	if (a->flags & VIGIL_ARGF_RETURN_COPY) {
		if (s->stage != STAGE_EXIT || s->ret < 0)
			want = 0; /* nothing was copied (yet) */
		else if ((__u64)s->ret < want)
			want = s->ret;
	}
	len = want > VIGIL_ARG_SLOT ? VIGIL_ARG_SLOT : want;
	aux = (want > VIGIL_AUX_LEN_MASK ? VIGIL_AUX_LEN_MASK : want) |
	      (want > VIGIL_ARG_SLOT ? VIGIL_AUX_CUT : 0);
	limit &= VIGIL_ARG_SLOT - 1;
	if (limit && len > limit) {
		len = limit;
		s->args_read |= ARGS_PEEK_CUT;
	}
	len &= (VIGIL_ARG_SLOT * 2 - 1);
	if (len > VIGIL_ARG_SLOT)
		len = VIGIL_ARG_SLOT;
	if (len && read_mem(&s->data[off], len, (void *)v, h->flags & VIGIL_HOOK_USER_MEM) < 0) {
		len = 0;
		aux = VIGIL_AUX_ERR;
	}
	arg_done(s, i, VIGIL_ARGK_BUF, off, len, aux);
	return 0;
}

/*
 * A file-like argument i (fd, file, path, dentry, linux_binprm) as its path. Inlined into
 * vigil_read_arg: the path walk below it is two more call levels, and the verifier allows
 * eight frames in all.
 */
static __always_inline int read_path(struct hook_scratch *s, __u32 i, __u32 kind)
{
	struct pathbuf *b = get_pathbuf_state();
	struct vfsmount *vfsmnt = 0;
	struct dentry *dentry = 0;
	struct path *p = 0;
	struct file *f;
	__u32 off, len, pos;
	bool cut = false;
	__u64 v;

	if (!b || i >= VIGIL_HOOK_ARGS)
		return 0;
	v = raw_at(s, i);
	off = arg_start(s);
	switch (kind) {
	case VIGIL_ARGK_FD:
		f = fd_file(v);
		if (f)
			p = (struct path *)&f->f_path;
		break;
	case VIGIL_ARGK_FILE:
		p = (struct path *)&((struct file *)v)->f_path;
		break;
	case VIGIL_ARGK_BINPRM:
		f = BPF_CORE_READ((struct linux_binprm *)v, file);
		p = (struct path *)&f->f_path;
		break;
	case VIGIL_ARGK_PATH:
		p = (struct path *)v;
		break;
	case VIGIL_ARGK_DENTRY:
		dentry = (struct dentry *)v;
		break;
	}
	if (p) {
		/* struct path is {mnt, dentry} in every kernel: one read for both where so. */
		__u32 mnt_off = bpf_core_field_offset(struct path, mnt);

		if (bpf_core_field_offset(struct path, dentry) == mnt_off + 8) {
			struct {
				struct vfsmount *mnt;
				struct dentry *dentry;
			} pp = {};

			bpf_probe_read_kernel(&pp, sizeof(pp), (void *)p + mnt_off);
			vfsmnt = pp.mnt;
			dentry = pp.dentry;
		} else {
			dentry = BPF_CORE_READ(p, dentry);
			vfsmnt = BPF_CORE_READ(p, mnt);
		}
	}
	if (!dentry) {
		arg_done(s, i, kind, off, 0, VIGIL_AUX_ERR);
		return 0;
	}
	/* A bare dentry is resolved within its own mount. */
	b->walk.dentry = dentry;
	b->walk.mnt = vfsmnt ? container_of(vfsmnt, struct mount, mnt) : 0;
	b->walk.no_mounts = !vfsmnt;
	b->walk.pos = VIGIL_PATH_MAX;
	b->walk.done = 0;
	pos = run_walk(b, &cut);
	len = copy_path(&s->data[off], b->path, pos);
	arg_done(s, i, kind, off, len, len | (cut ? VIGIL_AUX_CUT : 0));
	return 0;
}

/*
 * A net_device argument i as its name: an IFNAMSIZ array inside the device, found by a CO-RE
 * offset so every kernel's layout fits. The record holds it like a string, so the string
 * filters compare it; a NULL or unreadable device is an unreadable argument.
 */
static __always_inline int read_netdev(struct hook_scratch *s, __u32 i)
{
	struct net_device *dev;
	__u32 off, len = 0, aux = VIGIL_AUX_ERR;
	long n;

	if (i >= VIGIL_HOOK_ARGS)
		return 0;
	dev = (struct net_device *)raw_at(s, i);
	off = arg_start(s);
	n = dev ? bpf_core_read_str(&s->data[off], IFNAMSIZ, &dev->name) : -1;
	if (n > 0) {
		len = (n - 1) & (IFNAMSIZ - 1);
		aux = len;
	}
	arg_done(s, i, VIGIL_ARGK_NETDEV, off, len, aux);
	return 0;
}

/* Socket (struct sock *, or a socket's fd), sockaddr and cred arguments. */
__noinline int vigil_read_struct(__u32 i, __u32 kind, __u32 user)
{
	struct hook_scratch *s = scratch();
	__u32 off, len = 0, aux = 0;
	__u64 v;

	if (!s || i >= VIGIL_HOOK_ARGS)
		return 0;
	v = raw_at(s, i);
	off = arg_start(s);
	__builtin_memset(&s->tmp, 0, sizeof(s->tmp));
	switch (kind) {
	case VIGIL_ARGK_SOCK:
	case VIGIL_ARGK_FD_SOCK: {
		struct sock *sk = (struct sock *)v;

		if (kind == VIGIL_ARGK_FD_SOCK) {
			struct file *f = fd_file(v);

			sk = f ? file_sock(f) : 0;
		}
		if (!sk) {
			aux = VIGIL_AUX_ERR;
			break;
		}
		read_sock(sk, &s->tmp.sock);
		len = sizeof(s->tmp.sock);
		break;
	}
	case VIGIL_ARGK_SOCKADDR: {
		__u16 family = 0, port = 0;

		if (read_mem(&family, 2, (void *)v, user) < 0) {
			aux = VIGIL_AUX_ERR;
			break;
		}
		s->tmp.sa.family = family;
		read_mem(&port, 2, (void *)(v + 2), user);
		s->tmp.sa.port = bpf_ntohs(port);
		if (family == AF_INET)
			read_mem(s->tmp.sa.addr, 4, (void *)(v + 4), user);
		else if (family == AF_INET6)
			read_mem(s->tmp.sa.addr, 16, (void *)(v + 8), user);
		len = sizeof(s->tmp.sa);
		break;
	}
	case VIGIL_ARGK_CRED:
		read_cred((const struct cred *)v, &s->tmp.cred);
		len = sizeof(s->tmp.cred);
		break;
	}
	if (len)
		bpf_probe_read_kernel(&s->data[off], len & 127, &s->tmp);
	arg_done(s, i, kind, off, len, aux);
	return 0;
}

/*
 * Argument i of hook `slot` into the record, appended at s->data_len. Integers and strings (the
 * common case of the filters that decide) are read here; files, buffers and structures by
 * functions of their own.
 */
__noinline int vigil_read_arg(__u32 slot, __u32 i, __u32 mode)
{
	struct hook_scratch *s = scratch();
	struct vigil_hook_cfg *h = hook_cfg(slot);
	struct vigil_arg_cfg *a;
	__u32 user, limit, kind, off;
	__u64 v;

	if (!s || !h)
		return 0;
	a = arg_at(h, i);
	if (!a)
		return 0;
	kind = a->kind;
	user = (h->flags & VIGIL_HOOK_USER_MEM) != 0;
	limit = mode == READ_PEEK ? a->peek : 0;
	switch (kind) {
	case VIGIL_ARGK_INT:
		v = raw_at(s, i);
		v = (a->flags & VIGIL_ARGF_SIGNED) ? (__u64)sign_extend(v, a->size)
						   : zero_extend(v, a->size);
		off = arg_start(s);
		__builtin_memcpy(&s->data[off], &v, 8);
		arg_done(s, i, VIGIL_ARGK_INT, off, 8, 0);
		return 0;
	case VIGIL_ARGK_STR:
		return read_str(s, i, limit, user);
	case VIGIL_ARGK_BUF:
		return vigil_read_buf(slot, i, limit);
	case VIGIL_ARGK_FD:
	case VIGIL_ARGK_FILE:
	case VIGIL_ARGK_PATH:
	case VIGIL_ARGK_DENTRY:
	case VIGIL_ARGK_BINPRM:
		return read_path(s, i, kind);
	case VIGIL_ARGK_NETDEV:
		return read_netdev(s, i);
	default:
		return vigil_read_struct(i, kind, user);
	}
}

/* Starts the record's argument area over. */
static __always_inline void args_reset(struct hook_scratch *s)
{
	s->data_len = 0;
	s->args_read = 0;
	__builtin_memset(s->rec.arg_len, 0, sizeof(s->rec.arg_len));
	__builtin_memset(s->rec.arg_aux, 0, sizeof(s->rec.arg_aux));
}

/*
 * Arguments of hook `h` whose bit is in `want` into the record, from the start. READ_PEEK
 * reads strings and buffers only as far as the filters need.
 */
static __always_inline void read_args(struct hook_scratch *s, struct vigil_hook_cfg *h,
				      __u32 slot, __u32 want, __u32 mode)
{
	__u32 nargs = h->nargs;

	args_reset(s);
	for (__u32 i = 0; i < VIGIL_HOOK_ARGS; i++) {
		if (i >= nargs)
			break;
		if (want & (1u << i))
			vigil_read_arg(slot, i, mode);
	}
}

#endif /* VIGIL_HOOK_ARGS_H */

/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Maps and helpers shared by every Vigil BPF object (process lifecycle and hook programs).
 *
 * The maps declared here are pinned by the sensor under one directory per sensor run, so every
 * object it loads uses the same ring buffer, process table and counters.
 */
#ifndef VIGIL_COMMON_H
#define VIGIL_COMMON_H

/* Sizes below are defaults; the sensor sets the real ones from its configuration at load time. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 8 << 20);
} vigil_events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 32768);
	__type(key, __u32);
	__type(value, struct vigil_proc);
} vigil_procs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, VIGIL_CNT_NUM);
	__type(key, __u32);
	__type(value, __u64);
} vigil_counters SEC(".maps");

/* State of one path walk, kept next to the buffer it fills (see vigil_path_walk()). */
struct path_walk {
	struct dentry *dentry;
	struct mount *mnt;
	/* The current mount's root, parent and mount point: read together, once per mount. */
	struct dentry *mnt_root;
	struct mount *mnt_parent;
	struct dentry *mnt_mountpoint;
	__u32 pos;
	__u32 done;
	__u32 no_mounts; /* stop at the mount root instead of crossing (dentry-only paths) */
	__u32 pad;
};

/*
 * Bytes of a dentry read in one go from d_parent on: d_parent, d_name (a qstr: hash, length,
 * name pointer), d_inode and the inline name that follows them (32 bytes before 6.14, 40 from
 * it). A name short enough to live inline (most are) comes with the same read.
 */
#define DENTRY_WIN 72
#define DENTRY_WIN_NAME 24 /* the inline name cannot start before d_inode's end */

/*
 * Path assembly writes components backwards from the end of `path`. The buffer is twice
 * VIGIL_PATH_MAX so that every masked write offset plus a NAME_MAX-sized copy stays inside it,
 * which is what lets the verifier accept variable offsets.
 */
struct pathbuf {
	char path[VIGIL_PATH_MAX * 2];
	struct path_walk walk;
	/* DENTRY_WIN bytes are read; the rest lets a masked offset (& 127) + 8 stay inside. */
	__u64 win[17];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct pathbuf);
} vigil_pathbuf SEC(".maps");

/* task->flags bit of kernel threads (include/linux/sched.h); they are not reported. */
#define PF_KTHREAD 0x00200000

#define NAME_MASK 255
#define PATH_MASK (VIGIL_PATH_MAX - 1)

/*
 * Wake the reader only once a batch has built up: a wakeup per record costs the workload a
 * context switch per exec. The sensor also drains on a short timer (VIGIL_DRAIN_INTERVAL_MS on
 * the Rust side), which bounds the delay of records below the threshold.
 */
#define WAKEUP_BYTES (64 * 1024)

static __always_inline __u64 wakeup_flag(void)
{
	return bpf_ringbuf_query(&vigil_events, BPF_RB_AVAIL_DATA) >= WAKEUP_BYTES ? BPF_RB_FORCE_WAKEUP
										     : BPF_RB_NO_WAKEUP;
}

static __always_inline void count(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&vigil_counters, &idx);

	if (v)
		*v += 1;
}

static __always_inline struct pathbuf *get_pathbuf_state(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&vigil_pathbuf, &zero);
}

static __always_inline char *get_pathbuf(void)
{
	struct pathbuf *b = get_pathbuf_state();

	return b ? b->path : 0;
}

/*
 * The current mount's parent, mount point and root into the walk. They sit side by side in
 * struct mount (mnt_parent, mnt_mountpoint, then the vfsmount that starts with mnt_root) in
 * every kernel so far: one read; CO-RE checks it, the other branch is removed at load.
 */
static __always_inline void read_mount(struct pathbuf *b, struct mount *mnt)
{
	__u32 par = bpf_core_field_offset(struct mount, mnt_parent);
	struct {
		struct mount *parent;
		struct dentry *mountpoint;
		struct dentry *root;
	} m = {};

	if (bpf_core_field_offset(struct mount, mnt_mountpoint) == par + 8 &&
	    bpf_core_field_offset(struct mount, mnt.mnt_root) == par + 16) {
		bpf_probe_read_kernel(&m, sizeof(m), (void *)mnt + par);
	} else {
		m.parent = BPF_CORE_READ(mnt, mnt_parent);
		m.mountpoint = BPF_CORE_READ(mnt, mnt_mountpoint);
		m.root = BPF_CORE_READ(mnt, mnt.mnt_root);
	}
	b->walk.mnt_parent = m.parent;
	b->walk.mnt_mountpoint = m.mountpoint;
	b->walk.mnt_root = m.root;
}

/*
 * One step of a path walk: prepend the current component, or cross a mount point. Returns 0 to
 * go on, 1 when the walk ended (root reached, or the buffer is full: then `done` stays 0).
 * Global, like vigil_path_walk() below: each is checked once, on its own.
 *
 * A step costs one helper read where it can (each call and return costs, more so on CPUs with
 * return-thunk mitigations, and the fd -> path walk of close() runs on every close): the mount
 * root is recognised before anything is read, and the dentry's parent, name and inline name
 * come in one read (DENTRY_WIN).
 */
__noinline int vigil_path_step(void)
{
	struct pathbuf *b = get_pathbuf_state();
	struct {
		struct dentry *parent;
		struct qstr name;
	} pn;
	struct dentry *dentry, *parent;
	struct mount *mnt;
	__u32 len, pos, parent_off = bpf_core_field_offset(struct dentry, d_parent);
	bool wide;
	__u64 np, base;

	if (!b)
		return 1;
	/*
	 * Plain copies first: BPF_CORE_READ on the walk's own fields would emit CO-RE relocations
	 * against struct path_walk, which is not a kernel type and cannot be relocated.
	 */
	dentry = b->walk.dentry;
	mnt = b->walk.mnt;
	if (!b->walk.no_mounts && dentry == b->walk.mnt_root) {
		if (mnt == b->walk.mnt_parent) {
			b->walk.done = 1; /* root of the namespace's mount tree */
			return 1;
		}
		/* Cross to the mount point in the parent mount. */
		mnt = b->walk.mnt_parent;
		b->walk.dentry = b->walk.mnt_mountpoint;
		b->walk.mnt = mnt;
		read_mount(b, mnt);
		return 0;
	}
	/*
	 * d_parent and d_name sit side by side in every kernel Vigil runs on, followed by d_inode
	 * and the inline name: one read for all. CO-RE checks the layout; the branch not taken is
	 * removed at load.
	 */
	wide = bpf_core_field_offset(struct dentry, d_name) == parent_off + sizeof(void *);
	if (wide) {
		bpf_probe_read_kernel(b->win, DENTRY_WIN, (void *)dentry + parent_off);
		__builtin_memcpy(&pn, b->win, sizeof(pn));
	} else {
		pn.parent = BPF_CORE_READ(dentry, d_parent);
		pn.name = BPF_CORE_READ(dentry, d_name);
	}
	parent = pn.parent;
	if (dentry == parent || !dentry) {
		b->walk.done = 1; /* root of a (detached) tree */
		return 1;
	}
	len = pn.name.len & NAME_MASK;
	pos = b->walk.pos;
	if (len + 1 > pos || pos > VIGIL_PATH_MAX)
		return 1; /* longer than the buffer: keep the tail, flagged by !done */
	np = (__u64)pn.name.name;
	base = (__u64)dentry + parent_off;
	if (wide && pos >= len + 8 && np >= base + DENTRY_WIN_NAME &&
	    np + len <= base + DENTRY_WIN) {
		/*
		 * The name is inline and came with the read: copy it from the window in 8-byte
		 * words, last word first, each ending where the previous one starts. The first word
		 * may take bytes from before the name and put them before the component: that part
		 * of the buffer is written over next (the '/' and the parent) or lies outside the
		 * path. pos >= len + 8 keeps those writes inside the buffer.
		 */
		__u32 src = (__u32)(np - base) + len, dst = pos;

		for (__u32 k = 0; k < (DENTRY_WIN - DENTRY_WIN_NAME + 7) / 8; k++) {
			__u32 so, dof;

			if (k * 8 >= len)
				break;
			so = (src - 8 * k - 8) & 127;
			dof = (dst - 8 * k - 8) & PATH_MASK;
			*(__u64 *)&b->path[dof] = *(__u64 *)((char *)b->win + so);
		}
		pos -= len;
	} else {
		__u32 n = len;

		pos -= len;
		/*
		 * Bound the length afresh: 6.12's verifier loses len's unsigned bound through the
		 * comparisons above that link it to other registers, and refuses the read as
		 * unbounded.
		 */
		barrier_var(n);
		n &= NAME_MASK;
		bpf_probe_read_kernel(&b->path[pos & PATH_MASK], n, pn.name.name);
	}
	pos -= 1;
	b->path[pos & PATH_MASK] = '/';
	b->walk.pos = pos;
	b->walk.dentry = parent;
	return 0;
}

/*
 * The walk from the state set up in the per-CPU buffer's `walk`, as far as VIGIL_PATH_DEPTH
 * components. A global function: the verifier checks it once, on its own, however many callers
 * a program has; it takes no pointer, so that kernels without pointer arguments for global
 * functions (before 5.12) accept it, and it uses a bounded loop rather than bpf_loop (5.17+).
 */
__noinline int vigil_path_walk(void)
{
	struct pathbuf *b = get_pathbuf_state();

	if (!b)
		return 0;
	if (b->walk.no_mounts)
		b->walk.mnt_root = 0;
	else
		read_mount(b, b->walk.mnt);
#pragma clang loop unroll(disable)
	for (int i = 0; i < VIGIL_PATH_DEPTH; i++) {
		if (vigil_path_step())
			break;
	}
	return 0;
}

/* Walk from b->walk; returns the start offset of the path at path[pos..VIGIL_PATH_MAX). */
static __always_inline __u32 run_walk(struct pathbuf *b, bool *cut)
{
	__u32 pos;

	vigil_path_walk();
	if (!b->walk.done)
		*cut = true;
	pos = b->walk.pos;
	if (pos > VIGIL_PATH_MAX)
		pos = VIGIL_PATH_MAX;
	if (pos == VIGIL_PATH_MAX) {
		pos -= 1;
		b->path[pos & PATH_MASK] = '/';
	}
	return pos;
}

/*
 * Resolve `path` to an absolute path (relative to the root of the mount namespace it lives in)
 * written at the end of buf[0..VIGIL_PATH_MAX) (buf = get_pathbuf()). Returns the start offset;
 * sets *cut when the path was longer or deeper than the buffer allows (the kept part is then
 * the tail).
 */
static __always_inline __u32 resolve_path(struct path *path, char *buf, bool *cut)
{
	struct pathbuf *b = get_pathbuf_state();
	struct vfsmount *vfsmnt;

	if (!b)
		return VIGIL_PATH_MAX - 1;
	vfsmnt = BPF_CORE_READ(path, mnt);
	b->walk.dentry = BPF_CORE_READ(path, dentry);
	b->walk.mnt = container_of(vfsmnt, struct mount, mnt);
	b->walk.pos = VIGIL_PATH_MAX;
	b->walk.done = 0;
	b->walk.no_mounts = 0;
	return run_walk(b, cut);
}

/* Like resolve_path for a bare dentry: the path within its own mount. */
static __always_inline __u32 resolve_dentry(struct dentry *dentry, char *buf, bool *cut)
{
	struct pathbuf *b = get_pathbuf_state();

	if (!b)
		return VIGIL_PATH_MAX - 1;
	b->walk.dentry = dentry;
	b->walk.mnt = 0;
	b->walk.pos = VIGIL_PATH_MAX;
	b->walk.done = 0;
	b->walk.no_mounts = 1;
	return run_walk(b, cut);
}

/* Copy the resolved path at buf[pos..VIGIL_PATH_MAX) to dst; returns its length. */
static __always_inline __u32 copy_path(char *dst, char *buf, __u32 pos)
{
	__u32 len;

	pos &= PATH_MASK;
	len = VIGIL_PATH_MAX - pos;
	if (len > VIGIL_PATH_MAX)
		len = VIGIL_PATH_MAX;
	bpf_probe_read_kernel(dst, len, &buf[pos]);
	return len;
}

/* Credentials as a vigil_creds; auid is a task property, left unset (AUID_UNSET). */
static __always_inline void read_cred(const struct cred *cred, struct vigil_creds *c)
{
	c->uid = BPF_CORE_READ(cred, uid.val);
	c->gid = BPF_CORE_READ(cred, gid.val);
	c->euid = BPF_CORE_READ(cred, euid.val);
	c->egid = BPF_CORE_READ(cred, egid.val);
	c->suid = BPF_CORE_READ(cred, suid.val);
	c->sgid = BPF_CORE_READ(cred, sgid.val);
	c->fsuid = BPF_CORE_READ(cred, fsuid.val);
	c->fsgid = BPF_CORE_READ(cred, fsgid.val);
	c->securebits = BPF_CORE_READ(cred, securebits);
	/*
	 * kernel_cap_t is `u64 val` since 6.3 and `u32 cap[2]` before; both are 8 bytes with the
	 * low word first on little-endian machines, so a raw 8-byte read serves both.
	 */
	bpf_core_read(&c->cap_permitted, 8, &cred->cap_permitted);
	bpf_core_read(&c->cap_effective, 8, &cred->cap_effective);
	bpf_core_read(&c->cap_inheritable, 8, &cred->cap_inheritable);
	c->auid = 0xffffffff;
}

static __always_inline void read_creds(struct task_struct *task, struct vigil_creds *c)
{
	read_cred(BPF_CORE_READ(task, cred), c);
	c->auid = BPF_CORE_READ(task, loginuid.val);
}

static __always_inline void read_namespaces(struct task_struct *task, __u32 *ns)
{
	struct nsproxy *nsp = BPF_CORE_READ(task, nsproxy);
	struct pid *tpid = BPF_CORE_READ(task, thread_pid);
	unsigned int level = BPF_CORE_READ(tpid, level);

	ns[VIGIL_NS_UTS] = BPF_CORE_READ(nsp, uts_ns, ns.inum);
	ns[VIGIL_NS_IPC] = BPF_CORE_READ(nsp, ipc_ns, ns.inum);
	ns[VIGIL_NS_MNT] = BPF_CORE_READ(nsp, mnt_ns, ns.inum);
	/* The active pid namespace is the one at the task's pid level. */
	ns[VIGIL_NS_PID] = BPF_CORE_READ(tpid, numbers[level & 31].ns, ns.inum);
	ns[VIGIL_NS_PID_FOR_CHILDREN] = BPF_CORE_READ(nsp, pid_ns_for_children, ns.inum);
	ns[VIGIL_NS_NET] = BPF_CORE_READ(nsp, net_ns, ns.inum);
	if (bpf_core_field_exists(nsp->time_ns)) {
		ns[VIGIL_NS_TIME] = BPF_CORE_READ(nsp, time_ns, ns.inum);
		ns[VIGIL_NS_TIME_FOR_CHILDREN] = BPF_CORE_READ(nsp, time_ns_for_children, ns.inum);
	}
	ns[VIGIL_NS_CGROUP] = BPF_CORE_READ(nsp, cgroup_ns, ns.inum);
	ns[VIGIL_NS_USER] = BPF_CORE_READ(task, cred, user_ns, ns.inum);
}

#endif /* VIGIL_COMMON_H */

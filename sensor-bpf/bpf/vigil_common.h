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

/*
 * Path assembly writes components backwards from the end of the buffer. It is twice
 * VIGIL_PATH_MAX so that every masked write offset plus a NAME_MAX-sized copy stays inside it,
 * which is what lets the verifier accept variable offsets.
 */
struct pathbuf {
	char path[VIGIL_PATH_MAX * 2];
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

static __always_inline char *get_pathbuf(void)
{
	__u32 zero = 0;
	struct pathbuf *b = bpf_map_lookup_elem(&vigil_pathbuf, &zero);

	return b ? b->path : 0;
}

/* State of one path walk, carried through bpf_loop iterations. */
struct path_walk {
	struct dentry *dentry;
	struct vfsmount *vfsmnt;
	struct mount *mnt;
	__u32 pos;
	bool done;
	bool no_mounts; /* stop at the mount root instead of crossing (dentry-only paths) */
};

/*
 * One step of the walk: prepend the current component, or cross a mount point. Runs under
 * bpf_loop so the verifier checks the body once instead of once per iteration (a plain bounded
 * loop of this body exceeds the verifier's instruction budget).
 */
static long path_step(__u64 i, void *ctx)
{
	struct path_walk *w = ctx;
	char *buf = get_pathbuf();
	/*
	 * Plain copies first: BPF_CORE_READ on w's own fields would emit CO-RE relocations against
	 * struct path_walk, which is not a kernel type and cannot be relocated.
	 */
	struct dentry *dentry = w->dentry;
	struct vfsmount *vfsmnt = w->vfsmnt;
	struct mount *mnt = w->mnt;
	struct dentry *mnt_root, *parent;
	struct qstr name;
	__u32 len, pos;

	if (!buf)
		return 1;
	parent = BPF_CORE_READ(dentry, d_parent);
	if (!w->no_mounts) {
		mnt_root = BPF_CORE_READ(vfsmnt, mnt_root);
		if (dentry == mnt_root) {
			struct mount *mnt_parent = BPF_CORE_READ(mnt, mnt_parent);

			if (mnt == mnt_parent) {
				w->done = true; /* root of the namespace's mount tree */
				return 1;
			}
			/* Cross to the mount point in the parent mount. */
			w->dentry = BPF_CORE_READ(mnt, mnt_mountpoint);
			w->mnt = mnt_parent;
			w->vfsmnt = &mnt_parent->mnt;
			return 0;
		}
	}
	if (dentry == parent || !dentry) {
		w->done = true; /* root of a (detached) tree */
		return 1;
	}
	name = BPF_CORE_READ(dentry, d_name);
	len = name.len & NAME_MASK;
	pos = w->pos;
	if (len + 1 > pos || pos > VIGIL_PATH_MAX)
		return 1; /* longer than the buffer: keep the tail, flagged by !done */
	pos -= len;
	bpf_probe_read_kernel(&buf[pos & PATH_MASK], len, name.name);
	pos -= 1;
	buf[pos & PATH_MASK] = '/';
	w->pos = pos;
	w->dentry = parent;
	return 0;
}

/* Finish a walk: returns the start offset of the path at buf[pos..VIGIL_PATH_MAX). */
static __always_inline __u32 finish_walk(struct path_walk *w, char *buf, bool *cut)
{
	__u32 pos;

	if (!w->done)
		*cut = true;
	pos = w->pos;
	if (pos > VIGIL_PATH_MAX)
		pos = VIGIL_PATH_MAX;
	if (pos == VIGIL_PATH_MAX) {
		pos -= 1;
		buf[pos & PATH_MASK] = '/';
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
	struct path_walk w = {};

	w.dentry = BPF_CORE_READ(path, dentry);
	w.vfsmnt = BPF_CORE_READ(path, mnt);
	w.mnt = container_of(w.vfsmnt, struct mount, mnt);
	w.pos = VIGIL_PATH_MAX;
	bpf_loop(VIGIL_PATH_DEPTH, path_step, &w, 0);
	return finish_walk(&w, buf, cut);
}

/* Like resolve_path for a bare dentry: the path within its own mount. */
static __always_inline __u32 resolve_dentry(struct dentry *dentry, char *buf, bool *cut)
{
	struct path_walk w = {};

	w.dentry = dentry;
	w.no_mounts = true;
	w.pos = VIGIL_PATH_MAX;
	bpf_loop(VIGIL_PATH_DEPTH, path_step, &w, 0);
	return finish_walk(&w, buf, cut);
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

// SPDX-License-Identifier: GPL-2.0-only
/*
 * Self-protection (`--self-protection`, where BPF-LSM is active): LSM programs that make the
 * kernel refuse, for every process other than the sensor,
 *
 *   - ptrace of the sensor (attach mode: PTRACE_ATTACH/SEIZE, /proc/<pid>/mem writes,
 *     process_vm_writev, pidfd_getfd),
 *   - signals to it, except from pid 1, its real parent (systemd, containerd-shim) and that
 *     parent's other children when the parent is not pid 1 (`runc kill`, spawned by the shim),
 *   - unlink, rmdir and rename below its instance pin directory,
 *   - bpf() link detach and update on its links, and writable descriptors of its maps.
 *
 * Every refusal is a vigil_protect_rec in the shared ring buffer (vigil_events), which the
 * sensor reports as a process_lsm event.
 *
 * The programs are cheap on the paths every process takes: each starts with one array lookup
 * (is a sensor protected at all?) and one comparison against the protected tgid, the pin
 * directory's device or the operation kind, before anything else is read.
 *
 * These programs are the sensor's own: they are not pinned and not taken over. Their links live
 * as long as the sensor process, so a sensor that is gone protects nothing, and the next sensor
 * loads them fresh. The exit program also clears the protected tgid when the sensor's main
 * thread exits, so that a recycled pid is never protected while the links are being released.
 *
 * Hooks whose prototype grew over kernel versions (bpf gained `kernel` in 6.14) are declared
 * with the arguments all versions share, and no program reads the previous program's return
 * value (`ret`, the hook's last context slot, moves with the arity): the trampoline skips the
 * programs after the first that returns an error anyway.
 */
#define __VIGIL_BPF__
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "vigil_abi.h"
#include "vigil_common.h"

char LICENSE[] SEC("license") = "GPL";

#define EPERM 1
#define PTRACE_MODE_ATTACH 0x02 /* include/linux/ptrace.h */
#define FMODE_WRITE 0x2         /* include/linux/fs.h */

/* Single entry, written by the sensor after its programs are attached. Not pinned: per sensor. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct vigil_protect_cfg);
} vigil_prot_cfg SEC(".maps");

/* Link ids and map ids of the sensor (pinned in its generation, or held by it). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, VIGIL_PROTECT_IDS);
	__type(key, __u32);
	__type(value, __u8);
} vigil_prot_links SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, VIGIL_PROTECT_IDS);
	__type(key, __u32);
	__type(value, __u8);
} vigil_prot_maps SEC(".maps");

/* The configuration when a sensor is protected, else 0. */
static __always_inline struct vigil_protect_cfg *protected_cfg(void)
{
	__u32 zero = 0;
	struct vigil_protect_cfg *c = bpf_map_lookup_elem(&vigil_prot_cfg, &zero);

	if (!c || !c->tgid)
		return 0;
	return c;
}

static __always_inline __u32 current_tgid(void)
{
	return bpf_get_current_pid_tgid() >> 32;
}

/*
 * A refusal record. The reservation is not zeroed by the kernel: every byte is written. A full
 * ring buffer loses the record (counted with the hook records' losses); the refusal stands.
 */
static __always_inline void report(__u32 hook, __u32 target, __u32 arg, __u64 id, struct dentry *d)
{
	struct vigil_protect_rec *r = bpf_ringbuf_reserve(&vigil_events, sizeof(*r), 0);
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u32 pid = pid_tgid >> 32;
	struct vigil_proc *p;
	long n = 0;

	if (!r) {
		count(VIGIL_CNT_RB_LOST_HOOK);
		return;
	}
	r->hdr.kind = VIGIL_MSG_PROTECT;
	r->hdr.size = sizeof(*r);
	r->hdr.time = bpf_ktime_get_boot_ns();
	r->pid = pid;
	r->tid = (__u32)pid_tgid;
	/* The key from the stack: 5.10 refuses ring-buffer memory as a map key. */
	p = bpf_map_lookup_elem(&vigil_procs, &pid);
	r->ktime = p ? p->ktime : 0;
	r->hook = hook;
	r->target_pid = target;
	r->arg = arg;
	r->id = id;
	__builtin_memset(r->name, 0, sizeof(r->name));
	if (d) {
		const unsigned char *name = BPF_CORE_READ(d, d_name.name);

		n = bpf_probe_read_kernel_str(r->name, sizeof(r->name), name);
	}
	r->name_len = n > 0 ? n - 1 : 0;
	bpf_ringbuf_submit(r, wakeup_flag());
}

SEC("lsm/ptrace_access_check")
int BPF_PROG(vigil_p_ptrace, struct task_struct *child, unsigned int mode)
{
	struct vigil_protect_cfg *c = protected_cfg();
	__u32 target;

	/* Read-only modes (/proc/<pid>/stat, status, …) stay allowed: tools list the sensor. */
	if (!c || !(mode & PTRACE_MODE_ATTACH))
		return 0;
	target = BPF_CORE_READ(child, tgid);
	if (target != c->tgid || current_tgid() == c->tgid)
		return 0;
	report(VIGIL_PROTECT_PTRACE, target, mode, 0, 0);
	return -EPERM;
}

/*
 * Only signals sent by a process come here (check_kill_permission() skips the hook for
 * signals the kernel generates: OOM kills, SIGKILL when a pid namespace's init exits, SIGCHLD,
 * SIGPIPE, SIGSEGV). Signal 0 (does the process exist?) is allowed.
 */
SEC("lsm/task_kill")
int BPF_PROG(vigil_p_kill, struct task_struct *p, struct kernel_siginfo *info, int sig)
{
	struct vigil_protect_cfg *c = protected_cfg();
	__u32 target, me, parent;

	if (!c || sig == 0)
		return 0;
	target = BPF_CORE_READ(p, tgid);
	if (target != c->tgid)
		return 0;
	me = current_tgid();
	/* The sensor itself, and pid 1 of the initial pid namespace (the global pid). */
	if (me == c->tgid || me == 1)
		return 0;
	/* Its real parent: systemd's service manager, or the container runtime's shim. */
	parent = BPF_CORE_READ(p, real_parent, tgid);
	if (me == parent)
		return 0;
	/*
	 * The runtime's helpers: containerd-shim signals the container through `runc kill`, a
	 * child of the shim. Not when the parent is pid 1: its children are every service.
	 */
	if (parent != 1) {
		struct task_struct *cur = (struct task_struct *)bpf_get_current_task();

		if (BPF_CORE_READ(cur, real_parent, tgid) == parent)
			return 0;
	}
	report(VIGIL_PROTECT_KILL, target, sig, 0, 0);
	return -EPERM;
}

/*
 * Whether `d` is the instance pin directory or lies below it, up to VIGIL_PROTECT_DEPTH
 * levels (the pins are three levels down: <generation>/links/<name>). d_parent never crosses a
 * mount, so the device is compared once, first: a dentry of any other filesystem costs one
 * read.
 */
static __always_inline int under_pins(struct vigil_protect_cfg *c, struct dentry *d)
{
	if (!d || BPF_CORE_READ(d, d_sb, s_dev) != c->pin_dev)
		return 0;
	for (int i = 0; i < VIGIL_PROTECT_DEPTH; i++) {
		struct dentry *parent;

		if (BPF_CORE_READ(d, d_inode, i_ino) == c->pin_ino)
			return 1;
		parent = BPF_CORE_READ(d, d_parent);
		if (!parent || parent == d)
			return 0;
		d = parent;
	}
	return 0;
}

static __always_inline int inode_op(__u32 hook, struct dentry *d, struct dentry *d2)
{
	struct vigil_protect_cfg *c = protected_cfg();

	if (!c || current_tgid() == c->tgid)
		return 0;
	if (!under_pins(c, d) && !under_pins(c, d2))
		return 0;
	report(hook, 0, 0, BPF_CORE_READ(d, d_inode, i_ino), d);
	return -EPERM;
}

SEC("lsm/inode_unlink")
int BPF_PROG(vigil_p_unlink, struct inode *dir, struct dentry *dentry)
{
	return inode_op(VIGIL_PROTECT_UNLINK, dentry, 0);
}

SEC("lsm/inode_rmdir")
int BPF_PROG(vigil_p_rmdir, struct inode *dir, struct dentry *dentry)
{
	return inode_op(VIGIL_PROTECT_RMDIR, dentry, 0);
}

/* Moving a pin away, and overwriting one (the new name below the directory), are refused. */
SEC("lsm/inode_rename")
int BPF_PROG(vigil_p_rename, struct inode *old_dir, struct dentry *old_dentry,
	     struct inode *new_dir, struct dentry *new_dentry)
{
	return inode_op(VIGIL_PROTECT_RENAME, old_dentry, new_dentry);
}

/*
 * bpf(BPF_LINK_DETACH / BPF_LINK_UPDATE): the link descriptor is resolved through the caller's
 * descriptor table to the struct bpf_link behind it. `attr` is the kernel's copy of the
 * caller's attributes; link_fd is the first field of both commands' attributes.
 *
 * The file is not checked to be a link (bpf_link_fops is not reachable without typed ksyms,
 * 5.11+): for another kind of file, private_data is read as if it were a link. A misread can
 * only match a protected id by chance, and then turns a call that fails anyway (the descriptor
 * is no link: EINVAL) into EPERM. Another thread of the caller can swap the descriptor between
 * this check and the kernel's own lookup; operations.md says so.
 */
SEC("lsm/bpf")
int BPF_PROG(vigil_p_bpf, int cmd, union bpf_attr *attr)
{
	struct vigil_protect_cfg *c;
	struct task_struct *task;
	struct fdtable *fdt;
	struct file **fds, *f;
	struct bpf_link *link;
	__u32 fd = 0, id;

	if (cmd != BPF_LINK_DETACH && cmd != BPF_LINK_UPDATE)
		return 0;
	c = protected_cfg();
	if (!c || current_tgid() == c->tgid)
		return 0;
	if (bpf_probe_read_kernel(&fd, sizeof(fd), attr))
		return 0;
	task = (struct task_struct *)bpf_get_current_task();
	fdt = BPF_CORE_READ(task, files, fdt);
	if (!fdt || fd >= BPF_CORE_READ(fdt, max_fds))
		return 0;
	fds = BPF_CORE_READ(fdt, fd);
	f = 0;
	if (bpf_probe_read_kernel(&f, sizeof(f), &fds[fd]) || !f)
		return 0;
	link = BPF_CORE_READ(f, private_data);
	if (!link)
		return 0;
	id = BPF_CORE_READ(link, id);
	if (!bpf_map_lookup_elem(&vigil_prot_links, &id))
		return 0;
	report(VIGIL_PROTECT_BPF, 0, cmd, id, 0);
	return -EPERM;
}

/*
 * A descriptor of a map is being made (BPF_MAP_GET_FD_BY_ID, BPF_OBJ_GET of a pin): refused
 * with write access to the sensor's maps. Read-only descriptors (BPF_F_RDONLY) stay allowed.
 */
SEC("lsm/bpf_map")
int BPF_PROG(vigil_p_bpf_map, struct bpf_map *map, unsigned int fmode)
{
	struct vigil_protect_cfg *c;
	__u32 id;

	if (!(fmode & FMODE_WRITE))
		return 0;
	c = protected_cfg();
	if (!c || current_tgid() == c->tgid)
		return 0;
	id = BPF_CORE_READ(map, id);
	if (!bpf_map_lookup_elem(&vigil_prot_maps, &id))
		return 0;
	report(VIGIL_PROTECT_BPF_MAP, 0, fmode, id, 0);
	return -EPERM;
}

/* The sensor's main thread exits: protection is dormant until the next sensor registers. */
SEC("tp_btf/sched_process_exit")
int BPF_PROG(vigil_p_exit, struct task_struct *task)
{
	__u32 zero = 0;
	struct vigil_protect_cfg *c = bpf_map_lookup_elem(&vigil_prot_cfg, &zero);

	if (c && c->tgid && BPF_CORE_READ(task, pid) == (int)c->tgid)
		c->tgid = 0;
	return 0;
}

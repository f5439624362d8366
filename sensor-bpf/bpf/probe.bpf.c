// SPDX-License-Identifier: GPL-2.0-only
/*
 * Feature probes: the smallest program of each kind the hook engine relies on. The sensor tries
 * to load and attach each one at start; what loads tells it which mechanisms this kernel offers
 * (kprobes are compiled out on some kernels, trampolines and BPF-LSM refused on others).
 * None of them does anything when it runs.
 */
#define __VIGIL_BPF__
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "GPL";

SEC("kprobe/security_file_open")
int probe_kprobe(struct pt_regs *ctx)
{
	return 0;
}

SEC("kretprobe/security_file_open")
int probe_kretprobe(struct pt_regs *ctx)
{
	return 0;
}

SEC("fentry/security_file_open")
int BPF_PROG(probe_fentry, struct file *file)
{
	return 0;
}

SEC("lsm/file_open")
int BPF_PROG(probe_lsm, struct file *file)
{
	return 0;
}

SEC("raw_tracepoint/sys_enter")
int probe_raw_tracepoint(struct bpf_raw_tracepoint_args *ctx)
{
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_getpid")
int probe_tracepoint(void *ctx)
{
	return 0;
}

/* BPF cookies (5.15+): loads only where the helper exists; never attached. */
SEC("tracepoint/syscalls/sys_enter_getppid")
int probe_cookie(void *ctx)
{
	return bpf_get_attach_cookie(ctx) == 0xffffffffffffffffULL;
}

/*
 * bpf_loop (5.17+). Reported, not relied on: Vigil's programs use bounded loops around global
 * functions, which 5.10 verifies too, so the probe only tells operators what the kernel has.
 */
static long probe_loop_step(__u32 i, void *data)
{
	return 1;
}

SEC("tracepoint/syscalls/sys_enter_getppid")
int probe_bpf_loop(void *ctx)
{
	bpf_loop(1, probe_loop_step, 0, 0);
	return 0;
}

/* bpf_send_signal is only accepted by the verifier where the kernel offers it. */
SEC("tp_btf/sched_process_free")
int BPF_PROG(probe_send_signal, struct task_struct *task)
{
	if (task == (void *)1)
		bpf_send_signal(0);
	return 0;
}

/* Loads only where the kernel was built with CONFIG_BPF_KPROBE_OVERRIDE. */
SEC("kprobe/security_file_open")
int probe_override(struct pt_regs *ctx)
{
	bpf_override_return(ctx, 0);
	return 0;
}

/* Ring buffers exist since 5.8; the object fails to load without them. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);
} probe_ringbuf SEC(".maps");

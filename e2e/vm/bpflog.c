// SPDX-License-Identifier: GPL-2.0-only
/*
 * libvigil-bpflog.so: the verifier's statistics of every BPF program a process loads, for the
 * instruction-budget test on kernels that do not report them (bpf_prog_info.verified_insns is
 * 5.16+). Test tooling of the VM harness, never part of the sensor.
 *
 * Preloaded (LD_PRELOAD) into a process that loads programs with syscall(SYS_bpf, ...) — aya
 * does — it asks the kernel for the statistics log (BPF_LOG_STATS, level 4: a few lines, no
 * instruction trace) of every BPF_PROG_LOAD that asked for no log, and appends one line per
 * load to the file named by $VIGIL_BPFLOG:
 *
 *     <prog_name> <prog_type> <insn_cnt> <processed insns, -1 if the log had none> <result>
 *
 * The caller's attributes are restored after the call, so the loader sees what it passed. A
 * load whose statistics log does not fit is retried without one (the log never decides
 * whether a program loads).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define LOG_STATS 4 /* BPF_LOG_STATS */

typedef long (*syscall_fn)(long, ...);

static void record(const union bpf_attr *a, long processed, long ret)
{
	const char *path = getenv("VIGIL_BPFLOG");
	char name[sizeof(a->prog_name) + 1];
	char line[160];
	int fd, n;

	if (!path)
		return;
	memcpy(name, a->prog_name, sizeof(a->prog_name));
	name[sizeof(a->prog_name)] = 0;
	n = snprintf(line, sizeof(line), "%s %u %u %ld %ld\n", name[0] ? name : "-", a->prog_type,
		     a->insn_cnt, processed, ret);
	fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (fd < 0)
		return;
	/* One write of a short line to an O_APPEND file: lines of threads do not interleave. */
	if (write(fd, line, n) != n) {
		/* Nothing to do: the budget test reports a load without a line. */
	}
	close(fd);
}

long syscall(long nr, ...)
{
	static syscall_fn real;
	long a1, a2, a3, a4, a5, a6, ret, processed = -1;
	union bpf_attr *attr;
	__u32 level, size;
	__u64 buf;
	char *log, *p;
	int err;
	va_list ap;

	va_start(ap, nr);
	a1 = va_arg(ap, long);
	a2 = va_arg(ap, long);
	a3 = va_arg(ap, long);
	a4 = va_arg(ap, long);
	a5 = va_arg(ap, long);
	a6 = va_arg(ap, long);
	va_end(ap);
	if (!real)
		real = (syscall_fn)dlsym(RTLD_NEXT, "syscall");
	attr = (union bpf_attr *)a2;
	if (nr != SYS_bpf || a1 != BPF_PROG_LOAD || !attr || attr->log_level || attr->log_size)
		return real(nr, a1, a2, a3, a4, a5, a6);

	/* 64 KiB: the statistics are a few hundred bytes on every kernel. */
	size = 64 << 10;
	log = calloc(1, size);
	if (!log)
		return real(nr, a1, a2, a3, a4, a5, a6);
	level = attr->log_level;
	buf = attr->log_buf;
	attr->log_level = LOG_STATS;
	attr->log_buf = (__u64)(unsigned long)log;
	attr->log_size = size;
	ret = real(nr, a1, a2, a3, a4, a5, a6);
	err = errno;
	attr->log_level = level;
	attr->log_buf = buf;
	attr->log_size = 0;
	if (ret < 0 && err == ENOSPC) {
		/* Should not happen with a stats-only log; never let the log change the outcome. */
		ret = real(nr, a1, a2, a3, a4, a5, a6);
		err = errno;
	}
	p = strstr(log, "processed ");
	if (p)
		processed = strtol(p + strlen("processed "), NULL, 10);
	record(attr, processed, ret < 0 ? -err : 0);
	free(log);
	errno = err;
	return ret;
}

#!/bin/busybox sh
# Vigil VM test harness: the guest's /init (PID 1), run by busybox sh.
#
# Packed into the initramfs by e2e/vm/run.sh together with /vigil/config
# (sourced below). It prepares a minimal system, runs every test of every
# test binary in /vigil/tests one at a time, reports to the host over the
# second serial port (/dev/ttyS1) and powers off.
#
# Protocol on ttyS1, one record per line, fields separated by single spaces
# (test names are Rust paths, they contain no spaces):
#   @@VIGIL boot <kernel-release> <uptime>
#   @@VIGIL probe <json>                  `vigil-sensor probe`: the mechanisms found
#   @@VIGIL plan <bin> <test>             every test that is going to run
#   @@VIGIL list-error <bin> <rc>         the binary could not list its tests
#   @@VIGIL start <bin> <test>
#   @@VIGIL result <bin> <test> pass|fail|timeout|skip <seconds> [rc]
#   @@VIGIL insns <program> <count>       verified instructions (programs::every_program_…)
#   @@VIGIL dmesg <line>                  suspicious kernel log lines at the end
#   @@VIGIL done
# The full output of every test goes to the console (ttyS0) between
# "@@VIGIL-CONSOLE begin <bin> <test>" and "@@VIGIL-CONSOLE end <bin> <test>"
# so that kernel messages printed meanwhile are interleaved in order.

export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root TMPDIR=/tmp LANG=C.UTF-8 TERM=dumb

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs -o mode=1777 tmpfs /dev/shm
mount -t tmpfs -o mode=1777 tmpfs /tmp
mount -t tmpfs -o mode=0755 tmpfs /run
mount -t bpf bpffs /sys/fs/bpf
mount -t tracefs tracefs /sys/kernel/tracing
mount -t debugfs debugfs /sys/kernel/debug
mount -t securityfs securityfs /sys/kernel/security
mount -t cgroup2 cgroup2 /sys/fs/cgroup
ln -sf /proc/self/fd /dev/fd
ln -sf /proc/self/fd/0 /dev/stdin
ln -sf /proc/self/fd/1 /dev/stdout
ln -sf /proc/self/fd/2 /dev/stderr
hostname vigil-vm
ip link set lo up

# Results channel. Raw mode: no echo, no CR/LF translation.
stty -F /dev/ttyS1 raw -echo 2>/dev/null
exec 3>/dev/ttyS1
report() { echo "@@VIGIL $*" >&3; }
say() { echo "@@VIGIL-CONSOLE $*" >/dev/console; }

# Defaults, overridden by the host's /vigil/config. Filters and excludes are
# newline-separated substrings of BINARY::TEST.
VIGIL_FILTERS=
VIGIL_EXCLUDES=
VIGIL_TEST_TIMEOUT=300
VIGIL_EXPECT_BPF_LSM=1
# shellcheck disable=SC1091 # written by run.sh
. /vigil/config

# The repository is at /vigil/src and the shared policy corpus at
# /vigil/shared, whatever paths the test binaries were built from: tests find
# them through vigil_e2e::repo_root() and corpus_policy().
VIGIL_WORKDIR=/vigil/src/e2e
# VIGIL_SLOW: tests scale their timeouts (and workload sizes) for TCG.
export VIGIL_BIN_DIR=/vigil/bin VIGIL_IN_VM=1 VIGIL_SLOW=1 RUST_BACKTRACE=1
export VIGIL_REPO_DIR=/vigil/src VIGIL_SHARED_DIR=/vigil/shared
export VIGIL_BPFLOG_SO=/vigil/lib/libvigil-bpflog.so VIGIL_EXPECT_BPF_LSM
# The budget test writes each program's verified instructions here (reported at the end).
export VIGIL_BUDGET_REPORT=/tmp/budget.report
export CARGO_MANIFEST_DIR="$VIGIL_WORKDIR" CARGO_PKG_NAME=vigil-e2e

report boot "$(uname -r)" "$(cut -d' ' -f1 /proc/uptime)"
say "kernel $(uname -r), lsm=$(cat /sys/kernel/security/lsm), cmdline: $(cat /proc/cmdline)"

# What this kernel offers, as the sensor's probe sees it (one JSON line).
/vigil/bin/vigil-sensor probe </dev/null >/tmp/probe.json 2>/tmp/probe.err 3>&-
if [ -s /tmp/probe.json ]; then
    report probe "$(head -n 1 /tmp/probe.json)"
else
    say "vigil-sensor probe failed:"
    cat /tmp/probe.err >/dev/console
fi

# Is STRING ($1) a substring match of any line of LIST ($2)?
matches_any() {
    _s=$1
    _ifs=$IFS
    IFS='
'
    set -f
    for _p in $2; do
        [ -n "$_p" ] || continue
        case "$_s" in *"$_p"*) IFS=$_ifs; set +f; return 0 ;; esac
    done
    IFS=$_ifs
    set +f
    return 1
}
has_lines() { [ -n "$(printf '%s' "$1" | tr -d '[:space:]')" ]; }

now() { cut -d' ' -f1 /proc/uptime; }

# Plan: list every test binary's tests (and its ignored ones) before running
# anything, so that the host can tell a missing result from a skipped test.
: >/tmp/plan
for bin in /vigil/tests/*; do
    [ -x "$bin" ] || continue
    name=${bin##*/}
    (cd "$VIGIL_WORKDIR" && "$bin" --list --format terse) </dev/null >/tmp/list.out 2>&1 3>&-
    rc=$?
    if [ $rc -ne 0 ]; then
        report list-error "$name" "$rc"
        say "listing tests of $name failed (rc=$rc):"
        cat /tmp/list.out >/dev/console
        continue
    fi
    (cd "$VIGIL_WORKDIR" && "$bin" --list --format terse --ignored) </dev/null 2>/dev/null 3>&- |
        sed -n 's/: test$//p' >"/tmp/ignored.$name"
    sed -n 's/: test$//p' /tmp/list.out | while read -r t; do
        if has_lines "$VIGIL_FILTERS" && ! matches_any "$name::$t" "$VIGIL_FILTERS"; then
            continue
        fi
        echo "$name $t" >>/tmp/plan
        report plan "$name" "$t"
    done
done

# Run each test alone, in the e2e package directory (like cargo test does),
# with a hard timeout, its output not captured (a test killed at its timeout
# would otherwise take what it printed with it). The loop runs in PID 1 itself (no pipe into it), so
# `kill -9 -1` after each test reaps whatever the test left behind
# (a sensor, workloads) without killing this script.
while read -r name t; do
    bin=/vigil/tests/$name
    if grep -qxF "$t" "/tmp/ignored.$name" || matches_any "$name::$t" "$VIGIL_EXCLUDES"; then
        report result "$name" "$t" skip 0
        continue
    fi
    report start "$name" "$t"
    say "begin $name $t"
    t0=$(now)
    (cd "$VIGIL_WORKDIR" &&
        exec timeout -s KILL "$VIGIL_TEST_TIMEOUT" "$bin" --exact "$t" --test-threads=1 --nocapture) \
        </dev/null >/tmp/test.out 2>&1 3>&-
    rc=$?
    t1=$(now)
    kill -9 -1 2>/dev/null
    secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
    cat /tmp/test.out >/dev/console
    # Keep the end marker on a line of its own.
    [ -n "$(tail -c 1 /tmp/test.out)" ] && echo >/dev/console
    if [ $rc -eq 0 ] && grep -q '^test result: ok\. 1 passed' /tmp/test.out; then
        status=pass
    elif [ $rc -eq 137 ] && awk -v s="$secs" -v l="$VIGIL_TEST_TIMEOUT" 'BEGIN { exit !(s + 1 >= l) }'; then
        status=timeout
    else
        status=fail
    fi
    say "end $name $t $status rc=$rc"
    report result "$name" "$t" "$status" "$secs" "$rc"
done </tmp/plan

if [ -s "$VIGIL_BUDGET_REPORT" ]; then
    while read -r prog n; do report insns "$prog" "$n"; done <"$VIGIL_BUDGET_REPORT"
fi

# Kernel trouble that a test may not have noticed: oopses, BUGs, warnings,
# user-space crashes (e.g. a segfaulting sensor).
dmesg | grep -E 'BUG:|Oops|Kernel panic|WARNING:|general protection|segfault at|traps:|Call Trace' |
    head -n 50 | while read -r line; do report dmesg "$line"; done

report "done"
sync
poweroff -f
# Not reached; should poweroff fail, PID 1 exiting panics the kernel and
# qemu (-no-reboot, panic=-1) stops.

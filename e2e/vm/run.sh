#!/usr/bin/env bash
# Vigil VM test harness: runs the e2e suite (vigil-e2e's integration tests) on
# one of Debian's kernels under qemu (TCG), where kprobes, fentry/fexit,
# fmod_ret and BPF-LSM are available. See docs/testing.md.
#
#   e2e/vm/run.sh [--kernel 5.10|6.1|6.12] [--kernel-pkg NAME] [--no-bpf-lsm]
#                 [--filter SUBSTR]... [--exclude SUBSTR]... [--timeout SECS]
#                 [--test-timeout SECS] [--keep] [-h]
#
# The kernel comes from the Debian release that ships it (bullseye, bookworm,
# trixie) through a private apt configuration under $CACHE/apt/<release>: the
# system's own apt sources are neither read nor changed, and apt checks the
# release's signature and the package's checksum as it always does.
#
# Exit status: 0 all tests passed; 1 a test failed or the guest misbehaved
# (panic, oops, crash, missing result, timeout); 2 the harness could not run
# (packages, kernel download, build).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)

KERNEL=${VIGIL_VM_KERNEL:-6.1}
KERNEL_PKG=${VIGIL_VM_KERNEL_PKG:-linux-image-cloud-amd64}
BPF_LSM=${VIGIL_VM_BPF_LSM:-1}
MIRROR=${VIGIL_VM_MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${VIGIL_VM_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
KEYRING=${VIGIL_VM_KEYRING:-/usr/share/keyrings/debian-archive-keyring.gpg}
# Package lists older than this are refreshed before a kernel is chosen.
LISTS_MAX_AGE=${VIGIL_VM_LISTS_MAX_AGE:-86400}
FILTERS=()
[ -n "${VIGIL_VM_FILTER:-}" ] && FILTERS+=("$VIGIL_VM_FILTER")
EXCLUDES=()
[ -n "${VIGIL_VM_EXCLUDE:-}" ] && EXCLUDES+=("$VIGIL_VM_EXCLUDE")
TIMEOUT=${VIGIL_VM_TIMEOUT:-900}
TEST_TIMEOUT=${VIGIL_VM_TEST_TIMEOUT:-300}
BOOT_TIMEOUT=${VIGIL_VM_BOOT_TIMEOUT:-120}
MEMORY=${VIGIL_VM_MEMORY:-3G}
CPUS=${VIGIL_VM_CPUS:-2}
# One host thread runs every vCPU (round robin). Multi-threaded TCG (one thread per vCPU) lets a
# vCPU go on running kernel text another vCPU has just patched (text_poke_bp, on every tracepoint
# switched on or off): guests died of "Oops: int3" (6.12) or spun at a patched site until the run
# timed out (5.10). docs/testing.md, "TCG: one thread for all vCPUs".
TCG_THREAD=${VIGIL_VM_TCG_THREAD:-single}
CACHE=${VIGIL_VM_CACHE:-/var/cache/vigil/vm}
APPEND_EXTRA=${VIGIL_VM_APPEND:-}
KEEP=0
HOST_PACKAGES=(coreutils dash)
HOST_TOOLS=(setpriv unshare bpftool)

usage() {
    cat <<EOF
usage: $0 [options]
  --kernel VERSION     kernel line to boot: 5.10 (bullseye), 6.1 (bookworm)
                       or 6.12 (trixie) (default: $KERNEL)
  --kernel-pkg NAME    kernel package or metapackage of that release
                       (default: $KERNEL_PKG; e.g. linux-image-amd64)
  --no-bpf-lsm         boot without bpf in lsm= (BPF-LSM inactive)
  --filter SUBSTR      run only tests whose name, as BINARY::TEST (e.g.
                       vm_smoke::vm_feature_probe), contains SUBSTR; may be
                       given several times (a test matching any runs)
  --exclude SUBSTR     skip tests whose BINARY::TEST contains SUBSTR (reported
                       as skipped); may be given several times
  --timeout SECS       whole VM run, boot to power-off (default: $TIMEOUT)
  --test-timeout SECS  one test (default: $TEST_TIMEOUT)
  --keep               keep the work directory (initramfs, logs)
Environment: VIGIL_VM_KERNEL, VIGIL_VM_KERNEL_PKG, VIGIL_VM_BPF_LSM (0: as
--no-bpf-lsm), VIGIL_VM_FILTER, VIGIL_VM_EXCLUDE, VIGIL_VM_TIMEOUT,
VIGIL_VM_TEST_TIMEOUT, VIGIL_VM_BOOT_TIMEOUT, VIGIL_VM_MEMORY ($MEMORY),
VIGIL_VM_CPUS ($CPUS), VIGIL_VM_CACHE ($CACHE), VIGIL_VM_APPEND (extra
kernel command line), VIGIL_VM_MIRROR ($MIRROR),
VIGIL_VM_SECURITY_MIRROR ($SECURITY_MIRROR), VIGIL_VM_KEYRING ($KEYRING),
VIGIL_VM_LISTS_MAX_AGE (${LISTS_MAX_AGE}s), CARGO_TARGET_DIR.
EOF
}

while [ $# -gt 0 ]; do
    case "$1" in
        --kernel) KERNEL=${2:?--kernel needs a value}; shift 2 ;;
        --kernel=*) KERNEL=${1#*=}; shift ;;
        --kernel-pkg) KERNEL_PKG=${2:?--kernel-pkg needs a value}; shift 2 ;;
        --kernel-pkg=*) KERNEL_PKG=${1#*=}; shift ;;
        --no-bpf-lsm) BPF_LSM=0; shift ;;
        --filter) FILTERS+=("${2?--filter needs a value}"); shift 2 ;;
        --filter=*) FILTERS+=("${1#*=}"); shift ;;
        --exclude) EXCLUDES+=("${2?--exclude needs a value}"); shift 2 ;;
        --exclude=*) EXCLUDES+=("${1#*=}"); shift ;;
        --timeout) TIMEOUT=${2:?--timeout needs a value}; shift 2 ;;
        --timeout=*) TIMEOUT=${1#*=}; shift ;;
        --test-timeout) TEST_TIMEOUT=${2:?--test-timeout needs a value}; shift 2 ;;
        --test-timeout=*) TEST_TIMEOUT=${1#*=}; shift ;;
        --keep) KEEP=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "vm: unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
done
# The Debian release that ships each kernel line, and the package name prefix
# its kernel images have (a check that the metapackage led where it should).
case "$KERNEL" in
    5.10) RELEASE=bullseye; KPREFIX=linux-image-5.10. ;;
    6.1) RELEASE=bookworm; KPREFIX=linux-image-6.1. ;;
    6.12) RELEASE=trixie; KPREFIX=linux-image-6.12. ;;
    *) echo "vm: --kernel must be 5.10, 6.1 or 6.12, not '$KERNEL'" >&2; exit 2 ;;
esac
case "$BPF_LSM" in 0|1) ;; *) echo "vm: VIGIL_VM_BPF_LSM must be 0 or 1" >&2; exit 2 ;; esac
FILTER=$(IFS='|'; echo "${FILTERS[*]}")
for n in "$TIMEOUT" "$TEST_TIMEOUT" "$BOOT_TIMEOUT" "$CPUS"; do
    [[ $n =~ ^[1-9][0-9]*$ ]] || { echo "vm: not a positive number: $n" >&2; exit 2; }
done

say() { echo "vm: $*"; }
die() {
    echo "vm: error: $*" >&2
    echo "0 passed, 1 failed"
    exit 2
}
# Print the last lines of a log file, indented.
show_tail() { tail -n "${2:-40}" "$1" 2>/dev/null | sed 's/^/    | /' >&2 || true; }

mkdir -p "$CACHE" || die "cannot create cache directory $CACHE"
WORK=$(mktemp -d "$CACHE/run.XXXXXX") || die "cannot create a work directory in $CACHE"
QEMU_PID=
# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
    if [ -n "$QEMU_PID" ] && kill -0 "$QEMU_PID" 2>/dev/null; then
        kill "$QEMU_PID" 2>/dev/null || true
    fi
    # Keep the logs of the last run; drop the big files unless --keep.
    if [ -d "$WORK" ]; then
        rm -rf "$CACHE/last-run"
        mkdir -p "$CACHE/last-run"
        cp -f "$WORK"/*.log "$CACHE/last-run/" 2>/dev/null || true
        [ "$KEEP" = 1 ] || rm -rf "$WORK"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- host packages -----------------------------------------------------------

APT_UPDATED=0
apt_update() {
    [ "$APT_UPDATED" = 1 ] && return 0
    APT_UPDATED=1
    DEBIAN_FRONTEND=noninteractive apt-get update -q >"$WORK/apt-update.log" 2>&1 || {
        show_tail "$WORK/apt-update.log"
        say "apt-get update failed (continuing with the package lists present)"
    }
}

ensure_packages() {
    local want=(qemu-system-x86 busybox-static cpio jq coreutils util-linux dash) missing=() p
    for p in "${want[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    [ "$(id -u)" = 0 ] || die "missing packages ${missing[*]}; run as root or: apt-get install -y ${missing[*]}"
    say "installing ${missing[*]}"
    apt_update
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" \
        >"$WORK/apt-install.log" 2>&1 || {
        show_tail "$WORK/apt-install.log"
        die "apt-get install ${missing[*]} failed"
    }
}

# --- kernel --------------------------------------------------------------------

# A private apt configuration for $RELEASE: its own sources list, package lists
# and download cache under $CACHE/apt/$RELEASE, no preferences and an empty
# status file. The system's sources (another release, or none) are neither read
# nor changed; apt verifies the release's InRelease signature with $KEYRING and
# the package's SHA256 against the signed index, as for the system's packages.
APT_DIR="$CACHE/apt/$RELEASE"
kapt_opts() {
    printf '%s\n' \
        -o "Dir::Etc::SourceList=$APT_DIR/sources.list" \
        -o "Dir::Etc::SourceParts=$APT_DIR/sources.list.d" \
        -o "Dir::Etc::Preferences=$APT_DIR/preferences" \
        -o "Dir::Etc::PreferencesParts=$APT_DIR/preferences.d" \
        -o "Dir::State::Lists=$APT_DIR/lists" \
        -o "Dir::State::status=$APT_DIR/status" \
        -o "Dir::Cache=$APT_DIR/cache" \
        -o "Dir::Cache::archives=$APT_DIR/cache/archives" \
        -o "Dir::Cache::pkgcache=" -o "Dir::Cache::srcpkgcache=" \
        -o "APT::Architecture=amd64" -o "APT::Architectures::=amd64" \
        -o "Acquire::Languages=none" \
        -o "APT::Sandbox::User=root"
}
kapt_get() { local o; mapfile -t o < <(kapt_opts); timeout 600 apt-get -q "${o[@]}" "$@"; }
kapt_cache() { local o; mapfile -t o < <(kapt_opts); apt-cache "${o[@]}" "$@"; }

kapt_setup() {
    [ -r "$KEYRING" ] || die "no Debian archive keyring at $KEYRING (package debian-archive-keyring), needed to check $RELEASE's signature"
    mkdir -p "$APT_DIR"/{lists/partial,cache/archives/partial,sources.list.d,preferences.d} ||
        die "cannot create $APT_DIR"
    : >"$APT_DIR/status"
    : >"$APT_DIR/preferences"
    cat >"$APT_DIR/sources.list.new" <<EOF
# Written by e2e/vm/run.sh: $RELEASE's kernels for the VM suite (not the system's sources).
deb [signed-by=$KEYRING] $MIRROR $RELEASE main
deb [signed-by=$KEYRING] $SECURITY_MIRROR $RELEASE-security main
EOF
    if cmp -s "$APT_DIR/sources.list.new" "$APT_DIR/sources.list"; then
        rm -f "$APT_DIR/sources.list.new"
    else
        mv "$APT_DIR/sources.list.new" "$APT_DIR/sources.list"
        rm -f "$APT_DIR/lists/.updated"
    fi
}

KAPT_UPDATED=0
kapt_update() {
    [ "$KAPT_UPDATED" = 1 ] && return 0
    KAPT_UPDATED=1
    say "updating $RELEASE's package lists (private, in $APT_DIR)"
    # apt-get update exits 0 on some failures (an unreachable mirror, a bad
    # signature) and says so with W:/E: lines: both count as a failure here.
    if kapt_get update >"$WORK/apt-kernel-update.log" 2>&1 &&
        ! grep -qE '^(W|E): ' "$WORK/apt-kernel-update.log"; then
        touch "$APT_DIR/lists/.updated"
        return 0
    fi
    show_tail "$WORK/apt-kernel-update.log"
    return 1
}

# Follow metapackages (linux-image-cloud-amd64 -> linux-image-5.10.0-NN-cloud-amd64)
# to the package that ships /boot/vmlinuz-*.
resolve_kernel_pkg() {
    local name=$1 next
    for _ in 1 2 3 4 5; do
        kapt_cache show --no-all-versions "$name" >/dev/null 2>&1 || return 1
        if [[ $name =~ ^linux-image-[0-9] ]]; then
            echo "$name"
            return 0
        fi
        next=$(kapt_cache depends --important "$name" 2>/dev/null |
            awk '$1 == "Depends:" && $2 ~ /^linux-image-/ { print $2; exit }')
        [ -n "$next" ] || return 1
        name=$next
    done
    return 1
}

pkg_version() {
    kapt_cache show --no-all-versions "$1" 2>/dev/null | awk '$1 == "Version:" { print $2; exit }'
}

# The newest cached kernel of this line (when the archive cannot be reached).
cached_kernel() {
    local d
    d=$(find "$CACHE/kernels" -mindepth 1 -maxdepth 1 -type d -name "${KPREFIX}*" 2>/dev/null |
        while read -r d; do [ -f "$d/.complete" ] && echo "$d"; done | sort -V | tail -n 1)
    [ -n "$d" ] && echo "$d"
}

# Sets KERNEL_DIR (holding vmlinuz, config) and KERNEL_DESC.
fetch_kernel() {
    local pkg= ver= dir tmp age deb
    kapt_setup
    age=$(($(date +%s) - $(stat -c %Y "$APT_DIR/lists/.updated" 2>/dev/null || echo 0)))
    [ "$age" -le "$LISTS_MAX_AGE" ] || kapt_update || true
    pkg=$(resolve_kernel_pkg "$KERNEL_PKG") || pkg=
    if [ -z "$pkg" ] && [ "$KAPT_UPDATED" = 0 ]; then
        kapt_update || true
        pkg=$(resolve_kernel_pkg "$KERNEL_PKG") || pkg=
    fi
    [ -n "$pkg" ] && ver=$(pkg_version "$pkg")
    if [ -z "$pkg" ] || [ -z "$ver" ]; then
        if dir=$(cached_kernel); then
            say "cannot resolve $KERNEL_PKG in $RELEASE's package lists; using the cached $(cat "$dir/package")"
            KERNEL_DIR=$dir
            KERNEL_DESC=$(cat "$dir/package")
            return 0
        fi
        die "kernel package '$KERNEL_PKG' not found in $RELEASE's package lists ($APT_DIR); is it a linux-image-* package for amd64?"
    fi
    [[ $pkg == "$KPREFIX"* ]] ||
        die "$KERNEL_PKG in $RELEASE leads to $pkg, which is not a $KERNEL kernel (--kernel $KERNEL)"
    dir="$CACHE/kernels/${pkg}_${ver}"
    KERNEL_DIR=$dir
    KERNEL_DESC="$pkg $ver"
    [ -f "$dir/.complete" ] && return 0

    mkdir -p "$CACHE/kernels"
    exec 9>"$CACHE/kernels/.lock"
    flock -w 600 9 || die "timed out waiting for the kernel cache lock $CACHE/kernels/.lock"
    if [ ! -f "$dir/.complete" ]; then
        say "downloading $pkg $ver from $RELEASE"
        tmp=$(mktemp -d "$CACHE/kernels/.dl.XXXXXX")
        # apt-get download checks the .deb against the SHA256 of the signed index.
        if ! (cd "$tmp" && kapt_get download "$pkg=$ver") \
            >"$WORK/apt-download.log" 2>&1; then
            show_tail "$WORK/apt-download.log"
            rm -rf "$tmp"
            flock -u 9
            if [ "$KAPT_UPDATED" = 0 ]; then
                # Stale package lists (the archive moved on): refresh, then start over.
                kapt_update || true
                fetch_kernel
                return
            fi
            die "cannot download kernel package $pkg $ver from $RELEASE ($MIRROR)"
        fi
        deb=$(find "$tmp" -maxdepth 1 -name '*.deb' | head -n 1)
        if [ -z "$deb" ] || ! dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$tmp" ./boot 2>"$WORK/unpack.log"; then
            show_tail "$WORK/unpack.log"
            rm -rf "$tmp"
            die "cannot unpack /boot from $pkg"
        fi
        mkdir -p "$tmp/k"
        mv "$tmp"/boot/vmlinuz-* "$tmp/k/vmlinuz" 2>/dev/null || { rm -rf "$tmp"; die "$pkg has no /boot/vmlinuz-*"; }
        mv "$tmp"/boot/config-* "$tmp/k/config" 2>/dev/null || { rm -rf "$tmp"; die "$pkg has no /boot/config-*"; }
        echo "$pkg $ver" >"$tmp/k/package"
        touch "$tmp/k/.complete"
        rm -rf "$dir"
        mv "$tmp/k" "$dir"
        rm -rf "$tmp"
    fi
    flock -u 9
}

# A setting of the kernel's build configuration (its /boot/config): kconfig BPF_LSM -> y.
kconfig() { sed -n "s/^CONFIG_$1=//p" "$KERNEL_DIR/config" 2>/dev/null | tr -d '"'; }

# Sets KCMDLINE. lsm=: the LSMs of Debian's order that this kernel has, with bpf
# last unless --no-bpf-lsm. Modules are never unpacked, so what the suite needs
# must be built in: checked here rather than found missing by a test.
kernel_cmdline() {
    local need missing=() lsm=()
    for need in BPF_SYSCALL DEBUG_INFO_BTF BPF_EVENTS KPROBE_EVENTS UPROBE_EVENTS FTRACE_SYSCALLS \
        CGROUP_BPF SERIAL_8250 SERIAL_8250_CONSOLE BLK_DEV_INITRD DEVTMPFS SECURITYFS; do
        [ "$(kconfig "$need")" = y ] || missing+=("CONFIG_$need")
    done
    [ ${#missing[@]} -eq 0 ] || die "$KERNEL_DESC lacks ${missing[*]} (built in), which the VM suite needs"
    [ "$(kconfig SECURITY_LANDLOCK)" = y ] && lsm+=(landlock)
    [ "$(kconfig SECURITY_LOCKDOWN_LSM)" = y ] && lsm+=(lockdown)
    lsm+=(capability)
    if [ "$BPF_LSM" = 1 ]; then
        [ "$(kconfig BPF_LSM)" = y ] || die "$KERNEL_DESC was built without CONFIG_BPF_LSM; use --no-bpf-lsm"
        lsm+=(bpf)
    fi
    KCMDLINE="console=ttyS0 lsm=$(IFS=,; echo "${lsm[*]}") panic=-1 loglevel=5 rdinit=/init"
}

# --- build ---------------------------------------------------------------------

# Fills BINS (vigil-sensor, vigil) and TESTS ("name path" lines).
build() {
    command -v cargo >/dev/null || die "cargo not found in PATH"
    (cd "$REPO" && cargo build --release --workspace --bins \
        --message-format=json-render-diagnostics) >"$WORK/build.json" 2>"$WORK/build.log" || {
        show_tail "$WORK/build.log" 60
        die "cargo build --release --workspace --bins failed"
    }
    (cd "$REPO" && cargo test --release -p vigil-e2e --no-run \
        --message-format=json-render-diagnostics) >"$WORK/build-tests.json" 2>>"$WORK/build.log" || {
        show_tail "$WORK/build.log" 60
        die "cargo test --release -p vigil-e2e --no-run failed"
    }
    BINS=$(jq -r 'select(.reason == "compiler-artifact" and .executable != null
                         and .profile.test == false and (.target.kind | index("bin")))
                  | .executable' "$WORK/build.json" "$WORK/build-tests.json" | sort -u)
    # The cluster suites (e2e/tests/k8s_*.rs: kube-apiserver, etcd, kubectl, helm) and the
    # packaging checks (e2e/tests/package_*.rs: buildah, dpkg, systemd-analyze) need no kernel
    # feature, and none of those tools is in the guest: they run on the host only.
    TESTS=$(jq -r --arg m "$REPO/e2e/Cargo.toml" \
        'select(.reason == "compiler-artifact" and .executable != null
                and .profile.test == true and .manifest_path == $m
                and (.target.name | test("^(k8s|package)_") | not))
         | "\(.target.name) \(.executable)"' "$WORK/build-tests.json" | sort -u)
    [ -n "$TESTS" ] || die "cargo reported no test binaries for vigil-e2e"
}

# --- initramfs -------------------------------------------------------------------

copy_with_libs() { # SRC DEST(in ROOT)
    local src=$1 dst=$2 lib
    install -D -m 0755 "$src" "$ROOT$dst"
    # ldd exits non-zero for static binaries: nothing to copy then.
    for lib in $(ldd "$src" 2>/dev/null |
        awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }'); do
        [ -e "$ROOT$lib" ] && continue
        mkdir -p "$ROOT$(dirname "$lib")"
        cp -L "$lib" "$ROOT$lib"
    done
}

sh_quote() { printf "'%s'" "$(printf '%s' "$1" | sed "s/'/'\\\\''/g")"; }

make_initramfs() {
    ROOT="$WORK/root"
    local bb p name path
    mkdir -p "$ROOT"/{bin,sbin,usr/bin,usr/sbin,etc,root,tmp,proc,sys,dev,run,vigil/bin,vigil/tests}
    bb=$(command -v busybox || true)
    [ -x /bin/busybox ] && bb=/bin/busybox
    [ -n "$bb" ] || die "busybox not found (package busybox-static)"
    copy_with_libs "$bb" /bin/busybox
    for p in $("$bb" --list-full); do
        [ -e "$ROOT/$p" ] || [ -L "$ROOT/$p" ] || { mkdir -p "$ROOT/$(dirname "$p")"; ln -s /bin/busybox "$ROOT/$p"; }
    done

    # Real host binaries over the busybox applets, at their host paths, so that
    # the same tests pass on the host and in the guest: all of coreutils
    # (a copy of /bin/true must still be `true`, /proc/PID/exe of `sleep` must
    # be sleep), dash as /bin/sh (busybox sh runs applets without exec, so no
    # exec events) and util-linux's setpriv (busybox's lacks --reuid/--regid).
    local files=() dash real
    for name in "${HOST_TOOLS[@]}"; do
        path=$(command -v "$name") || die "host tool $name not found"
        files+=("$path")
    done
    mapfile -t -O "${#files[@]}" files < <(dpkg -L "${HOST_PACKAGES[@]}" | grep -E '^(/usr)?/s?bin/[^/]+$')
    for path in "${files[@]}"; do
        [ -f "$path" ] || continue
        name=${path##*/}
        rm -f "$ROOT/bin/$name" "$ROOT/sbin/$name" "$ROOT/usr/bin/$name" "$ROOT/usr/sbin/$name"
        copy_with_libs "$path" "$path"
        # Also at its real path (/usr/bin/cat for /bin/cat on a merged-/usr host): policies
        # name binaries by the path the kernel resolves on the host.
        real=$(realpath "$path")
        [ "$real" = "$path" ] || copy_with_libs "$path" "$real"
    done
    for dash in /bin/dash /usr/bin/dash ""; do [ -x "$ROOT$dash" ] && break; done
    [ -n "$dash" ] || die "dash was not copied (package dash)"
    ln -sfn "$dash" "$ROOT/bin/sh"

    for path in $BINS; do copy_with_libs "$path" "/vigil/bin/$(basename "$path")"; done
    for name in vigil-sensor vigil; do
        [ -x "$ROOT/vigil/bin/$name" ] || die "cargo did not report a $name binary"
    done
    while read -r name path; do
        [ -n "$name" ] && copy_with_libs "$path" "/vigil/tests/$name"
    done <<<"$TESTS"

    # The source tree at a fixed path, /vigil/src: tests read repository files
    # (chart, examples/policies, docs) through vigil_e2e::repo_root(), which the
    # guest points there (VIGIL_REPO_DIR), whatever checkout the test binaries
    # were built from.
    mkdir -p "$ROOT/vigil/src"
    if git -C "$REPO" rev-parse --git-dir >/dev/null 2>&1; then
        (cd "$REPO" && git ls-files -co --exclude-standard | while IFS= read -r p; do
            [ -f "$p" ] && printf '%s\n' "$p"; done | cpio -pdm --quiet "$ROOT/vigil/src") ||
            die "cannot copy the source tree into the initramfs"
    else
        (cd "$REPO" && find . \( -name .git -o -name target \) -prune -o -type f -print |
            cpio -pdm --quiet "$ROOT/vigil/src") || die "cannot copy the source tree into the initramfs"
    fi

    # Tetragon's example policies (the shared corpus next to the repository) at
    # /vigil/shared/policies (VIGIL_SHARED_DIR in the guest): the hook tests load some.
    local corpus
    for corpus in "$REPO/../shared/policies" /work/shared/policies; do
        if [ -d "$corpus" ]; then
            mkdir -p "$ROOT/vigil/shared/policies"
            cp -r "$corpus/." "$ROOT/vigil/shared/policies/"
            break
        fi
    done

    # Verifier statistics of every BPF program load (see bpflog.c).
    mkdir -p "$ROOT/vigil/lib"
    cc -shared -fPIC -O2 -Wall -Werror -o "$ROOT/vigil/lib/libvigil-bpflog.so" "$HERE/bpflog.c" -ldl \
        2>"$WORK/bpflog.log" || { show_tail "$WORK/bpflog.log"; die "cannot compile e2e/vm/bpflog.c"; }

    cat >"$ROOT/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
EOF
    cat >"$ROOT/etc/group" <<'EOF'
root:x:0:
nogroup:x:65534:
EOF
    printf 'root:*:19000:0:99999:7:::\nnobody:*:19000:0:99999:7:::\n' >"$ROOT/etc/shadow"
    chmod 0640 "$ROOT/etc/shadow"
    printf 'passwd: files\ngroup: files\nshadow: files\nhosts: files\n' >"$ROOT/etc/nsswitch.conf"
    printf '127.0.0.1 localhost vigil-vm\n::1 localhost ip6-localhost\n' >"$ROOT/etc/hosts"
    echo vigil-vm >"$ROOT/etc/hostname"
    ln -sf /proc/mounts "$ROOT/etc/mtab"

    install -m 0755 "$HERE/init.sh" "$ROOT/init"
    {
        echo "VIGIL_FILTERS=$(sh_quote "$(printf '%s\n' "${FILTERS[@]}")")"
        echo "VIGIL_EXCLUDES=$(sh_quote "$(printf '%s\n' "${EXCLUDES[@]}")")"
        echo "VIGIL_TEST_TIMEOUT=$TEST_TIMEOUT"
        echo "VIGIL_EXPECT_BPF_LSM=$BPF_LSM"
    } >"$ROOT/vigil/config"

    # Uncompressed: unpacking is faster than decompressing under TCG.
    (cd "$ROOT" && find . -print0 | cpio -o -0 -H newc -R 0:0 --quiet) >"$WORK/initramfs.cpio" ||
        die "cannot build the initramfs"
}

# --- boot and collect ----------------------------------------------------------------

RESULTS="$WORK/results.log"
CONSOLE="$WORK/console.log"
declare -A STATUS=()
PLAN=()
LIST_ERRORS=()
DMESG=()
KREL=
BOOT_AT=
PROBE_JSON=
INSNS=()
DONE=0
SEEN=0

# Consume the complete lines of the results channel that are new since the last call.
consume_results() {
    local total line tag a b c d
    [ -f "$RESULTS" ] || return 0
    total=$(tr -cd '\n' <"$RESULTS" | wc -c)
    [ "$total" -gt "$SEEN" ] || return 0
    while IFS= read -r line; do
        line=${line%$'\r'}
        [[ $line == "@@VIGIL "* ]] || continue
        read -r tag a b c d _ <<<"${line#@@VIGIL }"
        case "$tag" in
            boot) KREL=$a; BOOT_AT=$b ;;
            probe) PROBE_JSON=${line#@@VIGIL probe } ;;
            insns) INSNS+=("$a=$b") ;;
            plan) PLAN+=("$a::$b") ;;
            list-error) LIST_ERRORS+=("$a (exit status $b)") ;;
            result)
                STATUS["$a::$b"]=$c
                case "$c" in
                    pass) printf '  ok       %s (%ss)\n' "$a::$b" "$d" ;;
                    skip) printf '  skipped  %s\n' "$a::$b" ;;
                    timeout) printf '  TIMEOUT  %s (%ss)\n' "$a::$b" "$d" ;;
                    *) printf '  FAILED   %s (%ss)\n' "$a::$b" "$d" ;;
                esac ;;
            dmesg) DMESG+=("${line#@@VIGIL dmesg }") ;;
            done) DONE=1 ;;
        esac
    done < <(sed -n "$((SEEN + 1)),${total}p" "$RESULTS")
    SEEN=$total
}

# The console output of one test (between the guest's begin/end markers).
console_section() { # BIN TEST
    awk -v b="@@VIGIL-CONSOLE begin $1 $2" -v e="@@VIGIL-CONSOLE end $1 $2 " '
        { sub(/\r$/, "") }
        index($0, b) == 1 && length($0) == length(b) { on = 1; next }
        index($0, e) == 1 { on = 0 }
        on' "$CONSOLE"
}

boot_and_run() {
    local cmdline start elapsed outcome=
    cmdline="$KCMDLINE $APPEND_EXTRA"
    : >"$RESULTS"
    : >"$CONSOLE"
    say "booting $KERNEL_DESC (${CPUS} vCPUs, ${MEMORY}, TCG thread=${TCG_THREAD})"
    start=$SECONDS
    qemu-system-x86_64 -accel "tcg,thread=$TCG_THREAD" -cpu max -smp "$CPUS" -m "$MEMORY" \
        -nodefaults -display none -no-reboot \
        -kernel "$KERNEL_DIR/vmlinuz" -initrd "$WORK/initramfs.cpio" -append "$cmdline" \
        -serial "file:$CONSOLE" -serial "file:$RESULTS" \
        </dev/null >"$WORK/qemu.log" 2>&1 &
    QEMU_PID=$!
    while kill -0 "$QEMU_PID" 2>/dev/null; do
        consume_results
        elapsed=$((SECONDS - start))
        if [ "$elapsed" -ge "$TIMEOUT" ]; then outcome=timeout; break; fi
        if [ -z "$KREL" ] && [ "$elapsed" -ge "$BOOT_TIMEOUT" ]; then outcome=boot-timeout; break; fi
        sleep 1
    done
    if [ -n "$outcome" ]; then
        kill "$QEMU_PID" 2>/dev/null || true
        for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$QEMU_PID" 2>/dev/null || break; sleep 1; done
        kill -9 "$QEMU_PID" 2>/dev/null || true
    fi
    QEMU_RC=0
    wait "$QEMU_PID" || QEMU_RC=$?
    QEMU_PID=
    consume_results
    VM_SECS=$((SECONDS - start))
    VM_OUTCOME=$outcome
}

# The mechanisms `vigil-sensor probe` found in the guest (and those it did not).
mechanisms() {
    local found missing
    if [ -z "$PROBE_JSON" ] || ! jq -e 'type == "object"' >/dev/null 2>&1 <<<"$PROBE_JSON"; then
        echo "vm: mechanisms: unknown (the guest's vigil-sensor probe reported nothing)"
        return
    fi
    found=$(jq -r '[to_entries[] | select(.value == true) | .key] | join(" ")' <<<"$PROBE_JSON")
    missing=$(jq -r '[to_entries[] | select(.value == false) | .key] | join(" ")' <<<"$PROBE_JSON")
    echo "vm: mechanisms found: ${found:-none}"
    echo "vm: mechanisms missing: ${missing:-none}"
}

report() {
    local passed=0 failed=0 skipped=0 t bin name problems=() notes=() line
    for t in "${PLAN[@]}"; do
        case "${STATUS[$t]:-missing}" in
            pass) passed=$((passed + 1)) ;;
            skip) skipped=$((skipped + 1)) ;;
            missing) failed=$((failed + 1)); notes+=("no result for $t (the guest stopped or hung during or before it)") ;;
            *) failed=$((failed + 1)) ;;
        esac
    done

    for line in "${LIST_ERRORS[@]}"; do problems+=("cannot list the tests of $line"); done
    case "$VM_OUTCOME" in
        timeout) problems+=("the VM run exceeded --timeout ${TIMEOUT}s and was killed") ;;
        boot-timeout) problems+=("the guest did not come up within ${BOOT_TIMEOUT}s") ;;
    esac
    if grep -aq 'Kernel panic - not syncing' "$CONSOLE"; then
        problems+=("guest kernel panic")
    elif grep -aqE 'Oops|BUG:|general protection fault' "$CONSOLE"; then
        problems+=("guest kernel oops/BUG")
    fi
    for line in "${DMESG[@]}"; do
        case "$line" in
            *vigil*segfault*|*vigil*traps:*) problems+=("crash: $line") ;;
        esac
    done
    if [ "$DONE" != 1 ] && [ -z "$VM_OUTCOME" ] && [ ${#problems[@]} -eq 0 ]; then
        problems+=("the guest stopped before finishing (qemu exit status $QEMU_RC)")
    fi
    if [ ${#PLAN[@]} -eq 0 ] && [ -n "$KREL" ] && [ ${#LIST_ERRORS[@]} -eq 0 ]; then
        if [ -n "$FILTER" ]; then problems+=("no test name contains '$FILTER'")
        else problems+=("no tests found in the test binaries"); fi
    fi

    # Failures in detail: each failed test's console section, then the rest.
    for t in "${PLAN[@]}"; do
        case "${STATUS[$t]:-missing}" in pass|skip) continue ;; esac
        bin=${t%%::*}
        name=${t#*::}
        echo
        case "${STATUS[$t]:-missing}" in
            timeout) echo "---- $t: killed after --test-timeout ${TEST_TIMEOUT}s ----" ;;
            missing) echo "---- $t: no result ----" ;;
            *) echo "---- $t: failed ----" ;;
        esac
        console_section "$bin" "$name" | tail -n 150
    done
    if [ ${#problems[@]} -gt 0 ] || [ ${#notes[@]} -gt 0 ]; then
        echo
        for line in "${notes[@]}"; do echo "vm: FAILED: $line"; done
        for line in "${problems[@]}"; do echo "vm: FAILED: $line"; done
        failed=$((failed + ${#problems[@]}))
        echo "---- guest console (last 60 lines of $CACHE/last-run/console.log) ----"
        tail -n 60 "$CONSOLE" | tr -d '\r'
        if [ -s "$WORK/qemu.log" ]; then echo "---- qemu ----"; tail -n 20 "$WORK/qemu.log"; fi
    fi
    for line in "${DMESG[@]}"; do
        case "$line" in *WARNING:*) echo "vm: kernel warning: $line" ;; esac
    done

    echo
    # shellcheck disable=SC2016 # the quotes are literal, $FILTER expands
    echo "vm: kernel ${KREL:-?} ($KERNEL_DESC), booted in ${BOOT_AT:-?}s, VM ran ${VM_SECS}s${FILTER:+, filter '$FILTER'}"
    echo "vm: command line: $KCMDLINE${APPEND_EXTRA:+ $APPEND_EXTRA}"
    mechanisms
    [ ${#INSNS[@]} -gt 0 ] && echo "vm: verified instructions: ${INSNS[*]}"
    [ "$skipped" -gt 0 ] && echo "vm: $skipped skipped"
    for t in "${PLAN[@]}"; do
        case "${STATUS[$t]:-missing}" in pass|skip) ;; *) echo "vm: failed: $t" ;; esac
    done
    echo "$passed passed, $failed failed"
    [ "$failed" -eq 0 ]
}

[ "$KEEP" = 1 ] && say "work directory (kept): $WORK"
ensure_packages
fetch_kernel
kernel_cmdline
build
make_initramfs
boot_and_run
if report; then exit 0; else exit 1; fi

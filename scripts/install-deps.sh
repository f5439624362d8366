#!/usr/bin/env bash
# Installs what building and testing Vigil needs on Debian 12, as root. Idempotent and quiet when
# everything is present. Debian's package registry, and for the cluster test components
# (scripts/install-k8s.sh: kube-apiserver built from Debian's source package, etcd, kubectl and
# helm from PyPI wheels, cached under /var/cache/vigil/k8s) PyPI.
set -euo pipefail

PKGS=(clang-19 llvm-19 libbpf-dev bpftool gcc make pkg-config busybox-static cpio zstd
      qemu-system-x86 util-linux procps iproute2 python3 jq rsync
      python3-pip buildah dpkg-dev systemd)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "install-deps: missing packages: ${missing[*]} (run as root to install them)" >&2
    exit 1
  fi
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "install-deps: cargo not found; install a Rust toolchain (rustup, 1.95 or newer)" >&2
  exit 1
fi

# kube-apiserver, etcd, kubectl and helm for the cluster suites (e2e/tests/k8s_*.rs).
"$(dirname "${BASH_SOURCE[0]}")/install-k8s.sh"

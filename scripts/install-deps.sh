#!/usr/bin/env bash
# Installs what building and testing Vigil needs on Debian 12, as root. Idempotent and quiet when
# everything is present. Only Debian's package registry is used.
set -euo pipefail

PKGS=(clang-19 llvm-19 libbpf-dev bpftool gcc make pkg-config busybox-static cpio zstd
      qemu-system-x86 util-linux procps iproute2 python3 jq rsync)

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

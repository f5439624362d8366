#!/usr/bin/env bash
# `make images`: the sensor and operator container images, built with buildah (Debian's package,
# no daemon) from images/*/Containerfile, FROM scratch plus the release binaries and the shared
# libraries they link (found with ldd). Nothing is pulled from a registry.
#
#   scripts/build-images.sh [--bin-dir DIR] [--out DIR] [--storage DIR]
#
# Writes OUT/vigil-sensor-VERSION.oci.tar and OUT/vigil-operator-VERSION.oci.tar (OCI archives;
# load them with `podman load`, `ctr -n k8s.io images import`, `skopeo copy oci-archive:…`), named
# vigil/vigil-sensor:VERSION and vigil/vigil-operator:VERSION — the Helm chart's default images
# (VERSION: the workspace version, the chart's appVersion). Buildah's storage (vfs driver) is
# kept in STORAGE (default: a temporary directory, removed afterwards), so nothing is left in
# /var/lib/containers. Defaults: --bin-dir $CARGO_TARGET_DIR/release (else target/release),
# --out $CARGO_TARGET_DIR/images.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$HERE/target}
BIN_DIR=$TARGET/release
OUT=$TARGET/images
STORAGE=

die() { echo "build-images: error: $*" >&2; exit 1; }
while [ $# -gt 0 ]; do
    case "$1" in
        --bin-dir) BIN_DIR=${2:?--bin-dir needs a value}; shift 2 ;;
        --out) OUT=${2:?--out needs a value}; shift 2 ;;
        --storage) STORAGE=${2:?--storage needs a value}; shift 2 ;;
        -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
        *) die "unknown argument: $1" ;;
    esac
done
command -v buildah >/dev/null || die "buildah not found (Debian package buildah; make deps installs it)"
VERSION=$(awk -F'"' '/^\[workspace.package\]/ { w = 1 } w && /^version *=/ { print $2; exit }' "$HERE/Cargo.toml")
[ -n "$VERSION" ] || die "no workspace version in Cargo.toml"

WORK=$(mktemp -d)
cleanup() { chmod -R u+w "$WORK" 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
if [ -z "$STORAGE" ]; then STORAGE=$WORK/storage; fi
B=(buildah --storage-driver vfs --root "$STORAGE/root" --runroot "$STORAGE/runroot")

# Copies a binary into ROOTFS/usr/bin with the shared libraries it needs at their paths.
add_binary() { # ROOTFS BINARY
    local root=$1 bin=$2 lib
    [ -x "$bin" ] || die "$bin missing: build the release binaries first (cargo build --release --workspace --bins)"
    install -D -m 0755 "$bin" "$root/usr/bin/$(basename "$bin")"
    for lib in $(ldd "$bin" 2>/dev/null | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }'); do
        [ -e "$root$lib" ] && continue
        # 0755: the dynamic loader among them must be executable.
        install -D -m 0755 "$(readlink -f "$lib")" "$root$lib"
    done
}

build() { # NAME BINARIES...
    local name=$1 ctx=$WORK/$1 ref="vigil/$1:$VERSION" file="$OUT/$1-$VERSION.oci.tar"
    shift
    mkdir -p "$ctx/rootfs/etc" "$ctx/rootfs/tmp"
    chmod 1777 "$ctx/rootfs/tmp"
    for b in "$@"; do add_binary "$ctx/rootfs" "$BIN_DIR/$b"; done
    printf 'root:x:0:0:root:/:/usr/sbin/nologin\nnonroot:x:65532:65532:nonroot:/nonexistent:/usr/sbin/nologin\n' >"$ctx/rootfs/etc/passwd"
    printf 'root:x:0:\nnonroot:x:65532:\n' >"$ctx/rootfs/etc/group"
    if [ "$name" = vigil-operator ] && [ -f /etc/ssl/certs/ca-certificates.crt ]; then
        install -D -m 0644 /etc/ssl/certs/ca-certificates.crt "$ctx/rootfs/etc/ssl/certs/ca-certificates.crt"
    fi
    "${B[@]}" bud --quiet --isolation chroot --build-arg "VERSION=$VERSION" \
        -f "$HERE/images/${name#vigil-}/Containerfile" -t "$ref" "$ctx" >/dev/null ||
        die "buildah bud of $ref failed"
    rm -f "$file"
    "${B[@]}" push --quiet "$ref" "oci-archive:$file:$ref" || die "writing $file failed"
    echo "build-images: $ref -> $file ($(du -h "$file" | cut -f1))"
}

mkdir -p "$OUT"
build vigil-sensor vigil-sensor vigil
build vigil-operator vigil-operator

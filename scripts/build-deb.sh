#!/usr/bin/env bash
# `make deb`: a Debian package of Vigil for hosts without Kubernetes (YAML policies on bare
# metal), built with dpkg-deb from the release binaries.
#
#   scripts/build-deb.sh [--bin-dir DIR] [--out DIR]
#
# Writes OUT/vigil_VERSION_ARCH.deb with /usr/bin/{vigil-sensor,vigil,vigil-operator}, the
# systemd unit vigil-sensor.service (--policy-dir /etc/vigil/policies, events to
# /var/log/vigil/events.json, gRPC socket /run/vigil/vigil.sock; not enabled on install),
# /etc/default/vigil-sensor (a conffile), the example policies and the docs. No logrotate rule:
# the sensor rotates its export file itself (--export-file-max-size-mb/--export-file-max-backups).
# Depends: computed with dpkg-shlibdeps from the binaries. Defaults: --bin-dir
# $CARGO_TARGET_DIR/release (else target/release), --out $CARGO_TARGET_DIR/deb.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$HERE/target}
BIN_DIR=$TARGET/release
OUT=$TARGET/deb

die() { echo "build-deb: error: $*" >&2; exit 1; }
while [ $# -gt 0 ]; do
    case "$1" in
        --bin-dir) BIN_DIR=${2:?--bin-dir needs a value}; shift 2 ;;
        --out) OUT=${2:?--out needs a value}; shift 2 ;;
        -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
        *) die "unknown argument: $1" ;;
    esac
done
for t in dpkg-deb dpkg-shlibdeps; do
    command -v "$t" >/dev/null || die "$t not found (Debian packages dpkg, dpkg-dev)"
done
VERSION=$(awk -F'"' '/^\[workspace.package\]/ { w = 1 } w && /^version *=/ { print $2; exit }' "$HERE/Cargo.toml")
[ -n "$VERSION" ] || die "no workspace version in Cargo.toml"
ARCH=$(dpkg --print-architecture)
BINS=(vigil-sensor vigil vigil-operator)
for b in "${BINS[@]}"; do
    [ -x "$BIN_DIR/$b" ] || die "$BIN_DIR/$b missing: build the release binaries first (cargo build --release --workspace --bins)"
done

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
R=$WORK/root
P=$HERE/packaging/deb
install -d -m 0755 "$R/DEBIAN" "$R/usr/bin" "$R/lib/systemd/system" "$R/etc/default" \
    "$R/etc/vigil/policies" "$R/usr/share/doc/vigil/examples/policies"
for b in "${BINS[@]}"; do install -m 0755 "$BIN_DIR/$b" "$R/usr/bin/$b"; done
install -m 0644 "$P/vigil-sensor.service" "$R/lib/systemd/system/vigil-sensor.service"
install -m 0644 "$P/vigil-sensor.default" "$R/etc/default/vigil-sensor"
for f in postinst prerm postrm; do install -m 0755 "$P/$f" "$R/DEBIAN/$f"; done
install -m 0644 "$HERE"/examples/policies/*.yaml "$R/usr/share/doc/vigil/examples/policies/"
install -m 0644 "$HERE/README.md" "$R/usr/share/doc/vigil/README.md"
install -m 0644 "$HERE/docs/operations.md" "$R/usr/share/doc/vigil/operations.md"
cat >"$R/usr/share/doc/vigil/copyright" <<COPYRIGHT
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: vigil

Files: *
License: Apache-2.0
 On Debian systems the full text is in /usr/share/common-licenses/Apache-2.0.
COPYRIGHT
echo /etc/default/vigil-sensor >"$R/DEBIAN/conffiles"

# Shared-library dependencies of the binaries (dpkg-shlibdeps needs a debian/control).
mkdir -p "$WORK/src/debian"
printf 'Source: vigil\n\nPackage: vigil\nArchitecture: any\n' >"$WORK/src/debian/control"
DEPENDS=$(cd "$WORK/src" && dpkg-shlibdeps -O "${BINS[@]/#/$R/usr/bin/}" 2>/dev/null |
    sed -n 's/^shlibs:Depends=//p')
[ -n "$DEPENDS" ] || die "dpkg-shlibdeps found no dependencies for the binaries"
SIZE=$(du -sk --exclude=DEBIAN "$R" | cut -f1)
cat >"$R/DEBIAN/control" <<CONTROL
Package: vigil
Version: $VERSION
Architecture: $ARCH
Maintainer: Vigil developers <vigil@example.invalid>
Installed-Size: $SIZE
Depends: $DEPENDS
Section: admin
Priority: optional
Homepage: https://example.invalid/vigil
Description: eBPF security observability and runtime enforcement
 Vigil watches process execution, privilege changes, file and network activity
 with eBPF, filters in the kernel, and can stop an operation inline. It reads
 Cilium Tetragon's TracingPolicy format and writes its event JSON.
 .
 This package runs the sensor on a host without Kubernetes: policies from
 /etc/vigil/policies, events to /var/log/vigil (vigil-sensor.service, not
 enabled on install). It also ships the vigil CLI and vigil-operator.
CONTROL

mkdir -p "$OUT"
DEB=$OUT/vigil_${VERSION}_${ARCH}.deb
dpkg-deb --root-owner-group -Zgzip --build "$R" "$DEB" >/dev/null || die "dpkg-deb --build failed"
echo "build-deb: $DEB ($(du -h "$DEB" | cut -f1))"

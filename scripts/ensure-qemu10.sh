#!/usr/bin/env bash
# QEMU 10 (cpr-transfer live updates) from bookworm-backports into a private prefix,
# .cache/qemu10, leaving the system's QEMU 7.2 (what every other test runs) untouched:
# `apt-get download` of qemu-system-x86 and the backports packages it needs at exactly its
# version (qemu-system-common, qemu-system-data, seabios), `dpkg-deb -x` of each; its shared
# libraries are bookworm's (the same ones 7.2 uses). A wrapper, .cache/qemu10/bin/
# qemu-system-x86_64, runs it with its own firmware (-L) and modules (QEMU_MODULE_DIR).
# Idempotent; prints the wrapper's path. Opt-in: ensure-deps.sh runs it with
# NESTCLOUD_WITH_QEMU10=1, test.sh's backports section always. A host-VM agent uses it when
# its config names it (qemu.binary; agentLauncher's qemuBinary): it then reports
# cpr-transfer as its live-update mechanism and its guests start ready for it.
# Usage: scripts/ensure-qemu10.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/progress.sh
prefix=$PWD/.cache/qemu10
wrapper=$prefix/bin/qemu-system-x86_64
if [ -x "$wrapper" ] && "$wrapper" --version 2>/dev/null | grep -q 'QEMU emulator version 1[0-9]\.'; then
  echo "$wrapper"
  exit 0
fi
scripts/ensure-backports.sh >&2
version=$(apt-cache policy qemu-system-x86 | awk '/bookworm-backports/ { print prev } { prev = $1 }' | head -1)
if [ -z "$version" ]; then
  echo "ensure-qemu10: bookworm-backports has no qemu-system-x86 (apt-cache policy qemu-system-x86)" >&2
  exit 1
fi
dl=$(mktemp -d "${TMPDIR:-/tmp}/nestcloud-qemu10.XXXXXX")
trap 'rm -rf "$dl"' EXIT
echo "ensure-qemu10: qemu-system-x86 $version from bookworm-backports into $prefix" >&2
(cd "$dl" && nc_step "downloading QEMU $version (apt-get download)" \
  apt-get download "qemu-system-x86=$version" "qemu-system-common=$version" "qemu-system-data=$version" \
  seabios/bookworm-backports)
rm -rf "$prefix.new"
mkdir -p "$prefix.new/bin"
for deb in "$dl"/*.deb; do dpkg-deb -x "$deb" "$prefix.new"; done
missing=$(ldd "$prefix.new/usr/bin/qemu-system-x86_64" | awk '/not found/ { print $1 }')
if [ -n "$missing" ]; then
  echo "ensure-qemu10: QEMU $version needs libraries this system lacks: $missing" >&2
  exit 1
fi
cat >"$prefix.new/bin/qemu-system-x86_64" <<'WRAP'
#!/bin/sh
# nestcloud's private QEMU 10 (scripts/ensure-qemu10.sh): its own firmware and modules.
p=$(dirname "$(dirname "$(readlink -f "$0")")")
QEMU_MODULE_DIR="$p/usr/lib/x86_64-linux-gnu/qemu" exec "$p/usr/bin/qemu-system-x86_64" \
  -L "$p/usr/share/qemu" -L "$p/usr/share/seabios" "$@"
WRAP
chmod +x "$prefix.new/bin/qemu-system-x86_64"
rm -rf "$prefix"
mv "$prefix.new" "$prefix"
"$wrapper" --version >&2
echo "$wrapper"

#!/usr/bin/env bash
# Installs what nestcloud needs on a fresh Debian machine: Debian packages (only the
# missing ones, through apt-get) and the npm packages pinned by package-lock.json.
# Usage: scripts/ensure-deps.sh [sim|qemu|all]   (sim: Node packages only)
set -euo pipefail
cd "$(dirname "$0")/.."
profile="${1:-all}"

need_pkgs=()
want() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed" || need_pkgs+=("$1"); }
if [ "$profile" != "sim" ]; then
  # gcc + libc6-dev: the guest image's workload is compiled static; iproute2: the testbed's
  # namespaces, veths and bridge.
  # xz-utils + zstd: newer guest kernels (Debian's 6.12) ship compressed modules (.ko.xz).
  for p in qemu-system-x86 qemu-utils busybox-static cpio iproute2 gcc libc6-dev bpftool nbdkit libnbd-bin postgresql xz-utils zstd; do want "$p"; done
  # The dashboard's end-to-end test drives Debian's Chromium (playwright-core, no browser download).
  want chromium
fi
if [ "$profile" != "sim" ]; then
  # bookworm-backports as an apt source: the guest image's second kernel (NESTCLOUD_GUEST_KERNEL=backports).
  scripts/ensure-backports.sh
fi
if [ ${#need_pkgs[@]} -gt 0 ]; then
  echo "nestcloud: installing Debian packages: ${need_pkgs[*]}" >&2
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
fi

# npm ci only when package-lock.json changed since the last install.
if [ ! -f node_modules/.nestcloud-lock ] || ! cmp -s package-lock.json node_modules/.nestcloud-lock; then
  echo "nestcloud: installing npm packages (npm ci)" >&2
  npm ci --no-audit --no-fund --loglevel=error
  cp package-lock.json node_modules/.nestcloud-lock
fi

# The built JavaScript that the nestcloud command and its agents run (dist/, git-ignored; a
# no-op while it is fresh). Quiet unless it fails.
if ! out="$(npm run --silent build 2>&1)"; then
  printf '%s\n' "$out" >&2
  echo "nestcloud: npm run build failed" >&2
  exit 1
fi

#!/usr/bin/env bash
# Installs what nestcloud needs on a fresh Debian machine: Debian packages (only the
# missing ones, through apt-get), the tools that native npm packages build with, and the
# npm packages pinned by package-lock.json. Long steps say what they do and print a line
# every 15 s while they run (scripts/progress.sh); a failure shows the step's own errors.
# Usage: scripts/ensure-deps.sh [sim|qemu|all]   (sim: Node packages and their build tools only)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/progress.sh
profile="${1:-all}"

SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"

need_pkgs=()
want() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed" || need_pkgs+=("$1"); }
# want_cmd <command> <package>: the package only when the command is not on PATH at all.
want_cmd() { command -v "$1" >/dev/null 2>&1 || need_pkgs+=("$2"); }

# npm ci only when package-lock.json changed since the last install.
need_npm_ci=0
if [ ! -f node_modules/.nestcloud-lock ] || ! cmp -s package-lock.json node_modules/.nestcloud-lock; then
  need_npm_ci=1
  # better-sqlite3 is compiled by node-gyp when no prebuilt binary can be downloaded (none can
  # here): it needs python3, make and a C++ compiler, and Node's headers (npm's nodedir).
  want_cmd python3 python3
  want_cmd make make
  want_cmd g++ g++
fi
if [ "$profile" != "sim" ]; then
  # gcc + libc6-dev: the guest image's workload is compiled static; iproute2: the testbed's
  # namespaces, veths and bridge.
  # xz-utils + zstd: newer guest kernels (Debian's 6.12) ship compressed modules (.ko.xz).
  # libnbd-bin (nbdinfo, nbdcopy): cross-checks the disk monitor's NBD client; e2fsprogs
  # (debugfs): the disk monitor reads ext4 images without mounting them; clamav (clamscan,
  # sigtool): its malware scan, with custom signature databases (freshclam is not used).
  # Suricata (the network monitor) comes from bookworm-backports, below. openssl: the remote
  # monitoring channel's CA and certificates (src/monitor/channel/tls.ts).
  for p in qemu-system-x86 qemu-utils busybox-static cpio iproute2 gcc libc6-dev bpftool nbdkit libnbd-bin e2fsprogs clamav postgresql xz-utils zstd openssl; do want "$p"; done
  # The dashboard's end-to-end test drives Debian's Chromium (playwright-core, no browser download).
  want chromium
fi
if [ "$profile" != "sim" ]; then
  # bookworm-backports as an apt source: the guest image's second kernel (NESTCLOUD_GUEST_KERNEL=backports)
  # and Suricata (below).
  scripts/ensure-backports.sh
fi
if [ ${#need_pkgs[@]} -gt 0 ]; then
  echo "nestcloud: Debian packages to install: ${need_pkgs[*]}" >&2
  nc_step "updating Debian's package lists (apt-get update)" $SUDO apt-get update
  nc_step "installing ${#need_pkgs[@]} Debian packages (apt-get install; Chromium and QEMU take minutes)" \
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${need_pkgs[@]}"
fi
if [ "$profile" != "sim" ]; then
  # Suricata, the network monitor's IDS: Debian 12's main archive has none, bookworm-backports
  # has 7.0 (named explicitly: backports packages are never picked by default).
  if ! dpkg-query -W -f='${Status}' suricata 2>/dev/null | grep -q "install ok installed"; then
    echo "nestcloud: Debian package to install from bookworm-backports: suricata" >&2
    nc_step "installing suricata from bookworm-backports (apt-get install -t bookworm-backports)" \
      $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends -t bookworm-backports suricata
  fi
fi
# Opt-in: QEMU 10 from bookworm-backports in a private prefix (.cache/qemu10; the system's
# QEMU 7.2 stays), for live updates by cpr-transfer. test.sh's backports section adds it anyway.
if [ "$profile" != "sim" ] && [ "${NESTCLOUD_WITH_QEMU10:-0}" = 1 ]; then
  scripts/ensure-qemu10.sh >/dev/null
fi

if [ "$need_npm_ci" -eq 1 ]; then
  echo "nestcloud: installing npm packages with Node.js $(node --version) (npm ci; better-sqlite3 is compiled from source when no prebuilt binary is reachable: 1-8 minutes)" >&2
  # --foreground-scripts: the native builds' output goes to the step's log (shown on failure).
  nc_step "installing npm packages" npm ci --no-audit --no-fund --foreground-scripts
  cp package-lock.json node_modules/.nestcloud-lock
fi

# node_modules built by another Node.js (another ABI: NODE_MODULE_VERSION) cannot load the
# native module: rebuild it for this one.
if ! node -e 'new (require("better-sqlite3"))(":memory:").close()' 2>/dev/null; then
  echo "nestcloud: better-sqlite3 does not load with Node.js $(node --version) (built for another version?): rebuilding it" >&2
  nc_step "building better-sqlite3 for Node.js $(node --version)" npm rebuild better-sqlite3 --foreground-scripts
  node -e 'new (require("better-sqlite3"))(":memory:").close()'
fi

# The built JavaScript that the nestcloud command and its agents run (dist/, git-ignored; a
# no-op while it is fresh). Quiet unless it fails.
if ! out="$(npm run --silent build 2>&1)"; then
  printf '%s\n' "$out" >&2
  echo "nestcloud: npm run build failed" >&2
  exit 1
fi

#!/usr/bin/env bash
# Adds Debian's bookworm-backports archive as an apt source (idempotent) and refreshes the
# package lists when the source was added or its lists are missing. Used by ensure-deps.sh for
# the backports guest kernel (NESTCLOUD_GUEST_KERNEL=backports); other steps that need a newer
# package from backports can call it too. Pinning stays Debian's default: backports packages
# are installed only when named explicitly (pkg/bookworm-backports or a backports-only name).
# Usage: scripts/ensure-backports.sh        (root, or a user with sudo)
set -euo pipefail
. "$(dirname "$0")/progress.sh"

list=/etc/apt/sources.list.d/nestcloud-backports.list
line="deb http://deb.debian.org/debian bookworm-backports main"

SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
changed=0
if [ ! -f "$list" ] || [ "$(cat "$list")" != "$line" ]; then
  echo "nestcloud: adding apt source $list (bookworm-backports)" >&2
  printf '%s\n' "$line" | $SUDO tee "$list.tmp" >/dev/null
  $SUDO mv -f "$list.tmp" "$list"
  changed=1
fi
# Lists already fetched for this source: apt names them after the archive's path.
if [ "$changed" -eq 1 ] || ! ls /var/lib/apt/lists/*bookworm-backports*Packages* >/dev/null 2>&1; then
  nc_step "updating Debian's package lists (apt-get update, with bookworm-backports)" $SUDO apt-get update
fi

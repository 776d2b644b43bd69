#!/usr/bin/env bash
# Runs the nestcloud command after installing what it needs (npm packages; Debian packages
# only for commands that drive QEMU). Usage: scripts/nestcloud.sh <command> [args...]
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
case "${1:-}" in
  simulate|compare|"") "$here/scripts/ensure-deps.sh" sim ;;
  *) "$here/scripts/ensure-deps.sh" all ;;
esac
exec node "$here/bin/nestcloud.js" "$@"

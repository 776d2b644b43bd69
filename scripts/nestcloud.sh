#!/usr/bin/env bash
# Runs the nestcloud command after installing what it needs (npm packages; Debian packages
# only for commands that drive QEMU). Usage: scripts/nestcloud.sh <command> [args...]
# `up` also builds the dashboard (web/dist) when it is missing or older than its sources.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
case "${1:-}" in
  simulate|compare|"") profile=sim ;;
  # The simulated cloud needs Node packages only; the testbed provider drives QEMU.
  up) case " $* " in *" --provider testbed "*|*" --provider=testbed "*) profile=all ;; *) profile=sim ;; esac ;;
  *) profile=all ;;
esac
"$here/scripts/ensure-deps.sh" "$profile"

if [ "${1:-}" = "up" ]; then
  index="$here/web/dist/index.html"
  if [ ! -f "$index" ] ||
    [ -n "$(find "$here/web/src" "$here/web/index.html" "$here/web/vite.config.ts" -newer "$index" -print -quit)" ]; then
    echo "nestcloud: building the dashboard (npm run build:web)" >&2
    (cd "$here" && npm run --silent build:web >&2)
  fi
fi
exec node "$here/bin/nestcloud.js" "$@"

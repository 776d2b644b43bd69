# shellcheck shell=bash
# Sourced by the install scripts (ensure-deps.sh, ensure-backports.sh, test-node.sh).
#
# nc_step "<what>" <command...>
#   Runs a long command (apt-get, npm ci, a native build) without leaving the terminal silent:
#   says what it is doing, prints "… still <what>, 45 s (<its last output line>)" every 15 s
#   while it runs, and how long it took. The command's output goes to a log; when it fails,
#   the log's last lines are printed and the log is kept. Returns the command's exit code.
#   NESTCLOUD_HEARTBEAT_SECONDS changes the 15 s.

nc_step() {
  local what=$1
  shift
  local every=${NESTCLOUD_HEARTBEAT_SECONDS:-15}
  local log t0=$SECONDS rc=0 hb
  log=$(mktemp "${TMPDIR:-/tmp}/nestcloud-install.XXXXXX.log")
  echo "nestcloud: $what …" >&2
  # The heartbeat ends with this script (checked every second) or when the command is done.
  (
    # Nothing here may end the heartbeat early (the caller's set -e and pipefail are inherited).
    set +e +o pipefail
    next=$every
    while sleep 1; do
      kill -0 "$$" 2>/dev/null || exit 0
      elapsed=$((SECONDS - t0))
      if [ "$elapsed" -ge "$next" ]; then
        last=$(tail -c 4096 "$log" 2>/dev/null | tr '\r' '\n' | grep -v '^[[:space:]]*$' | tail -n 1 | cut -c 1-100)
        echo "nestcloud: … still $what, ${elapsed} s${last:+ (${last})}" >&2
        next=$((next + every))
      fi
    done
  ) &
  hb=$!
  "$@" >"$log" 2>&1 </dev/null || rc=$?
  kill "$hb" 2>/dev/null || true
  wait "$hb" 2>/dev/null || true
  local dt=$((SECONDS - t0))
  if [ "$rc" -ne 0 ]; then
    echo "nestcloud: $what FAILED (exit code $rc, after ${dt} s). Its last output:" >&2
    tail -n 40 "$log" | sed 's/^/  | /' >&2
    echo "nestcloud: the whole output is in $log" >&2
    return "$rc"
  fi
  rm -f "$log"
  echo "nestcloud: $what: done (${dt} s)" >&2
}

#!/usr/bin/env bash
# Runs every nestcloud test: installs what is missing, then typecheck, lint, the dashboard's
# build, unit tests, integration tests (QEMU guests under TCG) and introspection on the
# backports kernel. Every section runs even when another failed; the run ends with a summary:
# one line per section (ok or FAILED, and its time), every skipped test with the reason, every
# failed test. The exit code is non-zero when any section failed.
#
# Usage: scripts/test.sh [section...]     (default: all of them, in this order)
#   sections: typecheck lint dashboard unit integration backports
# Environment:
#   NESTCLOUD_PLANETLAB_DIR=<folder of PlanetLab days>  the real days (else ../shared/data/planetlab);
#     without them the tests that need them are skipped, with the reason in the summary
#   NESTCLOUD_REQUIRE_PLANETLAB=1  such tests fail instead of skipping (CI: .ci/run sets it)
#   NESTCLOUD_TEST_TOTALS=<file>  appends "passed failed skipped section-failed" to it
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD

all_sections=(typecheck lint dashboard unit integration backports)
if [ $# -eq 0 ]; then sections=("${all_sections[@]}"); else sections=("$@"); fi
for s in "${sections[@]}"; do
  case " ${all_sections[*]} " in
    *" $s "*) ;;
    *) echo "scripts/test.sh: unknown section '$s' (sections: ${all_sections[*]})" >&2; exit 2 ;;
  esac
done

reports=$(mktemp -d "${TMPDIR:-/tmp}/nestcloud-test.XXXXXX")
trap 'rm -rf "$reports"' EXIT

summary=()   # "name<TAB>ok|FAILED<TAB>seconds<TAB>detail"
failed_any=0

# section <name> <title> <command...>: runs the command, records its result and time.
section() {
  local name=$1 title=$2
  shift 2
  echo
  echo "== $name: $title"
  local t0=$SECONDS rc=0
  "$@" || rc=$?
  local dt=$((SECONDS - t0)) status=ok detail=""
  if [ "$rc" -ne 0 ]; then
    status=FAILED
    failed_any=1
  fi
  if [ -f "$reports/$name.tsv" ]; then
    local counts
    counts=$(awk -F'\t' '$1 == "count" { print $2 " passed, " $3 " failed, " $4 " skipped" }' "$reports/$name.tsv")
    detail="${counts:-no test results (the runner stopped early)}"
  fi
  [ "$rc" -ne 0 ] && detail="exit code $rc${detail:+; $detail}"
  summary+=("$name"$'\t'"$status"$'\t'"$dt"$'\t'"$detail")
  echo "== $name: $status (${dt} s)"
}

# node_tests <name> <concurrency> <files...>: node:test with the spec reporter on stdout and
# scripts/test-reporter.mjs (skips, failures, counts) into the summary's file.
node_tests() {
  local name=$1 concurrency=$2
  shift 2
  node --import tsx --test --test-concurrency="$concurrency" \
    --test-reporter=spec --test-reporter-destination=stdout \
    --test-reporter="$root/scripts/test-reporter.mjs" --test-reporter-destination="$reports/$name.tsv" \
    "$@"
}

run_unit() {
  # node:test on Node 20 does not discover .ts files: pass an explicit, sorted list.
  local unit
  mapfile -t unit < <(scripts/test-files.sh unit)
  echo "${#unit[@]} files"
  node_tests unit 2 "${unit[@]}"
}

run_integration() {
  local integ
  mapfile -t integ < <(scripts/test-files.sh integration)
  echo "${#integ[@]} files, one at a time: they share the 2 cores with QEMU"
  node_tests integration 1 "${integ[@]}"
}

# Introspection on a second kernel: the newest in bookworm-backports (6.12 as of writing:
# compressed modules, hex VMCOREINFO numbers, kworker/R- names). About 25 s. Then in-place
# rejuvenation by cpr-transfer on QEMU 10 from backports (a private copy, .cache/qemu10:
# the system's 7.2 stays what every other test runs). About 2-4 min.
run_backports() {
  local qemu10
  qemu10=$(scripts/ensure-qemu10.sh) || return 1
  local rc=0
  NESTCLOUD_GUEST_KERNEL=backports node_tests backports-vmi 1 test/integration/vmi-guest.test.ts || rc=1
  NESTCLOUD_QEMU10_BINARY=$qemu10 node_tests backports-cpr 1 test/integration/rejuvenation-cpr.test.ts || rc=1
  # One report for the section: both runs' lines, their counts summed.
  awk -F'\t' '$1 == "count" { p += $2; f += $3; k += $4; next } { print }
    END { printf "count\t%d\t%d\t%d\n", p, f, k }' "$reports"/backports-vmi.tsv "$reports"/backports-cpr.tsv \
    >"$reports/backports.tsv" 2>/dev/null
  rm -f "$reports"/backports-vmi.tsv "$reports"/backports-cpr.tsv
  return $rc
}

echo "== dependencies"
t0=$SECONDS
if ! scripts/ensure-deps.sh all; then
  echo "scripts/test.sh: installing what the tests need failed (above); no test was run" >&2
  exit 1
fi
summary+=("dependencies"$'\t'"ok"$'\t'"$((SECONDS - t0))"$'\t'"")

for s in "${sections[@]}"; do
  case "$s" in
    typecheck) section typecheck "tsc --noEmit" npx tsc --noEmit ;;
    lint) section lint "biome check" npx biome check --diagnostic-level=error . ;;
    dashboard) section dashboard "typecheck and build to web/dist" npm run --silent build:web ;;
    unit) section unit "unit tests" run_unit ;;
    integration) section integration "integration tests (QEMU guests, PostgreSQL, browser)" run_integration ;;
    backports) section backports "introspection on the backports kernel (NESTCLOUD_GUEST_KERNEL=backports)" run_backports ;;
  esac
done

echo
echo "== summary"
for line in "${summary[@]}"; do
  IFS=$'\t' read -r name status dt detail <<<"$line"
  printf '  %-13s %-7s %5s s  %s\n' "$name" "$status" "$dt" "$detail"
done

# Skipped and failed tests of every section, with the reasons.
shopt -s nullglob
tsvs=("$reports"/*.tsv)
if [ ${#tsvs[@]} -gt 0 ]; then
  awk -F'\t' '
    $1 == "skip" { s[++ns] = "  " $2 ": " $3 "\n      " $4 }
    $1 == "fail" { f[++nf] = "  " $2 ": " $3 "\n      " $4 }
    $1 == "count" { p += $2; x += $3; k += $4 }
    END {
      if (ns > 0) { print "skipped tests (" ns "):"; for (i = 1; i <= ns; i++) print s[i] }
      else print "skipped tests: none"
      if (nf > 0) { print "failed tests (" nf "):"; for (i = 1; i <= nf; i++) print f[i] }
      printf "%d\t%d\t%d\n", p, x, k > "/dev/stderr"
    }' "${tsvs[@]}" 2>"$reports/totals"
  IFS=$'\t' read -r passed failed skipped <"$reports/totals"
else
  echo "skipped tests: none"
  passed=0 failed=0 skipped=0
fi
if [ "$failed_any" -ne 0 ]; then
  bad=()
  for line in "${summary[@]}"; do
    IFS=$'\t' read -r name status _ <<<"$line"
    [ "$status" = FAILED ] && bad+=("$name")
  done
  echo "FAILED sections: ${bad[*]}"
fi
echo "tests: $passed passed, $failed failed, $skipped skipped"
# For a caller that runs several test.sh (.ci/run): the counts, appended to its file.
[ -n "${NESTCLOUD_TEST_TOTALS:-}" ] && printf '%s\t%s\t%s\t%s\n' "$passed" "$failed" "$skipped" "$failed_any" >>"$NESTCLOUD_TEST_TOTALS"
exit "$failed_any"

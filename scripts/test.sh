#!/usr/bin/env bash
# Runs every nestcloud test: installs what is missing, then typecheck, lint, unit tests,
# and the integration tests (QEMU guests under TCG). Exit code is non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/ensure-deps.sh all
npm run --silent build   # dist/ up to date: the tests spawn the built CLI and agents

echo "== typecheck"; npx tsc --noEmit
echo "== lint"; npx biome check --diagnostic-level=error .
echo "== dashboard (typecheck and build to web/dist)"; npm run --silent build:web

# node:test on Node 20 does not discover .ts files: pass an explicit, sorted list.
mapfile -t unit < <(find src test -name '*.test.ts' -not -path 'test/integration/*' | sort)
echo "== unit tests (${#unit[@]} files)"
node --import tsx --test --test-concurrency=2 --test-reporter=spec "${unit[@]}"

if [ -d test/integration ]; then
  mapfile -t integ < <(find test/integration -name '*.test.ts' | sort)
  if [ ${#integ[@]} -gt 0 ]; then
    echo "== integration tests (${#integ[@]} files, one at a time: they share the 2 cores with QEMU)"
    node --import tsx --test --test-concurrency=1 --test-reporter=spec "${integ[@]}"
  fi
  # Introspection on a second kernel: the newest in bookworm-backports (6.12 as of writing:
  # compressed modules, hex VMCOREINFO numbers, kworker/R- names). About 25 s.
  echo "== introspection on the backports kernel (NESTCLOUD_GUEST_KERNEL=backports)"
  NESTCLOUD_GUEST_KERNEL=backports node --import tsx --test --test-reporter=spec test/integration/vmi-guest.test.ts
fi

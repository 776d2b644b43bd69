#!/usr/bin/env bash
# Prints the test files of one kind, one per line, sorted (node:test on Node 20 does not
# discover .ts files: scripts/test.sh and scripts/test-node.sh pass explicit lists).
# Usage: scripts/test-files.sh unit|integration
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in
  unit) find src test -name '*.test.ts' -not -path 'test/integration/*' | LC_ALL=C sort ;;
  # rejuvenation-cpr runs QEMU 10 (not the system's): in test.sh's backports section only.
  integration) find test/integration -name '*.test.ts' -not -name 'rejuvenation-cpr.test.ts' | LC_ALL=C sort ;;
  *) echo "usage: scripts/test-files.sh unit|integration" >&2; exit 2 ;;
esac

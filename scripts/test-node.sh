#!/usr/bin/env bash
# Runs the unit tests (scripts/test.sh unit: every test but test/integration) on another
# Node.js major than the machine's, 24 by default. CI runs it after scripts/test.sh; it is
# usable by hand: scripts/test-node.sh 22.
#
#  1. Node.js <major> comes from the npm registry: the package node-linux-<arch>@<major> holds
#     its binary (bin/node) and headers (include/node). Cached under .cache/node/ (git-ignored).
#  2. The project (git ls-files, with uncommitted changes) is copied into a temporary folder.
#  3. There, scripts/test.sh unit runs with that Node.js first on PATH and npm_config_nodedir
#     at its headers: its npm ci compiles better-sqlite3 for that Node.js's ABI without
#     downloading anything from nodejs.org. The real PlanetLab days are passed on
#     (NESTCLOUD_PLANETLAB_DIR), so the tests that need them run as they do here.
#  4. The copy is removed. The exit code is scripts/test.sh's.
#
# Usage: scripts/test-node.sh [major]      (default 24)
# Environment: NESTCLOUD_KEEP_COPY=1 keeps the copy (its path is printed).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/progress.sh
root=$PWD
major="${1:-24}"
[[ "$major" =~ ^[0-9]+$ ]] || { echo "usage: scripts/test-node.sh [major]   (e.g. 24)" >&2; exit 2; }
t_start=$SECONDS

case "$(uname -m)" in
  x86_64) arch=x64 ;;
  aarch64) arch=arm64 ;;
  *) echo "scripts/test-node.sh: no Node.js package for $(uname -m) on the npm registry" >&2; exit 2 ;;
esac
pkg="node-linux-$arch"
cache="$root/.cache/node"
mkdir -p "$cache"

# The newest $major.x on the registry; the newest cached one when the registry cannot be asked.
version=$(npm view "$pkg@$major" version --json 2>/dev/null |
  node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{try{const v=[].concat(JSON.parse(s));console.log(v[v.length-1])}catch{}})' || true)
if [ -z "$version" ]; then
  version=$(ls "$cache" 2>/dev/null | sed -n "s/^v\($major\.[0-9.]*\)-linux-$arch\$/\1/p" | sort -V | tail -n 1)
  [ -n "$version" ] || { echo "scripts/test-node.sh: cannot ask the npm registry for $pkg@$major, and none is cached" >&2; exit 1; }
  echo "nestcloud: the npm registry did not answer: using the cached Node.js $version" >&2
fi
nodedir="$cache/v$version-linux-$arch"
if [ ! -x "$nodedir/bin/node" ] || [ ! -f "$nodedir/include/node/node.h" ]; then
  dl=$(mktemp -d "$cache/.download.XXXXXX")
  nc_step "downloading Node.js $version ($pkg@$version from the npm registry, ~50 MB)" \
    npm pack "$pkg@$version" --pack-destination "$dl" --silent
  tar -xzf "$dl/$pkg-$version.tgz" -C "$dl"
  rm -rf "$nodedir"
  mv "$dl/package" "$nodedir"
  rm -rf "$dl"
fi
got=$("$nodedir/bin/node" --version)
[ "$got" = "v$version" ] || { echo "scripts/test-node.sh: $nodedir/bin/node is $got, expected v$version" >&2; exit 1; }
echo "nestcloud: Node.js $got at $nodedir" >&2

copy=$(mktemp -d "${TMPDIR:-/tmp}/nestcloud-node$major.XXXXXX")
if [ "${NESTCLOUD_KEEP_COPY:-}" = 1 ]; then
  echo "nestcloud: the copy stays in $copy" >&2
else
  trap 'rm -rf "$copy"' EXIT
fi
# Tracked and new files as they are in the work tree (deleted ones are left out).
git ls-files -z --cached --others --exclude-standard |
  tar --null --files-from=- --ignore-failed-read -cf - 2>/dev/null | tar -xf - -C "$copy"
echo "nestcloud: project copied to $copy" >&2

# The real PlanetLab days, found from here (the copy has no ../shared beside it).
if [ -z "${NESTCLOUD_PLANETLAB_DIR:-}" ]; then
  for d in "$root/../shared/data/planetlab" "$root/data/planetlab"; do
    if [ -d "$d" ]; then
      export NESTCLOUD_PLANETLAB_DIR
      NESTCLOUD_PLANETLAB_DIR=$(cd "$d" && pwd)
      break
    fi
  done
fi

echo "== unit tests on Node.js $got (scripts/test.sh unit in the copy)"
rc=0
(
  cd "$copy"
  export PATH="$nodedir/bin:$PATH" npm_config_nodedir="$nodedir"
  bash scripts/test.sh unit
) || rc=$?
status=ok; [ "$rc" -eq 0 ] || status="FAILED (exit code $rc)"
echo "== Node.js $got: unit tests $status ($((SECONDS - t_start)) s in all, install included)"
exit "$rc"

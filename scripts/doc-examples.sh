#!/usr/bin/env bash
# Runs the documentation's runnable examples, so the documentation cannot lie: every fenced
# block whose info string is `sh runnable` in README.md and docs/*.md, each in a new empty
# directory, with `set -euo pipefail`, against a CNCF distribution registry this script
# starts on loopback (its address in $REGISTRY), a small image with a shell there ($BASE:
# busybox) and with $REGBUILD the binary to run (`regbuild` in the blocks is a function
# calling it). Exits non-zero naming the file and block that failed; prints how many blocks
# ran.
#
#   scripts/doc-examples.sh [FILE.md…]   (default: README.md docs/*.md; REGBUILD defaults to
#                                         target/debug/regbuild)
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
regbuild_bin=${REGBUILD:-$repo/target/debug/regbuild}
[[ -x $regbuild_bin ]] || { echo "doc-examples: $regbuild_bin is not built" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/regbuild-doc-examples.XXXXXX")
cleanup() {
  [[ -f $work/registry/registry.pid ]] && kill "$(cat "$work/registry/registry.pid")" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
testregistry/distribution/start.sh "$work/registry" "127.0.0.1:$port" >/dev/null
export REGISTRY=127.0.0.1:$port REGBUILD_CACHE=$work/cache

# $BASE: a small image with a shell for the examples' RUN steps (busybox, which
# scripts/setup.sh installs), pushed to the loopback registry by regbuild itself.
mkdir "$work/base"
cp /bin/busybox "$work/base/busybox"
printf 'FROM scratch\nCOPY busybox /bin/busybox\nRUN ["/bin/busybox", "--install", "-s", "/bin"]\n' >"$work/base/Dockerfile"
"$regbuild_bin" push --no-progress --allow-root -t "$REGISTRY/library/busybox:1" "$work/base" >/dev/null 2>"$work/base.log" ||
  { echo "doc-examples: pushing the examples' base failed:" >&2; cat "$work/base.log" >&2; exit 1; }
export BASE=$REGISTRY/library/busybox:1

# Each runnable block, as FILE:LINE<TAB>path-to-its-script.
pages=("$@")
[[ ${#pages[@]} -gt 0 ]] || pages=(README.md docs/*.md)
python3 - "$work/blocks" "${pages[@]}" <<'PY'
import os, sys
out = sys.argv[1]
os.makedirs(out, exist_ok=True)
n = 0
for path in sys.argv[2:]:
    lines = open(path).read().split("\n")
    i = 0
    while i < len(lines):
        info = lines[i].strip()
        if info.startswith("```") and info[3:].split() == ["sh", "runnable"]:
            start = i + 1
            j = start
            while j < len(lines) and lines[j].strip() != "```":
                j += 1
            n += 1
            name = os.path.join(out, "%03d" % n)
            with open(name, "w") as f:
                f.write("# %s:%d\n" % (path, start))
                f.write("\n".join(lines[start:j]) + "\n")
            i = j
        i += 1
PY
ran=0
for block in "$work"/blocks/*; do
  [[ -e $block ]] || continue
  where=$(head -n1 "$block" | cut -c3-)
  dir=$(mktemp -d "$work/run.XXXXXX")
  if ! (cd "$dir" && REGBUILD_BIN=$regbuild_bin bash -c '
      set -euo pipefail
      regbuild() { "$REGBUILD_BIN" "$@"; }
      source "$1"' _ "$block") >"$dir.log" 2>&1 </dev/null; then
    echo "doc-examples: the example at $where failed:" >&2
    tail -n 20 "$dir.log" >&2
    exit 1
  fi
  ran=$((ran + 1))
done
echo "doc-examples: $ran runnable example(s) passed"

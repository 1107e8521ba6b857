#!/usr/bin/env bash
# The main job on a fresh machine: start testregistry on loopback, build Dockerfile.test with
# `regbuild push` (no daemon; its RUN step runs in regbuild's sandbox, rootless when the
# demo is not run as root), push it again (nothing uploaded, nothing run), promote it to
# another repository (mounts only), and show what the registry holds. Needs cargo; a C compiler that
# links statically and curl are installed by scripts/setup.sh when missing.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v cargo >/dev/null || {
  echo "error: cargo is missing: install Rust (https://rustup.rs), then run $0 again" >&2
  exit 1
}
if ! scripts/setup.sh --check 2>/dev/null; then
  echo "== installing what the demo needs (scripts/setup.sh)"
  scripts/setup.sh
fi

echo "== building regbuild and testregistry (the first build takes a few minutes)"
cargo build --bins --workspace
bin=target/debug

work=$(mktemp -d)
trap 'kill "$reg_pid" 2>/dev/null || true; rm -rf "$work"' EXIT

"$bin/testregistry" --addr 127.0.0.1:0 >"$work/registry.out" 2>&1 &
reg_pid=$!
for _ in $(seq 100); do
  grep -q listening "$work/registry.out" 2>/dev/null && break
  sleep 0.1
done
host=$(sed -n 's#.*listening on http://\([^ ]*\).*#\1#p' "$work/registry.out" | head -n1)
[ -n "$host" ] || { cat "$work/registry.out"; exit 1; }
echo "== testregistry on $host"

# The build context: a static program and its config (see Dockerfile.test).
mkdir -p "$work/ctx/config"
cc -static -O2 -o "$work/ctx/hello" tests/fixtures/hello/hello.c
cp tests/fixtures/hello/config/hello.conf "$work/ctx/config/"
cp /bin/busybox "$work/ctx/busybox" # the RUN stage's shell (Debian's busybox-static)

echo "== regbuild push (first time: layers are uploaded)"
time "$bin/regbuild" push -f Dockerfile.test -t "$host/demo/hello:1.0" "$work/ctx"

echo "== regbuild push again (same inputs: same digest, 0 bytes uploaded)"
time "$bin/regbuild" push --json -f Dockerfile.test -t "$host/demo/hello:1.0" "$work/ctx"

echo "== regbuild promote to another repository (every blob mounted, nothing copied)"
"$bin/regbuild" promote "$host/demo/hello:1.0" "$host/prod/hello:1.0"

echo "== the promoted manifest"
curl -s -H 'Accept: application/vnd.oci.image.manifest.v1+json' "http://$host/v2/prod/hello/manifests/1.0"
echo

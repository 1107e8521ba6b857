#!/usr/bin/env bash
# Peak memory of `regbuild push` for one big layer (default 2 GiB of incompressible data),
# against the real distribution registry on loopback. Prints the peak RSS and wall time.
#   bench/peak_rss.sh [SIZE_MIB]
set -euo pipefail
cd "$(dirname "$0")/.."
size_mib=${1:-2048}
command -v /usr/bin/time >/dev/null || { echo "needs /usr/bin/time (apt-get install time)"; exit 2; }
cargo build --release --quiet --bin regbuild
work=$(mktemp -d)
trap 'kill $(cat "$work/reg/registry.pid" 2>/dev/null) 2>/dev/null || true; rm -rf "$work"' EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
testregistry/distribution/start.sh "$work/reg" "127.0.0.1:$port" >/dev/null
mkdir -p "$work/ctx"
# Incompressible: the layer's compressed size is about its size.
head -c "$((size_mib * 1024 * 1024))" /dev/urandom > "$work/ctx/big.bin"
printf 'FROM scratch\nCOPY big.bin /big.bin\nUSER 1\n' > "$work/ctx/Dockerfile"
/usr/bin/time -v "${CARGO_TARGET_DIR:-target}/release/regbuild" push --no-progress -t "127.0.0.1:$port/bench/big:1" "$work/ctx" \
  2> "$work/time.txt" > "$work/out.txt"
rss_kb=$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$work/time.txt")
wall=$(sed -n 's/.*Elapsed (wall clock) time (h:mm:ss or m:ss): //p' "$work/time.txt")
echo "layer: ${size_mib} MiB  peak RSS: $((rss_kb / 1024)) MiB (${rss_kb} kB)  wall: ${wall}"
tail -n1 "$work/out.txt"

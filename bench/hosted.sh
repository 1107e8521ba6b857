#!/usr/bin/env bash
# Pushes an image with one big incompressible layer through testregistry in each hosted-
# registry profile (gar, ghcr, ecr, jfrog, dockerhub, quay, harbor) and in the plain
# distribution profile, streamed (default) and with --no-stream-upload, and prints per push
# the requests it made (from testregistry's request log, up to the end of the push), the
# bytes the registry received,
# the refused requests, and the wall time beside the distribution profile's.
#
#   bench/hosted.sh [MIB]      MIB: size of the layer's file (default 100)
#
# The stored image is checked with skopeo (every blob is verified against its digest).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
mib=${1:-100}
if ! [[ $mib =~ ^[1-9][0-9]*$ ]]; then
  echo "usage: $0 [MIB]   (MIB >= 1, default 100)" >&2
  exit 2
fi
log() { printf '[hosted %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

missing=()
for tool in skopeo curl; do command -v "$tool" >/dev/null || missing+=("$tool"); done
if [[ ${#missing[@]} -gt 0 ]]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null
fi
log "cargo build --release"
cargo build --release --quiet --bins -p regbuild -p testregistry
regbuild=$repo/target/release/regbuild
testregistry=$repo/target/release/testregistry

work=$(mktemp -d "${TMPDIR:-/tmp}/regbuild-hosted.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/ctx"
# Fixed-seed incompressible data: the same bytes on every machine.
python3 - "$work/ctx/data.bin" "$mib" <<'EOF'
import hashlib, sys
path, mib = sys.argv[1], int(sys.argv[2])
with open(path, "wb") as f:
    block = hashlib.sha256(b"regbuild-hosted").digest()
    for i in range(mib * 1024 * 1024 // 32):
        block = hashlib.sha256(block).digest()
        f.write(block)
EOF
printf 'small\n' > "$work/ctx/small.txt"
printf 'FROM scratch\nCOPY data.bin /data.bin\nCOPY small.txt /small.txt\nUSER 1\n' \
  > "$work/ctx/Dockerfile"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

printf '| profile | mode | requests | by kind | refused | MiB received | seconds | × distribution |\n'
printf '|---|---|---|---|---|---|---|---|\n'
declare -A base_time
for mode in streamed files; do
  for profile in distribution gar ghcr ecr jfrog dockerhub quay harbor; do
    port=$(free_port)
    "$testregistry" --addr "127.0.0.1:$port" --profile "$profile" --log-requests \
      > "$work/log" 2>&1 &
    pid=$!
    for _ in $(seq 100); do grep -q listening "$work/log" && break; sleep 0.05; done
    extra=()
    [[ $mode == files ]] && extra=(--no-stream-upload)
    rm -rf "$work/cache"
    t0=$(date +%s.%N)
    REGBUILD_CACHE=$work/cache "$regbuild" push --no-progress "${extra[@]}" \
      -t "127.0.0.1:$port/app:1" "$work/ctx" > "$work/out" 2> "$work/err" \
      || { echo "push failed ($profile, $mode):" >&2; cat "$work/err" >&2; kill "$pid"; exit 1; }
    t1=$(date +%s.%N)
    # Marks the end of the push in the request log: skopeo's reads come after it.
    curl -s -o /dev/null "http://127.0.0.1:$port/v2/--end-of-push--/tags/list" || true
    skopeo copy -q --src-tls-verify=false "docker://127.0.0.1:$port/app:1" "dir:$work/pulled" \
      || { echo "skopeo could not read back ($profile, $mode)" >&2; kill "$pid"; exit 1; }
    rm -rf "$work/pulled"
    kill -INT "$pid"; wait "$pid" || true
    secs=$(python3 -c "print(round($t1 - $t0, 2))")
    [[ $profile == distribution ]] && base_time[$mode]=$secs
    python3 - "$work/log" "$profile" "$mode" "$secs" "${base_time[$mode]}" <<'EOF'
import collections, sys
path, profile, mode, secs, base = sys.argv[1:]
reqs = []
for line in open(path):
    if "--end-of-push--" in line:
        break
    parts = line.split()
    if len(parts) != 5 or parts[0] not in ("GET", "HEAD", "POST", "PATCH", "PUT", "DELETE"):
        continue
    method, target, status, received, _ = parts
    reqs.append((method, target, int(status), int(received)))
kinds = collections.Counter()
for m, t, s, _ in reqs:
    what = "manifest" if "/manifests/" in t else "upload" if "/uploads/" in t else "blob" if "/blobs/" in t else "other"
    kinds[f"{m} {what} {s}"] += 1
refused = sum(1 for _, t, s, _ in reqs if "/uploads/" in t and s >= 400)
received = sum(r for *_, r in reqs) / (1 << 20)
by_kind = ", ".join(f"{n}× {k}" for k, n in sorted(kinds.items()))
ratio = float(secs) / float(base) if float(base) > 0 else 0
print(f"| {profile} | {mode} | {len(reqs)} | {by_kind} | {refused} | {received:.1f} | {secs} | {ratio:.2f} |")
EOF
  done
done

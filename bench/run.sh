#!/usr/bin/env bash
# Side-by-side benchmark of regbuild (see BENCHMARKS.md for what is measured and the targets).
#
#   bench/run.sh [RUNS]        RUNS: runs of each measurement, medians are reported (default 3)
#
# One machine, one registry (the CNCF distribution registry, `docker-registry`, on a free
# loopback port), one run of each selected section (BENCH_SECTIONS, below). Section `push`:
#   1. cold push: ~300 MB base already in another repository of the registry, ~140 MB context
#      in one COPY: regbuild vs `buildah bud` + `buildah push` (vfs, chroot, empty storage)
#      vs the floor `tar | pigz -p2 | sha256sum` of the same context;
#   2. warm rebuild with one file of the context changed: regbuild vs buildah (base local);
#   3. no-op re-push: time and bytes uploaded;
#   4. promote to another repository: regbuild vs `skopeo copy`;
#   5. peak RSS for a 2 GiB layer (bench/peak_rss.sh);
#   6. cold push over loopback shaped to 400 Mbit/s (tc tbf): layers streamed while they
#      pack (default) vs --no-stream-upload. Also, with step 2: the warm rebuild with
#      --layering=auto beside the default.
# Prints a markdown table (medians, ratios, PASS/FAIL against the targets) and rewrites the
# "Latest run" section of BENCHMARKS.md with it and the machine's description.
# Section `run` (after `push`): a Dockerfile with RUN steps (apt-get install gcc, a RUN that
# writes 1000 files, COPYs, a RUN that compiles) over a Debian base debootstrapped from this
# machine's apt mirror (scripts/debian-base.sh, cached), regbuild vs `buildah bud --layers`
# + `buildah push` (overlay storage, chroot isolation): cold, fresh runner (regbuild: empty
# cache, the image already in the registry), warm (one source file changed); wall times,
# regbuild's bytes uploaded and peak RSS, blob upload PUTs. It rewrites the "Latest run: RUN
# steps" section of BENCHMARKS.md; a regbuild that cannot build the Dockerfile is reported
# there (and on stderr) instead of stopping the script.
# Section `cache` (last; bench/cache_section.sh): the registry as the cache of ephemeral CI
# runners, a multi-stage Go build (Go from Debian's packages, modules vendored) cold, then on
# a fresh runner unchanged and after a one-line change, regbuild vs `buildah bud --layers
# --cache-to/--cache-from`; it rewrites the "Latest run: registry cache" section.
#
# Environment: BENCH_SECTIONS="push run cache" (the default; any of them, space- or
# comma-separated) selects the sections, e.g. `BENCH_SECTIONS=run bench/run.sh 1`;
# BENCH_NOTE=TEXT adds a note to the BENCHMARKS.md section (e.g. "provisional");
# BENCH_PORT=N puts the registry on port N (same digests across commits need the same port);
# BENCH_NO_WRITE=1 leaves BENCHMARKS.md alone; BENCH_KEEP=1 keeps the work directory.
# Needs root (apt-get, buildah's chroot isolation, a private mount namespace); Debian packages
# are installed when missing. Data are generated from fixed seeds: same bytes on every machine.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

runs=${1:-3}
if ! [[ $runs =~ ^[1-9][0-9]*$ ]]; then
  echo "usage: $0 [RUNS]   (RUNS >= 1, default 3)" >&2
  exit 2
fi
sections=" ${BENCH_SECTIONS:-push run cache} "
sections=${sections//,/ }
for s in $sections; do
  if [[ $s != push && $s != run && $s != cache ]]; then
    echo "BENCH_SECTIONS: unknown section '$s' (sections: push run cache)" >&2
    exit 2
  fi
done
want() { [[ $sections == *" $1 "* ]]; }
script_t0=$(date +%s.%N)
log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# --- tools ---------------------------------------------------------------------------------
need=()
command -v buildah >/dev/null || need+=(buildah)
command -v pigz >/dev/null || need+=(pigz)
command -v skopeo >/dev/null || need+=(skopeo)
command -v umoci >/dev/null || need+=(umoci)
[[ -x /usr/bin/docker-registry ]] || need+=(docker-registry)
[[ -x /usr/bin/time ]] || need+=(time)
command -v tc >/dev/null || need+=(iproute2)
command -v curl >/dev/null || need+=(curl)
command -v python3 >/dev/null || need+=(python3)
# Section run: scripts/debian-base.sh debootstraps its base (once; then it is cached).
if want run || want cache; then
  [[ -x /usr/sbin/debootstrap ]] || command -v debootstrap >/dev/null || need+=(debootstrap)
fi
if [[ ${#need[@]} -gt 0 ]]; then
  log "installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need[@]}" >/dev/null
fi

log "cargo build --release"
cargo build --release --quiet --bin regbuild
regbuild=${CARGO_TARGET_DIR:-$repo/target}/release/regbuild

# --- work directory, registry --------------------------------------------------------------
work=$(mktemp -d "${TMPDIR:-/tmp}/regbuild-bench.XXXXXX")
reg_dir=$work/registry
cleanup() {
  local rc=$?
  if [[ -f $reg_dir/registry.pid ]]; then
    kill "$(cat "$reg_dir/registry.pid")" 2>/dev/null || true
  fi
  if [[ ${shaped:-no} == yes ]]; then
    tc qdisc del dev lo root 2>/dev/null || true
  fi
  if [[ -n ${BENCH_KEEP:-} ]]; then
    echo "work directory kept: $work" >&2
  elif grep -qF " $work/" /proc/mounts; then
    # Never rm -rf through a mount point (buildah's, should one survive).
    echo "not removing $work: something is still mounted under it" >&2
  else
    rm -rf "$work"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# BENCH_PORT fixes the registry's port: the images name their base by REG/..., so comparing
# digests across commits needs the same port in both runs.
port=${BENCH_PORT:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')}
reg=127.0.0.1:$port
testregistry/distribution/start.sh "$reg_dir" "$reg" >/dev/null
reg_log=$reg_dir/registry.log
log "distribution registry on $reg (data in $reg_dir)"

# containers/image (buildah, skopeo) keeps a machine-wide blob-info cache in
# /var/lib/containers/cache (for root): it remembers in which repositories a blob was seen and
# then mounts instead of uploading. Each run gives buildah and skopeo their own empty cache,
# bind-mounted there in a private mount namespace, so that run N is as cold as run 1 and the
# machine's own cache is neither used nor changed.
isolate=yes
mkdir -p /var/lib/containers/cache "$work/bic-probe"
if ! unshare --mount --propagation private \
  mount --bind "$work/bic-probe" /var/lib/containers/cache 2>/dev/null; then
  isolate=no
  log "WARNING: no private mount namespace (unshare --mount): buildah and skopeo share the" \
    "machine's blob-info cache, runs after the first may mount blobs instead of uploading"
fi
# in_cache BIC_DIR CMD...: CMD with BIC_DIR as the containers/image blob-info cache.
in_cache() {
  local bic=$1
  shift
  mkdir -p "$bic"
  if [[ $isolate == yes ]]; then
    unshare --mount --propagation private bash -c \
      'mount --bind "$0" /var/lib/containers/cache && exec "$@"' "$bic" "$@"
  else
    "$@"
  fi
}

# --- helpers -------------------------------------------------------------------------------
results=$work/results.tsv
: >"$results"
record() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"$results"; }

# timed CMD...: runs CMD, sets ELAPSED (seconds, wall clock), returns CMD's status.
timed() {
  local t0 t1 rc=0
  # Dirty pages of the previous step (registry blobs, layer files) are written out first, so
  # that no step pays for the writeback of another.
  sync
  t0=$(date +%s.%N)
  "$@" || rc=$?
  t1=$(date +%s.%N)
  ELAPSED=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
  return "$rc"
}

json_bytes() {
  python3 - "$1" <<'EOF'
import json, sys
text = open(sys.argv[1]).read().strip()
try:
    doc = json.loads(text)
except ValueError:
    doc = json.loads(text.splitlines()[-1])
print(doc["bytes_uploaded"])
EOF
}

# regbuild_push N CACHE NAME [REPO [ARGS...]]: one `regbuild push` to REPO:1 (default
# bench/regbuild-N), recorded as NAME.
regbuild_push() {
  local n=$1 cache=$2 name=$3 out=$work/$3-$1 repo=${4:-bench/regbuild-$1}
  shift 3
  [[ $# -gt 0 ]] && shift
  if ! REGBUILD_CACHE=$cache XDG_CACHE_HOME=$cache/xdg timed "$regbuild" push --no-progress \
    --json "$@" -f "$dockerfile" -t "$reg/$repo:1" "$ctx" >"$out.json" 2>"$out.err"; then
    cat "$out.err" >&2
    echo "regbuild push failed ($name, run $n)" >&2
    exit 1
  fi
  record "$name" "$n" "$ELAPSED"
  record "$name.bytes" "$n" "$(json_bytes "$out.json")"
  # The image's digest: the same inputs must give the same digest on every commit.
  python3 -c 'import json,sys; print(sys.argv[1], json.load(open(sys.argv[2]))["digest"])' \
    "$name" "$out.json" >>"$work/digests"
}

floor() { tar -C "$1" -cf - . | pigz -p2 -6 | sha256sum >/dev/null; }

# buildah_build N NAME: `buildah bud` + `buildah push` to bench/buildah-N:1 with run N's
# storage (empty at the first call: the base is pulled), recorded as NAME.
buildah_ok=yes
buildah_why=
buildah_build() {
  local n=$1 name=$2 out=$work/$2-$1
  local b=(buildah --root "$work/buildah-$n/root" --runroot "$work/buildah-$n/runroot"
    --storage-driver vfs)
  [[ $buildah_ok == yes ]] || return 0
  # shellcheck disable=SC2016
  if timed in_cache "$work/bic-$n" bash -c '
      b=("${@:3}")
      "${b[@]}" bud --isolation chroot --tls-verify=false -t bench-img -f "$1" "$2" &&
      "${b[@]}" push --tls-verify=false bench-img "docker://'"$reg"'/bench/buildah-'"$n"':1"
    ' _ "$dockerfile" "$ctx" "${b[@]}" >"$out.log" 2>&1; then
    record "$name" "$n" "$ELAPSED"
  else
    buildah_ok=no
    buildah_why="$name failed: $(grep -v '^\s*$' "$out.log" | tail -n 3 | tr '\n' ' ')"
    log "WARNING: buildah cannot run here, continuing without it: $buildah_why"
  fi
}

log_lines() { wc -l <"$reg_log"; }
# log_since LINE: the registry access-log lines written after line LINE.
log_since() { tail -n "+$(($1 + 1))" "$reg_log"; }
# count_puts LINE REPO: blob uploads completed in REPO (PUT .../blobs/uploads/... 201).
count_puts() { log_since "$1" | grep -cE "\"PUT /v2/$2/blobs/uploads/[^\"]* HTTP/1\.1\" 201" || true; }
count_mounts() { log_since "$1" | grep -cE "\"POST /v2/$2/blobs/uploads/\?[^\"]*mount=[^\"]* HTTP/1\.1\" 201" || true; }
# bytes of blob GETs (downloads) answered 200
get_bytes() {
  log_since "$1" | awk '/"GET \/v2\/[^"]*\/blobs\/sha256[^"]* HTTP\/1\.1" 200 / {
      for (i = 1; i <= NF; i++) if ($i == "200") { s += $(i + 1); break } }
    END { printf "%d\n", s }'
}

# --- section `cache`: the registry as the cache of fresh runners (bench/cache_section.sh) ---
# shellcheck source=bench/cache_section.sh
source "$repo/bench/cache_section.sh"

# --- section `run`: RUN steps over a Debian base -------------------------------------------
# run_section: the same Dockerfile with RUN steps built and pushed by regbuild and by buildah
# (`buildah bud --layers --isolation chroot --storage-driver overlay` + `buildah push`), over
# a Debian base debootstrapped from this machine's apt mirror (scripts/debian-base.sh, made
# once and cached: REGBUILD_DEBIAN_CACHE), per run N: cold (empty regbuild cache, empty
# buildah storage), fresh runner (regbuild with a new empty cache, the registry already has
# the image: same tag and --cache-from it; buildah's equivalent is its cold build), warm (one
# source file changed, local cache and storage kept). Prints its table and rewrites the
# "Latest run: RUN steps" section of BENCHMARKS.md. A regbuild that cannot build the
# Dockerfile (before RUN support: "RUN is not supported") is reported as such, in the table
# and the notes, and buildah is still measured.
run_results=$work/run-results.tsv
run_record() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"$run_results"; }

# rm_unmounted DIR: rm -rf DIR, unless something is mounted under it (buildah's overlay
# mounts live in its own mount namespace, see in_cache; this is the fallback's guard).
rm_unmounted() {
  if grep -qF " $1/" /proc/mounts; then
    log "WARNING: not removing $1: something is still mounted under it"
  else
    rm -rf "$1"
  fi
}

# run_regbuild N CACHE NAME [ARGS...]: `regbuild push` of the RUN Dockerfile to
# bench/run-regbuild-N:1 with REGBUILD_CACHE=CACHE, recorded as NAME: wall time, bytes
# uploaded, blob upload PUTs, peak RSS (/usr/bin/time: the largest of regbuild and the
# processes it waited for, RUN steps' included).
run_regbuild_ok=yes
run_regbuild_why=
run_regbuild() {
  local n=$1 cache=$2 name=$3 out=$work/$3-$1 before df=${RUN_DF:-$run_dockerfile}
  shift 3
  [[ $run_regbuild_ok == yes ]] || return 0
  mkdir -p "$cache"
  before=$(log_lines)
  # -v: each executed RUN step logs its timings (prepare_s, command_s, diff_pack_s, total_s).
  if REGBUILD_CACHE=$cache XDG_CACHE_HOME=$cache/xdg timed /usr/bin/time -f %M -o "$out.rss" \
    "$regbuild" -v push --no-progress --json "$@" -f "$df" \
    -t "${RUN_TAG:-$reg/bench/run-regbuild-$n:1}" "$run_ctx" >"$out.json" 2>"$out.err"; then
    # What regbuild adds to the executed RUN steps beyond the commands: prepare (layers
    # made ready as overlay lowers) + diff and pack (upper directory to layer).
    run_record "$name.overhead" "$n" "$(step_overhead "$out.err" total)"
    run_record "$name.prepare" "$n" "$(step_overhead "$out.err" prepare_s)"
    run_record "$name.diffpack" "$n" "$(step_overhead "$out.err" diff_pack_s)"
    run_record "$name.command" "$n" "$(step_overhead "$out.err" command_s)"
    # Blob bytes downloaded (all blobs; the base's layer alone).
    run_record "$name.got" "$n" "$(get_bytes "$before")"
    run_record "$name.base_got" "$n" "$(log_since "$before" |
      grep -cF "\"GET /v2/bench/debian/blobs/$run_base_layer HTTP/1.1\" 200 " || true)"
    run_record "$name" "$n" "$ELAPSED"
    run_record "$name.bytes" "$n" "$(json_bytes "$out.json")"
    run_record "$name.puts" "$n" "$(count_puts "$before" "bench/run-regbuild-$n")"
    run_record "$name.rss_kb" "$n" "$(tail -n1 "$out.rss")"
    log "run $n: $name ${ELAPSED} s"
  else
    run_regbuild_ok=no
    run_regbuild_why="$name (run $n) failed after ${ELAPSED} s: $(grep -v '^\s*$' "$out.err" |
      tail -n 3 | tr '\n' ' ')"
    log "WARNING: regbuild cannot build the RUN Dockerfile; its measurements are left out:" \
      "$run_regbuild_why"
  fi
}

# step_overhead ERRFILE FIELD: the sum over the "RUN step timings" lines of FIELD, or with
# FIELD=total of total_s - command_s (the time regbuild adds beyond the commands).
step_overhead() {
  grep 'RUN step timings' "$1" | sed 's/\x1b\[[0-9;]*m//g' | awk -v f="$2" '
    { for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
      if (f == "total") sum += v["total_s"] - v["command_s"]; else sum += v[f] }
    END { printf "%.3f", sum + 0 }'
}

# run_buildah N NAME: `buildah bud` + `buildah push` of the RUN Dockerfile to
# bench/run-buildah-N:1 with run N's overlay storage, recorded as NAME.
run_buildah_ok=yes
run_buildah_why=
run_buildah() {
  local n=$1 name=$2 out=$work/$2-$1 before
  local b=(buildah --root "$work/run-buildah-$n/root" --runroot "$work/run-buildah-$n/runroot"
    --storage-driver overlay)
  [[ $run_buildah_ok == yes ]] || return 0
  before=$(log_lines)
  # shellcheck disable=SC2016
  if timed in_cache "$work/bic-run-$n" bash -c '
      b=("${@:3}")
      "${b[@]}" bud --layers --isolation chroot --tls-verify=false -t run-img -f "$1" "$2" &&
      "${b[@]}" push --tls-verify=false run-img "docker://'"$reg"'/bench/run-buildah-'"$n"':1"
    ' _ "$run_dockerfile" "$run_ctx" "${b[@]}" >"$out.log" 2>&1; then
    run_record "$name" "$n" "$ELAPSED"
    run_record "$name.puts" "$n" "$(count_puts "$before" "bench/run-buildah-$n")"
    log "run $n: $name ${ELAPSED} s"
  else
    run_buildah_ok=no
    run_buildah_why="$name (run $n) failed: $(grep -v '^\s*$' "$out.log" | tail -n 3 | tr '\n' ' ')"
    log "WARNING: buildah cannot build the RUN Dockerfile here: $run_buildah_why"
  fi
}

run_section() {
  local base n cache t0 t1
  t0=$(date +%s.%N)
  : >"$run_results"
  log "section run: the Debian base (scripts/debian-base.sh: debootstraps once, then cached)"
  base=$(scripts/debian-base.sh | tail -n1)
  run_suite=$(sed -n 's/^SUITE=//p' "$base/base.env")
  run_from=$reg/bench/debian:$run_suite
  run_base_layer=$(sed -n 's/^LAYER_DIGEST=//p' "$base/base.env")
  in_cache "$work/bic-run-setup" skopeo copy -q --dest-tls-verify=false \
    "oci:$base/oci:base" "docker://$run_from"
  log "base $run_from pushed ($(sed -n 's/^LAYER_BYTES=//p' "$base/base.env") bytes)"

  # The context: a C program and 100 small data files (fixed contents, fixed mtimes).
  run_ctx=$work/run-ctx
  mkdir -p "$run_ctx/src" "$run_ctx/data"
  cat >"$run_ctx/src/app.c" <<'EOF'
#include <stdio.h>

int main(void) {
    printf("bench app\n");
    return 0;
}
EOF
  for n in $(seq 1 100); do seq "$n" >"$run_ctx/data/d$n.txt"; done
  find "$run_ctx" -exec touch -h -d @1600000000 {} +
  cp -p "$run_ctx/src/app.c" "$work/run-app.c.orig"
  # Outside the context, as the push section's: the context does not depend on the port.
  run_dockerfile=$work/run.Dockerfile
  cat >"$run_dockerfile" <<EOF
FROM $run_from
ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev && rm -rf /var/lib/apt/lists/*
RUN mkdir -p /srv/data && for i in \$(seq 1 1000); do seq "\$i" > "/srv/data/\$i"; done
COPY data/ /srv/input/
COPY src/ /src/
RUN gcc -O2 -o /usr/local/bin/app /src/app.c
CMD ["app"]
EOF

  run_big_dockerfile=$work/run-big.Dockerfile
  cat >"$run_big_dockerfile" <<EOF
FROM $run_from
RUN head -c 1073741824 /dev/urandom > /big
EOF

  for n in $(seq 1 "$runs"); do
    log "section run: run $n/$runs"
    cache=$work/run-cache-$n
    # 1. cold: nothing local (new regbuild cache, new buildah storage and blob-info cache)
    run_regbuild "$n" "$cache" run.regbuild.cold
    run_buildah "$n" run.buildah.cold
    # 2. fresh runner: the registry has the image (the cold push's tag), the disk nothing
    run_regbuild "$n" "$work/run-cache-fresh-$n" run.regbuild.fresh \
      --cache-from "$reg/bench/run-regbuild-$n:1"
    rm -rf "$work/run-cache-fresh-$n"
    # 3. warm: one source file changed, local cache and storage kept
    printf '/* warm rebuild: one changed line */\n' >>"$run_ctx/src/app.c"
    run_regbuild "$n" "$cache" run.regbuild.warm
    run_buildah "$n" run.buildah.warm
    cp -p "$work/run-app.c.orig" "$run_ctx/src/app.c"
    rm -rf "$cache" "$work/bic-run-$n"
    rm_unmounted "$work/run-buildah-$n"
    # 4. memory: one RUN step that writes 1 GiB (incompressible), cold
    RUN_DF=$run_big_dockerfile run_regbuild "$n" "$work/run-cache-big-$n" run.regbuild.big
    rm -rf "$work/run-cache-big-$n"
    # 5. the cold build in the lower rungs of isolation (RUN inside a container), last: a
    #    rung this machine refuses ends regbuild's measurements. Each pushes to a repository
    #    of its own, where the blobs are mounted from the cold push, not uploaded.
    for rung in userns chroot; do
      RUN_TAG=$reg/bench/run-regbuild-$n-$rung:1 run_regbuild "$n" "$work/run-cache-$rung-$n" \
        "run.regbuild.$rung" --isolation "$rung"
      rm -rf "$work/run-cache-$rung-$n"
    done
  done
  t1=$(date +%s.%N)

  local cpu mem commit versions
  commit=$(git -C "$repo" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
  if [[ $commit != unknown && -n $(git -C "$repo" --no-optional-locks status --porcelain -uno 2>/dev/null) ]]; then
    commit="$commit (with uncommitted changes)"
  fi
  cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)
  mem=$(free -g | awk '/^Mem:/ { print $2 " GiB total, " $7 " GiB available" }')
  versions="regbuild $("$regbuild" --version 2>/dev/null | awk '{print $NF}')"
  versions+="; buildah $(buildah --version | awk '{print $3}')"
  versions+="; debootstrap $(dpkg-query -W -f '${Version}' debootstrap 2>/dev/null || echo '?')"
  BENCH_RUNS=$runs BENCH_COMMIT=$commit BENCH_CPU=$cpu BENCH_MEM=$mem BENCH_NPROC=$(nproc) \
    BENCH_SECTIONS="$(echo $sections)" BENCH_KERNEL=$(uname -r) \
    BENCH_DATE=$(date -u '+%Y-%m-%d %H:%M UTC') \
    BENCH_TOTAL=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%d", b - a }') \
    BENCH_LOAD="$(cut -d' ' -f1-3 /proc/loadavg) at the end" \
    BENCH_VERSIONS=$versions \
    BENCH_REGBUILD_OK=$run_regbuild_ok BENCH_REGBUILD_WHY=$run_regbuild_why \
    BENCH_BUILDAH_OK=$run_buildah_ok BENCH_BUILDAH_WHY=$run_buildah_why \
    BENCH_ISOLATE=$isolate BENCH_BASE_ENV=$base/base.env BENCH_DOCKERFILE=$run_dockerfile \
    python3 - "$run_results" "$repo/BENCHMARKS.md" <<'EOF'
import os, re, statistics, sys
from collections import defaultdict

E = os.environ
vals = defaultdict(list)
for line in open(sys.argv[1]):
    k, n, v = line.rstrip("\n").split("\t")
    vals[k].append(float(v))
base = dict(l.rstrip("\n").split("=", 1) for l in open(E["BENCH_BASE_ENV"]) if "=" in l)


def med(k):
    return statistics.median(vals[k]) if vals.get(k) else None


def s(x):
    return "n/a" if x is None else "%.2f s" % x


def mb(x):
    return "n/a" if x is None else ("0 B" if x == 0 else "%.1f MB" % (x / 1e6))


def r(a, b):
    return "n/a" if a is None or b is None or b == 0 else "%.2f×" % (a / b)


def cnt(k):
    v = med(k)
    return "n/a" if v is None else "%g" % v


failed = E["BENCH_REGBUILD_OK"] != "yes"


def reg(k):
    if failed and med(k) is None:
        return "FAILED (see note)"
    rss = max(vals[k + ".rss_kb"]) / 1024 if vals.get(k + ".rss_kb") else None
    return "%s, %s uploaded (%s blob PUTs), %s downloaded (base layer GETs: %s), peak RSS %s" % (
        s(med(k)), mb(med(k + ".bytes")), cnt(k + ".puts"), mb(med(k + ".got")),
        cnt(k + ".base_got"), "n/a" if rss is None else "%.0f MiB" % rss)


def bud(k):
    if E["BENCH_BUILDAH_OK"] != "yes" and med(k) is None:
        return "FAILED (see note)"
    return "%s (%s blob PUTs)" % (s(med(k)), cnt(k + ".puts"))


def secs(k):
    return "n/a" if med(k) is None else "%.2f s" % med(k)


bc, bw = med("run.buildah.cold"), med("run.buildah.warm")
rc, rf = med("run.regbuild.cold"), med("run.regbuild.fresh")
big = vals.get("run.regbuild.big.rss_kb")
big_rss = max(big) / 1024 if big else None
rows = [
    ("R1. cold (empty cache, empty storage)", reg("run.regbuild.cold"), bud("run.buildah.cold"),
     r(med("run.regbuild.cold"), bc)),
    ("R2. fresh runner (empty cache, image in the registry)", reg("run.regbuild.fresh"),
     "cold build: " + bud("run.buildah.cold"), r(med("run.regbuild.fresh"), bc)),
    ("R3. warm (one source file changed)", reg("run.regbuild.warm"), bud("run.buildah.warm"),
     r(med("run.regbuild.warm"), bw)),
    ("R4. added to the executed RUN steps, cold (prepare + diff/pack)",
     "%s (prepare %s, diff and pack %s; the commands took %s)" % (
         secs("run.regbuild.cold.overhead"), secs("run.regbuild.cold.prepare"),
         secs("run.regbuild.cold.diffpack"), secs("run.regbuild.cold.command")), "", ""),
    ("R5. one RUN writing 1 GiB: wall, added, peak RSS",
     "%s, added %s, peak RSS %s" % (secs("run.regbuild.big"), secs("run.regbuild.big.overhead"),
                                     "n/a" if big_rss is None else "%.0f MiB" % big_rss), "", ""),
]
checks = [
    ("cold at most 0.6× buildah", rc is not None and bool(bc) and rc / bc <= 0.6),
    ("fresh runner at most 0.1× buildah cold, no base layer downloaded, 0 bytes uploaded",
     rf is not None and bool(bc) and rf / bc <= 0.1 and med("run.regbuild.fresh.bytes") == 0
     and med("run.regbuild.fresh.base_got") == 0),
    ("peak RSS under 150 MiB for a step writing 1 GiB", big_rss is not None and big_rss < 150),
]
for rung, label in (("userns", "R6. cold, user-namespace rung (`--isolation userns`)"),
                    ("chroot", "R7. cold, chroot rung (`--isolation chroot`)")):
    k = "run.regbuild." + rung
    rows.append((label + ": wall, added to the RUN steps",
                 "%s, added %s (prepare %s, diff and pack %s; sandbox cold: added %s)" % (
                     secs(k), secs(k + ".overhead"), secs(k + ".prepare"), secs(k + ".diffpack"),
                     secs("run.regbuild.cold.overhead")), "", ""))
rows += [("target: " + t, "PASS" if ok else "FAIL", "", "") for t, ok in checks]
hdr = ["measurement", "regbuild", "buildah bud + push", "ratio"]
table = ["| " + " | ".join(hdr) + " |", "|" + "|".join("---" for _ in hdr) + "|"]
table += ["| " + " | ".join(row) + " |" for row in rows]
keys = [("run.regbuild.cold", "regbuild cold"), ("run.buildah.cold", "buildah cold"),
        ("run.regbuild.fresh", "regbuild fresh runner"), ("run.regbuild.warm", "regbuild warm"),
        ("run.buildah.warm", "buildah warm")]
raw = ["| run | " + " | ".join(label for _, label in keys) + " |",
       "|---|" + "|".join("---" for _ in keys) + "|"]
for i in range(int(E["BENCH_RUNS"])):
    cells = []
    for k, _ in keys:
        v = vals.get(k, [])
        cells.append("%.2f" % v[i] if i < len(v) else "n/a")
    raw.append("| %d | " % (i + 1) + " | ".join(cells) + " |")
base_line = ("Base: `debootstrap --variant=minbase %s` from %s (%s), %s packages, one layer of %s "
             "(%s unpacked), made by `scripts/debian-base.sh` in %s s (cached afterwards)."
             % (base.get("SUITE"), base.get("MIRROR"), base.get("ARCH"), base.get("PACKAGES"),
                mb(float(base.get("LAYER_BYTES", 0))), mb(float(base.get("ROOTFS_BYTES", 0))),
                base.get("DEBOOTSTRAP_SECONDS")))
dockerfile = open(E["BENCH_DOCKERFILE"]).read()
notes = []
if failed:
    notes.append("regbuild could not build the Dockerfile: " + E["BENCH_REGBUILD_WHY"])
if E["BENCH_BUILDAH_OK"] != "yes":
    notes.append("buildah could not build the Dockerfile: " + E["BENCH_BUILDAH_WHY"])
if E["BENCH_ISOLATE"] != "yes":
    notes.append("no private mount namespace: buildah used the machine's blob-info cache.")

print("\n".join(table))
print()
print("Per run (seconds):")
print("\n".join(raw))
print()
print(base_line)
for n in notes:
    print("NOTE: " + n)
print("section run took %s s" % E["BENCH_TOTAL"])

if E.get("BENCH_NO_WRITE"):
    sys.exit(0)
section = ["## Latest run: RUN steps", ""]
if E.get("BENCH_NOTE"):
    section += ["**%s**" % E["BENCH_NOTE"], ""]
section += [
    "`BENCH_SECTIONS=\"%s\" bench/run.sh %s` (section `run`) on %s, regbuild commit %s; medians "
    "of %s run(s), peak RSS the maximum." % (E["BENCH_SECTIONS"], E["BENCH_RUNS"], E["BENCH_DATE"],
                                             E["BENCH_COMMIT"], E["BENCH_RUNS"]),
    "",
    "Machine: %s cores (`nproc`), %s (`free -g`), %s, kernel %s; load average %s."
    % (E["BENCH_NPROC"], E["BENCH_MEM"], E["BENCH_CPU"], E["BENCH_KERNEL"], E["BENCH_LOAD"]),
    "Tools: %s. The section took %s s." % (E["BENCH_VERSIONS"], E["BENCH_TOTAL"]),
    "",
    base_line,
    "",
    "```dockerfile",
    dockerfile.rstrip("\n"),
    "```",
    "",
] + table + ["", "Per run (seconds):", ""] + raw + [""]
for n in notes:
    section += ["Note: " + n, ""]
block = "<!-- latest-run-run:begin (written by bench/run.sh, section run) -->\n" + \
    "\n".join(section) + "<!-- latest-run-run:end -->\n"
path = sys.argv[2]
try:
    doc = open(path).read()
except FileNotFoundError:
    doc = "# Benchmarks\n\nSee `bench/run.sh`.\n\n"
pat = re.compile(r"<!-- latest-run-run:begin.*?<!-- latest-run-run:end -->\n?", re.S)
doc = pat.sub(lambda _: block, doc) if pat.search(doc) else doc.rstrip("\n") + "\n\n" + block
open(path, "w").write(doc)
print("wrote the Latest run: RUN steps section of %s" % path)
EOF
}

# --- section `push`: measurements 1 to 6 (data, runs, report); then section `run` --------
if ! want push; then
  if want run; then run_section; fi
  if want cache; then cache_section; fi
  exit 0
fi

# --- data ----------------------------------------------------------------------------------
cat >"$work/gen.py" <<'EOF'
# Deterministic test data: the same bytes for the same arguments, on any machine.
import os, random, sys

MTIME = 1600000000


def vocabulary():
    r = random.Random(7)
    letters = "abcdefghijklmnopqrstuvwxyz_"
    return ["".join(r.choice(letters) for _ in range(r.randint(2, 12))) for _ in range(5000)]


VOCAB = vocabulary()


def text(r, size):
    # Source-like text: indented lines of words from a 5000-word vocabulary (gzip ~3x).
    out, n = [], 0
    while n < size:
        line = "    " * r.randint(0, 3) + " ".join(r.choices(VOCAB, k=r.randint(3, 12))) + ";\n"
        out.append(line)
        n += len(line)
    return "".join(out).encode()[:size]


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def tree(root, seed, text_bytes, text_dir, bin_bytes, bin_dir, bin_file):
    r = random.Random(seed)
    n, i = 0, 0
    while n < text_bytes:
        size = min(r.randint(2 << 10, 98 << 10), text_bytes - n)
        write(os.path.join(root, text_dir, "pkg%02d" % (i % 20), "mod%d" % (i // 20 % 5),
                           "file_%04d.txt" % i), text(r, size))
        n += size
        i += 1
    n, j = 0, 0
    while n < bin_bytes:
        size = min(bin_file, bin_bytes - n)
        write(os.path.join(root, bin_dir, "blob_%03d.bin" % j), r.randbytes(size))
        n += size
        j += 1
    for d, dirs, files in os.walk(root, topdown=False):
        for name in files:
            os.utime(os.path.join(d, name), (MTIME, MTIME))
        os.utime(d, (MTIME, MTIME))
    return i, j


MiB = 1 << 20
what, root = sys.argv[1], sys.argv[2]
if what == "context":
    # ~140 MB: 100 MiB of text in ~2000 files over 100 directories, 40 MiB incompressible.
    t, b = tree(root, 1000, 100 * MiB, "src", 40 * MiB, "assets", 5 * MiB)
elif what == "layer":
    # Base layers: mostly incompressible (libraries), some text (docs).
    k = int(sys.argv[3])
    text_mib, bin_mib = {1: (20, 150), 2: (10, 80), 3: (10, 30)}[k]
    t, b = tree(root, 2000 + k, text_mib * MiB, "usr/share/doc/l%d" % k, bin_mib * MiB,
                "usr/lib/l%d" % k, 5 * MiB // 2)
else:
    sys.exit("gen.py context DIR | gen.py layer N DIR")
print("%s: %d text files, %d binary files" % (root, t, b))
EOF

log "generating the base (3 layers, ~300 MB) and pushing it to $reg/bench/base:1"
umoci init --layout "$work/oci" >/dev/null
umoci new --image "$work/oci:base" >/dev/null
# Fixed timestamps: the same base (digest) in every run, so images built on it compare
# across runs and commits.
for k in 1 2 3; do
  python3 "$work/gen.py" layer "$work/layer$k" "$k" >/dev/null
  umoci insert --history.created=2000-01-01T00:00:00Z --image "$work/oci:base" \
    "$work/layer$k/usr" /usr >/dev/null
  rm -rf "$work/layer$k"
done
umoci config --no-history --created=2000-01-01T00:00:00Z --image "$work/oci:base" >/dev/null
in_cache "$work/bic-setup" skopeo copy -q --dest-tls-verify=false \
  "oci:$work/oci:base" "docker://$reg/bench/base:1"
rm -rf "$work/oci"

log "generating the context (~140 MB)"
ctx=$work/ctx
python3 "$work/gen.py" context "$ctx" >/dev/null
# Outside the context so that the context's bytes do not depend on the registry's port.
dockerfile=$work/Dockerfile
printf 'FROM %s/bench/base:1\nCOPY . /app\n' "$reg" >"$dockerfile"
changed=$ctx/src/pkg00/mod0/file_0000.txt # the file the warm rebuild changes
cp -p "$changed" "$work/changed.orig"
ctx_bytes=$(du -sb "$ctx" | cut -f1)
ctx_files=$(find "$ctx" -type f | wc -l)

# --- the runs ------------------------------------------------------------------------------
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
for n in $(seq 1 "$runs"); do
  log "run $n/$runs"
  cache=$work/regbuild-cache-$n # a fresh regbuild layer cache: the cold push is cold
  mkdir -p "$cache"

  # 1. cold push
  timed floor "$ctx"
  record floor "$n" "$ELAPSED"
  regbuild_push "$n" "$cache" regbuild.cold
  buildah_build "$n" buildah.cold

  # 2. warm rebuild: one file changed (the same change every run)
  printf 'warm rebuild: one changed line;\n' >>"$changed"
  timed floor "$ctx"
  record floor.warm "$n" "$ELAPSED"
  regbuild_push "$n" "$cache" regbuild.warm
  buildah_build "$n" buildah.warm

  # 2b. the same warm rebuild with --layering=auto (its own repository and cache, first
  #     pushed cold from the unchanged context)
  cp -p "$work/changed.orig" "$changed"
  regbuild_push "$n" "$cache-auto" regbuild.auto.cold "bench/auto-$n" --layering=auto
  printf 'warm rebuild: one changed line;\n' >>"$changed"
  regbuild_push "$n" "$cache-auto" regbuild.auto.warm "bench/auto-$n" --layering=auto
  rm -rf "$cache-auto"

  # 3. no-op re-push
  before=$(log_lines)
  regbuild_push "$n" "$cache" regbuild.noop
  record regbuild.noop.uploads "$n" "$(count_puts "$before" "bench/regbuild-$n")"

  # 4. promote: regbuild vs skopeo (empty blob-info cache), then skopeo again with the cache
  #    that first copy filled (it now knows where the blobs are and mounts them)
  src=$reg/bench/regbuild-$n:1
  before=$(log_lines)
  out=$work/promote-$n
  if ! REGBUILD_CACHE=$cache XDG_CACHE_HOME=$cache/xdg timed "$regbuild" promote --no-progress --json "$src" "$reg/bench/promoted-$n:1" \
    >"$out.json" 2>"$out.err"; then
    cat "$out.err" >&2
    echo "regbuild promote failed (run $n)" >&2
    exit 1
  fi
  record regbuild.promote "$n" "$ELAPSED"
  record regbuild.promote.bytes "$n" "$(json_bytes "$out.json")"
  record regbuild.promote.puts "$n" "$(count_puts "$before" "bench/promoted-$n")"
  record regbuild.promote.mounts "$n" "$(count_mounts "$before" "bench/promoted-$n")"
  for v in cold warm; do
    before=$(log_lines)
    dst=bench/skopeo-$v-$n
    timed in_cache "$work/bic-skopeo-$n" skopeo copy -q --src-tls-verify=false \
      --dest-tls-verify=false "docker://$src" "docker://$reg/$dst:1"
    record "skopeo.$v" "$n" "$ELAPSED"
    record "skopeo.$v.puts" "$n" "$(count_puts "$before" "$dst")"
    record "skopeo.$v.mounts" "$n" "$(count_mounts "$before" "$dst")"
    record "skopeo.$v.getbytes" "$n" "$(get_bytes "$before")"
  done

  cp -p "$work/changed.orig" "$changed"
  rm -rf "$work/buildah-$n" "$cache" "$work/bic-$n" "$work/bic-skopeo-$n"
done

# 6. cold push over a slower link: loopback shaped to 400 Mbit/s (tc tbf), regbuild streaming
#    new layers while it packs (default) vs --no-stream-upload (pack, HEAD, then upload).
shaped=no
net_why=
if ! command -v tc >/dev/null; then
  net_why="tc (iproute2) is not installed"
elif [[ -n $(tc qdisc show dev lo | grep -v 'noqueue') ]]; then
  net_why="lo already has a qdisc; not touching it"
elif ! tc qdisc add dev lo root tbf rate 400mbit burst 512kb latency 100ms 2>/dev/null; then
  net_why="cannot shape lo (tc qdisc add failed: needs root and sch_tbf)"
else
  shaped=yes
  log "loopback shaped to 400 Mbit/s"
  for n in $(seq 1 "$runs"); do
    regbuild_push "$n" "$work/net-cache-$n" regbuild.net.stream "bench/net-stream-$n"
    regbuild_push "$n" "$work/net-cache-nostream-$n" regbuild.net.nostream \
      "bench/net-nostream-$n" --no-stream-upload
    rm -rf "$work/net-cache-$n" "$work/net-cache-nostream-$n"
  done
  tc qdisc del dev lo root
  shaped=no
fi
[[ -n $net_why ]] && log "WARNING: skipping the shaped-link measurement: $net_why"

# 5. peak RSS for a 2 GiB layer (its own registry and data; once: it is a maximum, not a time)
log "bench/peak_rss.sh (2 GiB layer)"
# A layer cache of its own (not ~/.cache/regbuild): cold, and removed with the work directory.
rss_out=$(REGBUILD_CACHE=$work/rss-cache XDG_CACHE_HOME=$work/rss-cache bench/peak_rss.sh 2048)
echo "$rss_out" >&2
rss_kb=$(sed -n 's/.*peak RSS: [0-9]* MiB (\([0-9]*\) kB).*/\1/p' <<<"$rss_out" | head -n1)
[[ -n $rss_kb ]] || { echo "could not read peak_rss.sh's output" >&2; exit 1; }
record rss_kb 1 "$rss_kb"

# --- report --------------------------------------------------------------------------------
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
script_t1=$(date +%s.%N)
total=$(awk -v a="$script_t0" -v b="$script_t1" 'BEGIN { printf "%d", b - a }')
commit=$(git -C "$repo" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
if [[ $commit != unknown && -n $(git -C "$repo" --no-optional-locks status --porcelain -uno 2>/dev/null) ]]; then
  commit="$commit (with uncommitted changes)"
fi
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)
mem=$(free -g | awk '/^Mem:/ { print $2 " GiB total, " $7 " GiB available" }')
versions="regbuild $("$regbuild" --version 2>/dev/null | awk '{print $NF}')"
versions+="; buildah $(buildah --version | awk '{print $3}')"
versions+="; skopeo $(skopeo --version | awk '{print $3}')"
versions+="; $(pigz --version 2>&1)"
versions+="; docker-registry $(dpkg-query -W -f '${Version}' docker-registry 2>/dev/null || echo '?')"

BENCH_RUNS=$runs BENCH_TOTAL=$total BENCH_COMMIT=$commit BENCH_CPU=$cpu BENCH_MEM=$mem \
  BENCH_NPROC=$(nproc) BENCH_KERNEL=$(uname -r) BENCH_DATE=$(date -u '+%Y-%m-%d %H:%M UTC') \
  BENCH_VERSIONS=$versions BENCH_BUILDAH_OK=$buildah_ok BENCH_BUILDAH_WHY=$buildah_why \
  BENCH_NET_WHY=$net_why BENCH_ISOLATE=$isolate BENCH_LOAD="$load_before before the runs, $load_after after" \
  BENCH_CTX="$ctx_bytes bytes in $ctx_files files" BENCH_DIGESTS="$work/digests" \
  python3 - "$results" "$repo/BENCHMARKS.md" <<'EOF'
import os, re, statistics, sys
from collections import defaultdict

E = os.environ
vals = defaultdict(list)
for line in open(sys.argv[1]):
    k, n, v = line.rstrip("\n").split("\t")
    vals[k].append(float(v))


def med(k):
    return statistics.median(vals[k]) if vals.get(k) else None


def s(x):
    return "n/a" if x is None else "%.2f s" % x


def ratio(a, b):
    return None if a is None or b is None or b == 0 else a / b


def r(x):
    return "n/a" if x is None else "%.2f×" % x


def mb(x):
    return "n/a" if x is None else ("0 B" if x == 0 else "%.1f MB" % (x / 1e6))


def verdict(ok):
    return "n/a" if ok is None else ("PASS" if ok else "FAIL")


def cnt(k):
    v = med(k)
    return "n/a" if v is None else "%g" % v


rc, bc, fl = med("regbuild.cold"), med("buildah.cold"), med("floor")
rw, bw, flw = med("regbuild.warm"), med("buildah.warm"), med("floor.warm")
rn, rnb = med("regbuild.noop"), med("regbuild.noop.bytes")
rp, rpb = med("regbuild.promote"), med("regbuild.promote.bytes")
sc, sw = med("skopeo.cold"), med("skopeo.warm")
rss = max(vals["rss_kb"]) / 1024 if vals.get("rss_kb") else None

rows = []
q = ratio(rc, bc)
rows.append(("1. cold push vs buildah", s(rc), "buildah bud+push %s" % s(bc), r(q), "≤ 0.15×",
             verdict(None if q is None else q <= 0.15)))
q = ratio(rc, fl)
rows.append(("1. cold push vs floor", s(rc), "floor %s" % s(fl), r(q), "≤ 1.3×",
             verdict(None if q is None else q <= 1.3)))
q = ratio(rw, bw)
rows.append(("2. warm rebuild (1 file changed)", s(rw), "buildah bud+push %s" % s(bw), r(q),
             "—", "—"))
rows.append(("2. warm rebuild vs floor", s(rw), "floor %s" % s(flw),
             r(ratio(rw, flw)), "—", "—"))
ra, rab = med("regbuild.auto.warm"), med("regbuild.auto.warm.bytes")
rows.append(("2b. warm rebuild, `--layering=auto`", "%s, %s uploaded" % (s(ra), mb(rab)),
             "`single` (default) %s, %s uploaded" % (s(rw), mb(med("regbuild.warm.bytes"))),
             r(ratio(ra, rw)), "—", "—"))
rows.append(("2b. cold push, `--layering=auto`", s(med("regbuild.auto.cold")),
             "`single` %s" % s(rc), r(ratio(med("regbuild.auto.cold"), rc)), "—", "—"))
rows.append(("3. no-op re-push", "%s, %s uploaded" % (s(rn), mb(rnb)), "—", "—",
             "< 0.3 s, 0 B", verdict(None if rn is None else rn < 0.3 and rnb == 0)))
q = ratio(rp, sc)
rows.append(("4. promote vs skopeo copy", "%s, %s uploaded" % (s(rp), mb(rpb)),
             "skopeo %s (blob PUTs: %s, blob bytes read: %s)" % (s(sc), cnt("skopeo.cold.puts"),
                                                   mb(med("skopeo.cold.getbytes"))),
             r(q), "≤ 1×, 0 B", verdict(None if q is None else q <= 1 and rpb == 0)))
q = ratio(rp, sw)
rows.append(("4. promote vs skopeo copy, warm blob-info cache", "%s, %s uploaded" % (s(rp), mb(rpb)),
             "skopeo %s (blob PUTs: %s, mounts: %s)" % (s(sw), cnt("skopeo.warm.puts"),
                                                     cnt("skopeo.warm.mounts")),
             r(q), "≤ 1×, 0 B", verdict(None if q is None else q <= 1 and rpb == 0)))
q = ratio(med("regbuild.net.stream"), med("regbuild.net.nostream"))
rows.append(("6. cold push over 400 Mbit/s, streamed while packing",
             s(med("regbuild.net.stream")),
             "`--no-stream-upload` %s" % s(med("regbuild.net.nostream")), r(q), "—", "—"))
rows.append(("5. peak RSS, 2 GiB layer", "n/a" if rss is None else "%.0f MiB" % rss, "—", "—",
             "< 100 MiB", verdict(None if rss is None else rss < 100)))

runs = E["BENCH_RUNS"]
hdr = ["measurement", "regbuild", "compared with", "ratio", "target", "result"]
table = ["| " + " | ".join(hdr) + " |", "|" + "|".join("---" for _ in hdr) + "|"]
table += ["| " + " | ".join(row) + " |" for row in rows]

raw_keys = [("floor", "floor, cold context"), ("regbuild.cold", "regbuild cold push"),
            ("buildah.cold", "buildah cold bud+push"), ("floor.warm", "floor, changed context"),
            ("regbuild.warm", "regbuild warm push"), ("buildah.warm", "buildah warm bud+push"),
            ("regbuild.auto.cold", "regbuild cold, auto layering"),
            ("regbuild.auto.warm", "regbuild warm, auto layering"),
            ("regbuild.net.stream", "regbuild cold, 400 Mbit/s"),
            ("regbuild.net.nostream", "regbuild cold, 400 Mbit/s, no streaming"),
            ("regbuild.noop", "regbuild no-op push"), ("regbuild.promote", "regbuild promote"),
            ("skopeo.cold", "skopeo copy, empty cache"), ("skopeo.warm", "skopeo copy, warm cache")]
raw = ["| run | " + " | ".join(label for _, label in raw_keys) + " |",
       "|---|" + "|".join("---" for _ in raw_keys) + "|"]
for i in range(int(runs)):
    cells = []
    for k, _ in raw_keys:
        v = vals.get(k, [])
        cells.append("%.2f" % v[i] if i < len(v) else "n/a")
    raw.append("| %d | " % (i + 1) + " | ".join(cells) + " |")
bytes_line = ("regbuild bytes uploaded (`bytes_uploaded`, medians): cold %s, warm %s, no-op %s, "
              "promote %s. Registry access log: no-op push %s blob upload PUTs; promote %s blob "
              "PUTs, %s mounts. Floor = `tar -C ctx -cf - . | pigz -p2 -6 | sha256sum`."
              % (mb(med("regbuild.cold.bytes")), mb(med("regbuild.warm.bytes")), mb(rnb), mb(rpb),
                 cnt("regbuild.noop.uploads"), cnt("regbuild.promote.puts"),
                 cnt("regbuild.promote.mounts")))

# Every run pushes the same inputs: one digest per measurement, identical across commits.
digests = defaultdict(set)
for line in open(E["BENCH_DIGESTS"]):
    k, d = line.split()
    digests[k].add(d)
digest_line = "Image digests (the same inputs give the same image on every run and commit): " + \
    "; ".join("%s %s" % (k, ", ".join(sorted(v))) for k, v in sorted(digests.items()))

notes = []
if E.get("BENCH_NET_WHY"):
    notes.append("no shaped-link measurement: " + E["BENCH_NET_WHY"])
if E["BENCH_BUILDAH_OK"] != "yes":
    notes.append("buildah could not run: " + E["BENCH_BUILDAH_WHY"])
if E["BENCH_ISOLATE"] != "yes":
    notes.append("no private mount namespace: buildah and skopeo used the machine's blob-info "
                 "cache, so runs after the first may be warmer than cold.")

print("\n".join(table))
print(digest_line)
print()
print("Per run (seconds):")
print("\n".join(raw))
print()
print(bytes_line)
for n in notes:
    print("NOTE: " + n)
print("load average (1, 5, 15 min): %s" % E["BENCH_LOAD"])
print("total time of bench/run.sh: %s s" % E["BENCH_TOTAL"])

path = sys.argv[2]
if E.get("BENCH_NO_WRITE"):
    sys.exit(0)
section = ["## Latest run", ""]
if E.get("BENCH_NOTE"):
    section += ["**%s**" % E["BENCH_NOTE"], ""]
section += [
    "`bench/run.sh %s` on %s, regbuild commit %s; medians of %s run(s), peak RSS the maximum."
    % (runs, E["BENCH_DATE"], E["BENCH_COMMIT"], runs),
    "",
    "Machine: %s cores (`nproc`), %s (`free -g`), %s, kernel %s; load average %s."
    % (E["BENCH_NPROC"], E["BENCH_MEM"], E["BENCH_CPU"], E["BENCH_KERNEL"], E["BENCH_LOAD"]),
    "Tools: %s. Context: %s. The whole script took %s s."
    % (E["BENCH_VERSIONS"], E["BENCH_CTX"], E["BENCH_TOTAL"]),
    "",
] + table + ["", "Per run (seconds):", ""] + raw + ["", bytes_line, "", digest_line, ""]
for n in notes:
    section += ["Note: " + n, ""]
block = "<!-- latest-run:begin (written by bench/run.sh) -->\n" + "\n".join(section) + \
    "<!-- latest-run:end -->\n"
try:
    doc = open(path).read()
except FileNotFoundError:
    doc = "# Benchmarks\n\nSee `bench/run.sh`.\n\n"
pat = re.compile(r"<!-- latest-run:begin.*?<!-- latest-run:end -->\n?", re.S)
doc = pat.sub(lambda _: block, doc) if pat.search(doc) else doc.rstrip("\n") + "\n\n" + block
open(path, "w").write(doc)
print("wrote the Latest run section of %s" % path)
EOF

if want run; then
  run_section
fi
if want cache; then
  cache_section
fi

# shellcheck shell=bash
# Section `cache` of bench/run.sh (sourced by it; uses its helpers: log, timed, in_cache,
# log_lines, log_since, get_bytes, count_puts, json_bytes, rm_unmounted, reg, work, runs).
#
# The registry as the cache of ephemeral CI runners: a multi-stage Go build (the Go toolchain
# from Debian's packages, three modules vendored in the context) over the Debian base of
# section `run`, per run N:
#   C1. cold: regbuild (empty cache, `--registry-cache max`: builder stages stored too) vs
#       `buildah bud --layers --cache-to REPO` (empty storage);
#   C2. fresh runner, nothing changed: regbuild with a new empty cache (it reads the pushed
#       tag's build cache artifact) vs buildah with new empty storage and `--cache-from REPO`;
#   C3. fresh runner after a one-line change of main.go: regbuild (`--cache-from` the first
#       tag) vs buildah (`--cache-from REPO`), both with empty local state.
# Targets: C2 at most 0.1× buildah's cold time with no step executed, no base layer
# downloaded and 0 bytes uploaded; C3 executes only the step after the change.
# Rewrites the "Latest run: registry cache" section of BENCHMARKS.md.

cache_results=$work/cache-results.tsv
cache_record() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"$cache_results"; }

# cache_regbuild N NAME TAG [ARGS...]: regbuild push with a new empty cache, recorded as NAME:
# wall time, bytes uploaded, base layer GETs, executed RUN steps (their instructions too).
cache_regbuild_ok=yes
cache_regbuild_why=
cache_regbuild() {
  local n=$1 name=$2 tag=$3 out=$work/$2-$1 before cache=$work/cache-regbuild-$2-$1
  shift 3
  [[ $cache_regbuild_ok == yes ]] || return 0
  rm -rf "$cache"
  mkdir -p "$cache"
  before=$(log_lines)
  if REGBUILD_CACHE=$cache timed "$regbuild" -v push --no-progress --json --registry-cache max "$@" \
    -f "$cache_dockerfile" -t "$tag" "$cache_ctx" >"$out.json" 2>"$out.err"; then
    cache_record "$name" "$n" "$ELAPSED"
    cache_record "$name.bytes" "$n" "$(json_bytes "$out.json")"
    cache_record "$name.got" "$n" "$(get_bytes "$before")"
    cache_record "$name.base_got" "$n" "$(log_since "$before" |
      grep -cF "\"GET /v2/bench/debian/blobs/$cache_base_layer HTTP/1.1\" 200 " || true)"
    python3 - "$out.json" >"$out.executed" <<'EOF'
import json, sys
text = open(sys.argv[1]).read().strip()
try:
    doc = json.loads(text)
except ValueError:
    doc = json.loads(text.splitlines()[-1])
for s in doc.get("steps", []):
    if s["status"] == "executed":
        print(s["instruction"])
EOF
    cache_record "$name.executed" "$n" "$(wc -l <"$out.executed")"
    cp "$out.executed" "$work/$name.executed"
    log "run $n: $name ${ELAPSED} s"
  else
    cache_regbuild_ok=no
    cache_regbuild_why="$name (run $n) failed: $(grep -v '^\s*$' "$out.err" | tail -n 3 | tr '\n' ' ')"
    log "WARNING: regbuild cannot build the Go Dockerfile: $cache_regbuild_why"
  fi
  rm -rf "$cache"
}

# cache_buildah N NAME TAG: buildah bud --layers with new empty storage, its layer cache
# pushed to and read from bench/go-buildah-cache-N, then buildah push; recorded as NAME.
cache_buildah_ok=yes
cache_buildah_why=
cache_buildah() {
  local n=$1 name=$2 tag=$3 out=$work/$2-$1 store=$work/cache-buildah-$2-$1
  local b=(buildah --root "$store/root" --runroot "$store/runroot" --storage-driver overlay)
  [[ $cache_buildah_ok == yes ]] || return 0
  # shellcheck disable=SC2016
  if timed in_cache "$work/bic-cache-$2-$n" bash -c '
      b=("${@:5}")
      "${b[@]}" bud --layers --isolation chroot --tls-verify=false \
        --cache-to "$3" --cache-from "$3" -t go-img -f "$1" "$2" &&
      "${b[@]}" push --tls-verify=false go-img "docker://$4"
    ' _ "$cache_dockerfile" "$cache_ctx" "$reg/bench/go-buildah-cache-$n" "$tag" "${b[@]}" \
    >"$out.log" 2>&1; then
    cache_record "$name" "$n" "$ELAPSED"
    log "run $n: $name ${ELAPSED} s"
  else
    cache_buildah_ok=no
    cache_buildah_why="$name (run $n) failed: $(grep -v '^\s*$' "$out.log" | tail -n 3 | tr '\n' ' ')"
    log "WARNING: buildah cannot build the Go Dockerfile here: $cache_buildah_why"
  fi
  # Its storage goes with the runner (as on CI).
  rm_unmounted "$store"
}

# The Go program and its three vendored modules (fixed contents and mtimes).
cache_context() {
  local ctx=$1 m
  mkdir -p "$ctx"
  cat >"$ctx/go.mod" <<'EOF'
module bench.example/app

go 1.19

require (
	example.com/greet v1.0.0
	example.com/shout v1.2.0
	example.com/count v0.3.1
)
EOF
  {
    for m in greet:v1.0.0 shout:v1.2.0 count:v0.3.1; do
      printf '# example.com/%s %s\n## explicit\nexample.com/%s\n' "${m%%:*}" "${m#*:}" "${m%%:*}"
    done
  } >"$ctx/vendor-modules.txt"
  mkdir -p "$ctx/vendor/example.com"/{greet,shout,count}
  mv "$ctx/vendor-modules.txt" "$ctx/vendor/modules.txt"
  cat >"$ctx/vendor/example.com/greet/greet.go" <<'EOF'
package greet

import "fmt"

// Hello greets name.
func Hello(name string) string { return fmt.Sprintf("hello, %s", name) }
EOF
  cat >"$ctx/vendor/example.com/shout/shout.go" <<'EOF'
package shout

import "strings"

// Loud upper-cases s.
func Loud(s string) string { return strings.ToUpper(s) + "!" }
EOF
  cat >"$ctx/vendor/example.com/count/count.go" <<'EOF'
package count

import "unicode/utf8"

// Runes counts the runes of s.
func Runes(s string) int { return utf8.RuneCountInString(s) }
EOF
  cat >"$ctx/main.go" <<'EOF'
package main

import (
	"fmt"

	"example.com/count"
	"example.com/greet"
	"example.com/shout"
)

func main() {
	msg := greet.Hello("bench")
	fmt.Println(shout.Loud(msg), count.Runes(msg))
}
EOF
  find "$ctx" -exec touch -h -d @1600000000 {} +
}

cache_section() {
  local base n t0 t1
  t0=$(date +%s.%N)
  : >"$cache_results"
  log "section cache: the Debian base (scripts/debian-base.sh: debootstraps once, then cached)"
  base=$(scripts/debian-base.sh | tail -n1)
  local from=$reg/bench/debian:$(sed -n 's/^SUITE=//p' "$base/base.env")
  cache_base_layer=$(sed -n 's/^LAYER_DIGEST=//p' "$base/base.env")
  in_cache "$work/bic-cache-setup" skopeo copy -q --dest-tls-verify=false \
    "oci:$base/oci:base" "docker://$from"
  cache_ctx=$work/cache-ctx
  cache_context "$cache_ctx"
  cp -p "$cache_ctx/main.go" "$work/main.go.orig"
  cache_dockerfile=$work/cache.Dockerfile
  cat >"$cache_dockerfile" <<EOF
FROM $from AS build
ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update && apt-get install -y --no-install-recommends golang-go && rm -rf /var/lib/apt/lists/*
ENV GOFLAGS=-mod=vendor GOPROXY=off CGO_ENABLED=0
WORKDIR /src
COPY go.mod ./
COPY vendor/ vendor/
RUN go build example.com/greet example.com/shout example.com/count
COPY main.go ./
RUN go build -trimpath -o /out/app .
FROM $from
COPY --from=build /out/app /usr/local/bin/app
CMD ["app"]
EOF
  for n in $(seq 1 "$runs"); do
    log "section cache: run $n/$runs"
    local one=$reg/bench/go-regbuild-$n:1 two=$reg/bench/go-regbuild-$n:2
    local bone=$reg/bench/go-buildah-$n:1 btwo=$reg/bench/go-buildah-$n:2
    # C1. cold
    cache_regbuild "$n" cache.regbuild.cold "$one"
    cache_buildah "$n" cache.buildah.cold "$bone"
    # C2. fresh runner, nothing changed (regbuild reads the tag it pushes)
    cache_regbuild "$n" cache.regbuild.fresh "$one"
    cache_buildah "$n" cache.buildah.fresh "$bone"
    # C3. fresh runner, one line of main.go changed
    sed -i 's/greet.Hello("bench")/greet.Hello("bench, changed")/' "$cache_ctx/main.go"
    cache_regbuild "$n" cache.regbuild.changed "$two" --cache-from "$one"
    cache_buildah "$n" cache.buildah.changed "$btwo"
    cp -p "$work/main.go.orig" "$cache_ctx/main.go"
  done
  t1=$(date +%s.%N)
  BENCH_RUNS=$runs BENCH_TOTAL=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%d", b - a }') \
    BENCH_DATE=$(date -u '+%Y-%m-%d %H:%M UTC') \
    BENCH_COMMIT=$(git -C "$repo" rev-parse --short=12 HEAD 2>/dev/null || echo unknown) \
    BENCH_NPROC=$(nproc) BENCH_LOAD="$(cut -d' ' -f1-3 /proc/loadavg) at the end" \
    BENCH_REGBUILD_OK=$cache_regbuild_ok BENCH_REGBUILD_WHY=$cache_regbuild_why \
    BENCH_BUILDAH_OK=$cache_buildah_ok BENCH_BUILDAH_WHY=$cache_buildah_why \
    BENCH_DOCKERFILE=$cache_dockerfile BENCH_CHANGED=$work/cache.regbuild.changed.executed \
    python3 - "$cache_results" "$repo/BENCHMARKS.md" <<'EOF'
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


def mb(x):
    return "n/a" if x is None else ("0 B" if x == 0 else "%.1f MB" % (x / 1e6))


def r(a, b):
    return "n/a" if a is None or b is None or b == 0 else "%.2f×" % (a / b)


def reg(k):
    if med(k) is None:
        return "FAILED (see note)"
    return "%s; %g RUN step(s) executed, %s uploaded, %s downloaded (base layer GETs: %g)" % (
        s(med(k)), med(k + ".executed"), mb(med(k + ".bytes")), mb(med(k + ".got")),
        med(k + ".base_got"))


def bud(k):
    return "FAILED (see note)" if med(k) is None else s(med(k))


bc = med("cache.buildah.cold")
rf, rc = med("cache.regbuild.fresh"), med("cache.regbuild.changed")
changed = open(E["BENCH_CHANGED"]).read().split("\n") if os.path.exists(E["BENCH_CHANGED"]) else []
changed = [c for c in changed if c]
rows = [
    ("C1. cold (empty cache, empty storage)", reg("cache.regbuild.cold"),
     bud("cache.buildah.cold"), r(med("cache.regbuild.cold"), bc)),
    ("C2. fresh runner, nothing changed", reg("cache.regbuild.fresh"),
     bud("cache.buildah.fresh"), r(rf, med("cache.buildah.fresh"))),
    ("C3. fresh runner, one line of main.go changed", reg("cache.regbuild.changed"),
     bud("cache.buildah.changed"), r(rc, med("cache.buildah.changed"))),
]
checks = [
    ("fresh runner unchanged at most 0.1× buildah cold, nothing executed, no base layer "
     "downloaded, 0 bytes uploaded",
     rf is not None and bool(bc) and rf / bc <= 0.1 and med("cache.regbuild.fresh.executed") == 0
     and med("cache.regbuild.fresh.bytes") == 0 and med("cache.regbuild.fresh.base_got") == 0),
    ("fresh runner after the change executes only the step after it (`RUN go build -trimpath …`)",
     len(changed) == 1 and changed[0].startswith("RUN go build -trimpath")),
]
rows += [("target: " + t, "PASS" if ok else "FAIL", "", "") for t, ok in checks]
hdr = ["measurement", "regbuild (empty cache each time)",
       "buildah bud --layers --cache-to/--cache-from (empty storage each time)", "ratio"]
table = ["| " + " | ".join(hdr) + " |", "|" + "|".join("---" for _ in hdr) + "|"]
table += ["| " + " | ".join(row) + " |" for row in rows]
notes = []
if E["BENCH_REGBUILD_OK"] != "yes":
    notes.append("regbuild failed: " + E["BENCH_REGBUILD_WHY"])
if E["BENCH_BUILDAH_OK"] != "yes":
    notes.append("buildah failed: " + E["BENCH_BUILDAH_WHY"])
print("\n".join(table))
for n in notes:
    print("NOTE: " + n)
print("section cache took %s s" % E["BENCH_TOTAL"])
if E.get("BENCH_NO_WRITE"):
    sys.exit(0)
section = ["## Latest run: registry cache", ""]
if E.get("BENCH_NOTE"):
    section += ["**%s**" % E["BENCH_NOTE"], ""]
section += [
    "`BENCH_SECTIONS=cache bench/run.sh %s` on %s, regbuild commit %s, %s cores; medians of %s "
    "run(s); load average %s. The section took %s s." % (
        E["BENCH_RUNS"], E["BENCH_DATE"], E["BENCH_COMMIT"], E["BENCH_NPROC"], E["BENCH_RUNS"],
        E["BENCH_LOAD"], E["BENCH_TOTAL"]),
    "",
    "Every build starts with an empty local cache (regbuild, `--registry-cache max`) or empty "
    "storage (buildah), as an ephemeral CI runner does; regbuild finds the previous build in the registry through "
    "the tag it pushes (C3: `--cache-from` the first tag), buildah through `--cache-from` "
    "the repository its `--cache-to` filled.",
    "",
    "```dockerfile",
    open(E["BENCH_DOCKERFILE"]).read().rstrip("\n"),
    "```",
    "",
] + table + [""]
if changed:
    section += ["Executed by regbuild in C3 (last run): " + "; ".join("`%s`" % c for c in changed), ""]
for n in notes:
    section += ["Note: " + n, ""]
block = "<!-- latest-run-cache:begin (written by bench/run.sh, section cache) -->\n" + \
    "\n".join(section) + "<!-- latest-run-cache:end -->\n"
path = sys.argv[2]
doc = open(path).read()
pat = re.compile(r"<!-- latest-run-cache:begin.*?<!-- latest-run-cache:end -->\n?", re.S)
doc = pat.sub(lambda _: block, doc) if pat.search(doc) else doc.rstrip("\n") + "\n\n" + block
open(path, "w").write(doc)
print("wrote the Latest run: registry cache section of %s" % path)
EOF
}

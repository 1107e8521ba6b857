#!/usr/bin/env bash
# Fuzz regbuild's parsers and tar sanitiser: scripts/fuzz.sh [SECONDS_PER_TARGET] (default 20).
#
# Installs cargo-fuzz if it is missing, builds the targets in fuzz/ once, then runs each one for
# SECONDS_PER_TARGET seconds over its seed corpus (fuzz/corpus/<target>/, read only: new inputs
# go to a scratch directory). Exits non-zero if any target crashes, hangs (-timeout) or runs out
# of memory; the input is saved under fuzz/artifacts/<target>/ and printed (base64) in the log.
#
# Only a stable toolchain is needed: cargo-fuzz passes nightly-only flags (-Cpasses=sancov-module,
# -Zsanitizer=address...), and RUSTC_BOOTSTRAP=1 makes stable rustc accept them.
#
# No sanitizer by default: regbuild has no unsafe code, so AddressSanitizer would only watch the
# dependencies, while it makes the cold build ~20% and every run 4-6x slower. Panics, arithmetic
# overflow (cargo-fuzz turns debug assertions on), hangs and runaway memory are caught either way.
#
# Environment:
#   FUZZ_SANITIZER   none (default) or address (works on stable too)
#   FUZZ_TARGET_DIR  build directory (default fuzz/target); point it somewhere that survives
#                    between runs to skip the first build (~4 minutes on two cores)
#   FUZZ_TARGETS     space-separated subset of targets to run (default: all)
set -euo pipefail
cd "$(dirname "$0")/.."

secs=${1:-20}
if ! [[ $secs =~ ^[0-9]+$ ]] || [ "$secs" -lt 1 ]; then
  echo "usage: $0 [SECONDS_PER_TARGET]" >&2
  exit 2
fi
read -r -a targets <<<"${FUZZ_TARGETS:-dockerfile reference www_authenticate tar_sanitiser}"

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "== installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

export RUSTC_BOOTSTRAP=1
build_args=(--sanitizer "${FUZZ_SANITIZER:-none}")
if [ -n "${FUZZ_TARGET_DIR:-}" ]; then
  build_args+=(--target-dir "$FUZZ_TARGET_DIR")
fi

start=$SECONDS
echo "== building fuzz targets (${build_args[*]})"
cargo fuzz build "${build_args[@]}"
echo "== built in $((SECONDS - start))s"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# libFuzzer ends with exit(), so scratch directories the targets make (tar_sanitiser's) are
# never dropped: make them under $work.
mkdir -p "$work/tmp"

failed=()
for target in "${targets[@]}"; do
  mkdir -p "$work/corpus/$target" "fuzz/artifacts/$target"
  log="$work/$target.log"
  echo "== fuzzing $target for ${secs}s"
  # The first corpus directory receives new inputs; the seeds are only read.
  # -timeout: one input taking longer is a hang; -rss_limit_mb: libFuzzer's default, explicit.
  if TMPDIR="$work/tmp" cargo fuzz run "${build_args[@]}" "$target" "$work/corpus/$target" "fuzz/corpus/$target" -- \
    -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1; then
    grep -E '^Done [0-9]+ runs' "$log" || true
  else
    failed+=("$target")
    echo "!! $target failed; the end of its log:"
    tail -n 80 "$log"
    for unit in $(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log"); do
      [ -f "$unit" ] || continue
      echo "!! input $unit (base64):"
      base64 "$unit" | head -c 20000
      echo
    done
  fi
done

echo "== fuzzing took $((SECONDS - start))s in total"
if [ "${#failed[@]}" -gt 0 ]; then
  echo "fuzz targets failed: ${failed[*]}" >&2
  echo "reproduce with: RUSTC_BOOTSTRAP=1 cargo fuzz run ${build_args[*]} TARGET fuzz/artifacts/TARGET/<file>" >&2
  exit 1
fi
echo "all ${#targets[@]} fuzz targets ran clean"

#!/usr/bin/env bash
# Builds the libFuzzer targets of tests/fuzz/ with clang (ASan + UBSan) into build-fuzz/ and fuzzes each
# for a while, growing its corpus tests/fuzz/corpus/<target>/ (see tests/fuzz/README.md).
#   scripts/fuzz.sh [SECONDS | -runs=N] [TARGET...]
#     SECONDS   fuzz each target this long (default 60) in libFuzzer's fork mode, which carries on past
#               crashes, timeouts and out-of-memory inputs and keeps each as an artifact
#     -runs=N   run each target for N inputs in one process instead; it stops at the first finding
#     TARGET    units objective input_spec broden decode npy upconv_decoder (default: all)
# Environment: CNNVIZ_FUZZ_BUILD (default build-fuzz/), CNNVIZ_FUZZ_JOBS (ninja's -j, default 1),
# CNNVIZ_FUZZ_ARGS (more libFuzzer flags, e.g. "-max_len=4096").
# Per target it prints the executions, exec/s, corpus size and findings; findings (crash-*, timeout-*,
# oom-*, leak-*) stay in build-fuzz/runs/<target>/artifacts/ -- file the real ones under
# tests/fuzz/crashes/<target>/ and describe them in tests/fuzz/crashes/README.md. Exits 1 when any
# target had a finding.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${CNNVIZ_FUZZ_BUILD:-$root/build-fuzz}
jobs=${CNNVIZ_FUZZ_JOBS:-1}
all_targets=(units objective input_spec broden decode npy upconv_decoder)

budget=60
if [ $# -gt 0 ] && [[ $1 =~ ^[0-9]+$ || $1 =~ ^-runs=[0-9]+$ ]]; then
  budget=$1
  shift
fi
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${all_targets[@]}")
for target in "${targets[@]}"; do
  [[ " ${all_targets[*]} " == *" $target "* ]] || { echo "fuzz.sh: unknown target '$target' (${all_targets[*]})" >&2; exit 2; }
done

if [ ! -f "$build/build.ninja" ]; then
  CXX=${CXX:-clang++} cmake -S "$root/tests/fuzz" -B "$build" -G Ninja >/dev/null
fi
ninja -C "$build" -j"$jobs" "${targets[@]/%/_fuzz}" >/dev/null

# LibTorch and OpenMP on one thread: the machine is shared, and the fuzzer wants determinism.
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

status=0
printf '%-16s %12s %8s %8s  %s\n' target executions exec/s corpus findings
for target in "${targets[@]}"; do
  corpus=$root/tests/fuzz/corpus/$target
  run=$build/runs/$target
  rm -rf "$run/new"
  mkdir -p "$corpus" "$run/new" "$run/artifacts"
  rm -f "$run/artifacts"/*
  binary=$build/${target}_fuzz
  common=(-timeout=10 -rss_limit_mb=2048 -artifact_prefix="$run/artifacts/" ${CNNVIZ_FUZZ_ARGS:-})
  # New inputs go to run/new (the first folder); the checked-in corpus is read only, then merged into.
  start=$(date +%s)
  if [[ $budget == -runs=* ]]; then
    "$binary" "${common[@]}" "$budget" -print_final_stats=1 "$run/new" "$corpus" >"$run/log" 2>&1 || true
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$run/log" | tail -1)
  else
    "$binary" "${common[@]}" -fork=1 -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1 \
      -max_total_time="$budget" "$run/new" "$corpus" >"$run/log" 2>&1 || true
    execs=$(sed -n 's/^#\([0-9]*\): cov.*/\1/p' "$run/log" | tail -1)
  fi
  seconds=$(( $(date +%s) - start ))
  "$binary" -merge=1 -timeout=10 -rss_limit_mb=2048 -artifact_prefix="$run/artifacts/merge-" \
    "$corpus" "$run/new" >"$run/merge.log" 2>&1 || true
  findings=$(find "$run/artifacts" -type f \( -name 'crash-*' -o -name 'timeout-*' -o -name 'oom-*' -o -name 'leak-*' \
                                              -o -name 'slow-unit-*' \) | wc -l)
  [ "$findings" -eq 0 ] || status=1
  printf '%-16s %12s %8s %8s  %s\n' "$target" "${execs:-?}" "$(( ${execs:-0} / (seconds > 0 ? seconds : 1) ))" \
    "$(find "$corpus" -type f | wc -l)" \
    "$([ "$findings" -eq 0 ] && echo none || echo "$findings in $run/artifacts/ (log: $run/log)")"
done
exit $status

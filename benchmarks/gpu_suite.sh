#!/usr/bin/env bash
# On a GPU machine: build and install, run the test suite on the GPU, run compute-sanitizer over the
# adversarial-index and NaN-poison tests (memcheck) and a 16-, a 64- and a 128-head case (racecheck, synccheck), then both
# benchmarks. Logs and results go to ${OUT:-bench_out}.
# Stages: STAGES="build test sanitize bench" (default: all). An installed flash_mla package is raced alongside.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
out=${OUT:-bench_out}
mkdir -p "$out"
stages=${STAGES:-build test sanitize bench}
status=0
run() {  # run NAME CMD...: log to $out/NAME.log, report the time and the exit status
  local name=$1; shift
  local start=$SECONDS
  "$@" >"$out/$name.log" 2>&1
  local rc=$?
  echo "[$name] exit $rc after $((SECONDS - start)) s"
  [ $rc -eq 0 ] || { status=1; tail -n 8 "$out/$name.log"; }
  return $rc
}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
if [[ $stages == *build* ]]; then
  MAX_JOBS=${MAX_JOBS:-16} run build python3 -m pip install --no-build-isolation --no-deps -v . || exit 1
  grep "flash_mla_rocm: building" "$out/build.log"
  grep -A2 "attention_kernel" "$out/build.log" | grep -E "registers|spill" | sort | uniq -c
fi
if [[ $stages == *test* ]]; then
  run test python3 -P -m pytest tests -q -p no:cacheprovider --tb=short
  grep -E "^(FAILED|ERROR)|^E  |passed|failed" "$out/test.log" | head -n 40
fi
if [[ $stages == *sanitize* ]]; then
  run memcheck compute-sanitizer --tool memcheck --error-exitcode 9 python3 -P -m pytest -q -x -p no:cacheprovider \
    tests/test_sparse_attn_decode.py tests/test_decode.py -k "cuda and (invalid or edges or empty or views or adversarial or no_tokens or lengths or poison or extra)"
  tail -n 3 "$out/memcheck.log"
  for tool in racecheck synccheck; do
    run $tool compute-sanitizer --tool $tool --error-exitcode 9 python3 -P -m pytest -q -x -p no:cacheprovider \
      "tests/test_sparse_attn_decode.py::test_extra_cache_with_lengths_and_sink[cuda-token]" \
      "tests/test_sparse_attn_decode.py::test_shapes[cuda-flashmla-1-2-64-200-4-69]" \
      "tests/test_sparse_attn_decode.py::test_shapes[cuda-token-2-1-128-130-2-256]"
    tail -n 3 "$out/$tool.log"
  done
fi
if [[ $stages == *bench* ]]; then
  run bench_sparse python3 benchmarks/bench_sparse_decode.py --cases all --json "$out/sparse.json" --chart "$out/sparse.png"
  tail -n 50 "$out/bench_sparse.log"
  run bench_decode python3 benchmarks/bench_decode.py --json "$out/decode.json" --chart "$out/decode.png"
  tail -n 40 "$out/bench_decode.log"
fi
exit $status

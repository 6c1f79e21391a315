#!/usr/bin/env bash
# Compiles every sm90 kernel source with nvcc alone (no torch headers) for sm_90a and checks what ptxas and the
# PTX say: no spills, no stack frame (local memory), and the tensor-core instruction (wgmma) in the kernels.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
command -v nvcc >/dev/null || { echo "check_sm90: nvcc not found"; exit 1; }
work=$(mktemp -d)
flags=(-O3 -std=c++17 -gencode=arch=compute_90a,code=sm_90a --use_fast_math)
status=0
for source in kernels/sm90/*.cu; do
  name=$(basename "$source" .cu)
  nvcc "${flags[@]}" -Xptxas -v -c "$source" -o "$work/$name.o" 2>"$work/$name.ptxas"
  nvcc "${flags[@]}" -ptx "$source" -o "$work/$name.ptx"
  entries=$(grep -c "Compiling entry function" "$work/$name.ptxas" || true)
  # One "Function properties" report per kernel and per out-of-line device function.
  dirty=$(grep "bytes stack frame" "$work/$name.ptxas" | grep -vc "^ *0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads" ||
    true)
  registers=$( (grep -o "Used [0-9]* registers" "$work/$name.ptxas" || echo "Used - registers") | awk '{print $2}' |
    sort -n | tail -1)
  wgmma=$(grep -c "wgmma.mma_async" "$work/$name.ptx" || true)
  printf '%-20s %d kernels, %d functions with spills or stack, max %s registers, %d wgmma.mma_async in PTX\n' \
    "$name" "$entries" "$dirty" "$registers" "$wgmma"
  if [ "$dirty" -ne 0 ]; then
    echo "check_sm90: $name spills or uses local memory:"; cat "$work/$name.ptxas"; status=1
  fi
  # The attention kernels move registers between warpgroups with setmaxnreg, from a launch share of 65536 / 384 =
  # 168 a thread (attention_kernel.cuh, kLaunchRegisters): a kernel allocated fewer could not grant the math
  # warpgroups theirs and would hang.
  attention=$(grep -c "entry function.*attention_kernel" "$work/$name.ptxas" || true)
  allocated=$(grep -A4 "entry function.*attention_kernel" "$work/$name.ptxas" | grep -c "Used 168 registers" || true)
  if [ "$allocated" -ne "$attention" ]; then
    echo "check_sm90: an attention kernel of $name is not allocated 168 registers a thread:"; cat "$work/$name.ptxas"
    status=1
  fi
  if grep -q "attention_kernel" "$work/$name.ptx" && [ "$wgmma" -eq 0 ]; then
    echo "check_sm90: $name has an attention kernel without wgmma"; status=1
  fi
done
rm -rf "$work"
exit $status

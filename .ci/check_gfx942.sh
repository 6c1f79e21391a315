#!/usr/bin/env bash
# gfx942 without an AMD GPU: compile every kernels/gfx942 source device-only with Debian's clang-19 and the HIP
# headers of libamdhip64-dev, then print the ISA report and fail on scratch, spills, calls, a missing bf16 MFMA in an
# attention kernel's hot loop, a register/LDS budget overrun, an LDS model that no longer matches the compiled loop,
# or a missed static target (.ci/gfx942_isa_report.py). The host half (the
# launch code) is compiled too, against the same headers, and a target whose fp8 converter reads another format
# than e4m3fnuz must be refused by the sources themselves.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

clang=${CLANG:-clang++-19}
out=$(mktemp -d)
for source in kernels/gfx942/*.hip; do
  "$clang" -x hip --offload-arch=gfx942 --cuda-device-only -nogpulib -O3 -std=c++17 -Werror \
    -S -o "$out/$(basename "$source" .hip).s" "$source"
  "$clang" -x hip --offload-arch=gfx942 --cuda-host-only -nogpulib -O3 -std=c++17 -Werror -D__HIP_PLATFORM_AMD__ \
    -c -o "$out/$(basename "$source" .hip).host.o" "$source"
done
refusal=$("$clang" -x hip --offload-arch=gfx90a --cuda-device-only -nogpulib -std=c++17 -fsyntax-only \
  kernels/gfx942/decode.hip 2>&1 || true)
if ! grep -q "build for one of those" <<<"$refusal"; then
  echo "check_gfx942: kernels/gfx942 did not refuse --offload-arch=gfx90a:"; echo "$refusal" | head -n 20; exit 1
fi
echo "gfx942 ISA ($("$clang" --version | head -n 1), -O3 --offload-arch=gfx942 --cuda-device-only -nogpulib)"
python3 .ci/gfx942_isa_report.py "$out"/*.s

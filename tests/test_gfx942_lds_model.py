"""The gfx942 LDS model (.ci/gfx942_lds_model.py) against the kernel it describes, and its conflict arithmetic.

The model mirrors the attention kernel's LDS address functions; these tests compile the kernel header for the host
(through the emulation's hip_runtime.h) and compare every value of key_chunk_slot, value_slot and value_word, every
lane's store and read addresses and the tile constants, so the address arithmetic of the static report cannot drift
from the code.
"""

import importlib.util
import os
import shutil
import subprocess

import pytest

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
MODEL_PATH = os.path.join(ROOT, ".ci", "gfx942_lds_model.py")
KERNEL_HEADER = os.path.join(ROOT, "kernels", "gfx942", "attention_kernel.h")

pytestmark = pytest.mark.skipif(
    not (os.path.exists(MODEL_PATH) and os.path.exists(KERNEL_HEADER)),
    reason="needs the repository's .ci/ and kernels/ (run from a checkout)",
)

DUMP = r"""
#include <cstddef>
#include <cstdio>
#include "gfx942/attention_kernel.h"
int main() {
  using namespace flash_mla::gfx942;
  std::printf("%d %d %d %d %d %d %d %d\n", kKeysPerTile, kChunksPerRow, kKeyQuads, kWaves, kWavePairs, kWaveReads,
              int(sizeof(SharedTiles::keys)), int(offsetof(PairExchange, weights)));
  for (int k = 0; k < kKeysPerTile; ++k)
    for (int c = 0; c < kChunksPerRow; ++c) std::printf("%d ", key_chunk_slot(k, c));
  std::printf("\n");
  for (int v = 0; v < flash_mla::kHeadDim; ++v)
    for (int q = 0; q < kKeyQuads; ++q) std::printf("%d ", value_word(v, q));
  std::printf("\n");
  for (int s = 0; s < flash_mla::kHeadDim * kKeyQuads / 2; ++s) std::printf("%d ", value_slot(s));
  std::printf("\n");
  for (int w = 0; w < kWaves; ++w)  // the stores of every lane, bytes: key row i and value column i, in turn
    for (int l = 0; l < kWaveSize; ++l)
      for (int i = 0; i < 4; ++i) std::printf("%d %d ", StoreBytes::of(w, l).key(i), StoreBytes::of(w, l).value(i));
  std::printf("\n");
  for (int h = 0; h < 2; ++h)  // the reads of every lane, 16-byte slots: QK, then PV, per step
    for (int l = 0; l < kWaveSize; ++l)
      for (int p = 0; p < kWaveReads; ++p) std::printf("%d %d ", qk_read_slots(h, l).at(p), pv_read_slots(h, l).at(p));
  std::printf("\n");
}
"""


def load_module(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_model():
    return load_module("gfx942_lds_model", MODEL_PATH)


def build_and_run(work, source, why):
    """Compiles `source` for the host with the kernels' headers on the include path (the emulation's HIP first) and
    runs it: its standard output."""
    compiler = shutil.which("g++") or shutil.which("c++")
    if compiler is None:
        pytest.skip(f"no C++ compiler to build {why} for the host")
    (work / "main.cpp").write_text(source)
    include = [f"-I{os.path.join(ROOT, 'kernels', 'gfx942', 'emulation', 'include')}",
               f"-I{os.path.join(ROOT, 'kernels')}"]
    subprocess.run([compiler, "-std=c++17", *include, str(work / "main.cpp"), "-o", str(work / "main")], check=True)
    return subprocess.run([str(work / "main")], check=True, capture_output=True, text=True).stdout


@pytest.fixture(scope="module")
def kernel_dump(tmp_path_factory):
    lines = build_and_run(tmp_path_factory.mktemp("lds_model"), DUMP, "the kernel header").splitlines()
    return [[int(x) for x in line.split()] for line in lines]


def test_constants_match_the_kernel(kernel_dump):
    m = load_model()
    exchange_region = m.patterns(0, 128)["P^T and max to the pair: writes (b128)"][1][0][0]  # wave 0, lane 0
    assert kernel_dump[0] == [m.KEYS_PER_TILE, m.CHUNKS_PER_ROW, m.KEY_QUADS, m.WAVES, m.WAVE_PAIRS, m.WAVE_READS,
                              m.KEYS_BYTES, exchange_region]  # fmt: skip


def test_address_functions_match_the_kernel(kernel_dump):
    m = load_model()
    slots = [m.key_chunk_slot(k, c) for k in range(m.KEYS_PER_TILE) for c in range(m.CHUNKS_PER_ROW)]
    words = [m.value_word(v, q) for v in range(m.HEAD_DIM) for q in range(m.KEY_QUADS)]
    assert kernel_dump[1] == slots
    assert kernel_dump[2] == words
    assert kernel_dump[3] == [m.value_slot(s) for s in range(m.HEAD_DIM * m.KEY_QUADS // 2)]


def test_lane_addresses_match_the_kernel(kernel_dump):
    """The model's store and read patterns are the addresses the kernel computes (its per-lane bases and offsets)."""
    m = load_model()
    stores = []
    for wave in range(m.WAVES):
        pattern = m.patterns(wave, 64)
        keys = pattern["key rows: dequantized stores (b64)"][1]
        values = pattern["value columns: dequantized stores (b64)"][1]
        for lane in range(m.WAVE):
            for i in range(4):
                stores += [keys[i][lane], values[i][lane] - m.KEYS_BYTES]
    assert kernel_dump[4] == stores
    reads = []
    for dim_half in range(2):
        pattern = m.patterns(dim_half * m.WAVE_PAIRS, 64)
        qk, pv = pattern["key rows: QK reads (b128)"][1], pattern["value columns: PV reads (b128)"][1]
        for lane in range(m.WAVE):
            for p in range(m.WAVE_READS):
                reads += [qk[p][lane] // 16, (pv[p][lane] - m.KEYS_BYTES) // 16]
    assert kernel_dump[5] == reads


def test_peak_case_plan_matches_the_planner(tmp_path):
    """The ISA report predicts the peak case for PEAK_ROWS x PEAK_SPLITS workgroups: the split count the kernels'
    planner (kernels/gpu/split_kv.h) chooses for it."""
    report = load_module("gfx942_isa_report", os.path.join(ROOT, ".ci", "gfx942_isa_report.py"))
    tile = load_model().KEYS_PER_TILE
    plan = (
        '#include <cstdio>\n#include "gpu/split_kv.h"\nint main() {\n'
        f'  std::printf("%d", flash_mla::choose_num_splits({report.PEAK_ROWS}, {report.PEAK_KEYS}, {report.CUS}, '
        f"{tile}));\n"
        "}\n"
    )
    splits = build_and_run(tmp_path, plan, "the planner")
    assert int(splits) == report.PEAK_SPLITS


def test_conflict_arithmetic():
    m = load_model()
    assert m.clocks([16 * lane for lane in range(64)], 16) == 8  # contiguous b128: 8 lanes a clock, no conflict
    assert m.clocks([0] * 64, 4) == 2  # one word for every lane: a broadcast
    assert m.clocks([128 * lane for lane in range(64)], 4) == 64  # every lane of a group on bank 0: 32-way
    assert m.clocks([8 * (lane % 4) for lane in range(64)], 8) == 4  # 16 lanes on 4 distinct words: shared


@pytest.mark.parametrize("heads, kib", [(64, 176), (128, 192)])
def test_the_kernels_patterns(heads, kib):
    m = load_model()
    traffic = m.tile_traffic(heads)
    factors = {name.split(":")[0] + ":" + name.split(":")[1].split("(")[0].strip(): factor
               for name, (_, _, _, factor) in traffic.items()}  # fmt: skip
    # The swizzles keep every pattern conflict-free (without value_slot, the value-column stores hit 4 words a bank).
    assert all(factor == 1.0 for factor in factors.values()), factors
    assert sum(bytes_ for _, bytes_, _, _ in traffic.values()) == kib * 1024  # a tile and CU: 128 heads add partials

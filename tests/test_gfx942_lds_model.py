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
using namespace flash_mla::gfx942;
template <class Shape>
void dump_shape() {  // its constants; every lane's reads (16-byte slots: QK, then PV, per step); exchange entries
  std::printf("%d %d %d %d %d %d %d %d %d\n", Shape::kHeadsPerWorkgroup, Shape::kWaves, Shape::kDimParts,
              Shape::kHeadGroups, Shape::kBlocks, Shape::kWaveReads, Shape::kWaveChunks, Shape::kSharesPerLane,
              int(offsetof(HeadGroupExchange<Shape>, weights)));
  for (int part = 0; part < Shape::kDimParts; ++part)
    for (int l = 0; l < kWaveSize; ++l)
      for (int p = 0; p < Shape::kWaveReads; ++p)
        std::printf("%d %d ", qk_read_slots(part * Shape::kWaveChunks, l).at(p),
                    pv_read_slots(part * Shape::kWaveReads, l).at(p));
  std::printf("\n");
  for (int w = 0; w < Shape::kWaves; ++w)
    for (int b = 1; b < Shape::kBlocks; ++b) std::printf("%d ", HeadGroupExchange<Shape>::partial_entry(w, b, 0));
  std::printf("\n");
}
int main() {
  std::printf("%d %d %d %d %d\n", kKeysPerTile, kChunksPerRow, kKeyQuads, kShares, int(sizeof(SharedTiles::keys)));
  for (int k = 0; k < kKeysPerTile; ++k)
    for (int c = 0; c < kChunksPerRow; ++c) std::printf("%d ", key_chunk_slot(k, c));
  std::printf("\n");
  for (int v = 0; v < flash_mla::kHeadDim; ++v)
    for (int q = 0; q < kKeyQuads; ++q) std::printf("%d ", value_word(v, q));
  std::printf("\n");
  for (int s = 0; s < flash_mla::kHeadDim * kKeyQuads / 2; ++s) std::printf("%d ", value_slot(s));
  std::printf("\n");
  for (int s = 0; s < kShares; ++s)  // the stores of every share and lane, bytes: key row i and value column i
    for (int l = 0; l < kWaveSize; ++l)
      for (int i = 0; i < 4; ++i) std::printf("%d %d ", StoreBytes::of(s, l).key(i), StoreBytes::of(s, l).value(i));
  std::printf("\n");
  dump_shape<WorkgroupShape<64>>();
  dump_shape<WorkgroupShape<128>>();
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


def shape_lines(kernel_dump, heads):
    """The three lines dump_shape<WorkgroupShape<heads>> printed."""
    first = 5 if heads == 64 else 8
    return kernel_dump[first : first + 3]


@pytest.mark.parametrize("heads", [64, 128])
def test_constants_match_the_kernel(kernel_dump, heads):
    m = load_model()
    assert kernel_dump[0] == [m.KEYS_PER_TILE, m.CHUNKS_PER_ROW, m.KEY_QUADS, m.SHARES, m.KEYS_BYTES]
    shape = m.Shape(heads)
    assert shape_lines(kernel_dump, heads)[0] == [heads, shape.waves, shape.dim_parts, shape.head_groups, shape.blocks,
                                                  shape.wave_reads, shape.wave_chunks, shape.shares_per_lane,
                                                  shape.weights_offset]  # fmt: skip


def test_address_functions_match_the_kernel(kernel_dump):
    m = load_model()
    slots = [m.key_chunk_slot(k, c) for k in range(m.KEYS_PER_TILE) for c in range(m.CHUNKS_PER_ROW)]
    words = [m.value_word(v, q) for v in range(m.HEAD_DIM) for q in range(m.KEY_QUADS)]
    assert kernel_dump[1] == slots
    assert kernel_dump[2] == words
    assert kernel_dump[3] == [m.value_slot(s) for s in range(m.HEAD_DIM * m.KEY_QUADS // 2)]


@pytest.mark.parametrize("heads", [64, 128])
def test_lane_addresses_match_the_kernel(kernel_dump, heads):
    """The model's store, read and exchange patterns are the addresses the kernel computes (its per-lane bases and
    offsets)."""
    m = load_model()
    shape = m.Shape(heads)
    stores = {}
    for wave in range(shape.waves):
        pattern = m.patterns(wave, heads)
        keys = pattern["key rows: dequantized stores (b64)"][1]
        values = pattern["value columns: dequantized stores (b64)"][1]
        for i in range(shape.shares_per_lane):  # share wave + waves * i: instructions 4 i .. 4 i + 3
            stores[wave + shape.waves * i] = [address for lane in range(m.WAVE) for j in range(4)
                                              for address in (keys[4 * i + j][lane],
                                                              values[4 * i + j][lane] - m.KEYS_BYTES)]  # fmt: skip
    assert kernel_dump[4] == [address for share in range(m.SHARES) for address in stores[share]]
    reads, entries = [], []
    for part in range(shape.dim_parts):
        pattern = m.patterns(shape.wave_of(0, part), heads)
        qk, pv = pattern["key rows: QK reads (b128)"][1], pattern["value columns: PV reads (b128)"][1]
        for lane in range(m.WAVE):
            for p in range(shape.wave_reads):
                reads += [qk[p][lane] // 16, (pv[p][lane] - m.KEYS_BYTES) // 16]
    for wave in range(shape.waves):
        writes = m.patterns(wave, heads)["partial scores: writes (b128)"][1]
        entries += [writes[b][0] // 16 for b in range(shape.blocks - 1)]  # lane 0 of local block b + 1
    assert shape_lines(kernel_dump, heads)[1] == reads
    assert shape_lines(kernel_dump, heads)[2] == entries


def test_every_partial_is_read_by_its_owner_once():
    """Each wave's partial scores of a block it does not own are read by that block's owner, and by no other wave."""
    m = load_model()
    for heads in (64, 128):
        shape = m.Shape(heads)
        written = {address for wave in range(shape.waves)
                   for instruction in m.patterns(wave, heads)["partial scores: writes (b128)"][1]
                   for address in instruction}  # fmt: skip
        read = [address for wave in range(shape.waves)
                for instruction in m.patterns(wave, heads)["partial scores: reads (b128)"][1]
                for address in instruction]  # fmt: skip
        assert sorted(read) == sorted(written) and len(set(read)) == len(read)


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


@pytest.mark.parametrize("heads, kib", [(64, 104), (128, 192)])
def test_the_kernels_patterns(heads, kib):
    m = load_model()
    traffic = m.tile_traffic(heads)
    factors = {name.split(":")[0] + ":" + name.split(":")[1].split("(")[0].strip(): factor
               for name, (_, _, _, factor) in traffic.items()}  # fmt: skip
    # The swizzles keep every pattern conflict-free (without value_slot, the value-column stores hit 4 words a bank).
    assert all(factor == 1.0 for factor in factors.values()), factors
    assert sum(bytes_ for _, bytes_, _, _ in traffic.values()) == kib * 1024  # a tile and CU


# A kernel's control flow as clang lays it out: an outer loop around the tile loop, whose blocks are not contiguous
# (its second half sits after the outer loop's code), a rare block inside it (marked, with a block only it reaches),
# and a rare exit out of the loop.
SYNTHETIC_KERNEL = """\
\ts_mov_b32 s0, 0
.LBB0_1:
\tv_mov_b32 v9, 0
.LBB0_2:
\tv_mfma_f32_16x16x16_bf16 a[0:3], v[0:1], v[2:3], a[0:3]
\ts_cbranch_scc1 .LBB0_3
\t; flash_mla isa: rare path
\tv_mul_f32 v1, v1, v2
\ts_cbranch_vccz .LBB0_4
\tv_mul_f32 v3, v3, v2
.LBB0_4:
\tv_add_f32 v4, v4, v4
.LBB0_3:
\ts_branch .LBB0_6
.LBB0_5:
\tv_accvgpr_read_b32 v5, a0
\ts_cbranch_scc0 .LBB0_1
\ts_endpgm
.LBB0_6:
\tv_mfma_f32_16x16x16_bf16 a[4:7], v[0:1], v[2:3], a[4:7]
\ts_barrier
\ts_cbranch_scc0 .LBB0_5
\ts_branch .LBB0_2
"""


def test_hot_loop_on_a_laid_out_control_flow_graph():
    """The report's hot loop is the innermost loop with the most MFMAs, wherever its blocks lie, without the blocks
    a rare mark dominates: here both MFMAs and the barrier, not the outer loop's move or the rare multiplies."""
    report = load_module("gfx942_isa_report", os.path.join(ROOT, ".ci", "gfx942_isa_report.py"))
    lines = SYNTHETIC_KERNEL.splitlines()
    hot = [text for _, text in report.instructions(lines, report.hot_loop(lines))]
    assert [t for t in hot if not t.startswith("s_")] == [
        "v_mfma_f32_16x16x16_bf16 a[0:3], v[0:1], v[2:3], a[0:3]",
        "v_mfma_f32_16x16x16_bf16 a[4:7], v[0:1], v[2:3], a[4:7]",
    ], hot
    assert "s_barrier" in hot


def test_issue_counts_every_instruction_but_the_sequencers():
    """A wave issues an instruction every fourth cycle at most, of any kind: this loop's 9 issued instructions are 36
    cycles, more than its 2 MFMAs' 32 (the overlap bound); its s_waitcnt and s_barrier, which the sequencer
    handles, are not issued. In series one wave takes 16 an MFMA, a VALU its cycles (16 a transcendental) and 4 for
    the rest: 72, the sum bound."""
    report = load_module("gfx942_isa_report", os.path.join(ROOT, ".ci", "gfx942_isa_report.py"))
    lines = """\
.LBB0_1:
\tv_mfma_f32_16x16x16_bf16 a[0:3], v[0:1], v[2:3], a[0:3]
\tv_mfma_f32_16x16x16_bf16 a[4:7], v[0:1], v[2:3], a[4:7]
\tv_exp_f32_e32 v1, v1
\tv_add_f32_e32 v2, v2, v2
\tds_read_b128 v[4:7], v8
\ts_waitcnt lgkmcnt(0)
\ts_barrier
\ts_mov_b32 s1, s2
\ts_mov_b32 s3, s4
\ts_add_i32 s0, s0, 1
\ts_cbranch_scc0 .LBB0_1
\ts_endpgm
""".splitlines()
    counts = report.mix(lines, report.hot_loop(lines))
    assert (counts["mfma"], counts["valu"], counts["valu_cycles"], counts["issued"]) == (2, 2, 20, 9), counts
    model = report.tile_model(counts, 8, 1)  # 8 clocks of LDS bandwidth
    assert (model["mfma"], model["issue"], model["overlap"], model["sum"]) == (32, 36, 36, 72), model
    assert model["issue_bound"] == 32 / 36


def test_a_waterfall_loop_stays_inside_the_hot_loop():
    """A loop without MFMAs inside the tile loop (a waterfall loop: the compiler's answer to a divergent value used
    as a scalar) belongs to the hot loop, so that the report sees its s_cbranch_execnz and fails."""
    report = load_module("gfx942_isa_report", os.path.join(ROOT, ".ci", "gfx942_isa_report.py"))
    lines = """\
.LBB0_1:
\tv_mfma_f32_16x16x16_bf16 a[0:3], v[0:1], v[2:3], a[0:3]
.LBB0_2:
\tv_readfirstlane_b32 s2, v0
\ts_and_saveexec_b64 vcc, vcc
\tbuffer_load_dword v1, v42, s[44:47], s2 offen
\ts_xor_b64 exec, exec, vcc
\ts_cbranch_execnz .LBB0_2
\ts_cbranch_scc0 .LBB0_1
\ts_endpgm
""".splitlines()
    hot = [mnemonic for mnemonic, _ in report.instructions(lines, report.hot_loop(lines))]
    assert "v_mfma_f32_16x16x16_bf16" in hot and "s_cbranch_execnz" in hot, hot

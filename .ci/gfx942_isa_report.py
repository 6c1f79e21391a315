"""Static ISA report, static cost model and budget checks of the gfx942 kernels (docs/design.md, section 5).

Reads the assembly clang emits for each kernels/gfx942/*.hip source (device-only, gfx942) and prints, per kernel:
registers, LDS, scratch, the waves per SIMD they allow; for the attention kernels the instruction mix of one key
tile (the hot loop: of the innermost loops of the control-flow graph that hold MFMAs, the one with the most, minus the
blocks the kernel marks rare (isa_rare_path() in primitives.h) and the blocks they dominate), the LDS traffic of a tile
with its bank conflicts (.ci/gfx942_lds_model.py, from the addresses the kernel uses) and the cost model below.
Exits non-zero when a kernel uses scratch, spills, calls a function, an attention kernel has no bf16 MFMA in its
hot loop, has a waterfall loop there (s_cbranch_execnz) or exceeds its register/LDS budget, the LDS model's bytes
differ from the compiled hot loop's, or a target below is missed.

Cost model of one key tile (MI300X: 304 CUs of 4 SIMDs at 2.1 GHz; an attention workgroup alone on a CU: 8 waves,
2 a SIMD, at 128 heads; 4 waves, 1 a SIMD, at 64). Per SIMD: v_mfma_f32_16x16x16_bf16 = 16 cycles (1307 TFLOP/s /
1216 SIMDs / 2.1 GHz = 512 FLOP a clock, 8192 FLOP an MFMA); a VALU instruction 4 cycles (16 lanes a clock), a
transcendental 16; an LDS instruction 4 issue cycles. Per CU: LDS bandwidth 128 bytes a clock, times each access
pattern's bank-conflict factor. Per wave: issue, 4 cycles an instruction of any kind (SALU, VMEM and branches
too; not the "internal" s_nop, s_waitcnt, s_barrier, which the sequencer handles). That is the CDNA scheduler's rule
as the ROCm Compute Profiler's performance model documents it: each cycle the scheduler serves one of a CU's 4
SIMDs, in turn, issuing at most one instruction a wave and one a kind among that SIMD's waves, MFMAs in the VALU's
kind. So a SIMD's one wave at 64 heads pays for every instruction in series, its two at 128 heads each for their
own, and a SIMD's MFMAs and VALU instructions share one issue port (4 cycles an MFMA, a VALU's cycles). Bounds of
a tile: overlap = max(MFMA, VALU + LDS issue, LDS bandwidth, issue, the VALU port) if a SIMD's MFMAs ran under its
other work perfectly; sum = max(MFMA + VALU + LDS issue, LDS bandwidth, a wave's instructions in series with its
MFMAs at 16 cycles and its VALU at their cycles) if they never overlapped. The prediction uses the sum bound, for
long rows with every CU busy. Not modelled: memory latency (a tile's keys are loaded one tile ahead; at 64 heads no
second wave on the SIMD hides it), dependency stalls, slower integer VALU (64-bit multiplies, counted at 4 cycles),
barrier skew, clocks under load, the last wave of workgroups. Both paths of a wave-uniform branch in the loop are
counted (the rope wave's and the nope waves' stores, for one).

Each attention kernel exists for 64 heads a workgroup (h_q <= 64) and for 128 (h_q > 64); the report names the
shape. Targets: the peak case (h_q 128, b 148, s_q 2, top-k 16384: the sparse 128-head kernels, 296 workgroups on
304 CUs) >= 460 TFLOPS predicted under the sum bound, enforced; matrix-bound, MFMA cycles >= 1.25 x
max(VALU + LDS issue, LDS bandwidth) for the 128-head kernels and >= 1.0 x for the 64-head ones, enforced for the
kernels that have reached it (MATRIX_BOUND_REACHED: they may not fall back), printed for the others. MFMA / issue
is printed beside it: below 1, a wave's instruction stream, not the matrix cores, sets the pace. A kernel for
caches in two fp8 formats holds both dequantization paths in its hot loop while a tile runs one: it is listed, and
left out of the model.
"""

import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gfx942_lds_model  # noqa: E402

KEYS_PER_TILE = 16
# An attention workgroup (WorkgroupShape, gfx942_lds_model.Shape) is alone on a CU (its two 32 KiB key tiles fill
# the LDS): 8 waves at 128 heads, 2 a SIMD; 4 at 64 heads, 1 a SIMD. Each wave does 64 MFMAs a tile in both.
MFMA = "v_mfma_f32_16x16x16_bf16"
BARRIERS_PER_TILE = 3  # attention_kernel.h: after QK, after the partial scores and stores, after P^T
MFMA_FLOP = 8192
CLOCK_HZ = 2.1e9
CUS = 304
SIMDS_PER_CU = 4
LDS_BYTES_PER_CLOCK = 128
LDS_ACCESS = re.compile(r"^ds_(read|write)2?(?:st64)?_[biu](\d+)$")
MATRIX_BOUND_MARGIN = {128: 1.25, 64: 1.0}  # target: MFMA / max(VALU + LDS issue, LDS bandwidth), by heads
# The peak case runs the sparse 128-head kernels: b 148 x s_q 2 query rows of one head group, top-k 16384, which
# choose_num_splits (kernels/gpu/split_kv.h) leaves unsplit (tests/test_gfx942_lds_model.py checks that): one
# workgroup on each of 296 of the 304 CUs.
PEAK_HEADS = 128
PEAK_ROWS = 148 * 2
PEAK_KEYS = 16384
PEAK_SPLITS = 1
PEAK_TARGET_TFLOPS = 460
# Kernels that have reached their matrix-bound target: the report fails if one falls below it again.
MATRIX_BOUND_REACHED = [
    "attention<Sparse, e4m3fn, 128 heads>",
    "attention<Sparse, e4m3fnuz, 128 heads>",
    "attention<Csr, e4m3fn, 128 heads>",
    "attention<Csr, e4m3fnuz, 128 heads>",
    "attention<Sparse, e4m3fn, 64 heads>",
    "attention<Sparse, e4m3fnuz, 64 heads>",
    "attention<Csr, e4m3fn, 64 heads>",
    "attention<Csr, e4m3fnuz, 64 heads>",
]
TRANSCENDENTAL = re.compile(r"^v_(exp|log|rcp|rsq|sqrt|sin|cos)_")
# "Internal" instructions: the sequencer handles them without issuing them to a unit (not charged as issue).
INTERNAL = re.compile(r"^s_(nop|waitcnt|barrier|sleep|setprio|sendmsg|sethalt|icache_inv|incperflevel|decperflevel)")
RARE_MARK = "; flash_mla isa: rare path"


def kernels_of(asm, symbols):
    """{symbol: [lines]} of each kernel: from its label to the end of its function."""
    bodies = {}
    for symbol in symbols:
        start = re.search(rf"^{re.escape(symbol)}:", asm, re.M).end()
        end = re.compile(r"^\.Lfunc_end\d+:", re.M).search(asm, start).start()
        bodies[symbol] = asm[start:end].splitlines()
    return bodies


def metadata_of(asm):
    import yaml  # only to read assembly: the tests import this module for its constants without it

    doc = re.search(r"^\s*\.amdgpu_metadata\n(.*?)^\s*\.end_amdgpu_metadata", asm, re.M | re.S).group(1)
    return {k[".symbol"].removesuffix(".kd"): k for k in yaml.safe_load(doc)["amdhsa.kernels"]}


LABEL = re.compile(r"^(\.LBB\w+):")
BRANCH = re.compile(r"^\s*(s_cbranch_\w+|s_branch)\s+(\.LBB\w+)")


def is_instruction(line):
    text = line.strip()
    return bool(text) and not text.startswith((";", ".")) and not re.match(r"^[\w.$%]+:", text)


def basic_blocks(lines):
    """[(start, end)] line ranges of the basic blocks: a block starts at a label or after a branch."""
    starts = {0}
    for i, line in enumerate(lines):
        if LABEL.match(line):
            starts.add(i)
        if BRANCH.match(line) or line.strip().startswith("s_endpgm"):
            starts.add(i + 1)
    starts = sorted(start for start in starts if start < len(lines))
    return list(zip(starts, starts[1:] + [len(lines)]))


def control_flow(lines, blocks):
    """Successors of each block (by index)."""
    at_label = {LABEL.match(lines[start]).group(1): k
                for k, (start, _) in enumerate(blocks) if LABEL.match(lines[start])}  # fmt: skip
    successors = []
    for k, (start, end) in enumerate(blocks):
        body = [line for line in lines[start:end] if is_instruction(line)]
        last = body[-1] if body else ""
        branch = BRANCH.match(last)
        out = {at_label[branch.group(2)]} if branch else set()
        falls_through = not (branch and branch.group(1) == "s_branch") and not last.strip().startswith("s_endpgm")
        if falls_through and k + 1 < len(blocks):
            out.add(k + 1)
        successors.append(out)
    return successors


def dominators(successors):
    """dominators[b]: the blocks every path from the entry to b passes (b included)."""
    n = len(successors)
    predecessors = [set() for _ in range(n)]
    for a, outs in enumerate(successors):
        for b in outs:
            predecessors[b].add(a)
    result = [set(range(n)) for _ in range(n)]
    result[0] = {0}
    changed = True
    while changed:
        changed = False
        for b in range(1, n):
            new = set.intersection(*(result[p] for p in predecessors[b])) if predecessors[b] else set()
            new |= {b}
            if new != result[b]:
                result[b], changed = new, True
    return result, predecessors


def hot_loop(lines):
    """The key-tile loop: of the innermost natural loops with MFMAs (no other loop with MFMAs inside; a loop without
    them inside, a waterfall loop, is part of it), the one with the most MFMAs, as a sorted list of line indices of
    its instructions outside the paths the kernel marks rare (blocks a block holding the isa_rare_path() mark
    dominates); None without such a loop. Blocks, not line ranges: the compiler may lay a loop's blocks out
    anywhere."""
    blocks = basic_blocks(lines)
    successors = control_flow(lines, blocks)
    dominating, predecessors = dominators(successors)
    loops = {}
    for tail, outs in enumerate(successors):
        for head in outs:
            if head in dominating[tail]:  # a back edge
                body, stack = {head}, [tail]
                while stack:
                    block = stack.pop()
                    if block not in body:
                        body.add(block)
                        stack.extend(predecessors[block])
                loops.setdefault(head, set()).update(body)
    def mfmas(body):
        return sum(MFMA in lines[i] for k in body for i in range(*blocks[k]))

    with_mfmas = {head: body for head, body in loops.items() if mfmas(body)}
    innermost = [body for head, body in with_mfmas.items()
                 if not any(other != head and other in body for other in with_mfmas)]  # fmt: skip
    if not innermost:
        return None
    body = max(innermost, key=mfmas)
    marked = [k for k in body if any(lines[i].strip() == RARE_MARK for i in range(*blocks[k]))]
    hot = [k for k in body if not any(m in dominating[k] for m in marked)]
    return sorted(i for k in hot for i in range(*blocks[k]) if is_instruction(lines[i]))


def instructions(lines, indices=None):
    """(mnemonic, line) of the instructions at `indices` (default: all of `lines`)."""
    chosen = range(len(lines)) if indices is None else indices
    return [(lines[i].strip().split()[0], lines[i].strip()) for i in chosen if is_instruction(lines[i])]


def mix(lines, indices):
    counts = {"mfma": 0, "valu": 0, "valu_cycles": 0, "transcendental": 0, "lds": 0, "lds_bytes": 0, "vmem": 0,
              "salu": 0, "barrier": 0, "issued": 0, "waterfall": 0}  # fmt: skip
    for mnemonic, _ in instructions(lines, indices):
        counts["issued"] += not INTERNAL.match(mnemonic)
        counts["waterfall"] += mnemonic == "s_cbranch_execnz"  # a waterfall loop's back edge
        if mnemonic.startswith("v_mfma"):
            counts["mfma"] += 1
        elif mnemonic.startswith("v_"):
            counts["valu"] += 1
            transcendental = bool(TRANSCENDENTAL.match(mnemonic))
            counts["transcendental"] += transcendental
            counts["valu_cycles"] += 16 if transcendental else 4
        elif mnemonic.startswith("ds_"):
            counts["lds"] += 1
            access = LDS_ACCESS.match(mnemonic)
            if access:  # bytes through the banks (ds_bpermute and the like move none)
                addresses = 2 if "2" in mnemonic.split("_")[1] else 1
                counts["lds_bytes"] += 64 * addresses * int(access.group(2)) // 8
        elif mnemonic.startswith(("global_", "buffer_", "flat_", "scratch_")):
            counts["vmem"] += 1
        elif mnemonic == "s_barrier":
            counts["barrier"] += 1
        elif mnemonic.startswith("s_"):
            counts["salu"] += 1
    return counts


def tile_model(loop, lds_clocks, waves):
    """The cost model of one key tile (see the module docstring) for `waves` waves a SIMD: per SIMD and per CU
    cycles, bounds, prediction."""
    model = {"mfma": waves * 16 * loop["mfma"], "valu": waves * loop["valu_cycles"], "lds_issue": waves * 4 * loop["lds"],
             "lds_bandwidth": lds_clocks}  # fmt: skip
    other = model["valu"] + model["lds_issue"]
    # A wave issues at most one instruction every 4 cycles, of any kind: its own stream bounds the SIMD's tile.
    model["issue"] = 4 * loop["issued"]
    valu_port = waves * (4 * loop["mfma"] + loop["valu_cycles"])  # MFMAs issue in the VALU's kind
    serial = 16 * loop["mfma"] + loop["valu_cycles"] + 4 * (loop["issued"] - loop["mfma"] - loop["valu"])  # a wave
    model["overlap"] = max(model["mfma"], other, lds_clocks, model["issue"], valu_port)
    model["sum"] = max(model["mfma"] + other, lds_clocks, serial)
    model["matrix_bound"] = model["mfma"] / max(other, lds_clocks)
    model["issue_bound"] = model["mfma"] / model["issue"]
    flop = SIMDS_PER_CU * waves * loop["mfma"] * MFMA_FLOP  # a tile of one CU
    model["tflops_sum"] = flop / model["sum"] * CLOCK_HZ * CUS / 1e12
    model["tflops_overlap"] = flop / model["overlap"] * CLOCK_HZ * CUS / 1e12
    return model


def waves_per_simd(meta):
    registers = -(-(meta[".vgpr_count"]) // 8) * 8  # unified VGPR+AGPR file, 512 a lane, granule 8
    by_registers = 512 // max(registers, 1)
    lds = meta[".group_segment_fixed_size"]
    waves_per_group = -(-meta[".max_flat_workgroup_size"] // 64)
    groups_by_lds = 65536 // lds if lds else 10**9
    by_lds = groups_by_lds * waves_per_group // 4 if lds else by_registers
    return min(by_registers, 8, max(by_lds, 0))


def main(paths):
    failures = []
    print(f"{'kernel':52} {'VGPR':>4} {'AGPR':>4} {'SGPR':>4} {'LDS':>6} {'scratch':>7} {'waves/SIMD':>10}")
    loops = []
    for path in paths:
        asm = open(path).read()
        meta = metadata_of(asm)
        for symbol, lines in kernels_of(asm, meta).items():
            m = meta[symbol]
            name = short_name(symbol)
            waves = waves_per_simd(m)
            print(f"{name:52} {m['.vgpr_count'] - m.get('.agpr_count', 0):>4} {m.get('.agpr_count', 0):>4} "
                  f"{m['.sgpr_count']:>4} {m['.group_segment_fixed_size']:>6} {m['.private_segment_fixed_size']:>7} "
                  f"{waves:>10}")
            body = [t for _, t in instructions(lines)]
            if m[".private_segment_fixed_size"] != 0 or any(t.startswith("scratch_") for t in body):
                failures.append(f"{name}: uses scratch")
            if m.get(".vgpr_spill_count", 0) or m.get(".sgpr_spill_count", 0):
                failures.append(f"{name}: spills registers")
            if any(t.startswith(("s_swappc", "s_setpc")) for t in body):
                failures.append(f"{name}: calls a function")
            if "attention_kernel" in symbol:
                loop = hot_loop(lines)
                counts = mix(lines, loop) if loop is not None else None
                if counts is None or counts["mfma"] == 0:
                    failures.append(f"{name}: no {MFMA} in a loop")
                    continue
                heads = workgroup_heads(symbol)
                shape = gfx942_lds_model.Shape(heads)
                if waves < shape.waves // SIMDS_PER_CU or m[".group_segment_fixed_size"] > 65536:
                    failures.append(f"{name}: over its register/LDS budget")
                trips = max(counts["mfma"] // shape.mfma_per_wave_tile, 1)  # tiles a loop trip runs
                if counts["mfma"] != trips * shape.mfma_per_wave_tile or counts["barrier"] != trips * BARRIERS_PER_TILE:
                    failures.append(f"{name}: the hot loop found holds {counts['mfma']} MFMAs and {counts['barrier']} "
                                    f"barriers, not whole tiles of {shape.mfma_per_wave_tile} and {BARRIERS_PER_TILE}: "
                                    "the loop analysis took the wrong blocks")
                    continue
                if counts["waterfall"]:
                    failures.append(f"{name}: a waterfall loop in the hot loop (s_cbranch_execnz: a value the kernel "
                                    "means to be wave-uniform, a buffer resource or a scalar offset, is not)")
                loops.append((name, heads, {k: v / trips for k, v in counts.items()}))
    traffic = {heads: gfx942_lds_model.tile_traffic(heads) for heads in MATRIX_BOUND_MARGIN}
    lds_bytes = {heads: sum(b for _, b, _, _ in t.values()) for heads, t in traffic.items()}
    lds_clocks = {heads: sum(c for _, _, c, _ in t.values()) for heads, t in traffic.items()}
    print()
    print(f"Per key tile ({KEYS_PER_TILE} keys) and wave, hot loop without marked rare paths (a workgroup = "
          "8 waves at 128 heads, 4 at 64, on 4 SIMDs):")
    print(f"{'kernel':52} {'MFMA':>5} {'VALU':>5} {'(trans)':>7} {'cycles':>6} {'LDS':>4} {'LDS KiB':>7} {'VMEM':>5} "
          f"{'SALU':>5} {'barrier':>7}")
    for name, heads, loop in loops:
        print(f"{name:52} {loop['mfma']:>5.0f} {loop['valu']:>5.0f} {loop['transcendental']:>7.0f} "
              f"{loop['valu_cycles']:>6.0f} {loop['lds']:>4.0f} {loop['lds_bytes'] / 1024:>7.1f} {loop['vmem']:>5.0f} "
              f"{loop['salu']:>5.0f} {loop['barrier']:>7.0f}")
        waves = gfx942_lds_model.Shape(heads).waves
        if loop["lds_bytes"] * waves != lds_bytes[heads]:
            failures.append(f"{name}: {loop['lds_bytes'] * waves / 1024:.1f} KiB of LDS a tile, the "
                            f"LDS model (.ci/gfx942_lds_model.py) has {lds_bytes[heads] / 1024:.1f}: update the model")
    for heads, table in traffic.items():
        print()
        print(f"LDS traffic of a tile and CU by access pattern, {heads} heads a workgroup (.ci/gfx942_lds_model.py; "
              f"{LDS_BYTES_PER_CLOCK} B a clock):")
        print(f"{'pattern':52} {'instr/wave':>10} {'KiB':>6} {'clocks':>6} {'conflicts':>9}")
        for pattern, (count, bytes_, clocks, factor) in table.items():
            print(f"{pattern:52} {count:>10} {bytes_ / 1024:>6.1f} {clocks:>6} {factor:>8.2f}x")
        print(f"{'all':52} {'':>10} {lds_bytes[heads] / 1024:>6.1f} {lds_clocks[heads]:>6}")
    print()
    print("Cycles of a tile: MFMA, VALU and LDS issue per SIMD (its 2 waves at 128 heads, 1 at 64), LDS bandwidth per "
          f"CU, a wave's instruction issue; bounds and the prediction for long rows ({CUS} CUs at "
          f"{CLOCK_HZ / 1e9:.1f} GHz, every CU busy):")
    print(f"{'kernel':52} {'MFMA':>5} {'VALU':>5} {'LDS iss':>7} {'LDS bw':>6} {'issue':>5} {'overlap':>7} {'sum':>5} "
          f"{'TFLOPS sum':>10} {'overlap':>7} {'MFMA/max(other)':>15} {'MFMA/issue':>10}")
    modelled = [(name, heads, tile_model(loop, lds_clocks[heads], gfx942_lds_model.Shape(heads).waves // SIMDS_PER_CU))
                for name, heads, loop in loops if ", extra " not in name]  # one fp8 format: one dequant path
    for name, heads, model in modelled:
        print(f"{name:52} {model['mfma']:>5.0f} {model['valu']:>5.0f} {model['lds_issue']:>7.0f} "
              f"{model['lds_bandwidth']:>6.0f} {model['issue']:>5.0f} {model['overlap']:>7.0f} {model['sum']:>5.0f} "
              f"{model['tflops_sum']:>10.0f} {model['tflops_overlap']:>7.0f} {model['matrix_bound']:>15.2f} "
              f"{model['issue_bound']:>10.2f}")
    print()
    peaks = 0
    for name, heads, model in modelled:
        margin = MATRIX_BOUND_MARGIN[heads]
        met = model["matrix_bound"] >= margin
        enforced = name in MATRIX_BOUND_REACHED
        verdict = f"matrix-bound {model['matrix_bound']:.2f}, target >= {margin}: " + (
            "met" if met else "not met") + (" (enforced)" if enforced else " (reported)")
        if enforced and not met:
            failures.append(f"{name}: matrix-bound {model['matrix_bound']:.2f}, below the {margin} it had reached")
        if heads == PEAK_HEADS and name.startswith("attention<Sparse"):
            peaks += 1
            workgroups = PEAK_ROWS * PEAK_SPLITS
            peak = model["tflops_sum"] * workgroups / (-(-workgroups // CUS) * CUS)  # the CUs' share of the waves
            verdict += f"; peak case {peak:.0f} TFLOPS predicted, target >= {PEAK_TARGET_TFLOPS}"
            if peak < PEAK_TARGET_TFLOPS:
                failures.append(f"{name}: the peak case is predicted at {peak:.0f} TFLOPS, below the "
                                f"{PEAK_TARGET_TFLOPS} target")
        print(f"{name}: {verdict}")
    for name in MATRIX_BOUND_REACHED:
        if name not in [n for n, _, _ in modelled]:
            failures.append(f"{name}: listed in MATRIX_BOUND_REACHED but not modelled")
    if peaks == 0:
        failures.append("no sparse 128-head kernel was modelled: the peak case went unchecked")
    print("Kernels for two cache formats are left out of the model (their loop holds both formats' dequantization; a "
          "tile runs one).")
    if failures:
        print("\nFAILED:\n  " + "\n  ".join(failures))
        return 1
    print(f"\nOK: bf16 MFMA in every attention kernel's hot loop, no scratch, no spills, no calls, budgets met, peak "
          f"case >= {PEAK_TARGET_TFLOPS} TFLOPS predicted, matrix-bound targets held where reached")
    return 0


def workgroup_heads(symbol):
    """Heads of an attention kernel's workgroup, from its WorkgroupShape template argument."""
    return int(re.search(r"WorkgroupShapeILi(\d+)E", symbol).group(1))


FORMATS = {"0": "e4m3fnuz", "1": "e4m3fn"}  # Fp8Format's values


def short_name(symbol):
    m = re.search(r"attention_kernel.*?(Sparse|Csr)Keys.*?Fp8FormatE(\d)(?:ELS\w+?_(\d))?", symbol)
    if m:
        source, main, extra = m.group(1), FORMATS[m.group(2)], m.group(3) and FORMATS[m.group(3)]
        formats = main + (f", extra {extra}" if extra and extra != main else "")
        return f"attention<{source}, {formats}, {workgroup_heads(symbol)} heads>"
    m = re.search(r"(\d+)([a-z_]+_kernel)", symbol)
    return m.group(2) if m else symbol


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

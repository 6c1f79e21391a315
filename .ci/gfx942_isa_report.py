"""Static ISA report and budget checks for the gfx942 kernels (docs/design.md, section 5: the compile check).

Reads the assembly clang emits for each kernels/gfx942/*.hip source (device-only, gfx942) and prints, per kernel:
registers, LDS, scratch, the waves per SIMD they allow, and for the attention kernels the instruction mix of one
key tile (the hot loop: the backward-branch loop with the most MFMAs, minus the paths the kernel marks rare
(isa_rare_path() in primitives.h)). Exits non-zero when a kernel uses scratch, spills, calls a function, or an
attention kernel has no bf16 MFMA in its hot loop or exceeds its register/LDS budget.

Cycle model (one SIMD, wave64): v_mfma_f32_16x16x16_bf16 = 16 cycles (MI300X: 1307 TFLOP/s at 2.1 GHz over
1216 SIMDs = 512 FLOP/clk, and one MFMA is 8192 FLOP); a VALU instruction = 4 cycles (16 lanes a cycle),
transcendentals 16; an LDS instruction = 4 issue cycles. Target: per key, (VALU + LDS) cycles at most
half of the MFMA cycles.
"""

import re
import sys

import yaml

KEYS_PER_TILE = 16
MFMA_PER_TILE = 32  # per wave: 16 keys x 16 heads x 256 dims, QK and PV, 16x16x16 each
HEADS_PER_WORKGROUP = 64
WAVES_PER_WORKGROUP = 8
DESIGNED_WAVES_PER_SIMD = 2  # attention: 8 waves a workgroup, one workgroup per CU (two 32 KiB key tiles in LDS)
MFMA = "v_mfma_f32_16x16x16_bf16"
TRANSCENDENTAL = re.compile(r"^v_(exp|log|rcp|rsq|sqrt|sin|cos)_")
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
    doc = re.search(r"^\s*\.amdgpu_metadata\n(.*?)^\s*\.end_amdgpu_metadata", asm, re.M | re.S).group(1)
    return {k[".symbol"].removesuffix(".kd"): k for k in yaml.safe_load(doc)["amdhsa.kernels"]}


def rare_lines(lines):
    """Indices of lines in marked rare paths: from the conditional branch that skips a marked block to the label
    it skips to (the marker is an asm comment the compiler may move within the block, never out of it)."""
    rare = set()
    for i, line in enumerate(lines):
        if line.strip() != RARE_MARK:
            continue
        branch = next(j for j in range(i, -1, -1) if re.match(r"^\s*s_cbranch_\w+\s+\.LBB", lines[j]))
        target = re.search(r"(\.LBB\w+)", lines[branch]).group(1)
        end = next(j for j in range(branch, len(lines)) if lines[j].startswith(target + ":"))
        rare.update(range(branch + 1, end))
    return rare


def instructions(lines):
    """(mnemonic, line) for each instruction outside marked rare paths; labels, directives and comments dropped."""
    rare = rare_lines(lines)
    out = []
    for i, line in enumerate(lines):
        text = line.strip()
        if i in rare or not text or text.startswith((";", ".")) or re.match(r"^[\w.$%]+:", text):
            continue
        out.append((text.split()[0], text))
    return out


def hot_loop(lines):
    """Lines of the backward-branch loop with the most MFMAs (the key-tile loop), or None."""
    labels = {}
    for i, line in enumerate(lines):
        m = re.match(r"^(\.LBB\w+):", line)
        if m:
            labels[m.group(1)] = i
    best = None
    for i, line in enumerate(lines):
        m = re.match(r"^\s*s_(?:cbranch_\w+|branch)\s+(\.LBB\S+)", line)
        if m and m.group(1) in labels and labels[m.group(1)] < i:
            body = lines[labels[m.group(1)] : i + 1]
            count = sum(MFMA in l for l in body)
            if best is None or count > best[0]:
                best = (count, body)
    return best[1] if best else None


def mix(lines):
    counts = {"mfma": 0, "valu": 0, "valu_cycles": 0, "lds": 0, "vmem": 0, "salu": 0, "barrier": 0}
    for mnemonic, _ in instructions(lines):
        if mnemonic.startswith("v_mfma"):
            counts["mfma"] += 1
        elif mnemonic.startswith("v_"):
            counts["valu"] += 1
            counts["valu_cycles"] += 16 if TRANSCENDENTAL.match(mnemonic) else 4
        elif mnemonic.startswith("ds_"):
            counts["lds"] += 1
        elif mnemonic.startswith(("global_", "buffer_", "flat_", "scratch_")):
            counts["vmem"] += 1
        elif mnemonic == "s_barrier":
            counts["barrier"] += 1
        elif mnemonic.startswith("s_"):
            counts["salu"] += 1
    return counts


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
    print(f"{'kernel':44} {'VGPR':>4} {'AGPR':>4} {'SGPR':>4} {'LDS':>6} {'scratch':>7} {'waves/SIMD':>10}")
    loops = []
    for path in paths:
        asm = open(path).read()
        meta = metadata_of(asm)
        for symbol, lines in kernels_of(asm, meta).items():
            m = meta[symbol]
            name = short_name(symbol)
            waves = waves_per_simd(m)
            print(f"{name:44} {m['.vgpr_count'] - m.get('.agpr_count', 0):>4} {m.get('.agpr_count', 0):>4} "
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
                if loop is None or mix(loop)["mfma"] == 0:
                    failures.append(f"{name}: no {MFMA} in a loop")
                    continue
                if waves < DESIGNED_WAVES_PER_SIMD or m[".group_segment_fixed_size"] > 65536:
                    failures.append(f"{name}: over its register/LDS budget")
                counts = mix(loop)
                trips = max(counts["mfma"] // MFMA_PER_TILE, 1)  # tiles a loop trip runs (the kernel unrolls by 2)
                loops.append((name, {k: v / trips for k, v in counts.items()}, mix(lines)))
    print()
    print(f"Per key tile ({KEYS_PER_TILE} keys) and wave, hot loop without marked rare paths "
          f"(a workgroup = {WAVES_PER_WORKGROUP} waves on 4 SIMDs = {HEADS_PER_WORKGROUP} heads):")
    print(f"{'kernel':44} {'MFMA':>5} {'cycles':>6} {'VALU':>5} {'cycles':>6} {'LDS':>4} {'VMEM':>5} {'SALU':>5} "
          f"{'barrier':>7} {'(VALU+LDS)/MFMA':>16}")
    for name, loop, _ in loops:
        mfma_cycles = 16 * loop["mfma"]
        other = loop["valu_cycles"] + 4 * loop["lds"]
        ratio = other / mfma_cycles
        print(f"{name:44} {loop['mfma']:>5.0f} {mfma_cycles:>6.0f} {loop['valu']:>5.0f} {loop['valu_cycles']:>6.0f} "
              f"{loop['lds']:>4.0f} {loop['vmem']:>5.0f} {loop['salu']:>5.0f} {loop['barrier']:>7.0f} {ratio:>16.2f}")
    print()
    for name, loop, _ in loops:
        mfma_cycles = 16 * loop["mfma"] / KEYS_PER_TILE
        other = (loop["valu_cycles"] + 4 * loop["lds"]) / KEYS_PER_TILE
        verdict = "meets" if other <= mfma_cycles / 2 else f"misses by {other / (mfma_cycles / 2):.2f}x"
        print(f"{name}: per key and wave {mfma_cycles:.0f} MFMA cycles, {other:.1f} VALU+LDS cycles: {verdict} the "
              f"target of half")
    if failures:
        print("\nFAILED:\n  " + "\n  ".join(failures))
        return 1
    print("\nOK: bf16 MFMA in every attention kernel's hot loop, no scratch, no spills, no calls, budgets met")
    return 0


def short_name(symbol):
    m = re.search(r"attention_kernel.*?(Sparse|Csr)Keys.*?Fp8FormatE(\d)", symbol)
    if m:
        return f"attention<{m.group(1)}, {'e4m3fn' if m.group(2) == '1' else 'e4m3fnuz'}>"
    m = re.search(r"(\d+)([a-z_]+_kernel)", symbol)
    return m.group(2) if m else symbol


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

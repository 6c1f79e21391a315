"""Benchmark of flash_mla.sparse_attn_decode on FlashMLA's MODEL1 cases, the seed's cases and the peak cases.

Cases are built the way FlashMLA's own test harness builds them (tests/test_flash_mla_sparse_decoding.py): per
batch row a sequence length drawn around s_k, unique top-k token positions per query row mapped through a shuffled
block table, extra_topk_length drawn in [0, extra_topk], attention sinks with +-inf among them, sm_scale 512^-0.55.
Caches use the "flashmla" layout (float8_e4m3fn, padded blocks), so an installed ``flash_mla`` package runs on the
very same tensors and is timed beside ours. q and the index tensors are views into larger buffers, every dimension
one longer and the last 128 longer, as FlashMLA's harness makes them (its kernelkit ``non_contiguousify``) and as
engines pass them: a benchmark of tidy tensors would flatter either kernel.

FLOPs = 2 * h_q * attended * (512 + 512), attended = query rows x top-k positions inside their lengths;
bytes = Q + O (bf16) + unique selected tokens x 576 (FlashMLA's counting, so numbers compare with its table).

With a FlashMLA checkout whose package is installed (--flashmla-dir, or $FLASHMLA_DIR), the cases are FlashMLA's
26 MODEL1 cases as its own harness generates them (flashmla_harness.py), and both ops run on those very tensors.
--head-shards adds 8/16/32-head slices of the 64-head cases (tensor-parallel shards) against FlashMLA on all 64.
Every case is checked against the float64 reference (out and lse) before it is timed, unless --no-check.

Usage: python benchmarks/bench_sparse_decode.py [--device cuda|cpu] [--cases quick|flashmla|seed|all]
       [--flashmla-dir DIR] [--head-shards] [--json out.json] [--chart out.png] [--no-check]
"""

import argparse
import dataclasses
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import flash_mla_rocm as fm  # noqa: E402
from common import (  # noqa: E402
    best_device,
    device_name,
    geomean,
    print_table,
    time_eager_us,
    time_graph_us,
    write_chart,
    write_json,
)
from flash_mla_rocm import reference  # noqa: E402
from flashmla_harness import BATCHES, CONFIGS, harness_cases, import_harness  # noqa: E402
from flash_mla_rocm.testing import (  # noqa: E402
    LATENT_RMS,
    assert_lse_close,
    assert_out_close,
    random_latent,
    random_query,
)

REFERENCE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "reference")
SM_SCALE = 512**-0.55  # FlashMLA's harness value


@dataclasses.dataclass
class Case:
    group: str
    b: int
    h_q: int
    topk: int
    block_size: int
    extra_topk: int = 0
    extra_block_size: int = 64
    extra_len: bool = False
    s_k: int = 16384
    s_q: int = 2

    @property
    def label(self):
        extra = f"+{self.extra_topk}" if self.extra_topk else ""
        return f"{self.group} h{self.h_q} b{self.b} k{self.topk}{extra}"


def all_cases():
    flashmla = []
    for group, h_q, extra_topk, extra_block, extra_len in CONFIGS:
        flashmla += [Case(group, b, h_q, 128, 256, extra_topk, extra_block, extra_len) for b in BATCHES]
    flashmla += [Case("PEAK", 148, h_q, 16384, 64, s_k=32768) for h_q in (64, 128)]
    seed = [Case(f"SEED-CFG{i + 1}", b, h_q, topk, 64) for i, (h_q, topk) in enumerate([(64, 640), (128, 1152)])
            for b in BATCHES]  # fmt: skip
    return flashmla, seed


def select_cases(which, device):
    flashmla, seed = all_cases()
    if which == "quick" or (which == "auto" and device == "cpu"):
        # What a CPU finishes in a minute: the b = 2 row of every configuration.
        return [c for c in flashmla + seed if c.b == 2]
    return {"flashmla": flashmla, "seed": seed, "all": flashmla + seed, "auto": flashmla + seed}[which]


def make_scope(b, s_q, s_k, topk, block_size, with_length, device, gen):
    """One paged cache with its indices, FlashMLA-style. Returns (kv, indices, topk_length or None)."""
    seqlens = (torch.randn(b, generator=gen, device=device) * (s_k / 2) + s_k).clamp_min(s_q).long()
    align = 4 * block_size
    max_len = -(-int(seqlens.max()) // align) * align
    blocks_per_seq = max_len // block_size
    block_table = torch.randperm(b * blocks_per_seq, generator=gen, device=device).view(b, blocks_per_seq)
    scores = torch.rand(b * s_q, max_len, generator=gen, device=device)
    scores[torch.arange(max_len, device=device) >= seqlens.repeat_interleave(s_q)[:, None]] = -1
    positions = scores.topk(topk, dim=-1).indices.view(b, s_q, topk)
    inside = positions < seqlens.view(b, 1, 1)
    rows = torch.arange(b, device=device).view(b, 1, 1)
    indices = block_table[rows, positions // block_size] * block_size + positions % block_size
    indices = torch.where(inside, indices, -1).to(torch.int32)
    kv = fm.quantize_kv(random_latent(b * blocks_per_seq, block_size, device=device, generator=gen), "flashmla")
    length = torch.randint(0, topk + 1, (b,), generator=gen, device=device, dtype=torch.int32) if with_length else None
    return kv, indices, length


def engine_view(t):
    """t's values in a view into a larger buffer (every dimension one longer, the last 128 longer)."""
    buffer = torch.zeros([n + 1 for n in t.shape[:-1]] + [t.shape[-1] + 128], dtype=t.dtype, device=t.device)
    view = buffer[tuple(slice(0, n) for n in t.shape)]
    view.copy_(t)
    return view


def make_inputs(case, device, seed=0):
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    kv, indices, _ = make_scope(case.b, case.s_q, case.s_k, case.topk, case.block_size, False, device, gen)
    args = {"kv": kv, "indices": indices, "sm_scale": SM_SCALE, "kv_layout": "flashmla"}
    if case.extra_topk:
        extra = make_scope(case.b, case.s_q, case.s_k, case.extra_topk, case.extra_block_size, case.extra_len, device, gen)
        args.update(extra_kv=extra[0], extra_indices=extra[1], extra_topk_length=extra[2])
    args["q"] = random_query(case.b, case.s_q, case.h_q, key_rms=LATENT_RMS, sm_scale=SM_SCALE, device=device, generator=gen)
    sink = torch.randn(case.h_q, generator=gen, device=device)
    sink[torch.randn(case.h_q, generator=gen, device=device) > 1.0] = float("inf")
    sink[torch.randn(case.h_q, generator=gen, device=device) < -1.0] = float("-inf")
    args["attn_sink"] = sink
    for name in ("q", "indices", "extra_indices"):
        if args.get(name) is not None:
            args[name] = engine_view(args[name])
    return args


def flop_and_bytes(case, args):
    b, s_q, h_q = case.b, case.s_q, case.h_q
    attended, unique = 0, 0
    for idx, length in [(args["indices"], None), (args.get("extra_indices"), args.get("extra_topk_length"))]:
        if idx is None:
            continue
        topk = idx.shape[-1]
        if length is None:
            attended += b * s_q * topk
            unique += int(idx[idx >= 0].unique().numel())
        else:
            attended += int(length.clamp(0, topk).sum()) * s_q
            mask = torch.arange(topk, device=idx.device) < length.view(b, 1, 1)
            unique += int(idx[mask & (idx >= 0)].unique().numel())
    flop = 2 * h_q * attended * (512 + 512)
    bytes_moved = 2 * b * s_q * h_q * 512 * 2 + unique * 576
    return flop, bytes_moved


def load_flashmla():
    try:
        import flash_mla
    except ImportError:
        return None
    return flash_mla


def flashmla_runner(flash_mla, args):
    meta, _ = flash_mla.get_mla_metadata()

    def run():
        return flash_mla.flash_mla_with_kvcache(
            args["q"], args["kv"], None, None, 512, meta, None, args["sm_scale"], False, True, args["indices"],
            args["attn_sink"], args.get("extra_kv"), args.get("extra_indices"), None, args.get("extra_topk_length"),
        )  # fmt: skip

    return run


def reference_rows(path, key):
    try:
        with open(path) as f:
            return {key(r): r for r in json.load(f)}
    except (OSError, ValueError):
        return {}


SEED_H20_TFLOPS = {  # the seed's H20 FlashMLA table (../shared/reference/seed_h20_reference.md)
    ("SEED-CFG1", 2): 8.7, ("SEED-CFG1", 64): 77.0, ("SEED-CFG1", 74): 88.9, ("SEED-CFG1", 128): 92.1,
    ("SEED-CFG1", 148): 98.2, ("SEED-CFG1", 256): 101.3, ("SEED-CFG2", 2): 24.7, ("SEED-CFG2", 64): 105.9,
    ("SEED-CFG2", 74): 110.4, ("SEED-CFG2", 128): 112.3, ("SEED-CFG2", 148): 114.1, ("SEED-CFG2", 256): 117.1,
    ("PEAK-64", 148): 127.2, ("PEAK-128", 148): 127.4,
}  # fmt: skip


def measure(label, meta, args, flop, bytes_moved, device, check, run_flashmla=None):
    """One benchmark row: ours (and FlashMLA's, given its runner on the same tensors) checked and timed."""
    ours = lambda: fm.sparse_attn_decode(**args)  # noqa: E731
    row = {"case": label, **meta, "flop": flop, "bytes": bytes_moved}
    out, lse = ours()
    if check:
        ref_out, ref_lse = reference.sparse_attn_decode(**args)
        assert_out_close(out, ref_out, f"{label} out")
        assert_lse_close(lse, ref_lse, f"{label} lse")
        row["correct"] = True
    row["us_eager"] = time_eager_us(ours, device)
    row["us_graph"] = time_graph_us(ours) if device == "cuda" else None
    row["us"] = row["us_graph"] or row["us_eager"]
    if run_flashmla is not None:
        their_out, their_lse = run_flashmla()
        if check:
            assert_out_close(their_out, ref_out, f"FlashMLA {label} out")
            assert_lse_close(their_lse, ref_lse, f"FlashMLA {label} lse")
        row["flashmla_us"] = time_graph_us(run_flashmla)
        row["flashmla_tflops"] = flop / row["flashmla_us"] / 1e6
        row["speedup"] = row["flashmla_us"] / row["us"]
    row["tflops"] = flop / row["us"] / 1e6
    row["gbps"] = bytes_moved / row["us"] / 1e3
    theirs = f", FlashMLA {row['flashmla_us']:.1f} us ({row['speedup']:.2f}x)" if run_flashmla is not None else ""
    print(f"  {label}: {row['us']:.1f} us, {row['tflops']:.2f} TFLOPS{theirs}", flush=True)
    return row


def copy_bandwidth_gbps():
    """The card's device-to-device copy rate (read + write bytes a second), the memory limit's yardstick."""
    src = torch.empty(1 << 30, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    return 2 * src.numel() / time_graph_us(lambda: dst.copy_(src), calls_per_graph=5) / 1e3


def head_shard_rows(row, args, device, check, bandwidth):
    """Tensor-parallel head shards of a 64-head CONFIG1 / CONFIG3 case: ours on its first 8, 16, 32 heads (q and the
    sinks sliced as views) against FlashMLA on all 64 (engines pad a shard to 64 heads for it), and the memory limit:
    584 bytes per distinct selected key (the row's byte count less Q and O, over 576) at the measured copy bandwidth
    (GB/s)."""
    if row["h_q"] != 64 or not row["group"].startswith(("CONFIG1", "CONFIG3")):
        return []
    b, s_q = args["q"].shape[:2]
    selected_keys = (row["bytes"] - 2 * 2 * b * s_q * 64 * 512) / 576
    shard_rows = []
    for heads in (8, 16, 32):
        shard = dict(args, q=args["q"][:, :, :heads], attn_sink=args["attn_sink"][:heads])
        meta = {"group": row["group"], "b": row["b"], "h_q": heads}
        shard_row = measure(f"{row['case']} shard h{heads}", meta, shard, row["flop"] * heads / 64, selected_keys * 584,
                            device, check)  # fmt: skip
        shard_row["memory_limit_us"] = selected_keys * 584 / bandwidth / 1e3
        shard_row["over_memory_limit"] = shard_row["us"] / shard_row["memory_limit_us"]
        if row.get("flashmla_us"):
            shard_row["flashmla_padded_us"] = row["flashmla_us"]
            shard_row["speedup_vs_padded"] = row["flashmla_us"] / shard_row["us"]
        shard_rows.append(shard_row)
    return shard_rows


SHARD_COLUMNS = [("case", "case", "{}"), ("us", "us", "{:.1f}"), ("flop", "FLOP", "{:.3g}"),
                 ("bytes", "key bytes", "{:.3g}"), ("memory_limit_us", "memory limit us", "{:.1f}"),
                 ("over_memory_limit", "x memory limit", "{:.2f}"), ("flashmla_padded_us", "FlashMLA h64 us", "{:.1f}"),
                 ("speedup_vs_padded", "FlashMLA h64/ours", "{:.2f}")]  # fmt: skip


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default=None)
    parser.add_argument("--cases", default="auto", choices=["auto", "quick", "flashmla", "seed", "all"])
    parser.add_argument("--flashmla-dir", default=os.environ.get("FLASHMLA_DIR"),
                        help="a FlashMLA checkout (default $FLASHMLA_DIR): race on the 26 cases its own harness "
                        "generates (--cases is then ignored)")
    parser.add_argument("--head-shards", action="store_true", help="also time 8/16/32-head shards of 64-head cases")
    parser.add_argument("--json", default=None)
    parser.add_argument("--chart", default=None)
    parser.add_argument("--no-check", action="store_true", help="skip the float64 reference check")
    opts = parser.parse_args()
    device = opts.device or best_device()
    flash_mla = load_flashmla() if device == "cuda" else None
    harness = import_harness(opts.flashmla_dir) if flash_mla is not None and opts.flashmla_dir else None
    h200 = reference_rows(os.path.join(REFERENCE_DIR, "flashmla_model1_h200.json"),
                          lambda r: (r["h_q"], r["b"], r["topk"], r["extra_topk"] or 0, r["extra_block"] or 0))
    inputs = "FlashMLA's harness (tests/lib.py)" if harness is not None else "this benchmark's generator"
    print(f"flash_mla.sparse_attn_decode on {device_name(device)}; FlashMLA alongside: {flash_mla is not None}; "
          f"inputs from {inputs}; every case checked against the float64 reference: {not opts.no_check}")

    shards = opts.head_shards and device == "cuda"
    bandwidth = copy_bandwidth_gbps() if shards else None
    rows, shard_rows = [], []

    def record(row, args):
        rows.append(row)
        if shards:
            shard_rows.extend(head_shard_rows(row, args, device, not opts.no_check, bandwidth))

    if harness is not None:
        for case in harness_cases(harness, flash_mla):
            meta = {"group": case.group, "b": case.b, "h_q": case.h_q, "topk": case.topk, "extra_topk": case.extra_topk}
            record(measure(case.label, meta, case.args, case.flop, case.bytes, device, not opts.no_check,
                           case.run_flashmla), case.args)  # fmt: skip
    else:
        for case in select_cases(opts.cases, device):
            args = make_inputs(case, device)
            flop, bytes_moved = flop_and_bytes(case, args)
            theirs = flashmla_runner(flash_mla, args) if flash_mla is not None else None
            row = measure(case.label, dataclasses.asdict(case), args, flop, bytes_moved, device, not opts.no_check, theirs)
            ref = h200.get((case.h_q, case.b, case.topk, case.extra_topk, case.extra_block_size if case.extra_topk else 0))
            row["h200_ref_us"] = ref["us"] if ref and case.group.startswith(("CONFIG", "PEAK")) else None
            seed_key = (f"PEAK-{case.h_q}", case.b) if case.group == "PEAK" else (case.group, case.b)
            row["seed_h20_tflops"] = SEED_H20_TFLOPS.get(seed_key)
            record(row, args)

    columns = [("case", "case", "{}"), ("flop", "FLOP", "{:.3g}"), ("bytes", "bytes", "{:.3g}"),
               ("us_graph", "us (graph)", "{:.1f}"), ("us_eager", "us (eager)", "{:.1f}"), ("tflops", "TFLOPS", "{:.2f}"),
               ("gbps", "GB/s", "{:.1f}"), ("flashmla_us", "FlashMLA us", "{:.1f}"),
               ("speedup", "FlashMLA/ours", "{:.2f}"), ("h200_ref_us", "FlashMLA H200 ref us", "{:.1f}"),
               ("seed_h20_tflops", "seed H20 TFLOPS", "{:.1f}")]  # fmt: skip
    if device != "cuda":  # the GPU-only columns
        columns = [c for c in columns if c[0] not in ("us_graph", "flashmla_us", "speedup", "h200_ref_us")]
    print()
    print_table(rows, columns)
    flashmla_rows = [r for r in rows if r["group"].startswith(("CONFIG", "PEAK"))]
    summary = {"device": device_name(device), "inputs": inputs, "checked": not opts.no_check,
               "geomean_tflops": geomean([r["tflops"] for r in rows]),
               "flashmla_cases_geomean_tflops": geomean([r["tflops"] for r in flashmla_rows])}  # fmt: skip
    if flash_mla is not None and flashmla_rows:
        summary["flashmla_geomean_tflops"] = geomean([r["flashmla_tflops"] for r in flashmla_rows])
        summary["ratio_to_flashmla"] = summary["flashmla_cases_geomean_tflops"] / summary["flashmla_geomean_tflops"]
        summary["min_ratio_to_flashmla"] = min(r["speedup"] for r in flashmla_rows)
    if shard_rows:
        print(f"\nHead shards (copy bandwidth {bandwidth:.0f} GB/s):")
        print_table(shard_rows, SHARD_COLUMNS)
        summary["copy_bandwidth_gbps"] = bandwidth
    if not opts.no_check:
        print(f"\nAll {len(rows) + len(shard_rows)} cases matched the float64 reference (out and lse gates).")
    print("\n" + "  ".join(f"{k}: {v:.3f}" if isinstance(v, float) else f"{k}: {v}" for k, v in summary.items()))
    if opts.json:
        write_json(opts.json, {"summary": summary, "rows": rows, "head_shards": shard_rows})
    if opts.chart:
        series = {"ours": [r["tflops"] for r in rows]}
        if flash_mla is not None:
            series["FlashMLA"] = [r["flashmla_tflops"] for r in rows]
        write_chart(opts.chart, [r["case"] for r in rows], series, "TFLOPS", f"sparse_attn_decode, {device_name(device)}")


if __name__ == "__main__":
    main()

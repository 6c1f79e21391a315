"""Benchmark of flash_mla.decode (CSR token ranges over separate nope/rope/scale tensors), contexts 1k to 64k.

FLOPs = 2 * H * tokens * (512 + 512); bytes = Q + O (bf16) + tokens x (448 fp8 + 128 rope + 28 scale bytes).
Every case is checked against the float64 reference before it is timed, unless --no-check.

Usage: python benchmarks/bench_decode.py [--device cuda|cpu] [--json out.json] [--chart out.png] [--no-check]
"""

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import flash_mla_rocm as fm  # noqa: E402
from common import best_device, device_name, geomean, print_table, time_eager_us, time_graph_us, write_chart, write_json  # noqa: E402,E501
from flash_mla_rocm import reference  # noqa: E402
from flash_mla_rocm.testing import assert_out_close, make_decode_case  # noqa: E402

TOKEN_BYTES = 448 + 2 * 64 + 4 * 7


def cases(device):
    if device == "cpu":  # what a CPU finishes in a minute
        return [(1, 16, 1024), (4, 16, 4096), (2, 64, 2048)]
    return [(batch, heads, context) for heads in (16, 64, 128) for batch in (1, 32, 132)
            for context in (1024, 4096, 16384, 65536) if batch * context <= 132 * 16384]  # fmt: skip


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default=None)
    parser.add_argument("--json", default=None)
    parser.add_argument("--chart", default=None)
    parser.add_argument("--no-check", action="store_true", help="skip the float64 reference check")
    opts = parser.parse_args()
    device = opts.device or best_device()
    checked = not opts.no_check
    print(f"flash_mla.decode on {device_name(device)}; every case checked against the float64 reference: {checked}")
    rows = []
    for batch, heads, context in cases(device):
        args = make_decode_case([context] * batch, heads, torch.float8_e4m3fn, device=device, seed=batch + context)
        run = lambda: fm.decode(**args)  # noqa: E731
        out = run()
        if checked:
            key_dtype = None if out.is_cpu else torch.bfloat16  # GPU keys are bf16 (README, "Numerics")
            assert_out_close(out, reference.decode(**args, key_dtype=key_dtype), f"B{batch} H{heads} T{context}")
        tokens = batch * context
        row = {"case": f"B{batch} H{heads} ctx{context}", "batch": batch, "heads": heads, "context": context,
               "flop": 2 * heads * tokens * 1024, "bytes": 2 * batch * heads * 512 * 2 + tokens * TOKEN_BYTES}  # fmt: skip
        row["us_eager"] = time_eager_us(run, device)
        row["us_graph"] = time_graph_us(run) if device == "cuda" else None
        row["us"] = row["us_graph"] or row["us_eager"]
        row["tflops"] = row["flop"] / row["us"] / 1e6
        row["gbps"] = row["bytes"] / row["us"] / 1e3
        rows.append(row)
        print(f"  {row['case']}: {row['us']:.1f} us, {row['tflops']:.2f} TFLOPS", flush=True)
    print()
    columns = [("case", "case", "{}"), ("flop", "FLOP", "{:.3g}"), ("bytes", "bytes", "{:.3g}"),
               ("us_graph", "us (graph)", "{:.1f}"), ("us_eager", "us (eager)", "{:.1f}"), ("tflops", "TFLOPS", "{:.2f}"),
               ("gbps", "GB/s", "{:.1f}")]  # fmt: skip
    print_table(rows, [c for c in columns if device == "cuda" or c[0] != "us_graph"])  # graphs: GPU only
    if checked:
        print(f"\nAll {len(rows)} cases matched the float64 reference (FlashMLA's output gate).")
    summary = {"device": device_name(device), "checked": checked, "geomean_tflops": geomean([r["tflops"] for r in rows])}
    print(f"\ndevice: {summary['device']}  geomean_tflops: {summary['geomean_tflops']:.3f}")
    if opts.json:
        write_json(opts.json, {"summary": summary, "rows": rows})
    if opts.chart:
        write_chart(opts.chart, [r["case"] for r in rows], {"ours": [r["tflops"] for r in rows]}, "TFLOPS",
                    f"decode, {device_name(device)}")


if __name__ == "__main__":
    main()

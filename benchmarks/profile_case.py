"""Runs one benchmark case a few times, for a profiler (ncu / compute-sanitizer) to look at.

Usage: python benchmarks/profile_case.py GROUP H_Q B   e.g.  python benchmarks/profile_case.py PEAK 64 148
"""

import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import flash_mla_rocm as fm  # noqa: E402
from bench_sparse_decode import all_cases, make_inputs  # noqa: E402


def main():
    group, h_q, b = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    flashmla, seed = all_cases()
    case = next(c for c in flashmla + seed if c.group == group and c.h_q == h_q and c.b == b)
    args = make_inputs(case, "cuda")
    for _ in range(3):
        fm.sparse_attn_decode(**args)
    torch.cuda.synchronize()
    print(f"ran {case.label}")


if __name__ == "__main__":
    main()

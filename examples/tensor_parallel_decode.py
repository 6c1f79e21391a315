"""Tensor-parallel sparse MLA decode with torch.distributed: each rank decodes its shard of the query heads over the
same cache and indices, and the shards are all-gathered into the full output.

    torchrun --nproc-per-node 2 examples/tensor_parallel_decode.py                      # a GPU a rank, NCCL
    torchrun --nproc-per-node 2 examples/tensor_parallel_decode.py --heads-per-shard 16 # TP 8's shards, 4 a rank
    torchrun --nproc-per-node 2 examples/tensor_parallel_decode.py --device cpu         # CPU ranks, gloo

What each rank passes: MLA's compressed latent (K = V) is shared by every head, so under tensor parallelism every
rank holds the whole cache and the same indices, top-k lengths and extra cache; it passes q[:, :, its heads] and
attn_sink[its heads] (the sink is per head), and gets back out[:, :, its heads] and lse[:, its heads]. Nothing else
changes: sm_scale, kv_layout and the cache are the same on every rank. The op takes any head count, so a rank
passes its shard as it is (16 heads at TP 8 of 128), with no padding to 64.

The gathered result is checked against the same call with all heads on one device (within FlashMLA's gates: a
shard runs other split counts and head groups, so the low bits may differ) and against the float64 reference.
Exits non-zero if a check fails.
"""

import argparse
import os
import sys

import torch
import torch.distributed as dist

import flash_mla_rocm as fm
from flash_mla_rocm import reference
from flash_mla_rocm.testing import assert_lse_close, assert_out_close, case_to, make_sparse_case


def decode_heads(case, heads):
    """sparse_attn_decode of the heads in `heads` (a slice) of `case`: what one tensor-parallel shard computes."""
    shard = dict(case, q=case["q"][:, :, heads], attn_sink=case["attn_sink"][heads])
    return fm.sparse_attn_decode(**shard)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--heads", type=int, default=128, help="query heads of the model")
    parser.add_argument("--heads-per-shard", type=int, default=None, help="default: heads / world size")
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args()

    dist.init_process_group("nccl" if args.device == "cuda" else "gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    if args.device == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", rank)))
        device = torch.device("cuda", torch.cuda.current_device())
    else:
        device = torch.device("cpu")

    heads_per_shard = args.heads_per_shard or args.heads // world
    shards = args.heads // heads_per_shard
    if shards * heads_per_shard != args.heads or shards % world != 0:
        raise SystemExit(f"{args.heads} heads do not split into shards of {heads_per_shard} evenly over {world} ranks")
    shards_per_rank = shards // world

    # The same cache, indices and queries on every rank (one seed), as a replicated cache would be.
    case = make_sparse_case(
        args.batch, 2, args.heads, 512, 64, 64, "flashmla", torch.float8_e4m3fn, extra_topk=128, extra_block_size=2,
        topk_length=True, extra_topk_length=True, attn_sink=True, invalid_fraction=0.05, seed=2026,
    )  # fmt: skip
    case = case_to(case, device)

    mine = [rank * shards_per_rank + i for i in range(shards_per_rank)]
    results = [decode_heads(case, slice(s * heads_per_shard, (s + 1) * heads_per_shard)) for s in mine]
    out = torch.cat([r[0] for r in results], dim=2).contiguous()  # [b, s_q, heads of this rank, 512]
    lse = torch.cat([r[1] for r in results], dim=1).contiguous()  # [b, heads of this rank, s_q]

    gathered_out = [torch.empty_like(out) for _ in range(world)]
    gathered_lse = [torch.empty_like(lse) for _ in range(world)]
    dist.all_gather(gathered_out, out)
    dist.all_gather(gathered_lse, lse)
    full_out, full_lse = torch.cat(gathered_out, dim=2), torch.cat(gathered_lse, dim=1)

    single_out, single_lse = fm.sparse_attn_decode(**case)
    ref_out, ref_lse = reference.sparse_attn_decode(**case_to(case, "cpu"))
    assert_out_close(full_out.cpu(), single_out.cpu(), "tensor-parallel out vs one device")
    assert_lse_close(full_lse.cpu(), single_lse.cpu(), "tensor-parallel lse vs one device")
    assert_out_close(full_out.cpu(), ref_out, "tensor-parallel out vs reference")
    assert_lse_close(full_lse.cpu(), ref_lse, "tensor-parallel lse vs reference")
    differ = (full_out.float() - single_out.float()).abs().max().item()
    equal = torch.equal(full_out, single_out) and torch.equal(full_lse, single_lse)
    where = f"{device} ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else "cpu"
    first, last = mine[0] * heads_per_shard, (mine[-1] + 1) * heads_per_shard - 1
    match = "bit for bit" if equal else f"max |d out| {differ:.3g}"
    # One write a line, so that the ranks' lines do not interleave.
    sys.stdout.write(
        f"rank {rank}/{world} on {where}: heads {first}..{last} in {shards_per_rank} shard(s) of {heads_per_shard}; "
        f"gathered {args.heads} heads match one device ({match}) and the reference\n"
    )
    sys.stdout.flush()
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()

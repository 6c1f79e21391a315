"""Tensor-parallel decode through torch.distributed (examples/tensor_parallel_decode.py under torchrun): 128 heads
sharded over 2 ranks, 64 a rank or 16 a shard (as TP 8 shards them), all-gathered and checked against the same
call on one device and the float64 reference. CPU ranks (gloo) always; a GPU a rank (NCCL) with two GPUs."""

import os
import re
import subprocess
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE = os.path.join(ROOT, "examples", "tensor_parallel_decode.py")


def _gpus_with_kernels():
    has_kernels = torch._C._dispatch_has_kernel_for_dispatch_key("flash_mla::decode", "CUDA")
    return torch.cuda.device_count() if torch.cuda.is_available() and has_kernels else 0


@pytest.mark.parametrize("heads_per_shard", [64, 16])
@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_tensor_parallel_decode_matches_one_device(device, heads_per_shard):
    if device == "cuda" and _gpus_with_kernels() < 2:
        pytest.skip("the NCCL run needs two GPUs with this build's kernels")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", EXAMPLE,
               "--device", device, "--heads", "128", "--heads-per-shard", str(heads_per_shard)]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    reports = re.findall(r"rank \d/2 on .*? match one device .*? and the reference", result.stdout)
    assert len(reports) == 2, result.stdout
    print("\n".join(reports))

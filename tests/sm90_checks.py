"""Test-only extension with the sm90 dequantization primitives (kernels/sm90/testing/primitive_checks.cu), built on
first use on a machine with a Hopper GPU and a CUDA torch. It registers ``torch.ops.flash_mla_sm90_checks`` and is
never part of the wheel."""

import os

import torch
from torch.utils import cpp_extension

NAMESPACE = "flash_mla_sm90_checks"
SOURCE = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "kernels", "sm90", "testing", "primitive_checks.cu"
)

_ops = None


def sm90_ops():
    """``torch.ops.flash_mla_sm90_checks``, built and loaded on the first call."""
    global _ops
    if _ops is None:
        cpp_extension.load(
            name=NAMESPACE,
            sources=[SOURCE],
            extra_cuda_cflags=["-O3", "-std=c++17", "-gencode=arch=compute_90a,code=sm_90a", "--use_fast_math"],
            is_python_module=False,
        )
        _ops = getattr(torch.ops, NAMESPACE)
    return _ops

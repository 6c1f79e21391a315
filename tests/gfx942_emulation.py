"""The gfx942 kernels under emulation (kernels/gfx942/emulation/hip_emulation.h), for the op tests.

On first use this builds a test-only extension from the binding layer (kernels/ops) and the gfx942 kernel sources,
compiled for the host CPU, which registers ``torch.ops.flash_mla_gfx942_emulated``: the flash_mla ops, same
schemas, running the gfx942 kernels on CPU tensors, and two ops that run single wave-wide primitives
(kernels/gfx942/emulation/primitive_checks.cpp). It is never part of the wheel.
"""

import os

import torch
from torch.utils import cpp_extension

from flash_mla_rocm import fake

NAMESPACE = "flash_mla_gfx942_emulated"
KERNELS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "kernels")


def sources():
    ops = [os.path.join(KERNELS, "ops", name) for name in ("sparse_attn_decode.cpp", "decode.cpp", "poison.cpp")]
    emulation = [
        os.path.join(KERNELS, "gfx942", "emulation", name)
        for name in ("registration.cpp", "emulated_kernels.cpp", "primitive_checks.cpp")
    ]
    return ops + emulation


_ops = None


def emulated_ops():
    """``torch.ops.flash_mla_gfx942_emulated``, built and loaded on the first call."""
    global _ops
    if _ops is None:
        cpp_extension.load(
            name=NAMESPACE,
            sources=sources(),
            extra_cflags=["-O2", "-DFLASH_MLA_GFX942_EMULATION"],
            is_python_module=False,
        )
        fake.register_fake_kernels(NAMESPACE)
        _ops = getattr(torch.ops, NAMESPACE)
    return _ops


def active():
    """Whether ``torch.ops.flash_mla`` is the emulated build now (the gfx942-emulated test device)."""
    return _ops is not None and torch.ops.flash_mla is _ops

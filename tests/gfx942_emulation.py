"""The gfx942 kernels under emulation (kernels/gfx942/emulation/include/hip/hip_runtime.h), for the op tests.

On first use this builds a test-only extension from the binding layer (kernels/ops) and the gfx942 kernel sources,
compiled for the host CPU, which registers ``torch.ops.flash_mla_gfx942_emulated``: the flash_mla ops, same
schemas, running the gfx942 kernels on CPU tensors, and ops that run single primitives (wave-wide moves, the MFMA,
the dequantization; kernels/gfx942/emulation/primitive_checks.cpp). It is never part of the wheel.

The kernel sources are the production ones, unchanged: the emulation's include folder comes first on the include
path, so their ``#include <hip/hip_runtime.h>`` finds the emulated HIP. Every C++ name of this build lives in the
namespace ``flash_mla_gfx942_emulated`` instead of ``flash_mla`` (a macro renames it), so no symbol of it is also a
symbol of the wheel's ``_C`` with another body.
"""

import os

import torch
from torch.utils import cpp_extension

NAMESPACE = "flash_mla_gfx942_emulated"
KERNELS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "kernels")


EMULATION = os.path.join(KERNELS, "gfx942", "emulation")


def sources():
    ops = [
        os.path.join(KERNELS, "ops", name)
        for name in ("sparse_attn_decode.cpp", "decode.cpp", "contract.cpp", "library.cpp", "poison.cpp", "workspace.cpp")
    ]
    emulation = [
        os.path.join(EMULATION, name)
        for name in ("registration.cpp", "backends.cpp", "emulated_kernels.cpp", "primitive_checks.cpp")
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
            extra_cflags=["-O2", f"-Dflash_mla={NAMESPACE}"],
            extra_include_paths=[os.path.join(EMULATION, "include")],
            is_python_module=False,
        )
        _ops = getattr(torch.ops, NAMESPACE)
    return _ops


def active():
    """Whether ``torch.ops.flash_mla`` is the emulated build now (the gfx942-emulated test device)."""
    return _ops is not None and torch.ops.flash_mla is _ops

import os

os.environ.setdefault("FLASH_MLA_POISON_OUTPUTS", "1")  # outputs start as NaN: an unwritten element fails

import pytest  # noqa: E402
import torch  # noqa: E402

import flash_mla_rocm  # noqa: E402,F401

# The gfx942 kernels run on CPU tensors under emulation (tests/gfx942_emulation.py). FLASH_MLA_TEST_GFX942=0 leaves
# them out (the first use builds them, about half a minute).
GFX942_EMULATED = "gfx942-emulated"


def _devices():
    devices = ["cpu"]
    if torch.cuda.is_available() and torch._C._dispatch_has_kernel_for_dispatch_key("flash_mla::decode", "CUDA"):
        devices.append("cuda")
    if os.environ.get("FLASH_MLA_TEST_GFX942", "1") != "0":
        devices.append(GFX942_EMULATED)
    return devices


DEVICES = _devices()


@pytest.fixture(params=DEVICES)
def device(request, monkeypatch):
    """The device tests put tensors on. For gfx942-emulated, "cpu" with torch.ops.flash_mla swapped for the
    emulated build's ops, so the tests' calls run the gfx942 kernels."""
    if request.param != GFX942_EMULATED:
        return request.param
    from gfx942_emulation import emulated_ops

    monkeypatch.setattr(torch.ops, "flash_mla", emulated_ops())
    return "cpu"

import os

os.environ.setdefault("FLASH_MLA_POISON_OUTPUTS", "1")  # outputs start as NaN: an unwritten element fails

import pytest  # noqa: E402
import torch  # noqa: E402

import flash_mla_rocm  # noqa: E402,F401


def _devices():
    devices = ["cpu"]
    if torch.cuda.is_available() and torch._C._dispatch_has_kernel_for_dispatch_key("flash_mla::decode", "CUDA"):
        devices.append("cuda")
    return devices


DEVICES = _devices()


@pytest.fixture(params=DEVICES)
def device(request):
    return request.param

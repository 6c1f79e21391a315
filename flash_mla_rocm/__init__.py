"""MLA decode attention over DeepSeek's MODEL1 FP8 KV cache, as the PyTorch custom ops ``torch.ops.flash_mla.*``."""

import torch  # noqa: F401  (loads libtorch, which _C links against)

from ._build import check_torch, info
from ._version import __version__

check_torch()  # a torch this build cannot load with: one clear ImportError instead of an undefined symbol
try:
    from . import _C  # noqa: F401  (registers torch.ops.flash_mla)
except ImportError as error:
    from ._build import NOT_BUILT

    raise ImportError(NOT_BUILT) from error
from . import flash_mla_compat, quant, reference  # noqa: E402  (after the torch check and the extension)
from .ops import decode, sparse_attn_decode  # noqa: E402
from .quant import convert_kv_layout, dequantize_kv, quantize_kv, quantize_kv_split  # noqa: E402

__all__ = [
    "__version__",
    "info",
    "sparse_attn_decode",
    "decode",
    "quantize_kv",
    "dequantize_kv",
    "convert_kv_layout",
    "quantize_kv_split",
    "quant",
    "reference",
    "flash_mla_compat",
]

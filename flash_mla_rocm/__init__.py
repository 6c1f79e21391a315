"""MLA decode attention over DeepSeek's MODEL1 FP8 KV cache, as the PyTorch custom ops ``torch.ops.flash_mla.*``."""

import torch  # noqa: F401  (loads libtorch, which _C links against)

try:
    from . import _C  # noqa: F401  (registers torch.ops.flash_mla)
except ImportError as error:
    raise ImportError(
        "flash_mla_rocm's extension (_C) is not built here. Install the package (pip install --no-build-isolation .) "
        "and import it from outside the source tree, or build it in place (python setup.py build_ext --inplace)."
    ) from error
from . import quant, reference
from .ops import decode, sparse_attn_decode
from .quant import convert_kv_layout, dequantize_kv, quantize_kv, quantize_kv_split

__all__ = [
    "sparse_attn_decode",
    "decode",
    "quantize_kv",
    "dequantize_kv",
    "convert_kv_layout",
    "quantize_kv_split",
    "quant",
    "reference",
]

"""FlashMLA's Python interface, on flash_mla_rocm's ops: an engine that calls FlashMLA's sparse MODEL1 decode
switches by changing one import::

    import flash_mla                                         # FlashMLA (NVIDIA Hopper / Blackwell only)
    from flash_mla_rocm import flash_mla_compat as flash_mla  # the same calls, on any device this build supports

    sched_meta, _ = flash_mla.get_mla_metadata()
    out, lse = flash_mla.flash_mla_with_kvcache(
        q, k_cache, None, None, 512, sched_meta, None, softmax_scale, False, True,
        indices, attn_sink, extra_k_cache, extra_indices, topk_length, extra_topk_length)

Names, argument order, defaults and results follow ``flash_mla/flash_mla_interface.py`` of DeepSeek's FlashMLA
for its MODEL1 sparse FP8 decode: q [b, s_q, h_q, 512] bfloat16 (any h_q: 64- or 128-head padded calls and
unpadded tensor-parallel shards alike), caches in FlashMLA's MODEL1 layout viewed as [num_blocks, block_size, 1,
584] (a float8_e4m3fn tensor, or its int8/uint8 view: FlashMLA's bytes are OCP e4m3fn, and so are they here; a
float8_e4m3fnuz cache is read as such, so the main and the extra cache may each have their own format), out
[b, s_q, h_q, 512] bfloat16 and lse [b, h_q, s_q] float32 (natural log) with FlashMLA's strides (lse is a
transposed view of a [b, s_q, h_q] buffer). ``out=`` takes a preallocated output, as engines pass it.

What FlashMLA's interface also does and this one does not: dense decode (indices=None, with block_table and
cache_seqlens), DeepSeek V3.2's 656-byte cache (head dim 576) and sparse prefill raise NotImplementedError.

The scheduling metadata holds no device data here: each call plans from shapes alone, so a metadata object may be
reused across steps and inside CUDA/HIP graphs (no host sync, no allocation that depends on tensor values). As in
FlashMLA, it records the shapes of its first call and later calls must match them.
"""

import dataclasses
from typing import Optional, Tuple

import torch

from .ops import sparse_attn_decode
from .quant import HEAD_DIM

__all__ = ["FlashMLASchedMeta", "get_mla_metadata", "flash_mla_with_kvcache", "flash_mla_sparse_fwd"]

V32_HEAD_DIM = 576
_FLASHMLA_BYTE_VIEWS = (torch.uint8, torch.int8)  # FlashMLA's own fp8 bytes: OCP e4m3fn


@dataclasses.dataclass
class FlashMLASchedMeta:
    """The scheduling metadata FlashMLA's interface passes around; here it records the first call's shapes."""

    @dataclasses.dataclass
    class Config:
        b: int
        s_q: int
        h_q: int
        page_block_size: int
        h_k: int
        causal: bool
        is_fp8_kvcache: bool
        topk: Optional[int]
        extra_page_block_size: Optional[int]
        extra_topk: Optional[int]

    have_initialized: bool = False
    config: Optional[Config] = None
    tile_scheduler_metadata: Optional[torch.Tensor] = None  # always None: plans depend on shapes only
    num_splits: Optional[torch.Tensor] = None  # always None


def get_mla_metadata(*args, **kwargs) -> Tuple[FlashMLASchedMeta, None]:
    """An empty FlashMLASchedMeta (filled in by the first ``flash_mla_with_kvcache`` call) and None, as FlashMLA
    returns; arguments are accepted and ignored, as FlashMLA does for its old interface."""
    return FlashMLASchedMeta(), None


def _fp8_cache(cache: torch.Tensor, name: str) -> torch.Tensor:
    """The cache with its fp8 format in its dtype: FlashMLA's uint8/int8 views read as OCP e4m3fn."""
    if cache.dtype in _FLASHMLA_BYTE_VIEWS:
        return cache.view(torch.float8_e4m3fn)
    if cache.dtype not in (torch.float8_e4m3fn, torch.float8_e4m3fnuz):
        raise TypeError(f"flash_mla_with_kvcache: {name} must have dtype float8_e4m3fn, float8_e4m3fnuz, int8 or "
                        f"uint8 (FlashMLA's fp8 bytes), got {cache.dtype}")  # fmt: skip
    return cache


def _check_config(meta: FlashMLASchedMeta, config: FlashMLASchedMeta.Config) -> None:
    if not meta.have_initialized:
        meta.config = config
        meta.have_initialized = True
        return
    for field in dataclasses.fields(config):
        first, now = getattr(meta.config, field.name), getattr(config, field.name)
        if first != now:
            raise ValueError(f"flash_mla_with_kvcache: tile_scheduler_metadata was made for {field.name} = {first}, "
                             f"this call has {now}; use one metadata object per set of shapes, as with FlashMLA")  # fmt: skip


def flash_mla_with_kvcache(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    block_table: Optional[torch.Tensor],
    cache_seqlens: Optional[torch.Tensor],
    head_dim_v: int,
    tile_scheduler_metadata: FlashMLASchedMeta,
    num_splits: None = None,
    softmax_scale: Optional[float] = None,
    causal: bool = False,
    is_fp8_kvcache: bool = False,
    indices: Optional[torch.Tensor] = None,
    attn_sink: Optional[torch.Tensor] = None,
    extra_k_cache: Optional[torch.Tensor] = None,
    extra_indices_in_kvcache: Optional[torch.Tensor] = None,
    topk_length: Optional[torch.Tensor] = None,
    extra_topk_length: Optional[torch.Tensor] = None,
    *,
    out: Optional[torch.Tensor] = None,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """FlashMLA's sparse MODEL1 FP8 decode (see the module docstring and FlashMLA's own docstring).

    Args:
        q: [b, s_q, h_q, 512] bfloat16.
        k_cache: [num_blocks, page_block_size, 1, 584], FlashMLA's MODEL1 FP8 layout.
        block_table, cache_seqlens: ignored by sparse decode (FlashMLA ignores them there too).
        head_dim_v: must be 512.
        tile_scheduler_metadata: from ``get_mla_metadata``; num_splits: must be None.
        softmax_scale: default q.shape[-1] ** -0.5. causal: must be False. is_fp8_kvcache: must be True.
        indices: [b, s_q, topk] int32, block * page_block_size + offset; invalid entries are skipped.
        attn_sink: [h_q] float32 or None. extra_k_cache / extra_indices_in_kvcache: the extra cache and its indices.
        topk_length / extra_topk_length: [b] int32 or None.
        out: optional [b, s_q, h_q, 512] bfloat16 tensor to write the output into (and return).

    Returns:
        (out [b, s_q, h_q, 512] bfloat16, lse [b, h_q, s_q] float32 with FlashMLA's strides).
    """
    if not isinstance(tile_scheduler_metadata, FlashMLASchedMeta):
        raise TypeError("flash_mla_with_kvcache: tile_scheduler_metadata must come from get_mla_metadata()")
    if num_splits is not None:
        raise ValueError("flash_mla_with_kvcache: num_splits must be None")
    if indices is None:
        raise NotImplementedError("flash_mla_with_kvcache: dense decode (indices=None) is not implemented; "
                                  "flash_mla_rocm implements FlashMLA's sparse MODEL1 FP8 decode")  # fmt: skip
    if q.dim() != 4:
        raise ValueError(f"flash_mla_with_kvcache: q must have shape [b, s_q, h_q, 512], got {list(q.shape)}")
    if q.shape[-1] == V32_HEAD_DIM:
        raise NotImplementedError("flash_mla_with_kvcache: DeepSeek V3.2's cache (head dim 576, 656 bytes a token) "
                                  "is not implemented; flash_mla_rocm reads MODEL1's (head dim 512)")  # fmt: skip
    if head_dim_v != HEAD_DIM:
        raise ValueError(f"flash_mla_with_kvcache: head_dim_v must be 512, got {head_dim_v}")
    if causal:
        raise ValueError("flash_mla_with_kvcache: causal must be False for sparse attention")
    if not is_fp8_kvcache:
        raise ValueError("flash_mla_with_kvcache: is_fp8_kvcache must be True for sparse attention")
    if (extra_k_cache is None) != (extra_indices_in_kvcache is None):
        raise ValueError("flash_mla_with_kvcache: extra_k_cache and extra_indices_in_kvcache must be given together")
    _check_config(tile_scheduler_metadata, FlashMLASchedMeta.Config(
        q.shape[0], q.shape[1], q.shape[2], k_cache.shape[1], k_cache.shape[2], causal, is_fp8_kvcache,
        indices.shape[-1], None if extra_k_cache is None else extra_k_cache.shape[1],
        None if extra_indices_in_kvcache is None else extra_indices_in_kvcache.shape[-1]))  # fmt: skip

    b, s_q, h_q = q.shape[:3]
    if out is not None and (out.shape != (b, s_q, h_q, HEAD_DIM) or out.dtype != torch.bfloat16
                            or out.device != q.device):  # fmt: skip
        raise ValueError(f"flash_mla_with_kvcache: out must be a torch.bfloat16 tensor of shape "
                         f"{[b, s_q, h_q, HEAD_DIM]} on {q.device}, got {out.dtype} {list(out.shape)} "
                         f"on {out.device}")  # fmt: skip

    result, ours_lse = sparse_attn_decode(
        q,
        _fp8_cache(k_cache, "k_cache"),
        indices,
        topk_length=topk_length,
        sm_scale=q.shape[-1] ** -0.5 if softmax_scale is None else softmax_scale,
        attn_sink=attn_sink,
        extra_kv=None if extra_k_cache is None else _fp8_cache(extra_k_cache, "extra_k_cache"),
        extra_indices=extra_indices_in_kvcache,
        extra_topk_length=extra_topk_length,
        kv_layout="flashmla",
    )
    lse = ours_lse.new_empty((b, s_q, h_q)).transpose(1, 2)  # FlashMLA's strides
    lse.copy_(ours_lse)
    if out is None:
        return result, lse
    out.copy_(result)
    return out, lse


def flash_mla_sparse_fwd(*args, **kwargs):
    """FlashMLA's sparse prefill: not implemented here (flash_mla_rocm implements decode)."""
    raise NotImplementedError("flash_mla_sparse_fwd (sparse prefill) is not implemented; flash_mla_rocm implements "
                              "FlashMLA's sparse MODEL1 FP8 decode (flash_mla_with_kvcache)")  # fmt: skip

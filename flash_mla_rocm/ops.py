"""Python entry points of the flash_mla ops, with the seed's signatures. Both call ``torch.ops.flash_mla.*``."""

from typing import Optional, Tuple

import torch


def sparse_attn_decode(
    q: torch.Tensor,
    kv: torch.Tensor,
    indices: torch.Tensor,
    topk_length: Optional[torch.Tensor] = None,
    sm_scale: Optional[float] = None,
    attn_sink: Optional[torch.Tensor] = None,
    extra_kv: Optional[torch.Tensor] = None,
    extra_indices: Optional[torch.Tensor] = None,
    extra_topk_length: Optional[torch.Tensor] = None,
    kv_layout: str = "token",
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Sparse MLA decode over a paged MODEL1 FP8 cache (FlashMLA's sparse decode interface).

    For each batch row i, query token j and head h, attends the valid keys that ``indices`` (and ``extra_indices``)
    select: score = sm_scale * (q . k), p = softmax over those keys, out = sum p * k, with k the dequantized
    512-vector of the key (K = V). An index is valid when 0 <= index < num_blocks * block_size of its cache and its
    position is below its row's top-k length; every other index is skipped, never read.

    Args:
        q: [b, s_q, h_q, 512] bfloat16.
        kv: [num_blocks, block_size, 1, 584] cache; dtype uint8 (e4m3fnuz bytes), float8_e4m3fnuz or float8_e4m3fn.
        indices: [b, s_q, topk] int32 flat token indices, block * block_size + offset.
        topk_length: [b] int32 or None; row i uses indices[i, :, :topk_length[i]] (clamped to [0, topk]).
        sm_scale: softmax scale, default 512 ** -0.5.
        attn_sink: [h_q] float32 or None; out[..., h, :] is scaled by 1 / (1 + exp(attn_sink[h] - lse)).
        extra_kv: a second cache of kv's dtype and layout (FlashMLA MODEL1's extra_k_cache), or None.
        extra_indices: [b, s_q, extra_topk] int32 into extra_kv; given exactly when extra_kv is.
        extra_topk_length: [b] int32 or None, like topk_length for extra_indices.
        kv_layout: "token" or "flashmla" (see :mod:`flash_mla_rocm.quant`); applies to kv and extra_kv.

    Returns:
        out: [b, s_q, h_q, 512] bfloat16 (0 for a row without valid keys).
        lse: [b, h_q, s_q] float32, natural log of sum(exp(score)) over the valid keys (+inf without any).
    """
    return torch.ops.flash_mla.sparse_attn_decode(
        q, kv, indices, topk_length, sm_scale, attn_sink, extra_kv, extra_indices, extra_topk_length, kv_layout
    )


def decode(
    q: torch.Tensor,
    kv_nope_fp8: torch.Tensor,
    kv_rope: torch.Tensor,
    kv_scales: torch.Tensor,
    kv_indptr: torch.Tensor,
    num_heads: int,
    sm_scale: Optional[float] = None,
) -> torch.Tensor:
    """MLA decode over CSR token ranges of an FP8 cache held as separate tensors.

    Batch i attends tokens [kv_indptr[i], kv_indptr[i + 1]) clamped to [0, T]; an empty range gives zeros.
    Token t's key is kv_nope_fp8[t, 64g : 64g + 64] * kv_scales[t, g] for g = 0..6, then kv_rope[t] (K = V).

    Args:
        q: [B, H, 512] bfloat16.
        kv_nope_fp8: [T, 448] float8_e4m3fnuz, float8_e4m3fn, or uint8 (e4m3fnuz bytes).
        kv_rope: [T, 64] bfloat16.
        kv_scales: [T, 7] float32, any positive values.
        kv_indptr: [B + 1] int32.
        num_heads: must equal H.
        sm_scale: softmax scale, default 512 ** -0.5.

    Returns:
        out: [B, H, 512] bfloat16.
    """
    return torch.ops.flash_mla.decode(q, kv_nope_fp8, kv_rope, kv_scales, kv_indptr, num_heads, sm_scale)

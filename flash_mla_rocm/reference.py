"""Plain-torch references of both ops: exact dequantization, float64 arithmetic, float32 results.

They follow the op contract literally (README, "The ops") and are what the kernels are tested against.
"""

import torch

from .quant import HEAD_DIM, dequantize_kv, dequantize_kv_split

DEFAULT_SM_SCALE = HEAD_DIM**-0.5


def _gather_valid_keys(kv, indices, topk_length, kv_layout):
    """Keys [s_q, topk, 512] float64 (zero where invalid) and the validity mask [s_q, topk] of one batch row."""
    num_tokens = kv.shape[0] * kv.shape[1]
    topk = indices.shape[-1]
    valid = (indices >= 0) & (indices.long() < num_tokens)  # int64: num_tokens may be 2^31 or more
    if topk_length is not None:
        valid &= torch.arange(topk, device=indices.device) < topk_length.clamp(0, topk)
    tokens = torch.where(valid, indices, 0).long()[valid]
    keys = torch.zeros(*indices.shape, HEAD_DIM, dtype=torch.float64, device=indices.device)
    keys[valid] = dequantize_kv(kv, kv_layout, tokens).double()
    return keys, valid


def _attend(q, keys, valid, sm_scale):
    """q [..., h, 512], keys [..., n, 512], valid [..., n] -> (out [..., h, 512], lse [..., h]), float64.

    A row with no valid key gives out = 0 and lse = +inf. p = exp(s - max) / sum(exp(s - max)), not exp(s - lse):
    where |s| is so large that max + log(sum) rounds back to max, the latter would give every tied maximum p = 1.
    A NaN in a selected key stays NaN in the output, as in the ops.
    """
    scores = torch.einsum("...hd,...nd->...hn", q.double(), keys) * sm_scale
    scores = scores.masked_fill(~valid.unsqueeze(-2), float("-inf"))
    empty = ~valid.any(dim=-1)  # [...]: rows without a valid key, the same for every head
    row_max = scores.amax(dim=-1, keepdim=True) if scores.shape[-1] else scores.new_zeros((*scores.shape[:-1], 1))
    row_max = torch.where(empty[..., None, None], 0.0, row_max)
    weights = torch.exp(scores - row_max)  # exactly 0 at invalid keys
    total = weights.sum(dim=-1, keepdim=True)
    probs = weights / torch.where(empty[..., None, None], 1.0, total)
    out = torch.einsum("...hn,...nd->...hd", probs, keys)
    lse = (row_max + torch.log(total)).squeeze(-1).masked_fill(empty[..., None], float("inf"))
    return out, lse


def sparse_attn_decode(
    q,
    kv,
    indices,
    topk_length=None,
    sm_scale=None,
    attn_sink=None,
    extra_kv=None,
    extra_indices=None,
    extra_topk_length=None,
    kv_layout="token",
):
    """Reference of :func:`flash_mla_rocm.sparse_attn_decode`: (out [b, s_q, h_q, 512], lse [b, h_q, s_q]), float32."""
    sm_scale = DEFAULT_SM_SCALE if sm_scale is None else sm_scale
    b, s_q, h_q = q.shape[:3]
    if b == 0:
        empty = q.new_zeros((0, s_q, h_q, HEAD_DIM), dtype=torch.float32)
        return empty, q.new_zeros((0, h_q, s_q), dtype=torch.float32)
    sources = [(kv, indices, topk_length)]
    if extra_kv is not None:
        sources.append((extra_kv, extra_indices, extra_topk_length))
    outs, lses = [], []
    for i in range(q.shape[0]):
        gathered = [
            _gather_valid_keys(cache, idx[i], None if length is None else length[i], kv_layout)
            for cache, idx, length in sources
        ]
        keys = torch.cat([k for k, _ in gathered], dim=-2)
        valid = torch.cat([v for _, v in gathered], dim=-1)
        out, lse = _attend(q[i], keys, valid, sm_scale)
        if attn_sink is not None:  # rows without keys stay 0 (their lse is +inf; +inf - +inf must not enter)
            factor = torch.where(lse.isinf(), 1.0, torch.sigmoid(lse - attn_sink.double()))
            out = out * factor.unsqueeze(-1)
        outs.append(out)
        lses.append(lse.transpose(0, 1))
    return torch.stack(outs).float(), torch.stack(lses).float()


def decode(q, kv_nope_fp8, kv_rope, kv_scales, kv_indptr, num_heads, sm_scale=None, key_dtype=None):
    """Reference of :func:`flash_mla_rocm.decode`: out [B, H, 512] float32.

    Keys are dequantized exactly. key_dtype=torch.bfloat16 rounds each dequantized key to bf16 first: the
    numerics of the GPU kernels, whose tensor cores take bf16 keys (exact for power-of-two scales, one rounding
    for other scales).
    """
    sm_scale = DEFAULT_SM_SCALE if sm_scale is None else sm_scale
    num_tokens = kv_nope_fp8.shape[0]
    keys = dequantize_kv_split(kv_nope_fp8, kv_rope, kv_scales)
    keys = (keys if key_dtype is None else keys.to(key_dtype)).double()
    indptr = kv_indptr.tolist()
    outs = []
    for i in range(q.shape[0]):
        begin = min(max(indptr[i], 0), num_tokens)
        end = max(min(max(indptr[i + 1], 0), num_tokens), begin)
        row_keys = keys[begin:end]
        valid = torch.ones(end - begin, dtype=torch.bool, device=q.device)
        outs.append(_attend(q[i], row_keys, valid, sm_scale)[0])
    return torch.stack(outs).float() if outs else q.new_zeros(q.shape, dtype=torch.float32)

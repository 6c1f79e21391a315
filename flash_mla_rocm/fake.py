"""Fake (meta) kernels: output shapes and dtypes for torch.compile and other tracing. The real ops validate
everything else; a fake kernel checks what tracing alone can get wrong: ranks and devices."""

import torch


def _check_devices(op, q, **tensors):
    for name, tensor in tensors.items():
        torch._check(
            tensor is None or tensor.device == q.device,
            lambda: f"flash_mla.{op}: {name} must be on {q.device} like q, got {tensor.device}",
        )


def _sparse_attn_decode_fake(
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
    torch._check(q.dim() == 4, lambda: f"q must have shape [b, s_q, h_q, 512], got {list(q.shape)}")
    _check_devices(
        "sparse_attn_decode", q, kv=kv, indices=indices, topk_length=topk_length, attn_sink=attn_sink,
        extra_kv=extra_kv, extra_indices=extra_indices, extra_topk_length=extra_topk_length,
    )  # fmt: skip
    b, s_q, h_q, d = q.shape
    return q.new_empty((b, s_q, h_q, d)), q.new_empty((b, h_q, s_q), dtype=torch.float32)


def _decode_fake(q, kv_nope_fp8, kv_rope, kv_scales, kv_indptr, num_heads, sm_scale=None):
    torch._check(q.dim() == 3, lambda: f"q must have shape [B, H, 512], got {list(q.shape)}")
    _check_devices(
        "decode", q, kv_nope_fp8=kv_nope_fp8, kv_rope=kv_rope, kv_scales=kv_scales, kv_indptr=kv_indptr
    )
    return q.new_empty(q.shape)


def register_fake_kernels(namespace):
    """Registers the fake kernels for ``namespace``'s ops: ``flash_mla``, or a test build with the same schemas."""
    torch.library.register_fake(f"{namespace}::sparse_attn_decode")(_sparse_attn_decode_fake)
    torch.library.register_fake(f"{namespace}::decode")(_decode_fake)


register_fake_kernels("flash_mla")

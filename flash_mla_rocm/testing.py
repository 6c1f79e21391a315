"""Test data and acceptance gates shared by the tests and the benchmarks.

Inputs are drawn at FlashMLA's scale: latents of RMS 0.1 made of per-tile power-of-two gains (so the e8m0
scales differ), and queries large enough that scores have a standard deviation near 1. Every cache
token that no valid index selects is filled with NaN bytes, so a kernel that reads one fails. The gates are
FlashMLA's: out |d| <= 1e-3 + 2/128 |ref| elementwise and cosine similarity >= 1 - 5e-6; lse |d| <= 1e-6 +
8/65536 |ref|.
"""

import math

import torch

from .quant import HEAD_DIM, SCALE_TILE_DIM, empty_kv_cache, quantize_kv, quantize_kv_split, token_views

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
TILE_GAIN_LOG2 = range(-2, 3)  # per-tile gains 1/4 .. 4
LATENT_RMS = 0.1  # FlashMLA's scale, which its gates' 1e-3 absolute tolerance assumes
LATENT_BASE_STD = LATENT_RMS / math.sqrt(sum(4.0**k for k in TILE_GAIN_LOG2) / len(TILE_GAIN_LOG2))


def random_latent(*shape, device="cpu", generator=None) -> torch.Tensor:
    """[*shape, 512] bfloat16 latents of RMS 0.1: normal values times a per-64-element-tile gain in {1/4 .. 4}."""
    x = torch.randn(*shape, HEAD_DIM, device=device, generator=generator) * LATENT_BASE_STD
    exponents = torch.randint(TILE_GAIN_LOG2.start, TILE_GAIN_LOG2.stop, (*shape, HEAD_DIM // SCALE_TILE_DIM),
                              device=device, generator=generator)  # fmt: skip
    gains = 2.0**exponents
    return (x * gains.repeat_interleave(SCALE_TILE_DIM, dim=-1)).to(torch.bfloat16)


def random_query(*shape, key_rms: float, sm_scale: float, device="cpu", generator=None) -> torch.Tensor:
    """[*shape, 512] bfloat16 queries whose scores against keys of RMS key_rms have a standard deviation near 1."""
    std = 1.0 / (sm_scale * math.sqrt(HEAD_DIM) * key_rms)
    return (torch.randn(*shape, HEAD_DIM, device=device, generator=generator) * std).to(torch.bfloat16)


def random_indices(shape, num_tokens, invalid_fraction=0.0, device="cpu", generator=None) -> torch.Tensor:
    """int32 indices in [0, num_tokens); a fraction replaced by every kind of invalid value."""
    indices = torch.randint(0, max(num_tokens, 1), shape, device=device, generator=generator, dtype=torch.int64)
    if num_tokens == 0:
        indices.fill_(-1)
    if invalid_fraction > 0:
        invalid = torch.tensor([-1, INT32_MIN, INT32_MAX, num_tokens, num_tokens + 7, -num_tokens - 1], device=device)
        pick = torch.randint(0, len(invalid), shape, device=device, generator=generator)
        mask = torch.rand(shape, device=device, generator=generator) < invalid_fraction
        indices = torch.where(mask, invalid[pick], indices)
    return indices.clamp(INT32_MIN, INT32_MAX).to(torch.int32)


def random_topk_length(batch, topk, device="cpu", generator=None) -> torch.Tensor:
    """[batch] int32 lengths spanning negative, 0, inside and beyond [0, topk]."""
    return torch.randint(-2, topk + 3, (batch,), device=device, generator=generator, dtype=torch.int32)


def selected_tokens(num_tokens, indices, topk_length=None) -> torch.Tensor:
    """[num_tokens] bool: the tokens some valid index selects."""
    topk = indices.shape[-1]
    valid = (indices >= 0) & (indices.long() < num_tokens)  # int64: num_tokens may be 2^31 or more
    if topk_length is not None:
        positions = torch.arange(topk, device=indices.device)
        valid &= positions < topk_length.clamp(0, topk).view(-1, *([1] * (indices.dim() - 1)))
    selected = torch.zeros(num_tokens, dtype=torch.bool, device=indices.device)
    selected[indices[valid].long()] = True
    return selected


def poison_unselected(kv, kv_layout, selected):
    """Fills every byte of each unselected token, and a "flashmla" cache's block padding, with 0xFF (NaN)."""
    data, scales = token_views(kv, kv_layout)
    unselected = ~selected.view(kv.shape[0], kv.shape[1])
    data[unselected] = 0xFF
    scales[unselected] = 0xFF
    raw = kv.view(torch.uint8)
    used = kv.shape[1] * kv.shape[3]
    if kv.numel() > 0 and raw.stride(0) > used:  # an empty cache (block_size 0) has no padding to fill
        padding = raw.as_strided((kv.shape[0], raw.stride(0) - used), (raw.stride(0), 1), raw.storage_offset() + used)
        padding.fill_(0xFF)


def _random_cache(num_blocks, block_size, kv_layout, dtype, device, generator):
    latent = random_latent(num_blocks, block_size, device=device, generator=generator)
    if num_blocks * block_size == 0:
        return empty_kv_cache(num_blocks, block_size, kv_layout, dtype, device), 0.1
    return quantize_kv(latent, kv_layout, dtype), latent.float().pow(2).mean().sqrt().item()


def make_sparse_case(
    b,
    s_q,
    h_q,
    topk,
    num_blocks,
    block_size,
    kv_layout="token",
    dtype=None,
    extra_topk=0,
    extra_num_blocks=4,
    extra_block_size=64,
    topk_length=False,
    extra_topk_length=False,
    attn_sink=False,
    extra_dtype=None,
    sm_scale=None,
    invalid_fraction=0.0,
    device="cpu",
    seed=None,
):
    """Keyword arguments of ``sparse_attn_decode`` for one random case, unused cache tokens NaN-poisoned.

    topk_length / extra_topk_length: True draws lengths (negative, 0, inside and beyond top-k), a tensor is used
    as is. attn_sink: True draws sinks, with +inf and -inf among them. extra_topk > 0 adds the extra cache, in
    extra_dtype (default: kv's dtype).
    """
    gen = torch.Generator(device=device)
    gen.manual_seed(torch.randint(0, 2**62, ()).item() if seed is None else seed)
    kv, key_rms = _random_cache(num_blocks, block_size, kv_layout, dtype, device, gen)
    scale = HEAD_DIM**-0.5 if sm_scale is None else sm_scale
    case = {
        "q": random_query(b, s_q, h_q, key_rms=key_rms, sm_scale=scale, device=device, generator=gen),
        "kv": kv,
        "indices": random_indices((b, s_q, topk), num_blocks * block_size, invalid_fraction, device, gen),
        "kv_layout": kv_layout,
    }
    if sm_scale is not None:
        case["sm_scale"] = sm_scale
    if topk_length is True:
        topk_length = random_topk_length(b, topk, device, gen)
    if topk_length is not False and topk_length is not None:
        case["topk_length"] = topk_length
    poison_unselected(kv, kv_layout, selected_tokens(num_blocks * block_size, case["indices"], case.get("topk_length")))
    if extra_topk > 0:
        extra_dtype = kv.dtype if extra_dtype is None else extra_dtype
        extra_kv, _ = _random_cache(extra_num_blocks, extra_block_size, kv_layout, extra_dtype, device, gen)
        extra_tokens = extra_num_blocks * extra_block_size
        case["extra_kv"] = extra_kv
        case["extra_indices"] = random_indices((b, s_q, extra_topk), extra_tokens, invalid_fraction, device, gen)
        if extra_topk_length is True:
            extra_topk_length = random_topk_length(b, extra_topk, device, gen)
        if extra_topk_length is not False and extra_topk_length is not None:
            case["extra_topk_length"] = extra_topk_length
        selected = selected_tokens(extra_tokens, case["extra_indices"], case.get("extra_topk_length"))
        poison_unselected(extra_kv, kv_layout, selected)
    if attn_sink:
        sink = torch.randn(h_q, device=device, generator=gen) * 2
        if h_q >= 3:
            sink[0], sink[1] = float("inf"), float("-inf")
        case["attn_sink"] = sink
    return case


def make_decode_case(lengths, heads, dtype=torch.float8_e4m3fnuz, device="cpu", seed=None, margin=3):
    """Keyword arguments of ``decode`` with ``lengths[i]`` tokens for batch row i, ranges back to back.

    ``margin`` NaN-poisoned tokens lie before the first range and after the last. Scales are multiplied by random
    factors in [0.5, 1), so they are not all powers of two, and the values stay within the latent's range: the output
    gate's absolute term (1e-3) assumes values of that scale, since the GPU kernels round p to bf16 (a relative
    error of 2^-9 times the values, which is what remains where a few keys' values cancel).
    """
    gen = torch.Generator(device=device)
    gen.manual_seed(torch.randint(0, 2**62, ()).item() if seed is None else seed)
    offsets = [margin]
    for n in lengths:
        offsets.append(offsets[-1] + n)
    total = offsets[-1] + margin
    latent = random_latent(total, device=device, generator=gen)
    nope, rope, scales = quantize_kv_split(latent, dtype)
    scales = scales * (0.5 + 0.5 * torch.rand(scales.shape, device=device, generator=gen))
    unused = torch.ones(total, dtype=torch.bool, device=device)
    unused[offsets[0] : offsets[-1]] = False
    nope.view(torch.uint8)[unused] = 0xFF if dtype == torch.float8_e4m3fn else 0x80
    rope[unused] = float("nan")
    scales[unused] = float("nan")
    key_rms = latent[~unused].float().pow(2).mean().sqrt().item() if offsets[-1] > margin else 0.1
    q = random_query(len(lengths), heads, key_rms=key_rms, sm_scale=HEAD_DIM**-0.5, device=device, generator=gen)
    indptr = torch.tensor(offsets, dtype=torch.int32, device=device)
    return {"q": q, "kv_nope_fp8": nope, "kv_rope": rope, "kv_scales": scales, "kv_indptr": indptr, "num_heads": heads}


def case_to(case, device):
    """An op call's keyword arguments with every tensor moved to `device` (the other values as they are)."""
    return {k: v.to(device) if torch.is_tensor(v) else v for k, v in case.items()}


def assert_out_close(out, ref, name="out"):
    """FlashMLA's output gate: |out - ref| <= 1e-3 + 2/128 |ref| everywhere, cosine similarity >= 1 - 5e-6."""
    out, ref = out.double(), ref.double()
    assert out.shape == ref.shape, f"{name}: shape {list(out.shape)} != reference {list(ref.shape)}"
    assert not ref.isnan().any(), f"{name}: the reference has {ref.isnan().sum().item()} NaN elements"
    assert not out.isnan().any(), f"{name}: {out.isnan().sum().item()} NaN elements"
    err = (out - ref).abs()
    bad = err > 1e-3 + 2 / 128 * ref.abs()
    assert not bad.any(), f"{name}: {bad.sum().item()} of {out.numel()} elements off, max |d| {err.max().item():.3g}"
    ref_norm, out_norm = ref.norm(), out.norm()
    if ref_norm > 0:
        cos = (out * ref).sum() / (out_norm * ref_norm)
        assert cos >= 1 - 5e-6, f"{name}: cosine similarity {cos.item():.9f} < 1 - 5e-6"
    else:
        assert out_norm == 0, f"{name}: reference is zero, output is not"


def assert_lse_close(lse, ref, name="lse"):
    """FlashMLA's lse gate: |lse - ref| <= 1e-6 + 8/65536 |ref|; +inf exactly where the reference has it."""
    lse, ref = lse.double(), ref.double()
    assert lse.shape == ref.shape, f"{name}: shape {list(lse.shape)} != reference {list(ref.shape)}"
    assert not lse.isnan().any(), f"{name}: {lse.isnan().sum().item()} NaN elements"
    inf = ref.isinf()
    assert torch.equal(lse.isinf(), inf) and torch.equal(lse[inf], ref[inf]), f"{name}: infinities differ"
    err = (lse - ref)[~inf].abs()
    bad = err > 1e-6 + 8 / 65536 * ref[~inf].abs()
    assert not bad.any(), f"{name}: {bad.sum().item()} elements off, max |d| {err.max().item():.3g}"


def assert_graph_replays(sparse_cases, decode_cases, stream=None):
    """Captures sparse_attn_decode on sparse_cases[0] and decode on decode_cases[0] in one CUDA graph (on `stream`,
    or torch's default capture stream), copies the tensors of the second case of each into the captured inputs,
    replays, and asserts the outputs equal eager calls on the second cases, bit for bit."""
    from . import ops

    static = {k: (v.clone() if torch.is_tensor(v) else v) for k, v in sparse_cases[0].items()}
    static_decode = {k: (v.clone() if torch.is_tensor(v) else v) for k, v in decode_cases[0].items()}
    ops.sparse_attn_decode(**static), ops.decode(**static_decode)  # warm up outside the capture
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, stream=stream):
        out, lse = ops.sparse_attn_decode(**static)
        decoded = ops.decode(**static_decode)
    for new, target in [(sparse_cases[1], static), (decode_cases[1], static_decode)]:
        for key, value in new.items():
            if torch.is_tensor(value):
                target[key].copy_(value)
    graph.replay()
    torch.cuda.synchronize()
    expected_out, expected_lse = ops.sparse_attn_decode(**sparse_cases[1])
    assert torch.equal(out, expected_out) and torch.equal(lse, expected_lse)
    assert torch.equal(decoded, ops.decode(**decode_cases[1]))

"""torch.ops.flash_mla.sparse_attn_decode against the float64 reference, edge cases, and bad input."""

import pytest
import torch

import flash_mla_rocm as fm
from flash_mla_rocm import reference
from flash_mla_rocm.testing import assert_lse_close, assert_out_close, make_sparse_case, random_latent

CACHE_DTYPES = [torch.uint8, torch.float8_e4m3fnuz, torch.float8_e4m3fn]
LAYOUTS = ["token", "flashmla"]


def check(case):
    out, lse = fm.sparse_attn_decode(**case)
    ref_out, ref_lse = reference.sparse_attn_decode(**case)
    assert out.dtype == torch.bfloat16 and lse.dtype == torch.float32
    assert_out_close(out, ref_out)
    assert_lse_close(lse, ref_lse)
    return out, lse


@pytest.mark.parametrize("kv_layout", LAYOUTS)
@pytest.mark.parametrize("dtype", CACHE_DTYPES)
def test_layouts_and_formats(device, kv_layout, dtype):
    check(make_sparse_case(3, 2, 16, 96, 5, 64, kv_layout, dtype, invalid_fraction=0.1, device=device))


@pytest.mark.parametrize(
    "b, s_q, h_q, topk, num_blocks, block_size",
    [
        (1, 1, 1, 1, 1, 1),  # the smallest problem
        (2, 1, 5, 33, 40, 1),  # block_size 1, odd head count
        (2, 3, 24, 70, 3, 61),  # s_q 3, odd block size, h_q not a multiple of 16
        (1, 2, 64, 200, 4, 69),
        (2, 1, 128, 130, 2, 256),
        (1, 2, 96, 40, 3, 16),  # two head blocks a wave on the GPUs, the second one past h_q on some waves
        (1, 1, 4, 16384, 128, 64),  # the longest top-k
        (130, 1, 2, 9, 8, 2),  # many batch rows
    ],
)
@pytest.mark.parametrize("kv_layout", LAYOUTS)
def test_shapes(device, b, s_q, h_q, topk, num_blocks, block_size, kv_layout):
    check(make_sparse_case(b, s_q, h_q, topk, num_blocks, block_size, kv_layout, invalid_fraction=0.05, device=device))


@pytest.mark.parametrize("kv_layout", LAYOUTS)
def test_extra_cache_with_lengths_and_sink(device, kv_layout):
    case = make_sparse_case(
        4, 2, 16, 64, 3, 64, kv_layout, extra_topk=48, extra_num_blocks=20, extra_block_size=2,
        topk_length=True, extra_topk_length=True, attn_sink=True, invalid_fraction=0.1, device=device,
    )  # fmt: skip
    check(case)


@pytest.mark.parametrize(
    "dtype, extra_dtype",
    [(torch.float8_e4m3fnuz, torch.float8_e4m3fn), (torch.float8_e4m3fn, torch.float8_e4m3fnuz),
     (torch.uint8, torch.float8_e4m3fn)],
)  # fmt: skip
@pytest.mark.parametrize("kv_layout", LAYOUTS)
def test_main_and_extra_cache_in_different_formats(device, dtype, extra_dtype, kv_layout):
    # The same bits are worth twice as much in e4m3fn as in e4m3fnuz: a kernel reading one cache in the other's
    # format is off by 2x. Top-k 40 puts main and extra keys in one 64-key tile.
    check(make_sparse_case(2, 2, 16, 40, 3, 64, kv_layout, dtype, extra_topk=70, extra_num_blocks=5,
                           extra_block_size=2, extra_dtype=extra_dtype, attn_sink=True, invalid_fraction=0.1,
                           device=device))  # fmt: skip


def test_extra_cache_without_lengths(device):
    check(make_sparse_case(2, 1, 8, 20, 2, 64, extra_topk=100, extra_num_blocks=3, extra_block_size=61, device=device))


def test_topk_length_edges(device):
    # Lengths -5, 0, 1, topk - 1, topk, topk + 9 on six batch rows.
    topk = 40
    lengths = torch.tensor([-5, 0, 1, topk - 1, topk, topk + 9], dtype=torch.int32, device=device)
    out, lse = check(make_sparse_case(6, 2, 8, topk, 2, 64, topk_length=lengths, device=device))
    assert torch.all(out[:2] == 0) and torch.all(lse[:2] == float("inf"))


def test_invalid_indices_of_every_kind(device):
    case = make_sparse_case(3, 2, 16, 64, 2, 61, invalid_fraction=0.5, device=device)
    num_tokens = 2 * 61
    bad = torch.tensor([-1, -(2**31), 2**31 - 1, num_tokens, num_tokens + 1, -num_tokens], dtype=torch.int32)
    case["indices"][0, 0, : len(bad)] = bad.to(device)
    case["indices"][1, 1, :] = -1  # a row with no valid key
    out, lse = check(case)
    assert torch.all(out[1, 1] == 0) and torch.all(lse[1, :, 1] == float("inf"))


def test_empty_cache_selects_nothing(device):
    out, lse = check(make_sparse_case(2, 1, 4, 8, 0, 64, device=device))
    assert torch.all(out == 0) and torch.all(lse == float("inf"))


def test_attn_sink_limits(device):
    case = make_sparse_case(2, 1, 4, 32, 2, 64, device=device)
    case["attn_sink"] = torch.tensor([float("inf"), float("-inf"), 0.0, 3.0], device=device)
    out, lse = check(case)
    plain_out, plain_lse = fm.sparse_attn_decode(**{k: v for k, v in case.items() if k != "attn_sink"})
    assert torch.all(out[:, :, 0] == 0), "sink +inf must zero the head"
    assert torch.equal(out[:, :, 1], plain_out[:, :, 1]), "sink -inf must change nothing"
    assert torch.equal(lse, plain_lse), "the sink must not change lse"


def test_custom_sm_scale(device):
    check(make_sparse_case(2, 1, 8, 50, 2, 64, sm_scale=0.125, device=device))


def test_layouts_give_identical_bits(device):
    case = make_sparse_case(2, 2, 16, 80, 3, 61, "token", torch.float8_e4m3fn, device=device)
    out, lse = fm.sparse_attn_decode(**case)
    flashmla = dict(case, kv=fm.convert_kv_layout(case["kv"], "token", "flashmla"), kv_layout="flashmla")
    out2, lse2 = fm.sparse_attn_decode(**flashmla)
    assert torch.equal(out, out2) and torch.equal(lse, lse2)


def test_same_input_same_bits(device):
    case = make_sparse_case(3, 2, 32, 300, 4, 64, extra_topk=40, device=device)
    out, lse = fm.sparse_attn_decode(**case)
    out2, lse2 = fm.sparse_attn_decode(**case)
    assert torch.equal(out, out2) and torch.equal(lse, lse2)


@pytest.mark.parametrize("kv_layout", LAYOUTS)
def test_cache_views(device, kv_layout):
    """Unpadded and sliced caches, a strided view that must be copied, and a cache at an odd byte address."""
    case = make_sparse_case(2, 1, 8, 40, 6, 61, kv_layout, torch.float8_e4m3fn, device=device)
    kv = case["kv"]
    expected = check(case)
    assert torch.equal(fm.sparse_attn_decode(**dict(case, kv=kv.contiguous()))[0], expected[0])
    # Blocks 1.. of a larger cache: indices shift by one block.
    bigger = torch.cat([torch.full_like(kv[:1], 0x7F), kv]) if kv_layout == "token" else None
    if bigger is not None:
        shifted = dict(case, kv=bigger[1:])
        assert torch.equal(fm.sparse_attn_decode(**shifted)[0], expected[0])
    # The same cache at an odd byte address.
    raw = torch.empty(kv.numel() + 1, dtype=torch.uint8, device=device)
    odd = raw[1:].view(kv.shape).view(kv.dtype)
    odd.copy_(kv.contiguous())
    assert odd.data_ptr() % 2 == 1
    assert torch.equal(fm.sparse_attn_decode(**dict(case, kv=odd))[0], expected[0])
    # A view whose tokens are not 584 bytes apart is read through a copy.
    doubled = torch.stack([kv.contiguous(), torch.full_like(kv.contiguous(), 0x7F)], dim=2).flatten(1, 2)[:, ::2]
    assert doubled.stride(1) == 2 * 584
    assert torch.equal(fm.sparse_attn_decode(**dict(case, kv=doubled))[0], expected[0])


def _in_wider(t, last, offset):
    """t's values inside a wider buffer: a view of t's shape whose last dimension starts at `offset` of `last`."""
    wide = torch.full((*t.shape[:-1], last), -7, dtype=t.dtype, device=t.device)
    wide[..., offset : offset + t.shape[-1]] = t
    return wide[..., offset : offset + t.shape[-1]]


STRIDED_VIEWS = {
    # q: heads and tokens swapped in memory, q in a wider row (read in place), q rows 2 bytes off alignment (copied)
    "q-transposed": lambda c: {"q": c["q"].transpose(1, 2).contiguous().transpose(1, 2)},
    "q-wider-row": lambda c: {"q": _in_wider(c["q"], 576, 64)},
    "q-misaligned": lambda c: {"q": _in_wider(c["q"], 520, 1)},
    # indices: lists inside a wider top-k buffer, one list shared by every token (stride 0), entries strided (copied)
    "indices-wider": lambda c: {"indices": _in_wider(c["indices"], 40, 3),
                                "extra_indices": _in_wider(c["extra_indices"], 17, 5)},  # fmt: skip
    "indices-shared": lambda c: {"indices": c["indices"][:, :1].expand(c["indices"].shape)},
    "indices-transposed": lambda c: {"indices": c["indices"].transpose(0, 2).contiguous().transpose(0, 2)},
    # lengths every other element of a buffer
    "lengths-strided": lambda c: {"topk_length": torch.stack([c["topk_length"], -c["topk_length"]], 1)[:, 0],
                                  "extra_topk_length": torch.stack([-c["extra_topk_length"], c["extra_topk_length"]],
                                                                   1)[:, 1]},  # fmt: skip
}


@pytest.mark.parametrize("view", list(STRIDED_VIEWS))
def test_non_contiguous_inputs(device, view):
    """Engines pass views: q, the index lists and the lengths are read through their strides (or copied where the
    kernels cannot), with the same result as contiguous tensors, bit for bit."""
    case = make_sparse_case(2, 3, 8, 24, 4, 64, extra_topk=8, extra_block_size=2, topk_length=True,
                            extra_topk_length=True, invalid_fraction=0.1, device=device)  # fmt: skip
    views = STRIDED_VIEWS[view](case)
    if view == "indices-shared":  # the expected result is that of the shared lists, contiguous
        case["indices"] = views["indices"].contiguous()
    assert not any(v.is_contiguous() for v in views.values() if v.dim() > 1 or v.stride(0) != 1)
    expected = fm.sparse_attn_decode(**case)
    out, lse = fm.sparse_attn_decode(**dict(case, **views))
    assert torch.equal(out, expected[0]) and torch.equal(lse, expected[1])


def test_zero_sized_problems(device):
    case = make_sparse_case(2, 1, 4, 8, 2, 64, device=device)
    for q, indices in [(case["q"][:0], case["indices"][:0]), (case["q"][:, :0], case["indices"][:, :0])]:
        out, lse = fm.sparse_attn_decode(q, case["kv"], indices)
        assert out.shape == (*q.shape[:3], 512) and lse.shape == (q.shape[0], q.shape[2], q.shape[1])
    out, lse = fm.sparse_attn_decode(case["q"], case["kv"], case["indices"][:, :, :0])
    assert torch.all(out == 0) and torch.all(lse == float("inf"))


def _valid_args(device):
    return make_sparse_case(2, 1, 4, 8, 2, 64, extra_topk=4, device=device)


BAD_INPUTS = [
    ("q", lambda c: c["q"].float(), TypeError, "q must have dtype"),
    ("q", lambda c: c["q"][0], ValueError, r"q must have shape \[b, s_q, h_q, 512\]"),
    ("q", lambda c: c["q"][..., :448], ValueError, "q must have shape"),
    ("kv", lambda c: c["kv"].view(torch.int8), TypeError, "kv must have dtype"),
    ("kv", lambda c: c["kv"][..., :576], ValueError, r"kv must have shape \[num_blocks, block_size, 1, 584\]"),
    ("kv", lambda c: c["kv"].flatten(1, 2), ValueError, "kv must have shape"),
    ("indices", lambda c: c["indices"].long(), TypeError, "indices must have dtype"),
    ("indices", lambda c: c["indices"][:1], ValueError, r"indices must have shape \[b, s_q, topk\]"),
    ("topk_length", lambda c: torch.zeros(3, dtype=torch.int32, device=c["q"].device), ValueError, "topk_length"),
    ("topk_length", lambda c: torch.zeros(2, device=c["q"].device), TypeError, "topk_length must have dtype"),
    ("attn_sink", lambda c: torch.zeros(5, device=c["q"].device), ValueError, r"attn_sink must have shape \[h_q\]"),
    ("attn_sink", lambda c: torch.zeros(4, dtype=torch.float64, device=c["q"].device), TypeError, "attn_sink"),
    ("extra_kv", lambda c: c["extra_kv"].view(torch.int8), TypeError, "extra_kv must have dtype"),
    ("extra_kv", lambda c: None, ValueError, "extra_kv and extra_indices must be given together"),
    ("extra_indices", lambda c: None, ValueError, "extra_kv and extra_indices must be given together"),
    ("extra_indices", lambda c: c["extra_indices"][:, :, None], ValueError, "extra_indices must have shape"),
    ("extra_topk_length", lambda c: c["extra_indices"][:, 0], ValueError, r"extra_topk_length must have shape"),
    ("kv_layout", lambda c: "paged", ValueError, 'kv_layout must be "token" or "flashmla"'),
]


@pytest.mark.parametrize("name, corrupt, error, message", BAD_INPUTS)
def test_bad_input_raises_naming_the_argument(device, name, corrupt, error, message):
    case = _valid_args(device)
    case[name] = corrupt(case)
    with pytest.raises(error, match=message):
        fm.sparse_attn_decode(**case)


def test_extra_topk_length_needs_extra_kv(device):
    case = make_sparse_case(2, 1, 4, 8, 2, 64, device=device)
    with pytest.raises(ValueError, match="extra_topk_length needs extra_kv"):
        fm.sparse_attn_decode(**case, extra_topk_length=torch.zeros(2, dtype=torch.int32, device=device))


def test_tensor_on_another_device_raises(device):
    """On the CPU a meta tensor sends the call to the meta kernel, on a GPU a CPU tensor stays with the GPU kernel:
    the same check either way."""
    case = make_sparse_case(2, 1, 4, 8, 2, 64, device=device)
    other = torch.device("meta" if device == "cpu" else "cpu")
    with pytest.raises(ValueError, match="indices must be on"):
        fm.sparse_attn_decode(**dict(case, indices=case["indices"].to(other)))


def test_backward_raises(device):
    """An inference op: its outputs carry no gradient function that would silently leave q.grad None."""
    case = make_sparse_case(2, 1, 4, 8, 2, 64, device=device)
    q = case["q"].clone().requires_grad_()
    out, lse = fm.sparse_attn_decode(**dict(case, q=q))
    with pytest.raises(RuntimeError, match="sparse_attn_decode.*not implemented|not implemented.*sparse_attn_decode"):
        (out.float().sum() + lse.sum()).backward()


def test_quantized_random_latents_attend_like_the_float_latents(device):
    """End to end from latents: the fp8 cache's answer stays close to attention over the unquantized latents."""
    latent = random_latent(2, 64, device=device)
    kv = fm.quantize_kv(latent)
    q = (torch.randn(1, 1, 8, 512, device=device) * 3).bfloat16()
    indices = torch.arange(128, dtype=torch.int32, device=device).view(1, 1, 128)
    out, _ = fm.sparse_attn_decode(q, kv, indices)
    keys = latent.view(128, 512).double()
    probs = torch.softmax(q[0, 0].double() @ keys.T * 512**-0.5, dim=-1)
    exact = probs @ keys
    cos = torch.nn.functional.cosine_similarity(out[0, 0].double().flatten(), exact.flatten(), dim=0)
    assert cos > 0.999


LARGE_SHAPES = [
    # b, s_q, h_q, topk, num_blocks, block_size, layout, extra_topk, extra_block_size
    (2, 2, 64, 16384, 300, 64, "flashmla", 0, 64),  # the longest top-k, many splits
    (256, 2, 128, 128, 256, 256, "flashmla", 1024, 2),  # CONFIG4-like, one split
    (74, 2, 64, 128, 64, 256, "token", 512, 64),
    (3, 1, 8, 1000, 500, 1, "token", 0, 64),
    (5, 3, 16, 700, 20, 61, "flashmla", 300, 69),
    (7, 2, 32, 640, 30, 64, "token", 0, 64),
    (4, 1, 77, 500, 9, 61, "flashmla", 130, 2),  # odd head count over two CTAs
    (128, 1, 128, 2048, 64, 64, "token", 0, 64),
]


@pytest.mark.parametrize("b, s_q, h_q, topk, num_blocks, block_size, kv_layout, extra_topk, extra_block", LARGE_SHAPES)
def test_large_shapes(device, b, s_q, h_q, topk, num_blocks, block_size, kv_layout, extra_topk, extra_block):
    if device == "cpu":
        pytest.skip("GPU-sized shapes: minutes on the CPU backend and its emulation; run on a GPU")
    dtype = torch.float8_e4m3fn if kv_layout == "flashmla" else torch.uint8
    case = make_sparse_case(
        b, s_q, h_q, topk, num_blocks, block_size, kv_layout, dtype, extra_topk=extra_topk,
        extra_num_blocks=max(4096 // extra_block, 1), extra_block_size=extra_block, topk_length=True,
        extra_topk_length=True, attn_sink=True, invalid_fraction=0.02, device=device,
    )  # fmt: skip
    check(case)


def test_empty_row_with_infinite_sink(device):
    """A row without valid keys is 0 with lse +inf, whatever the sink (+inf - +inf must not make NaN)."""
    case = make_sparse_case(2, 1, 4, 16, 2, 64, device=device)
    case["topk_length"] = torch.tensor([0, 16], dtype=torch.int32, device=device)
    case["attn_sink"] = torch.tensor([float("inf"), float("-inf"), 0.0, 1.0], device=device)
    out, lse = check(case)
    assert torch.all(out[0] == 0) and torch.all(lse[0] == float("inf"))

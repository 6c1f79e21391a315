"""torch.ops.flash_mla.decode (CSR ranges) against the float64 reference, edge cases, and bad input."""

import math

import pytest
import torch

import flash_mla_rocm as fm
import gfx942_emulation
from flash_mla_rocm import quant, reference
from flash_mla_rocm.quant import HEAD_DIM
from flash_mla_rocm.testing import assert_out_close, make_decode_case

NOPE_DTYPES = [torch.float8_e4m3fnuz, torch.float8_e4m3fn, torch.uint8]


def check(case, sm_scale=None):
    out = fm.decode(**case, sm_scale=sm_scale)
    assert out.dtype == torch.bfloat16
    # The CPU backend is exact; GPU matrix cores take keys rounded to bf16 (README, "Numerics").
    key_dtype = None if out.is_cpu and not gfx942_emulation.active() else torch.bfloat16
    assert_out_close(out, reference.decode(**case, sm_scale=sm_scale, key_dtype=key_dtype))
    return out


@pytest.mark.parametrize("dtype", NOPE_DTYPES)
@pytest.mark.parametrize("heads", [1, 16, 100, 128])
def test_formats_and_heads(device, dtype, heads):
    check(make_decode_case([37, 64, 1, 200], heads, dtype, device=device))


@pytest.mark.parametrize(
    "lengths, heads",
    [
        ([0, 5, 0], 7),  # empty ranges give zeros
        ([1], 3),
        ([20000], 8),  # a long range
        ([3] * 200, 4),  # many batch rows
    ],
)
def test_lengths(device, lengths, heads):
    out = check(make_decode_case(lengths, heads, device=device))
    for i, n in enumerate(lengths):
        if n == 0:
            assert torch.all(out[i] == 0)


@pytest.mark.parametrize("lengths, heads", [([65536], 16), ([65536, 1, 40000], 128)])
def test_long_ranges(device, lengths, heads):
    if device == "cpu":
        pytest.skip("GPU-sized ranges (64k tokens): minutes on the CPU backend and its emulation; run on a GPU")
    check(make_decode_case(lengths, heads, torch.float8_e4m3fn, device=device))


def test_custom_sm_scale(device):
    check(make_decode_case([50, 70], 8, device=device), sm_scale=0.3)


@pytest.mark.parametrize("heads", [16, 64, 128])
def test_rising_scores(device, heads):
    """Keys in rising score order, a peaked softmax: the running max moves again and again, so the kernels' lazy
    rescale of the accumulators (skipped while a tile's max stays within 2^8 of it) runs many times. Every head's
    query is the first head's times its own factor in [1, 2): the same key order, so every head rescales, with maxima
    and weights of its own (a head taking another's fails), and the heads' rises fall on even and odd tiles, on two
    tiles in a row and on a row's last tile (where the gfx942 kernel leaves its two-tile loop and comes back). The
    empty rows keep the planned keys per row (T / B) under one tile, so no row is split: each runs its whole rising
    range in one CTA/workgroup."""
    sm_scale = 8 * HEAD_DIM**-0.5
    case = make_decode_case([400, 160] + [0] * 60, heads, device=device)
    factors = 1 + torch.arange(heads, device=device) / heads
    case["q"] = (case["q"][:, :1].float() * factors[None, :, None]).bfloat16()
    keys = quant.dequantize_kv_split(case["kv_nope_fp8"], case["kv_rope"], case["kv_scales"]).double()
    bounds = case["kv_indptr"].tolist()
    order = torch.arange(keys.shape[0], device=device)
    rise_tiles = set()  # (row, tile, last tile of the row) where some head's max moves
    for row, (begin, end) in enumerate(zip(bounds[:-1], bounds[1:])):
        if end == begin:
            continue
        scores = keys[begin:end] @ case["q"][row].double().T * sm_scale * math.log2(math.e)  # [keys, heads]
        rank = scores[:, 0].argsort()  # one order for every head: their queries are multiples of the first
        order[begin:end] = begin + rank
        tile_maxima = scores[rank].reshape(-1, 16, heads).amax(dim=1).T.tolist()  # [heads][tiles]
        for head_maxima in tile_maxima:  # the kernels' rule, 16-key tiles, log2 units: move when 2^8 above the max
            reference_max = head_maxima[0]
            for tile, tile_max in enumerate(head_maxima[1:], 1):
                if tile_max > reference_max + 8:
                    reference_max = tile_max
                    rise_tiles.add((row, tile, tile == len(head_maxima) - 1))
    tiles = {(row, tile) for row, tile, _ in rise_tiles}
    assert {tile % 2 for _, tile in tiles} == {0, 1}, rise_tiles
    assert any((row, tile + 1) in tiles for row, tile in tiles), rise_tiles
    assert any(last for _, _, last in rise_tiles), rise_tiles
    for name in ("kv_nope_fp8", "kv_rope", "kv_scales"):
        case[name] = case[name][order]
    check(case, sm_scale=sm_scale)


def test_adversarial_indptr(device):
    """Ranges are clamped to [0, T]; a range that ends before it begins is empty."""
    case = make_decode_case([40, 40], 8, device=device, margin=0)
    num_tokens = case["kv_nope_fp8"].shape[0]
    for indptr in ([-(2**31), 10, 2**31 - 1], [-5, 60, 20], [num_tokens + 1, 5, num_tokens + 9], [70, 30, 80]):
        case["kv_indptr"] = torch.tensor(indptr, dtype=torch.int32, device=device)
        check(case)


def test_no_tokens(device):
    case = make_decode_case([0, 0], 4, device=device, margin=0)
    assert case["kv_nope_fp8"].shape[0] == 0
    out = check(case)
    assert torch.all(out == 0)


def test_no_batch_rows(device):
    case = make_decode_case([], 4, device=device)
    assert fm.decode(**case).shape == (0, 4, 512)


def test_same_input_same_bits(device):
    case = make_decode_case([300, 1000], 32, device=device)
    assert torch.equal(fm.decode(**case), fm.decode(**case))


def test_non_contiguous_inputs(device):
    case = make_decode_case([30, 20], 4, device=device)
    expected = fm.decode(**case)
    strided = {
        "q": case["q"].transpose(0, 1).contiguous().transpose(0, 1),
        "kv_scales": case["kv_scales"].t().contiguous().t(),
        "kv_rope": case["kv_rope"].t().contiguous().t(),
    }
    assert not any(t.is_contiguous() for t in strided.values())
    assert torch.equal(fm.decode(**dict(case, **strided)), expected)


BAD_INPUTS = [
    ("q", lambda c: c["q"].half(), TypeError, "q must have dtype"),
    ("q", lambda c: c["q"][None], ValueError, r"q must have shape \[B, H, 512\]"),
    ("kv_nope_fp8", lambda c: c["kv_nope_fp8"].view(torch.int8), TypeError, "kv_nope_fp8 must have dtype"),
    ("kv_nope_fp8", lambda c: c["kv_nope_fp8"][:, :447], ValueError, r"kv_nope_fp8 must have shape \[T, 448\]"),
    ("kv_rope", lambda c: c["kv_rope"].float(), TypeError, "kv_rope must have dtype"),
    ("kv_rope", lambda c: c["kv_rope"][1:], ValueError, r"kv_rope must have shape \[T, 64\]"),
    ("kv_scales", lambda c: c["kv_scales"].double(), TypeError, "kv_scales must have dtype"),
    ("kv_scales", lambda c: c["kv_scales"][:, :6], ValueError, r"kv_scales must have shape \[T, 7\]"),
    ("kv_indptr", lambda c: c["kv_indptr"].long(), TypeError, "kv_indptr must have dtype"),
    ("kv_indptr", lambda c: c["kv_indptr"][:-1], ValueError, r"kv_indptr must have shape \[B \+ 1\]"),
    ("num_heads", lambda c: c["num_heads"] + 1, ValueError, "num_heads must equal q.shape"),
]


@pytest.mark.parametrize("name, corrupt, error, message", BAD_INPUTS)
def test_bad_input_raises_naming_the_argument(device, name, corrupt, error, message):
    case = make_decode_case([10, 12], 4, device=device)
    case[name] = corrupt(case)
    with pytest.raises(error, match=message):
        fm.decode(**case)


def test_tensor_on_another_device_raises(device):
    """On the CPU a meta tensor sends the call to the meta kernel, on a GPU a CPU tensor stays with the GPU kernel:
    the same check either way."""
    case = make_decode_case([10, 12], 4, device=device)
    other = torch.device("meta" if device == "cpu" else "cpu")
    with pytest.raises(ValueError, match="kv_rope must be on"):
        fm.decode(**dict(case, kv_rope=case["kv_rope"].to(other)))


def test_backward_raises(device):
    """An inference op: its output carries no gradient function that would silently leave q.grad None."""
    case = make_decode_case([10, 12], 4, device=device)
    q = case["q"].clone().requires_grad_()
    out = fm.decode(**dict(case, q=q))
    with pytest.raises(RuntimeError, match="decode.*not implemented|not implemented.*decode"):
        out.float().sum().backward()

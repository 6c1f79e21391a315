"""flash_mla_rocm.quant: the scale formula, byte placement in both layouts, round trips, layout conversion."""

import importlib.util
import os

import pytest
import torch

import flash_mla_rocm as fm
from flash_mla_rocm.quant import token_views
from flash_mla_rocm.testing import random_latent

CACHE_DTYPES = [torch.uint8, torch.float8_e4m3fnuz, torch.float8_e4m3fn]
LAYOUTS = ["token", "flashmla"]


def one_token(tile_max):
    """A [1, 1, 512] latent whose 7 nope tiles have the given absolute maxima (tile g holds +-tile_max[g])."""
    x = torch.zeros(1, 1, 512)
    for g, m in enumerate(tile_max):
        x[0, 0, 64 * g] = m
        x[0, 0, 64 * g + 1] = -m / 2
    x[0, 0, 448:] = torch.linspace(-3, 3, 64)
    return x.bfloat16()


@pytest.mark.parametrize("dtype, fp8_max", [(torch.float8_e4m3fn, 448.0), (torch.float8_e4m3fnuz, 240.0)])
def test_scale_is_the_e8m0_formula(dtype, fp8_max):
    tile_max = [1.0, 0.0, 448.0, 240.0, 3e-3, 1000.0, 0.5]
    kv = fm.quantize_kv(one_token(tile_max), "token", dtype)
    _, scales = token_views(kv, "token")
    amax = torch.tensor(tile_max).bfloat16().float()
    expected = 127 + torch.ceil(torch.log2(torch.clamp_min(amax / fp8_max, 1e-4))).int()
    assert scales[0, 0, :7].tolist() == expected.tolist()
    assert scales[0, 0, 7].item() == 0  # pad


@pytest.mark.parametrize("layout", LAYOUTS)
def test_byte_placement(layout):
    latent = random_latent(2, 3)
    kv = fm.quantize_kv(latent, layout, torch.float8_e4m3fn)
    raw = kv.view(torch.uint8)
    block_stride = raw.stride(0)
    flat = raw.as_strided((2 * block_stride,), (1,)) if layout == "token" else None
    for block in range(2):
        for offset in range(3):
            x = latent[block, offset]
            if layout == "token":
                base = block * block_stride + offset * 584
                data = flat[base : base + 576]
                scale_bytes = flat[base + 576 : base + 583]
            else:
                block_bytes = raw[block].flatten()
                data = block_bytes[offset * 576 : offset * 576 + 576]
                scale_bytes = block_bytes[3 * 576 + offset * 8 : 3 * 576 + offset * 8 + 7]
            scale = 2.0 ** (scale_bytes.float() - 127)
            nope = data[:448].view(torch.float8_e4m3fn).float().view(7, 64) * scale[:, None]
            assert torch.allclose(nope.flatten(), x[:448].float(), rtol=1 / 16, atol=float(scale.max()) * 2**-9)
            assert torch.equal(data[448:].contiguous().view(torch.bfloat16), x[448:])
    if layout == "flashmla":  # FlashMLA pads each block to a multiple of 576 bytes
        assert block_stride == -(-3 * 584 // 576) * 576


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", CACHE_DTYPES)
@pytest.mark.parametrize("src", [torch.bfloat16, torch.float32])
def test_round_trip_error_is_fp8_rounding(layout, dtype, src):
    latent = random_latent(3, 61).to(src)
    kv = fm.quantize_kv(latent, layout, dtype)
    assert kv.dtype == dtype and kv.shape == (3, 61, 1, 584)
    back = fm.dequantize_kv(kv, layout).squeeze(2)
    _, scales = token_views(kv, layout)
    scale = (2.0 ** (scales[..., :7].float() - 127)).repeat_interleave(64, dim=-1)
    subnormal_step = scale * (2**-9 if dtype == torch.float8_e4m3fn else 2**-10)
    err = (back[..., :448] - latent[..., :448].float()).abs()
    assert torch.all(err <= latent[..., :448].float().abs() / 16 + subnormal_step)
    assert torch.equal(back[..., 448:], latent[..., 448:].bfloat16().float())


def test_dequantize_selected_tokens():
    kv = fm.quantize_kv(random_latent(4, 5), "flashmla")
    tokens = torch.tensor([[0, 19], [7, 7]])
    full = fm.dequantize_kv(kv, "flashmla").view(20, 512)
    assert torch.equal(fm.dequantize_kv(kv, "flashmla", tokens), full[tokens])


@pytest.mark.parametrize("dtype", CACHE_DTYPES)
def test_layout_conversion_round_trip(dtype):
    kv = fm.quantize_kv(random_latent(3, 69), "token", dtype)
    converted = fm.convert_kv_layout(kv, "token", "flashmla")
    assert converted.dtype == dtype and converted.stride(0) % 576 == 0
    assert torch.equal(fm.dequantize_kv(converted, "flashmla"), fm.dequantize_kv(kv, "token"))
    back = fm.convert_kv_layout(converted, "flashmla", "token")
    assert torch.equal(back.view(torch.uint8), kv.view(torch.uint8))


@pytest.mark.parametrize("dtype", CACHE_DTYPES)
def test_split_quantizer_matches_the_paged_one(dtype):
    latent = random_latent(10)
    nope, rope, scales = fm.quantize_kv_split(latent, dtype)
    assert nope.shape == (10, 448) and nope.dtype == dtype
    assert rope.shape == (10, 64) and rope.dtype == torch.bfloat16
    assert scales.shape == (10, 7) and scales.dtype == torch.float32
    data, scale_bytes = token_views(fm.quantize_kv(latent.view(10, 1, 512), "token", dtype), "token")
    assert torch.equal(nope.view(torch.uint8), data[:, 0, :448])
    assert torch.equal(scales, 2.0 ** (scale_bytes[:, 0, :7].float() - 127))
    paged = fm.dequantize_kv(fm.quantize_kv(latent.view(10, 1, 512), "token", dtype)).view(10, 512)
    assert torch.equal(fm.quant.dequantize_kv_split(nope, rope, scales), paged)


def test_bad_arguments():
    latent = random_latent(2, 4)
    with pytest.raises(ValueError, match="kv_layout"):
        fm.quantize_kv(latent, "paged")
    with pytest.raises(TypeError, match="dtype"):
        fm.quantize_kv(latent, "token", torch.int8)
    with pytest.raises(ValueError, match="latent must have shape"):
        fm.quantize_kv(latent[..., :448])
    with pytest.raises(TypeError, match="latent must be"):
        fm.quantize_kv(latent.half())
    with pytest.raises(ValueError, match="kv must have shape"):
        fm.dequantize_kv(torch.zeros(2, 4, 576, dtype=torch.uint8))
    with pytest.raises(ValueError, match="dst_layout"):
        fm.convert_kv_layout(fm.quantize_kv(latent), "token", "rows")


FLASHMLA_QUANT = os.environ.get("FLASHMLA_QUANT_PY")  # path to FlashMLA's tests/quant.py, if a checkout is at hand


@pytest.mark.skipif(not FLASHMLA_QUANT, reason="set FLASHMLA_QUANT_PY to FlashMLA's tests/quant.py to compare")
@pytest.mark.parametrize("block_size", [1, 2, 61, 64, 256])
def test_flashmla_layout_is_byte_identical_to_flashmla(block_size):
    spec = importlib.util.spec_from_file_location("flashmla_quant", FLASHMLA_QUANT)
    flashmla = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(flashmla)
    latent = random_latent(3, block_size).unsqueeze(2)
    theirs = flashmla.quantize_k_cache(latent, flashmla.FP8KVCacheLayout.MODEL1_FP8Sparse)
    ours = fm.quantize_kv(latent, "flashmla")
    assert theirs.shape == ours.shape and theirs.stride() == ours.stride() and theirs.dtype == ours.dtype
    their_data, their_scales = token_views(theirs, "flashmla")
    our_data, our_scales = token_views(ours, "flashmla")
    assert torch.equal(their_data, our_data)
    assert torch.equal(their_scales[..., :7], our_scales[..., :7])  # FlashMLA leaves the pad byte unset

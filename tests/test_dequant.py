"""The fp8 -> bf16 dequantization primitives of the GPU kernels, exhaustively and bit for bit against torch's own fp8
conversion times the scale, rounded to bf16 as the kernel says it rounds: every byte value in every byte position of
a 32-bit word, and every pair of adjacent bytes. The attention tests' tolerances cannot see a wrong sign or a wrong
low bit here, this file can.

gfx942 (kernels/gfx942/dequant.h) runs under the emulation on the CPU; sm90 (kernels/sm90/dequant.cuh) on a Hopper
GPU, through a test-only extension (tests/sm90_checks.py).
"""

import os

import pytest
import torch

FILLERS = [0x00, 0x80, 0x81, 0x7F, 0xFF, 0x01]  # the bytes around the one under test: zero, -0/NaN, NaN, their kin
POWER_OF_TWO_SCALES = [2.0**-13, 2.0**-1, 1.0, 2.0**15]  # e8m0 scales of the quantizer's range
FOLDABLE_SCALES = [2.0**-13, 2.0**-1, 1.0, 2.0**7]  # e8m0 scales sm90 folds into the bf16 exponent (byte + 120 <= 254)
# decode's arbitrary positive scales; 1 + 2^-8 makes exact ties (a power-of-two fp8 value times it is halfway
# between two bf16), where the roundings differ
FP32_SCALES = [0.3, 1.7e-3, 123.456, 2.0**-13 * 1.1, 1 + 2.0**-8]


def byte_words():
    """[n] int32 words: every byte value at each position with the other bytes a filler, then every pair of
    adjacent bytes with the other two bytes 0x00 or 0x80."""
    words = []
    value = torch.arange(256, dtype=torch.int64)
    for filler in FILLERS:
        base = filler * 0x01010101
        for position in range(4):
            shift = 8 * position
            words.append((base & ~(0xFF << shift)) | (value << shift))
    pair = torch.arange(65536, dtype=torch.int64)
    for filler in (0x00, 0x80):
        base = filler * 0x01010101
        for position in range(3):
            shift = 8 * position
            words.append((base & ~(0xFFFF << shift)) | (pair << shift))
    words = torch.cat(words)
    return torch.where(words >= 2**31, words - 2**32, words).to(torch.int32)


def word_bytes(words):
    """[n] int32 -> [n, 4] uint8, byte j of each word in column j (little-endian)."""
    return words.view(torch.uint8).view(-1, 4)


def expected_bf16(fp8_bytes, scales, fp8_dtype, ties_away=False):
    """torch's fp8 value times the scale, in fp32, rounded to bf16 (to nearest, ties to even, or with `ties_away`
    away from zero): [n, k] bytes, [n] scales -> [n, k] float32."""
    products = fp8_bytes.view(fp8_dtype).float() * scales[:, None]
    if not ties_away:
        return products.bfloat16().float()
    bits = (products.view(torch.int32).long() & 0xFFFFFFFF) + 0x8000  # the magnitude's half ulp, carried up
    return ((bits >> 16) << 16).to(torch.int32).view(torch.float32)  # int32 keeps the low 32 bits


def assert_dequantized(got_bits, fp8_bytes, scales, fp8_dtype, negative_zero_reads_positive, nan_reads_finite,
                       ties_away=False):
    """got_bits [n, k] int16 bf16 patterns against the exact value of every byte, rounded as the kernel says. The
    documented exceptions are checked as documented: e4m3fn -0 as +0 where the kernel says so, NaN encodings as
    finite values where it does."""
    expected = expected_bf16(fp8_bytes, scales, fp8_dtype, ties_away)
    got = got_bits.view(torch.bfloat16).float()
    nan = torch.isnan(fp8_bytes.view(fp8_dtype).float())
    if nan_reads_finite:
        assert torch.isfinite(got[nan]).all()
    else:
        assert torch.isnan(got[nan]).all()
    if negative_zero_reads_positive:
        expected = torch.where(fp8_bytes == 0x80, torch.zeros_like(expected), expected)
    expected_bits = expected.bfloat16().view(torch.int16)
    wrong = (got_bits != expected_bits) & ~nan
    if wrong.any():
        row, column = [int(i) for i in wrong.nonzero()[0]]
        word = [hex(int(b)) for b in fp8_bytes[row]]
        got_word, expected_word = int(got_bits[row, column]) & 0xFFFF, int(expected_bits[row, column]) & 0xFFFF
        raise AssertionError(
            f"{int(wrong.sum())} values differ; first: bytes {word}, element {column}, scale {float(scales[row])}: "
            f"got bf16 {got_word:#06x}, expected {expected_word:#06x}"
        )


def scale_per_word(words, scale_list):
    """The words repeated once per scale, with that scale."""
    return words.repeat(len(scale_list)), torch.tensor(scale_list).repeat_interleave(words.numel())


# ---- gfx942: dequant_fp8x4_to_bf16 under the emulation ----

gfx942 = pytest.mark.skipif(os.environ.get("FLASH_MLA_TEST_GFX942", "1") == "0", reason="FLASH_MLA_TEST_GFX942=0")


@gfx942
@pytest.mark.parametrize(
    "fp8_dtype, halved",
    [(torch.float8_e4m3fn, False), (torch.float8_e4m3fn, True), (torch.float8_e4m3fnuz, False)],
    ids=["e4m3fn", "e4m3fn-halved", "e4m3fnuz"],
)
@pytest.mark.parametrize("power_of_two_scale", [True, False], ids=["e8m0", "fp32"])
def test_gfx942_dequant_fp8x4(fp8_dtype, halved, power_of_two_scale):
    from gfx942_emulation import emulated_ops

    words, scales = scale_per_word(byte_words(), POWER_OF_TWO_SCALES if power_of_two_scale else FP32_SCALES)
    e4m3fn = fp8_dtype == torch.float8_e4m3fn
    got = emulated_ops().dequant_fp8x4(words, scales, e4m3fn, power_of_two_scale, halved)
    # v_cvt_pk_f32_fp8 reads e4m3fnuz: its NaN (0x80) stays NaN; e4m3fn's NaN encodings are read through it as finite
    # values, and e4m3fn's -0 is cleared to +0 first. Halved: the values at half the scale, bit for bit (a power of
    # two: the same roundings). fp32 scales round ties away from zero.
    assert_dequantized(got, word_bytes(words), scales / 2 if halved else scales, fp8_dtype, e4m3fn, e4m3fn,
                       ties_away=not power_of_two_scale)


# ---- sm90: the three dequantization paths of kernels/sm90/dequant.cuh, on a Hopper GPU ----

def _has_sm90():
    return torch.cuda.is_available() and torch.version.cuda is not None and torch.cuda.get_device_capability() >= (9, 0)


sm90 = pytest.mark.skipif(not _has_sm90(), reason="needs an sm90 (Hopper) GPU and a CUDA torch")


@sm90
@pytest.mark.parametrize("fp8_dtype", [torch.float8_e4m3fn, torch.float8_e4m3fnuz])
@pytest.mark.parametrize("path", ["folded", "exact", "f32"])
def test_sm90_dequant_fp8x8(fp8_dtype, path):
    """folded: e8m0 scales folded into the shifted bf16 (the MODEL1 cache's fast path); exact: fp8_to_float times the
    scale (e8m0 scales the fold cannot take); f32: decode's arbitrary fp32 scales."""
    from sm90_checks import sm90_ops

    words = byte_words()
    words = torch.stack([words, words.roll(1)], dim=1)  # 8 bytes a call: each word as the low and the high half
    scale_list = {"folded": FOLDABLE_SCALES, "exact": POWER_OF_TWO_SCALES, "f32": FP32_SCALES}[path]
    pairs = words.repeat(len(scale_list), 1)
    scales = torch.tensor(scale_list).repeat_interleave(words.shape[0])
    e4m3fn = fp8_dtype == torch.float8_e4m3fn
    got = sm90_ops().dequant_fp8x8(pairs.cuda(), scales.cuda(), path, e4m3fn).cpu()
    # The shift paths have no NaN: every fp8 NaN encoding reads as a finite value; the exact path keeps NaN.
    assert_dequantized(got, pairs.view(torch.uint8).view(-1, 8), scales, fp8_dtype, False, path != "exact")

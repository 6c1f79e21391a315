"""The gfx942 emulation itself, held to the CDNA3 ISA apart from any kernel: the lane layouts of
v_mfma_f32_16x16x16_bf16 (docs/design.md, section 5, as AMD's matrix instruction calculator prints them for CDNA3)
and the cross-lane moves the kernels use. A kernel and an emulation wrong in the same way would pass the op tests."""

import os

import pytest
import torch

if os.environ.get("FLASH_MLA_TEST_GFX942", "1") == "0":
    pytest.skip("FLASH_MLA_TEST_GFX942=0", allow_module_level=True)

from gfx942_emulation import emulated_ops  # noqa: E402


def test_mfma_16x16x16_bf16_lane_layouts():
    """A[i][k] in lane i + 16 (k / 4), element k % 4; B[k][j] in lane j + 16 (k / 4), element k % 4; C and D[i][j] in
    lane j + 16 (i / 4), element i % 4."""
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(16, 16, generator=gen).bfloat16()
    b = torch.randn(16, 16, generator=gen).bfloat16()
    c = torch.randn(16, 16, generator=gen)
    a_lanes = torch.zeros(64, 4, dtype=torch.int16)
    b_lanes = torch.zeros(64, 4, dtype=torch.int16)
    c_lanes = torch.zeros(64, 4)
    for k in range(16):
        for n in range(16):  # n is i for A, j for B
            a_lanes[n + 16 * (k // 4), k % 4] = a[n, k].view(torch.int16)
            b_lanes[n + 16 * (k // 4), k % 4] = b[k, n].view(torch.int16)
    for i in range(16):
        for j in range(16):
            c_lanes[j + 16 * (i // 4), i % 4] = c[i, j]
    d_lanes = emulated_ops().mfma_16x16x16_bf16_lanes(a_lanes, b_lanes, c_lanes)
    d = torch.empty(16, 16)
    for i in range(16):
        for j in range(16):
            d[i, j] = d_lanes[j + 16 * (i // 4), i % 4]
    expected = a.double() @ b.double() + c.double()
    torch.testing.assert_close(d.double(), expected, rtol=1e-6, atol=1e-6)


def test_cross_lane_moves():
    values = torch.arange(64, dtype=torch.int32) * 7 + 3
    out = emulated_ops().lane_shuffles(values)
    lanes = torch.arange(64)
    assert torch.equal(out[0], values[lanes ^ 16])  # ds_bpermute from lane ^ 16
    assert torch.equal(out[1], values[lanes ^ 32])
    assert torch.equal(out[2], values[lanes // 4 * 4 + 2])  # DPP quad_perm [2, 2, 2, 2]


def test_bf16_packing():
    """pack_bf16x2 rounds to nearest even as torch does; pack_bf16x2_ties_away (the softmax weights) the same except
    on exact ties, which go away from zero."""
    gen = torch.Generator().manual_seed(0)
    random = torch.randn(4096, generator=gen) * 2.0 ** torch.randint(-20, 20, (4096,), generator=gen)
    bf16 = torch.randn(2048, generator=gen).bfloat16().float()
    ulp = bf16.abs().view(torch.int32).bitwise_and(0x7F800000).view(torch.float32) * 2.0**-7
    ties = bf16 + ulp / 2  # exactly halfway between two bf16 values (of either low bit)
    values = torch.cat([random, ties, -ties, torch.tensor([0.0, -0.0, 1.0, 2.0**-130])])
    got = emulated_ops().pack_bf16(values)
    nearest_even = values.bfloat16().view(torch.int16)
    assert torch.equal(got[0], nearest_even)
    bits = values.view(torch.int32)
    away = ((bits + 0x8000) >> 16).to(torch.int16)  # add half an ulp to the magnitude, truncate
    tie = bits.bitwise_and(0xFFFF) == 0x8000
    # Not every constructed value is a tie (below a power of two the ulp is half as wide): most are.
    assert tie.sum() >= 4000 and torch.equal(got[1][~tie], nearest_even[~tie]) and torch.equal(got[1], away)


def test_no_symbol_shared_with_the_wheel():
    """The emulation build compiles the binding layer again, over other kernels: none of its exported symbols may
    also be one of the wheel's _C (same name, other body), whatever order or flags the two libraries load with."""
    import subprocess

    from torch.utils import cpp_extension

    import flash_mla_rocm
    from gfx942_emulation import NAMESPACE

    emulated_ops()
    emulated = os.path.join(cpp_extension._get_build_directory(NAMESPACE, verbose=False), f"{NAMESPACE}.so")

    def exported(library):
        listing = subprocess.run(["nm", "-D", "--defined-only", library], check=True, capture_output=True, text=True)
        return {line.split()[-1] for line in listing.stdout.splitlines() if len(line.split()) == 3}

    shared = {s for s in exported(emulated) & exported(flash_mla_rocm._C.__file__) if "flash_mla" in s}
    assert not shared, sorted(shared)[:10]

"""The float64 references (flash_mla_rocm.reference) and the test-data helpers, where an oracle is easiest to get
wrong: empty batches, NaN inputs, caches of 2^31 tokens, scores so large that log-sum-exp rounds, empty caches.
Each case is also run through the CPU op, which must agree."""

import torch

import flash_mla_rocm as fm
from flash_mla_rocm import reference
from flash_mla_rocm.testing import assert_lse_close, assert_out_close, make_sparse_case, random_latent


def test_empty_batch():
    case = make_sparse_case(2, 3, 4, 8, 2, 64)
    case["q"], case["indices"] = case["q"][:0], case["indices"][:0]
    out, lse = reference.sparse_attn_decode(**case)
    assert out.shape == (0, 3, 4, 512) and lse.shape == (0, 4, 3)
    op_out, op_lse = fm.sparse_attn_decode(**case)
    assert op_out.shape == out.shape and op_lse.shape == lse.shape


def test_nan_query_gives_nan_not_zero():
    """A NaN in q makes every score of its head NaN: the op returns NaN there, and so must the oracle."""
    case = make_sparse_case(1, 1, 4, 16, 2, 64)
    case["q"] = case["q"].clone()
    case["q"][0, 0, 1, 7] = float("nan")
    ref_out, _ = reference.sparse_attn_decode(**case)
    out, _ = fm.sparse_attn_decode(**case)
    assert ref_out[0, 0, 1].isnan().all() and not ref_out[0, 0, [0, 2, 3]].isnan().any()
    assert torch.equal(out.isnan(), ref_out.isnan())


def test_cache_of_2_to_the_31_tokens():
    """num_blocks * block_size = 2^31 (one real block, expanded): every int32 index >= 0 is valid."""
    kv = fm.quantize_kv(random_latent(1, 1)).expand(2**31, 1, 1, 584)
    q = torch.randn(1, 1, 2, 512).bfloat16()
    indices = torch.tensor([[[0, 7, 2**31 - 1, -1]]], dtype=torch.int32)
    ref_out, ref_lse = reference.sparse_attn_decode(q, kv, indices)
    assert ref_lse.isfinite().all()  # three valid keys, not none
    out, lse = fm.sparse_attn_decode(q, kv, indices)
    assert_out_close(out, ref_out)
    assert_lse_close(lse, ref_lse)


def test_huge_scores_with_a_tied_maximum():
    """Scores near 3.5e31: max + log(2) rounds to max, so exp(s - lse) would weigh both copies of the top key 1."""
    latent = random_latent(1, 4)
    kv = fm.quantize_kv(latent)
    key = fm.dequantize_kv(kv, tokens=torch.tensor([2]))[0]
    q = key.bfloat16().view(1, 1, 1, 512)
    indices = torch.tensor([[[2, 2, 0]]], dtype=torch.int32)  # the best key twice
    sm_scale = 3.5e31 / float(q.double().flatten() @ key.double())
    ref_out, ref_lse = reference.sparse_attn_decode(q, kv, indices, sm_scale=sm_scale)
    torch.testing.assert_close(ref_out[0, 0, 0], key, rtol=1e-6, atol=0)
    out, lse = fm.sparse_attn_decode(q, kv, indices, sm_scale=sm_scale)
    assert_out_close(out, ref_out)
    assert_lse_close(lse, ref_lse)


def test_empty_cache_from_the_case_maker():
    """block_size 0: no token exists, every index is invalid, every row is empty."""
    for layout in ("token", "flashmla"):
        case = make_sparse_case(2, 1, 4, 8, 3, 0, layout)
        ref_out, ref_lse = reference.sparse_attn_decode(**case)
        out, lse = fm.sparse_attn_decode(**case)
        assert torch.all(ref_out == 0) and torch.all(ref_lse == float("inf"))
        assert torch.equal(out.float(), ref_out) and torch.equal(lse, ref_lse)

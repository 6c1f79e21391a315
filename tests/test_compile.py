"""Registration of both ops, torch.library.opcheck, and torch.compile(fullgraph=True)."""

import pytest
import torch

import flash_mla_rocm as fm
from flash_mla_rocm.testing import assert_graph_replays, make_decode_case, make_sparse_case


def test_ops_are_registered_with_their_schemas():
    sparse = torch.ops.flash_mla.sparse_attn_decode.default._schema
    assert [a.name for a in sparse.arguments] == [
        "q", "kv", "indices", "topk_length", "sm_scale", "attn_sink",
        "extra_kv", "extra_indices", "extra_topk_length", "kv_layout",
    ]  # fmt: skip
    assert len(sparse.returns) == 2 and not sparse.is_mutable
    decode = torch.ops.flash_mla.decode.default._schema
    assert [a.name for a in decode.arguments] == [
        "q", "kv_nope_fp8", "kv_rope", "kv_scales", "kv_indptr", "num_heads", "sm_scale",
    ]  # fmt: skip
    for op in ("flash_mla::sparse_attn_decode", "flash_mla::decode"):
        assert torch._C._dispatch_has_kernel_for_dispatch_key(op, "CPU")


def sparse_cases(device, dtype=torch.float8_e4m3fn):
    yield make_sparse_case(2, 2, 8, 32, 3, 64, device=device)
    yield make_sparse_case(
        3, 1, 16, 40, 2, 61, "flashmla", dtype, extra_topk=24, extra_num_blocks=9, extra_block_size=2,
        topk_length=True, extra_topk_length=True, attn_sink=True, sm_scale=0.07, invalid_fraction=0.2, device=device,
    )  # fmt: skip


# opcheck's schema test does arithmetic on the inputs, which torch lacks for float8 dtypes: uint8 caches hold
# the same bytes (e4m3fnuz); the float8 dtypes are covered by the compile tests below.
@pytest.mark.parametrize("index", [0, 1])
def test_opcheck_sparse_attn_decode(device, index):
    case = list(sparse_cases(device, torch.uint8))[index]
    args = (case.pop("q"), case.pop("kv"), case.pop("indices"))
    torch.library.opcheck(torch.ops.flash_mla.sparse_attn_decode.default, args, case)


def test_opcheck_decode(device):
    case = make_decode_case([5, 0, 17], 4, torch.uint8, device=device)
    args = tuple(case[k] for k in ("q", "kv_nope_fp8", "kv_rope", "kv_scales", "kv_indptr", "num_heads"))
    torch.library.opcheck(torch.ops.flash_mla.decode.default, args, {"sm_scale": 0.1})


def test_compile_fullgraph_sparse_attn_decode(device):
    torch._dynamo.reset()

    @torch.compile(fullgraph=True)
    def attend_and_weigh(q, kv, indices):
        out, lse = fm.sparse_attn_decode(q, kv, indices)
        return out, lse, out.float() * lse.transpose(1, 2).unsqueeze(-1)

    case = next(sparse_cases(device))
    out, lse, weighted = attend_and_weigh(case["q"], case["kv"], case["indices"])
    eager_out, eager_lse = fm.sparse_attn_decode(**case)
    assert torch.equal(out, eager_out) and torch.equal(lse, eager_lse)
    torch.testing.assert_close(weighted, eager_out.float() * eager_lse.transpose(1, 2).unsqueeze(-1))


def test_compile_fullgraph_all_options(device):
    torch._dynamo.reset()
    case = list(sparse_cases(device))[1]
    out, lse = torch.compile(fm.sparse_attn_decode, fullgraph=True)(**case)
    eager_out, eager_lse = fm.sparse_attn_decode(**case)
    assert torch.equal(out, eager_out) and torch.equal(lse, eager_lse)


def test_compile_fullgraph_decode(device):
    torch._dynamo.reset()
    case = make_decode_case([9, 30], 8, device=device)

    @torch.compile(fullgraph=True)
    def decode_and_sum(q, nope, rope, scales, indptr):
        out = fm.decode(q, nope, rope, scales, indptr, q.shape[1])
        return out, out.float().sum(-1)

    args = (case["q"], case["kv_nope_fp8"], case["kv_rope"], case["kv_scales"], case["kv_indptr"])
    out, total = decode_and_sum(*args)
    eager = fm.decode(**case)
    assert torch.equal(out, eager)
    torch.testing.assert_close(total, eager.float().sum(-1))


def test_cuda_graph_replays_with_new_inputs(device):
    if device != "cuda":
        pytest.skip("CUDA graphs need a GPU")
    sparse = [make_sparse_case(3, 2, 64, 300, 8, 64, "flashmla", extra_topk=64, topk_length=True, attn_sink=True,
                               device=device, seed=seed) for seed in (1, 2)]  # fmt: skip
    decode = [make_decode_case([100, 3000, 0], 16, device=device, seed=seed) for seed in (3, 4)]
    assert_graph_replays(sparse, decode)

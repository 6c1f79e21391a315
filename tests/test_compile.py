"""Registration of both ops, torch.library.opcheck, and torch.compile(fullgraph=True)."""

import inspect
import re

import pytest
import torch

import flash_mla_rocm as fm
from flash_mla_rocm import reference
from flash_mla_rocm.testing import assert_graph_replays, case_to, make_decode_case, make_sparse_case


def test_ops_are_registered_with_their_schemas():
    sparse = torch.ops.flash_mla.sparse_attn_decode.default._schema
    assert len(sparse.returns) == 2 and not sparse.is_mutable
    for op in ("flash_mla::sparse_attn_decode", "flash_mla::decode"):
        for key in ("CPU", "Meta", "Autograd"):
            assert torch._C._dispatch_has_kernel_for_dispatch_key(op, key), (op, key)


@pytest.mark.parametrize("name", ["sparse_attn_decode", "decode"])
def test_python_signatures_are_the_schemas(name):
    """The wrappers take their signatures from the schemas; the reference, the test oracle, states its own, which
    must agree (it may add keyword options after the op's arguments)."""
    schema = getattr(torch.ops.flash_mla, name).default._schema
    empty = inspect.Parameter.empty
    expected = [(a.name, a.default_value if a.has_default_value() else empty) for a in schema.arguments]
    for function in (getattr(fm, name), getattr(reference, name)):
        parameters = [(p.name, p.default) for p in inspect.signature(function).parameters.values()]
        assert parameters[: len(expected)] == expected, function


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
        pytest.skip("CUDA/HIP graph capture needs a GPU with this build's kernels")
    sparse = [make_sparse_case(3, 2, 64, 300, 8, 64, "flashmla", extra_topk=64, topk_length=True, attn_sink=True,
                               device=device, seed=seed) for seed in (1, 2)]  # fmt: skip
    decode = [make_decode_case([100, 3000, 0], 16, device=device, seed=seed) for seed in (3, 4)]
    assert_graph_replays(sparse, decode)


def _raised(call):
    try:
        call()
    except Exception as error:  # noqa: BLE001 (the test compares what each path raises)
        return error
    raise AssertionError("no exception raised")


def _bad_calls():
    """(id, op, arguments, exception type, message pattern) for every bad input the op tests list, and the Python
    types and non-finite scales the wrappers and the contract refuse."""
    from test_decode import BAD_INPUTS as DECODE_BAD_INPUTS
    from test_sparse_attn_decode import BAD_INPUTS as SPARSE_BAD_INPUTS
    from test_sparse_attn_decode import _valid_args

    calls = []
    for name, corrupt, error, message in SPARSE_BAD_INPUTS:
        case = _valid_args("cpu")
        case[name] = corrupt(case)
        calls.append((f"sparse-{name}-{message[:24]}", fm.sparse_attn_decode, case, error, message))
    for name, corrupt, error, message in DECODE_BAD_INPUTS:
        case = make_decode_case([10, 12], 4)
        case[name] = corrupt(case)
        calls.append((f"decode-{name}-{message[:24]}", fm.decode, case, error, message))
    sparse, decode = _valid_args("cpu"), make_decode_case([10, 12], 4)
    for value in ["0.05", [0.05]]:
        calls.append(("sparse-sm_scale-type", fm.sparse_attn_decode, dict(sparse, sm_scale=value), TypeError,
                      "sm_scale must be of type float or None"))  # fmt: skip
    calls.append(("sparse-kv_layout-type", fm.sparse_attn_decode, dict(sparse, kv_layout=1), TypeError,
                  "kv_layout must be of type str, got int"))  # fmt: skip
    calls.append(("sparse-q-type", fm.sparse_attn_decode, dict(sparse, q=sparse["q"].tolist()), TypeError,
                  "q must be of type Tensor, got list"))  # fmt: skip
    calls.append(("decode-num_heads-type", fm.decode, dict(decode, num_heads=4.0), TypeError,
                  "num_heads must be of type int, got float"))  # fmt: skip
    for value in [float("nan"), float("inf"), -float("inf"), 1e300]:
        calls.append((f"sparse-sm_scale-{value}", fm.sparse_attn_decode, dict(sparse, sm_scale=value), ValueError,
                      "sm_scale must be finite in float32"))  # fmt: skip
        calls.append((f"decode-sm_scale-{value}", fm.decode, dict(decode, sm_scale=value), ValueError,
                      "sm_scale must be finite in float32"))  # fmt: skip
    return calls


BAD_CALLS = _bad_calls()


@pytest.mark.parametrize("op, case, error, message", [c[1:] for c in BAD_CALLS], ids=[c[0] for c in BAD_CALLS])
def test_bad_input_raises_alike_on_cpu_meta_and_under_compile(op, case, error, message):
    """One validator: the same exception type and message on CPU tensors and on meta tensors. Under
    torch.compile(fullgraph=True), dynamo reports any exception raised while it traces an operator, torch's own
    included, as its own TorchRuntimeError or Unsupported; ours is carried in it verbatim."""
    eager = _raised(lambda: op(**case))
    assert type(eager) is error and re.search(message, str(eager)), repr(eager)
    meta = _raised(lambda: op(**case_to(case, "meta")))
    assert type(meta) is type(eager) and str(meta) == str(eager)
    torch._dynamo.reset()
    compiled = _raised(lambda: torch.compile(op, fullgraph=True)(**case))
    assert type(eager).__name__ in str(compiled) and str(eager) in str(compiled), str(compiled)

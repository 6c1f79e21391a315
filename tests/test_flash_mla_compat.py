"""flash_mla_rocm.flash_mla_compat: FlashMLA's interface, called the way engines and FlashMLA's own tests call it.

With a FlashMLA checkout (FLASHMLA_DIR) and a GPU, FlashMLA's own tests/test_flash_mla_sparse_decoding.py also runs
its MODEL1 correctness cases against this entry point, its `import flash_mla` redirected here.
"""

import os
import subprocess
import sys

import pytest
import torch

from flash_mla_rocm import flash_mla_compat as flash_mla
from flash_mla_rocm import reference
from flash_mla_rocm.testing import assert_lse_close, assert_out_close, make_sparse_case

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


def flashmla_case(device, h_q=16, b=2, s_q=2, topk=40, dtype=torch.float8_e4m3fn, extra_dtype=None, sm_scale=0.05,
                  seed=0):
    """A MODEL1 case in FlashMLA's cache layout and format, with an extra cache, lengths and sinks."""
    return make_sparse_case(b, s_q, h_q, topk, 3, 64, "flashmla", dtype, extra_topk=70, extra_num_blocks=5,
                            extra_block_size=2, topk_length=True, extra_topk_length=True, attn_sink=True,
                            invalid_fraction=0.1, device=device, extra_dtype=extra_dtype, sm_scale=sm_scale,
                            seed=seed)  # fmt: skip


def call_like_flashmla(case, meta=None, k_cache=None, **kwargs):
    """flash_mla_with_kvcache with FlashMLA's positional arguments, as its harness and engines pass them."""
    meta = flash_mla.get_mla_metadata()[0] if meta is None else meta
    return flash_mla.flash_mla_with_kvcache(
        case["q"], case["kv"] if k_cache is None else k_cache, None, None, 512, meta, None, case.get("sm_scale"),
        False, True, case["indices"], case["attn_sink"], case["extra_kv"], case["extra_indices"],
        case["topk_length"], case["extra_topk_length"], **kwargs,
    )  # fmt: skip


def check(case, out, lse):
    ref_out, ref_lse = reference.sparse_attn_decode(**case)
    assert_out_close(out, ref_out)
    assert_lse_close(lse, ref_lse)


@pytest.mark.parametrize("softmax_scale", [None, 0.05])  # None: FlashMLA's default, q.shape[-1] ** -0.5
def test_matches_the_reference(device, softmax_scale):
    case = flashmla_case(device, sm_scale=softmax_scale)
    out, lse = call_like_flashmla(case)
    check(case, out, lse)


def test_results_have_flashmla_shapes_and_strides(device):
    case = flashmla_case(device, h_q=8, b=3, s_q=2)
    out, lse = call_like_flashmla(case)
    assert out.shape == (3, 2, 8, 512) and out.dtype == torch.bfloat16
    assert lse.shape == (3, 8, 2) and lse.dtype == torch.float32
    assert lse.stride() == (2 * 8, 1, 8)  # FlashMLA returns a transposed view of a [b, s_q, h_q] buffer


@pytest.mark.parametrize("padded_heads", [64, 128])
def test_padded_and_unpadded_heads_agree(device, padded_heads):
    # Engines pad a 16-head tensor-parallel shard to FlashMLA's 64 or 128 heads with zero rows; both calls work
    # and the real heads agree. The zero rows give finite outputs (the mean of the attended keys), never NaN.
    case = flashmla_case(device, h_q=16)
    padded = dict(case)
    padded["q"] = torch.zeros(*case["q"].shape[:2], padded_heads, 512, dtype=torch.bfloat16, device=case["q"].device)
    padded["q"][:, :, :16] = case["q"]
    padded["attn_sink"] = torch.full((padded_heads,), float("-inf"), device=case["q"].device)
    padded["attn_sink"][:16] = case["attn_sink"]
    out, lse = call_like_flashmla(case)
    padded_out, padded_lse = call_like_flashmla(padded)
    assert_out_close(padded_out[:, :, :16], out.float())
    assert_lse_close(padded_lse[:, :16], lse)
    has_keys = torch.isfinite(padded_lse[:, 16:])
    assert torch.isfinite(padded_out[:, :, 16:]).all() and has_keys.any()


def test_engine_views(device):
    # q inside a wider buffer and index lists inside a wider top-k buffer, as engines and FlashMLA's harness pass.
    case = flashmla_case(device)
    q_buffer = torch.zeros(3, 3, 17, 640, dtype=torch.bfloat16, device=case["q"].device)
    q_buffer[:2, :2, :16, :512] = case["q"]
    indices_buffer = torch.full((3, 3, 64), -1, dtype=torch.int32, device=case["q"].device)
    indices_buffer[:2, :2, :40] = case["indices"]
    views = dict(case, q=q_buffer[:2, :2, :16, :512], indices=indices_buffer[:2, :2, :40])
    out, lse = call_like_flashmla(views)
    check(case, out, lse)


def test_byte_views_of_the_cache_read_as_flashmla_bytes(device):
    # FlashMLA's uint8 / int8 cache views hold OCP e4m3fn bytes (flash_mla_rocm's own ops read uint8 as e4m3fnuz).
    case = flashmla_case(device)
    out, lse = call_like_flashmla(case)
    for view in (torch.uint8, torch.int8):
        viewed = call_like_flashmla(case, k_cache=case["kv"].view(view))
        assert torch.equal(viewed[0], out) and torch.equal(viewed[1], lse)


def test_caches_in_different_formats(device):
    case = flashmla_case(device, dtype=torch.float8_e4m3fnuz, extra_dtype=torch.float8_e4m3fn)
    out, lse = call_like_flashmla(case)
    check(case, out, lse)


def test_out_argument(device):
    case = flashmla_case(device)
    out = torch.full((2, 2, 16, 512), float("nan"), dtype=torch.bfloat16, device=case["q"].device)
    returned, lse = call_like_flashmla(case, out=out)
    assert returned is out
    check(case, out, lse)
    with pytest.raises(ValueError, match="out must be"):
        call_like_flashmla(case, out=out[:, :, :8])


def test_one_row_of_many_tokens(device):
    # vLLM's mixed batch: every token of a step as one row, b = 1 and s_q in the hundreds.
    case = flashmla_case(device, h_q=8, b=1, s_q=300, topk=24)
    out, lse = call_like_flashmla(case)
    check(case, out, lse)


def test_metadata_is_reused_and_checked(device):
    case = flashmla_case(device)
    meta, none = flash_mla.get_mla_metadata(object(), num_sm_parts=3)  # FlashMLA's old arguments are accepted
    assert none is None
    first = call_like_flashmla(case, meta)
    second = call_like_flashmla(case, meta)
    assert torch.equal(first[0], second[0]) and meta.config.h_q == 16
    with pytest.raises(ValueError, match="h_q = 16"):
        call_like_flashmla(flashmla_case(device, h_q=8), meta)


def test_what_is_not_implemented(device):
    case = flashmla_case(device)
    meta = flash_mla.get_mla_metadata()[0]
    with pytest.raises(NotImplementedError, match="dense decode"):
        flash_mla.flash_mla_with_kvcache(case["q"], case["kv"], None, None, 512, meta, None, None, False, True)
    v32_q = torch.zeros(2, 2, 16, 576, dtype=torch.bfloat16, device=case["q"].device)
    with pytest.raises(NotImplementedError, match="V3.2"):
        call_like_flashmla(dict(case, q=v32_q))
    with pytest.raises(NotImplementedError, match="prefill"):
        flash_mla.flash_mla_sparse_fwd(case["q"][0], case["kv"], case["indices"][0], 0.1)
    with pytest.raises(TypeError, match="k_cache must have dtype"):
        call_like_flashmla(case, k_cache=case["kv"].view(torch.bfloat16))
    with pytest.raises(ValueError, match="is_fp8_kvcache"):
        flash_mla.flash_mla_with_kvcache(case["q"], case["kv"], None, None, 512, meta, None, None, False, False,
                                         case["indices"])  # fmt: skip


def test_compiles_into_one_graph(device):
    # Engines call it from torch.compile'd model code: no graph break, the same results as eager.
    case = flashmla_case(device)
    meta = flash_mla.get_mla_metadata()[0]
    eager = call_like_flashmla(case, meta)
    compiled = torch.compile(lambda c: call_like_flashmla(c, meta), fullgraph=True)(case)
    assert torch.equal(compiled[0], eager[0]) and torch.equal(compiled[1], eager[1])
    assert compiled[1].stride() == eager[1].stride()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA/HIP graphs need a GPU")
def test_captured_in_a_graph():
    case = flashmla_case("cuda")
    meta = flash_mla.get_mla_metadata()[0]
    expected = call_like_flashmla(case, meta)
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out, lse = call_like_flashmla(case, meta)
    graph.replay()
    torch.cuda.synchronize()
    assert torch.equal(out, expected[0]) and torch.equal(lse, expected[1])


def test_the_example_runs_by_changing_the_import():
    example = os.path.join(ROOT, "examples", "flashmla_compat_decode.py")
    if not os.path.exists(example):
        pytest.skip("examples/ is not part of this checkout")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    result = subprocess.run([sys.executable, example, "--device", device], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


FLASHMLA_DIR = os.environ.get("FLASHMLA_DIR")
# FlashMLA's MODEL1 correctness cases number in the thousands; FLASHMLA_TEST_STRIDE=n runs every n-th of them.
FLASHMLA_TEST_STRIDE = int(os.environ.get("FLASHMLA_TEST_STRIDE", "1"))


@pytest.mark.skipif(FLASHMLA_DIR is None, reason="FLASHMLA_DIR (a FlashMLA checkout) is not set")
@pytest.mark.skipif(not torch.cuda.is_available(), reason="FlashMLA's test harness needs a CUDA device")
def test_flashmla_own_sparse_decoding_test(monkeypatch):
    """FlashMLA's tests/test_flash_mla_sparse_decoding.py, unchanged, on its MODEL1 correctness cases: its
    `import flash_mla` gets this package's compat module; its generator, reference and checks are its own."""
    monkeypatch.syspath_prepend(os.path.join(FLASHMLA_DIR, "tests"))
    monkeypatch.setitem(sys.modules, "flash_mla", flash_mla)
    for name in ("lib", "test_flash_mla_sparse_decoding"):  # FlashMLA's modules, fresh against the redirect
        monkeypatch.delitem(sys.modules, name, raising=False)
    try:
        import test_flash_mla_sparse_decoding as theirs
    except ModuleNotFoundError as error:  # its own third-party dependencies; anything else is a failure
        if error.name not in ("rich", "triton", "numpy"):
            raise
        pytest.skip(f"FlashMLA's test needs {error.name}, which is not installed")

    torch.set_default_device("cuda")
    dtype = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        model1 = [c for c in theirs.gen_testcase() if c.d_qk == 512 and c.num_runs == 0]
        cases = [c.to_test_param() for c in model1[::FLASHMLA_TEST_STRIDE]]
        failed = [p for p in cases if not theirs.test_flash_mla(p).is_correct]
    finally:
        torch.set_default_device(None)
        torch.set_default_dtype(dtype)
    print(f"FlashMLA's MODEL1 correctness cases: {len(cases) - len(failed)} of {len(cases)} run passed "
          f"({len(model1)} in its list, every {FLASHMLA_TEST_STRIDE}-th run)")
    assert cases and not failed, failed[:5]

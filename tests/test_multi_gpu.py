"""Both ops on any GPU of a process: what is device-specific (the kernels' shared-memory attribute, the SM count
the split plan uses, the device guard, the device's current stream) follows the tensors' device, not the current
one. Needs two GPUs with this build's kernels; skipped otherwise."""

import pytest
import torch

import flash_mla_rocm as fm
from flash_mla_rocm import reference
from flash_mla_rocm.testing import (
    assert_graph_replays,
    assert_lse_close,
    assert_out_close,
    case_to,
    make_decode_case,
    make_sparse_case,
)


def _two_gpus():
    return (
        torch.cuda.is_available()
        and torch.cuda.device_count() >= 2
        and torch._C._dispatch_has_kernel_for_dispatch_key("flash_mla::decode", "CUDA")
    )


pytestmark = pytest.mark.skipif(not _two_gpus(), reason="needs two GPUs with this build's kernels")


def sparse_case(h_q, seed):
    # 128 heads run as a 2-CTA cluster with the largest shared-memory request; 24 heads as one head group.
    return make_sparse_case(3, 2, h_q, 640, 16, 64, "flashmla", torch.float8_e4m3fn, extra_topk=128,
                            topk_length=True, attn_sink=True, invalid_fraction=0.05, seed=seed)  # fmt: skip


def as_cpu(tensors):
    return [t.cpu() for t in tensors]


@pytest.mark.parametrize("h_q", [128, 24])
@pytest.mark.parametrize("data, current", [(1, 0), (0, 1)], ids=["cuda1-from-cuda0", "cuda0-from-cuda1"])
def test_sparse_attn_decode_follows_the_tensors_device(h_q, data, current):
    case = sparse_case(h_q, seed=11)
    with torch.cuda.device(data):  # the same call with the current device on the tensors' device
        expected = as_cpu(fm.sparse_attn_decode(**case_to(case, f"cuda:{data}")))
    with torch.cuda.device(current):
        got = fm.sparse_attn_decode(**case_to(case, f"cuda:{data}"))
        assert all(t.device == torch.device("cuda", data) for t in got)
        assert torch.cuda.current_device() == current
    got = as_cpu(got)
    assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1])
    ref_out, ref_lse = reference.sparse_attn_decode(**case)
    assert_out_close(got[0], ref_out)
    assert_lse_close(got[1], ref_lse)


@pytest.mark.parametrize("data, current", [(1, 0), (0, 1)], ids=["cuda1-from-cuda0", "cuda0-from-cuda1"])
def test_decode_follows_the_tensors_device(data, current):
    case = make_decode_case([700, 0, 2000, 5], 64, seed=12)
    with torch.cuda.device(data):
        expected = fm.decode(**case_to(case, f"cuda:{data}")).cpu()
    with torch.cuda.device(current):
        got = fm.decode(**case_to(case, f"cuda:{data}"))
        assert got.device == torch.device("cuda", data)
    assert torch.equal(got.cpu(), expected)


def test_cuda_graph_captured_on_the_second_gpu():
    sparse = [case_to(sparse_case(64, seed), "cuda:1") for seed in (13, 14)]
    decode = [case_to(make_decode_case([300, 1500], 16, seed=seed), "cuda:1") for seed in (15, 16)]
    with torch.cuda.device(1):
        # torch.cuda.graph's default capture stream is made once a process, on the device current at its first use;
        # a capture on another device needs a stream of its own.
        assert_graph_replays(sparse, decode, stream=torch.cuda.Stream())

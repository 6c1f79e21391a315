"""One sparse MLA decode step written against FlashMLA's interface, run on flash_mla_rocm by changing the import.

    python examples/flashmla_compat_decode.py                  # the GPU when there is one, else the CPU
    python examples/flashmla_compat_decode.py --device cpu

Everything below the import is what an engine does with FlashMLA today: a MODEL1 FP8 cache in FlashMLA's layout
(float8_e4m3fn, made here with flash_mla_rocm.quantize_kv), a metadata object made once and reused, the decode call
with FlashMLA's positional arguments, captured in a CUDA/HIP graph (on a GPU) and replayed with new queries. The
result is checked against the float64 reference; the script exits non-zero if it does not match.
"""

import argparse
import sys

import torch

from flash_mla_rocm import flash_mla_compat as flash_mla  # was: import flash_mla

import flash_mla_rocm as fm  # only to build the cache and check the result
from flash_mla_rocm.testing import assert_lse_close, assert_out_close


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    opts = parser.parse_args()
    device = torch.device(opts.device)
    torch.manual_seed(0)
    b, s_q, h_q, block_size, num_blocks, topk = 4, 2, 64, 64, 16, 128

    # The cache: latents quantized into FlashMLA's MODEL1 layout; the indices: token = block * block_size + offset.
    latent = torch.randn(num_blocks, block_size, 512, device=device) / 4
    k_cache = fm.quantize_kv(latent, "flashmla", torch.float8_e4m3fn)  # [num_blocks, block_size, 1, 584]
    indices = torch.randint(0, num_blocks * block_size, (b, s_q, topk), dtype=torch.int32, device=device)
    indices[:, :, -8:] = -1  # padding entries are skipped
    q = torch.randn(b, s_q, h_q, 512, dtype=torch.bfloat16, device=device)
    attn_sink = torch.zeros(h_q, device=device)
    softmax_scale = 512**-0.5

    # FlashMLA's calls, unchanged.
    sched_meta, _ = flash_mla.get_mla_metadata()

    def decode_step():
        return flash_mla.flash_mla_with_kvcache(q, k_cache, None, None, 512, sched_meta, None, softmax_scale, False,
                                                True, indices, attn_sink)  # fmt: skip

    if device.type == "cuda":  # ROCm torch calls its HIP graphs torch.cuda.CUDAGraph too
        decode_step()  # warm up outside the capture
        torch.cuda.synchronize()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            out, lse = decode_step()
        q.copy_(torch.randn_like(q))  # the next step's queries, into the captured input
        graph.replay()
        torch.cuda.synchronize()
    else:
        out, lse = decode_step()

    ref_out, ref_lse = fm.reference.sparse_attn_decode(q, k_cache, indices, sm_scale=softmax_scale,
                                                       attn_sink=attn_sink, kv_layout="flashmla")  # fmt: skip
    assert_out_close(out, ref_out)
    assert_lse_close(lse, ref_lse)
    print(f"decode step on {device}: out {list(out.shape)} {out.dtype}, lse {list(lse.shape)}: matches the reference")
    return 0


if __name__ == "__main__":
    sys.exit(main())

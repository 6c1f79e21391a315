"""The MODEL1 FP8 KV cache: quantize latents into it, dequantize it back, convert between its layouts.

A token's 512-dim latent is 448 "nope" values stored as fp8 with one e8m0 (power-of-two) scale per 64-element
tile, and 64 "rope" values stored as bf16. Per tile: scale = 2^ceil(log2(max(amax / fp8_max, 1e-4))),
value = fp8(x / scale). Two paged layouts hold the same bytes, each viewed as [num_blocks, block_size, 1, 584]:

- ``"token"`` (the seed's): per token [448 fp8 nope | 64 bf16 rope | 7 e8m0 scales | 1 pad].
- ``"flashmla"`` (FlashMLA's MODEL1_FP8Sparse): per block, block_size x [448 fp8 nope | 64 bf16 rope], then
  block_size x [7 e8m0 scales | 1 pad]; FlashMLA pads each block to a multiple of 576 bytes, so the block
  stride is ``kv.stride(0)``.

The cache dtype names the fp8 format: ``torch.uint8`` holds e4m3fnuz bytes (fp8_max 240), as do
``torch.float8_e4m3fnuz`` caches; ``torch.float8_e4m3fn`` caches hold e4m3fn (fp8_max 448).
"""

import torch

HEAD_DIM = 512
NOPE_DIM = 448
ROPE_DIM = 64
SCALE_TILE_DIM = 64
NUM_SCALE_TILES = NOPE_DIM // SCALE_TILE_DIM
TOKEN_BYTES = 584
TOKEN_DATA_BYTES = NOPE_DIM + 2 * ROPE_DIM  # 576
TOKEN_SCALE_BYTES = 8
KV_LAYOUTS = ("token", "flashmla")
CACHE_DTYPES = (torch.uint8, torch.float8_e4m3fnuz, torch.float8_e4m3fn)
DEFAULT_CACHE_DTYPE = {"token": torch.uint8, "flashmla": torch.float8_e4m3fn}


def fp8_dtype(cache_dtype: torch.dtype) -> torch.dtype:
    """The float8 dtype whose bits a cache of ``cache_dtype`` holds (uint8 holds e4m3fnuz)."""
    _check_cache_dtype(cache_dtype, "cache_dtype")
    return torch.float8_e4m3fnuz if cache_dtype == torch.uint8 else cache_dtype


def fp8_max(cache_dtype: torch.dtype) -> float:
    """Largest finite value of the cache's fp8 format: 240 (e4m3fnuz) or 448 (e4m3fn)."""
    return torch.finfo(fp8_dtype(cache_dtype)).max


def _check_cache_dtype(dtype, name):
    if dtype not in CACHE_DTYPES:
        raise TypeError(f"{name} must be one of {CACHE_DTYPES}, got {dtype}")


def _check_layout(kv_layout, name="kv_layout"):
    if kv_layout not in KV_LAYOUTS:
        raise ValueError(f'{name} must be "token" or "flashmla", got {kv_layout!r}')


def _check_cache(kv: torch.Tensor, name="kv"):
    if kv.dim() != 4 or kv.shape[2] != 1 or kv.shape[3] != TOKEN_BYTES:
        raise ValueError(f"{name} must have shape [num_blocks, block_size, 1, {TOKEN_BYTES}], got {list(kv.shape)}")
    _check_cache_dtype(kv.dtype, f"{name}.dtype")


def _dense_blocks(kv: torch.Tensor) -> torch.Tensor:
    """kv itself if each block's block_size * 584 bytes are one dense run (what the kernels read), else a copy."""
    dense = kv.stride(3) == 1 and (kv.shape[1] <= 1 or kv.stride(1) == TOKEN_BYTES)
    return kv if dense else kv.contiguous()


def token_views(kv: torch.Tensor, kv_layout: str = "token"):
    """uint8 views aliasing the cache: (data [num_blocks, block_size, 576], scales [num_blocks, block_size, 8]).

    data holds each token's 448 fp8 nope bytes then its 64 bf16 rope values; scales its 7 e8m0 bytes then a pad.
    Writes through the views change kv. A kv whose blocks are not dense runs is copied first (see the ops).
    """
    _check_cache(kv)
    _check_layout(kv_layout)
    raw = _dense_blocks(kv).view(torch.uint8)
    num_blocks, block_size = raw.shape[:2]
    if kv_layout == "token":
        return raw[:, :, 0, :TOKEN_DATA_BYTES], raw[:, :, 0, TOKEN_DATA_BYTES:]
    block_stride = raw.stride(0)
    data = raw.as_strided((num_blocks, block_size, TOKEN_DATA_BYTES), (block_stride, TOKEN_DATA_BYTES, 1))
    scales = raw.as_strided(
        (num_blocks, block_size, TOKEN_SCALE_BYTES),
        (block_stride, TOKEN_SCALE_BYTES, 1),
        raw.storage_offset() + block_size * TOKEN_DATA_BYTES,
    )
    return data, scales


def empty_kv_cache(num_blocks: int, block_size: int, kv_layout: str = "token", dtype=None, device=None):
    """A zero-filled cache [num_blocks, block_size, 1, 584]; "flashmla" blocks are padded to 576-byte multiples."""
    _check_layout(kv_layout)
    dtype = DEFAULT_CACHE_DTYPE[kv_layout] if dtype is None else dtype
    _check_cache_dtype(dtype, "dtype")
    block_bytes = block_size * TOKEN_BYTES
    if kv_layout == "flashmla":
        padded = -(-block_bytes // TOKEN_DATA_BYTES) * TOKEN_DATA_BYTES
        raw = torch.zeros(num_blocks, padded, dtype=torch.uint8, device=device)[:, :block_bytes]
    else:
        raw = torch.zeros(num_blocks, block_bytes, dtype=torch.uint8, device=device)
    return raw.view(num_blocks, block_size, 1, TOKEN_BYTES).view(dtype)


def _quantize_nope(nope: torch.Tensor, cache_dtype: torch.dtype):
    """[..., 448] -> (fp8 bytes [..., 448] uint8, e8m0 exponents [..., 7] int32: scale = 2^exponent)."""
    tiles = nope.unflatten(-1, (NUM_SCALE_TILES, SCALE_TILE_DIM))
    amax = tiles.abs().amax(dim=-1).float()
    exponent = torch.clamp_min(amax / fp8_max(cache_dtype), 1e-4).log2().ceil()
    scale = torch.pow(2, exponent)
    values = (tiles.float() / scale.unsqueeze(-1)).to(fp8_dtype(cache_dtype))
    return values.view(torch.uint8).flatten(-2), exponent.to(torch.int32)


def quantize_kv(latent: torch.Tensor, kv_layout: str = "token", dtype=None) -> torch.Tensor:
    """Quantizes latents into a MODEL1 FP8 cache.

    Args:
        latent: [num_blocks, block_size, 512] or [num_blocks, block_size, 1, 512], bfloat16 or float32.
        kv_layout: "token" or "flashmla".
        dtype: the cache dtype (uint8, float8_e4m3fnuz or float8_e4m3fn); default uint8 for "token" (the seed's
            e4m3fnuz cache) and float8_e4m3fn for "flashmla" (byte for byte what FlashMLA's quantize_k_cache makes
            with MODEL1_FP8Sparse, block padding included; pad bytes are zero here).

    Returns:
        kv: [num_blocks, block_size, 1, 584] of ``dtype``.
    """
    if latent.dim() == 4 and latent.shape[2] == 1:
        latent = latent.squeeze(2)
    if latent.dim() != 3 or latent.shape[-1] != HEAD_DIM:
        raise ValueError(f"latent must have shape [num_blocks, block_size, (1,) 512], got {list(latent.shape)}")
    if latent.dtype not in (torch.bfloat16, torch.float32):
        raise TypeError(f"latent must be bfloat16 or float32, got {latent.dtype}")
    kv = empty_kv_cache(latent.shape[0], latent.shape[1], kv_layout, dtype, latent.device)
    data, scales = token_views(kv, kv_layout)
    nope_bytes, exponent = _quantize_nope(latent[..., :NOPE_DIM], kv.dtype)
    data[..., :NOPE_DIM] = nope_bytes
    data[..., NOPE_DIM:] = latent[..., NOPE_DIM:].to(torch.bfloat16).contiguous().view(torch.uint8)
    scales[..., :NUM_SCALE_TILES] = (exponent + 127).to(torch.uint8)
    return kv


def _fp8_values(cache_dtype: torch.dtype, device) -> torch.Tensor:
    """float32 value of each of the 256 fp8 bytes of the cache's format."""
    return torch.arange(256, dtype=torch.uint8, device=device).view(fp8_dtype(cache_dtype)).float()


def _e8m0_values(device) -> torch.Tensor:
    return torch.arange(256, dtype=torch.uint8, device=device).view(torch.float8_e8m0fnu).float()


def _dequantize_token_bytes(data: torch.Tensor, scales: torch.Tensor, cache_dtype: torch.dtype) -> torch.Tensor:
    """data [..., 576] and scales [..., 8] uint8 -> exact latents [..., 512] float32."""
    nope = _fp8_values(cache_dtype, data.device)[data[..., :NOPE_DIM].long()]
    scale = _e8m0_values(data.device)[scales[..., :NUM_SCALE_TILES].long()]
    nope = (nope.unflatten(-1, (NUM_SCALE_TILES, SCALE_TILE_DIM)) * scale.unsqueeze(-1)).flatten(-2)
    rope = data[..., NOPE_DIM:].contiguous().view(torch.bfloat16).float()
    return torch.cat([nope, rope], dim=-1)


def dequantize_kv(kv: torch.Tensor, kv_layout: str = "token", tokens: torch.Tensor = None) -> torch.Tensor:
    """Exact latents of a MODEL1 FP8 cache, in float32.

    Args:
        kv: [num_blocks, block_size, 1, 584] cache.
        kv_layout: "token" or "flashmla".
        tokens: optional int64 flat token indices (block * block_size + offset), all valid; only those are read.

    Returns:
        [num_blocks, block_size, 1, 512] float32, or [*tokens.shape, 512] when tokens is given.
    """
    data, scales = token_views(kv, kv_layout)
    if tokens is None:
        return _dequantize_token_bytes(data, scales, kv.dtype).unsqueeze(2)
    block_size = kv.shape[1]
    block, offset = tokens // block_size, tokens % block_size
    return _dequantize_token_bytes(data[block, offset], scales[block, offset], kv.dtype)


def convert_kv_layout(kv: torch.Tensor, src_layout: str, dst_layout: str) -> torch.Tensor:
    """The same tokens in another layout (same dtype); "flashmla" output has FlashMLA's padded blocks."""
    _check_layout(src_layout, "src_layout")
    _check_layout(dst_layout, "dst_layout")
    src_data, src_scales = token_views(kv, src_layout)
    out = empty_kv_cache(kv.shape[0], kv.shape[1], dst_layout, kv.dtype, kv.device)
    dst_data, dst_scales = token_views(out, dst_layout)
    dst_data.copy_(src_data)
    dst_scales.copy_(src_scales)
    return out


def quantize_kv_split(latent: torch.Tensor, dtype: torch.dtype = torch.float8_e4m3fnuz):
    """Quantizes latents into the separate tensors of ``decode``.

    Args:
        latent: [T, 512] bfloat16 or float32.
        dtype: dtype of kv_nope_fp8: float8_e4m3fnuz, float8_e4m3fn, or uint8 (e4m3fnuz bytes).

    Returns:
        (kv_nope_fp8 [T, 448] of dtype, kv_rope [T, 64] bfloat16, kv_scales [T, 7] float32).
    """
    if latent.dim() != 2 or latent.shape[-1] != HEAD_DIM:
        raise ValueError(f"latent must have shape [T, 512], got {list(latent.shape)}")
    _check_cache_dtype(dtype, "dtype")
    nope_bytes, exponent = _quantize_nope(latent[:, :NOPE_DIM], dtype)
    return nope_bytes.view(dtype), latent[:, NOPE_DIM:].to(torch.bfloat16), torch.pow(2.0, exponent.float())


def dequantize_kv_split(kv_nope_fp8: torch.Tensor, kv_rope: torch.Tensor, kv_scales: torch.Tensor) -> torch.Tensor:
    """Exact latents [T, 512] float32 of ``decode``'s separate tensors (any positive float32 scales)."""
    nope = _fp8_values(kv_nope_fp8.dtype, kv_nope_fp8.device)[kv_nope_fp8.view(torch.uint8).long()]
    nope = (nope.unflatten(-1, (NUM_SCALE_TILES, SCALE_TILE_DIM)) * kv_scales.float().unsqueeze(-1)).flatten(-2)
    return torch.cat([nope, kv_rope.float()], dim=-1)

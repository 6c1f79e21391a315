"""Python entry points of the flash_mla ops. Each calls ``torch.ops.flash_mla.<op>``; its signature is the op's
schema (kernels/ops/contract.h, where the contract is written once), read when the package is imported.

Argument values are checked by the op itself, on real and on meta tensors alike (the same TypeError or ValueError
naming the argument). What the op cannot check is an argument of the wrong Python type, which torch's schema parser
would refuse with a RuntimeError before the op runs: these wrappers raise a TypeError naming the argument instead.
"""

import inspect
import numbers

import torch

_PYTHON_TYPES = {"Tensor": (torch.Tensor,), "float": (numbers.Real,), "int": (numbers.Integral,), "str": (str,)}


def _argument_check(argument):
    """(name, allowed Python types, whether None is allowed, the schema's type) of a schema argument."""
    optional = isinstance(argument.type, torch._C.OptionalType)
    type_name = str(argument.type.getElementType() if optional else argument.type)  # Tensor, float, int, str
    return argument.name, _PYTHON_TYPES[type_name], optional, type_name


def _signature(schema):
    parameters = [
        inspect.Parameter(
            a.name,
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
            default=a.default_value if a.has_default_value() else inspect.Parameter.empty,
        )
        for a in schema.arguments
    ]
    return inspect.Signature(parameters)


def _check_python_types(op_name, checks, args, kwargs):
    values = dict(zip([check[0] for check in checks], args))
    values.update(kwargs)
    for name, types, optional, type_name in checks:
        if name not in values or (values[name] is None and optional):
            continue
        value = values[name]
        if not isinstance(value, types) or isinstance(value, bool):
            allowed = type_name + (" or None" if optional else "")
            raise TypeError(f"flash_mla.{op_name}: {name} must be of type {allowed}, got {type(value).__name__}")


def _op_function(name, doc):
    """The Python function of op `name`: its schema's signature, the Python-type check, the call."""
    schema = getattr(torch.ops.flash_mla, name).default._schema
    checks = [_argument_check(a) for a in schema.arguments]  # plain data, read once: torch.compile traces the rest

    def function(*args, **kwargs):
        _check_python_types(name, checks, args, kwargs)
        return getattr(torch.ops.flash_mla, name)(*args, **kwargs)

    function.__name__ = function.__qualname__ = name
    function.__module__ = __name__
    function.__signature__ = _signature(schema)
    function.__doc__ = doc
    return function


sparse_attn_decode = _op_function(
    "sparse_attn_decode",
    """Sparse MLA decode over a paged MODEL1 FP8 cache (FlashMLA's sparse decode interface).

    For each batch row i, query token j and head h, attends the valid keys that ``indices`` (and ``extra_indices``)
    select: score = sm_scale * (q . k), p = softmax over those keys, out = sum p * k, with k the dequantized
    512-vector of the key (K = V). An index is valid when 0 <= index < num_blocks * block_size of its cache and its
    position is below its row's top-k length; every other index is skipped, never read.

    Args:
        q: [b, s_q, h_q, 512] bfloat16.
        kv: [num_blocks, block_size, 1, 584] cache; dtype uint8 (e4m3fnuz bytes), float8_e4m3fnuz or float8_e4m3fn.
        indices: [b, s_q, topk] int32 flat token indices, block * block_size + offset.
        topk_length: [b] int32 or None; row i uses indices[i, :, :topk_length[i]] (clamped to [0, topk]).
        sm_scale: softmax scale, default 512 ** -0.5; any value finite in float32.
        attn_sink: [h_q] float32 or None; out[..., h, :] is scaled by 1 / (1 + exp(attn_sink[h] - lse)).
        extra_kv: a second cache in kv's layout (FlashMLA MODEL1's extra_k_cache), or None; its dtype (fp8 format)
            may differ from kv's.
        extra_indices: [b, s_q, extra_topk] int32 into extra_kv; given exactly when extra_kv is.
        extra_topk_length: [b] int32 or None, like topk_length for extra_indices.
        kv_layout: "token" or "flashmla" (see :mod:`flash_mla_rocm.quant`); applies to kv and extra_kv.

    Returns:
        out: [b, s_q, h_q, 512] bfloat16 (0 for a row without valid keys).
        lse: [b, h_q, s_q] float32, natural log of sum(exp(score)) over the valid keys (+inf without any).

    Raises:
        TypeError, ValueError: a bad argument, named in the message. An inference op: a backward through it raises.
    """,
)

decode = _op_function(
    "decode",
    """MLA decode over CSR token ranges of an FP8 cache held as separate tensors.

    Batch i attends tokens [kv_indptr[i], kv_indptr[i + 1]) clamped to [0, T]; an empty range gives zeros.
    Token t's key is kv_nope_fp8[t, 64g : 64g + 64] * kv_scales[t, g] for g = 0..6, then kv_rope[t] (K = V).

    Args:
        q: [B, H, 512] bfloat16.
        kv_nope_fp8: [T, 448] float8_e4m3fnuz, float8_e4m3fn, or uint8 (e4m3fnuz bytes).
        kv_rope: [T, 64] bfloat16.
        kv_scales: [T, 7] float32, any positive values.
        kv_indptr: [B + 1] int32.
        num_heads: must equal H.
        sm_scale: softmax scale, default 512 ** -0.5; any value finite in float32.

    Returns:
        out: [B, H, 512] bfloat16.

    Raises:
        TypeError, ValueError: a bad argument, named in the message. An inference op: a backward through it raises.
    """,
)

"""dsa_indexer: the fused logits head gate of DeepSeek Sparse Attention's lightning indexer.

Importing this package loads the compiled PyTorch operator, which registers
``torch.ops.dsa_indexer.logits_head_gate`` (functional) and
``torch.ops.dsa_indexer.logits_head_gate.out`` (writes ``out``) with CPU, CUDA and Meta kernels.
"""

from __future__ import annotations

import os
from typing import Optional

import torch

try:
    from ._version import __version__, built_with_torch
except ImportError:  # a source tree that was never built
    __version__ = "0+unknown"
    built_with_torch = None

__all__ = ["logits_head_gate", "__version__"]


def _load_library() -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    path = os.path.join(here, "libdsa_indexer_torch.so")
    if not os.path.exists(path):
        raise ImportError(
            f"dsa_indexer: the compiled operator {path} is missing; "
            "install the package with `pip install --no-build-isolation .`"
        )
    # The operator uses torch's C++ API, whose ABI changes between torch releases.
    if built_with_torch is not None and built_with_torch.split("+")[0] != torch.__version__.split("+")[0]:
        raise ImportError(
            f"dsa_indexer was built against torch {built_with_torch} but torch {torch.__version__} "
            "is imported; rebuild it with `pip install --no-build-isolation .` in this environment"
        )
    torch.ops.load_library(path)


_load_library()

# Bound once: the eager path then costs one Python call on top of the dispatcher.
_functional = torch.ops.dsa_indexer.logits_head_gate.default
_out = torch.ops.dsa_indexer.logits_head_gate.out


def logits_head_gate(
    x: torch.Tensor,
    weight: torch.Tensor,
    n_heads_inv_sqrt: float,
    softmax_scale: float,
    q_scale: torch.Tensor,
    out: Optional[torch.Tensor] = None,
    *,
    static_weight: bool = False,
) -> torch.Tensor:
    """Per-head weights of the DSA lightning indexer, in one fused kernel.

    ``out[t, h] = (x[t] . weight[h]) * n_heads_inv_sqrt * q_scale[t, h] * softmax_scale``

    Args:
        x: bf16 ``[T, K]`` hidden states, ``T >= 0``. Unit column stride and any row stride
            ``>= K`` (a slice of a wider buffer is fine).
        weight: bf16 ``[H, K]``, the indexer's ``weights_proj`` weight; same layout rule as ``x``.
        n_heads_inv_sqrt: ``H ** -0.5`` (passed to the kernel as fp32).
        softmax_scale: ``index_head_dim ** -0.5`` (passed to the kernel as fp32).
        q_scale: fp32 ``[T, H, 1]`` or ``[T, H]``, any strides: the per-token, per-head scale
            of the fp8-quantized indexer query.
        out: optional fp32 ``[T, H, 1]`` or ``[T, H]``, any strides; written in place and
            returned.
        static_weight: promise that no work queued earlier on the stream writes ``weight`` (true
            of a model parameter). The Hopper kernels then copy it on chip while the previous
            kernel still runs (0.2-1 us less per call at ``T <= 1024``). Same result bitwise.
            Leave it ``False`` when a kernel right before this call may write the weight.

    Returns:
        fp32 ``[T, H, 1]`` (or ``out``). ``T == 0`` gives an empty tensor without a launch.

    Numerics: the dot product is accumulated in fp32 from the exact bf16 products; relative
    Frobenius error against a float64 reference <= 1e-5. The result is bitwise deterministic and
    batch invariant: row ``t`` depends only on ``x[t]``, ``weight`` and ``q_scale[t]``, whatever
    ``T`` and the row's position. CPU and CUDA results each meet the bound but need not agree
    bitwise. All tensors must be on one device; on CUDA the kernel runs on the current stream
    with no host synchronisation, so it can be captured in CUDA graphs and used under
    ``torch.compile(fullgraph=True, dynamic=True)``.

    Raises:
        RuntimeError: an argument of the wrong rank, shape, dtype, device or layout; the message
            names it and says what was expected and what was given. ``out`` is then untouched.

    Example:
        >>> import torch, dsa_indexer
        >>> T, H, K = 4, 64, 7168
        >>> x = torch.randn(T, K, dtype=torch.bfloat16)
        >>> w = torch.randn(H, K, dtype=torch.bfloat16)
        >>> q_scale = torch.rand(T, H, 1)
        >>> gate = dsa_indexer.logits_head_gate(x, w, H ** -0.5, 128 ** -0.5, q_scale)
        >>> gate.shape, gate.dtype
        (torch.Size([4, 64, 1]), torch.float32)
    """
    if out is None:
        return _functional(x, weight, n_heads_inv_sqrt, softmax_scale, q_scale,
                           static_weight=static_weight)
    return _out(x, weight, n_heads_inv_sqrt, softmax_scale, q_scale, static_weight=static_weight,
                out=out)

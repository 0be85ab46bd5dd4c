"""Paths timed by `python -m dsa_indexer.bench`: the library's operator and what engines run today
(SGLang's registered op, torch.mm alone, DeepGEMM), plus inputs, bytes/FLOPs and the float64 check.
Imports only torch at import time, so the first-call worker can load this file by path in a fresh
process without loading the dsa_indexer extension (see _bench_first_call.py)."""

import math

import torch

# Timed side by side, in this order; "floor" is added by the runner.
# dsa_indexer.static is the same operator told that the weight is a model parameter
# (static_weight=True), as an engine that owns its weights can call it.
PATHS = ("dsa_indexer", "dsa_indexer.static", "sglang", "torch.mm", "deep_gemm")
# Paths that compute the whole head gate (torch.mm alone skips the scaling), hence are validated.
SCALED_PATHS = ("dsa_indexer", "dsa_indexer.static", "sglang", "deep_gemm")

INDEX_HEAD_DIM = 128
SOFTMAX_SCALE = INDEX_HEAD_DIM ** -0.5

# SPEC.md "Numerics".
REL_FRO_BOUND = 1e-5
ELEM_BOUND = 1e-4


class PathUnavailable(Exception):
    """A path that cannot run here (not installed, wrong device); the message says why."""


def scales(H):
    """(n_heads_inv_sqrt, softmax_scale) as the DSA indexer passes them."""
    return H ** -0.5, SOFTMAX_SCALE


# ---------------------------------------------------------------------------------------------
# torch.mm with an fp32 output. torch 2.11 has mm(..., out_dtype=float32) for bf16 inputs on CUDA
# only; on CPU the closest equivalent (fp32 accumulation, fp32 output) is an fp32 mm of the
# upcast inputs. The tables say which one ran.
_MM_OUT_DTYPE = {}


def mm_out_dtype_supported(device_type):
    if device_type not in _MM_OUT_DTYPE:
        try:
            a = torch.ones(2, 8, dtype=torch.bfloat16, device=device_type)
            torch.mm(a, a.t(), out_dtype=torch.float32)
            _MM_OUT_DTYPE[device_type] = True
        except (TypeError, RuntimeError, NotImplementedError):
            _MM_OUT_DTYPE[device_type] = False
    return _MM_OUT_DTYPE[device_type]


def mm_description(device_type):
    if mm_out_dtype_supported(device_type):
        return "torch.mm(x, w.t(), out_dtype=torch.float32)"
    return ("torch.mm(x.float(), w.float().t()) (torch %s has no mm out_dtype on %s)"
            % (torch.__version__, device_type))


def mm_fp32(x, weight):
    if mm_out_dtype_supported(x.device.type):
        return torch.mm(x, weight.t(), out_dtype=torch.float32)
    return torch.mm(x.float(), weight.float().t())


def sglang_compute(x, weight, n_heads_inv_sqrt, softmax_scale, q_scale):
    """The head gate as SGLang computes it: fp32-output GEMM, then three elementwise multiplies."""
    weights = mm_fp32(x, weight)
    weights = weights * n_heads_inv_sqrt
    return weights.unsqueeze(-1) * q_scale * softmax_scale


def _sglang_fake(x, weight, n_heads_inv_sqrt, softmax_scale, q_scale):
    return x.new_empty((x.shape[0], weight.shape[0], 1), dtype=torch.float32)


_SCHEMA = ("(Tensor x, Tensor weight, float n_heads_inv_sqrt, float softmax_scale, "
           "Tensor q_scale) -> Tensor")
_sglang_lib = None
_custom_op = None


def register_sglang_op():
    """Registers sglang_bench::logits_head_gate the way SGLang registers its ops
    (direct_register_custom_op: a FRAGMENT library, define, impl per dispatch key, a fake impl)."""
    global _sglang_lib
    if _sglang_lib is None:
        lib = torch.library.Library("sglang_bench", "FRAGMENT")
        lib.define("logits_head_gate" + _SCHEMA)
        lib.impl("logits_head_gate", sglang_compute, "CUDA")
        lib.impl("logits_head_gate", sglang_compute, "CPU")
        torch.library.register_fake("sglang_bench::logits_head_gate", _sglang_fake, lib=lib)
        _sglang_lib = lib
    return torch.ops.sglang_bench.logits_head_gate


def register_custom_op():
    """The same computation as a Python @torch.library.custom_op (the other common way engines
    wrap Python code into an op); used by the host-overhead comparison only."""
    global _custom_op
    if _custom_op is None:
        @torch.library.custom_op("sglang_bench::logits_head_gate_custom_op", mutates_args=())
        def op(x: torch.Tensor, weight: torch.Tensor, n_heads_inv_sqrt: float,
               softmax_scale: float, q_scale: torch.Tensor) -> torch.Tensor:
            return sglang_compute(x, weight, n_heads_inv_sqrt, softmax_scale, q_scale)

        op.register_fake(_sglang_fake)
        _custom_op = op
    return _custom_op


def _deep_gemm_module():
    try:
        import deep_gemm  # noqa: PLC0415 (optional dependency)
    except Exception as e:  # ImportError, or a broken install raising anything at import
        raise PathUnavailable("n/a (not installed)") from e
    if not hasattr(deep_gemm, "bf16_gemm_nt"):
        raise PathUnavailable("n/a (deep_gemm has no bf16_gemm_nt)")
    return deep_gemm


def get_path(name, device_type):
    """The callable f(x, weight, n_heads_inv_sqrt, softmax_scale, q_scale) of one path, or
    PathUnavailable. Each path is called the way an engine calls it (functional form)."""
    if name == "dsa_indexer":
        import dsa_indexer  # noqa: F401,PLC0415 (registers torch.ops.dsa_indexer)
        return torch.ops.dsa_indexer.logits_head_gate
    if name == "dsa_indexer.static":
        import dsa_indexer  # noqa: F401,PLC0415 (registers torch.ops.dsa_indexer)
        op = torch.ops.dsa_indexer.logits_head_gate
        return lambda x, weight, n_heads_inv_sqrt, softmax_scale, q_scale: op(
            x, weight, n_heads_inv_sqrt, softmax_scale, q_scale, static_weight=True)
    if name == "sglang":
        return register_sglang_op()
    if name == "sglang_custom_op":
        return register_custom_op()
    if name == "torch.mm":
        return lambda x, weight, n_heads_inv_sqrt, softmax_scale, q_scale: mm_fp32(x, weight)
    if name == "deep_gemm":
        if device_type != "cuda":
            raise PathUnavailable("n/a (GPU only)")
        dg = _deep_gemm_module()

        def deep_gemm_path(x, weight, n_heads_inv_sqrt, softmax_scale, q_scale):
            d = torch.empty((x.shape[0], weight.shape[0]), dtype=torch.float32, device=x.device)
            dg.bf16_gemm_nt(x, weight, d)
            d = d * n_heads_inv_sqrt
            return d.unsqueeze(-1) * q_scale * softmax_scale

        return deep_gemm_path
    raise ValueError("unknown path %r" % (name,))


def deep_gemm_version():
    try:
        dg = _deep_gemm_module()
    except PathUnavailable:
        return None
    return str(getattr(dg, "__version__", "unknown version"))


# ---------------------------------------------------------------------------------------------
def make_inputs(T, K, H, device, generator, weight=None):
    """One input set: x [T, K] bf16, weight [H, K] bf16, q_scale [T, H, 1] fp32 (positive, of the
    size fp8 quantisation gives: amax / 448)."""
    x = torch.randn(T, K, generator=generator, device=device, dtype=torch.bfloat16)
    if weight is None:
        weight = (torch.randn(H, K, generator=generator, device=device, dtype=torch.float32)
                  * K ** -0.5).to(torch.bfloat16)
    q_scale = torch.rand(T, H, 1, generator=generator, device=device, dtype=torch.float32)
    q_scale = q_scale * 0.01 + 0.001
    return x, weight, q_scale


def bytes_moved(T, K, H):
    """x + weight + q_scale + output, each once."""
    return T * K * 2 + H * K * 2 + T * H * 4 + T * H * 4


def flops(T, K, H):
    return 2 * T * H * K


def validation_rows(T, max_full=1024, n_sampled=512, seed=0):
    """All rows up to max_full; above that the first, the last and random rows (n_sampled in all)."""
    if T <= max_full:
        return torch.arange(T)
    g = torch.Generator().manual_seed(seed + T)
    rest = torch.randperm(T - 2, generator=g)[: n_sampled - 2] + 1
    return torch.cat([torch.tensor([0, T - 1]), rest]).sort().values


def check_against_float64(out, x, weight, q_scale, n_heads_inv_sqrt, softmax_scale, rows):
    """SPEC.md bound on the given rows: relative Frobenius error <= 1e-5 and every element within
    1e-4 * sum_k |x*w| * |n_heads_inv_sqrt * q_scale * softmax_scale|. Returns a dict with the
    measured errors and 'ok'; the reference is float64 on the CPU, independent of the code."""
    T, H = x.shape[0], weight.shape[0]
    ok_shape = tuple(out.shape) in ((T, H, 1), (T, H))
    if not ok_shape:
        return {"ok": False, "why": "output shape %s, expected (%d, %d, 1)" % (tuple(out.shape), T, H)}
    rows_dev = rows.to(x.device)
    xs = x.index_select(0, rows_dev).cpu().double()
    ws = weight.cpu().double()
    qs = q_scale.reshape(T, H).index_select(0, rows_dev).cpu().double()
    got = out.reshape(T, H).index_select(0, rows_dev).cpu().double()
    scale = qs * (n_heads_inv_sqrt * softmax_scale)
    ref = (xs @ ws.t()) * scale
    bound = ELEM_BOUND * (xs.abs() @ ws.abs().t()) * scale.abs()
    err = (got - ref).abs()
    ref_norm = ref.norm().item()
    rel_fro = (got - ref).norm().item() / ref_norm if ref_norm > 0 else (got - ref).norm().item()
    ratio = err / bound.clamp_min(1e-300)
    bad = ~(err <= bound)  # NaN counts as bad
    worst = ratio.nan_to_num(nan=math.inf).max().item() if ratio.numel() else 0.0
    res = {
        "ok": bool(rel_fro <= REL_FRO_BOUND and not bad.any().item() and math.isfinite(rel_fro)),
        "rel_fro_err": rel_fro,
        "max_err_over_bound": worst,
        "rows_checked": int(rows.numel()),
        "bad_elements": int(bad.sum().item()),
    }
    if not res["ok"]:
        if bad.any().item():
            i, h = [int(v) for v in bad.nonzero()[0]]
            res["why"] = ("element (t=%d, h=%d) = %r, float64 reference %r, allowed error %.3g"
                          % (int(rows[i]), h, got[i, h].item(), ref[i, h].item(), bound[i, h].item()))
        else:
            res["why"] = "relative Frobenius error %.3g > %g" % (rel_fro, REL_FRO_BOUND)
    return res

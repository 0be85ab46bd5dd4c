# SPEC.md "Bad input": each rejected argument raises a Python exception whose message names it and
# says what was expected and what was given; out is untouched; a later call still works.
import pytest
import torch

import dsa_indexer
from conftest import SOFTMAX_SCALE, assert_close_to_reference, make_inputs, requires_2_gpus, requires_cuda

T, H, K = 5, 64, 256
N = H**-0.5


def _good(device):
    x, w, q = make_inputs(T, H, K, device)
    return {"x": x, "weight": w, "q_scale": q}


# (case id, argument named in the error, substring of the message, how to break the good inputs)
CASES = [
    ("x 1-D", "x", "x must be 2-D [T, K], got shape [256]", lambda a: a.update(x=a["x"][0])),
    ("x 3-D", "x", "x must be 2-D", lambda a: a.update(x=a["x"].unsqueeze(0))),
    ("weight 1-D", "weight", "weight must be 2-D [H, K], got shape [256]", lambda a: a.update(weight=a["weight"][0])),
    ("weight 3-D", "weight", "weight must be 2-D", lambda a: a.update(weight=a["weight"].unsqueeze(-1))),
    ("K mismatch", "weight", "weight must have shape [H, K] with K=256 (from x), got [64, 255]",
     lambda a: a.update(weight=a["weight"][:, :255])),
    ("K = 0", "x", "x must have K >= 1", lambda a: a.update(x=a["x"][:, :0], weight=a["weight"][:, :0])),
    ("H = 0", "weight", "weight must have H >= 1", lambda a: a.update(weight=a["weight"][:0], q_scale=a["q_scale"][:, :0])),
    ("q_scale H mismatch", "q_scale", "q_scale must have shape [T, H, 1] or [T, H] with T=5, H=64, got [5, 32]",
     lambda a: a.update(q_scale=a["q_scale"][:, :32, 0])),
    ("q_scale T mismatch", "q_scale", "with T=5, H=64, got [4, 64, 1]", lambda a: a.update(q_scale=a["q_scale"][:4])),
    ("q_scale last dim 2", "q_scale", "got [5, 64, 2]", lambda a: a.update(q_scale=a["q_scale"].expand(T, H, 2))),
    ("q_scale 1-D", "q_scale", "got [64]", lambda a: a.update(q_scale=a["q_scale"][0, :, 0])),
    ("q_scale 4-D", "q_scale", "got [5, 64, 1, 1]", lambda a: a.update(q_scale=a["q_scale"].unsqueeze(-1))),
    ("x fp32", "x", "x must have dtype BFloat16, got Float", lambda a: a.update(x=a["x"].float())),
    ("x fp16", "x", "x must have dtype BFloat16, got Half", lambda a: a.update(x=a["x"].half())),
    ("weight fp32", "weight", "weight must have dtype BFloat16, got Float", lambda a: a.update(weight=a["weight"].float())),
    ("q_scale bf16", "q_scale", "q_scale must have dtype Float, got BFloat16",
     lambda a: a.update(q_scale=a["q_scale"].bfloat16())),
    ("q_scale fp64", "q_scale", "q_scale must have dtype Float, got Double", lambda a: a.update(q_scale=a["q_scale"].double())),
    ("x column stride", "x", "x must have unit column stride and row stride >= K=256, got strides [1, 5]",
     lambda a: a.update(x=a["x"].t().contiguous().t())),
    ("weight column stride", "weight", "weight must have unit column stride",
     lambda a: a.update(weight=a["weight"].t().contiguous().t())),
    ("x overlapping rows", "x", "x must have unit column stride and row stride >= K=256, got strides [0, 1]",
     lambda a: a.update(x=a["x"][:1].expand(T, K))),
    ("weight every other column", "weight", "weight must have unit column stride",
     lambda a: a.update(weight=torch.cat([a["weight"], a["weight"]], 1)[:, ::2])),
]

OUT_CASES = [
    ("out wrong H", "out", "out must have shape [T, H, 1] or [T, H] with T=5, H=64, got [5, 63, 1]", (T, H - 1, 1), torch.float32),
    ("out wrong T", "out", "got [6, 64]", (T + 1, H), torch.float32),
    ("out 1-D", "out", "got [320]", (T * H,), torch.float32),
    ("out [T,H,2]", "out", "got [5, 64, 2]", (T, H, 2), torch.float32),
    ("out bf16", "out", "out must have dtype Float, got BFloat16", (T, H, 1), torch.bfloat16),
    ("out fp64", "out", "out must have dtype Float, got Double", (T, H), torch.float64),
]


def _call(args, out=None):
    return dsa_indexer.logits_head_gate(args["x"], args["weight"], N, SOFTMAX_SCALE, args["q_scale"], out=out)


def _check_later_call_works(device):
    good = _good(device)
    out = torch.full((T, H, 1), float("nan"), device=device)
    _call(good, out)
    assert_close_to_reference(out, good["x"], good["weight"], N, SOFTMAX_SCALE, good["q_scale"])
    assert_close_to_reference(_call(good), good["x"], good["weight"], N, SOFTMAX_SCALE, good["q_scale"])


@pytest.mark.parametrize("case,arg,msg,breaker", CASES, ids=[c[0] for c in CASES])
def test_rejected_argument(device, case, arg, msg, breaker):
    args = _good(device)
    breaker(args)
    with pytest.raises(RuntimeError) as e:
        _call(args)
    assert msg in str(e.value), str(e.value)
    assert str(e.value).startswith(f"dsa_indexer.logits_head_gate: {arg} ")
    # The out= overload rejects the same argument and leaves out untouched.
    sentinel = torch.arange(T * H, dtype=torch.float32, device=device).reshape(T, H, 1) + 0.5
    out = sentinel.clone()
    with pytest.raises(RuntimeError, match=f"dsa_indexer.logits_head_gate: {arg} "):
        _call(args, out)
    assert torch.equal(out, sentinel)
    _check_later_call_works(device)


@pytest.mark.parametrize("case,arg,msg,shape,dtype", OUT_CASES, ids=[c[0] for c in OUT_CASES])
def test_rejected_out(device, case, arg, msg, shape, dtype):
    args = _good(device)
    out = torch.full(shape, 7.0, dtype=dtype, device=device)
    with pytest.raises(RuntimeError) as e:
        _call(args, out)
    assert msg in str(e.value), str(e.value)
    assert torch.all(out == 7.0)
    _check_later_call_works(device)


def test_rejected_overlapping_out(device):
    args = _good(device)
    out = torch.full((1, H, 1), 7.0, device=device).expand(T, H, 1)
    with pytest.raises(RuntimeError, match="out must not have overlapping elements"):
        _call(args, out)
    assert torch.all(out == 7.0)
    _check_later_call_works(device)


def test_shape_checked_before_dtype(device):
    args = _good(device)
    args["x"] = args["x"].float()
    args["q_scale"] = args["q_scale"][:, :3]
    with pytest.raises(RuntimeError, match="q_scale must have shape"):
        _call(args)


@requires_cuda
@pytest.mark.parametrize("arg", ["x", "weight", "q_scale", "out"])
def test_cpu_mixed_with_cuda(arg):
    args = _good("cuda")
    out = torch.full((T, H, 1), 7.0, device="cuda")
    if arg == "out":
        out = out.cpu()
    else:
        args[arg] = args[arg].cpu()
    with pytest.raises(RuntimeError) as e:
        _call(args, out)
    ref = "weight" if arg == "x" else "x"
    assert f"{arg} must be on the same device as {ref} (cuda:0), got cpu" in str(e.value), str(e.value)
    assert torch.all(out == 7.0)
    _check_later_call_works("cuda")


@requires_2_gpus
@pytest.mark.parametrize("arg", ["weight", "q_scale", "out"])
def test_two_gpus_rejected(arg):
    args = _good("cuda:0")
    out = torch.full((T, H, 1), 7.0, device="cuda:0")
    if arg == "out":
        out = out.to("cuda:1")
    else:
        args[arg] = args[arg].to("cuda:1")
    with pytest.raises(RuntimeError, match=f"{arg} must be on the same device as x \\(cuda:0\\), got cuda:1"):
        _call(args, out)
    assert torch.all(out == 7.0)
    _check_later_call_works("cuda")


@requires_2_gpus
def test_non_current_device():
    """Tensors on cuda:1 while cuda:0 is current: the op runs on cuda:1 (device guard) and leaves
    the current device as it was."""
    x, w, q = make_inputs(300, H, 7168, "cuda:1")
    with torch.cuda.device(0):
        out = dsa_indexer.logits_head_gate(x, w, N, SOFTMAX_SCALE, q)
        out2 = torch.full((300, H), float("nan"), device="cuda:1")
        dsa_indexer.logits_head_gate(x, w, N, SOFTMAX_SCALE, q, out=out2)
        assert torch.cuda.current_device() == 0
    assert out.device == torch.device("cuda:1")
    torch.cuda.synchronize(1)
    assert_close_to_reference(out, x, w, N, SOFTMAX_SCALE, q)
    assert torch.equal(out2, out.squeeze(-1))
    ref = dsa_indexer.logits_head_gate(x.to("cuda:0"), w.to("cuda:0"), N, SOFTMAX_SCALE, q.to("cuda:0"))
    assert torch.equal(ref.cpu(), out.cpu())

# Shared fixtures of the PyTorch operator's tests: device parametrisation (cpu always, cuda when a
# GPU is present, skipped with a reason otherwise), input makers and the float64 reference.
import pytest
import torch

import dsa_indexer  # noqa: F401  (registers torch.ops.dsa_indexer)

HAS_CUDA = torch.cuda.is_available()
NO_GPU = "needs a CUDA GPU (torch.cuda.is_available() is False)"
requires_cuda = pytest.mark.skipif(not HAS_CUDA, reason=NO_GPU)
requires_2_gpus = pytest.mark.skipif(
    not HAS_CUDA or torch.cuda.device_count() < 2, reason="needs 2 or more CUDA GPUs"
)

DEVICES = ["cpu", pytest.param("cuda", marks=requires_cuda)]

SOFTMAX_SCALE = 128**-0.5


@pytest.fixture(params=DEVICES)
def device(request):
    return request.param


def make_inputs(T, H, K, device, seed=0, q_2d=False):
    g = torch.Generator(device="cpu").manual_seed(seed * 1_000_003 + T * 7919 + H * 131 + K)
    x = torch.randn(T, K, generator=g).to(torch.bfloat16)
    w = (torch.randn(H, K, generator=g) * K**-0.5).to(torch.bfloat16)
    q = torch.rand(T, H, 1, generator=g) * 2 + 0.01
    if q_2d:
        q = q.squeeze(-1)
    return x.to(device), w.to(device), q.to(device)


def reference(x, w, n_heads_inv_sqrt, softmax_scale, q):
    """float64 reference of the formula and the SPEC's per-element bound, both [T, H]."""
    xd, wd = x.double(), w.double()
    qd = q.double().reshape(x.shape[0], w.shape[0])
    scale = float(torch.tensor(n_heads_inv_sqrt, dtype=torch.float32)) * float(
        torch.tensor(softmax_scale, dtype=torch.float32)
    )
    ref = (xd @ wd.t()) * qd * scale
    bound = 1e-4 * (xd.abs() @ wd.abs().t()) * (qd * scale).abs()
    return ref, bound


def assert_close_to_reference(out, x, w, n_heads_inv_sqrt, softmax_scale, q):
    T, H = x.shape[0], w.shape[0]
    assert out.dtype == torch.float32
    assert out.device == x.device
    got = out.double().reshape(T, H)
    ref, bound = reference(x, w, n_heads_inv_sqrt, softmax_scale, q)
    assert torch.isfinite(got).all(), "non-finite (unwritten?) elements in the output"
    if T == 0:
        return
    err = got - ref
    ref_norm = ref.norm().item()
    rel = err.norm().item() / ref_norm if ref_norm > 0 else err.norm().item()
    assert rel <= 1e-5, f"relative Frobenius error {rel:.3e} > 1e-5"
    worst = (err.abs() - bound).max().item()
    assert worst <= 0, f"an element exceeds the per-element bound by {worst:.3e}"


def poison_allocator(shape, device):
    """Leaves a NaN block of this size in the allocator so an unwritten output shows up."""
    t = torch.full(shape, float("nan"), dtype=torch.float32, device=device)
    del t

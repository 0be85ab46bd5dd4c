# Correctness of dsa_indexer.logits_head_gate against a float64 reference (SPEC.md "Numerics"),
# on the C++ suite's shapes, both overloads, strided and non-contiguous layouts, on every device.
import itertools

import pytest
import torch

import dsa_indexer
from conftest import SOFTMAX_SCALE, assert_close_to_reference, make_inputs, poison_allocator

TS = [0, 1, 3, 64, 1000, 4097]
HS = [1, 7, 32, 64, 128]
KS = [8, 100, 6144, 7168]


@pytest.mark.parametrize("T,H,K", list(itertools.product(TS, HS, KS)))
def test_functional_shapes(device, T, H, K):
    x, w, q = make_inputs(T, H, K, device)
    n = H**-0.5
    poison_allocator((T, H, 1), device)
    out = dsa_indexer.logits_head_gate(x, w, n, SOFTMAX_SCALE, q)
    assert out.shape == (T, H, 1)
    assert out.is_contiguous()
    assert_close_to_reference(out, x, w, n, SOFTMAX_SCALE, q)


@pytest.mark.parametrize("T,H,K", [(1, 64, 7168), (3, 7, 100), (64, 32, 6144), (1000, 128, 8), (257, 64, 7168)])
@pytest.mark.parametrize("out_shape", ["T,H,1", "T,H"])
@pytest.mark.parametrize("q_2d", [False, True])
def test_out_overload(device, T, H, K, out_shape, q_2d):
    x, w, q = make_inputs(T, H, K, device, q_2d=q_2d)
    n = H**-0.5
    shape = (T, H, 1) if out_shape == "T,H,1" else (T, H)
    out = torch.full(shape, float("nan"), device=device)
    ret = dsa_indexer.logits_head_gate(x, w, n, SOFTMAX_SCALE, q, out=out)
    assert ret is out or ret.data_ptr() == out.data_ptr()
    assert ret.shape == shape
    assert_close_to_reference(out, x, w, n, SOFTMAX_SCALE, q)
    # The op overloads directly, as serving engines call them.
    out2 = torch.full(shape, float("nan"), device=device)
    torch.ops.dsa_indexer.logits_head_gate.out(x, w, n, SOFTMAX_SCALE, q, out=out2)
    assert torch.equal(out, out2)
    func = torch.ops.dsa_indexer.logits_head_gate(x, w, n, SOFTMAX_SCALE, q)
    assert torch.equal(func.reshape(shape), out)


@pytest.mark.parametrize("T,H,K", [(1, 64, 7168), (5, 32, 6144), (64, 64, 7168), (300, 7, 100), (1000, 64, 8)])
def test_strided_layouts(device, T, H, K):
    """x and weight as slices of wider buffers; q_scale and out with arbitrary strides."""
    x0, w0, q0 = make_inputs(T, H, K, device)
    n = H**-0.5
    xbuf = torch.randn(T, K + 24, device=device).to(torch.bfloat16)
    x = xbuf[:, 8 : 8 + K]
    x.copy_(x0)
    wbuf = torch.randn(H, K + 40, device=device).to(torch.bfloat16)
    w = wbuf[:, 16 : 16 + K]
    w.copy_(w0)
    assert x.stride() == (K + 24, 1) and w.stride() == (K + 40, 1)
    expected = dsa_indexer.logits_head_gate(x0, w0, n, SOFTMAX_SCALE, q0)

    q_layouts = {
        "transposed [T,H]": torch.empty(H, T, device=device).t(),
        "[T,H,1] slice of [T,H,3]": torch.empty(T, H, 3, device=device)[..., 1:2],
        "[T,H] every other column": torch.empty(T, 2 * H, device=device)[:, ::2],
    }
    out_layouts = {
        "transposed [T,H]": lambda: torch.full((H, T), float("nan"), device=device).t(),
        "[T,H,1] slice of [T,H,2]": lambda: torch.full((T, H, 2), float("nan"), device=device)[..., :1],
        "[T,H,1] permuted": lambda: torch.full((1, H, T), float("nan"), device=device).permute(2, 1, 0),
        "[T,H] every third column": lambda: torch.full((T, 3 * H), float("nan"), device=device)[:, ::3],
    }
    for qname, q in q_layouts.items():
        q.copy_(q0.reshape(q.shape))
        for oname, make_out in out_layouts.items():
            out = make_out()
            if T > 1 and H > 1:
                assert not out.is_contiguous(), oname
            dsa_indexer.logits_head_gate(x, w, n, SOFTMAX_SCALE, q, out=out)
            assert_close_to_reference(out, x0, w0, n, SOFTMAX_SCALE, q0)
            # Layout does not change the arithmetic: bitwise the same as the contiguous call.
            assert torch.equal(out.reshape(T, H), expected.reshape(T, H)), (qname, oname)
        got = dsa_indexer.logits_head_gate(x, w, n, SOFTMAX_SCALE, q)
        assert torch.equal(got, expected), qname


@pytest.mark.parametrize("T,H,K", [(1, 64, 7168), (7, 32, 6144), (300, 64, 7168), (65, 7, 100)])
@pytest.mark.parametrize("offset", [1, 3])
def test_unaligned_rows(device, T, H, K, offset):
    """Rows that start off 16-byte boundaries (odd offsets and row strides): the fast paths'
    alignment does not hold and the general path must give the same answer."""
    x0, w0, q = make_inputs(T, H, K, device)
    n = H**-0.5
    x = torch.empty(T * (K + offset) + offset, dtype=torch.bfloat16, device=device)
    x = x[offset:].as_strided((T, K), (K + offset, 1))
    x.copy_(x0)
    w = torch.empty(H * (K + offset) + offset, dtype=torch.bfloat16, device=device)
    w = w[offset:].as_strided((H, K), (K + offset, 1))
    w.copy_(w0)
    out = torch.full((T, H, 1), float("nan"), device=device)
    dsa_indexer.logits_head_gate(x, w, n, SOFTMAX_SCALE, q, out=out)
    assert_close_to_reference(out, x0, w0, n, SOFTMAX_SCALE, q)
    # Rows stay batch invariant and deterministic on this path too.
    assert torch.equal(dsa_indexer.logits_head_gate(x[:1], w, n, SOFTMAX_SCALE, q[:1]), out[:1])
    assert torch.equal(dsa_indexer.logits_head_gate(x, w, n, SOFTMAX_SCALE, q), out)


@pytest.mark.parametrize("T,H,K", [(0, 64, 7168), (0, 1, 8)])
def test_empty_batch(device, T, H, K):
    x, w, q = make_inputs(T, H, K, device)
    out = dsa_indexer.logits_head_gate(x, w, 0.125, SOFTMAX_SCALE, q)
    assert out.shape == (0, H, 1) and out.dtype == torch.float32 and out.device.type == device
    o = torch.empty(0, H, device=device)
    assert dsa_indexer.logits_head_gate(x, w, 0.125, SOFTMAX_SCALE, q, out=o).shape == (0, H)


@pytest.mark.parametrize("T,H,K", [(1, 64, 7168), (37, 32, 6144), (1000, 64, 7168), (129, 7, 100)])
def test_deterministic(device, T, H, K):
    x, w, q = make_inputs(T, H, K, device, seed=3)
    first = dsa_indexer.logits_head_gate(x, w, H**-0.5, SOFTMAX_SCALE, q)
    for _ in range(5):
        again = dsa_indexer.logits_head_gate(x, w, H**-0.5, SOFTMAX_SCALE, q)
        assert torch.equal(first, again)


@pytest.mark.parametrize("T,H,K", [(1, 64, 7168), (64, 64, 7168), (128, 32, 6144), (512, 64, 7168),
                                   (1024, 32, 6144), (37, 7, 100)])
def test_static_weight_same_bits(device, T, H, K):
    """static_weight=True changes when the weight is read, not the result (both overloads)."""
    x, w, q = make_inputs(T, H, K, device, seed=9)
    n = H**-0.5
    plain = dsa_indexer.logits_head_gate(x, w, n, SOFTMAX_SCALE, q)
    assert torch.equal(dsa_indexer.logits_head_gate(x, w, n, SOFTMAX_SCALE, q, static_weight=True), plain)
    out = torch.full((T, H), float("nan"), device=device)
    dsa_indexer.logits_head_gate(x, w, n, SOFTMAX_SCALE, q, out=out, static_weight=True)
    assert torch.equal(out, plain.squeeze(-1))
    assert_close_to_reference(out, x, w, n, SOFTMAX_SCALE, q)


@pytest.mark.parametrize("H,K", [(64, 7168), (32, 6144), (7, 100), (128, 8)])
def test_batch_invariant(device, H, K):
    """Row t is bitwise the same alone (T=1), in any batch size and at any position."""
    T = 4097
    x, w, q = make_inputs(T, H, K, device, seed=5)
    n = H**-0.5
    full = dsa_indexer.logits_head_gate(x, w, n, SOFTMAX_SCALE, q)
    for a, b in [(0, 1), (4096, 4097), (17, 18), (0, 3), (5, 69), (100, 1100), (3000, 4097), (1, 4097)]:
        part = dsa_indexer.logits_head_gate(x[a:b], w, n, SOFTMAX_SCALE, q[a:b])
        assert torch.equal(part, full[a:b]), (a, b)
    # The same row placed at different positions of batches built from other data.
    row = 1234
    for T2, pos in [(1, 0), (2, 1), (64, 63), (512, 200), (2048, 2047), (8192, 8100)]:
        xb, _, qb = make_inputs(T2, H, K, device, seed=T2)
        xb[pos] = x[row]
        qb[pos] = q[row]
        got = dsa_indexer.logits_head_gate(xb, w, n, SOFTMAX_SCALE, qb)
        assert torch.equal(got[pos], full[row]), (T2, pos)


def test_nonfinite_rows_stay_in_their_row(device):
    T, H, K = 16, 64, 7168
    x, w, q = make_inputs(T, H, K, device, seed=9)
    x[2, 100] = float("nan")
    x[5, 7] = float("inf")
    q[9, 3] = float("inf")
    out = dsa_indexer.logits_head_gate(x, w, H**-0.5, SOFTMAX_SCALE, q)[..., 0]
    assert torch.isnan(out[2]).all()
    assert (~torch.isfinite(out[5])).all()
    assert not torch.isfinite(out[9, 3])
    clean = [t for t in range(T) if t not in (2, 5, 9)]
    assert torch.isfinite(out[clean]).all()
    assert torch.isfinite(out[9, :3]).all() and torch.isfinite(out[9, 4:]).all()


def test_scalars_are_used(device):
    T, H, K = 4, 64, 7168
    x, w, q = make_inputs(T, H, K, device)
    a = dsa_indexer.logits_head_gate(x, w, 0.125, SOFTMAX_SCALE, q)
    b = dsa_indexer.logits_head_gate(x, w, 0.25, SOFTMAX_SCALE, q)
    c = dsa_indexer.logits_head_gate(x, w, 0.125, 2 * SOFTMAX_SCALE, q)
    torch.testing.assert_close(b, 2 * a, rtol=1e-6, atol=0)
    torch.testing.assert_close(c, 2 * a, rtol=1e-6, atol=0)


def test_meta_shapes():
    x = torch.empty(11, 7168, dtype=torch.bfloat16, device="meta")
    w = torch.empty(64, 7168, dtype=torch.bfloat16, device="meta")
    q = torch.empty(11, 64, device="meta")
    out = dsa_indexer.logits_head_gate(x, w, 0.125, SOFTMAX_SCALE, q)
    assert out.shape == (11, 64, 1) and out.dtype == torch.float32 and out.device.type == "meta"
    o = torch.empty(11, 64, device="meta")
    assert dsa_indexer.logits_head_gate(x, w, 0.125, SOFTMAX_SCALE, q, out=o) is o
    with pytest.raises(RuntimeError, match="weight"):
        dsa_indexer.logits_head_gate(x, w[:, :100], 0.125, SOFTMAX_SCALE, q)


def test_version():
    assert isinstance(dsa_indexer.__version__, str) and dsa_indexer.__version__[0].isdigit()
    assert dsa_indexer.logits_head_gate.__doc__ and "Example" in dsa_indexer.logits_head_gate.__doc__


def test_docstring_example():
    import doctest

    finder = doctest.DocTestFinder()
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    for t in finder.find(dsa_indexer.logits_head_gate, "logits_head_gate", globs={}):
        runner.run(t)
    assert runner.failures == 0 and runner.tries >= 3

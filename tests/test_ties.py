"""Ties broken the authors' way: Sparse-softmax keeps the lower class index among equal logits (their
``tf.math.top_k``), on every dtype, in both forms of :func:`softgrad.losses.sparse.top_k`, eager and compiled.

The reference is a literal loop in plain Python floats (float64): sort the classes by (-z_i, i), keep the first k,
``L = log sum_K e^{z_i} - z_t`` and ``dL/dz_i = [i in K] e^{z_i} / sum_K e^{z_j} - [i = t]``. It shares no code
with the library. AS-Softmax's mask is a threshold, not a rank: its rule (ties and the boundary kept) is checked
here too.
"""

from __future__ import annotations

import math

import pytest
import torch

from softgrad import losses as L
from softgrad.losses import sparse

DTYPES = [torch.float64, torch.float32, torch.bfloat16]
TOL = {torch.float64: 1e-12, torch.float32: 1e-6, torch.bfloat16: 1e-2}  # bf16: the gradient is returned in bf16


@pytest.fixture(params=["sort", "repair", "repair-all-rows"])
def form(request, monkeypatch):
    """Each test runs on every form of top_k, whatever the class count: the stable sort; topk with the repair of
    the tied rows only (a CPU, eager); and topk with the repair run on every row (CUDA, torch.compile)."""
    monkeypatch.setattr(sparse, "SORT_MAX_CLASSES", 1 << 62 if request.param == "sort" else 0)
    if request.param == "repair-all-rows":
        monkeypatch.setattr(sparse, "_tied_rows_only", lambda z: False)
    return request.param


def ref_sparse_softmax(z, t, k, keep_target=False):
    """Per row: (loss, gradient list), the authors' rule in plain Python float64."""
    out = []
    for row, tt in zip(z.double().tolist(), t.tolist()):
        C = len(row)
        order = sorted(range(C), key=lambda i: (-row[i], i))  # lower index first among equal values
        kept = set(order[:k]) | ({tt} if keep_target else set())
        m = max(row[i] for i in kept)
        s = sum(math.exp(row[i] - m) for i in kept)
        lse = m + math.log(s)
        grad = [(math.exp(row[i] - lse) if i in kept else 0.0) - (1.0 if i == tt else 0.0) for i in range(C)]
        out.append((lse - row[tt], grad))
    return out


def tie_rows(C: int):
    """Rows with every kind of tie, and targets inside and outside the tie: (z (M, C) float64, t (M,), k)."""
    rows, targets, ks = [], [], []

    def add(z, t, k):
        rows.append([float(v) for v in z])
        targets.append(t)
        ks.append(k)

    for k in (1, 3, C):  # all-equal rows: every class ties (a zero-initialised head)
        for value in (0.0, 2.5, -7.0):
            for t in (0, 1, C - 1):
                add([value] * C, t, k)
    # a tie at the k-th place: 5 > 3 > 1 = 1 = 1 > 0 ... with k = 3 keeps index 1 of {1, 3, 4}
    base = [5.0, 1.0, 3.0, 1.0, 1.0] + [0.0] * (C - 5)
    for t in (0, 2, 1, 3, 4, 5):  # above the tie, in it and kept, in it and dropped, below it
        add(base, t, 3)
    add(base, 3, 2)  # no tie across the boundary at k = 2: the set is {0, 2}
    add(base, 4, 5)  # k = 5 keeps the whole tie
    # the tie is at the top: 2 = 2 = 2 > ..., k = 2 keeps the first two of three
    top = [0.0, 2.0, -1.0, 2.0, 2.0] + [-3.0] * (C - 5)
    for t in (1, 3, 4, 0):
        add(top, t, 2)
    add([-0.0, 0.0] + [-1.0] * (C - 2), 1, 1)  # -0.0 == 0.0: index 0 is kept
    # many ties at random: integer logits in {0, ..., 3}
    g = torch.Generator().manual_seed(0)
    zi = torch.randint(0, 4, (40, C), generator=g).double()
    ti = torch.randint(0, C, (40,), generator=g)
    for i in range(40):
        add(zi[i].tolist(), int(ti[i]), (1, 2, 5, C)[i % 4])
    return torch.tensor(rows, dtype=torch.float64), torch.tensor(targets), ks


@pytest.mark.parametrize("C", [10, 100])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("keep_target", [False, True])
def test_sparse_softmax_ties_equal_the_lower_index_reference(form, C, dtype, keep_target):
    z, t, ks = tie_rows(C)
    for k in sorted(set(ks)):
        sel = [i for i, kk in enumerate(ks) if kk == k]
        zz = z[sel].to(dtype)  # integer-valued logits: exact in bf16
        x = zz.clone().requires_grad_(True)
        loss = L.sparse_softmax(x, t[sel], k=k, keep_target=keep_target)
        loss.sum().backward()
        ref = ref_sparse_softmax(zz, t[sel], k, keep_target)
        want_loss = torch.tensor([r[0] for r in ref], dtype=torch.float64)
        want_grad = torch.tensor([r[1] for r in ref], dtype=torch.float64)
        torch.testing.assert_close(loss.double(), want_loss, rtol=TOL[dtype], atol=TOL[dtype])
        torch.testing.assert_close(x.grad.double(), want_grad, rtol=0, atol=TOL[dtype], msg=lambda m: f"k={k}: {m}")


def test_the_issues_example(form):
    """z = 0 (10 classes), t = 0, k = 3: the authors keep {0, 1, 2}; torch.topk kept {6, 7, 8} on this CPU."""
    z = torch.zeros(1, 10, dtype=torch.float64, requires_grad=True)
    loss = L.sparse_softmax(z, torch.tensor([0]), k=3)
    loss.backward()
    assert abs(loss.item() - math.log(3)) < 1e-15
    want = torch.zeros(1, 10, dtype=torch.float64)
    want[0, 0], want[0, 1], want[0, 2] = -2 / 3, 1 / 3, 1 / 3
    torch.testing.assert_close(z.grad, want, rtol=0, atol=1e-15)


@pytest.mark.parametrize("dtype", DTYPES)
def test_top_k_keeps_the_lower_indices_and_the_values(form, dtype):
    g = torch.Generator().manual_seed(1)
    for C in (3, 10, 65, 300):
        z = torch.randint(-2, 3, (64, C), generator=g).to(dtype)
        for k in sorted({1, 2, min(5, C), C}):
            vals, idx = sparse.top_k(z, k)
            for row, v, i in zip(z.double().tolist(), vals.double().tolist(), idx.tolist()):
                order = sorted(range(C), key=lambda j: (-row[j], j))[:k]
                assert sorted(i) == sorted(order), (C, k, row)
                assert sorted(v, reverse=True) == [row[j] for j in order]


def test_sparse_softmax_bf16_ties_give_the_float64_gradient(form):
    """The same logits in bf16 and float64: the same kept set, hence the same gradient to bf16 rounding."""
    g = torch.Generator().manual_seed(2)
    z = (torch.randn(256, 50, generator=g) * 2).to(torch.bfloat16)  # bf16 rounding makes many ties
    t = torch.randint(0, 50, (256,), generator=g)
    a, b = z.clone().requires_grad_(True), z.double().requires_grad_(True)
    L.sparse_softmax(a, t, k=5).sum().backward()
    L.sparse_softmax(b, t, k=5).sum().backward()
    torch.testing.assert_close(a.grad.double(), b.grad, rtol=0, atol=1e-2)
    assert bool(((a.grad != 0) == (b.grad != 0)).all())  # the same classes get a gradient


@pytest.mark.parametrize("keep_target", [False, True])
def test_compiled_sparse_softmax_keeps_the_authors_ties(form, keep_target):
    torch._dynamo.reset()
    z, t, ks = tie_rows(10)
    sel = [i for i, k in enumerate(ks) if k == 3]
    z, t = z[sel], t[sel]
    loss = L.make_loss("sparse_softmax", k=3, keep_target=keep_target, reduction="sum")
    x = z.float().requires_grad_(True)
    torch.compile(loss, fullgraph=True, backend="aot_eager")(x, t).backward()
    want = torch.tensor([r[1] for r in ref_sparse_softmax(z, t, 3, keep_target)], dtype=torch.float64)
    torch.testing.assert_close(x.grad.double(), want, rtol=0, atol=1e-6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dtype", DTYPES)
def test_cuda_keeps_the_same_ties_as_the_cpu(form, dtype):
    z, t, _ = tie_rows(100)
    z = z.to(dtype)
    a, b = z.clone().requires_grad_(True), z.cuda().requires_grad_(True)
    L.sparse_softmax(a, t, k=3).sum().backward()
    L.sparse_softmax(b, t.cuda(), k=3).sum().backward()
    assert torch.equal(a.grad, b.grad.cpu())


# ------------------------------------------------------------------ AS-Softmax: a threshold, not a rank


@pytest.mark.usefixtures("loss_path")
@pytest.mark.parametrize("dtype", DTYPES)
def test_as_softmax_keeps_ties_and_the_rival_exactly_delta_below(dtype):
    """Keep class i iff p_t - p_i <= delta (as_sm.py): a rival tied with the target is kept at delta = 0, and a
    rival exactly delta below the target is kept (``<=``), one just beyond it is not."""
    z = torch.tensor([[2.0, 2.0, 1.0, 0.0]], dtype=dtype)
    t = torch.tensor([0])
    p = torch.softmax(z.double() if dtype == torch.float64 else z.float(), dim=1)
    for delta, kept in [(0.0, [0, 1]), (float(p[0, 0] - p[0, 2]), [0, 1, 2])]:
        x = z.clone().requires_grad_(True)
        loss = L.as_softmax(x, t, delta=delta)
        loss.backward()
        zd = z.double()[0]
        want = math.log(sum(math.exp(zd[i]) for i in kept)) - zd[0]
        assert abs(loss.item() - want) < TOL[dtype] * 10, (delta, loss.item(), want)
        assert [i for i in range(4) if x.grad[0, i] != 0] == kept

"""The losses as users import them: the authors' published code, nn.CrossEntropyLoss parity, torch.compile.

- AS-Softmax against the official ``as_sm.py`` formulation (github.com/aopolin-lv/AS-Softmax): masked logits
  ``where((p_t - p) <= delta, z, -inf)`` fed to cross-entropy; ties are kept at every delta, for every C.
- Sparse-softmax against the co-author's public formulation ``logsumexp(top-k(z)) - z_t`` (Sun et al. 2021), its
  top-k taken as their ``tf.nn.top_k`` takes it (lower index first among equal logits), on rows with ties.
- Every neutral setting equals ``F.cross_entropy`` over its options: (N, C, d1, d2) inputs, unbatched (C,),
  ``weight``, ``ignore_index``, ``reduction`` and ``label_smoothing`` where the method defines it.
- ``torch.compile(fullgraph=True)`` captures every loss, forward and backward, with eager's results (a
  host sync inside a loss would break the graph and fail this).
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from softgrad import losses as L

# every test runs on both implementations (tests/conftest.py)
pytestmark = pytest.mark.usefixtures("loss_path")


def official_as_softmax_loss(z, t, delta):
    """The official AS-Softmax module's recipe, restated: softmax in the input dtype, keep where
    (p_t - p_i) <= delta, -inf elsewhere, then CE (per sample)."""
    p = torch.softmax(z, dim=-1)
    p_t = p.gather(1, t.unsqueeze(1))
    keep = (p_t.repeat(1, z.shape[1]) - p) <= delta
    masked = torch.where(keep, z, torch.tensor(float("-inf"), dtype=z.dtype))
    return F.cross_entropy(masked, t, reduction="none")


def tf_top_k_values(z, k):
    """``tf.nn.top_k(z, k)[0]`` with its gradient: the k largest values, equal values in index order (a stable
    descending sort), so the gradient reaches the lower indices among ties, as in TensorFlow."""
    return z.sort(dim=1, descending=True, stable=True).values[:, :k]


def authors_sparse_softmax_loss(z, t, k):
    """Sparse-softmax as its authors' code computes it (bojone/SPACES ``compute_seq2seq_loss``): logsumexp over
    ``tf.nn.top_k``'s values minus z_t."""
    return torch.logsumexp(tf_top_k_values(z, k), dim=1) - z.gather(1, t.unsqueeze(1)).squeeze(1)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("delta", [0.0, 0.05, 0.1, 0.5, 1.0])
def test_as_softmax_equals_official_code(dtype, delta):
    g = torch.Generator().manual_seed(0)
    z = (torch.randn(256, 7, generator=g, dtype=torch.float64) * 3).to(dtype)
    z[:32] = z[:32].round()  # integer logits: many exact ties between target and rivals
    z[32:48] = 0.0
    t = torch.randint(0, 7, (256,), generator=g)
    za = z.clone().requires_grad_(True)
    zb = z.clone().requires_grad_(True)
    a, b = L.as_softmax(za, t, delta=delta), official_as_softmax_loss(zb, t, delta)
    torch.testing.assert_close(a, b, rtol=1e-12 if dtype == torch.float64 else 1e-5, atol=0)
    a.sum().backward()
    b.sum().backward()
    torch.testing.assert_close(za.grad, zb.grad)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_as_softmax_keeps_tied_rivals_for_every_class_count(dtype):
    """Uniform logits (a zero-initialised head at step 0): every rival ties with the target, so every one is
    kept at delta = 0 and the loss is log C with a non-zero gradient, for C = 2..1000."""
    for C in range(2, 1001):
        z = torch.zeros(1, C, dtype=dtype, requires_grad=True)
        loss, zero = L.as_softmax(z, torch.tensor([C - 1]), delta=0.0, return_zero_mask=True)
        assert abs(float(loss.detach()) - math.log(C)) < 1e-5 * math.log(C), (C, float(loss.detach()))
        assert not bool(zero)
        loss.sum().backward()
        assert float(z.grad[0, C - 1]) < 0, C


@pytest.mark.parametrize("k", [1, 2, 3, 5, 7])
def test_sparse_softmax_equals_authors_code(k):
    g = torch.Generator().manual_seed(1)
    z = torch.randn(64, 7, generator=g, dtype=torch.float64)
    z[:24] = torch.randint(0, 3, (24, 7), generator=g).double()  # ties, many at the k-th place
    z[24:28] = 0.0
    t = torch.randint(0, 7, (64,), generator=g)
    za = z.clone().requires_grad_(True)
    zb = z.clone().requires_grad_(True)
    a, b = L.sparse_softmax(za, t, k=k), authors_sparse_softmax_loss(zb, t, k)
    torch.testing.assert_close(a, b)
    a.sum().backward()
    b.sum().backward()
    torch.testing.assert_close(za.grad, zb.grad)
    # keep_target differs only on rows whose target is outside the top-k
    outside = ~(z.sort(dim=1, descending=True, stable=True).indices[:, :k] == t.unsqueeze(1)).any(dim=1)
    kt = L.sparse_softmax(z, t, k=k, keep_target=True)
    torch.testing.assert_close(kt[~outside], a.detach()[~outside])
    assert k == 7 or bool((kt[outside] > a.detach()[outside]).all())  # adding z_t to K raises the lse


@pytest.mark.parametrize("name", ["sparsemax", "entmax15"])
def test_sparse_projections_equal_the_entmax_package(name):
    import entmax  # the maintained implementation, used here as the oracle

    g = torch.Generator().manual_seed(4)
    z = torch.randn(64, 9, generator=g, dtype=torch.float64) * 2
    z[:8] = 0.0  # ties
    t = torch.randint(0, 9, (64,), generator=g)
    za, zb = z.clone().requires_grad_(True), z.clone().requires_grad_(True)
    ours = getattr(L, name)(za, t)
    ref = (entmax.sparsemax_loss if name == "sparsemax" else entmax.entmax15_loss)(zb, t)
    torch.testing.assert_close(ours, ref)
    ours.sum().backward()
    ref.sum().backward()
    torch.testing.assert_close(za.grad, zb.grad)


def test_zero_loss_mask_is_one_definition():
    z = torch.tensor([[9.0, 0.0, 0.0], [0.0, 0.0, 0.0], [9.0, 0.0, 0.0]])
    t = torch.tensor([0, 1, -100])
    loss, zero = L.as_softmax(z, t, delta=0.1, return_zero_mask=True)
    assert zero.tolist() == [True, False, False]  # the ignored row has loss 0 but is not counted
    assert torch.equal(zero, L.zero_loss_mask(loss, t))


# ------------------------------------------------------------------ nn.CrossEntropyLoss parity

NEUTRAL = {"ce": {}, "temperature": {"beta": 1.0}, "gradient_decay": {"beta": 1.0}, "sgt": {"alpha": 1.0},
           "as_softmax": {"delta": 1.0}, "sparse_softmax": {"k": 1000}}
SMOOTHED = ("ce", "temperature", "sgt")


def _inputs(shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(*shape, generator=g, dtype=torch.float64) * 2
    C = shape[0] if len(shape) == 1 else shape[1]
    tshape = () if len(shape) == 1 else (shape[0], *shape[2:])
    t = torch.randint(0, C, tshape, generator=g)
    if t.dim():
        t.view(-1)[::5] = -100  # some ignored entries
    return z, t


CASES = list(itertools.product(
    [(6,), (12, 6), (4, 6, 3), (3, 6, 2, 2)],  # unbatched, (N, C), (N, C, d), (N, C, d1, d2)
    [False, True],  # class weights
    ["mean", "sum", "none"],
    [0.0, 0.2],  # label smoothing
))


@pytest.mark.parametrize("name", list(NEUTRAL))
@pytest.mark.parametrize("shape,weighted,reduction,eps", CASES,
                         ids=[f"{s}-w{int(w)}-{r}-ls{e}" for s, w, r, e in CASES])
def test_neutral_setting_equals_torch_cross_entropy_over_all_options(name, shape, weighted, reduction, eps):
    if eps and name not in SMOOTHED:
        with pytest.raises(ValueError, match=r"unknown parameter\(s\) \['label_smoothing'\]"):
            L.make_loss(name, label_smoothing=eps)
        return
    z, t = _inputs(shape)
    C = shape[0] if len(shape) == 1 else shape[1]
    weight = torch.linspace(0.5, 2.0, C, dtype=torch.float64) if weighted else None
    params = {**NEUTRAL[name], **({"label_smoothing": eps} if eps else {})}
    za, zb = z.clone().requires_grad_(True), z.clone().requires_grad_(True)
    ours = L.make_loss(name, reduction=reduction, weight=weight, **params)(za, t)
    ref = F.cross_entropy(zb, t, weight=weight, reduction=reduction, label_smoothing=eps)
    if reduction == "none" and t.dim():  # PyTorch gives ignored entries 0 as well
        assert ours.shape == ref.shape
    torch.testing.assert_close(ours, ref)
    ours.sum().backward()
    ref.sum().backward()
    torch.testing.assert_close(za.grad, zb.grad)


def test_module_is_a_drop_in_for_nn_cross_entropy_loss():
    ref = torch.nn.CrossEntropyLoss(weight=torch.tensor([1.0, 2.0, 3.0]), ignore_index=1, label_smoothing=0.1)
    ours = L.make_loss("sgt", alpha=1.0, weight=torch.tensor([1.0, 2.0, 3.0]), ignore_index=1, label_smoothing=0.1)
    z, t = torch.randn(5, 3, 4), torch.randint(0, 3, (5, 4))
    torch.testing.assert_close(ours(z, t), ref(z, t))
    assert "weight" in dict(ours.named_buffers())  # moves with .to(device), saved in state_dict


# ------------------------------------------------------------------ torch.compile

COMPILE = {"ce": {"label_smoothing": 0.1}, "temperature": {"beta": 2.0}, "gradient_decay": {"beta": 0.1},
           "sgt": {"alpha": 0.5, "label_smoothing": 0.1}, "as_softmax": {"delta": 0.2},
           "sparse_softmax": {"k": 3}, "sparsemax": {}, "entmax15": {}}


@pytest.mark.parametrize("backend", ["aot_eager", "inductor"])
@pytest.mark.parametrize("name", list(COMPILE))
def test_compile_fullgraph_equals_eager(name, backend):
    if backend == "inductor" and name not in ("temperature", "as_softmax"):
        pytest.skip("inductor (C++ codegen, ~10 s a function on CPU) is run for two representative losses")
    torch._dynamo.reset()
    z, t = _inputs((16, 6), seed=2)
    z = z.float()
    loss = L.make_loss(name, **COMPILE[name])

    compiled = torch.compile(loss, fullgraph=True, backend=backend)  # backward is compiled by AOTAutograd
    za, zb = z.clone().requires_grad_(True), z.clone().requires_grad_(True)
    a, b = loss(za, t), compiled(zb, t)
    a.backward()
    b.backward()
    torch.testing.assert_close(b, a)
    torch.testing.assert_close(zb.grad, za.grad)
    # a second module with other parameter values and a second batch size: dynamo recompiles with dynamic
    # shapes and symbolic float parameters
    other = L.make_loss(name, **{k: (v * 0.7 if isinstance(v, float) else v) for k, v in COMPILE[name].items()})
    z2, t2 = _inputs((40, 6), seed=3)
    za, zb = z2.float().requires_grad_(True), z2.float().clone().requires_grad_(True)
    a, b = other(za, t2), torch.compile(other, fullgraph=True, backend=backend)(zb, t2)
    a.backward()
    b.backward()
    torch.testing.assert_close(b, a)
    torch.testing.assert_close(zb.grad, za.grad)


def _graph_names(t):
    seen, todo, names = set(), [t.grad_fn], set()
    while todo:
        f = todo.pop()
        if f is None or f in seen:
            continue
        seen.add(f)
        names.add(type(f).__name__)
        todo += [g for g, _ in f.next_functions]
    return names


@pytest.mark.parametrize("fn,cls", [(lambda z, t: L.temperature_ce(z, t, 0.5), "_TemperatureCE"),
                                    (lambda z, t: L.gradient_decay(z, t, 0.1), "_GradientDecay"),
                                    (lambda z, t: L.sgt(z, t, 0.3), "_SGT"),
                                    (lambda z, t: L.as_softmax(z, t, 0.1), "_ASSoftmax")])
def test_size_threshold_chooses_the_implementation(loss_path, fn, cls):
    z, t = _inputs((8, 5))
    names = _graph_names(fn(z.requires_grad_(True), t))
    fused = any(n.startswith(cls + "Backward") for n in names)
    assert fused == (loss_path == "fused"), names
    assert ("NllLossBackward0" in names) == (loss_path == "native"), names


def test_implementation_context_selects_and_restores():
    z, t = _inputs((8, 5))
    from softgrad.losses import core

    before = core.FUSED_MIN_NUMEL
    with L.implementation("fused"):
        assert any(n.startswith("_TemperatureCEBackward") for n in _graph_names(L.temperature_ce(z.requires_grad_(True), t, 0.5)))
    with L.implementation("native"):
        assert "NllLossBackward0" in _graph_names(L.temperature_ce(z, t, 0.5))
    assert core.FUSED_MIN_NUMEL == before == L.FUSED_MIN_NUMEL
    with pytest.raises(ValueError, match=r"implementation must be one of \['auto', 'native', 'fused'\], got 'gpu'"):
        with L.implementation("gpu"):
            pass

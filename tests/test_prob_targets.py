"""Class-probability targets (mixup, cutmix, distillation), as ``nn.CrossEntropyLoss`` takes them: a
floating-point target of the logits' shape.

- every neutral setting equals ``F.cross_entropy`` on probability targets (values and gradients, float64,
  unbatched, 2-D and K-dim, class weights, label smoothing, every reduction);
- a one-hot probability target equals the index target (values and gradients; ties included);
- each method's definition against a literal float64 reference: CE(beta z, q); SGT's forward CE(z, q) and backward
  W softmax(alpha z) - w q; the expectation under q of the index loss for gradient decay and Sparse-softmax; the
  Fenchel-Young loss for sparsemax and 1.5-entmax;
- gradcheck, half precision, extreme logits, torch.compile, and timm's Mixup feeding ``make_loss``;
- AS-Softmax and the Noisy Softmax head refuse them with one line saying why.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from softgrad import losses as L

# every test runs on both implementations (tests/conftest.py); probability targets take one path in both
pytestmark = pytest.mark.usefixtures("loss_path")

NEUTRAL = {"ce": {}, "temperature": {"beta": 1.0}, "gradient_decay": {"beta": 1.0}, "sgt": {"alpha": 1.0},
           "sparse_softmax": {"k": 1000}}
SMOOTHED = ("ce", "temperature", "sgt")
SETTINGS = [("ce", {}), ("ce", {"label_smoothing": 0.1}), ("temperature", {"beta": 0.5}),
            ("temperature", {"beta": 3.0, "label_smoothing": 0.2}), ("gradient_decay", {"beta": 0.1}),
            ("gradient_decay", {"beta": 10.0}), ("sgt", {"alpha": 0.3}), ("sgt", {"alpha": 0.3, "label_smoothing": 0.1}),
            ("sparse_softmax", {"k": 2}), ("sparse_softmax", {"k": 3, "keep_target": True}), ("sparsemax", {}),
            ("entmax15", {})]
IDS = [f"{n}-{'-'.join(f'{k}{v}' for k, v in p.items())}" for n, p in SETTINGS]


def distribution(shape, seed=0, dtype=torch.float64):
    """Logits and a target distribution of the same shape (class dimension 1, or 0 when unbatched); some
    rows one-hot and some with exact zeros, as mixup and cutmix make them."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(*shape, generator=g, dtype=torch.float64) * 2
    cdim = 0 if len(shape) == 1 else 1
    q = torch.softmax(torch.randn(*shape, generator=g, dtype=torch.float64) * 2, dim=cdim)
    if len(shape) >= 2:
        q[0] = 0.0
        q[0, 1] = 1.0  # one-hot row (a column for K-dim: all positions of sample 0 at class 1)
        q[-1, 0] = 0.0
        q[-1] = q[-1] / q[-1].sum(dim=0, keepdim=True)
    return z.to(dtype), q.to(dtype)


def rows(z, q):
    cdim = 0 if z.dim() == 1 else 1
    C = z.shape[cdim]
    return z.movedim(cdim, -1).reshape(-1, C), q.movedim(cdim, -1).reshape(-1, C)


# ------------------------------------------------------------------ neutral settings: PyTorch's own loss

CASES = list(itertools.product([(6,), (12, 6), (4, 6, 3), (3, 6, 2, 2)], [False, True], ["mean", "sum", "none"],
                               [0.0, 0.2]))


@pytest.mark.parametrize("name", list(NEUTRAL))
@pytest.mark.parametrize("shape,weighted,reduction,eps", CASES,
                         ids=[f"{s}-w{int(w)}-{r}-ls{e}" for s, w, r, e in CASES])
def test_neutral_setting_equals_torch_cross_entropy_on_probabilities(name, shape, weighted, reduction, eps):
    if eps and name not in SMOOTHED:
        return  # label_smoothing is not a parameter of these methods (tests/test_dropin.py checks the error)
    z, q = distribution(shape)
    C = shape[0] if len(shape) == 1 else shape[1]
    weight = torch.linspace(0.5, 2.0, C, dtype=torch.float64) if weighted else None
    params = {**NEUTRAL[name], **({"label_smoothing": eps} if eps else {})}
    za, zb = z.clone().requires_grad_(True), z.clone().requires_grad_(True)
    ours = L.make_loss(name, reduction=reduction, weight=weight, ignore_index=1, **params)(za, q)  # no index to ignore
    ref = F.cross_entropy(zb, q, weight=weight, reduction=reduction, label_smoothing=eps)
    assert ours.shape == ref.shape
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-12)
    ours.sum().backward()
    ref.sum().backward()
    torch.testing.assert_close(za.grad, zb.grad, rtol=1e-12, atol=1e-12)


def test_ce_passes_the_target_gradient_as_pytorch_does():
    """Distillation with a learned teacher: the target's gradient is PyTorch's, -w log p."""
    z, q = distribution((8, 5))
    qa, qb = q.clone().requires_grad_(True), q.clone().requires_grad_(True)
    L.make_loss("temperature", beta=2.0)(z, qa).backward()
    F.cross_entropy(2.0 * z, qb).backward()
    torch.testing.assert_close(qa.grad, qb.grad)


# ------------------------------------------------------------------ one-hot targets are index targets


@pytest.mark.parametrize("name,params", SETTINGS, ids=IDS)
@pytest.mark.parametrize("weighted", [False, True])
def test_one_hot_probabilities_equal_index_targets(name, params, weighted):
    g = torch.Generator().manual_seed(3)
    z = torch.randn(24, 7, generator=g, dtype=torch.float64) * 2
    z[:6] = torch.randint(0, 3, (6, 7), generator=g).double()  # ties, at the k-th place among them
    t = torch.randint(0, 7, (24,), generator=g)
    weight = torch.linspace(0.5, 2.0, 7, dtype=torch.float64) if weighted else None
    za, zb = z.clone().requires_grad_(True), z.clone().requires_grad_(True)
    fn = L.make_loss(name, reduction="none", weight=weight, **params)
    a, b = fn(za, F.one_hot(t, 7).double()), fn(zb, t)
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    (a * torch.arange(1.0, 25.0, dtype=torch.float64)).sum().backward()  # a different upstream gradient per row
    (b * torch.arange(1.0, 25.0, dtype=torch.float64)).sum().backward()
    torch.testing.assert_close(za.grad, zb.grad, rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------------ the definitions, against literal references


def ref_softmax(row, scale=1.0):
    m = max(scale * v for v in row)
    e = [math.exp(scale * v - m) for v in row]
    return [x / sum(e) for x in e]


def ref_losses_and_grads(name, params, z, q, weight):
    """Per row: the loss and its gradient (for a unit upstream gradient) from the formulas, in Python floats."""
    out_l, out_g = [], []
    for zr, qr in zip(z.tolist(), q.tolist()):
        C = len(zr)
        w = weight.tolist() if weight is not None else [1.0] * C
        eps = params.get("label_smoothing", 0.0)
        qs = [(1 - eps) * qr[c] + eps / C for c in range(C)]
        wq = [w[c] * qs[c] for c in range(C)]
        W = sum(wq)
        if name in ("ce", "temperature", "sgt"):
            beta = params.get("beta", 1.0)
            p = ref_softmax(zr, beta)
            loss = -sum(wq[c] * math.log(p[c]) for c in range(C))
            if name == "temperature":  # d/dz CE(beta z, q) = beta (W p - wq)
                grad = [beta * (W * p[i] - wq[i]) for i in range(C)]
            else:  # sgt: forward CE(z, q), backward W softmax(alpha z) - w q
                pa = ref_softmax(zr, params.get("alpha", 1.0))
                grad = [W * pa[i] - wq[i] for i in range(C)]
        elif name == "gradient_decay":  # sum_c w_c q_c log(beta + sum_{i != c} e^{z_i - z_c})
            beta = params["beta"]
            loss, grad = 0.0, [0.0] * C
            p = ref_softmax(zr)
            for c in range(C):
                loss += wq[c] * math.log(beta + sum(math.exp(zr[i] - zr[c]) for i in range(C) if i != c))
                for i in range(C):  # the paper's gradient (p - e_c) / (1 - (1 - beta) p_c)
                    grad[i] += wq[c] * (p[i] - (i == c)) / (1 - (1 - beta) * p[c])
        elif name == "sparse_softmax":  # sum_c w_c q_c (lse(K_c) - z_c), K by the lower-index rule
            k = min(params["k"], C)
            top = set(sorted(range(C), key=lambda i: (-zr[i], i))[:k])
            loss, grad = 0.0, [0.0] * C
            for c in range(C):
                K = top | ({c} if params.get("keep_target") else set())
                S = sum(math.exp(zr[i]) for i in K)
                loss += wq[c] * (math.log(S) - zr[c])
                for i in range(C):
                    grad[i] += wq[c] * ((math.exp(zr[i]) / S if i in K else 0.0) - (i == c))
        else:  # Fenchel-Young: Omega(p) - Omega(q) + (p - q) . z, times W; p from the entmax package
            import entmax

            fn, omega = ((entmax.sparsemax, lambda v: (1 - sum(x * x for x in v)) / 2) if name == "sparsemax" else
                         (entmax.entmax15, lambda v: (1 - sum(x**1.5 for x in v)) / 0.75))
            p = fn(torch.tensor([zr], dtype=torch.float64), dim=1)[0].tolist()
            loss = W * (omega(p) - omega(qr) + sum((p[i] - qr[i]) * zr[i] for i in range(C)))
            grad = [W * (p[i] - qr[i]) for i in range(C)]
        out_l.append(loss)
        out_g.append(grad)
    return torch.tensor(out_l, dtype=torch.float64), torch.tensor(out_g, dtype=torch.float64)


@pytest.mark.parametrize("name,params", SETTINGS, ids=IDS)
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("shape", [(9, 5), (3, 5, 4)])
def test_definition_matches_literal_reference(name, params, weighted, shape):
    z, q = distribution(shape, seed=5)
    z[0] = torch.tensor([1.0, 2.0, 2.0, 0.0, 2.0]).reshape(z[0].shape[0], *([1] * (len(shape) - 2)))  # a tie at k
    weight = torch.linspace(0.5, 2.0, 5, dtype=torch.float64) if weighted else None
    x = z.clone().requires_grad_(True)
    out = L.make_loss(name, reduction="none", weight=weight, **params)(x, q)
    out.sum().backward()
    want_l, want_g = ref_losses_and_grads(name, params, *rows(z, q), weight)
    torch.testing.assert_close(out.reshape(-1), want_l, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(rows(x.grad, q)[0], want_g, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("name,params", [s for s in SETTINGS if s[0] in ("gradient_decay", "sparse_softmax")])
def test_expectation_of_the_index_loss(name, params):
    """Gradient decay and Sparse-softmax define a distribution's loss as sum_c w_c q_c L(z, c): what the mixup
    criterion lam L(z, a) + (1 - lam) L(z, b) computes from index targets."""
    z, q = distribution((10, 6), seed=6)
    weight = torch.linspace(0.5, 2.0, 6, dtype=torch.float64)
    za, zb = z.clone().requires_grad_(True), z.clone().requires_grad_(True)
    fn = L.make_loss(name, reduction="sum", weight=weight, **params)
    a = fn(za, q)
    b = sum((L.make_loss(name, reduction="none", weight=weight, **params)(zb, torch.full((10,), c)) * q[:, c]).sum()
            for c in range(6))
    torch.testing.assert_close(a, b)
    a.backward()
    b.backward()
    torch.testing.assert_close(za.grad, zb.grad)


# ------------------------------------------------------------------ numerics


@pytest.mark.parametrize("name,params", SETTINGS, ids=IDS)
def test_gradcheck_float64(name, params):
    z, q = distribution((5, 4), seed=7)
    z.requires_grad_(True)
    weight = torch.tensor([0.5, 1.0, 1.5, 2.0], dtype=torch.float64)
    fn = L.make_loss(name, reduction="none", weight=weight, **params)
    if name == "sgt":  # the backward is that of (1/alpha) CE(alpha z, q), not of the forward CE(z, q)
        a, eps = params["alpha"], params.get("label_smoothing", 0.0)

        def f(x):
            surrogate = F.cross_entropy(a * x, q, weight=weight, reduction="none", label_smoothing=eps) / a
            out = fn(x, q)
            return out - out.detach() + surrogate.detach()

        assert torch.autograd.gradcheck(f, (z,), eps=1e-6, atol=1e-5)
        return
    assert torch.autograd.gradcheck(lambda x: fn(x, q), (z,), eps=1e-6, atol=1e-5)


@pytest.mark.parametrize("name,params", SETTINGS, ids=IDS)
def test_extreme_logits_finite(name, params):
    z = torch.tensor([[1e4, -1e4, 0.0, 5.0], [-1e4, 1e4, 3.0, -2.0], [0.0, 0.0, 0.0, 0.0]], requires_grad=True)
    q = torch.tensor([[0.0, 0.7, 0.3, 0.0], [0.5, 0.0, 0.25, 0.25], [0.1, 0.2, 0.3, 0.4]])
    loss = L.make_loss(name, **params)(z, q)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(z.grad).all()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("name,params", SETTINGS, ids=IDS)
def test_half_precision_finite_and_close(name, params, dtype):
    z, q = distribution((16, 6), seed=8, dtype=dtype)
    z.requires_grad_(True)
    loss = L.make_loss(name, **params)(z, q)
    assert loss.dtype == torch.float32
    loss.backward()
    assert z.grad.dtype == dtype and torch.isfinite(z.grad.float()).all()
    torch.testing.assert_close(loss, L.make_loss(name, **params)(z.detach().float(), q.float()))


@pytest.mark.parametrize("name,params", [("sgt", {"alpha": 0.5, "label_smoothing": 0.1}),
                                         ("gradient_decay", {"beta": 0.1}), ("sparse_softmax", {"k": 2}),
                                         ("sparsemax", {})])
def test_compile_fullgraph_equals_eager(name, params):
    torch._dynamo.reset()
    z, q = distribution((16, 6), seed=9, dtype=torch.float32)
    loss = L.make_loss(name, **params)
    za, zb = z.clone().requires_grad_(True), z.clone().requires_grad_(True)
    a, b = loss(za, q), torch.compile(loss, fullgraph=True, backend="aot_eager")(zb, q)
    a.backward()
    b.backward()
    torch.testing.assert_close(b, a)
    torch.testing.assert_close(zb.grad, za.grad)


# ------------------------------------------------------------------ timm's Mixup / CutMix feeding make_loss


def test_timm_mixup_targets_feed_make_loss():
    from timm.data import Mixup
    from timm.loss import SoftTargetCrossEntropy

    import numpy as np

    torch.manual_seed(0)
    np.random.seed(0)  # timm draws lam (and mixup vs cutmix) with NumPy's global generator
    x, y = torch.randn(8, 1, 8, 8), torch.arange(8) % 10
    mix = Mixup(mixup_alpha=0.8, cutmix_alpha=1.0, label_smoothing=0.0, num_classes=10)
    xm, q = mix(x, y)  # q = lam onehot(y) + (1 - lam) onehot(y.flip(0)), in float32
    # the weights as q holds them (float32 lam and 1 - lam need not sum to 1 in float64): the mixture identity is
    # then exact up to float64 rounding, whatever lam timm drew
    lam, lam_b = q.double().gather(1, y[:, None])[:, 0], q.double().gather(1, y.flip(0)[:, None])[:, 0]
    z = torch.randn(8, 10, dtype=torch.float64) * 2
    torch.testing.assert_close(L.make_loss("ce")(z, q), SoftTargetCrossEntropy()(z, q.double()))
    for name, params in [("gradient_decay", {"beta": 0.1}), ("sparse_softmax", {"k": 3}), ("temperature", {"beta": 2.0})]:
        fn = L.make_loss(name, reduction="none", **params)
        torch.testing.assert_close(fn(z, q), lam * fn(z, y) + lam_b * fn(z, y.flip(0)))  # the mixup criterion
    smoothed = Mixup(mixup_alpha=0.8, label_smoothing=0.1, num_classes=10)(x, y)[1]
    assert torch.isfinite(L.make_loss("sgt", alpha=0.5)(z, smoothed))


# ------------------------------------------------------------------ refused, with the reason


def test_as_softmax_and_noisy_softmax_refuse_probability_targets():
    from softgrad.losses import NoisySoftmaxHead, noisy_logits

    z, q = torch.randn(4, 3), torch.softmax(torch.randn(4, 3), dim=1)
    msg = r"target must be an integer tensor of class indices for loss 'as_softmax' \(its mask keeps class i iff p_t - p_i <= delta"
    with pytest.raises(ValueError, match=msg):
        L.make_loss("as_softmax")(z, q)
    with pytest.raises(ValueError, match=msg):
        L.as_softmax(z, q, return_zero_mask=True)
    head = NoisySoftmaxHead(5, 3, alpha=0.1)
    with pytest.raises(ValueError, match=r"target must be an integer tensor of class indices for Noisy Softmax"):
        head(torch.randn(4, 5), q)
    with pytest.raises(ValueError, match=r"for Noisy Softmax .*got dtype torch.float32"):
        noisy_logits(torch.randn(4, 5), head.weight, q, alpha=0.1)


@pytest.mark.parametrize("name", sorted(L.LOSSES))
def test_probability_target_of_the_wrong_shape_is_named(name):
    z = torch.randn(4, 3)
    with pytest.raises(ValueError, match=r"target must be an integer tensor of class indices"):
        L.make_loss(name)(z, torch.rand(4))
    if name != "as_softmax":
        with pytest.raises(ValueError, match=r"or a floating-point tensor of class probabilities of the logits' "
                                             r"shape \(4, 3\), got torch.float32 of shape \(4, 1\)"):
            L.make_loss(name)(z, torch.rand(4, 1))

"""softgrad.losses against literal float64 references of each paper's formula, and SPEC identities.

The references below are deliberately slow and loop over samples and classes, written straight from
the formulas in ../shared/papers/SPEC.md, so they share no code with the fused implementations.
"""

import math

import pytest
import torch
import torch.nn.functional as F

from softgrad import losses as L
from softgrad import noisy as N
from softgrad import profiles as P
from softgrad import schedules as S

torch.set_default_dtype(torch.float32)

# every test runs on both implementations (tests/conftest.py)
pytestmark = pytest.mark.usefixtures("loss_path")


def rand_batch(n=7, c=5, scale=3.0, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    z = (torch.randn(n, c, generator=g, dtype=torch.float64) * scale).to(dtype)
    t = torch.randint(0, c, (n,), generator=g)
    return z, t


# ------------------------------------------------------------------ literal references


def ref_ce(z, t, eps=0.0):
    out = []
    for n in range(z.shape[0]):
        C = z.shape[1]
        logZ = math.log(sum(math.exp(float(z[n, i])) for i in range(C)))
        q = [(1 - eps) * (i == int(t[n])) + eps / C for i in range(C)]
        out.append(-sum(q[i] * (float(z[n, i]) - logZ) for i in range(C)))
    return torch.tensor(out, dtype=torch.float64)


def ref_temperature(z, t, beta):
    return ref_ce(beta * z, t)


def ref_gradient_decay(z, t, beta):
    # J = -log( e^{z_t} / (sum_{i != t} e^{z_i} + beta e^{z_t}) )
    out = []
    for n in range(z.shape[0]):
        tt = int(t[n])
        den = sum(math.exp(float(z[n, i])) for i in range(z.shape[1]) if i != tt) + beta * math.exp(float(z[n, tt]))
        out.append(-math.log(math.exp(float(z[n, tt])) / den))
    return torch.tensor(out, dtype=torch.float64)


def ref_as_softmax(z, t, delta):
    out = []
    for n in range(z.shape[0]):
        C, tt = z.shape[1], int(t[n])
        e = [math.exp(float(z[n, i])) for i in range(C)]
        p = [x / sum(e) for x in e]
        kept = [i for i in range(C) if p[tt] - p[i] <= delta]
        out.append(-math.log(e[tt] / sum(e[i] for i in kept)))
    return torch.tensor(out, dtype=torch.float64)


def ref_sgt_grad(z, t, alpha, eps=0.0):
    """The SGT backward: p' = p^alpha / sum p^alpha, grad = p' - q (per-sample loss, summed)."""
    g = torch.zeros_like(z)
    for n in range(z.shape[0]):
        C = z.shape[1]
        e = [math.exp(float(z[n, i])) for i in range(C)]
        p = [x / sum(e) for x in e]
        pa = [x**alpha for x in p]
        for i in range(C):
            q = (1 - eps) * (i == int(t[n])) + eps / C
            g[n, i] = pa[i] / sum(pa) - q
    return g


def ref_sparse_softmax(z, t, k, keep_target=False):
    """Sun et al. 2021: L = log sum_{i in top-k} e^{z_i} - z_t (the authors' code); keep_target adds t to K."""
    out = []
    for n in range(z.shape[0]):
        order = sorted(range(z.shape[1]), key=lambda i: -float(z[n, i]))
        kept = set(order[:k]) | ({int(t[n])} if keep_target else set())
        out.append(math.log(sum(math.exp(float(z[n, i])) for i in kept)) - float(z[n, int(t[n])]))
    return torch.tensor(out, dtype=torch.float64)


def ref_multilabel_as(z, y, delta):
    out = []
    for n in range(z.shape[0]):
        C = z.shape[1]
        e = [math.exp(float(z[n, i])) for i in range(C)]
        p = [x / sum(e) for x in e]
        pos = [i for i in range(C) if y[n, i]]
        neg = [i for i in range(C) if not y[n, i]]
        min_pos = min(p[i] for i in pos) if pos else math.inf
        max_neg = max(p[i] for i in neg) if neg else -math.inf
        s_neg = sum(math.exp(float(z[n, i])) for i in neg if min_pos - p[i] <= delta)
        s_pos = sum(math.exp(-float(z[n, j])) for j in pos if p[j] - max_neg <= delta)
        out.append(math.log(1 + s_neg) + math.log(1 + s_pos))
    return torch.tensor(out, dtype=torch.float64)


# ------------------------------------------------------------------ against the references


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_ce_matches_reference_and_torch(seed, eps):
    z, t = rand_batch(seed=seed)
    out = L.cross_entropy(z, t, label_smoothing=eps)
    torch.testing.assert_close(out, ref_ce(z, t, eps))
    torch.testing.assert_close(out, F.cross_entropy(z, t, reduction="none", label_smoothing=eps))


@pytest.mark.parametrize("beta", [0.01, 0.3, 1.0, 4.0])
def test_temperature_matches_reference(beta):
    z, t = rand_batch(seed=1)
    torch.testing.assert_close(L.temperature_ce(z, t, beta=beta), ref_temperature(z, t, beta))


@pytest.mark.parametrize("beta", [1e-3, 0.1, 1.0, 10.0])
@pytest.mark.parametrize("scale", [1.0, 10.0])
def test_gradient_decay_matches_reference(beta, scale):
    z, t = rand_batch(seed=2, scale=scale)
    torch.testing.assert_close(L.gradient_decay(z, t, beta=beta), ref_gradient_decay(z, t, beta))


@pytest.mark.parametrize("delta", [0.0, 0.05, 0.1, 0.5, 1.0])
@pytest.mark.parametrize("seed", range(3))
def test_as_softmax_matches_reference(delta, seed):
    z, t = rand_batch(n=32, c=6, seed=seed)
    torch.testing.assert_close(L.as_softmax(z, t, delta=delta), ref_as_softmax(z, t, delta))


@pytest.mark.parametrize("k", [1, 2, 4, 9])
@pytest.mark.parametrize("keep_target", [False, True])
def test_sparse_softmax_matches_reference(k, keep_target):
    z, t = rand_batch(n=16, c=6, seed=3)
    torch.testing.assert_close(L.sparse_softmax(z, t, k=k, keep_target=keep_target),
                               ref_sparse_softmax(z, t, k, keep_target))


@pytest.mark.parametrize("alpha", [0.05, 0.3, 1.0])
@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_sgt_forward_is_ce_backward_is_power_transform(alpha, eps):
    z, t = rand_batch(seed=4)
    z.requires_grad_(True)
    loss = L.sgt(z, t, alpha=alpha, label_smoothing=eps)
    torch.testing.assert_close(loss.detach(), ref_ce(z.detach(), t, eps))
    loss.sum().backward()
    torch.testing.assert_close(z.grad, ref_sgt_grad(z.detach(), t, alpha, eps))


def test_multilabel_matches_reference():
    z, _ = rand_batch(n=10, c=6, seed=5)
    y = (torch.rand(10, 6, generator=torch.Generator().manual_seed(0)) < 0.4).long()
    y[:, 0] = 1  # at least one positive per row
    for delta in (0.0, 0.1, 0.5, 1.0):
        torch.testing.assert_close(L.as_softmax_multilabel(z, y, delta=delta), ref_multilabel_as(z, y, delta))


# ------------------------------------------------------------------ golden values (official AS-Softmax README)


def test_as_softmax_official_single_label_example():
    # github.com/aopolin-lv/AS-Softmax README: sample 0 keeps only its target -> loss exactly 0.
    logits = torch.tensor([[1.2, 1.5, 1.0, -0.35], [2.5, 3.5, 0.4, 0.3], [2.5, 3.5, 0.4, 0.3]])
    labels = torch.tensor([1, 2, -100])
    loss, zero = L.as_softmax(logits, labels, delta=0.1, return_zero_mask=True)
    assert loss[0].item() == 0.0 and zero.tolist() == [True, False, False]
    # sample 1 (target 2 far below) keeps every class: plain CE
    torch.testing.assert_close(loss[1], F.cross_entropy(logits[1:2], labels[1:2]))
    assert loss[2].item() == 0.0  # ignored


def test_as_softmax_official_multilabel_example():
    # github.com/aopolin-lv/AS-Softmax README, Multi_label_AS_Softmax: tensor(2.0778) at delta=0.1;
    # 2.2152 at delta=1 (SPEC.md). The README averages over the batch.
    logits = torch.tensor([[1.2, 1.5, 1.0, -0.35], [2.5, 3.5, 0.4, 0.3], [2.5, 3.5, 0.4, 0.3]])
    labels = torch.tensor([[1, 1, 0, 0], [0, 1, 1, 0], [1, 1, 0, 1]])
    assert round(L.as_softmax_multilabel(logits, labels, delta=0.1).mean().item(), 4) == 2.0778
    assert round(L.as_softmax_multilabel(logits, labels, delta=1.0).mean().item(), 4) == 2.2152


def test_spec_sample_values_of_gradient_decay_profile():
    # SPEC.md quotes beta=0.1 -> g(0.8)=0.715; beta=1 -> 0.2; beta=10 -> 0.025, rounded. Exactly:
    # 0.2/0.28 = 5/7, 0.2, 0.2/8.2 = 1/41; SPEC's figures agree with these to within 1e-3.
    for beta, exact, spec in [(0.1, 5 / 7, 0.715), (1.0, 0.2, 0.2), (10.0, 1 / 41, 0.025)]:
        val = P.target_gradient_profile("gradient_decay", [0.8], beta=beta).item()
        assert val == pytest.approx(exact, rel=1e-12) and abs(val - spec) < 1e-3, (beta, val)


# ------------------------------------------------------------------ identities


@pytest.mark.parametrize("alpha", [0.05, 0.25, 0.7])
@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_sgt_gradient_equals_scaled_temperature_ce(alpha, eps):
    z, t = rand_batch(seed=6)
    z1 = z.clone().requires_grad_(True)
    L.sgt(z1, t, alpha=alpha, label_smoothing=eps).sum().backward()
    z2 = z.clone().requires_grad_(True)
    ((1 / alpha) * F.cross_entropy(alpha * z2, t, reduction="none", label_smoothing=eps)).sum().backward()
    torch.testing.assert_close(z1.grad, z2.grad)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("weighted", [False, True])
def test_native_sgt_is_exactly_ce_at_alpha_z(dtype, reduction, weighted):
    """The native SGT (no smoothing) is built from F.cross_entropy itself: its value is bit for bit
    F.cross_entropy(z) and its gradient bit for bit F.cross_entropy's gradient with respect to its input at
    alpha z (SPEC's identity in its exact form), with every option; a second backward agrees."""
    g = torch.Generator().manual_seed(31)
    z = (torch.randn(64, 7, generator=g, dtype=dtype) * 4)
    t = torch.randint(0, 7, (64,), generator=g)
    t[::5] = -100
    w = torch.rand(7, generator=g, dtype=dtype) + 0.5 if weighted else None
    opts = dict(weight=w, ignore_index=-100, reduction=reduction)
    with L.implementation("native"):
        zz = z.clone().requires_grad_(True)
        out = L.make_loss("sgt", alpha=0.3, **opts)(zz, t)
        (grad,) = torch.autograd.grad(out.sum(), zz, retain_graph=True)
        (again,) = torch.autograd.grad(out.sum(), zz)
    x = (z * 0.3).requires_grad_(True)
    (ref,) = torch.autograd.grad(F.cross_entropy(x, t, **opts).sum(), x)
    assert torch.equal(out.detach(), F.cross_entropy(z, t, **opts))
    assert torch.equal(grad, ref) and torch.equal(again, ref)


@pytest.mark.parametrize("beta", [0.05, 0.5, 2.0, 20.0])
def test_gradient_decay_is_margin_ce_plus_log_beta(beta):
    z, t = rand_batch(seed=7)
    z1 = z.clone().requires_grad_(True)
    J = L.gradient_decay(z1, t, beta=beta)
    m = -math.log(beta)
    z2 = z.clone().requires_grad_(True)
    shifted = z2 - m * F.one_hot(t, z.shape[1]).double()
    ref = F.cross_entropy(shifted, t, reduction="none") + math.log(beta)
    torch.testing.assert_close(J, ref)
    J.sum().backward()
    ref.sum().backward()
    torch.testing.assert_close(z1.grad, z2.grad)
    # analytic gradient in terms of the plain p
    p = torch.softmax(z, 1)
    p_t = p.gather(1, t[:, None])
    analytic = (p - F.one_hot(t, z.shape[1]).double()) / (1 - (1 - beta) * p_t)
    torch.testing.assert_close(z1.grad, analytic)


NEUTRAL = [
    ("temperature", {"beta": 1.0}),
    ("gradient_decay", {"beta": 1.0}),
    ("sgt", {"alpha": 1.0}),
    ("as_softmax", {"delta": 1.0}),
    ("sparse_softmax", {"k": 5}),  # k >= C
]


@pytest.mark.parametrize("name,params", NEUTRAL)
def test_neutral_setting_equals_ce(name, params):
    z, t = rand_batch(seed=8)
    z1 = z.clone().requires_grad_(True)
    z2 = z.clone().requires_grad_(True)
    a = L.make_loss(name, **params)(z1, t)
    b = F.cross_entropy(z2, t)
    torch.testing.assert_close(a, b)
    a.backward()
    b.backward()
    torch.testing.assert_close(z1.grad, z2.grad)


def test_noisy_head_alpha_zero_and_eval_are_plain_linear():
    torch.manual_seed(0)
    head = N.NoisySoftmaxHead(8, 5, alpha=0.0)
    x, t = torch.randn(4, 8), torch.tensor([0, 1, 2, 3])
    torch.testing.assert_close(head(x, t), x @ head.weight.t())
    head.alpha = 0.5
    head.eval()
    torch.testing.assert_close(head(x, t), x @ head.weight.t())


@pytest.mark.parametrize("noise", N.NOISE_KINDS)
@pytest.mark.parametrize("sign", N.NOISE_SIGNS)
def test_noisy_head_perturbs_only_target_with_right_sign(noise, sign):
    torch.manual_seed(1)
    x, W, t = torch.randn(64, 8, dtype=torch.float64), torch.randn(5, 8, dtype=torch.float64), torch.randint(0, 5, (64,))
    clean = x @ W.t()
    noisy = N.noisy_logits(x, W, t, alpha=0.3, noise=noise, sign=sign, generator=torch.Generator().manual_seed(0))
    diff = noisy - clean
    onehot = F.one_hot(t, 5).bool()
    assert torch.all(diff[~onehot] == 0)
    d_t = diff[onehot]
    if sign == "positive":
        assert torch.all(d_t <= 0) and torch.any(d_t < 0)
    elif sign == "negative":
        assert torch.all(d_t >= 0) and torch.any(d_t > 0)
    else:
        assert torch.any(d_t < 0) and torch.any(d_t > 0)
    # annealed scale: |W_y||x| - W_y^T x, literal from the paper's |W||x|(1 - cos theta)
    if noise == "annealed":
        cos = F.cosine_similarity(x, W[t], dim=1)
        scale = W[t].norm(dim=1) * x.norm(dim=1) * (1 - cos)
        g = torch.Generator().manual_seed(0)
        xi = torch.randn(64, generator=g, dtype=torch.float32).double()
        n = {"positive": xi.abs(), "gaussian": xi, "negative": -xi.abs()}[sign]
        torch.testing.assert_close(d_t, -0.3 * scale * n, rtol=1e-5, atol=1e-6)


def test_noisy_head_detach_scale_changes_gradient():
    torch.manual_seed(2)
    x, t = torch.randn(16, 8), torch.randint(0, 5, (16,))
    grads = []
    for detach in (False, True):
        torch.manual_seed(3)
        head = N.NoisySoftmaxHead(8, 5, alpha=0.5, detach_scale=detach)
        torch.manual_seed(4)
        F.cross_entropy(head(x, t), t).backward()
        grads.append(head.weight.grad.clone())
    assert not torch.allclose(grads[0], grads[1])


# ------------------------------------------------------------------ properties


LOSS_SETTINGS = [
    ("ce", {"label_smoothing": 0.1}),
    ("temperature", {"beta": 0.3}),
    ("temperature", {"beta": 5.0}),
    ("gradient_decay", {"beta": 0.05}),
    ("gradient_decay", {"beta": 10.0}),
    ("sgt", {"alpha": 0.25, "label_smoothing": 0.1}),
    ("as_softmax", {"delta": 0.1}),
    ("sparse_softmax", {"k": 2}),
    ("sparsemax", {}),
    ("entmax15", {}),
]


@pytest.mark.parametrize("name,params", LOSS_SETTINGS)
def test_gradient_sums_to_zero_over_classes(name, params):
    z, t = rand_batch(n=16, c=6, seed=9)
    z.requires_grad_(True)
    L.make_loss(name, reduction="sum", **params)(z, t).backward()
    torch.testing.assert_close(z.grad.sum(1), torch.zeros(16, dtype=torch.float64), atol=1e-10, rtol=0)


@pytest.mark.parametrize("name,params", LOSS_SETTINGS)
def test_shift_invariance(name, params):
    z, t = rand_batch(n=8, c=6, seed=10)
    a = L.make_loss(name, reduction="none", **params)(z, t)
    b = L.make_loss(name, reduction="none", **params)(z + torch.randn(8, 1, dtype=torch.float64) * 5, t)
    torch.testing.assert_close(a, b)


@pytest.mark.parametrize("name,params", LOSS_SETTINGS)
def test_gradcheck_float64(name, params):
    z, t = rand_batch(n=5, c=4, seed=11, scale=1.0)
    z.requires_grad_(True)
    fn = L.make_loss(name, reduction="none", **params)
    if name == "sgt":
        # SGT's backward is by design not the derivative of its forward (CE). Check it against the
        # function it *is* the derivative of: forward value of (1/alpha) CE(alpha z, q), backward of SGT.
        a, eps = params["alpha"], params.get("label_smoothing", 0.0)

        def f(x):
            surrogate = F.cross_entropy(a * x, t, reduction="none", label_smoothing=eps) / a
            out = fn(x, t)
            return out - out.detach() + surrogate.detach()

        assert torch.autograd.gradcheck(f, (z,), eps=1e-6, atol=1e-5)
        return
    # gradcheck through the loss with a random upstream gradient (reduction='none')
    assert torch.autograd.gradcheck(lambda x: fn(x, t), (z,), eps=1e-6, atol=1e-5)


@pytest.mark.parametrize("name,params", LOSS_SETTINGS)
def test_ignore_index_and_reductions(name, params):
    z, t = rand_batch(n=8, c=6, seed=12)
    t_ign = t.clone()
    t_ign[[1, 5]] = -1
    keep = t_ign != -1
    none = L.make_loss(name, reduction="none", ignore_index=-1, **params)(z, t_ign)
    assert none[~keep].abs().sum() == 0
    torch.testing.assert_close(none[keep], L.make_loss(name, reduction="none", **params)(z[keep], t[keep]))
    s = L.make_loss(name, reduction="sum", ignore_index=-1, **params)(z, t_ign)
    m = L.make_loss(name, reduction="mean", ignore_index=-1, **params)(z, t_ign)
    torch.testing.assert_close(s, none.sum())
    torch.testing.assert_close(m, none.sum() / keep.sum())
    # no gradient flows from ignored samples
    zz = z.clone().requires_grad_(True)
    L.make_loss(name, reduction="sum", ignore_index=-1, **params)(zz, t_ign).backward()
    assert zz.grad[~keep].abs().sum() == 0


@pytest.mark.parametrize("name,params", LOSS_SETTINGS)
def test_extreme_logits_finite(name, params):
    z = torch.tensor([[1e4, -1e4, 0.0, 5.0], [-1e4, 1e4, 3.0, -2.0], [0.0, 0.0, 0.0, 0.0]], requires_grad=True)
    t = torch.tensor([1, 1, 2])  # includes a target at -1e4 against a rival at +1e4
    loss = L.make_loss(name, **params)(z, t)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(z.grad).all()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("name,params", LOSS_SETTINGS)
def test_half_precision_finite_and_close(name, params, dtype):
    z, t = rand_batch(n=16, c=6, seed=13, dtype=dtype)
    z.requires_grad_(True)
    loss = L.make_loss(name, **params)(z, t)
    assert loss.dtype == torch.float32
    loss.backward()
    assert z.grad.dtype == dtype and torch.isfinite(z.grad.float()).all()
    ref = L.make_loss(name, **params)(z.detach().float(), t)
    torch.testing.assert_close(loss, ref)


def test_as_softmax_zero_loss_samples_have_zero_gradient_and_count_in_mean():
    z = torch.tensor([[5.0, 0.0, 0.0], [0.1, 0.0, 0.2]], requires_grad=True)
    t = torch.tensor([0, 0])
    per, zero = L.as_softmax(z, t, delta=0.1, return_zero_mask=True)
    assert zero.tolist() == [True, False] and per[0].item() == 0.0
    mean = L.make_loss("as_softmax", delta=0.1)(z, t)
    mean.backward()
    assert z.grad[0].abs().sum() == 0
    torch.testing.assert_close(mean, per.sum() / 2)


def test_retain_graph_double_backward_call_is_consistent():
    z, t = rand_batch(seed=14)
    z.requires_grad_(True)
    for name, params in LOSS_SETTINGS[:8]:
        loss = L.make_loss(name, **params)(z, t)
        g1 = torch.autograd.grad(loss, z, retain_graph=True)[0]
        g2 = torch.autograd.grad(loss, z)[0]
        torch.testing.assert_close(g1, g2)


# ------------------------------------------------------------------ profiles


@pytest.mark.parametrize(
    "name,params",
    [("ce", {}), ("ce", {"label_smoothing": 0.1}), ("temperature", {"beta": 0.5}), ("temperature", {"beta": 3.0}),
     ("gradient_decay", {"beta": 0.1}), ("gradient_decay", {"beta": 10.0}), ("sgt", {"alpha": 0.3}),
     ("sgt", {"alpha": 0.3, "label_smoothing": 0.1}), ("as_softmax", {"delta": 0.1}), ("as_softmax", {"delta": 0.6})],
)
def test_profile_analytic_equals_autograd(name, params):
    p = torch.linspace(0.02, 0.98, 49)
    a = P.target_gradient_profile(name, p, method="analytic", **params)
    b = P.target_gradient_profile(name, p, method="autograd", **params)
    torch.testing.assert_close(a, b)


def test_profile_ce_is_one_minus_p_and_noisy_above_ce():
    p = torch.linspace(0.05, 0.95, 19)
    torch.testing.assert_close(P.target_gradient_profile("ce", p), 1 - p.double())
    noisy = P.target_gradient_profile("noisy", p, alpha=0.5, scale=2.0)
    assert torch.all(noisy > 1 - p.double())
    torch.testing.assert_close(P.target_gradient_profile("noisy", p, alpha=0.0), 1 - p.double())


# ------------------------------------------------------------------ schedules and AS-Speed


def test_schedules():
    s = S.gradient_decay_warmup(0.01, 1.0, epochs=4, shape="log")
    assert s.value(0) == pytest.approx(0.01) and s.value(2) == pytest.approx(0.1) and s.value(10) == 1.0
    lin = S.gradient_decay_warmup(0.1, 1.1, epochs=2, shape="linear")
    assert lin.value(1) == pytest.approx(0.6)
    d = S.delta_warmup(0.1, ratio=0.5)
    assert d.value(0.0) == 1.0 and d.value(0.25) == pytest.approx(0.55) and d.value(0.9) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="shape must be one of"):
        S.Schedule(1, 2, 3, "cosine")


def test_as_speed_rule():
    # k_raw = round(N/(N-M)); grows by at most 1, never decreases, capped by k_max
    assert S.as_speed_next_k(100, 0, 1) == 1
    assert S.as_speed_next_k(100, 50, 1, k_max=4) == 2
    assert S.as_speed_next_k(100, 90, 1, k_max=4) == 2  # k_raw=10 but +1 per window
    assert S.as_speed_next_k(100, 90, 2, k_max=4) == 3
    assert S.as_speed_next_k(100, 0, 3, k_max=4) == 3  # never decreases
    assert S.as_speed_next_k(100, 99, 2, k_max=2) == 2


# ------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: L.make_loss("softmaxx"), r"loss name must be one of \[.*'ce'"),
        (lambda: L.make_loss("temperature", beta=0.0), r"beta must be in \(0.0, inf\)"),
        (lambda: L.make_loss("gradient_decay", beta=-1), r"beta must be in \(0.0, inf\)"),
        (lambda: L.make_loss("sgt", alpha=1.5), r"alpha must be in \(0.0, 1.0\]"),
        (lambda: L.make_loss("sgt", alpha=0), r"alpha must be in \(0.0, 1.0\]"),
        (lambda: L.make_loss("as_softmax", delta=1.2), r"delta must be in \[0.0, 1.0\]"),
        (lambda: L.make_loss("as_softmax", delta="0.1"), r"delta must be a real number"),
        (lambda: L.make_loss("sparse_softmax", k=0), r"k must be an integer >= 1"),
        (lambda: L.make_loss("ce", label_smoothing=2), r"label_smoothing must be in \[0.0, 1.0\]"),
        (lambda: L.make_loss("ce", beta=2), r"unknown parameter\(s\) \['beta'\] for loss 'ce'"),
        (lambda: L.make_loss("ce", reduction="avg"), r"reduction must be one of \('mean', 'sum', 'none'\)"),
        (lambda: N.NoisySoftmaxHead(4, 3, noise="loud"), r"noise must be one of \('annealed'"),
        (lambda: N.NoisySoftmaxHead(4, 3, sign="up"), r"sign must be one of \('positive'"),
        (lambda: N.NoisySoftmaxHead(4, 3, alpha=-1), r"alpha must be in \[0.0, inf\)"),
    ],
)
def test_bad_parameters(call, match):
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.parametrize("name", sorted(L.LOSSES))
def test_bad_inputs(name):
    fn = L.make_loss(name)
    z = torch.randn(4, 3)
    with L.check_targets(), pytest.raises(ValueError, match=r"target values must be in \[0, 2\]"):
        fn(z, torch.tensor([0, 1, 3, 0]))
    with pytest.raises(ValueError, match=r"target must have shape \(\) to match logits \(12,\)"):
        fn(z.reshape(-1), torch.tensor([0, 1, 2, 0]))
    with pytest.raises(ValueError, match=r"target must have shape \(4,\)"):
        fn(z, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"target must have shape \(4, 2\)"):
        fn(z.reshape(4, 3, 1).expand(4, 3, 2), torch.tensor([0, 1, 2, 0]))
    with pytest.raises(ValueError, match="target must be an integer tensor"):
        fn(z, torch.tensor([0.0, 1.0, 2.0, 0.0]))
    with pytest.raises(ValueError, match="logits must be a floating-point tensor"):
        fn(z.long(), torch.tensor([0, 1, 2, 0]))
    with pytest.raises(ValueError, match=r"weight must be a 1-D floating-point tensor"):
        L.make_loss(name, weight=torch.ones(3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"weight must be a floating-point tensor of shape \(C,\) = \(3,\)"):
        L.make_loss(name, weight=torch.ones(4))(z, torch.tensor([0, 1, 2, 0]))


@pytest.mark.parametrize("eps", [0.0, 0.1])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_ce_module_fast_path_equals_per_sample_reduction(eps, reduction):
    """SoftmaxLoss('ce').forward uses F.cross_entropy's fused reduction; it must equal reduce(per_sample)."""
    g = torch.Generator().manual_seed(3)
    z = torch.randn(12, 5, generator=g, dtype=torch.float64, requires_grad=True)
    t = torch.randint(0, 5, (12,), generator=g)
    t[[2, 7]] = -100
    m = L.make_loss("ce", reduction=reduction, label_smoothing=eps)
    fast = m(z, t)
    slow = m.reduce(m.per_sample(z, t), t)
    (gf,) = torch.autograd.grad(fast, z)
    (gs,) = torch.autograd.grad(slow, z)
    torch.testing.assert_close(fast, slow)
    torch.testing.assert_close(gf, gs)
    with L.check_targets(), pytest.raises(ValueError, match=r"target values must be in \[0, 4\]"):
        m(z, torch.full((12,), 5))


def test_target_range_check_is_opt_in_and_restored():
    z, bad = torch.randn(3, 4), torch.tensor([0, 1, 9])
    with pytest.raises((RuntimeError, IndexError)):  # no per-call check: the indexing kernel fails
        L.cross_entropy(z, bad)
    with L.check_targets():
        with pytest.raises(ValueError, match="target values"):
            L.gradient_decay(z, bad, beta=0.5)
        with pytest.raises(ValueError, match="target must have shape"):  # shapes are always checked
            L.cross_entropy(z, bad[:2])
    with pytest.raises((RuntimeError, IndexError)):  # restored on exit
        L.temperature_ce(z, bad)


# ------------------------------------------------------------------ the registry (one entry per method)


def test_docstring_examples_run():
    import doctest

    from softgrad.losses import module

    r = doctest.testmod(module)
    assert r.attempted >= 1 and r.failed == 0


@pytest.mark.parametrize("name", sorted(L.LOSSES))
def test_declared_parameters_match_the_function(name):
    """The registry's declaration is what validation reads: its defaults must be the function's own."""
    import inspect

    m = L.LOSSES[name]
    sig = inspect.signature(m.fn).parameters
    declared = m.defaults()
    assert {k: sig[k].default for k in declared} == declared
    extra = {k for k, p in sig.items() if p.default is not inspect.Parameter.empty} - set(declared)
    assert extra <= {"weight", "ignore_index", "return_zero_mask"}


@pytest.mark.parametrize("name", [n for n, m in L.LOSSES.items() if m.neutral])
def test_declared_neutral_setting_is_ce(name):
    z = torch.randn(16, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) * 3
    t = torch.arange(16) % 7
    assert torch.allclose(L.LOSSES[name].fn(z, t, **L.LOSSES[name].neutral), L.cross_entropy(z, t), atol=1e-12)


def test_registry_drives_every_dispatch_by_name():
    from softgrad import plots, protocol
    from softgrad.config import WARMUPS

    assert list(protocol.METHODS) == list(L.COMPARED) == ["ce", "temperature", "gradient_decay", "noisy", "sgt",
                                                          "as_softmax"]
    assert protocol.METHODS["noisy"] == {"loss": "ce", "head_bias": False}
    assert {n: plots.COLORS[n] for n in L.METHODS} == {n: m.color for n, m in L.METHODS.items()}
    assert len(set(plots.COLORS.values())) == len(plots.COLORS)
    assert WARMUPS == ("none", "beta", "delta")
    for m in L.COMPARED.values():
        for knob, rng in m.knob.items():
            protocol._range(knob, rng)  # a valid protocol range


@pytest.mark.parametrize("name,bad,match", [
    ("temperature", {"beta": 0.0}, r"beta must be in \(0.0, inf\), got 0.0"),
    ("sgt", {"alpha": 1.5}, r"alpha must be in \(0.0, 1.0\], got 1.5"),
    ("as_softmax", {"delta": "x"}, r"delta must be a real number in \[0.0, 1.0\], got 'x'"),
    ("sparse_softmax", {"k": 0}, r"k must be an integer >= 1, got 0"),
    ("gradient_decay", {"gamma": 1.0}, r"unknown parameter\(s\) \['gamma'\] for loss 'gradient_decay'"),
])
def test_declared_ranges_reject_bad_values_by_name(name, bad, match):
    with pytest.raises(ValueError, match=match):
        L.LOSSES[name].check_params(bad)
    with pytest.raises(ValueError, match=match):
        L.make_loss(name, **bad)

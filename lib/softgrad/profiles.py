"""Analysis tools for the losses (not losses): the target-gradient profile g(p) and the identities between
the losses.

``target_gradient_profile(name, p)`` is the book's common footing: the magnitude of the gradient on the
target logit as a function of the target probability, at logits whose rivals are equal; each method declares
its analytic profile in its registry entry (:data:`softgrad.losses.METHODS`). ``identity_errors()`` checks
the identities the papers state (SGT's gradient is that of CE(αz)/α; gradient decay is CE with a target margin
−ln β; every neutral setting is CE) numerically in float64.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from .losses import LOSSES, METHODS, gradient_decay, loss_method, sgt, temperature_ce
from .losses.core import symmetric_logits

__all__ = ["target_gradient_profile", "identity_errors", "trajectory_gaps"]


def target_gradient_profile(
    name: str, p, num_classes: int = 10, method: str = "auto", noise_points: int = 64, **params
) -> Tensor:
    """Magnitude of ``dL/dz_t`` as a function of the target probability ``p`` (the book's g(p)).

    Evaluated at logits whose rivals are all equal (``C = num_classes``), so ``p`` fixes the point.
    ``method``: 'analytic' (each method's declared profile: ce, temperature, gradient_decay, sgt, as_softmax),
    'autograd' (any loss), or 'auto' (analytic where declared). 'noisy' (Noisy Softmax, a head, not a loss)
    is always its expected gradient, averaged over ``noise_points`` quantiles of the half-normal noise; params
    ``alpha`` and ``scale``, the value of ``|W_y||x|(1 - cos theta)``. Returns float64 ``(len(p),)``.
    """
    if method not in ("auto", "analytic", "autograd"):
        raise ValueError(f"method must be one of ('auto', 'analytic', 'autograd'), got {method!r}")
    p = torch.as_tensor(p, dtype=torch.float64).reshape(-1)
    m = METHODS[name] if name in METHODS else loss_method(name)  # the latter names the allowed losses
    if m.fn is None:  # a head: its profile is an expectation over the noise
        return m.profile(p, num_classes, params, noise_points=noise_points)
    full = {**m.defaults(), **params}
    if method in ("auto", "analytic"):
        if m.profile is not None:
            return m.profile(p.double(), num_classes, full)
        if method == "analytic":
            raise ValueError(f"no analytic profile for loss {name!r}; use method='autograd'")
    z = symmetric_logits(p, num_classes).requires_grad_(True)
    target = torch.zeros(z.shape[0], dtype=torch.long)
    m.fn(z, target, **full).sum().backward()
    return -z.grad[:, 0]


def identity_errors(n: int = 64, num_classes: int = 10, seed: int = 0) -> dict[str, float]:
    """Max-abs errors of the losses' identities on random float64 logits (the book's numerical check).

    - ``sgt(a) grad == grad (1/a) CE(a z)`` for a in {0.1, 0.5}, with and without label smoothing
    - ``gradient_decay(b) == CE(z + ln(b) e_t) + ln b`` (value and gradient), b in {0.1, 10}
    - neutral settings (beta=1, alpha=1, delta=1) equal CE (value and gradient)
    """
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, num_classes, generator=g, dtype=torch.float64) * 3
    t = torch.randint(0, num_classes, (n,), generator=g)

    def grad(fn):
        x = z.clone().requires_grad_(True)
        v = fn(x)
        v.sum().backward()
        return v.detach(), x.grad

    out = {}
    for a in (0.1, 0.5):
        for eps in (0.0, 0.1):
            _, g1 = grad(lambda x: sgt(x, t, alpha=a, label_smoothing=eps))
            _, g2 = grad(lambda x: F.cross_entropy(a * x, t, reduction="none", label_smoothing=eps) / a)
            out[f"SGT(alpha={a}, eps={eps}) grad = grad (1/alpha) CE(alpha z)"] = float((g1 - g2).abs().max())
    for b in (0.1, 10.0):
        v1, g1 = grad(lambda x: gradient_decay(x, t, beta=b))
        v2, g2 = grad(lambda x: F.cross_entropy(x + math.log(b) * F.one_hot(t, num_classes).to(x.dtype), t, reduction="none")
                      + math.log(b))
        out[f"GD(beta={b}) = CE with margin -ln beta, + ln beta"] = float(max((v1 - v2).abs().max(), (g1 - g2).abs().max()))
    v_ce, g_ce = grad(lambda x: F.cross_entropy(x, t, reduction="none"))
    for name, params in ((n, m.neutral) for n, m in LOSSES.items() if m.neutral and n != "ce"):  # declared neutrals
        v, gg = grad(lambda x: LOSSES[name].fn(x, t, **params))
        out[f"{name}{params} = CE"] = float(max((v - v_ce).abs().max(), (gg - g_ce).abs().max()))
    return out


def trajectory_gaps(steps: int = 50, dtype: torch.dtype = torch.float64, seed: int = 0, lr: float = 0.05,
                    momentum: float = 0.9, weight_decay: float = 5e-4) -> dict[str, float]:
    """Training-trajectory identities: two code paths trained side by side from the same initialisation on the
    same batches; returns, per identity, the max over steps of ``max|θ_a − θ_b| / max|θ_a|``.

    - ``SGT(α)`` with (η, λ) against ``temperature β=α`` with (η/α, λα) (SGD with momentum): the SGT gradient
      is ``(1/α)`` times that of ``CE(α z)``, so the two updates are identical in exact arithmetic;
    - ``gradient decay β`` against ``CE(z − m e_t)`` with margin ``m = −ln β`` (same gradient).

    A short run in float64 verifies the identity (the gap stays at rounding level, ~1e-15); in float32
    the same comparison shows how fast training amplifies rounding (an observation, not a test).
    Model: a 2-layer tanh MLP (32 → 64 → 10) on a fixed random batch stream of 64 samples.
    """
    g = torch.Generator().manual_seed(seed)
    xs = torch.randn(steps, 64, 32, generator=g, dtype=dtype)
    ts = torch.randint(0, 10, (steps, 64), generator=g)

    def net():
        torch.manual_seed(seed)
        return torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.Tanh(), torch.nn.Linear(64, 10)).to(dtype)

    def run_pair(loss_a, opt_a, loss_b, opt_b) -> float:
        a, b = net(), net()
        oa = torch.optim.SGD(a.parameters(), momentum=momentum, **opt_a)
        ob = torch.optim.SGD(b.parameters(), momentum=momentum, **opt_b)
        gap = 0.0
        for x, t in zip(xs, ts):
            for model, opt, loss in ((a, oa, loss_a), (b, ob, loss_b)):
                opt.zero_grad()
                loss(model(x), t).mean().backward()
                opt.step()
            pa = torch.cat([p.detach().flatten() for p in a.parameters()])
            pb = torch.cat([p.detach().flatten() for p in b.parameters()])
            gap = max(gap, float((pa - pb).abs().max() / pa.abs().max()))
        return gap

    out = {}
    for al in (0.1, 0.5):
        out[f"SGT(alpha={al}) = CE(alpha z) with lr/alpha, wd*alpha"] = run_pair(
            lambda z, t: sgt(z, t, alpha=al), {"lr": lr, "weight_decay": weight_decay},
            lambda z, t: temperature_ce(z, t, beta=al), {"lr": lr / al, "weight_decay": weight_decay * al})
    for b in (0.1, 10.0):
        out[f"GD(beta={b}) = CE with margin -ln beta"] = run_pair(
            lambda z, t: gradient_decay(z, t, beta=b), {"lr": lr, "weight_decay": weight_decay},
            lambda z, t: F.cross_entropy(z + math.log(b) * F.one_hot(t, 10).to(z.dtype), t, reduction="none"),
            {"lr": lr, "weight_decay": weight_decay})
    return out

"""Probability-dependent gradient decay (Zhang, Xie, Chen 2022, "Probability-Dependent Gradient Decay in Large
Margin Softmax", arXiv 2210.17145): a hyperparameter β in the softmax denominator.

``J_beta = log(beta + sum_{i!=t} e^{z_i - z_t})``; ``g_beta(p) = (1 - p) / (1 - (1 - beta) p)``. Its warm-up
(:func:`gradient_decay_warmup`, β from small to its target) is a reproduction decision: the paper gives
neither its form nor its values.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from .core import (Method, Param, Schedule, Warmup, ce_native, check_range, is_value, per_sample, per_sample_weight,
                   row_gradient, softmax_logp_t, target_index, weighted_probabilities, with_value)

__all__ = ["gradient_decay", "gradient_decay_warmup", "METHOD"]


def _gradient_decay_native(z, t, weight, ignore_index, reduction, cdim, beta=1.0):
    # the identity J_beta(z, t) = CE(z + ln(beta) e_t, t) + ln(beta) (tested): one scatter-add into the target
    # column (out of place; its backward passes the gradient through), then the fused CE.
    if is_value(beta, 1.0):
        return ce_native(z, t, weight, ignore_index, reduction, cdim)
    idx = target_index(t, cdim, z.shape[cdim])
    if isinstance(beta, Tensor):  # a per-row column (M, 1) for logits (M, C): ln beta per row
        lb = torch.log(beta.double()).to(z.dtype)  # as math.log: in double, then rounded
        out = ce_native(z.scatter_add(cdim, idx, lb.expand(idx.shape)), t, weight, ignore_index, reduction, cdim)
        w = per_sample_weight(z, t, weight, ignore_index, cdim)
        lbw = lb.reshape(-1) * w  # sum_n w_n ln beta_n over sum_n w_n for the mean
        shift = lbw if reduction == "none" else lbw.sum() if reduction == "sum" else lbw.sum() / w.sum()
        return with_value(out, out.detach() + shift)
    lb = math.log(beta)
    out = ce_native(z.scatter_add(cdim, idx, z.new_full(idx.shape, lb)), t, weight, ignore_index, reduction, cdim)
    if reduction == "mean":  # sum_n w_n (CE_n + ln beta) / sum_n w_n
        return with_value(out, out.detach() + lb)
    w = per_sample_weight(z, t, weight, ignore_index, cdim)
    return with_value(out, out.detach() + lb * (w.sum() if reduction == "sum" else w))



def _gradient_decay_value(neg_logp_t: Tensor, beta: float) -> Tensor:
    """J_beta from a = -log p_t >= 0 (the plain CE value).

    sum_{i!=t} exp(z_i - z_t) = (1 - p_t)/p_t = expm1(a), so J = log(beta + expm1(a)).
    expm1 overflows for a > ~88 (float32); there J = a + log1p((beta - 1) e^{-a}) is exact and
    stable, while for small a the first form avoids cancellation when beta is small.
    """
    a = neg_logp_t
    small = torch.log(torch.expm1(a.clamp(max=20.0)) + beta)
    large = a + torch.log1p((beta - 1.0) * torch.exp(-a))
    return torch.where(a < 20.0, small, large)



class _GradientDecay(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z: Tensor, target: Tensor, w: Tensor, beta: float) -> Tensor:
        p, logp_t = softmax_logp_t(z, target.unsqueeze(1))
        loss = _gradient_decay_value(-logp_t, beta) * w
        # weight 1/(1 - (1 - beta) p_t) >= 1/max(1, beta) > 0: never divides by zero for beta > 0
        w_row = w / (1.0 - (1.0 - beta) * torch.exp(logp_t))
        ctx.save_for_backward(p, target, w_row)
        return loss

    @staticmethod
    def backward(ctx, gout: Tensor):
        p, target, w_row = ctx.saved_tensors
        return row_gradient(p, target, gout * w_row, 4)



def _fused(r, beta=1.0):
    # a per-row column (M, 1) enters the row-wise formulas as (M,)
    return _GradientDecay.apply(r.z, r.target, r.w, beta.reshape(-1) if isinstance(beta, Tensor) else beta)


def gradient_decay(logits: Tensor, target: Tensor, beta: float = 1.0, *, weight: Tensor | None = None,
                   ignore_index: int = -100) -> Tensor:
    """Probability-dependent gradient-decay softmax loss (Zhang, Xie, Chen, arXiv 2210.17145).

    ``p_hat_t = e^{z_t} / (sum_{i!=t} e^{z_i} + beta e^{z_t})``,
    ``J_beta = -log p_hat_t = log(beta + sum_{i!=t} e^{z_i - z_t})``.
    Identity: ``J_beta(z, t) = CE(z + ln(beta) e_t, t) + ln beta`` (an additive target margin
    ``m = -ln beta``). Gradient in the plain ``p = softmax(z)``:
    ``dJ/dz = (p - onehot) / (1 - (1 - beta) p_t)``, so ``g_beta(p) = (1-p)/(1-(1-beta)p)``.
    ``J`` can be negative for ``beta < 1``. logits ``(N, C[, d...])`` -> target's shape.

    Class-probability targets ``q`` (the logits' shape; mixup, cutmix, distillation): the paper defines ``J`` for
    one target class only. softgrad uses its expectation under ``q``, ``sum_c w_c q_c J_beta(z, c)``: the mixup
    criterion ``lam J(z, a) + (1 - lam) J(z, b)`` (Zhang et al. 2018) for a mixed pair, an index target for a
    one-hot ``q``, and PyTorch's class-probability CE at ``beta = 1`` (CE is linear in its target, so its
    expectation *is* PyTorch's definition). Per class ``J_beta(z, c) = log(beta p_c + 1 - p_c) - log p_c``;
    gradient ``sum_c w_c q_c (p - e_c) / (1 - (1 - beta) p_c)``.
    """
    beta = METHOD.params["beta"].check("beta", beta)
    return per_sample(METHOD, logits, target, weight, ignore_index, {"beta": beta})



def _probabilities(z, q, weight, beta=1.0):
    if beta == 1.0:
        return F.cross_entropy(z, q, weight=weight, reduction="none")
    # J_beta(z, c) = log(beta p_c + (1 - p_c)) - log p_c for every class c at once, from log p (log_softmax):
    # 1 - p_c = -expm1(log p_c) has no cancellation where p_c is near 1, and both terms inside the log are >= 0
    logp = torch.log_softmax(z, dim=1)
    J = torch.log(beta * torch.exp(logp) - torch.expm1(logp)) - logp
    return (weighted_probabilities(q, weight) * J).sum(dim=1)


def gradient_decay_warmup(start: float, end: float, epochs: float, shape: str = "log") -> Schedule:
    """beta warm-up for :func:`gradient_decay`: beta goes from ``start`` (small: fast, margin-like)
    to ``end`` over ``epochs``. The paper gives neither the form nor the values (reproduction decision)."""
    check_range("start", start, 0.0, math.inf, True, True)
    check_range("end", end, 0.0, math.inf, True, True)
    return Schedule(float(start), float(end), float(epochs), shape)


def _warmup(cfg, params: dict):
    # Config.warmup == 'beta': from warmup_start to the loss's beta over warmup_epochs (epochs)
    s = gradient_decay_warmup(cfg.warmup_start, params["beta"], cfg.warmup_epochs, cfg.warmup_shape)
    return lambda t: {"beta": s.value(t)}


def profile(p: Tensor, num_classes: int, params: dict, **_) -> Tensor:
    """``g_beta(p) = (1 - p) / (1 - (1 - beta) p)`` (independent of the number of classes)."""
    b = params["beta"]
    return (1 - p) / (1 - (1 - b) * p)


METHOD = Method(
    "gradient_decay", gradient_decay, params={"beta": Param(1.0, 0.0, math.inf, True, True)}, neutral={"beta": 1.0},
    native=_gradient_decay_native, fused=_fused, probabilities=_probabilities, profile=profile, warmup=Warmup("beta", "beta", _warmup),
    run={"loss": "gradient_decay"}, knob={"beta": [0.03, 3.0, "log"]}, label="gradient decay β",
    color="tab:orange", paper="Zhang, Xie, Chen 2022, arXiv 2210.17145")

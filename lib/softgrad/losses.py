"""Softmax-cross-entropy variants that change the target-gradient profile g(p_t).

Notation (shapes): logits ``z`` are ``(N, C)``, ``target`` is ``(N,)`` integer class ids,
``p = softmax(z)``, ``q`` the (optionally label-smoothed) target distribution.
For plain cross-entropy ``dL/dz = p - q``; the magnitude of the gradient on the target logit is
``g(p_t) = 1 - p_t``. Every method here changes that curve:

===================  =====================================================  ==========================
name                 per-sample loss                                        paper
===================  =====================================================  ==========================
``ce``               ``-sum_i q_i log p_i``                                 baseline
``temperature``      ``CE(beta * z, t)``                                    Agarwala et al. 2020
``gradient_decay``   ``log(beta + sum_{i!=t} exp(z_i - z_t))``              Zhang, Xie, Chen 2022
``sgt``              forward CE; backward ``softmax(alpha log p) - q``     Das et al. 2021
``as_softmax``       CE on logits with ``p_t - p_i > delta`` masked out     Lv et al. 2025
``sparse_softmax``   ``logsumexp(top-k(z) U {z_t}) - z_t``                  Huang et al. 2021
``sparsemax``        sparsemax loss (``entmax`` package)                    Martins & Astudillo 2016
``entmax15``         1.5-entmax loss (``entmax`` package)                   Peters et al. 2019
===================  =====================================================  ==========================

Noisy Softmax (Chen, Deng, Du 2017) perturbs the target logit using the last layer's weights and
features, so it lives in a classifier head: :class:`NoisySoftmaxHead`.

API, following entmax/optax/timm: a pure function per loss returning per-sample losses ``(N,)``
(ignored samples get 0), a thin :class:`SoftmaxLoss` module with ``reduction`` and
``ignore_index``, and one checked factory :func:`make_loss`.

Speed: the non-trivial losses are one-pass ``torch.autograd.Function`` s built on the native
``log_softmax``; they save the probabilities once and form the gradient in a single output pass in
backward, which is as fast as or faster than eager ``F.cross_entropy`` (``benchmarks/losses.py``).
Half-precision inputs are computed in float32 and the loss is returned in float32.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "LOSSES",
    "trusted_targets",
    "REDUCTIONS",
    "cross_entropy",
    "temperature_ce",
    "gradient_decay",
    "sgt",
    "as_softmax",
    "as_softmax_multilabel",
    "sparse_softmax",
    "sparsemax",
    "entmax15",
    "SoftmaxLoss",
    "NoisySoftmaxHead",
    "noisy_logits",
    "make_loss",
    "loss_params",
    "Schedule",
    "gradient_decay_warmup",
    "delta_warmup",
    "as_speed_next_k",
    "target_gradient_profile",
]

REDUCTIONS = ("mean", "sum", "none")

# --------------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------------


def _check_range(name: str, value, lo, hi, lo_open: bool, hi_open: bool) -> float:
    """Return float(value) or raise ValueError naming the parameter and the allowed interval."""
    interval = f"{'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a real number in {interval}, got {value!r}")
    v = float(value)
    ok = (v > lo if lo_open else v >= lo) and (v < hi if hi_open else v <= hi)
    if not ok or math.isnan(v):
        raise ValueError(f"{name} must be in {interval}, got {value!r}")
    return v


_TRUSTED_TARGETS = False


@contextlib.contextmanager
def trusted_targets():
    """Within this block the losses skip the target-range check (shapes and dtypes are still checked).

    The check costs a device->host sync per call; :func:`softgrad.train.train` validates the labels
    of the whole data set once and trains inside this block. Out-of-range targets then fail inside
    the indexing kernel instead of with a named error.
    """
    global _TRUSTED_TARGETS
    prev, _TRUSTED_TARGETS = _TRUSTED_TARGETS, True
    try:
        yield
    finally:
        _TRUSTED_TARGETS = prev


def _check_inputs(logits: Tensor, target: Tensor, ignore_index: int) -> tuple[Tensor, Tensor, Tensor]:
    """Validate ``(N, C)`` float logits and ``(N,)`` integer targets.

    Returns ``(z, safe_target, valid)``: float32-or-wider logits, targets with ignored entries
    replaced by 0 (so they can index), and the float mask of non-ignored rows.
    """
    _check_shapes(logits, target)
    n_classes = logits.shape[1]
    target = target.long()
    valid = target != ignore_index
    _check_target_range(target, valid, n_classes, ignore_index)
    z = logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits
    safe = torch.where(valid, target, torch.zeros_like(target))
    return z, safe, valid.to(z.dtype)


def _check_shapes(logits: Tensor, target: Tensor) -> None:
    """Types, dtypes and shapes: host-side only, no tensor ops."""
    if not isinstance(logits, Tensor) or not isinstance(target, Tensor):
        raise ValueError("logits and target must be torch.Tensor")
    if not logits.is_floating_point():
        raise ValueError(f"logits must be a floating-point tensor (float16/bfloat16/float32/float64), got dtype {logits.dtype}")
    if logits.dim() != 2:
        raise ValueError(f"logits must have shape (N, C), got shape {tuple(logits.shape)}")
    if target.dtype not in (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8):
        raise ValueError(f"target must be an integer tensor of class indices, got dtype {target.dtype}")
    if target.dim() != 1 or target.shape[0] != logits.shape[0]:
        raise ValueError(
            f"target must have shape (N,) = ({logits.shape[0]},) to match logits {tuple(logits.shape)}, "
            f"got shape {tuple(target.shape)}"
        )


def _check_target_range(target: Tensor, valid: Tensor, n_classes: int, ignore_index: int) -> None:
    # reads a device value (a host sync per call on GPUs); a trainer whose labels were validated once
    # at load time turns it off with `trusted_targets()`
    if _TRUSTED_TARGETS:
        return
    bad = valid & ((target < 0) | (target >= n_classes))
    if bool(bad.any()):
        raise ValueError(
            f"target values must be in [0, {n_classes - 1}] (num_classes={n_classes}) or ignore_index={ignore_index}; "
            f"got {target[bad][:5].tolist()}"
        )


def _check_label_smoothing(label_smoothing) -> float:
    return _check_range("label_smoothing", label_smoothing, 0.0, 1.0, False, False)


# --------------------------------------------------------------------------------------------
# the fused kernel shared by temperature / gradient_decay / sgt / as_softmax
# --------------------------------------------------------------------------------------------
#
# All four have a gradient of the form  dL/dz = w_n * (r_n - q_n)  per row n, where r is a
# probability vector derived from softmax and w a per-row weight:
#   temperature:     r = softmax(beta z),                w = beta
#   gradient_decay:  r = softmax(z),                     w = 1 / (1 - (1 - beta) p_t)
#   sgt:             r = softmax(alpha log p) (backward only), w = 1
#   as_softmax:      r = masked renormalised softmax(z), w = 1
# so backward is one read of r and one write of the gradient, plus an O(N) fix-up of the target
# column. Nothing is modified in place on saved tensors, so retain_graph=True stays correct.


def _target_fixup(grad: Tensor, target: Tensor, value: Tensor) -> Tensor:
    """grad[n, target[n]] += value[n] without touching the rest of the row (O(N))."""
    return grad.scatter_add_(1, target.unsqueeze(1), value.unsqueeze(1))


def _softmax_logp_t(z: Tensor, idx: Tensor) -> tuple[Tensor, Tensor]:
    """p = softmax(z) (one fused native pass) and the exact log p_t, shapes (N, C) and (N,).

    -log(p_t) from the softmax is as accurate as log_softmax (1 ulp relative in p_t) unless p_t
    underflows; those rare rows (p_t < 1e-30) are recomputed with log_softmax on the subset.
    Cheaper than log_softmax + exp_, which pays a second full pass of exp.
    """
    p = torch.softmax(z, dim=1)
    p_t = p.gather(1, idx).squeeze(1)
    logp_t = torch.log(p_t)
    bad = p_t < 1e-30
    if bool(bad.any()):
        rows = bad.nonzero().squeeze(1)
        logp_t = logp_t.index_put((rows,), torch.log_softmax(z[rows], dim=1).gather(1, idx[rows]).squeeze(1))
    return p, logp_t


class _TemperatureCE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z: Tensor, target: Tensor, valid: Tensor, beta: float) -> Tensor:
        p, logp_t = _softmax_logp_t(z * beta, target.unsqueeze(1))
        loss = -logp_t * valid
        ctx.save_for_backward(p, target, valid)
        ctx.beta = beta
        return loss

    @staticmethod
    def backward(ctx, gout: Tensor):
        p, target, valid = ctx.saved_tensors
        w = gout * valid * ctx.beta
        grad = p * w.unsqueeze(1)
        return _target_fixup(grad, target, -w), None, None, None


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
    def forward(ctx, z: Tensor, target: Tensor, valid: Tensor, beta: float) -> Tensor:
        p, logp_t = _softmax_logp_t(z, target.unsqueeze(1))
        loss = _gradient_decay_value(-logp_t, beta) * valid
        # weight 1/(1 - (1 - beta) p_t) >= 1/max(1, beta) > 0: never divides by zero for beta > 0
        w_row = 1.0 / (1.0 - (1.0 - beta) * torch.exp(logp_t))
        ctx.save_for_backward(p, target, valid, w_row)
        return loss

    @staticmethod
    def backward(ctx, gout: Tensor):
        p, target, valid, w_row = ctx.saved_tensors
        w = gout * valid * w_row
        grad = p * w.unsqueeze(1)
        return _target_fixup(grad, target, -w), None, None, None


def _smoothed_ce_from_logp(logp: Tensor, target: Tensor, eps: float) -> Tensor:
    """-sum_i q_i log p_i with q = (1-eps) onehot + eps/C (timm/PyTorch convention)."""
    nll = -logp.gather(1, target.unsqueeze(1)).squeeze(1)
    if eps == 0.0:
        return nll
    return (1.0 - eps) * nll - eps * logp.mean(dim=1)


class _SGT(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z: Tensor, target: Tensor, valid: Tensor, alpha: float, eps: float) -> Tensor:
        logp = torch.log_softmax(z, dim=1)
        loss = _smoothed_ce_from_logp(logp, target, eps) * valid
        # p' = p^alpha / sum p^alpha = softmax(alpha log p). log p <= 0, so exp(alpha log p) <= 1
        # never overflows and needs no max-subtraction; build it in place in logp's buffer (not
        # exposed to anyone) and keep the row sums, so backward is one multiply.
        e = logp.mul_(alpha).exp_() if alpha != 1.0 else logp.exp_()
        ctx.save_for_backward(e, e.sum(dim=1), target, valid)
        ctx.eps = eps
        return loss

    @staticmethod
    def backward(ctx, gout: Tensor):
        e, e_sum, target, valid = ctx.saved_tensors
        eps = ctx.eps
        w = gout * valid
        grad = e * (w / e_sum).unsqueeze(1)
        if eps:
            grad.sub_(((eps / e.shape[1]) * w).unsqueeze(1))
        return _target_fixup(grad, target, -(1.0 - eps) * w), None, None, None, None


class _ASSoftmax(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z: Tensor, target: Tensor, valid: Tensor, delta: float):
        idx = target.unsqueeze(1)
        p, logp_t = _softmax_logp_t(z, idx)
        p_t = logp_t.exp()
        # Keep i iff p_t - p_i <= delta (official as_sm.py), i.e. p_i >= thr = p_t - delta; the mask
        # comes from the full softmax and carries no gradient. A per-row threshold (masked_fill with a
        # broadcast compare) costs ~3 passes; instead scale row n by s_n = 1/thr_n so the threshold
        # becomes the constant 1 and one in-place F.threshold_ does it. Rows with thr <= 0 keep
        # everything: there s = 1/floor with floor = 2^-100 (float32), so only p_i < 2^-100, which
        # are invisible next to p_t in float32, are dropped. The scale folds into backward's row weight.
        floor = 2.0**-100 if z.dtype != torch.float64 else 2.0**-600
        log_s = -torch.log((p_t - delta).clamp(min=floor))
        u = p.mul_(torch.exp(log_s).unsqueeze(1))  # u = p * s, in p's (private) buffer
        F.threshold_(u, 1.0 - torch.finfo(u.dtype).eps / 2, 0.0)  # keep u >= 1 (equality kept)
        u.scatter_(1, idx, 0.0)  # zero the target so the sum of kept rivals has no cancellation
        s_other = u.sum(dim=1) * torch.exp(-log_s)
        s_kept = p_t + s_other
        # loss = -log(p_t / S_kept) = log1p(S_other / p_t); exactly 0 when no rival is kept. If p_t
        # underflows to 0, nothing is masked and S_kept = 1, so loss = -log p_t.
        tiny = torch.finfo(u.dtype).tiny
        loss = torch.where(
            p_t > tiny,
            torch.log1p(s_other / p_t.clamp(min=tiny)),
            -logp_t + torch.log(s_kept),
        )
        loss = loss * valid
        ctx.save_for_backward(u, target, valid, s_other, s_kept, log_s)
        zero = (s_other == 0) & (valid > 0)
        ctx.mark_non_differentiable(zero)
        return loss, zero

    @staticmethod
    def backward(ctx, gout: Tensor, _gzero):
        u, target, valid, s_other, s_kept, log_s = ctx.saved_tensors
        w = gout * valid / s_kept
        grad = u * (w * torch.exp(-log_s)).unsqueeze(1)  # kept rivals: p_i / S_kept
        # target: p_t/S_kept - 1 = -S_other/S_kept (no cancellation)
        return _target_fixup(grad, target, -w * s_other), None, None, None


# --------------------------------------------------------------------------------------------
# pure functions: per-sample losses, shape (N,), ignored rows are 0
# --------------------------------------------------------------------------------------------


def cross_entropy(logits: Tensor, target: Tensor, label_smoothing: float = 0.0, ignore_index: int = -100) -> Tensor:
    """Plain softmax cross-entropy, ``-sum_i q_i log softmax(z)_i``; equals ``F.cross_entropy``.

    logits ``(N, C)``, target ``(N,)`` -> ``(N,)``. ``q = (1-eps) onehot + eps/C``.
    Target-gradient profile: ``g(p) = 1 - p`` (without smoothing).
    """
    eps = _check_label_smoothing(label_smoothing)
    z, safe, valid = _check_inputs(logits, target, ignore_index)
    return F.cross_entropy(z, safe, reduction="none", label_smoothing=eps) * valid


def temperature_ce(logits: Tensor, target: Tensor, beta: float = 1.0, ignore_index: int = -100) -> Tensor:
    """Inverse-temperature cross-entropy ``L = CE(beta * z, t)`` (Agarwala et al., arXiv 2010.07344).

    Gradient ``beta * (softmax(beta z) - onehot)``; target profile ``g = beta (1 - softmax(beta z)_t)``.
    logits ``(N, C)``, target ``(N,)`` -> ``(N,)``; ``beta > 0``; ``beta = 1`` is CE.
    """
    beta = _check_range("beta", beta, 0.0, math.inf, True, True)
    z, safe, valid = _check_inputs(logits, target, ignore_index)
    return _TemperatureCE.apply(z, safe, valid, beta)


def gradient_decay(logits: Tensor, target: Tensor, beta: float = 1.0, ignore_index: int = -100) -> Tensor:
    """Probability-dependent gradient-decay softmax loss (Zhang, Xie, Chen, arXiv 2210.17145).

    ``p_hat_t = e^{z_t} / (sum_{i!=t} e^{z_i} + beta e^{z_t})``,
    ``J_beta = -log p_hat_t = log(beta + sum_{i!=t} e^{z_i - z_t})``.
    Identity: ``J_beta(z, t) = CE(z + ln(beta) e_t, t) + ln beta`` (an additive target margin
    ``m = -ln beta``). Gradient in the plain ``p = softmax(z)``:
    ``dJ/dz = (p - onehot) / (1 - (1 - beta) p_t)``, so ``g_beta(p) = (1-p)/(1-(1-beta)p)``.
    ``J`` can be negative for ``beta < 1``. logits ``(N, C)``, target ``(N,)`` -> ``(N,)``.
    """
    beta = _check_range("beta", beta, 0.0, math.inf, True, True)
    z, safe, valid = _check_inputs(logits, target, ignore_index)
    return _GradientDecay.apply(z, safe, valid, beta)


def sgt(logits: Tensor, target: Tensor, alpha: float = 1.0, label_smoothing: float = 0.0, ignore_index: int = -100) -> Tensor:
    """Softmax Gradient Tampering / PowerGrad (Das et al., arXiv 2111.12495).

    Forward: ordinary (label-smoothed) CE. Backward only: ``dL/dz := softmax(alpha log p) - q``
    with ``p' = p^alpha / sum_j p_j^alpha``, ``0 < alpha <= 1``; ``q = (1-eps) onehot + eps/C``
    (the official code's smoothing). Identity: ``softmax(alpha log p) = softmax(alpha z)``, so the
    gradient equals that of ``(1/alpha) CE(alpha z, q)``. logits ``(N, C)`` -> ``(N,)``.
    """
    alpha = _check_range("alpha", alpha, 0.0, 1.0, True, False)
    eps = _check_label_smoothing(label_smoothing)
    z, safe, valid = _check_inputs(logits, target, ignore_index)
    return _SGT.apply(z, safe, valid, alpha, eps)


def as_softmax(
    logits: Tensor, target: Tensor, delta: float = 0.1, ignore_index: int = -100, return_zero_mask: bool = False
):
    """Adaptive Sparse Softmax (Lv et al., arXiv 2508.03175; official ``as_sm.py``).

    Keep class ``i`` iff ``p_t - p_i <= delta`` with ``p = softmax(z)`` (no gradient through the
    mask); the others are set to ``-inf`` and the loss is CE on the masked logits. ``delta = 1`` is
    CE. A sample whose target beats every rival by more than ``delta`` has loss and gradient exactly
    0. Gradient ``keep_i (p~_i - 1[i=t])``, ``p~`` the softmax over kept classes.

    logits ``(N, C)``, target ``(N,)`` -> loss ``(N,)``; with ``return_zero_mask`` also the bool
    ``(N,)`` mask of (non-ignored) samples whose loss is exactly zero, which AS-Speed counts.
    """
    delta = _check_range("delta", delta, 0.0, 1.0, False, False)
    z, safe, valid = _check_inputs(logits, target, ignore_index)
    loss, zero = _ASSoftmax.apply(z, safe, valid, delta)
    return (loss, zero) if return_zero_mask else loss


def as_softmax_multilabel(logits: Tensor, labels: Tensor, delta: float = 0.1) -> Tensor:
    """Multi-label AS-Softmax: Su's multilabel categorical CE with the AS masking.

    ``L = log(1 + sum_{i in neg, kept} e^{z_i}) + log(1 + sum_{j in pos, kept} e^{-z_j})``;
    with ``p = softmax(z)`` over all labels (no gradient): a negative ``i`` is kept iff
    ``min_pos p - p_i <= delta``, a positive ``j`` iff ``p_j - max_neg p <= delta``.
    logits ``(N, C)``, labels ``(N, C)`` in {0, 1} -> ``(N,)``. ``delta = 1`` is the unmasked loss.
    """
    delta = _check_range("delta", delta, 0.0, 1.0, False, False)
    if not logits.is_floating_point() or logits.dim() != 2:
        raise ValueError(f"logits must be a floating-point (N, C) tensor, got {logits.dtype} {tuple(logits.shape)}")
    if labels.shape != logits.shape:
        raise ValueError(f"labels must have the shape of logits {tuple(logits.shape)}, got {tuple(labels.shape)}")
    z = logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits
    pos = labels.to(torch.bool)
    with torch.no_grad():
        p = torch.softmax(z, dim=1)
        min_pos = torch.where(pos, p, torch.full_like(p, math.inf)).amin(dim=1, keepdim=True)
        max_neg = torch.where(pos, torch.full_like(p, -math.inf), p).amax(dim=1, keepdim=True)
        keep_neg = ~pos & (min_pos - p <= delta)
        keep_pos = pos & (p - max_neg <= delta)
    neg_inf = torch.full_like(z, -math.inf)
    zero = torch.zeros_like(z[:, :1])
    # log(1 + sum e^{x}) = logsumexp([0, x]); -inf entries drop out exactly
    neg_term = torch.logsumexp(torch.cat([zero, torch.where(keep_neg, z, neg_inf)], dim=1), dim=1)
    pos_term = torch.logsumexp(torch.cat([zero, torch.where(keep_pos, -z, neg_inf)], dim=1), dim=1)
    return neg_term + pos_term


class _SparseSoftmax(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z: Tensor, target: Tensor, valid: Tensor, k: int) -> Tensor:
        vals, idx = z.topk(k, dim=1)  # O(NC) read, no (N, C) write
        z_t = z.gather(1, target.unsqueeze(1))
        in_top = (idx == target.unsqueeze(1)).any(dim=1, keepdim=True)
        # kept set = top-k U {t}: append z_t (as -inf when it is already among the top-k)
        extra = torch.where(in_top, torch.full_like(z_t, -math.inf), z_t)
        cat = torch.cat([vals, extra], dim=1)
        lse = torch.logsumexp(cat, dim=1, keepdim=True)
        loss = (lse - z_t).squeeze(1) * valid
        ctx.save_for_backward(torch.exp(cat - lse), idx, target, valid)
        ctx.shape = z.shape
        return loss

    @staticmethod
    def backward(ctx, gout: Tensor):
        probs, idx, target, valid = ctx.saved_tensors
        w = (gout * valid).unsqueeze(1)
        grad = torch.zeros(ctx.shape, dtype=probs.dtype, device=probs.device)
        grad.scatter_(1, idx, probs[:, :-1] * w)
        grad.scatter_add_(1, target.unsqueeze(1), probs[:, -1:] * w - w)
        return grad, None, None, None


def sparse_softmax(logits: Tensor, target: Tensor, k: int = 5, ignore_index: int = -100) -> Tensor:
    """Sparse-softmax (Huang et al., arXiv 2112.12433): softmax restricted to the top-k logits.

    ``L = logsumexp_{i in K} z_i - z_t`` with ``K = top-k(z) U {t}`` (the target is always kept:
    a reproduction decision; the paper's training loss leaves it open). ``k >= C`` is CE.
    logits ``(N, C)``, target ``(N,)`` -> ``(N,)``.
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be an integer >= 1, got {k!r}")
    z, safe, valid = _check_inputs(logits, target, ignore_index)
    return _SparseSoftmax.apply(z, safe, valid, min(k, z.shape[1]))


def _entmax_loss(kind: str, logits: Tensor, target: Tensor, ignore_index: int) -> Tensor:
    import entmax  # optional at import time of softgrad, required for these two losses

    z, safe, valid = _check_inputs(logits, target, ignore_index)
    fn = entmax.sparsemax_loss if kind == "sparsemax" else entmax.entmax15_loss
    return fn(z, safe) * valid


def sparsemax(logits: Tensor, target: Tensor, ignore_index: int = -100) -> Tensor:
    """Sparsemax loss (Martins & Astudillo 2016) via the ``entmax`` package. ``(N, C) -> (N,)``."""
    return _entmax_loss("sparsemax", logits, target, ignore_index)


def entmax15(logits: Tensor, target: Tensor, ignore_index: int = -100) -> Tensor:
    """1.5-entmax loss (Peters, Niculae, Martins 2019) via the ``entmax`` package. ``(N, C) -> (N,)``."""
    return _entmax_loss("entmax15", logits, target, ignore_index)


# --------------------------------------------------------------------------------------------
# registry, module and factory
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Spec:
    fn: Callable
    params: dict  # name -> default
    neutral: dict  # the setting that equals CE (empty if none)


LOSSES: dict[str, _Spec] = {
    "ce": _Spec(cross_entropy, {"label_smoothing": 0.0}, {"label_smoothing": 0.0}),
    "temperature": _Spec(temperature_ce, {"beta": 1.0}, {"beta": 1.0}),
    "gradient_decay": _Spec(gradient_decay, {"beta": 1.0}, {"beta": 1.0}),
    "sgt": _Spec(sgt, {"alpha": 1.0, "label_smoothing": 0.0}, {"alpha": 1.0, "label_smoothing": 0.0}),
    "as_softmax": _Spec(as_softmax, {"delta": 0.1}, {"delta": 1.0}),
    "sparse_softmax": _Spec(sparse_softmax, {"k": 5}, {}),
    "sparsemax": _Spec(sparsemax, {}, {}),
    "entmax15": _Spec(entmax15, {}, {}),
}


def loss_params(name: str) -> dict:
    """The parameters (with defaults) that loss ``name`` accepts."""
    return dict(_spec(name).params)


def _spec(name: str) -> _Spec:
    if name not in LOSSES:
        raise ValueError(f"loss name must be one of {sorted(LOSSES)}, got {name!r}")
    return LOSSES[name]


class SoftmaxLoss(nn.Module):
    """``nn.Module`` wrapper: ``loss(logits (N, C), target (N,))`` -> scalar or ``(N,)``.

    ``reduction``: 'mean' (over non-ignored samples, like ``F.cross_entropy``; AS-Softmax's zero-loss
    samples stay in the denominator as in the official code), 'sum' or 'none'.
    Parameters can be changed between steps (schedules) with :meth:`set_params`.
    """

    def __init__(self, name: str, reduction: str = "mean", ignore_index: int = -100, **params):
        super().__init__()
        spec = _spec(name)
        if reduction not in REDUCTIONS:
            raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
        if isinstance(ignore_index, bool) or not isinstance(ignore_index, int):
            raise ValueError(f"ignore_index must be an int, got {ignore_index!r}")
        self.name, self.reduction, self.ignore_index = name, reduction, ignore_index
        self.params = dict(spec.params)
        self.set_params(**params)

    def set_params(self, **params) -> None:
        unknown = set(params) - set(self.params)
        if unknown:
            raise ValueError(
                f"unknown parameter(s) {sorted(unknown)} for loss {self.name!r}; allowed: {sorted(self.params) or 'none'}"
            )
        new = {**self.params, **params}
        # validate eagerly with a tiny dummy call so bad values fail at construction, not mid-training
        LOSSES[self.name].fn(torch.zeros(1, 2), torch.zeros(1, dtype=torch.long), **new)
        self.params = new

    def per_sample(self, logits: Tensor, target: Tensor) -> Tensor:
        return LOSSES[self.name].fn(logits, target, ignore_index=self.ignore_index, **self.params)

    def reduce(self, per_sample: Tensor, target: Tensor) -> Tensor:
        if self.reduction == "none":
            return per_sample
        if self.reduction == "sum":
            return per_sample.sum()
        # mean over non-ignored samples; 0/0 -> nan, as F.cross_entropy
        return per_sample.sum() / (target != self.ignore_index).sum()

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        if self.name == "ce" and self.reduction != "none":
            # fast path: PyTorch's fused reduction (same value; saves the masking ops on every step)
            _check_shapes(logits, target)
            _check_target_range(target, target != self.ignore_index, logits.shape[1], self.ignore_index)
            z = logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits
            return F.cross_entropy(z, target.long(), reduction=self.reduction, ignore_index=self.ignore_index,
                                   label_smoothing=self.params["label_smoothing"])
        return self.reduce(self.per_sample(logits, target), target)

    def extra_repr(self) -> str:
        ps = ", ".join(f"{k}={v}" for k, v in self.params.items())
        return f"name={self.name!r}, {ps + ', ' if ps else ''}reduction={self.reduction!r}"


def make_loss(name: str, reduction: str = "mean", ignore_index: int = -100, **params) -> SoftmaxLoss:
    """Build a loss module by name, checking the name and every parameter.

    >>> make_loss("gradient_decay", beta=0.1)
    SoftmaxLoss(name='gradient_decay', beta=0.1, reduction='mean')
    """
    return SoftmaxLoss(name, reduction=reduction, ignore_index=ignore_index, **params)


# --------------------------------------------------------------------------------------------
# Noisy Softmax: a classifier head
# --------------------------------------------------------------------------------------------

NOISE_KINDS = ("annealed", "amplitude", "free")
NOISE_SIGNS = ("positive", "gaussian", "negative")


def noisy_logits(
    features: Tensor,
    weight: Tensor,
    target: Tensor,
    alpha: float,
    noise: str = "annealed",
    sign: str = "positive",
    noise_std: float = 1.0,
    detach_scale: bool = False,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Noisy Softmax logits (Chen, Deng, Du, CVPR 2017, arXiv 1708.03769).

    Bias-free logits ``f_j = W_j^T x = |W_j| |x| cos(theta_j)``; only the target logit is perturbed,
    per sample and per call: ``f_y <- f_y - alpha * s * n`` with the scale ``s``
      annealed:  ``|W_y| |x| - W_y^T x = |W_y||x|(1 - cos theta_y)`` (the method; clamped >= 0),
      amplitude: ``|W_y| |x|``,  free: ``1``,
    and the noise ``n`` for ``xi ~ N(0, noise_std^2)``: positive ``|xi|`` (the method: the target
    logit only goes down), gaussian ``xi``, negative ``-|xi|`` (the target only goes up).
    features ``(N, D)``, weight ``(C, D)``, target ``(N,)`` -> logits ``(N, C)``.
    The noise is drawn in float32; ``detach_scale`` stops gradients through ``s``.
    """
    alpha = _check_range("alpha", alpha, 0.0, math.inf, False, True)
    noise_std = _check_range("noise_std", noise_std, 0.0, math.inf, False, True)
    if noise not in NOISE_KINDS:
        raise ValueError(f"noise must be one of {NOISE_KINDS}, got {noise!r}")
    if sign not in NOISE_SIGNS:
        raise ValueError(f"sign must be one of {NOISE_SIGNS}, got {sign!r}")
    logits = features @ weight.t()
    if alpha == 0.0:
        return logits
    idx = target.long().unsqueeze(1)
    f_y = logits.gather(1, idx).squeeze(1).float()
    if noise == "free":
        scale = torch.ones_like(f_y)
    else:
        amp = weight.float().norm(dim=1)[target.long()] * features.float().norm(dim=1)
        # |W||x|(1 - cos) without acos: |W||x| - W^T x; rounding can make it slightly negative
        scale = amp if noise == "amplitude" else (amp - f_y).clamp(min=0.0)
    if detach_scale:
        scale = scale.detach()
    xi = torch.randn(f_y.shape, generator=generator, device=f_y.device, dtype=torch.float32) * noise_std
    n = {"positive": xi.abs(), "gaussian": xi, "negative": -xi.abs()}[sign]
    delta = (alpha * scale * n).to(logits.dtype)
    return logits.scatter_add(1, idx, -delta.unsqueeze(1))


class NoisySoftmaxHead(nn.Module):
    """Bias-free linear classifier with Noisy Softmax target-logit noise (see :func:`noisy_logits`).

    ``head(features (N, D))`` -> clean logits ``(N, C)``; in training mode
    ``head(features, target)`` -> perturbed logits to feed to cross-entropy. ``alpha = 0`` is a
    plain bias-free linear layer (the neutral setting).
    """

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        alpha: float = 0.1,
        noise: str = "annealed",
        sign: str = "positive",
        noise_std: float = 1.0,
        detach_scale: bool = False,
    ):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_classes, in_features))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))  # nn.Linear's default
        self.alpha, self.noise, self.sign, self.noise_std, self.detach_scale = alpha, noise, sign, noise_std, detach_scale
        noisy_logits(torch.zeros(1, in_features), self.weight.detach(), torch.zeros(1, dtype=torch.long),
                     alpha, noise, sign, noise_std, detach_scale)  # validate now

    def forward(self, features: Tensor, target: Tensor | None = None) -> Tensor:
        if not self.training or target is None or self.alpha == 0:
            return features @ self.weight.t()
        return noisy_logits(features, self.weight, target, self.alpha, self.noise, self.sign,
                            self.noise_std, self.detach_scale)

    def extra_repr(self) -> str:
        c, d = self.weight.shape
        return f"in_features={d}, num_classes={c}, alpha={self.alpha}, noise={self.noise!r}, sign={self.sign!r}"


# --------------------------------------------------------------------------------------------
# schedules (beta warm-up for gradient decay, delta warm-up for AS-Softmax) and AS-Speed
# --------------------------------------------------------------------------------------------

SCHEDULE_SHAPES = ("linear", "log")


@dataclass(frozen=True)
class Schedule:
    """A value moving from ``start`` to ``end`` over the first ``length`` units, then constant.

    ``shape='linear'`` interpolates linearly, ``'log'`` geometrically (linear in log-space; needs
    positive ends). ``value(t)`` for t in units (epochs, or fractions of training).
    """

    start: float
    end: float
    length: float
    shape: str = "linear"

    def __post_init__(self):
        if self.shape not in SCHEDULE_SHAPES:
            raise ValueError(f"shape must be one of {SCHEDULE_SHAPES}, got {self.shape!r}")
        if self.length < 0:
            raise ValueError(f"length (epochs) must be >= 0, got {self.length!r}")
        if self.shape == "log" and (self.start <= 0 or self.end <= 0):
            raise ValueError(f"a 'log' schedule needs start > 0 and end > 0, got {self.start}, {self.end}")

    def value(self, t: float) -> float:
        if self.length == 0 or t >= self.length:
            return float(self.end)
        f = max(0.0, t / self.length)
        if self.shape == "log":
            return float(math.exp((1 - f) * math.log(self.start) + f * math.log(self.end)))
        return float((1 - f) * self.start + f * self.end)


def gradient_decay_warmup(start: float, end: float, epochs: float, shape: str = "log") -> Schedule:
    """beta warm-up for :func:`gradient_decay`: beta goes from ``start`` (small: fast, margin-like)
    to ``end`` over ``epochs``. The paper gives neither the form nor the values (reproduction decision)."""
    _check_range("start", start, 0.0, math.inf, True, True)
    _check_range("end", end, 0.0, math.inf, True, True)
    return Schedule(float(start), float(end), float(epochs), shape)


def delta_warmup(delta: float, ratio: float) -> Schedule:
    """delta warm-up for :func:`as_softmax`, in fractions of training: delta anneals linearly from
    1.0 (CE) to ``delta`` over the first ``ratio`` of training. Reconstruction: the official code for
    the warm-up is not public."""
    _check_range("delta", delta, 0.0, 1.0, False, False)
    _check_range("ratio", ratio, 0.0, 1.0, False, False)
    return Schedule(1.0, float(delta), float(ratio), "linear")


def as_speed_next_k(n_samples: int, n_zero: int, k_prev: int, lam: float = 1.0, k_max: int = 2) -> int:
    """AS-Speed: the next gradient-accumulation length (official README loop).

    ``k_raw = max(1, round(lam * N / (N - M)))`` with ``M`` zero-loss rows of ``N``;
    ``k = min(k_max, k_prev + 1, max(k_raw, k_prev))``: never decreases, grows by <= 1 per window.
    """
    k_raw = max(1, round(lam * n_samples / (n_samples - n_zero + 1e-8)))
    return int(min(k_max, k_prev + 1, max(k_raw, k_prev)))


# --------------------------------------------------------------------------------------------
# target-gradient profile g(p)
# --------------------------------------------------------------------------------------------


def _symmetric_logits(p: Tensor, num_classes: int) -> Tensor:
    """Logits (len(p), C) with target class 0 at probability p and equal rivals (float64)."""
    p = p.double().clamp(1e-12, 1 - 1e-12)
    z = torch.zeros(p.shape[0], num_classes, dtype=torch.float64)
    z[:, 0] = torch.log(p * (num_classes - 1) / (1 - p))
    return z


def _analytic_profile(name: str, p: Tensor, num_classes: int, params: dict) -> Tensor | None:
    p = p.double()
    C = num_classes
    if name == "ce":
        eps = params.get("label_smoothing", 0.0)
        return (1 - eps + eps / C) - p
    if name == "temperature":
        b = params["beta"]
        z_t = torch.log(p * (C - 1) / (1 - p))
        return b * (1 - 1 / (1 + (C - 1) * torch.exp(-b * z_t)))
    if name == "gradient_decay":
        b = params["beta"]
        return (1 - p) / (1 - (1 - b) * p)
    if name == "sgt":
        a, eps = params["alpha"], params.get("label_smoothing", 0.0)
        pa = p**a
        rival = ((1 - p) / (C - 1)) ** a
        return (1 - eps + eps / C) - pa / (pa + (C - 1) * rival)
    if name == "as_softmax":
        d = params["delta"]
        rival = (1 - p) / (C - 1)
        return torch.where(p - rival <= d, 1 - p, torch.zeros_like(p))
    return None


def target_gradient_profile(
    name: str, p, num_classes: int = 10, method: str = "auto", noise_points: int = 64, **params
) -> Tensor:
    """Magnitude of ``dL/dz_t`` as a function of the target probability ``p`` (the book's g(p)).

    Evaluated at logits whose rivals are all equal (``C = num_classes``), so ``p`` fixes the point.
    ``method``: 'analytic' (ce, temperature, gradient_decay, sgt, as_softmax), 'autograd'
    (any loss, and 'noisy': Noisy Softmax's expected gradient, averaged over ``noise_points``
    quantiles of the half-normal noise; params ``alpha`` and ``scale``, the value of
    ``|W_y||x|(1 - cos theta)``), or 'auto' (analytic where available). Returns float64 ``(len(p),)``.
    """
    if method not in ("auto", "analytic", "autograd"):
        raise ValueError(f"method must be one of ('auto', 'analytic', 'autograd'), got {method!r}")
    p = torch.as_tensor(p, dtype=torch.float64).reshape(-1)
    if name == "noisy":
        alpha, scale = float(params.get("alpha", 0.1)), float(params.get("scale", 1.0))
        z = _symmetric_logits(p, num_classes)
        # deterministic quadrature: mid-quantiles of |xi| for xi ~ N(0, 1)
        u = (torch.arange(noise_points, dtype=torch.float64) + 0.5) / noise_points
        absxi = torch.special.ndtri(0.5 + 0.5 * u)
        zz = z.unsqueeze(1).repeat(1, noise_points, 1)
        zz[:, :, 0] -= alpha * scale * absxi
        q = torch.softmax(zz, dim=2)[:, :, 0]
        return (1 - q).mean(dim=1)
    spec = _spec(name)
    full = {**spec.params, **params}
    if method in ("auto", "analytic"):
        out = _analytic_profile(name, p, num_classes, full)
        if out is not None:
            return out
        if method == "analytic":
            raise ValueError(f"no analytic profile for loss {name!r}; use method='autograd'")
    z = _symmetric_logits(p, num_classes).requires_grad_(True)
    target = torch.zeros(z.shape[0], dtype=torch.long)
    spec.fn(z, target, **full).sum().backward()
    return -z.grad[:, 0]


def identity_errors(n: int = 64, num_classes: int = 10, seed: int = 0) -> dict[str, float]:
    """Max-abs errors of SPEC's identities on random float64 logits (the book's numerical check).

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
    for name, params in (("temperature", {"beta": 1.0}), ("gradient_decay", {"beta": 1.0}), ("sgt", {"alpha": 1.0}),
                         ("as_softmax", {"delta": 1.0})):
        v, gg = grad(lambda x: LOSSES[name].fn(x, t, **params))
        out[f"{name}{params} = CE"] = float(max((v - v_ce).abs().max(), (gg - g_ce).abs().max()))
    return out

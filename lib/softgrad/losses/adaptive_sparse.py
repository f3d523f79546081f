"""Adaptive Sparse Softmax (Lv et al. 2025, "AdaSS / AS-Softmax", arXiv 2508.03175; official ``as_sm.py``):
classes far below the target are masked out of the softmax, and AS-Speed accumulates gradients over more
micro-batches as more samples reach zero loss.

Keep class ``i`` iff ``p_t - p_i <= delta``; ``g = 1 - p~_t`` where the target leads every rival by at most δ,
0 beyond. The δ warm-up (:func:`delta_warmup`) is a reconstruction: the official warm-up code is not public.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .core import (Method, Param, Schedule, Warmup, ce_native, check_range, is_probability_target, per_sample,
                   per_sample_weight, prep, row_gradient, rows, softmax_logp_t, target_index,
                   use_native)

__all__ = ["as_softmax", "as_softmax_multilabel", "zero_loss_mask", "delta_warmup", "as_speed_next_k", "METHOD"]


def _as_softmax_native(z, t, weight, ignore_index, reduction, cdim, delta=0.1):
    # the official as_sm.py recipe itself: keep where (p_t - p) <= delta (ties kept), -inf elsewhere, then CE
    # (the mask from a detached view, not a no_grad block: same ops, no grad-mode switches)
    p = torch.softmax(z.detach(), cdim)
    keep = (p.gather(cdim, target_index(t, cdim, z.shape[cdim])) - p) <= delta
    # dropped classes enter as z - inf = -inf through an added constant mask: its backward node passes the
    # gradient through untouched (where's would compute a masked copy); CE's own gradient there is exactly 0
    return ce_native(z + torch.where(keep, 0.0, -math.inf), t, weight, ignore_index, reduction, cdim)



class _ASSoftmax(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z: Tensor, target: Tensor, valid: Tensor, w: Tensor, delta: float):
        idx = target.unsqueeze(1)
        p, logp_t = softmax_logp_t(z, idx)
        p_t = p.gather(1, idx)
        # Keep class i iff p_t - p_i <= delta: the official as_sm.py's comparison, written the same way (so
        # ties, p_t - p_i = 0, are kept at every delta, delta = 0 included); no gradient through the mask.
        # Three memory passes: the difference, compared in place to a 0/1 float, multiplied into p.
        keep = torch.sub(p_t, p).le_(delta)
        u = p.mul_(keep)  # p with dropped classes zeroed, in p's (private) buffer
        u.scatter_(1, idx, 0.0)  # zero the target so the sum of kept rivals has no cancellation
        s_other = u.sum(dim=1)
        p_t = p_t.squeeze(1)
        s_kept = p_t + s_other
        # loss = -log(p_t / S_kept) = log1p(S_other / p_t); exactly 0 when no rival is kept. If p_t
        # underflows to 0, every rival is kept (S_kept = 1) and the loss is -log p_t.
        tiny = torch.finfo(u.dtype).tiny
        raw = torch.where(p_t > tiny, torch.log1p(s_other / p_t.clamp(min=tiny)), -logp_t)
        zero = (raw == 0) & (valid > 0)
        ctx.save_for_backward(u, target, w, s_other, s_kept)
        ctx.mark_non_differentiable(zero)
        return raw * w, zero

    @staticmethod
    def backward(ctx, gout: Tensor, _gzero):
        u, target, w_row, s_other, s_kept = ctx.saved_tensors
        w = gout * w_row / s_kept
        # kept rivals: p_i / S_kept; target: p_t/S_kept - 1 = -S_other/S_kept (no cancellation)
        return row_gradient(u, target, w, 5, -w * s_other)



def _fused(r, delta=0.1):
    return _ASSoftmax.apply(r.z, r.target, r.valid, r.w, delta)[0]


def as_softmax(logits: Tensor, target: Tensor, delta: float = 0.1, *, weight: Tensor | None = None,
               ignore_index: int = -100, return_zero_mask: bool = False):
    """Adaptive Sparse Softmax (Lv et al., arXiv 2508.03175; official ``as_sm.py``).

    Keep class ``i`` iff ``p_t - p_i <= delta`` with ``p = softmax(z)`` (no gradient through the
    mask); the others are set to ``-inf`` and the loss is CE on the masked logits.
    ``delta = 1`` is CE. A sample whose target beats every rival by more than ``delta`` has loss and
    gradient exactly 0. Gradient ``keep_i (p~_i - 1[i=t])``, ``p~`` the softmax over kept classes.

    Ties: the mask is a comparison with a threshold, not a choice by rank, so it has no order to break: a
    rival whose probability equals the target's (``p_t - p_i = 0``) is kept at every ``delta``, ``delta = 0``
    included, and every rival exactly ``delta`` below is kept too (``<=``, as the official ``as_sm.py``
    compares). The mask compares probabilities computed in float32 (float64 for float64 logits), so logits
    that tie in bf16 tie in it.

    The target must hold class indices: the mask is defined by one target class ``t``, and the paper and its
    code define no loss for a target distribution (mixup, distillation); a class-probability target raises.

    logits ``(N, C[, d...])``, target ``(N[, d...])`` -> loss of the target's shape; with
    ``return_zero_mask`` also the bool mask of :func:`zero_loss_mask` (what AS-Speed counts).
    """
    delta = METHOD.params["delta"].check("delta", delta)
    if not return_zero_mask or is_probability_target(target):  # (the latter raises: no probability targets)
        return per_sample(METHOD, logits, target, weight, ignore_index, {"delta": delta})
    if use_native(logits):
        z, t, w, cdim = prep(logits, target, weight, ignore_index)
        raw = _as_softmax_native(z, t, None, ignore_index, "none", cdim, delta)  # unweighted, for the mask
        loss = raw if w is None else raw * per_sample_weight(z, t, w, ignore_index, cdim)
        return loss, zero_loss_mask(raw, t, ignore_index)
    r = rows(logits, target, ignore_index, weight)
    loss, zero = _ASSoftmax.apply(r.z, r.target, r.valid, r.w, delta)
    return r.out(loss), r.out(zero)



def zero_loss_mask(per_sample: Tensor, target: Tensor, ignore_index: int = -100) -> Tensor:
    """The one definition of a zero-loss sample (AS-Speed's count): not ignored and its unweighted
    method loss exactly 0. ``per_sample`` and ``target`` of the same shape -> bool of that shape."""
    return (per_sample == 0) & (target != ignore_index)



def as_softmax_multilabel(logits: Tensor, labels: Tensor, delta: float = 0.1) -> Tensor:
    """Multi-label AS-Softmax: Su's multilabel categorical CE with the AS masking.

    ``L = log(1 + sum_{i in neg, kept} e^{z_i}) + log(1 + sum_{j in pos, kept} e^{-z_j})``;
    with ``p = softmax(z)`` over all labels (no gradient): a negative ``i`` is kept iff
    ``min_pos p - p_i <= delta``, a positive ``j`` iff ``p_j - max_neg p <= delta`` (ties kept, as single-label).
    logits ``(N, C)``, labels ``(N, C)`` in {0, 1} -> ``(N,)``. ``delta = 1`` is the unmasked loss.
    """
    delta = METHOD.params["delta"].check("delta", delta)
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



def delta_warmup(delta: float, ratio: float) -> Schedule:
    """delta warm-up for :func:`as_softmax`, in fractions of training: delta anneals linearly from
    1.0 (CE) to ``delta`` over the first ``ratio`` of training. Reconstruction: the official code for
    the warm-up is not public."""
    check_range("delta", delta, 0.0, 1.0, False, False)
    check_range("ratio", ratio, 0.0, 1.0, False, False)
    return Schedule(1.0, float(delta), float(ratio), "linear")


def _warmup(cfg, params: dict):
    # Config.warmup == 'delta': from 1 (CE) to the loss's delta over the first delta_ratio of training
    s = delta_warmup(params["delta"], cfg.delta_ratio)
    return lambda t: {"delta": s.value(t / cfg.epochs)}


def as_speed_next_k(n_samples: int, n_zero: int, k_prev: int, lam: float = 1.0, k_max: int = 2) -> int:
    """AS-Speed: the next gradient-accumulation length (official README loop).

    ``k_raw = max(1, round(lam * N / (N - M)))`` with ``M`` zero-loss rows of ``N``;
    ``k = min(k_max, k_prev + 1, max(k_raw, k_prev))``: never decreases, grows by <= 1 per window.
    """
    k_raw = max(1, round(lam * n_samples / (n_samples - n_zero + 1e-8)))
    return int(min(k_max, k_prev + 1, max(k_raw, k_prev)))


def profile(p: Tensor, num_classes: int, params: dict, **_) -> Tensor:
    """``1 - p`` where the target leads the equal rivals ``(1 - p)/(C - 1)`` by at most δ, else 0."""
    d = params["delta"]
    rival = (1 - p) / (num_classes - 1)
    return torch.where(p - rival <= d, 1 - p, torch.zeros_like(p))


METHOD = Method(
    "as_softmax", as_softmax, params={"delta": Param(0.1, 0.0, 1.0)}, neutral={"delta": 1.0},
    native=_as_softmax_native, fused=_fused, profile=profile,
    no_probabilities="its mask keeps class i iff p_t - p_i <= delta for one target class t; the paper and its code "
                     "define no loss for a target distribution", warmup=Warmup("delta", "delta", _warmup),
    zero_loss=True, run={"loss": "as_softmax"}, knob={"delta": [0.05, 0.95, "linear"]}, label="AS-Softmax δ",
    color="tab:red", paper="Lv et al. 2025, arXiv 2508.03175")

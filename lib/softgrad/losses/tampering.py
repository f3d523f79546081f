"""Softmax Gradient Tampering / PowerGrad (Das, Wu, Zhu 2021, "Softmax Gradient Tampering: Decoupling the
Backward Pass for Improved Fitting", arXiv 2111.12495): a backward-only power transform of the probabilities.

Forward: ordinary CE. Backward: ``softmax(alpha log p) - q``; target profile ``1 - softmax(alpha z)_t``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .core import (REDUCTION_ENUM, Method, Param, ce_native, flatten, is_value, per_sample, per_sample_weight,
                   target_fixup, with_value)

__all__ = ["sgt", "METHOD"]


class _SGTSmoothed(torch.autograd.Function):
    """Label-smoothed SGT on rows ``z (M, C)``, ``t (M,)`` from ATen's CE pieces. Forward: ``F.cross_entropy``'s
    value (same weighting, ignoring, smoothing and reduction). Backward: ``G = dL/d(log p)`` as PyTorch forms it
    (``nll_loss_backward``, plus the smoothing term ``-(eps/C) w_c`` on valid rows), pushed through
    ``log_softmax`` *as if its output were* ``log softmax(alpha z)``: ``G - softmax(alpha z) sum(G)``, the SGT
    gradient ``a_n softmax(alpha log p) - ...`` (= the gradient of ``CE(alpha z) / alpha``, the identity (tests/test_losses.py checks it in float64))."""

    @staticmethod
    def forward(ctx, z: Tensor, t: Tensor, weight, ignore_index: int, reduction: str, alpha: float, eps: float):
        # the value is PyTorch's own label-smoothed CE; the mean's denominator is its total weight
        out = F.cross_entropy(z, t, weight=weight, ignore_index=ignore_index, reduction=reduction,
                              label_smoothing=eps)
        total_weight = (per_sample_weight(z, t, weight, ignore_index, 1).sum() if reduction == "mean"
                        else out.new_ones(()))
        ctx.save_for_backward(z, t, total_weight, *(() if weight is None else (weight,)))
        ctx.args = (ignore_index, reduction, alpha, eps)
        return out

    @staticmethod
    def backward(ctx, g: Tensor):
        z, t, total_weight, *weight = ctx.saved_tensors
        weight = weight[0] if weight else None
        ignore_index, reduction, alpha, eps = ctx.args
        la = torch.log_softmax(z if is_value(alpha, 1.0) else z * alpha, 1)
        G = torch.ops.aten.nll_loss_backward(g, la, t, weight, REDUCTION_ENUM[reduction], ignore_index, total_weight)
        # G = (1 - eps) G_nll - (eps / C) (g / total weight) valid_n w_c
        s = g * (eps / z.shape[1])
        r = (t != ignore_index).to(z.dtype) * (s / total_weight if reduction == "mean" else s)
        G = G.mul_(1.0 - eps).sub_(r.unsqueeze(1) if weight is None else r.unsqueeze(1) * weight)
        return torch.ops.aten._log_softmax_backward_data(G, la, 1, z.dtype), None, None, None, None, None, None



def _sgt_native(z, t, weight, ignore_index, reduction, cdim, alpha=1.0, label_smoothing=0.0):
    # Without smoothing: x = z (a clone, then alpha z written into it: with_value) has the value alpha z
    # (rounded as z * alpha) and dx/dz = I, so F.cross_entropy(x)'s gradient with respect to z is
    # softmax(alpha z) - onehot, the SGT gradient (that of CE(alpha z) / alpha), with its own
    # weighting, ignoring and reduction; its value is then replaced by the forward value CE(z). One extra
    # node (the clone's, which passes the gradient through), no Python Function. With smoothing, _SGTSmoothed.
    if is_value(alpha, 1.0):
        return ce_native(z, t, weight, ignore_index, reduction, cdim, label_smoothing)
    if label_smoothing:
        out = _SGTSmoothed.apply(*flatten(z, t), weight, ignore_index, reduction, alpha, label_smoothing)
        return out.reshape(t.shape) if reduction == "none" else out
    zd = z.detach()
    out = ce_native(with_value(z.clone(), zd * alpha), t, weight, ignore_index, reduction, cdim)
    return with_value(out, ce_native(zd, t, weight, ignore_index, reduction, cdim))



class _SGT(torch.autograd.Function):
    """Forward: -(1-eps) w_t log p_t - (eps/C) sum_c w_c log p_c (PyTorch's weighted label smoothing; w = 1
    without class weights). Backward: the same expression's gradient with p replaced by
    p' = softmax(alpha log p): grad = p' a_n - (1-eps) w_t onehot - (eps/C) w, a_n = (1-eps) w_t + (eps/C) sum w."""

    @staticmethod
    def forward(ctx, z: Tensor, target: Tensor, valid: Tensor, w: Tensor, weight, alpha: float, eps: float):
        logp = torch.log_softmax(z, dim=1)
        C = z.shape[1]
        nll = -logp.gather(1, target.unsqueeze(1)).squeeze(1)
        loss = (1.0 - eps) * nll * w
        if eps:
            smooth = -(logp.mean(dim=1) if weight is None else (logp * weight).sum(dim=1) / C)
            loss = loss + eps * smooth * valid
        # p' = p^alpha / sum p^alpha = softmax(alpha log p). log p <= 0, so exp(alpha log p) <= 1
        # never overflows and needs no max-subtraction; build it in place in logp's buffer (not
        # exposed to anyone) and keep the row sums, so backward is one multiply.
        e = logp.exp_() if is_value(alpha, 1.0) else logp.mul_(alpha).exp_()
        wsum = float(C) if weight is None else weight.sum()
        a = (1.0 - eps) * w + (eps / C) * wsum * valid
        ctx.save_for_backward(e, e.sum(dim=1), target, valid, w, a, *(() if weight is None else (weight,)))
        ctx.eps, ctx.weighted = eps, weight is not None
        return loss

    @staticmethod
    def backward(ctx, gout: Tensor):
        e, e_sum, target, valid, w, a, *weight = ctx.saved_tensors
        eps = ctx.eps
        grad = e * (gout * a / e_sum).unsqueeze(1)
        if eps:
            gv = (eps / e.shape[1]) * gout * valid
            grad.sub_(gv.unsqueeze(1) * weight[0] if ctx.weighted else gv.unsqueeze(1))
        return target_fixup(grad, target, -(1.0 - eps) * gout * w), None, None, None, None, None, None



def _fused(r, alpha=1.0, label_smoothing=0.0):
    return _SGT.apply(r.z, r.target, r.valid, r.w, r.weight, alpha, label_smoothing)


def sgt(logits: Tensor, target: Tensor, alpha: float = 1.0, label_smoothing: float = 0.0, *,
        weight: Tensor | None = None, ignore_index: int = -100) -> Tensor:
    """Softmax Gradient Tampering / PowerGrad (Das et al., arXiv 2111.12495).

    Forward: ordinary (label-smoothed) CE. Backward only: ``dL/dz := softmax(alpha log p) - q``
    with ``p' = p^alpha / sum_j p_j^alpha``, ``0 < alpha <= 1``; ``q = (1-eps) onehot + eps/C``
    (the official code's smoothing). Identity: ``softmax(alpha log p) = softmax(alpha z)``, so the
    gradient equals that of ``(1/alpha) CE(alpha z, q)``. logits ``(N, C[, d...])`` -> target's shape.

    A target of class probabilities ``q`` (the logits' shape; smoothed as ``(1-eps) q + eps/C``): forward
    ``CE(z, q)`` (PyTorch's class-probability CE), backward ``W softmax(alpha z) - w q`` with
    ``W = sum_c w_c q_c`` (``softmax(alpha z) - q`` without class weights): the paper's ``p' - q`` with ``q`` the
    target distribution, which is also the expectation over ``c ~ q`` of the index-target gradient. The target
    receives no gradient (the method tampers with the logits' gradient only).
    """
    alpha = METHOD.params["alpha"].check("alpha", alpha)
    eps = METHOD.params["label_smoothing"].check("label_smoothing", label_smoothing)
    return per_sample(METHOD, logits, target, weight, ignore_index, {"alpha": alpha, "label_smoothing": eps})



def _probabilities(z, q, weight, alpha=1.0):
    # as _sgt_native without smoothing (q is already smoothed): PyTorch's class-probability CE at a tensor whose
    # value is alpha z and whose Jacobian is the identity gives the gradient W softmax(alpha z) - w q; its value
    # is then replaced by CE(z, q)
    q = q.detach()
    if alpha == 1.0:
        return F.cross_entropy(z, q, weight=weight, reduction="none")
    zd = z.detach()
    out = F.cross_entropy(with_value(z.clone(), zd * alpha), q, weight=weight, reduction="none")
    return with_value(out, F.cross_entropy(zd, q, weight=weight, reduction="none"))


def profile(p: Tensor, num_classes: int, params: dict, **_) -> Tensor:
    """``g = (1 - eps + eps/C) - p^a / (p^a + (C-1) r^a)`` with equal rivals ``r = (1 - p)/(C - 1)``."""
    a, eps, C = params["alpha"], params.get("label_smoothing", 0.0), num_classes
    pa = p**a
    rival = ((1 - p) / (C - 1)) ** a
    return (1 - eps + eps / C) - pa / (pa + (C - 1) * rival)


METHOD = Method(
    "sgt", sgt, params={"alpha": Param(1.0, 0.0, 1.0, True, False), "label_smoothing": Param(0.0, 0.0, 1.0)},
    neutral={"alpha": 1.0}, native=_sgt_native, fused=_fused, probabilities=_probabilities, profile=profile, run={"loss": "sgt"},
    knob={"alpha": [0.05, 1.0, "log"]}, label="gradient tampering α", color="tab:green",
    paper="Das, Wu, Zhu 2021, arXiv 2111.12495")

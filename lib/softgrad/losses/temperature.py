"""Inverse-temperature cross-entropy (Agarwala, Pennington, Dauphin, Schoenholz 2020, "Temperature check:
theory and practice for training models with softmax-cross-entropy losses", arXiv 2010.07344).

``L = CE(beta z, t)``; gradient ``beta (softmax(beta z) - q)``; target profile ``g = beta (1 - softmax(beta z)_t)``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from .core import Method, Param, ce_native, is_value, per_sample, row_gradient, softmax_logp_t

__all__ = ["temperature_ce", "METHOD"]


def _temperature_native(z, t, weight, ignore_index, reduction, cdim, beta=1.0, label_smoothing=0.0):
    # CE(beta z): PyTorch's fused CE does the weighting, ignoring, smoothing and reduction
    return ce_native(z if is_value(beta, 1.0) else z * beta, t, weight, ignore_index, reduction, cdim, label_smoothing)



class _TemperatureCE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z: Tensor, target: Tensor, w: Tensor, beta: float) -> Tensor:
        p, logp_t = softmax_logp_t(z if is_value(beta, 1.0) else z * beta, target.unsqueeze(1))
        loss = -logp_t * w
        ctx.save_for_backward(p, target, w)
        ctx.beta = beta.reshape(-1) if isinstance(beta, Tensor) else beta  # a per-row column (M, 1) -> (M,)
        return loss

    @staticmethod
    def backward(ctx, gout: Tensor):
        p, target, w_row = ctx.saved_tensors
        return row_gradient(p, target, gout * w_row * ctx.beta, 4)



def _fused(r, beta=1.0, label_smoothing=0.0):
    return _TemperatureCE.apply(r.z, r.target, r.w, beta)


def temperature_ce(logits: Tensor, target: Tensor, beta: float = 1.0, label_smoothing: float = 0.0, *,
                   weight: Tensor | None = None, ignore_index: int = -100) -> Tensor:
    """Inverse-temperature cross-entropy ``L = CE(beta * z, t)`` (Agarwala et al., arXiv 2010.07344).

    Gradient ``beta * (softmax(beta z) - q)``; target profile ``g = beta (1 - softmax(beta z)_t)``.
    logits ``(N, C[, d...])``, target ``(N[, d...])`` -> target's shape; ``beta > 0``; ``beta = 1`` is CE.
    With ``label_smoothing`` it is ``F.cross_entropy(beta * z, t, label_smoothing=eps)``. A target of class
    probabilities ``q`` (the logits' shape) gives ``CE(beta z, q)``, PyTorch's class-probability CE at ``beta z``
    (``weight`` per class term, ``q`` smoothed as ``(1-eps) q + eps/C``); gradient ``beta (W softmax(beta z) - w q)``
    with ``W = sum_c w_c q_c``.
    """
    beta = METHOD.params["beta"].check("beta", beta)
    eps = METHOD.params["label_smoothing"].check("label_smoothing", label_smoothing)
    return per_sample(METHOD, logits, target, weight, ignore_index, {"beta": beta, "label_smoothing": eps})



def _probabilities(z, q, weight, beta=1.0):
    return F.cross_entropy(z * beta if beta != 1.0 else z, q, weight=weight, reduction="none")


def profile(p: Tensor, num_classes: int, params: dict, **_) -> Tensor:
    """``g = beta (1 - softmax(beta z)_t)`` at the logits where rivals are equal and ``softmax(z)_t = p``."""
    b, C = params["beta"], num_classes
    z_t = torch.log(p * (C - 1) / (1 - p))
    return b * (1 - 1 / (1 + (C - 1) * torch.exp(-b * z_t)))


METHOD = Method(
    "temperature", temperature_ce,
    params={"beta": Param(1.0, 0.0, math.inf, True, True), "label_smoothing": Param(0.0, 0.0, 1.0)},
    neutral={"beta": 1.0}, native=_temperature_native, fused=_fused, probabilities=_probabilities,
    native_only=lambda params: bool(params.get("label_smoothing")),  # the fused Function has no smoothing
    profile=profile, run={"loss": "temperature"}, knob={"beta": [0.25, 4.0, "log"]},
    label="inverse temperature β", color="tab:blue", paper="Agarwala et al. 2020, arXiv 2010.07344")

"""Plain softmax cross-entropy: the baseline every method is measured against. ``g(p_t) = 1 - p_t``."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from .core import Method, Param, ce_native, per_sample

__all__ = ["cross_entropy", "METHOD"]


def cross_entropy(logits: Tensor, target: Tensor, label_smoothing: float = 0.0, *, weight: Tensor | None = None,
                  ignore_index: int = -100) -> Tensor:
    """Plain softmax cross-entropy, ``-sum_i q_i log softmax(z)_i``; equals ``F.cross_entropy(reduction='none')``.

    logits ``(N, C[, d...])``, target ``(N[, d...])`` -> target's shape. ``q = (1-eps) onehot + eps/C``.
    A target of class probabilities (the logits' shape; mixup, cutmix, distillation) is PyTorch's:
    ``-sum_c w_c q_c log p_c`` with ``q = (1-eps) target + eps/C``. Target-gradient profile: ``g(p) = 1 - p``
    (without smoothing).
    """
    eps = METHOD.params["label_smoothing"].check("label_smoothing", label_smoothing)
    return per_sample(METHOD, logits, target, weight, ignore_index, {"label_smoothing": eps})


def _probabilities(z, q, weight):
    # PyTorch's own class-probability cross-entropy (q already smoothed)
    return F.cross_entropy(z, q, weight=weight, reduction="none")


def profile(p: Tensor, num_classes: int, params: dict, **_) -> Tensor:
    """``g(p) = (1 - eps + eps/C) - p``: the target keeps (1 - eps + eps/C) of the smoothed target mass."""
    eps = params.get("label_smoothing", 0.0)
    return (1 - eps + eps / num_classes) - p


METHOD = Method(
    "ce", cross_entropy, params={"label_smoothing": Param(0.0, 0.0, 1.0)}, neutral={"label_smoothing": 0.0},
    native=ce_native, probabilities=_probabilities, profile=profile, run={"loss": "ce"}, knob={}, label="cross-entropy", color="black",
    paper="baseline")

"""Noisy Softmax (Chen, Deng, Du, CVPR 2017, arXiv 1708.03769): annealed noise on the target logit.

The noise depends on the last layer's weights and the features, so the method is a classifier head
(:class:`NoisySoftmaxHead`) whose perturbed logits feed plain cross-entropy, not a loss function.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .losses import _check_range

__all__ = ["NOISE_KINDS", "NOISE_SIGNS", "noisy_logits", "NoisySoftmaxHead"]

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

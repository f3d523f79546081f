"""Noisy Softmax (Chen, Deng, Du, CVPR 2017, "Noisy Softmax: Improving the Generalization Ability of DCNN via
Postponing the Early Softmax Saturation", arXiv 1708.03769): annealed noise on the target logit.

The noise depends on the last layer's weights and the features, so the method is a classifier head
(:class:`NoisySoftmaxHead`) whose perturbed logits feed plain cross-entropy, not a loss function. Its
expected target-gradient profile (:func:`profile`) averages over the noise by quadrature.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .core import Method, Param, symmetric_logits

__all__ = ["NOISE_KINDS", "NOISE_SIGNS", "check_noise", "noisy_logits", "NoisySoftmaxHead", "METHOD"]

PARAMS = {"alpha": Param(0.1, 0.0, math.inf, False, True), "noise_std": Param(1.0, 0.0, math.inf, False, True)}
NOISE_KINDS = ("annealed", "amplitude", "free")
NOISE_SIGNS = ("positive", "gaussian", "negative")


def check_noise(alpha, noise: str, sign: str, noise_std) -> tuple[float, float]:
    """The head's settings checked against their declarations; returns ``(alpha, noise_std)`` as floats."""
    alpha = PARAMS["alpha"].check("alpha", alpha)
    noise_std = PARAMS["noise_std"].check("noise_std", noise_std)
    if noise not in NOISE_KINDS:
        raise ValueError(f"noise must be one of {NOISE_KINDS}, got {noise!r}")
    if sign not in NOISE_SIGNS:
        raise ValueError(f"sign must be one of {NOISE_SIGNS}, got {sign!r}")
    return alpha, noise_std


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

    ``target`` must hold class indices: the method perturbs the target class's logit, and a target of class
    probabilities (mixup, distillation) names no single class; the paper defines no other form. The perturbed
    logits themselves can feed any loss, class-probability CE included.
    """
    alpha, noise_std = check_noise(alpha, noise, sign, noise_std)
    if not isinstance(target, Tensor) or target.is_floating_point() or target.is_complex():
        got = f"dtype {target.dtype}" if isinstance(target, Tensor) else repr(type(target).__name__)
        raise ValueError(f"target must be an integer tensor of class indices for Noisy Softmax (it perturbs the "
                         f"target class's logit; a distribution names no single class), got {got}")
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
        check_noise(alpha, noise, sign, noise_std)
        if alpha != 0:
            # Numerics version 1: the first versions validated the settings with a dummy call, which drew one
            # N(0, 1) value from the global generator; the draw stays, so that training noise (drawn from the
            # same generator) and every committed result stay bitwise unchanged.
            torch.randn((1,), dtype=torch.float32)

    def forward(self, features: Tensor, target: Tensor | None = None) -> Tensor:
        if not self.training or target is None or self.alpha == 0:
            return features @ self.weight.t()
        return noisy_logits(features, self.weight, target, self.alpha, self.noise, self.sign,
                            self.noise_std, self.detach_scale)

    def extra_repr(self) -> str:
        c, d = self.weight.shape
        return f"in_features={d}, num_classes={c}, alpha={self.alpha}, noise={self.noise!r}, sign={self.sign!r}"


def profile(p: Tensor, num_classes: int, params: dict, noise_points: int = 64, **_) -> Tensor:
    """Expected ``1 - p_t(noisy z)`` with the target logit lowered by ``alpha * scale * |xi|``, ``xi ~ N(0, 1)``,
    at equal rivals; ``scale`` stands for ``|W_y||x|(1 - cos theta)`` (params ``alpha``, ``scale``).
    Deterministic quadrature over ``noise_points`` mid-quantiles of ``|xi|``."""
    alpha, scale = float(params.get("alpha", 0.1)), float(params.get("scale", 1.0))
    z = symmetric_logits(p, num_classes)
    u = (torch.arange(noise_points, dtype=torch.float64) + 0.5) / noise_points
    absxi = torch.special.ndtri(0.5 + 0.5 * u)
    zz = z.unsqueeze(1).repeat(1, noise_points, 1)
    zz[:, :, 0] -= alpha * scale * absxi
    q = torch.softmax(zz, dim=2)[:, :, 0]
    return (1 - q).mean(dim=1)


METHOD = Method(
    "noisy", None, profile=profile, run={"loss": "ce", "head_bias": False}, knob={"noise_alpha": [0.01, 0.5, "log"]},
    label="Noisy Softmax α", color="tab:purple", paper="Chen, Deng, Du 2017, arXiv 1708.03769")

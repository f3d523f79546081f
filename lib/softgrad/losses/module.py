"""The ``nn.Module`` face of the losses (``nn.CrossEntropyLoss``'s options) and the checked factory."""

from __future__ import annotations

from torch import Tensor, nn

from .core import REDUCTIONS, reduce_losses, reduced
from .registry import LOSSES, loss_method

__all__ = ["SoftmaxLoss", "make_loss"]


class SoftmaxLoss(nn.Module):
    """``nn.CrossEntropyLoss``-compatible module: ``loss(logits (N, C[, d...]), target (N[, d...]))``.

    Options as ``nn.CrossEntropyLoss``: ``weight`` (C,) (a buffer), ``ignore_index``, ``reduction``
    ('mean': the sum divided by the summed weights of non-ignored samples, so 0/0 -> nan as PyTorch;
    AS-Softmax's zero-loss samples stay in the denominator as in the official code; 'sum'; 'none'),
    and ``label_smoothing`` for the methods that define it (ce, temperature, sgt). The method's own
    parameters are keyword arguments and can change between steps (schedules) with :meth:`set_params`.

    The target holds class indices ``(N[, d...])`` or, as for ``nn.CrossEntropyLoss``, class probabilities of
    the logits' shape (timm's Mixup/CutMix, distillation): ``weight`` then multiplies each class's term,
    ``label_smoothing`` mixes the target with the uniform distribution, ``ignore_index`` does not apply, and
    'mean' divides by the number of samples. Every loss but as_softmax accepts them (each function's docstring
    gives its definition); as_softmax raises a ValueError saying why.
    """

    def __init__(self, name: str, reduction: str = "mean", ignore_index: int = -100, weight: Tensor | None = None,
                 **params):
        super().__init__()
        m = loss_method(name)
        if reduction not in REDUCTIONS:
            raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
        if isinstance(ignore_index, bool) or not isinstance(ignore_index, int):
            raise ValueError(f"ignore_index must be an int, got {ignore_index!r}")
        if weight is not None and (not isinstance(weight, Tensor) or weight.dim() != 1 or not weight.is_floating_point()):
            raise ValueError(f"weight must be a 1-D floating-point tensor of per-class weights, got {weight!r}")
        self.name, self.reduction, self.ignore_index = name, reduction, ignore_index
        self.register_buffer("weight", weight)
        self.params = m.defaults()
        self.set_params(**params)

    def set_params(self, **params) -> None:
        """Change the method's parameters, checked against the registry's declaration (names and ranges)."""
        self.params = LOSSES[self.name].check_params({**self.params, **params})

    def per_sample(self, logits: Tensor, target: Tensor) -> Tensor:
        return LOSSES[self.name].fn(logits, target, weight=self.weight, ignore_index=self.ignore_index, **self.params)

    def reduce(self, per_sample: Tensor, target: Tensor) -> Tensor:
        return reduce_losses(per_sample, target, self.weight, self.ignore_index, self.reduction)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return reduced(LOSSES[self.name], logits, target, self.weight, self.ignore_index, self.reduction, self.params)

    def extra_repr(self) -> str:
        ps = ", ".join(f"{k}={v}" for k, v in self.params.items())
        return f"name={self.name!r}, {ps + ', ' if ps else ''}reduction={self.reduction!r}"


def make_loss(name: str, reduction: str = "mean", ignore_index: int = -100, weight: Tensor | None = None,
              **params) -> SoftmaxLoss:
    """Build a loss module by name, checking the name and every parameter.

    >>> make_loss("gradient_decay", beta=0.1)
    SoftmaxLoss(name='gradient_decay', beta=0.1, reduction='mean')
    """
    return SoftmaxLoss(name, reduction=reduction, ignore_index=ignore_index, weight=weight, **params)

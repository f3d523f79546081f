"""Softmax-cross-entropy variants that change the target-gradient profile g(p_t): one file per method.

For plain cross-entropy ``dL/dz = p - q``; the gradient on the target logit has magnitude ``g(p_t) = 1 - p_t``.
Every method here changes that curve:

===================  =====================================================  ==========================
name                 per-sample loss                                        file (paper)
===================  =====================================================  ==========================
``ce``               ``-sum_i q_i log p_i``                                 ``ce.py`` (baseline)
``temperature``      ``CE(beta * z, t)``                                    ``temperature.py`` (Agarwala et al. 2020)
``gradient_decay``   ``log(beta + sum_{i!=t} exp(z_i - z_t))``              ``decay.py`` (Zhang, Xie, Chen 2022)
``noisy``            CE on the logits of :class:`NoisySoftmaxHead`          ``noisy.py`` (Chen, Deng, Du 2017)
``sgt``              forward CE; backward ``softmax(alpha log p) - q``      ``tampering.py`` (Das et al. 2021)
``as_softmax``       CE on logits with ``p_t - p_i > delta`` masked out     ``adaptive_sparse.py`` (Lv et al. 2025)
``sparse_softmax``   ``logsumexp(top-k(z)) - z_t``                          ``sparse.py`` (Sun et al. 2021)
``sparsemax``        sparsemax loss (= ``entmax.sparsemax_loss``)           ``sparse.py`` (Martins & Astudillo 2016)
``entmax15``         1.5-entmax loss (= ``entmax.entmax15_loss``)           ``sparse.py`` (Peters et al. 2019)
===================  =====================================================  ==========================

``core.py`` holds what they share: input checks, the native/fused switch (:func:`implementation`,
:func:`~.core.use_native`), the shared backward of the fused Functions and the registry's record types;
``registry.py`` lists every method's entry (:data:`METHODS`); ``module.py`` the ``nn.Module`` and factory.
The g(p) profiles are drawn by :mod:`softgrad.profiles` from each entry's ``profile``.

API, following entmax/optax/timm: a pure function per loss returning per-sample losses with the target's
shape (ignored samples get 0), a thin :class:`SoftmaxLoss` module with ``nn.CrossEntropyLoss``'s options
(``weight``, ``ignore_index``, ``reduction``, ``label_smoothing`` where the method defines it), and one
checked factory :func:`make_loss`. ``weight`` (C,) multiplies each sample's loss by ``weight[target]`` and
the mean divides by the summed weights, as in PyTorch; with label smoothing the smoothing term is weighted
per class, also as in PyTorch. Two implementations of each formula (native compositions for small inputs,
fused one-pass Functions for large ones) agree to rounding: see :mod:`softgrad.losses.core`.

A target of class probabilities (the logits' shape: mixup, cutmix, distillation) is read as PyTorch reads it
(``weight`` per class term, ``label_smoothing`` mixed into it, 'mean' over samples) by every method that
defines a loss for a distribution (each function's docstring says how); ``as_softmax`` refuses it with the
reason. Selection by rank keeps its authors' tie rule: Sparse-softmax keeps the lower class index among equal
logits (:func:`~.sparse.top_k`), on every device and dtype.
"""

from __future__ import annotations

from . import core
from .adaptive_sparse import as_softmax, as_softmax_multilabel, as_speed_next_k, delta_warmup, zero_loss_mask
from .ce import cross_entropy
from .core import IMPLEMENTATIONS, REDUCTIONS, Method, Param, Schedule, Warmup, check_targets, implementation
from .decay import gradient_decay, gradient_decay_warmup
from .module import SoftmaxLoss, make_loss
from .noisy import NoisySoftmaxHead, noisy_logits
from .registry import COMPARED, LOSSES, METHODS, loss_method, loss_params, method
from .tampering import sgt
from .sparse import entmax15, sparse_softmax, sparsemax
from .temperature import temperature_ce

__all__ = [
    "LOSSES", "METHODS", "COMPARED", "REDUCTIONS", "IMPLEMENTATIONS", "Method", "Param", "Warmup", "Schedule",
    "method", "loss_method", "loss_params", "check_targets", "implementation",
    "cross_entropy", "temperature_ce", "gradient_decay", "sgt", "as_softmax", "as_softmax_multilabel",
    "sparse_softmax", "sparsemax", "entmax15", "zero_loss_mask", "NoisySoftmaxHead", "noisy_logits",
    "gradient_decay_warmup", "delta_warmup", "as_speed_next_k", "SoftmaxLoss", "make_loss",
]


def __getattr__(name: str):
    # the size threshold lives in core (implementation() moves it); read through, never copied
    if name == "FUSED_MIN_NUMEL":
        return core.FUSED_MIN_NUMEL
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

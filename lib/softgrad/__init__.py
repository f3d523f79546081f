"""softgrad: how the softmax-cross-entropy gradient shapes training.

Modules: :mod:`softgrad.losses` (the five methods and relatives), :mod:`softgrad.data`,
:mod:`softgrad.models`, :mod:`softgrad.train`, :mod:`softgrad.config` (typed parameter files),
:mod:`softgrad.runs` (cached, resumable runs) and :mod:`softgrad.plots`.
"""

__version__ = "0.1.0"

from . import losses  # noqa: E402,F401
from .losses import make_loss, target_gradient_profile  # noqa: E402,F401

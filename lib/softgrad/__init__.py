"""softgrad: how the softmax-cross-entropy gradient shapes training.

Modules: :mod:`softgrad.losses` (the methods and relatives), :mod:`softgrad.noisy` (the Noisy Softmax head),
:mod:`softgrad.schedules` (warm-ups, AS-Speed), :mod:`softgrad.profiles` (g(p), identities), :mod:`softgrad.data`,
:mod:`softgrad.models`, :mod:`softgrad.train`, :mod:`softgrad.config` (typed parameter files),
:mod:`softgrad.store` (results on disk), :mod:`softgrad.runs` (executing runs) and :mod:`softgrad.plots`.
"""

__version__ = "0.1.0"

from . import losses  # noqa: E402,F401
from .losses import make_loss  # noqa: E402,F401
from .noisy import NoisySoftmaxHead  # noqa: E402,F401
from .profiles import target_gradient_profile  # noqa: E402,F401

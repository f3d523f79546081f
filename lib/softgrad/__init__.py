"""softgrad: how the softmax-cross-entropy gradient shapes training.

Modules: :mod:`softgrad.losses` (one file per method and its registry entry; :mod:`softgrad.noisy` and
:mod:`softgrad.schedules` re-export the Noisy Softmax head, warm-ups and AS-Speed from it),
:mod:`softgrad.profiles` (g(p), identities), :mod:`softgrad.common` (paths, verdict labels),
:mod:`softgrad.data`, :mod:`softgrad.models`, :mod:`softgrad.calibration`, :mod:`softgrad.train`,
:mod:`softgrad.config` (typed parameter files), :mod:`softgrad.store` (results on disk), :mod:`softgrad.runs`
(executing runs), :mod:`softgrad.protocol` (chapter 06's comparison), :mod:`softgrad.claims` and
:mod:`softgrad.plots`.
"""

__version__ = "0.1.0"

from . import losses  # noqa: E402,F401
from .losses import make_loss  # noqa: E402,F401
from .noisy import NoisySoftmaxHead  # noqa: E402,F401
from .profiles import target_gradient_profile  # noqa: E402,F401

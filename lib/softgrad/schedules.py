"""Schedules of loss parameters during training, and AS-Speed's accumulation rule.

Each lives with its method (:mod:`softgrad.losses.decay`, :mod:`softgrad.losses.adaptive_sparse`); this
module keeps the import path the README and chapter 09 use:

- :func:`gradient_decay_warmup`: β of :func:`~softgrad.losses.gradient_decay` from small to its target;
- :func:`delta_warmup`: δ of :func:`~softgrad.losses.as_softmax` from 1 (CE) to its target (Lv et al. 2025);
- :func:`as_speed_next_k`: AS-Speed's gradient-accumulation length from the zero-loss count.
"""

from __future__ import annotations

from .losses.adaptive_sparse import as_speed_next_k, delta_warmup
from .losses.core import SCHEDULE_SHAPES, Schedule
from .losses.decay import gradient_decay_warmup

__all__ = ["SCHEDULE_SHAPES", "Schedule", "gradient_decay_warmup", "delta_warmup", "as_speed_next_k"]

"""Schedules of loss parameters during training, and AS-Speed's accumulation rule.

- :func:`gradient_decay_warmup`: β of :func:`~softgrad.losses.gradient_decay` from small to its target;
- :func:`delta_warmup`: δ of :func:`~softgrad.losses.as_softmax` from 1 (CE) to its target (Lv et al. 2025);
- :func:`as_speed_next_k`: AS-Speed's gradient-accumulation length from the zero-loss count.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .losses import _check_range

__all__ = ["SCHEDULE_SHAPES", "Schedule", "gradient_decay_warmup", "delta_warmup", "as_speed_next_k"]

SCHEDULE_SHAPES = ("linear", "log")


@dataclass(frozen=True)
class Schedule:
    """A value moving from ``start`` to ``end`` over the first ``length`` units, then constant.

    ``shape='linear'`` interpolates linearly, ``'log'`` geometrically (linear in log-space; needs
    positive ends). ``value(t)`` for t in units (epochs, or fractions of training).
    """

    start: float
    end: float
    length: float
    shape: str = "linear"

    def __post_init__(self):
        if self.shape not in SCHEDULE_SHAPES:
            raise ValueError(f"shape must be one of {SCHEDULE_SHAPES}, got {self.shape!r}")
        if self.length < 0:
            raise ValueError(f"length (epochs) must be >= 0, got {self.length!r}")
        if self.shape == "log" and (self.start <= 0 or self.end <= 0):
            raise ValueError(f"a 'log' schedule needs start > 0 and end > 0, got {self.start}, {self.end}")

    def value(self, t: float) -> float:
        if self.length == 0 or t >= self.length:
            return float(self.end)
        f = max(0.0, t / self.length)
        if self.shape == "log":
            return float(math.exp((1 - f) * math.log(self.start) + f * math.log(self.end)))
        return float((1 - f) * self.start + f * self.end)


def gradient_decay_warmup(start: float, end: float, epochs: float, shape: str = "log") -> Schedule:
    """beta warm-up for :func:`gradient_decay`: beta goes from ``start`` (small: fast, margin-like)
    to ``end`` over ``epochs``. The paper gives neither the form nor the values (reproduction decision)."""
    _check_range("start", start, 0.0, math.inf, True, True)
    _check_range("end", end, 0.0, math.inf, True, True)
    return Schedule(float(start), float(end), float(epochs), shape)


def delta_warmup(delta: float, ratio: float) -> Schedule:
    """delta warm-up for :func:`as_softmax`, in fractions of training: delta anneals linearly from
    1.0 (CE) to ``delta`` over the first ``ratio`` of training. Reconstruction: the official code for
    the warm-up is not public."""
    _check_range("delta", delta, 0.0, 1.0, False, False)
    _check_range("ratio", ratio, 0.0, 1.0, False, False)
    return Schedule(1.0, float(delta), float(ratio), "linear")


def as_speed_next_k(n_samples: int, n_zero: int, k_prev: int, lam: float = 1.0, k_max: int = 2) -> int:
    """AS-Speed: the next gradient-accumulation length (official README loop).

    ``k_raw = max(1, round(lam * N / (N - M)))`` with ``M`` zero-loss rows of ``N``;
    ``k = min(k_max, k_prev + 1, max(k_raw, k_prev))``: never decreases, grows by <= 1 per window.
    """
    k_raw = max(1, round(lam * n_samples / (n_samples - n_zero + 1e-8)))
    return int(min(k_max, k_prev + 1, max(k_raw, k_prev)))

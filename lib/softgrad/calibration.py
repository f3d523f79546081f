"""Calibration metrics: ECE/MCE with equal-width confidence bins, reliability bins, and temperature scaling
(Guo, Pleiss, Sun, Weinberger 2017, "On Calibration of Modern Neural Networks")."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["calibration", "reliability_bins", "fit_temperature", "scaled_metrics", "scaled_examples", "half_conf"]


def _bin_sums(conf: Tensor, correct: Tensor, bins: int) -> tuple[Tensor, Tensor, Tensor]:
    """Per equal-width confidence bin ((b-1)/bins, b/bins]: sample count, sum of confidence, sum of correct."""
    # a diverged model has nan confidences: count them in the lowest bin instead of failing the run
    conf, correct = conf.double().cpu().nan_to_num(0.0).clamp(0, 1), correct.double().cpu()
    idx = (conf * bins).ceil().clamp(1, bins).long() - 1
    return (torch.bincount(idx, minlength=bins).double(), torch.bincount(idx, conf, minlength=bins),
            torch.bincount(idx, correct, minlength=bins))


def reliability_bins(conf: Tensor, correct: Tensor, bins: int = 15) -> dict:
    """Per-bin ``count``, mean ``conf`` and ``acc`` (None for empty bins) for a reliability diagram."""
    n, s_conf, s_acc = _bin_sums(conf, correct, bins)
    return {"count": n.long().tolist(),
            "conf": [round(float(c / k), 6) if k else None for c, k in zip(s_conf, n)],
            "acc": [round(float(a / k), 6) if k else None for a, k in zip(s_acc, n)]}


def calibration(conf: Tensor, correct: Tensor, bins: int = 15) -> tuple[float, float]:
    """ECE and MCE with ``bins`` equal-width confidence bins (Guo et al. 2017).

    ``ECE = sum_b |B_b|/n |acc(B_b) - conf(B_b)|``, ``MCE = max_b |acc(B_b) - conf(B_b)|`` over
    non-empty bins; bin b holds confidences in ``((b-1)/bins, b/bins]``.
    """
    n, s_conf, s_acc = _bin_sums(conf, correct, bins)
    nz = n > 0
    gap = (s_acc[nz] / n[nz] - s_conf[nz] / n[nz]).abs()
    return float((n[nz] / n.sum() * gap).sum()), float(gap.max()) if nz.any() else 0.0


def fit_temperature(logits: Tensor, y: Tensor) -> float:
    """Temperature scaling (Guo et al. 2017): the T > 0 minimising the NLL of ``softmax(logits / T)``.

    logits ``(N, C)``, y ``(N,)``. The NLL is convex in 1/T; it is minimised over log T in [log 0.05, log 20]
    (a bounded scalar search, scipy) in float64.
    """
    from scipy.optimize import minimize_scalar

    z, y = logits.detach().double().cpu(), y.cpu()

    def nll(log_t: float) -> float:
        return float(F.cross_entropy(z / math.exp(log_t), y))

    r = minimize_scalar(nll, bounds=(math.log(0.05), math.log(20.0)), method="bounded", options={"xatol": 1e-5})
    return float(math.exp(r.x))


def _scaled(logits: Tensor, y: Tensor, t: float) -> tuple[Tensor, Tensor, Tensor]:
    """(log p_y (N, 1), confidence (N,), correct (N,)) of ``softmax(logits / t)`` in float64."""
    z = logits.double() / t
    logp = torch.log_softmax(z, 1)
    conf, pred = logp.exp().max(1)
    return logp.gather(1, y[:, None]), conf, pred == y


def scaled_metrics(logits: Tensor, y: Tensor, t: float) -> dict:
    """NLL, ECE and MCE of ``softmax(logits / t)`` (accuracy does not change with t)."""
    logp_y, conf, correct = _scaled(logits, y, t)
    ece, mce = calibration(conf, correct)
    return {"nll": float(-logp_y.mean()), "ece": ece, "mce": mce}


def scaled_examples(logits: Tensor, y: Tensor, t: float) -> tuple[Tensor, Tensor, Tensor]:
    """Per example, what :func:`scaled_metrics` averages: NLL ``(N,)``, confidence ``(N,)`` (max probability)
    and correctness ``(N,)`` of ``softmax(logits / t)``, float64 (the same computation)."""
    logp_y, conf, correct = _scaled(logits, y, t)
    return -logp_y[:, 0], conf, correct


def half_conf(conf, bins: int = 15):
    """Confidences rounded to float16 inside their calibration bin: a value that rounding would carry across a
    bin edge ``b/bins`` is moved one float16 step back, so the stored confidences fall in the bins the metric
    used (:func:`calibration`; bin rule :func:`softgrad.stats.conf_bins`). Error at most one float16 step (4.9e-4
    in [0.5, 1)); nan stays nan (binned lowest, as :func:`calibration` does). ``conf``: a tensor or array
    ``(N,)``; returns a numpy float16 array."""
    import numpy as np

    from .stats import conf_bins

    c = conf.detach().double().cpu().numpy() if isinstance(conf, Tensor) else np.asarray(conf, np.float64)
    h = c.astype(np.float16)
    want = conf_bins(c, bins)
    for _ in range(2):  # one step suffices (bin edges are at least 1/bins apart); the loop asserts it
        got = conf_bins(h.astype(np.float64), bins)
        off = got != want
        if not off.any():
            return h
        toward = np.where(got[off] > want[off], -np.inf, np.inf).astype(np.float16)
        h[off] = np.nextafter(h[off], toward)
    raise AssertionError("half_conf: a float16 confidence could not be kept in its bin")

"""Statistics for paired comparisons across seeds, from maintained libraries (scipy, statsmodels).

Every comparison in the book is *paired*: seed s fixes the initialisation, the data order, the validation
split and the label noise for every method, so the unit of evidence is the per-seed difference
``d_s = x_s − y_s`` (method minus tuned CE).

- :func:`paired_difference` — mean of ``d``, a bootstrap confidence interval (``scipy.stats.bootstrap``,
  BCa) and an exact sign-flip permutation p-value (``scipy.stats.permutation_test``: 2^n sign patterns when
  ``2^n <= n_resamples``, so the p-value does not depend on a random stream).
- :func:`probability_of_improvement` — P(method beats CE on a seed), ties counted ½ (the paired analogue
  of rliable's probability of improvement; Agarwal et al. 2021), with a percentile bootstrap interval.
- :func:`holm` — Holm's step-down adjustment of a family of p-values (``statsmodels``).
- :func:`stratified_mean_interval` — the mean over tasks of the per-task mean difference, with a stratified
  bootstrap interval (each task's seeds resampled separately: ``scipy.stats.bootstrap`` with one sample per
  task; rliable's stratified bootstrap).
- :func:`expected_max` — Dodge et al. 2019: the expected best validation score of ``n`` trials drawn (with
  replacement) from the observed trials.
- :func:`verdict` — the book's rule from an interval, an adjusted p-value and an equivalence margin.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

__all__ = ["paired_difference", "probability_of_improvement", "holm", "stratified_mean_interval", "expected_max",
           "verdict", "VERDICTS"]

VERDICTS = ("reproduced", "reversed", "no detectable effect", "inconclusive at this budget")


def _bootstrap(samples: tuple, statistic, confidence: float, n_resamples: int, seed: int, method: str):
    from scipy.stats import bootstrap

    with warnings.catch_warnings():  # degenerate resamples (all equal) warn; handled below
        warnings.simplefilter("ignore")
        r = bootstrap(samples, statistic, confidence_level=confidence, n_resamples=n_resamples, method=method,
                      vectorized=True, rng=np.random.default_rng(seed))
    lo, hi = float(r.confidence_interval.low), float(r.confidence_interval.high)
    if not (math.isfinite(lo) and math.isfinite(hi)) and method != "percentile":  # BCa undefined: fall back
        return _bootstrap(samples, statistic, confidence, n_resamples, seed, "percentile")
    return lo, hi


def paired_difference(x, y, confidence: float = 0.95, n_resamples: int = 9999, seed: int = 0) -> dict:
    """Paired difference ``x − y`` over seeds: ``{'mean', 'lo', 'hi', 'p', 'n'}``.

    x, y: 1-D arrays of equal length n (one value per seed, same seed order). ``lo, hi``: BCa bootstrap
    interval of the mean difference at ``confidence``; ``p``: two-sided exact sign-flip permutation test of
    "mean difference = 0". All differences equal: the interval is that value and ``p`` is 1 when it is 0.
    """
    from scipy.stats import permutation_test

    x, y = np.asarray(x, float), np.asarray(y, float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"x and y must be 1-D arrays of equal length, got shapes {x.shape} and {y.shape}")
    if len(x) < 2:
        raise ValueError(f"a paired difference needs at least 2 seeds, got {len(x)}")
    d = x - y
    mean = float(d.mean())
    if not np.isfinite(d).all():
        return {"mean": mean, "lo": math.nan, "hi": math.nan, "p": math.nan, "n": len(d)}
    if np.ptp(d) == 0:
        return {"mean": mean, "lo": mean, "hi": mean, "p": 1.0 if mean == 0 else 2.0 ** (1 - len(d)), "n": len(d)}
    lo, hi = _bootstrap((d,), lambda s, axis: s.mean(axis=axis), confidence, n_resamples, seed, "BCa")
    p = permutation_test((x, y), lambda a, b, axis: (a - b).mean(axis=axis), permutation_type="samples",
                         vectorized=True, n_resamples=n_resamples, alternative="two-sided",
                         rng=np.random.default_rng(seed)).pvalue
    return {"mean": mean, "lo": lo, "hi": hi, "p": float(p), "n": len(d)}


def probability_of_improvement(x, y, higher_is_better: bool = True, confidence: float = 0.95,
                               n_resamples: int = 9999, seed: int = 0) -> dict:
    """P(x_s better than y_s) over paired seeds, ties ½: ``{'poi', 'lo', 'hi'}`` (percentile bootstrap)."""
    d = np.asarray(x, float) - np.asarray(y, float)
    if not higher_is_better:
        d = -d
    w = (d > 0) + 0.5 * (d == 0)
    poi = float(w.mean())
    if np.ptp(w) == 0:
        return {"poi": poi, "lo": poi, "hi": poi}
    lo, hi = _bootstrap((w,), lambda s, axis: s.mean(axis=axis), confidence, n_resamples, seed, "percentile")
    return {"poi": poi, "lo": lo, "hi": hi}


def holm(pvalues) -> np.ndarray:
    """Holm-adjusted p-values of a family (nan entries stay nan and do not count)."""
    from statsmodels.stats.multitest import multipletests

    p = np.asarray(pvalues, float)
    out = np.full_like(p, np.nan)
    ok = np.isfinite(p)
    if ok.any():
        out[ok] = multipletests(p[ok], method="holm")[1]
    return out


def stratified_mean_interval(diffs: list, confidence: float = 0.95, n_resamples: int = 9999,
                             seed: int = 0) -> dict:
    """Mean over tasks of each task's mean paired difference: ``{'mean', 'lo', 'hi', 'tasks'}``.

    diffs: one 1-D array of per-seed differences per task. The interval is a percentile bootstrap that
    resamples seeds within each task (stratified), never across tasks.
    """
    ds = [np.asarray(d, float) for d in diffs if len(d)]
    if not ds or any(not np.isfinite(d).all() for d in ds):
        return {"mean": math.nan, "lo": math.nan, "hi": math.nan, "tasks": len(ds)}
    mean = float(np.mean([d.mean() for d in ds]))
    if all(np.ptp(d) == 0 or len(d) < 2 for d in ds):
        return {"mean": mean, "lo": mean, "hi": mean, "tasks": len(ds)}

    def stat(*s, axis):
        return np.mean([x.mean(axis=axis) for x in s], axis=0)

    lo, hi = _bootstrap(tuple(ds), stat, confidence, n_resamples, seed, "percentile")
    return {"mean": mean, "lo": lo, "hi": hi, "tasks": len(ds)}


def expected_max(values, n: int) -> float:
    """Expected maximum of ``n`` draws with replacement from ``values`` (Dodge et al. 2019, eq. 1).

    With v_(1) <= ... <= v_(K) sorted: ``E[max] = sum_i v_(i) ((i/K)^n − ((i−1)/K)^n)``. nan values (a
    diverged trial) count as the worst score.
    """
    v = np.asarray(values, float)
    if n < 1 or len(v) == 0:
        raise ValueError(f"n must be >= 1 and values non-empty, got n={n}, {len(v)} values")
    finite = v[np.isfinite(v)]
    v = np.sort(np.where(np.isfinite(v), v, finite.min() if len(finite) else 0.0))
    k = len(v)
    i = np.arange(1, k + 1)
    w = (i / k) ** n - ((i - 1) / k) ** n
    return float((v * w).sum())


def verdict(lo: float, hi: float, p_adjusted: float, margin: float, higher_is_better: bool = True,
            alpha: float = 0.05) -> str:
    """The book's verdict on "the method improves on CE" from a difference interval [lo, hi] (method − CE).

    - ``reproduced``: the interval excludes 0 in the claimed direction and the adjusted p < alpha;
    - ``reversed``: the interval excludes 0 in the other direction and the adjusted p < alpha;
    - ``no detectable effect``: the whole interval lies within ±margin (an equivalence band);
    - otherwise ``inconclusive at this budget``.
    """
    if not all(math.isfinite(v) for v in (lo, hi)):
        return "inconclusive at this budget"
    if not higher_is_better:
        lo, hi = -hi, -lo
    sig = math.isfinite(p_adjusted) and p_adjusted < alpha
    if sig and lo > 0:
        return "reproduced"
    if sig and hi < 0:
        return "reversed"
    if -margin < lo and hi < margin:
        return "no detectable effect"
    return "inconclusive at this budget"

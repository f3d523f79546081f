"""Statistics of the pooled comparison (chapter 06), from maintained libraries (scipy) where they do the job.

Every comparison in the book is *paired*: trial index i fixes the seed (initialisation, data order, validation
split, label noise) and the learning rate for every method, so methods are compared on the same indices.

- :func:`selection_weights`, :func:`expected_selected` — Dodge et al. 2019's expected result of a T-trial
  random search, in closed form over a pool (without replacement, ties averaged);
- :func:`percentile_interval`, :func:`bootstrap_p` — a percentile bootstrap interval and the p-value that
  agrees with it; :func:`holm_intervals` — Holm's step-down reported as intervals;
- :func:`interval_verdict` — the book's rule from an interval and an equivalence margin;
- :func:`p_beats` — P(method beats CE) over shared random T-subsets (Bouthillier et al. 2021).
"""

from __future__ import annotations

import math

import numpy as np

from .common import VERDICTS

__all__ = ["selection_weights", "expected_selected", "percentile_interval", "bootstrap_p", "holm_intervals",
           "interval_verdict", "p_beats", "VERDICTS"]


# ----------------------------------------------------------------------------------------------------------
# Pooled trials: the selection inside the resampling (Dodge et al. 2019; Bouthillier et al. 2021)
#
# A pool of N trials per method, trial index i shared by every method (seed, split and learning-rate stratum).
# The estimand is "the test metric you get when you run a T-trial random search with this loss and keep the
# model it picks on validation": the expectation over T-subsets drawn without replacement from the pool.

_VAL_DECIMALS = 9  # validation scores are rounded before ranking: ties decided by last bits would move the
# selection with the CPU's summation order; accuracies are multiples of 1/n_val, far coarser than 1e-9


def selection_weights(val, T: int) -> np.ndarray:
    """P(trial i is the one a T-trial random search keeps), for every trial of a pool; shape of ``val``
    (..., N), computed along the last axis.

    Without replacement, the best of a random T-subset is the trial of validation rank j (ascending, 1-based)
    with probability C(j−1, T−1) / C(N, T) (Dodge et al. 2019, the without-replacement form). Tied trials
    share their ranks' probability equally (a uniform tie-break). Higher validation scores are better; nan
    (a diverged trial) ranks below every finite score.
    """
    from scipy.special import comb
    from scipy.stats import rankdata

    v = np.round(np.asarray(val, float), _VAL_DECIMALS)
    n = v.shape[-1]
    if not 1 <= T <= n:
        raise ValueError(f"T must be in [1, N={n}], got {T}")
    v = np.where(np.isfinite(v), v, -np.inf)
    j = np.arange(1, n + 1)
    w = comb(j - 1, T - 1, exact=False) / comb(n, T, exact=False)  # (N,), sums to 1
    cw = np.concatenate([[0.0], np.cumsum(w)])
    lo = rankdata(v, method="min", axis=-1).astype(int)  # the tie group occupies ranks lo..hi
    hi = rankdata(v, method="max", axis=-1).astype(int)
    return (cw[hi] - cw[lo - 1]) / (hi - lo + 1)


def expected_selected(val, test, T: int) -> np.ndarray:
    """E_T: the expected ``test`` value of the trial a T-trial random search keeps on ``val`` (closed form
    over the pool, :func:`selection_weights`); reduces the last axis."""
    t = np.asarray(test, float)
    return (selection_weights(val, T) * t).sum(axis=-1)


def percentile_interval(reps, confidence: float) -> tuple[float, float]:
    """Percentile interval of bootstrap replicates, with quantiles taken so that
    ``lo > 0  <=>  P*(rep <= 0) < a/2`` and ``hi < 0  <=>  P*(rep >= 0) < a/2`` (a = 1 − confidence):
    the interval excludes 0 exactly when the bootstrap p-value :func:`bootstrap_p` is below a."""
    r = np.asarray(reps, float)
    a = (1 - confidence) / 2
    lo = float(np.quantile(r, a, method="inverted_cdf"))
    hi = float(-np.quantile(-r, a, method="inverted_cdf"))
    return lo, hi


def bootstrap_p(reps) -> float:
    """Two-sided bootstrap p-value of "the difference is 0": 2 min(P*(rep <= 0), P*(rep >= 0)), at most 1."""
    r = np.asarray(reps, float)
    return float(min(1.0, 2 * min((r <= 0).mean(), (r >= 0).mean())))


def holm_intervals(reps_list: list, alpha: float = 0.05) -> list[dict]:
    """Holm's step-down over a family, reported as intervals that agree with it.

    Hypotheses are taken in order of :func:`bootstrap_p`; step r (1-based) tests at level
    a_r = alpha / (m − r + 1) by asking whether the (1 − a_r) :func:`percentile_interval` excludes 0. At the
    first step that does not reject, Holm stops: that hypothesis and every later one are reported with the
    interval at that step's level, which (their p-values being no smaller) contains 0. So a reported interval
    excludes 0 exactly when Holm rejects its hypothesis. Returns, in input order,
    ``{'level', 'lo', 'hi', 'p', 'rejected'}`` (level: the interval's confidence)."""
    ps = [bootstrap_p(r) for r in reps_list]
    order = sorted(range(len(ps)), key=lambda i: (ps[i], i))
    m = len(ps)
    out: list[dict] = [{}] * m
    stop_level = None
    for r, i in enumerate(order, start=1):
        level = 1 - alpha / (m - r + 1) if stop_level is None else stop_level
        lo, hi = percentile_interval(reps_list[i], level)
        rejected = stop_level is None and (lo > 0 or hi < 0)
        if stop_level is None and not rejected:
            stop_level = level
        out[i] = {"level": level, "lo": lo, "hi": hi, "p": ps[i], "rejected": rejected}
    return out


def interval_verdict(lo: float, hi: float, rejected: bool, margin: float, higher_is_better: bool = True) -> str:
    """The verdict read off a reported interval (method − CE): *no detectable effect* when the whole interval
    lies inside ±margin (whatever the test says: an effect smaller than the margin is not the effect a paper
    claims, even where the interval excludes 0), else *reproduced* / *reversed* when the test rejects (the
    interval excludes 0) on the claimed / other side, else *inconclusive at this budget*. Never contradicts
    the interval."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return VERDICTS[3]
    if not higher_is_better:
        lo, hi = -hi, -lo
    if -margin < lo and hi < margin:
        return VERDICTS[2]
    if rejected and lo > 0:
        return VERDICTS[0]
    if rejected and hi < 0:
        return VERDICTS[1]
    return VERDICTS[3]


def p_beats(val_m, test_m, val_ce, test_ce, T: int, higher_is_better: bool = True, subsets: int = 2000,
            seed: int = 0) -> np.ndarray:
    """P(method beats CE): over shared random T-subsets of the trial indices, the share in which the
    method's validation-picked trial is better on test than CE's (ties ½; Bouthillier et al. 2021).
    Inputs (..., N); the same ``subsets`` random subsets (seeded) for every leading index; returns (...)."""
    vm, tm, vc, tc = (np.asarray(a, float) for a in (val_m, test_m, val_ce, test_ce))
    n = vm.shape[-1]
    rng = np.random.default_rng(seed)
    idx = np.argsort(rng.random((subsets, n)), axis=1)[:, :T]  # (K, T): T distinct indices per subset
    jitter = rng.random((subsets, T)) * 1e-12  # uniform tie-break below the rounding of the scores

    def picked(v, t):
        vv = np.round(np.where(np.isfinite(v), v, -np.inf), _VAL_DECIMALS)[..., idx] + jitter  # (..., K, T)
        k = np.argmax(vv, axis=-1)[..., None]
        return np.take_along_axis(t[..., idx], k, axis=-1)[..., 0]  # (..., K)

    a, b = picked(vm, tm), picked(vc, tc)
    if not higher_is_better:
        a, b = -a, -b
    return ((a > b) + 0.5 * (a == b)).mean(axis=-1)

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

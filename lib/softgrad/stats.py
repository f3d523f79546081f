"""Statistics of the pooled comparison (chapter 06), from maintained libraries (scipy) where they do the job.

Every comparison in the book is *paired*: trial index i fixes the seed (initialisation, data order, validation
split, label noise) and the learning rate for every method, so methods are compared on the same indices.

- :func:`selection_weights`, :func:`expected_selected` — Dodge et al. 2019's expected result of a T-trial
  random search, in closed form over a pool (without replacement, ties averaged);
- :func:`percentile_interval`, :func:`bootstrap_p` — a percentile bootstrap interval and the p-value that
  agrees with it; :func:`holm_intervals` — Holm's step-down reported as intervals;
- :func:`interval_verdict` — the book's rule from an interval and an equivalence margin;
- :func:`p_beats` — P(method beats CE) over shared random T-subsets (Bouthillier et al. 2021);
- the two-way bootstrap over trial indices *and test examples* (:func:`example_counts`, :func:`replicate_means`,
  :func:`replicate_ece`, :func:`replicate_metric`, :func:`expected_selected_resampled`, :func:`width_ratio`): the
  intervals then cover the sampling of the test set too (section below).
"""

from __future__ import annotations

import math

import numpy as np

from .common import VERDICTS

__all__ = ["selection_weights", "expected_selected", "percentile_interval", "bootstrap_p", "holm_intervals",
           "interval_verdict", "p_beats", "VERDICTS", "ECE_BINS", "conf_bins", "trial_indices", "example_counts",
           "replicate_means", "replicate_ece", "replicate_metric", "expected_selected_resampled", "width_ratio"]


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


# ----------------------------------------------------------------------------------------------------------
# The two-way bootstrap: trial indices and test examples (issue 34)
#
# A trial index redraws seed, data order, train/validation split and learning rate, but every trial is scored on
# one test split. Resampling trial indices alone therefore leaves out the sampling of the test set, which
# Bouthillier et al. 2021 ("Accounting for Variance in Machine Learning Benchmarks", MLSys) count among the
# largest sources of variance of a benchmark. Each replicate b of the two-way bootstrap resamples both factors
# (Efron & Tibshirani 1993, "An Introduction to the Bootstrap", ch. 6 and 8, for the percentile bootstrap):
#
#   - trial indices idx[b] (N,), uniform with replacement, shared by every method (paired), as before;
#   - test examples: counts[b] (n,) ~ Multinomial(n, 1/n each), shared by every method and every trial (paired:
#     one resample of the test set scores all models);
#
# then a trial's replicate test metric is its metric on the reweighted test set, and the selection of the T-trial
# search happens inside, on validation scores that are *not* reweighted (validation is the trial's own split and
# is resampled with the trial index): E_T*[b] = expected_selected(val[idx[b]], test_b[idx[b]], T).
#
# Trials and examples are crossed (every trial is scored on every example). Resampling both factors of a crossed
# design counts the interaction (a model's own errors on an example) once with each factor, so its variance is
# slightly overstated and the intervals are slightly conservative (McCullagh 2000, "Resampling and
# exchangeable arrays", Bernoulli 6(2)); tests/test_coverage.py measures it on constructed data with a known
# population difference (two-way coverage at or a little above nominal; index-only intervals under-cover there).

ECE_BINS = 15  # as softgrad.calibration.calibration


def conf_bins(conf, bins: int = ECE_BINS) -> np.ndarray:
    """Equal-width confidence bin of each value, 0-based: bin b-1 holds ``((b-1)/bins, b/bins]``; nan counts
    as 0 (the lowest bin) and values are clipped to [0, 1]. The numpy twin of
    :func:`softgrad.calibration.calibration`'s rule, in float64 (the same operations)."""
    c = np.clip(np.nan_to_num(np.asarray(conf, np.float64), nan=0.0), 0.0, 1.0)
    return (np.clip(np.ceil(c * bins), 1, bins) - 1).astype(np.intp)


def trial_indices(n_trials: int, B: int, rng: np.random.Generator) -> np.ndarray:
    """``(B, n_trials)`` trial indices drawn uniformly with replacement, one row per bootstrap replicate (the
    protocol's index resample)."""
    return rng.integers(0, n_trials, (B, n_trials))


def example_counts(n_examples: int, B: int, rng: np.random.Generator) -> np.ndarray:
    """``(B, n)`` int: how often each test example is drawn in each replicate, one multinomial
    ``Multinomial(n, (1/n, …, 1/n))`` row per replicate (a resample of n examples with replacement); every row
    sums to n. One matrix per task, shared by every method and trial (paired)."""
    if n_examples < 1:
        raise ValueError(f"example_counts: n_examples must be >= 1, got {n_examples}")
    return rng.multinomial(n_examples, np.full(n_examples, 1.0 / n_examples), size=B)


def replicate_means(values, counts) -> np.ndarray:
    """Per replicate, the mean of each trial's per-example ``values`` over the resampled test set.

    ``values`` ``(N, n)`` (accuracy: ``correct`` as 0/1; NLL: ``nll``), ``counts`` ``(B, n)`` from
    :func:`example_counts`; returns ``(N, B)``: ``m[i, b] = Σ_j counts[b, j] values[i, j] / n``, i.e.
    ``values @ counts.T / n``. With ``counts`` all ones it is the plain mean (the stored metric)."""
    v = np.asarray(values, np.float64)
    c = np.asarray(counts, np.float64)
    if v.shape[-1] != c.shape[-1]:
        raise ValueError(f"replicate_means: values have {v.shape[-1]} examples, counts {c.shape[-1]}")
    with np.errstate(invalid="ignore", over="ignore"):  # a diverged run's NaN/inf stays NaN/inf in its own row
        return v @ c.T / c.shape[-1]


def replicate_ece(conf, correct, counts, bins: int = ECE_BINS) -> np.ndarray:
    """Per replicate, each trial's expected calibration error on the resampled test set.

    ``conf`` ``(N, n)`` (max softmax probability), ``correct`` ``(N, n)`` (bool or 0/1), ``counts`` ``(B, n)``;
    returns ``(N, B)``. With ``k(j)`` = :func:`conf_bins` of trial i's example j, and ``w = counts[b]``
    (Σ_j w_j = n):

        ECE[i, b] = Σ_k | Σ_{j: k(j)=k} w_j (conf_ij − correct_ij) | / n

    which is Guo et al.'s Σ_k |B_k|/n |acc(B_k) − conf(B_k)| on the reweighted set (the bin weight |B_k| cancels
    the bin means). Per trial: the one-hot bin matrix scaled by ``conf − correct`` ``(n, bins)``, multiplied by
    ``counts`` ``(B, n)`` → ``(B, bins)``; absolute values summed over bins. Equals
    :func:`softgrad.calibration.calibration` with ``counts`` all ones (up to summation order)."""
    cf = np.asarray(conf, np.float64)
    cr = np.asarray(correct, np.float64)
    c = np.asarray(counts, np.float64)
    if cf.shape != cr.shape or cf.shape[-1] != c.shape[-1]:
        raise ValueError(f"replicate_ece: conf {cf.shape}, correct {cr.shape} and counts {c.shape} do not match")
    n = c.shape[-1]
    k = conf_bins(cf, bins)  # (N, n)
    d = np.nan_to_num(cf, nan=0.0).clip(0.0, 1.0) - cr  # as calibration(): nan confidence counts as 0
    out = np.empty((cf.shape[0], c.shape[0]))
    onehot = np.zeros((n, bins))
    rows = np.arange(n)
    for i in range(cf.shape[0]):  # one (B, n) @ (n, bins) product per trial
        onehot[:] = 0.0
        onehot[rows, k[i]] = d[i]
        out[i] = np.abs(c @ onehot).sum(axis=1) / n
    return out


def replicate_metric(examples: dict, metric: str, counts) -> np.ndarray:
    """``(N, B)`` replicate test metric ``metric`` of N trials from their stacked per-example results
    (:func:`softgrad.store.load_examples_many`: ``correct``, ``nll``, ``conf``, ``nll_ts``, ``conf_ts`` each
    ``(N, n)``, optional ``correct_ts``). ``metric``: ``acc``, ``nll``, ``ece``, ``nll_ts`` or ``ece_ts`` (the
    protocol's metric names); accuracy and NLL by :func:`replicate_means`, ECE by :func:`replicate_ece`."""
    if metric in ("acc", "nll", "nll_ts"):
        return replicate_means(examples["correct" if metric == "acc" else metric], counts)
    if metric == "ece":
        return replicate_ece(examples["conf"], examples["correct"], counts)
    if metric == "ece_ts":
        return replicate_ece(examples["conf_ts"], examples.get("correct_ts", examples["correct"]), counts)
    raise ValueError(f"replicate_metric: metric must be acc, nll, ece, nll_ts or ece_ts, got {metric!r}")


def expected_selected_resampled(val, test, idx, T: int) -> np.ndarray:
    """``(B,)`` bootstrap replicates of E_T (:func:`expected_selected`) for one method.

    ``val`` ``(N,)``: validation scores (never reweighted); ``idx`` ``(B, N)``: the replicates' trial indices
    (:func:`trial_indices`, the same for every method); ``test`` either ``(N,)`` — the index-only bootstrap:
    ``E*[b] = expected_selected(val[idx[b]], test[idx[b]], T)`` — or ``(N, B)`` per-replicate test metrics
    (:func:`replicate_metric` with the same ``counts`` for every method) — the two-way bootstrap:
    ``E*[b] = expected_selected(val[idx[b]], test[idx[b], b], T)``. A comparison's replicates are
    ``expected_selected_resampled(method...) − expected_selected_resampled(ce...)`` with the same ``idx`` and
    ``counts``."""
    v = np.asarray(val, float)
    t = np.asarray(test, float)
    idx = np.asarray(idx)
    if t.ndim == 1:
        return expected_selected(v[idx], t[idx], T)
    if t.shape[1] != idx.shape[0]:
        raise ValueError(f"expected_selected_resampled: test has {t.shape[1]} replicates, idx {idx.shape[0]}")
    return expected_selected(v[idx], t[idx, np.arange(idx.shape[0])[:, None]], T)


def width_ratio(two_way, index_only, confidence: float = 0.95) -> float:
    """How much wider the two-way interval is: the width of :func:`percentile_interval` of the two-way
    replicates divided by that of the index-only replicates (same comparison, same index draws); 1 when the test
    set adds nothing, nan when the index-only interval has width 0."""
    lo2, hi2 = percentile_interval(two_way, confidence)
    lo1, hi1 = percentile_interval(index_only, confidence)
    w1 = hi1 - lo1
    return float((hi2 - lo2) / w1) if w1 > 0 else float("nan")

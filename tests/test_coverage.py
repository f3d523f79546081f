"""The two-way bootstrap (softgrad.stats, issue 34): its pieces, and a coverage test on constructed data with a
known population difference.

The construction (all seeded). Two methods A and B; trial i of a pool shares, between the methods, a learning
rate h_i ~ U(0, 1) and a seed effect s_i ~ N(0, 1) (common random numbers), and each method draws its own knob
k_i ~ U(0, 1) and its own seed noise e_i ~ N(0, 1). Trial quality (probit scale)

    q_i = −3 (h_i − h*)² − (k_i − 0.5)² + 0.25 s_i + 0.15 e_i,          h* = 0.4 (A), 0.6 (B)

Test example j has a difficulty per method, (z_jA, z_jB) bivariate normal, unit variances, correlation 0.3: the
methods agree on which examples are hard only in part, so *which* examples a test split holds moves the
difference of the methods (the method × example interaction Bouthillier et al. 2021 describe). The model of trial
i is right on example j with probability Φ(α + q_i + z_j) (α = 1.3 for A, 1.2 for B), one shared uniform per
(trial, example) deciding for both methods (paired models). Its population accuracy is then exactly
Φ((α + q_i)/√2) (z ~ N(0, 1)); its validation score is that plus N(0, 0.01²) (the validation split's noise).

Population truth: Δ = E_T(A) − E_T(B), E_T the population accuracy of the trial a T-trial random search keeps on
validation, computed once from a pool of 200,000 trials with the closed form (an unbiased U-statistic; its
standard error is far below the intervals' widths). Each repetition draws a pool of N = 64 trials and a test split
of n = 200 examples, computes Δ̂ on the split and its 95% percentile intervals with B = 300 replicates: index-only
(the protocol's bootstrap before issue 34) and two-way (trial indices and test examples). Over 200 repetitions
(measured 2026-12-07, seeds 0–4 of the repetitions' stream): two-way coverage 0.955–0.975 (seed 0, the test's:
0.970), index-only 0.715–0.775 (seed 0: 0.715); the two-way interval is ~1.8× wider (median width ratio
1.75–1.82). Two-way is slightly above
the nominal level, as expected: resampling both factors of a crossed design counts the interaction twice
(McCullagh 2000). Dropping the example term turns the two-way interval into the index-only one, which fails the
test's ≥ 0.90.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import norm

from softgrad import stats as S
from softgrad.calibration import calibration

N, N_TEST, T, B, REPS = 64, 200, 8, 300, 200
ALPHA, HSTAR = np.array([1.3, 1.2]), np.array([0.4, 0.6])


def _trials(rng: np.random.Generator, n_trials: int):
    """Per method (axis 0) and trial: probit quality q, population accuracy, validation score."""
    h, s = rng.random(n_trials), rng.standard_normal(n_trials)  # shared by the methods (paired)
    k, e = rng.random((2, n_trials)), rng.standard_normal((2, n_trials))  # each method's own
    q = -3.0 * (h - HSTAR[:, None]) ** 2 - (k - 0.5) ** 2 + 0.25 * s + 0.15 * e
    pop = norm.cdf((ALPHA[:, None] + q) / np.sqrt(2.0))  # E_z Φ(a + z) = Φ(a / √2) for z ~ N(0, 1)
    return q, pop, pop + 0.01 * rng.standard_normal((2, n_trials))


def _truth() -> float:
    _, pop, val = _trials(np.random.default_rng(123), 200_000)
    return float(S.expected_selected(val[0], pop[0], T) - S.expected_selected(val[1], pop[1], T))


def _repetition(rng: np.random.Generator):
    q, _, val = _trials(rng, N)
    z = rng.standard_normal((2, N_TEST))
    z[1] = 0.3 * z[0] + np.sqrt(1 - 0.3 ** 2) * z[1]
    u = rng.random((N, N_TEST))  # one uniform per (trial, example), shared by the methods
    correct = u < norm.cdf(ALPHA[:, None, None] + q[:, :, None] + z[:, None, :])  # (2, N, n)
    acc = correct.mean(axis=2)
    est = S.expected_selected(val[0], acc[0], T) - S.expected_selected(val[1], acc[1], T)
    idx, counts = S.trial_indices(N, B, rng), S.example_counts(N_TEST, B, rng)  # shared by both methods
    index_only = (S.expected_selected_resampled(val[0], acc[0], idx, T)
                  - S.expected_selected_resampled(val[1], acc[1], idx, T))
    two_way = (S.expected_selected_resampled(val[0], S.replicate_means(correct[0], counts), idx, T)
               - S.expected_selected_resampled(val[1], S.replicate_means(correct[1], counts), idx, T))
    return est, S.percentile_interval(index_only, 0.95), S.percentile_interval(two_way, 0.95), \
        S.width_ratio(two_way, index_only)


def test_two_way_intervals_cover_the_population_difference_where_index_only_ones_do_not():
    truth = _truth()
    rng = np.random.default_rng(0)
    res = [_repetition(rng) for _ in range(REPS)]
    est = np.array([r[0] for r in res])
    one, two = np.array([r[1] for r in res]), np.array([r[2] for r in res])
    ratio = np.array([r[3] for r in res])
    cover = lambda iv: float(np.mean((iv[:, 0] <= truth) & (truth <= iv[:, 1])))  # noqa: E731
    c_two, c_one = cover(two), cover(one)
    print(f"truth {truth:+.4f}; two-way coverage {c_two:.3f}, index-only {c_one:.3f}; "
          f"median width ratio {np.median(ratio):.2f}")
    assert 0.01 < truth < 0.03  # a real difference, not 0 by symmetry
    assert abs(est.mean() - truth) < 3 * est.std() / np.sqrt(REPS)  # the estimator is unbiased here
    assert c_two >= 0.90, f"two-way intervals under-cover: {c_two:.3f}"
    assert c_one < 0.85, f"index-only intervals should under-cover in this regime: {c_one:.3f}"
    assert np.all(ratio > 1) and 1.3 < np.median(ratio) < 2.5


# ------------------------------------------------------------------ the pieces


def test_example_counts_are_multinomial_resamples():
    c = S.example_counts(50, 400, np.random.default_rng(1))
    assert c.shape == (400, 50) and c.dtype.kind == "i" and (c.sum(axis=1) == 50).all()
    assert abs(c.mean() - 1) < 1e-12 and abs(c.var() - (1 - 1 / 50)) < 0.05  # Multinomial(n, 1/n): var 1 − 1/n
    with pytest.raises(ValueError):
        S.example_counts(0, 3, np.random.default_rng(0))


def test_replicate_means_and_ece_equal_the_metrics_on_explicit_resamples():
    rng = np.random.default_rng(2)
    n_trials, n = 5, 120
    conf = rng.uniform(0.1, 1.0, (n_trials, n))
    conf[0, :3] = [1 / 15, 2 / 15, 1.0]  # on bin edges
    conf[1, 0] = np.nan  # a diverged model: the lowest bin, as calibration() counts it
    correct = rng.random((n_trials, n)) < conf
    nll = rng.exponential(0.3, (n_trials, n))
    counts = S.example_counts(n, 7, rng)
    ones = np.ones((1, n), int)
    m = S.replicate_means(nll, counts)
    e = S.replicate_ece(conf, correct, counts)
    assert m.shape == e.shape == (n_trials, 7)
    for i in range(n_trials):
        ece0, _ = calibration(torch.tensor(conf[i]), torch.tensor(correct[i]))
        assert S.replicate_ece(conf[i:i + 1], correct[i:i + 1], ones)[0, 0] == pytest.approx(ece0, abs=1e-12)
        assert S.replicate_means(correct[i:i + 1], ones)[0, 0] == correct[i].mean()
        for b in range(7):
            take = np.repeat(np.arange(n), counts[b])  # the resampled test set, written out
            ref, _ = calibration(torch.tensor(conf[i, take]), torch.tensor(correct[i, take]))
            assert e[i, b] == pytest.approx(ref, abs=1e-12)
            assert m[i, b] == pytest.approx(nll[i, take].mean(), abs=1e-12)
    ex = {"correct": correct, "nll": nll, "conf": conf, "nll_ts": nll / 2, "conf_ts": conf}
    assert np.array_equal(S.replicate_metric(ex, "acc", counts), S.replicate_means(correct, counts))
    assert np.array_equal(S.replicate_metric(ex, "ece_ts", counts), e)
    assert np.allclose(S.replicate_metric(ex, "nll_ts", counts), m / 2)
    with pytest.raises(ValueError, match="metric must be"):
        S.replicate_metric(ex, "mce", counts)


def test_conf_bins_is_calibrations_rule():
    c = np.array([0.0, 1e-9, 1 / 15, np.nextafter(1 / 15, 1), 0.5, 14 / 15, 1.0, np.nan, 1.5, -0.1])
    ref = (torch.tensor(c).nan_to_num(0.0).clamp(0, 1) * 15).ceil().clamp(1, 15).long() - 1
    assert S.conf_bins(c).tolist() == ref.tolist()


def test_resampled_expected_selected_is_the_estimand_on_each_replicate():
    rng = np.random.default_rng(3)
    val, test = rng.random(10), rng.random(10)
    reps = rng.random((10, 6))  # per-trial test metric per replicate
    idx = S.trial_indices(10, 6, rng)
    one = S.expected_selected_resampled(val, test, idx, 3)
    two = S.expected_selected_resampled(val, reps, idx, 3)
    for b in range(6):
        assert one[b] == pytest.approx(S.expected_selected(val[idx[b]], test[idx[b]], 3))
        assert two[b] == pytest.approx(S.expected_selected(val[idx[b]], reps[idx[b], b], 3))
    same = np.repeat(test[:, None], 6, axis=1)  # no example resampling: the index-only replicates
    assert np.allclose(S.expected_selected_resampled(val, same, idx, 3), one)
    assert S.width_ratio(two, one) > 0 and np.isnan(S.width_ratio(two, np.zeros(6)))

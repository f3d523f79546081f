"""The pooled-trials statistics (softgrad.stats, second half): the selection inside the resampling.

References: brute-force enumeration of every T-subset (the estimand's definition), statsmodels' Holm.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from softgrad import stats as S


def _brute(v, t, T):
    """Mean over every T-subset of the test value of its best-on-validation trial (ties: mean of the tied)."""
    out = []
    for sub in itertools.combinations(range(len(v)), T):
        sub = list(sub)
        best = max(v[i] for i in sub)
        out.append(np.mean([t[i] for i in sub if v[i] == best]))
    return float(np.mean(out))


@pytest.mark.parametrize("seed", range(40))
def test_closed_form_equals_enumeration_with_ties(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 9))
    T = int(rng.integers(1, n + 1))
    v = rng.integers(0, 3, n) / 3.0  # few distinct values: many ties
    t = rng.random(n)
    assert S.expected_selected(v, t, T) == pytest.approx(_brute(v, t, T), abs=1e-12)


def test_selection_weights_edge_cases():
    v = np.array([0.2, 0.9, 0.5, 0.9])
    w = S.selection_weights(v, 1)
    assert w == pytest.approx([0.25] * 4)  # T = 1: every trial equally likely
    assert S.selection_weights(v, 4) == pytest.approx([0, 0.5, 0, 0.5])  # T = N: the best (tied: shared)
    assert S.selection_weights(v, 2).sum() == pytest.approx(1.0)
    nan_last = S.selection_weights(np.array([np.nan, 0.1, 0.2]), 3)
    assert nan_last == pytest.approx([0, 0, 1])
    with pytest.raises(ValueError, match="T must be in"):
        S.selection_weights(v, 5)


def test_rounding_level_ties_are_ties():
    """Validation scores equal up to last bits (a CPU's summation order) select as ties."""
    v = np.array([0.9, 0.9 + 1e-15, 0.1])
    assert S.selection_weights(v, 2)[0] == S.selection_weights(v, 2)[1]


def test_selection_weights_vectorised_over_leading_axes():
    rng = np.random.default_rng(1)
    v, t = rng.integers(0, 4, (5, 7)) / 4, rng.random((5, 7))
    got = S.expected_selected(v, t, 3)
    assert got == pytest.approx([S.expected_selected(v[i], t[i], 3) for i in range(5)])


@pytest.mark.parametrize("seed", range(20))
def test_interval_excludes_zero_exactly_when_p_is_small(seed):
    rng = np.random.default_rng(seed)
    reps = np.round(rng.normal(rng.normal(0, 0.5), 0.3, 999), 2)  # rounded: many ties, some exactly 0
    p = S.bootstrap_p(reps)
    for conf in (0.8, 0.9, 0.95, 0.99, 0.995, 0.9999):
        lo, hi = S.percentile_interval(reps, conf)
        assert (lo > 0 or hi < 0) == (p < 1 - conf), (conf, lo, hi, p)


@pytest.mark.parametrize("seed", range(20))
def test_holm_intervals_agree_with_holm(seed):
    from statsmodels.stats.multitest import multipletests

    rng = np.random.default_rng(seed)
    fam = [rng.normal(rng.normal(0, 0.2), 0.1, 999) for _ in range(8)]
    got = S.holm_intervals(fam, alpha=0.05)
    ps = [g["p"] for g in got]
    ref = multipletests(ps, alpha=0.05, method="holm")[0]
    assert [g["rejected"] for g in got] == list(ref)
    for g in got:  # a reported interval excludes 0 exactly when its hypothesis is rejected
        assert (g["lo"] > 0 or g["hi"] < 0) == g["rejected"]
        assert 0.95 <= g["level"] < 1


def test_interval_verdict_rules():
    assert S.interval_verdict(0.01, 0.03, True, 0.005) == "reproduced"
    assert S.interval_verdict(-0.03, -0.01, True, 0.005) == "reversed"
    assert S.interval_verdict(-0.03, -0.01, True, 0.005, higher_is_better=False) == "reproduced"
    assert S.interval_verdict(-0.002, 0.003, False, 0.005) == "no detectable effect"
    assert S.interval_verdict(-0.01, 0.03, False, 0.005) == "inconclusive at this budget"
    assert S.interval_verdict(float("nan"), 0.1, False, 0.005) == "inconclusive at this budget"
    # an interval inside the margin is no detectable effect even where it excludes 0: the effect is too small
    assert S.interval_verdict(0.001, 0.004, True, 0.005) == "no detectable effect"
    assert S.interval_verdict(-0.004, -0.001, True, 0.005) == "no detectable effect"


def test_p_beats():
    rng = np.random.default_rng(0)
    v, t = rng.random(16), rng.random(16)
    assert S.p_beats(v, t, v, t, 4) == pytest.approx(0.5)  # the same pool: every subset ties
    assert S.p_beats(v, t + 1, v, t, 4) == pytest.approx(1.0)  # better on test whatever is picked
    assert S.p_beats(v, t + 1, v, t, 4, higher_is_better=False) == pytest.approx(0.0)
    # leading axes share the subsets: a stack equals the one-by-one results
    V, Tt = rng.random((3, 16)), rng.random((3, 16))
    got = S.p_beats(V, Tt, v, t, 4)
    assert got == pytest.approx([S.p_beats(V[i], Tt[i], v, t, 4) for i in range(3)])


# ---- the pooled protocol (softgrad.pooled) on constructed pools: no training needed

import pandas as pd  # noqa: E402

from softgrad import protocol as P  # noqa: E402
from softgrad.common import interval_text, number  # noqa: E402
from softgrad.config import ConfigError  # noqa: E402

SPEC = {"tasks": {"a": {}, "b": {}}, "methods": {"ce": {}, "temperature": {"beta": [0.25, 4.0]},
                                                  "sgt": {"alpha": [0.05, 1.0]}},
        "trials": 16, "select": 4, "bootstrap": 300, "subsets": 100}


def _pool(fn, n=16, longer=4):
    """fn(task, method, i, rng) -> (val_acc, test_acc); the other metrics follow test_acc."""
    rng = np.random.default_rng(0)
    rows = []
    for t in ("a", "b"):
        for m in ("ce", "temperature", "sgt", "ce_longer"):
            for i in range(longer if m == "ce_longer" else n):
                v, a = fn(t, m, i, rng)
                rows.append({"task": t, "method": m, "trial": i, "val_acc": v, "test_acc": a, "test_nll": 1 - a,
                             "test_ece": 0.05, "test_nll_ts": 1 - a, "test_ece_ts": 0.05})
    return pd.DataFrame(rows)


def test_design_shares_the_learning_rate_and_draws_knobs_per_method():
    d = P.design(P.check_spec(SPEC))
    assert [s["lr"] for s in d["ce"]] == [s["lr"] for s in d["temperature"]] == [s["lr"] for s in d["sgt"]]
    for m, k, (lo, hi) in (("temperature", "beta", (0.25, 4.0)), ("sgt", "alpha", (0.05, 1.0))):
        u = np.log([s[k] for s in d[m]]) - np.log(lo)
        strata = np.floor(u / (np.log(hi) - np.log(lo)) * 16 + 1e-9).astype(int)
        assert sorted(np.clip(strata, 0, 15)) == list(range(16))  # one draw per stratum: a Latin hypercube column
    lrs = np.log([s["lr"] for s in d["ce"]]) - np.log(0.01)
    assert sorted(np.clip(np.floor(lrs / np.log(100) * 16 + 1e-9).astype(int), 0, 15)) == list(range(16))
    assert P.design(P.check_spec(SPEC)) == d  # seeded


def test_bootstrap_shares_indices_across_methods():
    """A method whose pool equals CE's has Δ = 0 in every replicate: interval [0, 0], no detectable effect.
    Resampling each method's indices separately would give a non-degenerate interval."""
    pool = _pool(lambda t, m, i, rng: (v := float(np.random.default_rng(i).random()), v + 0.1 * (i % 3)))
    R = P.analyse(pool, SPEC)
    c = R.comparisons
    assert (c.lo == 0).all() and (c.hi == 0).all()
    assert set(c[c.metric == "acc"].verdict) == {"no detectable effect"}
    assert c[c.metric == "acc"].p_beats.eq(0.5).all()


def test_selection_never_touches_test_metrics():
    """The trial with the best validation accuracy has the worst test accuracy: with T = N the estimand is
    exactly that trial's test accuracy, and test values do not move the selection weights."""
    def fn(t, m, i, rng):
        return (i / 100, 1 - i / 100)  # val increases with i, test decreases
    spec = {**SPEC, "select": 16}
    R = P.analyse(_pool(fn), spec)
    acc = R.comparisons[R.comparisons.metric == "acc"]
    assert np.allclose(acc.method_E, 1 - 15 / 100) and np.allclose(acc.ce_E, 1 - 15 / 100)


def test_a_clearly_better_method_is_reproduced_and_agrees_with_its_interval():
    def fn(t, m, i, rng):
        a = rng.integers(800, 900) / 1000 + (0.05 if m == "sgt" else 0.0)
        return a + rng.normal(0, 0.002), a
    R = P.analyse(_pool(fn), SPEC)
    acc = R.comparisons[(R.comparisons.metric == "acc") & (R.comparisons.method == "sgt")]
    assert set(acc.verdict) == {"reproduced"} and (acc.lo > 0).all()
    assert (acc.predicted_agreement > 0.9).all()
    for r in R.comparisons.itertuples():  # no verdict contradicts the interval printed beside it
        lo, hi = (r.lo, r.hi) if r.higher_is_better else (-r.hi, -r.lo)
        assert (r.verdict == "reproduced") == (r.rejected and lo > 0)
        assert (r.verdict == "reversed") == (r.rejected and hi < 0)
    agg = R.aggregate[(R.aggregate.method == "sgt") & (R.aggregate.metric == "acc")].iloc[0]
    assert agg.verdict == "reproduced" and agg.lo > 0
    assert set(R.convergence.task) == {"a", "b"} and (R.convergence.trials == 4).all()
    assert R.budget["T"].max() == 4


@pytest.mark.parametrize("bad,match", [
    ({"select": 40}, "select: must be <= trials"),
    ({"trials": 1}, "trials: must be an int >= 2"),
    ({"methods": {"temperature": {"beta": [0.25, 4.0]}}}, "must include 'ce'"),
    ({"bootstrap": 10}, "bootstrap: must be an int >= 100"),
    ({"retrain": True}, "retrain: unknown key"),
])
def test_spec_errors_name_the_key(bad, match):
    with pytest.raises(ConfigError, match=match):
        P.check_spec({**SPEC, **bad})


def _better_sgt(longer_gain):
    """sgt beats CE by 5 points; CE trained longer gains ``longer_gain`` on the same indices."""
    def fn(t, m, i, rng):
        a = 0.8 + 0.001 * ((7 * i) % 16) + (0.05 if m == "sgt" else 0.0)
        if m == "ce_longer":
            a = 0.8 + 0.001 * ((7 * i) % 16) + longer_gain + 0.001 * (i % 2)
        return a + 0.0001 * i, a
    return _pool(fn)


@pytest.mark.parametrize("lo,hi,verdict", [
    (-0.004, 0.004, P.CONVERGED), (0.001, 0.03, P.NOT_CONVERGED), (-0.2, -0.01, P.OVERFITS),
    (-0.01, 0.02, P.UNDETERMINED), (0.004, 0.006, P.NOT_CONVERGED)])
def test_convergence_rule(lo, hi, verdict):
    assert P.convergence_verdict(lo, hi, 0.005) == verdict


def test_a_gain_over_an_unconverged_ce_is_not_counted():
    """The same pool of sgt beating CE: reproduced when CE gains nothing from longer training, reported as
    inconclusive (and flagged) where CE still gains 3 points from it — per task and across tasks."""
    conv = P.analyse(_better_sgt(0.0), SPEC)
    assert set(conv.convergence.verdict) == {P.CONVERGED}
    acc = conv.comparisons[(conv.comparisons.metric == "acc") & (conv.comparisons.method == "sgt")]
    assert set(acc.verdict) == {"reproduced"} and not acc.ce_not_converged.any()
    un = P.analyse(_better_sgt(0.03), SPEC)
    assert set(un.convergence.verdict) == {P.NOT_CONVERGED}
    acc = un.comparisons[(un.comparisons.metric == "acc") & (un.comparisons.method == "sgt")]
    assert set(acc.verdict) == {"inconclusive at this budget"} and acc.ce_not_converged.all()
    assert (acc.lo > 0).all()  # the interval is unchanged; only the claim is withheld
    agg = un.aggregate[(un.aggregate.method == "sgt") & (un.aggregate.metric == "acc")].iloc[0]
    assert agg.verdict == "inconclusive at this budget" and agg.ce_not_converged


def test_winners_are_the_top_validation_trials_and_retrains_use_fresh_seeds():
    pool = _pool(lambda t, m, i, rng: (0.5 if i in (3, 9) else 0.1 * (i % 4), 0.9 - 0.01 * i))
    pool["setting"] = [{"lr": 0.1 * (r.trial + 1)} for r in pool.itertuples()]
    w = P.winners(pool)
    assert list(zip(w.task, w.method)) == [(t, m) for t in "ab" for m in ("ce", "temperature", "sgt")]
    assert (w.trial == 3).all()  # 3 and 9 tie at the top: the first index
    spec = P.check_spec({**SPEC, "retrain_seeds": 3})
    tasks = P.tasks({"dataset": "digits", "model": "mlp", "epochs": 1, "val_fraction": 0.2}, spec)
    rows, cfgs = P._retrain_configs(tasks, spec, w)
    pool_seeds = {spec["seed_base"] + i for i in range(spec["trials"])}
    assert len(cfgs) == 3 * len(w) and not {c.seed for c in cfgs} & pool_seeds
    assert {c.lr for c in cfgs} == {0.4}
    fresh = pd.DataFrame(rows).assign(test_acc=[0.8, 0.82, 0.84] * len(w))
    t = P.retrain_table(pool, fresh)
    assert np.allclose(t.own_test_acc, 0.87) and np.allclose(t.fresh_mean, 0.82)
    assert np.allclose(t.curse, 0.05) and (t.fresh_n == 3).all()


def test_a_method_without_settings_searches_its_registry_range():
    from softgrad.losses import COMPARED

    s = P.check_spec({**SPEC, "methods": {"ce": {}, "temperature": None, "sgt": {"alpha": [0.1, 1.0]}}})
    assert s["methods"]["temperature"] == COMPARED["temperature"].knob
    assert s["methods"]["sgt"] == {"alpha": [0.1, 1.0]}


def _small_effect(t, m, i, rng):
    """sgt better by 0.6 points on average with seed noise of ~1.5 points: inconclusive at N = 16."""
    a = 0.85 + rng.normal(0, 0.015) + (0.006 if m == "sgt" else 0.0)
    return a + rng.normal(0, 0.002), a


def test_power_at_the_pool_size_is_the_analysis_itself():
    pool = _pool(_small_effect)
    R = P.analyse(pool, SPEC)
    pw = P.power(pool, SPEC, [16])
    t = pd.concat([R.comparisons, R.aggregate])
    assert pw.verdicts.iloc[0] == len(t)
    assert pw.inconclusive.iloc[0] == pytest.approx((t.verdict == "inconclusive at this budget").mean())
    assert pw.predicted_agreement.iloc[0] == pytest.approx(t.predicted_agreement.mean())


def test_power_narrows_every_interval_by_the_square_root_of_the_size_ratio():
    """Four times the trial indices halve each replicate's deviation; with one method compared (one Holm
    step per task pair at worst) the intervals shrink about the same estimate, and a small true effect
    stops being inconclusive once the design is large enough."""
    pool = _pool(_small_effect)
    spec = {**SPEC, "methods": {"ce": {}, "sgt": {"alpha": [0.05, 1.0]}}}
    a = P.analyse(pool[pool.method != "temperature"], spec)
    b = P.analyse(pool[pool.method != "temperature"], spec, spread=0.5)
    assert np.allclose(a.comparisons["diff"], b.comparisons["diff"])
    assert (b.comparisons.hi - b.comparisons.lo <= a.comparisons.hi - a.comparisons.lo + 1e-12).all()
    pw = P.power(pool[pool.method != "temperature"], spec, [16, 64, 4096])
    assert pw.inconclusive.iloc[-1] < pw.inconclusive.iloc[0]


def test_spread_ratio_follows_one_over_root_n_on_iid_trials():
    rng = np.random.default_rng(1)
    pool = _pool(lambda t, m, i, _: (v := rng.random(), 0.8 + 0.1 * rng.random() + 0.01 * v), n=64)
    spec = {**SPEC, "trials": 64, "bootstrap": 400}
    sr = P.spread_ratio(pool, spec, 16, draws=30)
    assert (sr.predicted == 2.0).all()
    assert 1.7 < sr.ratio.median() < 2.3
    with pytest.raises(ValueError, match="size"):
        P.spread_ratio(pool, spec, 2)


# ---- the convergence gate reads the models the estimand selects (issue 28)

def _lr_pool(top_gain, low_gain, n=16):
    """CE and sgt pools whose accuracy rises with the trial's learning-rate quality (i % 8: 0 worst, 7 best);
    CE trained longer on every index gains ``top_gain`` on the good settings (quality >= 4, which a 4-trial
    search keeps 96% of the time) and ``low_gain`` on the rest."""
    def acc(i):
        return 0.80 + 0.02 * (i % 8) + 0.001 * (i // 8)

    def fn(t, m, i, rng):
        a = acc(i)
        if m == "ce_longer":
            a += top_gain if i % 8 >= 4 else low_gain
        return a + 0.0001 * (i % 3), a
    return _pool(fn, n=n, longer=n)


def test_gate_ignores_gains_of_trials_the_search_never_keeps():
    """Longer training lifts only the low-learning-rate trials (by 1.5 points, not enough to reach the good
    ones): E_T barely moves, so CE has converged — a mean over the indices would have said it had not."""
    R = P.analyse(_lr_pool(0.0, 0.015), SPEC)
    assert set(R.convergence.verdict) == {P.CONVERGED}
    assert (R.convergence["diff"].abs() < 0.001).all()
    p = _lr_pool(0.0, 0.015)
    naive = (p[p.method == "ce_longer"].test_acc.to_numpy() - p[p.method == "ce"].test_acc.to_numpy()).mean()
    assert naive > 0.005  # the mean gain over indices: above the 0.5-point margin


def test_gate_flags_gains_of_the_trials_the_search_keeps():
    R = P.analyse(_lr_pool(0.01, 0.0), SPEC)
    assert set(R.convergence.verdict) == {P.NOT_CONVERGED}
    assert np.allclose(R.convergence["diff"], 0.01, atol=2e-3)
    hurt = P.analyse(_lr_pool(-0.01, 0.0), SPEC)
    assert set(hurt.convergence.verdict) == {P.OVERFITS}


def test_longer_trials_are_the_top_ranks_carrying_the_weight():
    pool = _lr_pool(0.0, 0.0)
    spec = P.check_spec(SPEC)
    chosen = P.longer_trials(pool[pool.method == "ce"], spec)
    w = S.selection_weights(np.arange(16.0), 4)[::-1].cumsum()
    k = int(np.searchsorted(w, 0.9) + 1)
    assert P._top_share(16, 4, 0.9) == k
    for t, idx in chosen.items():
        g = pool[(pool.task == t) & (pool.method == "ce")].sort_values("val_acc", ascending=False)
        assert idx == sorted(g.trial.iloc[:k])
        ws = S.selection_weights(g.sort_values("trial").val_acc.to_numpy(), 4)
        assert ws[idx].sum() >= 0.9


# ---- margins, bounds and stability beside every interval

def test_per_task_margins_and_the_bound_each_interval_excludes():
    spec = {**SPEC, "margins": {"acc": {"a": 0.002, "b": 0.006}}}
    R = P.analyse(_pool(_small_effect), spec)
    acc = R.comparisons[R.comparisons.metric == "acc"]
    assert dict(zip(acc.task, acc.margin)) == {"a": 0.002, "b": 0.006}
    agg = R.aggregate[R.aggregate.metric == "acc"]
    assert np.allclose(agg.margin, 0.004) and P.margin(P.check_spec(spec), "acc") == pytest.approx(0.004)
    for r in pd.concat([R.comparisons, R.aggregate]).itertuples():
        txt = P.bound_text(r, 100, " pts")
        best = r.hi if r.higher_is_better else r.lo
        assert f"{number(100 * best, sign=True)} pts" in txt and r.best == best
        assert ("gain" in txt) == r.higher_is_better
        assert 0 <= r.predicted_agreement <= 1 and r.fragile == (r.predicted_agreement < 0.8)
        v = S.interval_verdict(r.lo, r.hi, r.lo > 0 or r.hi < 0, r.margin, r.higher_is_better)
        assert v == r.verdict or (r.verdict == S.VERDICTS[3] and r.ce_not_converged)  # never contradicts
    assert R.replicate_verdicts.shape == (len(R.comparisons) + len(R.aggregate), spec["bootstrap"])


def test_bound_text():
    row = pd.Series({"lo": -0.004, "hi": 0.006, "higher_is_better": True})
    assert P.bound_text(row, 100, " pts") == "rules out a gain above +0.60 pts"
    assert P.bound_text(row.replace(0.006, -0.001), 100, " pts") == "rules out any gain (Δ < −0.10 pts)"
    nll = pd.Series({"lo": -0.03, "hi": 0.01, "higher_is_better": False})
    assert P.bound_text(nll) == "rules out a reduction beyond −0.03"


def test_one_number_format():
    """Every interval and number in the book: points for accuracy and ECE, two decimals, a true minus sign,
    no "nan" or "-0.00" (softgrad.common)."""
    assert interval_text(-0.0001, -0.0028, 0.0024, "acc", unit=" pts") == "−0.01 [−0.28, +0.24] pts"
    assert interval_text(-0.031, -0.05, -0.01, "nll") == "−0.03 [−0.05, −0.01]"
    assert interval_text(1.87, 1.8, 1.95, sign=False) == "1.87 [1.80, 1.95]"
    assert interval_text(None, float("nan"), 1.0) == "n/a [n/a, +1.00]"
    assert number(-0.00001, sign=True) == "0.00" and number(0.8333333, sig=2) == "0.83" and number(100, sig=2) == "100"
    r = pd.Series({"diff": 0.0012, "lo": -0.002, "hi": 0.004, "metric": "ece_ts"})
    assert P.ci_text(r) == "+0.12 [−0.20, +0.40]"


# ---- split halves: two independent pools of N/2 agree as the bootstrap predicts

def _iid_effects(seed, n=64):
    rng = np.random.default_rng(seed)
    eff = {"ce": 0.0, "ce_longer": 0.0, "temperature": 0.004, "sgt": 0.012}

    def fn(t, m, i, _):
        a = 0.85 + rng.normal(0, 0.01) + eff[m]
        return a + rng.normal(0, 0.003), a
    return _pool(fn, n=n)


def test_split_half_agreement_falls_in_the_predicted_band():
    spec = {**SPEC, "trials": 64, "select": 4, "bootstrap": 300, "subsets": 50}
    inside, gaps = 0, []
    for seed in range(6):
        sh = P.split_half(_iid_effects(seed), spec, pairs=1000)
        lo, hi = sh["band"]
        assert 0 <= lo <= sh["predicted"] <= hi <= 1 and sh["n"] == 2 * len(P.METRICS) * 2 + 2 * len(P.METRICS)
        inside += lo <= sh["rate"] <= hi
        gaps.append(sh["rate"] - sh["predicted"])
    assert inside >= 5  # a 95% band: at most one of six pools outside it
    assert abs(np.mean(gaps)) < 0.1  # on average the prediction matches the measurement

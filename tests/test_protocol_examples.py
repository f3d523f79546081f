"""Chapter 06's intervals cover the test set: the protocol's two-way bootstrap (trial indices × test examples) on
constructed pools whose runs carry per-example results (``examples``), as :func:`softgrad.protocol.run` loads
them. The statistics themselves (coverage on data with a known population difference) are tested in
``tests/test_coverage.py``; here: the protocol reads them, pairs them across methods, and keeps selection on
validation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from softgrad import protocol as P
from softgrad import stats as S

SPEC = {"tasks": {"a": {}, "b": {}}, "methods": {"ce": {}, "temperature": {"beta": [0.25, 4.0]},
                                                  "sgt": {"alpha": [0.05, 1.0]}},
        "trials": 16, "select": 4, "bootstrap": 300, "subsets": 100}
N_EX = 300


def _examples(p_correct: np.ndarray, rng) -> dict:
    correct = rng.random(len(p_correct)) < p_correct
    conf = np.clip(p_correct + rng.normal(0, 0.05, len(p_correct)), 0.05, 1.0)
    nll = np.where(correct, -np.log(conf), -np.log1p(-conf + 1e-3))
    return {"correct": correct, "nll": nll.astype(np.float16), "conf": conf.astype(np.float16),
            "nll_ts": nll.astype(np.float16), "conf_ts": conf.astype(np.float16)}


def _pool(gain: float = 0.0, seed: int = 0, longer: int = 4) -> pd.DataFrame:
    """Every run scored on one test set of N_EX examples per task; example difficulty shared by all runs (so
    runs agree on most examples, as trained models do); ``gain`` added to temperature's correctness odds."""
    rng = np.random.default_rng(seed)
    rows = []
    for t in ("a", "b"):
        difficulty = rng.normal(2.0, 1.5, N_EX)
        for m in ("ce", "temperature", "sgt", "ce_longer"):
            for i in range(longer if m == "ce_longer" else 16):
                skill = rng.normal(0, 0.3) + (gain if m == "temperature" else 0.0)
                ex = _examples(1 / (1 + np.exp(-(difficulty + skill))), rng)
                acc = float(ex["correct"].mean())
                rows.append({"task": t, "method": m, "trial": i, "run_id": f"{seed}-{t}-{m}-{i}-{gain}",
                             "setting": {"lr": 0.01 * (i + 1), **({} if m.startswith("ce") else {"beta": 0.5})},
                             "val_acc": round(acc + rng.normal(0, 0.01), 4), "test_acc": acc,
                             "test_nll": float(ex["nll"].astype(float).mean()),
                             "test_ece": float(S.replicate_ece(ex["conf"][None], ex["correct"][None],
                                                               np.ones((1, N_EX), int))[0, 0]),
                             "test_nll_ts": float(ex["nll_ts"].astype(float).mean()), "test_ece_ts": 0.0,
                             "examples": ex})
    return pd.DataFrame(rows)


def test_two_way_intervals_contain_the_index_only_ones_and_keep_the_estimates():
    pool = _pool()
    two = P.analyse(pool, SPEC)
    one = P.analyse(pool, {**SPEC, "resample_examples": False})
    assert two.test_resampled and not one.test_resampled
    c2, c1 = two.comparisons, one.comparisons
    assert np.allclose(c2["diff"], c1["diff"])  # the estimates do not depend on the resampling
    acc = (c2.metric == "acc").to_numpy()
    w2, w1 = (c2.hi - c2.lo).to_numpy()[acc], (c1.hi - c1.lo).to_numpy()[acc]
    assert np.median(w2 / w1) > 1.05  # the test set's sampling noise is in the interval
    wd = P.widening(two)
    assert set(wd.task) == {"a", "b"} and (wd[wd.metric == "acc"].ratio > 1).all()


def test_without_per_example_results_the_bootstrap_is_index_only():
    pool = _pool().drop(columns="examples")
    R = P.analyse(pool, SPEC)
    base = P.analyse(_pool(), {**SPEC, "resample_examples": False})
    assert not R.test_resampled
    pd.testing.assert_frame_equal(R.comparisons, base.comparisons)
    with pytest.raises(ValueError, match="do not resample test examples"):
        P.widening(R)


def test_one_example_resample_is_shared_by_every_method():
    """A method whose runs equal CE's (same per-example results) has Δ = 0 in every two-way replicate: the
    same example draw scores both. Separate draws per method would give a non-degenerate interval."""
    pool = _pool()
    ce = pool[pool.method == "ce"]
    for m in ("temperature", "sgt"):
        idx = pool.index[pool.method == m]
        for col in ("val_acc", "test_acc", "test_nll", "test_ece", "test_nll_ts", "test_ece_ts", "examples"):
            pool.loc[idx, col] = ce[col].to_numpy()
        pool.loc[idx, "run_id"] = ce.run_id.to_numpy()
    c = P.analyse(pool, SPEC).comparisons
    assert (c.lo == 0).all() and (c.hi == 0).all()


def test_replicates_recompute_the_metric_on_the_resampled_examples():
    pool = _pool()
    spec = P.check_spec(SPEC)
    rows = pool[(pool.task == "a") & (pool.method == "ce")].sort_values("trial")
    idx = P.index_resamples(spec, ["a"], 16)["a"]
    counts = P.example_resamples(spec, pool, ["a"])["a"]
    val, test = P.replicate_values(rows, "test_acc", idx, counts)
    b, j = 7, 3
    ex = rows.examples.iloc[idx[b, j]]
    assert test[b, j] == pytest.approx(float((ex["correct"] * counts[b]).sum() / N_EX))
    assert val[b, j] == rows.val_acc.iloc[idx[b, j]]  # validation never resampled


def test_a_clear_gain_stays_reproduced_with_the_test_term():
    R = P.analyse(_pool(gain=1.0), SPEC)
    c = R.comparisons.set_index(["task", "method", "metric"])
    for t in ("a", "b"):
        assert c.loc[(t, "temperature", "acc")].verdict == "reproduced"
    assert R.aggregate.set_index(["method", "metric"]).loc[("temperature", "acc")].verdict == "reproduced"


def test_split_half_and_power_run_on_two_way_pools():
    pool = _pool()
    sh = P.split_half(pool, SPEC, pairs=200)
    assert 0 <= sh["rate"] <= 1 and sh["halves"][0].test_resampled
    pw = P.power(pool, SPEC, [16, 64])
    assert pw.inconclusive.iloc[1] <= pw.inconclusive.iloc[0] + 1e-9


def test_a_task_whose_runs_have_different_test_sets_is_an_error():
    pool = _pool()
    i = pool.index[(pool.task == "a") & (pool.method == "sgt")][0]
    pool.at[i, "examples"] = {k: v[:-1] for k, v in pool.at[i, "examples"].items()}
    with pytest.raises(ValueError, match="test sets differ"):
        P.analyse(pool, SPEC)


def test_spec_key_is_validated():
    from softgrad.config import ConfigError

    with pytest.raises(ConfigError, match="resample_examples: must be true or false"):
        P.check_spec({**SPEC, "resample_examples": "yes"})


def test_differences_name_a_verdict_that_changes_with_the_optimiser_or_the_model():
    from types import SimpleNamespace

    from softgrad.config import Config

    cfgs = {"mlp": Config(), "noise": Config(label_noise=0.4),
            "cnn_sgd": Config(dataset="mnist1d", model="cnn1d"),
            "cnn_adamw": Config(dataset="mnist1d", model="cnn1d", optimizer="adamw")}
    v = {("mlp", "sgt"): "no detectable effect", ("noise", "sgt"): "reproduced",
         ("cnn_sgd", "sgt"): "no detectable effect", ("cnn_adamw", "sgt"): "reproduced",
         ("mlp", "temperature"): "inconclusive at this budget", ("noise", "temperature"): "reversed",
         ("cnn_sgd", "temperature"): "reversed", ("cnn_adamw", "temperature"): "reversed"}
    rows = [{"task": t, "method": m, "metric": "acc", "verdict": x, "diff": 0.01, "lo": 0.002, "hi": 0.02}
            for (t, m), x in v.items()]
    R = SimpleNamespace(comparisons=pd.DataFrame(rows), aggregate=pd.DataFrame(
        [{"method": m, "metric": "acc", "verdict": "reversed"} for m in ("sgt", "temperature")]))
    d, pairs = P.differences(R, cfgs)
    assert pairs == [("mlp", "cnn_sgd", "model"), ("cnn_sgd", "cnn_adamw", "optimizer")]
    # SGT changes with the optimiser on the CNN; temperature with the model under SGD; label noise is not compared
    assert d == ["SGT: *no detectable effect* with SGD (+1.00 [+0.20, +2.00] points) but *reproduced* with AdamW "
                 "(+1.00 [+0.20, +2.00] points), on the CNN.",
                 "temperature: *inconclusive at this budget* on the MLP (+1.00 [+0.20, +2.00] points) but *reversed* "
                 "on the CNN (+1.00 [+0.20, +2.00] points), with SGD."]
    t = P.decisiveness(R).set_index("task")
    assert t.loc["mlp", "acc_inconclusive"] == 1 and t.loc["cnn_sgd", "acc_inconclusive"] == 0
    assert t.loc["all tasks", "acc_verdicts"] == 2 and t.loc["all tasks", "all_inconclusive"] == 0


def test_practice_table_reads_the_pool_for_a_practitioner():
    R = P.analyse(_pool(gain=1.0), SPEC)
    t = P.practice_table(R).set_index("method")
    assert list(t.index) == ["ce", "temperature", "sgt"]
    assert t.loc["temperature", "verdict"] == "reproduced" and t.loc["ce", "verdict"] == "the baseline"
    best = R.pool[(R.pool.task == "a") & (R.pool.method == "temperature")].sort_values(
        ["val_acc", "trial"], ascending=[False, True]).iloc[0]
    assert t.loc["temperature", "kept"].startswith(f"a: η {best.setting['lr']:.3g}, β 0.5")
    named = P.practice_table(R, labels={"a": "MNIST MLP, SGD", "b": "MNIST-1D CNN, AdamW"}).set_index("method")
    assert named.loc["temperature", "kept"].startswith(f"MNIST MLP, SGD: η {best.setting['lr']:.3g}, β 0.5; "
                                                       "MNIST-1D CNN, AdamW: η ")
    b = R.budget.set_index(["task", "method", "T"]).test_acc
    want = 100 * np.mean([b.loc[(k, "sgt", 1)] - b.loc[(k, "sgt", 4)] for k in ("a", "b")])
    assert t.loc["sgt", "untuned"] == pytest.approx(want) and want < 0  # one untuned trial does worse than T = 4
    assert np.isnan(t.loc["sgt", "curse"])  # no retrains in this pool
    assert P.practice_text(R).startswith("At this scale temperature beat cross-entropy")
    from types import SimpleNamespace

    agg = R.aggregate.copy()
    agg.loc[(agg.metric == "acc"), "verdict"] = "reversed"
    text = P.practice_text(SimpleNamespace(aggregate=agg), flagged={"sgt"})
    assert text.startswith("At this scale no loss beat cross-entropy")
    assert "Temperature and SGT lost to it (SGT: a search range was cut short" in text


def test_a_diverged_run_counts_as_the_tasks_worst_result_not_nan():
    """Eight of 16 SGT trials diverge (NaN NLL, chance accuracy): a T = 4 search keeps one only when all four of
    its trials diverged, a small but nonzero weight; NaN × weight would make E_T of NLL undefined. The diverged
    runs count as the task's worst finite NLL, so E_T stays finite and at least that of the same pool with them
    set to the best NLL (never flattering the method that diverged)."""
    pool = _pool()
    bad = pool.index[(pool.method == "sgt") & (pool.trial < 8)]
    pool.loc[bad, ["test_nll", "test_nll_ts"]] = np.nan
    pool.loc[bad, "val_acc"] = 0.1
    for i in bad:
        ex = dict(pool.at[i, "examples"])
        ex["nll"] = np.full_like(ex["nll"], np.nan)
        pool.at[i, "examples"] = ex
    for spec in (SPEC, {**SPEC, "resample_examples": False}):
        c = P.analyse(pool, spec).comparisons
        nll = c[(c.metric == "nll") & (c.method == "sgt")]
        assert np.isfinite(nll[["diff", "lo", "hi"]].to_numpy()).all()
    worst = P.worst_finite(pool, "a", "test_nll", higher_is_better=False)
    assert worst == np.nanmax(pool[pool.task == "a"].test_nll)


def test_a_failed_run_with_a_huge_finite_nll_does_not_dominate_e_t():
    """A diverged run can end with a finite but absurd NLL (1e16 was seen after SGD blew up) and a run stuck at a
    uniform prediction has an ECE near 0. A run whose validation accuracy is below ``failed_val_acc`` counts as
    the task's worst run that trained, on NLL and ECE: E_T of NLL then stays on the scale of trained runs,
    and a failed run's tiny ECE cannot flatter the method. Accuracy stays as measured."""
    pool = _pool()
    pool["run_id"] = pool.run_id + "-huge"  # other runs than the other tests' (per-example replicates are cached)
    bad = pool.index[(pool.method == "sgt") & (pool.trial < 8)]
    pool.loc[bad, "val_acc"] = 0.1
    pool.loc[bad, "test_acc"] = 0.1
    pool.loc[bad, ["test_nll", "test_nll_ts"]] = 1e16
    pool.loc[bad, "test_ece"] = 0.0
    for i in bad:
        ex = dict(pool.at[i, "examples"])
        ex["nll"] = np.full_like(ex["nll"], 6e4)  # float16's largest: "huge" in the per-example store
        pool.at[i, "examples"] = ex
    ok = pool.drop(bad)
    worst_nll = ok[ok.task == "a"].test_nll.max()
    assert P.worst_finite(pool, "a", "test_nll", False, P.check_spec(SPEC)) == worst_nll
    assert P.worst_finite(pool, "a", "test_nll", False) == 1e16  # without the rule: what the old fill gave
    for spec in (SPEC, {**SPEC, "resample_examples": False}):
        c = P.analyse(pool, spec).comparisons.set_index(["task", "method", "metric"])
        assert c.loc[("a", "sgt", "nll"), "hi"] < 10  # nats: on the scale of trained runs, not 1e16
        assert c.loc[("a", "sgt", "ece"), "diff"] > c.loc[("a", "temperature", "ece"), "diff"] - 0.05
        off = P.analyse(pool, {**spec, "failed_val_acc": 0.0}).comparisons.set_index(["task", "method", "metric"])
        assert off.loc[("a", "sgt", "nll"), "hi"] > 1e3  # the rule is what keeps it finite-sized
        assert off.loc[("a", "sgt", "acc"), "diff"] == c.loc[("a", "sgt", "acc"), "diff"]  # accuracy untouched


@pytest.mark.parametrize("key,value,match", [
    ("failed_val_acc", 1.5, r"failed_val_acc: must be a number in \[0, 1\)"),
    ("failed_val_acc", "x", r"failed_val_acc: must be a number"),
    ("max_stack", 0, r"max_stack: must be an int >= 1"),
])
def test_failure_and_stack_keys_are_checked(key, value, match):
    from softgrad.config import ConfigError

    with pytest.raises(ConfigError, match=match):
        P.check_spec({**SPEC, key: value})


def test_optimiser_text_compares_ce_across_optimisers_on_the_same_model():
    """The practitioner page's optimiser sentence: CE's E_T under each optimiser on the same data and model, with
    the interval of the difference; nothing where no two tasks differ only in the optimiser."""
    from types import SimpleNamespace as NS

    pool = _pool()
    R = P.analyse(pool, SPEC)
    cfg = lambda opt: NS(dataset="mnist1d", model="cnn1d", optimizer=opt, label_noise=0.0)  # noqa: E731
    text = P.optimiser_text(R, {"a": cfg("sgd"), "b": cfg("adamw")}, {"a": "MNIST-1D CNN, SGD"})
    ce = {t: S.expected_selected(*[pool[(pool.task == t) & (pool.method == "ce")].sort_values("trial")[c].to_numpy()
                                   for c in ("val_acc", "test_acc")], SPEC["select"]) for t in "ab"}
    assert text.startswith("on MNIST-1D CNN, CE reached ")
    assert f"{100 * ce['a']:.2f}% with SGD and {100 * ce['b']:.2f}% with AdamW" in text
    assert P.optimiser_text(R, {"a": cfg("sgd"), "b": cfg("sgd")}) == ""
    pool = pool.assign(train_time=np.where(pool.method == "sgt", 2.0, 1.0))
    assert P.time_ratios(P.analyse(pool, SPEC)).to_dict() == {"ce": 1.0, "temperature": 1.0, "sgt": 2.0}

"""The comparison protocol: statistics helpers (hand-computed cases and scipy), selection (validation only,
equal budgets, interior check), paired data (label noise, validation split) and temperature scaling."""

import itertools
import math

import numpy as np
import pandas as pd
import pytest
import torch

from softgrad import protocol as Pr
from softgrad import stats as S
from softgrad.config import Config, ConfigError
from softgrad.data import Dataset

# ------------------------------------------------------------------ statistics


def test_paired_difference_exact_permutation_p_by_hand():
    # d = [1, 2, 3, 4]: of the 16 sign patterns only all-plus and all-minus reach |mean| >= 2.5 -> p = 2/16
    x, y = np.array([1.0, 2, 3, 4]) + 10, np.full(4, 10.0)
    r = S.paired_difference(x, y)
    assert r["mean"] == pytest.approx(2.5)
    assert r["p"] == pytest.approx(2 / 16)
    assert r["lo"] <= 2.5 <= r["hi"]


def test_paired_difference_interval_is_scipy_bca_of_the_differences():
    from scipy.stats import bootstrap

    rng = np.random.default_rng(1)
    x, y = rng.normal(0.9, 0.01, 10), rng.normal(0.895, 0.01, 10)
    r = S.paired_difference(x, y, seed=3)
    ref = bootstrap((x - y,), np.mean, method="BCa", n_resamples=9999, rng=np.random.default_rng(3))
    assert (r["lo"], r["hi"]) == pytest.approx((ref.confidence_interval.low, ref.confidence_interval.high))


def test_paired_difference_is_paired_not_pooled():
    # a large seed-to-seed spread shared by both methods cancels in the paired difference
    base = np.array([0.80, 0.90, 0.85, 0.95, 0.70, 0.88, 0.91, 0.77, 0.83, 0.86])
    r = S.paired_difference(base + 0.01 + np.linspace(-1e-3, 1e-3, 10), base)
    assert r["lo"] > 0.0085 and r["hi"] < 0.0115
    assert r["p"] == pytest.approx(2 / 2**10)  # exact: only the all-plus / all-minus patterns are as extreme


def test_paired_difference_constant_and_bad_input():
    r = S.paired_difference([1.0, 1.0, 1.0], [1.0, 1.0, 1.0])
    assert (r["mean"], r["lo"], r["hi"], r["p"]) == (0.0, 0.0, 0.0, 1.0)
    with pytest.raises(ValueError, match="equal length"):
        S.paired_difference([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="at least 2 seeds"):
        S.paired_difference([1.0], [1.0])
    assert math.isnan(S.paired_difference([1.0, float("nan")], [0.0, 0.0])["lo"])


def test_probability_of_improvement_by_hand():
    r = S.probability_of_improvement([2.0, 0.0, 1.0, 3.0], [1.0, 1.0, 1.0, 2.0])  # wins, loss, tie, win
    assert r["poi"] == pytest.approx(2.5 / 4)
    assert 0 <= r["lo"] <= r["poi"] <= r["hi"] <= 1
    # lower is better: the same numbers flip
    assert S.probability_of_improvement([2.0, 0.0, 1.0, 3.0], [1.0, 1.0, 1.0, 2.0], False)["poi"] == pytest.approx(1.5 / 4)


def test_holm_by_hand():
    # sorted 0.01, 0.03, 0.04 -> 3*0.01, max(0.03, 2*0.03), max(0.06, 1*0.04)
    assert S.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    out = S.holm([0.01, float("nan"), 0.02])
    assert out[0] == pytest.approx(0.02) and math.isnan(out[1]) and out[2] == pytest.approx(0.02)


def test_expected_max_matches_enumeration():
    rng = np.random.default_rng(0)
    v = rng.random(5)
    for n in (1, 2, 3):
        brute = np.mean([max(c) for c in itertools.product(v, repeat=n)])
        assert S.expected_max(v, n) == pytest.approx(brute)
    assert S.expected_max([1, 2, 3], 2) == pytest.approx(22 / 9)  # by hand: (1*1 + 2*3 + 3*5) / 9
    assert S.expected_max(v, 200) == pytest.approx(v.max(), abs=1e-9)


def test_stratified_mean_interval():
    a, b = np.array([1.0, 2.0, 3.0]), np.array([10.0, 10.0, 10.0])
    r = S.stratified_mean_interval([a, b])
    assert r["mean"] == pytest.approx((2.0 + 10.0) / 2)  # mean of task means, not of the pooled seeds
    assert r["tasks"] == 2
    assert r["lo"] >= (1.0 + 10.0) / 2 - 1e-12 and r["hi"] <= (3.0 + 10.0) / 2 + 1e-12  # b never varies


@pytest.mark.parametrize("lo,hi,p,higher,want", [
    (0.01, 0.02, 0.01, True, "reproduced"),
    (0.01, 0.02, 0.2, True, "inconclusive at this budget"),  # interval alone is not enough after correction
    (-0.02, -0.01, 0.01, True, "reversed"),
    (-0.02, -0.01, 0.01, False, "reproduced"),  # lower is better (NLL, ECE)
    (-0.004, 0.004, 0.9, True, "no detectable effect"),
    (-0.004, 0.02, 0.9, True, "inconclusive at this budget"),
    (float("nan"), 0.0, 0.01, True, "inconclusive at this budget"),
])
def test_verdict_rules(lo, hi, p, higher, want):
    assert S.verdict(lo, hi, p, margin=0.005, higher_is_better=higher) == want


# ------------------------------------------------------------------ the protocol's specification and selection

SPEC = {"tasks": {"a": {}}, "methods": {"ce": {}, "temperature": {"beta": [0.25, 4.0, "log"]},
                                          "as_softmax": {"delta": [0.05, 0.95, "linear"]}},
        "lr": [0.01, 1.0], "trials": 6, "tune_seeds": [0], "final_seeds": [1, 2]}
BASE = {"dataset": "digits", "model": "mlp", "width": 16, "epochs": 1, "val_fraction": 0.2, "threads": 1}


@pytest.mark.parametrize("change,match", [
    ({"bogus": 1}, r"extra.protocol.bogus: unknown key"),
    ({"methods": {"temperature": {"beta": [1, 2]}}}, r"methods: must include 'ce'"),
    ({"methods": {"ce": {"beta": [1, 2]}}}, r"methods.ce: CE has no knob"),
    ({"methods": {"ce": {}, "focal": {}}}, r"methods: method must be one of"),
    ({"methods": {"ce": {}, "temperature": {"beta": [4, 1]}}}, r"methods.temperature.beta: must satisfy 0 < low < high"),
    ({"methods": {"ce": {}, "temperature": {"beta": [0.1, 1, "cubic"]}}}, r"scale must be one of"),
    ({"lr": [0, 1]}, r"extra.protocol.lr: must satisfy"),
    ({"trials": 0}, r"trials: must be a positive int"),
    ({"final_seeds": [0, 1]}, r"final_seeds: must not share seeds with tune_seeds"),
    ({"final_seeds": [1]}, r"final_seeds: needs at least 2 seeds"),
    ({"final_seeds": [1, 1]}, r"final_seeds: must be a non-empty list of distinct"),
    ({"margins": {"f1": 0.1}}, r"margins.f1: metric must be one of"),
    ({"longer": 0.5}, r"longer: must be a number >= 1"),
])
def test_bad_spec_names_the_key(change, match):
    with pytest.raises(ConfigError, match=match):
        Pr.check_spec({**SPEC, **change})


def test_tasks_need_a_validation_split_and_valid_settings():
    with pytest.raises(ConfigError, match=r"tasks.a: val_fraction must be > 0"):
        Pr.tasks({**BASE, "val_fraction": 0.0}, Pr.check_spec(SPEC))
    with pytest.raises(ConfigError, match=r"tasks.a: .*lr"):
        Pr.tasks(BASE, Pr.check_spec({**SPEC, "tasks": {"a": {"lr": -1.0}}}))


def test_equal_budget_and_ranges():
    spec = Pr.check_spec(SPEC)
    cfgs = Pr.plan(BASE, SPEC)
    per_method = pd.Series([c.loss for c in cfgs]).value_counts()
    assert set(per_method) == {spec["trials"] * len(spec["tune_seeds"])}  # CE gets as many trials as any
    for m, knobs in spec["methods"].items():
        settings = Pr.trial_settings(spec, m)
        assert settings == Pr.trial_settings(spec, m)  # seeded: the same design every time
        lr = np.log([s["lr"] for s in settings])
        # Latin hypercube: one trial in each of the `trials` equal strata of log lr
        strata = np.floor((lr - np.log(0.01)) / (np.log(1.0) - np.log(0.01)) * spec["trials"]).clip(0, spec["trials"] - 1)
        assert sorted(strata) == list(range(spec["trials"]))
        for k, (lo, hi, _) in knobs.items():
            assert all(lo * 0.999 <= s[k] <= hi * 1.001 for s in settings)


def test_select_uses_validation_only_and_flags_edges():
    trials = pd.DataFrame({"task": "a", "method": "ce", "trial": [0, 1, 2],
                           "setting": [{"lr": 0.01}, {"lr": 0.1}, {"lr": 1.0}],
                           "val_acc": [0.90, 0.95, 0.95], "val_nll": [0.3, 0.2, 0.25]})
    c = Pr.select(trials).iloc[0]
    assert c.setting == {"lr": 0.1} and c.edge == []  # tie on accuracy broken by validation NLL
    trials["val_acc"] = [0.97, 0.95, 0.90]
    c = Pr.select(trials).iloc[0]
    assert c.setting == {"lr": 0.01} and c.edge == ["lr"]  # best at the smallest lr tried: flagged
    assert not {"test_acc", "test_nll"} & set(trials)  # nothing from the test set reaches the selection


def test_run_end_to_end_is_paired(tmp_path):
    spec = {**SPEC, "trials": 2, "methods": {"ce": {}, "temperature": {"beta": [0.5, 2.0, "log"]}},
            "tasks": {"a": {}, "noisy": {"label_noise": 0.3}}}
    r = Pr.run(BASE, spec, "t", out_root=tmp_path, progress=False)
    assert len(r.trials) == 2 * 2 * 2 and len(r.chosen) == 4
    for _, g in r.finals.groupby("task"):  # every method has the same seeds: paired
        assert g.groupby("method").seed.apply(sorted).map(tuple).nunique() == 1
    assert set(r.comparisons.metric) == set(Pr.METRICS)
    assert set(r.comparisons.verdict) <= set(S.VERDICTS)
    assert set(r.histories.method) == {"ce", "temperature", "ce_longer"}
    assert (r.histories[r.histories.method == "ce_longer"].epochs == 2).all()
    assert len(r.convergence) == 4 and len(r.budget) == 4 * 2
    again = Pr.run(BASE, spec, "t", out_root=tmp_path, progress=False)  # read back, not retrained
    pd.testing.assert_frame_equal(again.comparisons, r.comparisons)


# ------------------------------------------------------------------ paired data and temperature scaling


def _toy(n=1000, c=10):
    g = torch.Generator().manual_seed(0)
    return Dataset("toy", torch.randn(n, 4, generator=g), torch.randint(0, c, (n,), generator=g),
                   torch.randn(200, 4, generator=g), torch.randint(0, c, (200,), generator=g), c)


def test_label_noise_is_symmetric_seeded_and_spares_the_test_set():
    ds = _toy()
    noisy = ds.with_label_noise(0.4, seed=3)
    wrong = (noisy.y_train != ds.y_train).double().mean()
    assert abs(float(wrong) - 0.4) < 0.05  # every flipped label is wrong (drawn from the other classes)
    assert torch.equal(noisy.y_test, ds.y_test) and torch.equal(noisy.x_train, ds.x_train)
    assert torch.equal(noisy.y_train, ds.with_label_noise(0.4, seed=3).y_train)
    assert not torch.equal(noisy.y_train, ds.with_label_noise(0.4, seed=4).y_train)
    assert ds.with_label_noise(0.0, seed=3) is ds


def test_validation_split_keeps_the_test_set():
    ds = _toy()
    v = ds.split_validation(0.2, seed=1)
    assert torch.equal(v.x_test, ds.x_test) and v.x_val.shape[0] + v.x_train.shape[0] == 1000
    assert abs(v.x_val.shape[0] - 200) <= 5  # per-class rounding
    v2 = ds.split_validation(0.2, seed=2)
    assert not torch.equal(v.y_val, v2.y_val) or not torch.equal(v.x_val, v2.x_val)  # seed fixes the split


def test_fit_temperature_recovers_a_known_temperature():
    from softgrad.train import fit_temperature, scaled_metrics

    g = torch.Generator().manual_seed(0)
    z = torch.randn(20000, 10, generator=g, dtype=torch.float64) * 2
    y = torch.multinomial(torch.softmax(z, 1), 1, generator=g).squeeze(1)  # labels drawn from softmax(z)
    t = fit_temperature(3.0 * z, y)  # over-confident logits: T = 3 undoes it
    assert t == pytest.approx(3.0, rel=0.05)
    assert scaled_metrics(3.0 * z, y, t)["nll"] < scaled_metrics(3.0 * z, y, 1.0)["nll"]


def test_trainer_reports_val_and_temperature_scaled_metrics():
    from softgrad.train import train

    cfg = Config(dataset="digits", model="mlp", width=16, epochs=2, val_fraction=0.2, label_noise=0.2,
                 eval_every=2, log_every=5, threads=1)
    r = train(cfg, progress=False)
    f = r["final"]
    assert {"val_acc", "test_acc", "ts_temperature", "test_nll_ts", "test_ece_ts", "val_nll_ts"} <= set(f)
    assert "val_acc" not in r["history"][1]  # epoch 1 was not an evaluation epoch
    assert r["step_loss"]["step"][:3] == [0, 5, 10] and len(r["step_loss"]["loss"]) == len(r["step_loss"]["step"])
    assert f["val_nll_ts"] <= f["val_nll"] + 1e-9  # T minimises validation NLL (T = 1 is a candidate)


# ------------------------------------------------------------------ comparing two regenerations


def test_compare_verdicts_by_hand():
    from softgrad.verdicts import compare_verdicts

    a = {("07", "SGT", "x"): "reproduced", ("06", "t", "sgt", "acc"): "reversed"}
    b = {("07", "SGT", "x"): "reproduced", ("06", "t", "sgt", "acc"): "inconclusive at this budget",
         ("07", "AS", "y"): "reversed"}
    assert compare_verdicts(a, a) == []
    assert compare_verdicts(a, b) == [(("06", "t", "sgt", "acc"), "reversed", "inconclusive at this budget"),
                                      (("07", "AS", "y"), "—", "reversed")]


def test_verdicts_cli_on_the_ci_goldens(tmp_path, capsys):
    from softgrad.runs import REPO_ROOT
    from softgrad.verdicts import main

    ci = str(REPO_ROOT / "outputs" / "ci" / "notebooks")
    assert main([ci, ci]) == 0
    assert "all verdicts agree" in capsys.readouterr().out
    assert main([ci, str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("error: ")


def test_cli_rejects_a_bad_protocol_before_training(tmp_path):
    import subprocess
    import sys

    bad = tmp_path / "06.yaml"
    bad.write_text("profile: t\nbase: {dataset: digits, val_fraction: 0.2}\n"
                   "extra:\n  protocol:\n    methods: {ce: {}, temperature: {beta: [4, 1]}}\n")
    r = subprocess.run([sys.executable, "-m", "softgrad", "validate", str(bad)], capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        "error: extra.protocol.methods.temperature.beta: must satisfy 0 < low < high (finite), got [4, 1]"]


# ------------------------------------------------------------------ numerics replicates


def _fake_result(verdicts: dict) -> Pr.ProtocolResult:
    comp = pd.DataFrame([{"task": t, "method": m, "metric": k, "diff": 0.01, "verdict": v}
                         for (t, m, k), v in verdicts.items() if t != "all"])
    agg = pd.DataFrame([{"method": m, "metric": k, "diff": 0.01, "verdict": v}
                        for (t, m, k), v in verdicts.items() if t == "all"])
    empty = pd.DataFrame()
    return Pr.ProtocolResult({}, empty, empty, empty, empty, comp, agg, empty, empty)


def test_a_verdict_stands_only_when_every_numerics_replicate_reaches_it(monkeypatch):
    by_rep = {"auto": {("a", "temperature", "acc"): "reproduced", ("b", "temperature", "acc"): "reversed",
                       ("all", "temperature", "acc"): "reproduced"},
              "fused": {("a", "temperature", "acc"): "reproduced", ("b", "temperature", "acc"): "no detectable effect",
                        ("all", "temperature", "acc"): "reversed"}}
    seen = []

    def fake(task_cfgs, spec, out, kw, rep):
        seen.append((rep, {c.loss_impl for c in task_cfgs.values()}))
        return _fake_result(by_rep[rep])

    monkeypatch.setattr(Pr, "_run_replicate", fake)
    r = Pr.run({"dataset": "synthetic", "val_fraction": 0.2}, {**SPEC, "numerics_replicates": ["auto", "fused"]},
               "test", out_root=None, progress=False)
    assert seen == [("auto", {"auto"}), ("fused", {"fused"})]  # every config of a replicate carries its loss_impl
    assert r.comparisons.set_index("task").verdict.to_dict() == {"a": "reproduced", "b": Pr.UNSTABLE}
    assert r.aggregate.verdict.tolist() == [Pr.UNSTABLE]
    rep = r.replicates.set_index("task")
    assert rep.loc["a", "agree"] and not rep.loc["b", "agree"] and not rep.loc["all tasks", "agree"]
    assert rep.loc["b", "fused"] == "no detectable effect"


def test_numerics_replicates_are_checked():
    with pytest.raises(ConfigError, match=r"numerics_replicates: must be a non-empty list of distinct values"):
        Pr.check_spec({**SPEC, "numerics_replicates": ["auto", "gpu"]})
    assert Pr.check_spec(SPEC)["numerics_replicates"] == ["auto"]


def test_loss_impl_is_a_checked_config_field_and_part_of_the_run_id():
    from softgrad.config import config_id

    with pytest.raises(ConfigError, match=r"loss_impl: must be one of \['auto', 'native', 'fused'\]"):
        Config(loss_impl="cuda")
    c = Config()
    assert config_id(c) != config_id(c.replace(loss_impl="fused")) != config_id(c.replace(loss_impl="native"))

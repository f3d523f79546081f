"""The comparison protocol: the pooled design end to end
(paired indices, read back not retrained), paired data (label noise, validation split) and temperature
scaling. The pooled statistics on constructed pools are in test_pooled.py."""

import pandas as pd
import pytest
import torch

from softgrad import protocol as Pr
from softgrad import stats as S
from softgrad.config import Config, ConfigError
from softgrad.data import Dataset

# ------------------------------------------------------------------ the protocol's specification and selection

SPEC = {"tasks": {"a": {}}, "methods": {"ce": {}, "temperature": {"beta": [0.25, 4.0, "log"]},
                                          "as_softmax": {"delta": [0.05, 0.95, "linear"]}},
        "lr": [0.01, 1.0], "trials": 6, "select": 2, "longer_weight": 0.9, "bootstrap": 200, "subsets": 50}
BASE = {"dataset": "digits", "model": "mlp", "width": 16, "epochs": 1, "val_fraction": 0.2, "threads": 1}


@pytest.mark.parametrize("change,match", [
    ({"bogus": 1}, r"extra.protocol.bogus: unknown key"),
    ({"methods": {"temperature": {"beta": [1, 2]}}}, r"methods: must include 'ce'"),
    ({"methods": {"ce": {"beta": [1, 2]}}}, r"methods: must include 'ce' with no knob"),
    ({"methods": {"ce": {}, "focal": {}}}, r"methods: method must be one of"),
    ({"methods": {"ce": {}, "temperature": {"beta": [4, 1]}}}, r"methods.temperature.beta: must satisfy 0 < low < high"),
    ({"methods": {"ce": {}, "temperature": {"beta": [0.1, 1, "cubic"]}}}, r"scale must be one of"),
    ({"lr": [0, 1]}, r"extra.protocol.lr: must satisfy"),
    ({"trials": 0}, r"trials: must be an int >= 2"),
    ({"longer_weight": 1.5}, r"longer_weight: must be a number in \(0, 1\]"),
    ({"margins": {"acc": {"b": 0.1}}}, r"margins.acc.b: task must be one of \['a'\]"),
    ({"margins": {"acc": {"a": -0.1}}}, r"margins.acc.a: must be a non-negative number"),
    ({"margin_reasons": {"acc": 3}}, r"margin_reasons.acc: must map a metric"),
    ({"split_half": "yes"}, r"split_half: must be true or false"),
    ({"rerun_loss_impl": "gpu"}, r"rerun_loss_impl: must be one of \['auto', 'native', 'fused'\] or null"),
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


def test_equal_budget_one_run_per_method_and_index():
    spec = Pr.check_spec(SPEC)
    cfgs = Pr.plan(BASE, SPEC)
    per_method = pd.Series([c.loss for c in cfgs if c.epochs == 1]).value_counts()
    assert set(per_method) == {spec["trials"]}  # CE gets as many trials as any method
    assert all(c.epochs == 1 for c in cfgs)  # the gate's longer runs depend on the pool: counted, not planned
    n = Pr.count(BASE, SPEC)
    assert n["pool"] == len(cfgs) and n["longer"] == Pr._top_share(6, 2, 0.9) and n["rerun"] == 0
    assert n["total"] == n["pool"] + n["longer"] + n["retrain"]
    by_seed = pd.DataFrame([{"seed": c.seed, "lr": c.lr, "loss": c.loss} for c in cfgs if c.epochs == 1])
    # index i: one seed and one learning rate for every method (common random numbers)
    assert (by_seed.groupby("seed").lr.nunique() == 1).all() and (by_seed.groupby("seed").loss.nunique() == 3).all()


def test_run_end_to_end_is_paired_and_read_back(tmp_path):
    spec = {**SPEC, "trials": 3, "methods": {"ce": {}, "temperature": {"beta": [0.5, 2.0, "log"]}},
            "tasks": {"a": {}, "noisy": {"label_noise": 0.3}}}
    r = Pr.run(BASE, spec, "t", out_root=tmp_path, progress=False)
    longer = Pr.longer_trials(r.pool[r.pool.method != "ce_longer"], Pr.check_spec(spec))
    assert len(r.pool) == 2 * 2 * 3 + sum(map(len, longer.values()))  # tasks x methods x trials + the gate's runs
    assert set(r.pool[r.pool.method == "ce_longer"].trial) == set(longer["a"]) | set(longer["noisy"])
    assert set(r.comparisons.metric) == set(Pr.METRICS) and len(r.comparisons) == 2 * len(Pr.METRICS)
    assert set(r.comparisons.verdict) <= set(S.VERDICTS)
    assert len(r.convergence) == 2 and len(r.aggregate) == len(Pr.METRICS)
    # every run's per-example test results were stored and read: the intervals resample the test set too
    assert r.test_resampled and all(len(e["correct"]) == len(r.pool.examples.iloc[0]["correct"]) for e in r.pool.examples)
    assert all(float(e["correct"].mean()) == a for e, a in zip(r.pool.examples, r.pool.test_acc))
    e = Pr.edge_shares(r)  # the search's edge shares, read off the result's own pool and spec
    assert set(zip(e.method, e.dimension)) == {("ce", "lr_eff"), ("temperature", "lr_eff"), ("temperature", "beta")}
    assert len(e) == 2 * 3 * 2 and e.groupby(["task", "method", "dimension"]).share.sum().le(1 + 1e-12).all()
    again = Pr.run(BASE, spec, "t", out_root=tmp_path, progress=False)  # read back, not retrained
    pd.testing.assert_frame_equal(again.comparisons, r.comparisons)
    fused = Pr.run(BASE, spec, "t", out_root=tmp_path, progress=False, loss_impl="fused")  # the rerun
    assert set(fused.pool.run_id).isdisjoint(r.pool.run_id)
    a = Pr.agreement(r, fused)
    assert a["n"] == len(r.comparisons) + len(r.aggregate) and 0 <= a["rate"] <= 1 and 0 <= a["predicted"] <= 1


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
    # under label noise T is fitted on the validation split's true labels; the fit on its noisy labels is kept
    assert {"ts_temperature_noisyval", "test_nll_ts_noisyval", "test_ece_ts_noisyval"} <= set(f)
    assert f["ts_temperature"] != f["ts_temperature_noisyval"]
    clean = train(cfg.replace(label_noise=0.0), progress=False)["final"]
    assert clean["val_nll_ts"] <= clean["val_nll"] + 1e-9  # T minimises validation NLL (T = 1 is a candidate)
    assert "ts_temperature_noisyval" not in clean


def test_label_noise_keeps_the_true_labels_through_the_split():
    ds = _toy()
    v = ds.with_label_noise(0.4, seed=3).split_validation(0.2, seed=1)
    ref = ds.split_validation(0.2, seed=1)  # the split depends on the labels it stratifies by, so compare sets
    assert v.y_val_clean is not None and v.y_train_clean is not None
    assert float((v.y_val != v.y_val_clean).double().mean()) == pytest.approx(0.4, abs=0.08)
    assert torch.equal(torch.sort(torch.cat([v.y_train_clean, v.y_val_clean])).values, torch.sort(ds.y_train).values)
    assert ref.y_val_clean is None  # no noise: the labels are the true ones


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

    good = tmp_path / "06ok.yaml"
    good.write_text("profile: t\nbase: {dataset: digits, val_fraction: 0.2}\nextra:\n  protocol:\n"
                    "    methods: {ce: {}, temperature: {beta: [0.5, 2]}}\n    trials: 8\n    select: 2\n"
                    "    retrain_seeds: 2\n")
    r = subprocess.run([sys.executable, "-m", "softgrad", "validate", str(good)], capture_output=True, text=True)
    n = Pr.count({"dataset": "digits", "val_fraction": 0.2}, {"methods": {"ce": {}, "temperature": {"beta": [0.5, 2]}},
                                                             "trials": 8, "select": 2, "retrain_seeds": 2})
    assert r.returncode == 0 and n == {"pool": 16, "longer": Pr._top_share(8, 2, 0.9), "retrain": 4, "rerun": 0,
                                       "total": 20 + Pr._top_share(8, 2, 0.9)}
    assert (f"{n['total']} runs, profile 't'; protocol: 16 pool + {n['longer']} convergence gate + 4 winner "
            f"retrains + 0 rerun") in r.stdout


def test_loss_impl_is_a_checked_config_field_and_part_of_the_run_id():
    from softgrad.config import config_id

    with pytest.raises(ConfigError, match=r"loss_impl: must be one of \['auto', 'native', 'fused'\]"):
        Config(loss_impl="cuda")
    c = Config()
    assert config_id(c) != config_id(c.replace(loss_impl="fused")) != config_id(c.replace(loss_impl="native"))

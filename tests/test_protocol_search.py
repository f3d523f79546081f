"""Declared search spaces (softgrad.protocol): per-task and per-method learning-rate ranges, the learning-rate
coupling on SGD (not on AdamW), the knobs' definitional limits, their validation, and the edge-share
diagnostic (E_T's selection weight in the outer tenth of each range) with its figure. No training."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from softgrad import protocol as P
from softgrad import stats as S
from softgrad.config import ConfigError
from softgrad.losses import COMPARED

BASE = {"dataset": "digits", "model": "mlp", "width": 16, "epochs": 1, "val_fraction": 0.2, "threads": 1}
SPEC = {"tasks": {"a": {}, "b": {"optimizer": "adamw"}},
        "methods": {"ce": {},
                    "temperature": {"beta": [0.01, 10.0, "log"], "lr_coupling": {"knob": "beta", "power": -2}},
                    "sgt": {"alpha": [0.05, 1.0, "log"], "lr_coupling": {"knob": "alpha", "power": -1}},
                    "as_softmax": {"delta": [0.0, 1.0, "linear"], "lr": [0.001, 0.1]}},
        "lr": [0.01, 1.0], "trials": 20, "select": 4, "bootstrap": 200, "subsets": 50,
        "search_reasons": {"lr": "two decades", "temperature": "effective step ηβ²"}}


def _r3(x: float) -> float:
    return float(f"{x:.3g}")


def _log(u: float, lo: float, hi: float) -> float:
    return math.exp(math.log(lo) + u * (math.log(hi) - math.log(lo)))


def test_coupling_maps_the_shared_column_exactly_on_sgd():
    s = P.check_spec(SPEC)
    u_lr, u = P.unit_design(s)
    d = P.design(s, "a", "sgd")
    for i in range(s["trials"]):
        lr_eff = _r3(_log(u_lr[i], 0.01, 1.0))
        beta, alpha = _r3(_log(u["temperature"]["beta"][i], 0.01, 10.0)), _r3(_log(u["sgt"]["alpha"][i], 0.05, 1.0))
        assert d["ce"][i] == {"lr": lr_eff, "lr_eff": lr_eff}
        assert d["temperature"][i] == {"lr": _r3(lr_eff * beta ** -2), "lr_eff": lr_eff, "beta": beta}
        assert d["sgt"][i] == {"lr": _r3(lr_eff / alpha), "lr_eff": lr_eff, "alpha": alpha}
        # a method's own range: the same column (the same stratum), mapped into it; delta linear over [0, 1]
        own = _r3(_log(u_lr[i], 0.001, 0.1))
        assert d["as_softmax"][i] == {"lr": own, "lr_eff": own, "delta": _r3(u["as_softmax"]["delta"][i])}
    strata = np.floor(u_lr * s["trials"]).astype(int)
    assert sorted(strata) == list(range(s["trials"]))  # u_lr is a Latin-hypercube column
    # the configs train with the coupled learning rate
    cfgs = [c for c in P.plan(BASE, SPEC) if c.optimizer == "sgd" and c.loss == "temperature"]
    assert [c.lr for c in cfgs] == [x["lr"] for x in d["temperature"]]
    assert [c.loss_params["beta"] for c in cfgs] == [x["beta"] for x in d["temperature"]]


def test_coupling_keeps_the_decay_per_step_of_the_task():
    """SGD's coupled weight decay shrinks the weights by 1 − lr·wd per step: a coupled lr of 10⁴ with the task's
    decay would erase them, so the coupled trials carry wd = wd_task · lr_eff / lr (lr·wd = lr_eff·wd_task)."""
    s = P.check_spec(SPEC)
    d = P.design(s, "a", "sgd", weight_decay=5e-4)
    for x in d["temperature"] + d["sgt"]:
        assert x["weight_decay"] == _r3(5e-4 * x["lr_eff"] / x["lr"])
        assert x["lr"] * x["weight_decay"] == pytest.approx(x["lr_eff"] * 5e-4, rel=0.01)
    assert all("weight_decay" not in x for x in d["ce"] + d["as_softmax"])  # uncoupled: the task's decay
    assert all("weight_decay" not in x for x in P.design(s, "b", "adamw", weight_decay=5e-4)["temperature"])
    cfgs = [c for c in P.plan({**BASE, "weight_decay": 5e-4}, SPEC) if c.optimizer == "sgd"]
    t = [c for c in cfgs if c.loss == "temperature"]
    assert [c.weight_decay for c in t] == [x["weight_decay"] for x in d["temperature"]]
    assert {c.weight_decay for c in cfgs if c.loss == "ce"} == {5e-4}


def test_coupling_is_not_applied_on_adamw():
    s = P.check_spec(SPEC)
    d = P.design(s, "b", "adamw")
    assert all(x["lr"] == x["lr_eff"] for m in s["methods"] for x in d[m])
    assert [x["lr_eff"] for x in d["temperature"]] == [x["lr_eff"] for x in P.design(s, "a")["temperature"]]
    adam = [c for c in P.plan(BASE, SPEC) if c.optimizer == "adamw" and c.loss == "temperature"]
    assert [c.lr for c in adam] == [x["lr_eff"] for x in d["temperature"]]
    t = P.search_table(BASE, SPEC).set_index(["task", "method", "dimension"])
    assert t.loc[("a", "temperature", "lr_eff"), "coupling"] == "lr = lr_eff · beta^-2"
    assert "not applied" in t.loc[("b", "temperature", "lr_eff"), "coupling"]
    assert t.loc[("a", "temperature", "lr_eff"), "reason"] == "effective step ηβ²"
    assert t.loc[("a", "ce", "lr_eff"), "reason"] == "two decades"
    assert "is CE" in t.loc[("a", "sgt", "alpha"), "limits"] and t.loc[("a", "temperature", "beta"), "limits"] == ""


def test_per_task_learning_rate_ranges():
    spec = {**SPEC, "lr": {"a": [0.01, 1.0], "b": [1e-4, 1e-2]}}
    s = P.check_spec(spec)
    u_lr, _ = P.unit_design(s)
    b = P.design(s, "b", "adamw")
    assert [x["lr"] for x in b["ce"]] == [_r3(_log(u, 1e-4, 1e-2)) for u in u_lr]
    with pytest.raises(ValueError, match=r"extra.protocol.lr is given per task: task must be one of \['a', 'b'\]"):
        P.design(s)
    per_method = {**SPEC, "methods": {**SPEC["methods"], "temperature": {
        **SPEC["methods"]["temperature"], "lr": {"a": [0.1, 10.0], "b": [1e-4, 1e-3]}}}}
    s = P.check_spec(per_method)
    assert P.lr_range(s, "temperature", "b") == (1e-4, 1e-3, "log") and P.lr_range(s, "ce", "b") == (0.01, 1.0, "log")


@pytest.mark.parametrize("change,match", [
    ({"lr": {"a": [0.01, 1.0]}}, r"extra.protocol.lr: a per-task mapping must give exactly the tasks \['a', 'b'\]"),
    ({"lr": {"a": [0.01, 1.0], "b": [0, 1]}}, r"extra.protocol.lr.b: must satisfy 0 < low < high"),
    ({"methods": {"ce": {}, "temperature": {"beta": [0.1, 1], "lr": [1, 0.1]}}}, r"methods.temperature.lr: must satisfy"),
    ({"methods": {"ce": {}, "temperature": {"beta": [0.1, 1], "lr_coupling": {"knob": "alpha", "power": -2}}}},
     r"methods.temperature.lr_coupling.knob: must be one of this method's searched knobs \['beta'\], got 'alpha'"),
    ({"methods": {"ce": {}, "temperature": {"beta": [0.1, 1], "lr_coupling": {"knob": "beta", "power": 0}}}},
     r"methods.temperature.lr_coupling.power: must be a finite non-zero number"),
    ({"methods": {"ce": {}, "temperature": {"beta": [0.1, 1], "lr_coupling": {"knob": "beta", "power": True}}}},
     r"methods.temperature.lr_coupling.power: must be a finite non-zero number"),
    ({"methods": {"ce": {}, "temperature": {"beta": [0.1, 1], "lr_coupling": "beta"}}},
     r"methods.temperature.lr_coupling: must be a mapping \{knob: <knob name>, power: <number>\}"),
    ({"methods": {"ce": {}, "sgt": {"alpha": [0.1, 1.5]}}},
     r"methods.sgt.alpha: the range must lie inside the knob's domain: alpha must be in \(0.0, 1.0\], got 1.5"),
    ({"methods": {"ce": {}, "as_softmax": {"delta": [0.0, 1.0, "log"]}}}, r"methods.as_softmax.delta: must satisfy 0 < low"),
    ({"search_reasons": {"focal": "why"}}, r"search_reasons.focal: must map 'lr' or a method of"),
    ({"search_reasons": {"lr": 3}}, r"search_reasons.lr: must map 'lr' or a method"),
])
def test_bad_search_space_names_the_key(change, match):
    with pytest.raises(ConfigError, match=match):
        P.check_spec({**SPEC, **change})


def test_definitional_limits_come_from_the_registry():
    assert COMPARED["sgt"].limits("alpha") == {1.0: "alpha = 1 is CE; ends its domain"}
    assert COMPARED["as_softmax"].limits("delta") == {0.0: "delta = 0 ends its domain",
                                                      1.0: "delta = 1 is CE; ends its domain"}
    assert COMPARED["temperature"].limits("beta") == {1.0: "beta = 1 is CE"}  # (0, inf): no domain end
    assert COMPARED["noisy"].limits("noise_alpha") == {}
    assert P.limit("as_softmax", "delta", 0.0) and P.limit("sgt", "alpha", 1.0) and not P.limit("sgt", "alpha", 0.05)
    assert P.limit("sgt", "lr_eff", 1.0) == ""


def _pool(spec, val, tasks=("a",)):
    """A pool on the design's settings; ``val(method, setting) -> validation accuracy``."""
    s = P.check_spec(spec)
    rows = []
    for t in tasks:
        d = P.design(s, t)
        for m in s["methods"]:
            for i, x in enumerate(d[m]):
                rows.append({"task": t, "method": m, "trial": i, "setting": x, "val_acc": val(m, x), "test_acc": 0.9})
    return pd.DataFrame(rows)


SGD = {**SPEC, "tasks": {"a": {}}, "select": SPEC["trials"]}  # T = N: the best trial carries all the weight


def test_edge_share_is_one_where_the_search_always_keeps_an_edge_trial():
    pool = _pool(SGD, lambda m, x: -x["lr_eff"])  # the lowest learning rate wins every search
    e = P.edge_shares(pool, SGD).set_index(["method", "dimension", "side"])
    for m in SGD["methods"]:
        assert e.loc[(m, "lr_eff", "low"), "share"] == pytest.approx(1.0)
        assert e.loc[(m, "lr_eff", "high"), "share"] == 0.0 and bool(e.loc[(m, "lr_eff", "low"), "flag"])
    pool = _pool(SGD, lambda m, x: x.get("alpha", x.get("beta", 0.0)))  # the knob's top wins
    e = P.edge_shares(pool, SGD).set_index(["method", "dimension", "side"])
    assert e.loc[("sgt", "alpha", "high"), "share"] == pytest.approx(1.0)
    assert e.loc[("sgt", "alpha", "high"), "limit"] and not e.loc[("sgt", "alpha", "high"), "flag"]  # α = 1 is CE
    assert "is CE" in e.loc[("sgt", "alpha", "high"), "why"]
    assert e.loc[("temperature", "beta", "high"), "share"] == pytest.approx(1.0)
    assert e.loc[("temperature", "beta", "high"), "flag"] and not e.loc[("temperature", "beta", "high"), "limit"]


def test_edge_share_of_a_flat_response_is_the_share_of_trials_in_the_tenth():
    spec = {**SGD, "select": 4}
    pool = _pool(spec, lambda m, x: 0.9)  # every trial ties: each equally likely to be kept
    e = P.edge_shares(pool, spec)
    assert np.allclose(e.share, e.flat)
    assert np.allclose(e.flat, 0.1, atol=1 / spec["trials"])  # a Latin hypercube: about N/10 trials per tenth
    assert not e.flag.any()
    # the weights are E_T's selection weights: a random response, checked by hand for one dimension
    rng = np.random.default_rng(0)
    pool = _pool(spec, lambda m, x: float(rng.random()))
    g = pool[pool.method == "as_softmax"].sort_values("trial")
    w = S.selection_weights(g.val_acc.to_numpy(), 4)
    delta = np.array([x["delta"] for x in g.setting])
    e = P.edge_shares(pool, spec).set_index(["method", "dimension", "side"])
    assert e.loc[("as_softmax", "delta", "low"), "share"] == pytest.approx(w[delta < 0.1].sum())
    assert e.loc[("as_softmax", "delta", "high"), "share"] == pytest.approx(w[delta > 0.9].sum())
    assert e.loc[("as_softmax", "delta", "low"), "limit"]  # δ = 0 ends the domain


def test_edge_shares_needs_settings():
    with pytest.raises(ValueError, match="'setting' column"):
        P.edge_shares(pd.DataFrame({"task": ["a"], "method": ["ce"], "trial": [0], "val_acc": [0.5]}), SGD)


def test_edge_figure_draws_every_panel_with_display_names():
    from softgrad import plots

    rng = np.random.default_rng(1)
    spec = {**SGD, "tasks": {"a": {}, "b": {}, "c": {}}, "lr": [0.01, 1.0], "select": 4}
    pool = _pool(spec, lambda m, x: float(rng.random()), tasks=("a", "b", "c"))
    fig = plots.edge_figure(P.edge_shares(pool, spec))
    meta = plots.figure_data(fig)
    assert len(meta["axes"]) == 3 and all(a["data"] > 0 and a["legend_covers"] == 0 for a in meta["axes"]), meta
    names = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert "SGT · α" in names and "temperature · β" in names and "AS-Softmax · δ" in names
    assert not any(code in n for n in names for code in ("sgt", "as_softmax", "lr_eff", "beta"))
    plots.plt.close(fig)


def test_search_text_quotes_the_declared_ranges():
    """The practitioner page quotes the search spaces from the spec, so they cannot go stale."""
    spec = P.check_spec({"tasks": {"a": {}, "b": {}},
                         "methods": {"ce": {}, "sgt": {"alpha": [0.001, 1.0], "lr_coupling": {"knob": "alpha", "power": -1},
                                                       "lr": {"a": [0.001, 1.0], "b": [0.0005, 0.5]}},
                                     "as_softmax": {"delta": [0.0, 1.0, "linear"]}}})
    sgt = P.search_text(spec, "sgt", {"a": "task A", "b": "task B"})
    assert sgt == "α 0.001…1; effective step η_eff 0.001…1 (task A), 0.0005…0.5 (task B)"
    # the coupling applies on SGD only: an AdamW task's range is a plain learning rate
    sgt = P.search_text(spec, "sgt", {"a": "task A", "b": "task B"}, {"a": "sgd", "b": "adamw"})
    assert sgt == "α 0.001…1; effective step η_eff 0.001…1 (task A); learning rate 0.0005…0.5 (task B)"
    assert P.search_text(spec, "as_softmax") == "δ 0…1 (linear); learning rate 0.01…1"

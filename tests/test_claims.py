"""The descriptive claims of chapters 01–05 (softgrad.claims): rules on constructed intervals, the seed
bootstrap (paired across tables), the settling check, and the registry against the notebooks."""

import ast
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from softgrad import analysis as A
from softgrad import claims as C
from softgrad.stats import VERDICTS

REPRODUCED, REVERSED, NO_EFFECT, INCONCLUSIVE = VERDICTS
ROOT = Path(__file__).resolve().parents[1]


def _claim(rule, reads="early"):
    return C.Claim("x", "P", "text", "n", "stat", rule, "01_temperature", "fig-01-flow", reads=reads)


UP = C.Rule("direction", 1.0, 0.1, side=+1)
DOWN = C.Rule("direction", 0.0, 0.2, side=-1)
SLOPE = C.Rule("value", 0.0, 0.1, band=(-2.5, -1.5))
WEAK = C.Rule("value", 0.0, 0.1, band=(-0.3, 0.3))


@pytest.mark.parametrize("rule, lo, hi, verdict", [
    (UP, 1.01, 1.5, REPRODUCED), (UP, 0.5, 0.99, REVERSED), (UP, 0.95, 1.05, NO_EFFECT), (UP, 0.8, 1.2, INCONCLUSIVE),
    (UP, 1.0, 1.3, INCONCLUSIVE),  # touching the null does not exclude it
    (DOWN, -0.9, -0.1, REPRODUCED), (DOWN, 0.1, 0.9, REVERSED), (DOWN, -0.15, 0.15, NO_EFFECT),
    (SLOPE, -2.2, -1.8, REPRODUCED), (SLOPE, -0.9, -0.4, C.PARTLY), (SLOPE, 0.3, 0.9, REVERSED),
    (SLOPE, -0.05, 0.05, NO_EFFECT), (SLOPE, -1.8, -1.2, INCONCLUSIVE), (SLOPE, -3.5, -2.8, C.PARTLY),
    (WEAK, -0.2, 0.25, REPRODUCED), (WEAK, 0.4, 0.9, REVERSED), (WEAK, -0.9, -0.35, REVERSED),
    (WEAK, 0.1, 0.5, INCONCLUSIVE),
    (UP, 1.01, 1.04, NO_EFFECT),  # excludes the null, but smaller than the margin: not the effect claimed
    (DOWN, -0.1, -0.05, NO_EFFECT),
])
def test_rules_on_constructed_intervals(rule, lo, hi, verdict):
    assert C.judge(_claim(rule), {"est": (lo + hi) / 2, "lo": lo, "hi": hi})[0] == verdict


def test_a_verdict_never_contradicts_its_interval():
    rng = np.random.default_rng(0)
    for rule in (UP, DOWN, SLOPE, WEAK):
        for lo, hi in np.sort(rng.normal(rule.null, 2.0, size=(500, 2)), axis=1):
            v, _ = C.judge(_claim(rule), {"lo": lo, "hi": hi})
            if v == REPRODUCED and rule.kind == "direction":
                assert (lo > rule.null) if rule.side > 0 else (hi < rule.null)
                assert not (rule.null - rule.margin < lo and hi < rule.null + rule.margin)
            if v == NO_EFFECT:
                assert rule.null - rule.margin < lo and hi < rule.null + rule.margin
            if v == REPRODUCED and rule.kind == "value":
                assert rule.band[0] <= lo and hi <= rule.band[1]
            if v == REVERSED and rule.kind == "direction":
                assert (hi < rule.null) if rule.side > 0 else (lo > rule.null)


def test_unsettled_claims_are_inconclusive_whatever_their_interval():
    c = _claim(UP, reads="end")
    est = {"lo": 1.5, "hi": 2.0, "change_lo": -0.05, "change_hi": 0.05}
    assert C.judge(c, est) == (REPRODUCED, "")
    assert C.judge(c, {**est, "change_hi": 0.3}) == (INCONCLUSIVE, "not settled")
    assert C.judge(c, {**est, "change_lo": None}) == (INCONCLUSIVE, "not settled")
    assert C.judge(c, {"lo": None, "hi": 2.0}) == (INCONCLUSIVE, "no finite interval")
    # a large effect may drift by less than a tenth of its distance from the null and still count as settled
    big = {"est": 9.0, "lo": 8.0, "hi": 10.0, "change_lo": 0.5, "change_hi": 0.75}
    assert C.settled(c, big) and C.judge(c, big) == (REPRODUCED, "")
    assert not C.settled(c, {**big, "change_hi": 0.85})


def test_rules_reject_malformed_declarations():
    with pytest.raises(ValueError, match="side"):
        C.Rule("direction", 0.0, 0.1)
    with pytest.raises(ValueError, match="band"):
        C.Rule("value", 0.0, 0.1, band=(1.0, 0.5))
    with pytest.raises(ValueError, match="kind"):
        C.Rule("range", 0.0, 0.1, side=1)


def _runs(values, seeds=(0, 1, 2, 3, 4), key="k"):
    """One row per (config, seed): values[config] is a list over seeds."""
    return pd.DataFrame([{key: k, "seed": s, "m": v[i]} for k, v in values.items() for i, s in enumerate(seeds)])


def test_seed_table_means_and_nan():
    t = C.seed_table(_runs({"a": [1, 2, 3, 4, np.nan], "b": [0, 0, 0, 0, 0]}), ["k"], ["m"])
    m = t.means()
    assert m.loc["a", "m"] == 2.5 and m.loc["b", "m"] == 0.0
    assert list(t.seeds) == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="more than one row"):
        C.seed_table(pd.concat([_runs({"a": [1] * 5}), _runs({"a": [1] * 5})]), ["k"], ["m"])


def test_bootstrap_resamples_the_same_seeds_in_every_table():
    """Two tables whose values differ per seed by exactly 1: the paired difference has a zero-width interval;
    resampling them independently would not."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=5) * 10
    t1 = C.seed_table(_runs({"a": list(x)}), ["k"], ["m"])
    t2 = C.seed_table(_runs({"a": list(x - 1)}), ["k"], ["m"])
    r = C.bootstrap([t1, t2], lambda m1, m2: float(m1.loc["a", "m"] - m2.loc["a", "m"]), n=200)
    assert r["est"] == pytest.approx(1.0) and r["lo"] == pytest.approx(1.0) and r["hi"] == pytest.approx(1.0)
    single = C.bootstrap([t1], lambda m: float(m.loc["a", "m"]), n=200)
    assert single["lo"] < x.mean() < single["hi"]


def test_bootstrap_is_reproducible_and_within_the_seed_range():
    t = C.seed_table(_runs({"a": [0.1, 0.4, 0.2, 0.9, 0.5]}), ["k"], ["m"])
    stat = lambda m: float(m.loc["a", "m"])
    r1, r2 = C.bootstrap([t], stat, n=300), C.bootstrap([t], stat, n=300)
    assert r1 == r2
    assert 0.1 <= r1["lo"] <= r1["est"] <= r1["hi"] <= 0.9


def test_bootstrap_refuses_tables_with_other_seeds():
    t1 = C.seed_table(_runs({"a": [1, 2, 3]}, seeds=(0, 1, 2)), ["k"], ["m"])
    t2 = C.seed_table(_runs({"a": [1, 2, 3]}, seeds=(0, 1, 5)), ["k"], ["m"])
    with pytest.raises(ValueError, match="share their seeds"):
        C.bootstrap([t1, t2], lambda a, b: 0.0)


def test_estimate_reads_the_change_for_end_claims_and_glues_literals():
    fin = C.seed_table(_runs({"a": [1.0, 1.1, 0.9, 1.0, 1.05]}), ["k"], ["m"])
    mid = C.seed_table(_runs({"a": [0.5, 0.6, 0.4, 0.5, 0.55]}), ["k"], ["m"])
    stat = lambda m: float(m.loc["a", "m"])
    with pytest.raises(ValueError, match="earlier"):
        C.estimate("gd_calibration", stat, [fin])
    e = C.estimate("gd_calibration", stat, [fin], [mid], (3, 6), n=200)
    assert e["change"] == pytest.approx(0.5) and e["epochs"] == [3, 6]
    assert ast.literal_eval(repr(e)) == e  # chapter 07 reads it back from the notebook as a literal
    inf = C.estimate("as_speed_time", lambda m: math.inf, [fin], n=20)
    assert inf["est"] is None and ast.literal_eval(repr(inf)) == inf


def test_monotone_descent_and_linear_phase():
    assert A.monotone_descent([3.0, 2.0, 1.0, 1.0])
    assert not A.monotone_descent([3.0, 2.0, 2.1])
    assert A.monotone_descent([3.0, 2.0, 2.0 + 1e-6])  # a rounding-level rise is not a rise
    assert not A.monotone_descent([3.0, float("nan")])
    L = np.concatenate([10 - 0.5 * np.arange(11), 5 - 0.1 * np.arange(1, 5)])  # linear for 10 steps, then slower
    assert A.linear_phase_length(L) == 10
    assert math.isnan(A.linear_phase_length(10 - 0.5 * np.arange(11)))  # never ended within the curve
    assert math.isnan(A.linear_phase_length([1.0, 1.2, 0.5]))  # did not fall at the first step


def test_steps_to_interpolates_between_steps():
    assert A.steps_to([3.0, 2.0, 1.0], 1.5) == pytest.approx(1.5)
    assert A.steps_to([3.0, 2.0], 3.0) == 0.0
    assert math.isnan(A.steps_to([3.0, 2.0], 1.0))


def test_epochs_to_skips_epochs_that_were_not_evaluated():
    df = pd.DataFrame({"run_id": "r", "epoch": [0, 1, 2, 3, 4], "acc": [0.1, np.nan, 0.5, np.nan, 0.9]})
    assert A.epochs_to(df, "acc", 0.7)["r"] == pytest.approx(3.0)


def test_time_to_interpolates_the_cumulative_cost():
    df = pd.DataFrame({"run_id": "r", "epoch": [0, 1, 2, 3], "acc": [0.1, 0.5, 0.7, 0.9],
                       "cost": [np.nan, 10.0, 20.0, 30.0]})
    assert A.time_to(df, "acc", 0.6, "cost")["r"] == pytest.approx(10.0 + 0.5 * 20.0)
    assert math.isnan(A.time_to(df, "acc", 0.95, "cost")["r"])


def test_every_claim_points_at_a_figure_of_its_chapter_and_is_glued_there():
    from softgrad.analysis import read_glue

    for cid, c in C.CLAIMS.items():
        src = (ROOT / "notebooks" / f"{c.chapter}.py").read_text()
        assert f'"name": "{c.evidence}"' in src, f"{cid}: {c.evidence} is not a figure of {c.chapter}"
        glued = read_glue(ROOT / "outputs" / "ci" / "notebooks" / f"{c.chapter}.ipynb")
        assert f"claim_{cid}" in glued, f"{cid} is not glued by the ci golden of {c.chapter}"
        C.judge(c, glued[f"claim_{cid}"])  # and chapter 07 can judge what it reads


def test_figures_are_numbered_per_chapter_in_source_order():
    import re

    from softgrad.plots import figure_number

    for src in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.py")):
        text = src.read_text()
        labels = re.findall(r'"name": "(fig-[0-9a-z-]+)"', text)
        assert [figure_number(src.stem, lab) for lab in labels] == [f"{int(src.stem[:2])}.{k}" for k in
                                                                    range(1, len(labels) + 1)]
        for lab in labels:  # every labelled figure is shown under the matching name, and captioned with its number
            assert f'show(fig, "{lab[4:].replace("-", "_")}"' in text, f"{src.name}: {lab} is not shown by that name"
            assert f"fig_{lab[4:].replace('-', '_')}_num" in text, f"{src.name}: {lab}'s caption has no number"
    assert figure_number("01_temperature", "no_such_figure") is None

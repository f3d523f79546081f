"""Steps 3–6 of the protocol on a pool (one row per task, method and trial index): the estimand E_T and Δ to
CE, the paired bootstrap (:mod:`.resample`: trial indices, and test examples where the runs carry them) with
Holm-level intervals and verdicts (:func:`analyse`), the across-task mean (stratified, Bonferroni), the
convergence gate's verdict (:func:`convergence_verdict`) and each verdict's predicted stability. No training
here; the checks of the design and its readings are in :mod:`.checks`."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd

from .. import stats as S
from .resample import example_resamples, failed, index_resamples, replicate_values, worst_finite
from .spec import METRICS, check_spec, margin

__all__ = ["CONVERGED", "NOT_CONVERGED", "OVERFITS", "UNDETERMINED", "ProtocolResult", "analyse",
           "convergence_verdict"]


# the convergence check's verdicts (CE trained ``longer`` x the epochs minus CE at the budget, test accuracy)
CONVERGED, NOT_CONVERGED, OVERFITS, UNDETERMINED = (
    "converged", "not converged (gains from longer training)", "longer training hurts", "undetermined")


@dataclasses.dataclass
class ProtocolResult:
    spec: dict
    pool: pd.DataFrame  # one row per (task, method, trial): setting, validation and test metrics
    comparisons: pd.DataFrame  # per (task, method, metric): E_T, Δ, margin, Holm-level interval, verdict, stability
    aggregate: pd.DataFrame  # per (method, metric): mean Δ over tasks, stratified interval, verdict, stability
    budget: pd.DataFrame  # per (task, method, T): E_T of validation and test accuracy
    convergence: pd.DataFrame  # per task: E_T(CE trained longer) − E_T(CE at the budget), interval, verdict
    histories: pd.DataFrame  # per-epoch rows of every run
    retrain: pd.DataFrame = dataclasses.field(default_factory=pd.DataFrame)  # per (task, method, fresh seed)
    # verdict codes (index into VERDICTS) of every bootstrap replicate's shifted interval: one row per
    # comparison, then one per aggregate row; columns: replicates (what a rerun's verdicts could be)
    replicate_verdicts: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros((0, 0), np.int8))
    # whether every task's intervals resample test examples too (two-way bootstrap) or trial indices only
    test_resampled: bool = False


def _rows(pool: pd.DataFrame, task: str, method: str) -> pd.DataFrame:
    """The pool's rows of (task, method), one per trial index, in index order."""
    return pool[(pool.task == task) & (pool.method == method)].sort_values("trial")


def _pool_arrays(pool: pd.DataFrame, task: str, method: str, col: str) -> tuple[np.ndarray, np.ndarray]:
    g = _rows(pool, task, method)
    return g.val_acc.to_numpy(float), g[col].to_numpy(float)


def _finite(col: pd.Series, fill: float, bad: np.ndarray | None = None) -> np.ndarray:
    v = col.to_numpy(float)
    return np.where(np.isfinite(v) & (True if bad is None else ~bad), v, fill)


def _codes(lo, hi, margin: float, higher: bool, unconverged: bool = False) -> np.ndarray:
    """:func:`softgrad.stats.interval_verdict` on arrays of intervals (the test rejecting exactly when the
    interval excludes 0, as Holm's intervals do), as indices into VERDICTS; with the convergence gate."""
    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    if not higher:
        lo, hi = -hi, -lo
    code = np.full(lo.shape, 3, np.int8)
    code[hi < 0] = 1
    code[lo > 0] = 0 if not unconverged else 3
    code[(-margin < lo) & (hi < margin)] = 2
    return code


def analyse(pool: pd.DataFrame, spec: dict, histories: pd.DataFrame | None = None,
            spread: float = 1.0) -> ProtocolResult:
    """Every statistic of the module docstring from a pool (one row per task, method, trial with
    ``val_acc`` and the test columns of :data:`softgrad.protocol.METRICS`; ``ce_longer`` rows for the gate).
    Selection reads ``val_acc`` only. ``spread`` scales each bootstrap replicate's deviation from its
    estimate (1, the default: the bootstrap as drawn; :func:`power` sets √(N/N′) to read the design at N′
    trial indices)."""
    spec = check_spec(spec)
    T, B = spec["select"], spec["bootstrap"]
    tasks_ = list(dict.fromkeys(pool.task))
    methods = [m for m in spec["methods"] if m != "ce"]
    n = int(pool.trial.max()) + 1
    boot = index_resamples(spec, tasks_, n)  # one index resample per task, shared by all methods
    exs = example_resamples(spec, pool, tasks_)  # one example resample per task and replicate (or None)
    conv = _convergence(pool, spec, tasks_, boot, exs)
    unconverged = set(conv.task[conv.verdict == NOT_CONVERGED]) if len(conv) else set()

    rows, reps = [], []
    for metric, (col, higher) in METRICS.items():
        for task in tasks_:
            # a failed run (diverged, or stuck at chance on validation) counts as the task's worst run that
            # trained, on every metric but accuracy (bounded, measured as it is): resample.worst_finite
            fill = worst_finite(pool, task, col, higher, spec)
            bad = (lambda r: failed(r, spec)) if metric != "acc" else (lambda r: None)
            ce_rows = _rows(pool, task, "ce")
            vc, tc = ce_rows.val_acc.to_numpy(float), _finite(ce_rows[col], fill, bad(ce_rows))
            vc_b, tc_b = replicate_values(ce_rows, col, boot[task], exs[task], fill, bad(ce_rows))
            ce_e = float(S.expected_selected(vc, tc, T))
            ce_b = S.expected_selected(vc_b, tc_b, T)
            for method in methods:
                m_rows = _rows(pool, task, method)
                vm, tm = m_rows.val_acc.to_numpy(float), _finite(m_rows[col], fill, bad(m_rows))
                vm_b, tm_b = replicate_values(m_rows, col, boot[task], exs[task], fill, bad(m_rows))
                m_e = float(S.expected_selected(vm, tm, T))
                d_b = S.expected_selected(vm_b, tm_b, T) - ce_b
                if spread != 1.0:  # planning only (power); the default leaves the replicates untouched
                    d_b = (m_e - ce_e) + spread * (d_b - (m_e - ce_e))
                row = {"task": task, "method": method, "metric": metric, "method_E": m_e, "ce_E": ce_e,
                       "diff": m_e - ce_e, "margin": margin(spec, metric, task), "higher_is_better": higher,
                       "trials": n, "select": T}
                if metric == "acc":
                    pb = S.p_beats(vm, tm, vc, tc, T, higher, spec["subsets"], spec["sample_seed"])
                    pb_b = S.p_beats(vm_b, tm_b, vc_b, tc_b, T, higher, spec["subsets"], spec["sample_seed"])
                    row.update(p_beats=float(pb), **dict(zip(("p_beats_lo", "p_beats_hi"),
                                                             S.percentile_interval(pb_b, spec["confidence"]))))
                rows.append(row)
                reps.append(d_b)
    cmp = pd.DataFrame(rows)
    codes = np.zeros((len(cmp), B), np.int8)
    for metric, g in cmp.groupby("metric", sort=False):
        h = S.holm_intervals([reps[i] for i in g.index], spec["alpha"])
        for i, r in zip(g.index, h):
            cmp.loc[i, ["level", "lo", "hi", "p"]] = [r["level"], r["lo"], r["hi"], r["p"]]
            cmp.loc[i, "rejected"] = r["rejected"]
    cmp["rejected"] = cmp["rejected"].astype(bool)
    for i, r in cmp.iterrows():
        uc = r.task in unconverged
        cmp.loc[i, "verdict"] = S.VERDICTS[int(_codes(r.lo, r.hi, r.margin, r.higher_is_better, uc))]
        shift = reps[i] - r["diff"]  # each replicate: a plausible rerun, the interval moved with it
        codes[i] = _codes(r.lo + shift, r.hi + shift, r.margin, r.higher_is_better, uc)
    cmp["ce_not_converged"] = cmp.task.isin(unconverged)
    agg, agg_codes = _aggregate(cmp, reps, spec, methods, bool(unconverged))
    allc = np.vstack([codes, agg_codes])
    for t, c in ((cmp, codes), (agg, agg_codes)):
        _stability(t, c)
    return ProtocolResult(spec, pool, cmp, agg, _budget(pool, spec, tasks_, n), conv,
                          histories if histories is not None else pd.DataFrame(), replicate_verdicts=allc,
                          test_resampled=all(c is not None for c in exs.values()))


def _stability(t: pd.DataFrame, codes: np.ndarray) -> None:
    """Adds ``predicted_agreement`` (the share of replicates whose shifted interval gives the row's verdict:
    its predicted stability under a rerun), ``fragile`` (below 80%), and ``best`` / ``worst`` (the most and
    least favourable effects the interval does not exclude, on the improvement side of the metric)."""
    v = np.array([S.VERDICTS.index(x) for x in t.verdict], np.int8)[:, None]
    t["predicted_agreement"] = (codes == v).mean(axis=1) if codes.size else np.nan
    t["fragile"] = t.predicted_agreement < 0.8
    t["best"] = np.where(t.higher_is_better, t.hi, t.lo)
    t["worst"] = np.where(t.higher_is_better, t.lo, t.hi)


def _budget(pool: pd.DataFrame, spec: dict, tasks_: list, n: int) -> pd.DataFrame:
    """Budget curves: E_T of validation and test accuracy for T = 1…N/4, every task and method."""
    return pd.DataFrame([{"task": t, "method": m, "T": k,
                          "val_acc": float(S.expected_selected(*_pool_arrays(pool, t, m, "val_acc"), k)),
                          "test_acc": float(S.expected_selected(*_pool_arrays(pool, t, m, "test_acc"), k))}
                         for t in tasks_ for m in spec["methods"] for k in range(1, max(1, n // 4) + 1)])


def _aggregate(cmp: pd.DataFrame, reps: list, spec: dict, methods: list[str],
               unconverged: bool) -> tuple[pd.DataFrame, np.ndarray]:
    """Mean over tasks of Δ, each task's indices resampled independently (stratified), the interval at
    confidence 1 − (1 − confidence)/m over the m methods (Bonferroni), against the mean of the tasks'
    margins; the verdict read off that interval (a *reproduced* one reported as *inconclusive at this
    budget* if CE has not converged on some task). Also the replicates' verdict codes."""
    conf = 1 - (1 - spec["confidence"]) / max(1, len(methods))
    rows, codes = [], []
    for (method, metric), g in cmp.groupby(["method", "metric"], sort=False):
        r = np.mean([reps[i] for i in g.index], axis=0)
        lo, hi = S.percentile_interval(r, conf)
        higher = bool(g.higher_is_better.iloc[0])
        diff, m = float(g["diff"].mean()), margin(spec, metric)
        verdict = S.VERDICTS[int(_codes(lo, hi, m, higher, unconverged))]
        codes.append(_codes(lo + (r - diff), hi + (r - diff), m, higher, unconverged))
        rows.append({"method": method, "metric": metric, "diff": diff, "lo": lo, "hi": hi, "level": conf,
                     "margin": m, "tasks": len(g), "higher_is_better": higher, "verdict": verdict,
                     "ce_not_converged": unconverged})
    return pd.DataFrame(rows), np.array(codes, np.int8).reshape(len(rows), -1)


def convergence_verdict(lo: float, hi: float, margin: float) -> str:
    """The convergence gate's rule on the interval of E_T(CE trained longer) − E_T(CE at the budget), test
    accuracy: *converged* when it lies inside ±margin (the task's accuracy margin), *not converged* when it
    lies above 0 (longer training gains), *longer training hurts* when it lies below 0 (CE overfits past
    the budget: the budget acts as early stopping, the same for every method), else *undetermined*."""
    if -margin < lo and hi < margin:
        return CONVERGED
    if lo > 0:
        return NOT_CONVERGED
    if hi < 0:
        return OVERFITS
    return UNDETERMINED


def _convergence(pool: pd.DataFrame, spec: dict, tasks_: list[str], boot: dict, exs: dict) -> pd.DataFrame:
    """The gate on the estimand: E_T of CE's test accuracy with its top validation ranks (:func:`longer_trials`)
    trained ``longer`` × the epochs — ranked by their own validation accuracy, the rest of the pool as at the
    budget — minus E_T at the budget, under the analysis's paired index bootstrap (``boot``:
    :func:`index_resamples`; ``exs``: :func:`example_resamples`)."""
    rows, T = [], spec["select"]
    cols = ["task", "trials", "weight", "budget_E", "longer_E", "diff", "lo", "hi", "margin", "verdict"]
    for task in tasks_:
        lg = _rows(pool, task, "ce_longer")
        if lg.empty:
            continue
        budget = _rows(pool, task, "ce")
        longer = pd.concat([budget[~budget.trial.isin(lg.trial)], lg]).sort_values("trial")  # the top ranks longer
        vb, tb = budget.val_acc.to_numpy(float), budget.test_acc.to_numpy(float)
        vl, tl = longer.val_acc.to_numpy(float), longer.test_acc.to_numpy(float)
        idx = lg.trial.to_numpy(int)
        e_b, e_l = float(S.expected_selected(vb, tb, T)), float(S.expected_selected(vl, tl, T))
        r = (S.expected_selected(*replicate_values(longer, "test_acc", boot[task], exs[task]), T)
             - S.expected_selected(*replicate_values(budget, "test_acc", boot[task], exs[task]), T))
        lo, hi = S.percentile_interval(r, spec["confidence"])
        m = margin(spec, "acc", task)
        rows.append({"task": task, "trials": len(idx), "weight": float(S.selection_weights(vb, T)[idx].sum()),
                     "budget_E": e_b, "longer_E": e_l, "diff": e_l - e_b, "lo": lo, "hi": hi, "margin": m,
                     "verdict": convergence_verdict(lo, hi, m)})
    return pd.DataFrame(rows, columns=cols)

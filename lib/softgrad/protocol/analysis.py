"""Steps 3–8 of the protocol on a pool (one row per task, method and trial index): the estimand E_T and Δ to
CE, the paired index bootstrap with Holm-level intervals and verdicts (:func:`analyse`), the across-task mean
(stratified, Bonferroni), the convergence gate's verdict (:func:`convergence_verdict`), predicted stability,
:func:`power` and :func:`spread_ratio`, :func:`split_half` and :func:`agreement`. No training here."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd

from .. import stats as S
from .spec import METRICS, check_spec, dimensions, limit, margin

__all__ = ["CONVERGED", "NOT_CONVERGED", "OVERFITS", "UNDETERMINED", "ProtocolResult", "analyse",
           "index_resamples", "replicate_values", "edge_shares", "EDGE_TENTH", "EDGE_FLAG",
           "convergence_verdict", "power", "spread_ratio", "agreement", "split_half"]


# the convergence check's verdicts (CE trained ``longer`` x the epochs minus CE at the budget, test accuracy)
CONVERGED, NOT_CONVERGED, OVERFITS, UNDETERMINED = (
    "converged", "not converged (gains from longer training)", "longer training hurts", "undetermined")
# the edge-share diagnostic: the outer tenth of each side of a range (a flat response puts 10% of E_T's weight
# there), and the share above which an edge that is no definitional limit is flagged (widen that range)
EDGE_TENTH, EDGE_FLAG = 0.1, 0.15


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


def _rows(pool: pd.DataFrame, task: str, method: str) -> pd.DataFrame:
    """The pool's rows of (task, method), one per trial index, in index order."""
    return pool[(pool.task == task) & (pool.method == method)].sort_values("trial")


def _pool_arrays(pool: pd.DataFrame, task: str, method: str, col: str) -> tuple[np.ndarray, np.ndarray]:
    g = _rows(pool, task, method)
    return g.val_acc.to_numpy(float), g[col].to_numpy(float)


def index_resamples(spec: dict, tasks_: list[str], n: int) -> dict[str, np.ndarray]:
    """task -> the bootstrap's trial-index resamples, shape ``(B, n)`` (B = ``bootstrap``): replicate b draws n
    of the task's n trial indices with replacement, the same draw for every method (paired). Drawn in task
    order from one generator seeded by ``sample_seed``."""
    rng = np.random.default_rng(spec["sample_seed"])
    return {t: rng.integers(0, n, (spec["bootstrap"], n)) for t in tasks_}


def replicate_values(rows: pd.DataFrame, col: str, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each bootstrap replicate's validation accuracy and test value per trial, both ``(B, n)``: ``rows`` one
    per trial index in index order (a (task, method)'s runs), ``idx`` the task's ``(B, n)`` index resamples
    (:func:`index_resamples`); entry [b, j] is trial ``idx[b, j]``'s.

    Every statistic that resamples the pool reads its replicates here (the comparisons, P(beats), the
    convergence gate), so a bootstrap that also resamples test examples plugs in at this one place: it keeps
    the validation values (selection reads validation only) and returns the test values recomputed on
    replicate b's resample of the test set (one resample of examples per task and replicate, shared by every
    method; ``rows.run_id`` names the runs)."""
    return rows.val_acc.to_numpy(float)[idx], rows[col].to_numpy(float)[idx]


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
    conv = _convergence(pool, spec, tasks_, boot)
    unconverged = set(conv.task[conv.verdict == NOT_CONVERGED]) if len(conv) else set()

    rows, reps = [], []
    for metric, (col, higher) in METRICS.items():
        for task in tasks_:
            ce_rows = _rows(pool, task, "ce")
            vc, tc = ce_rows.val_acc.to_numpy(float), ce_rows[col].to_numpy(float)
            vc_b, tc_b = replicate_values(ce_rows, col, boot[task])
            ce_e = float(S.expected_selected(vc, tc, T))
            ce_b = S.expected_selected(vc_b, tc_b, T)
            for method in methods:
                m_rows = _rows(pool, task, method)
                vm, tm = m_rows.val_acc.to_numpy(float), m_rows[col].to_numpy(float)
                vm_b, tm_b = replicate_values(m_rows, col, boot[task])
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
                          histories if histories is not None else pd.DataFrame(), replicate_verdicts=allc)


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


def _convergence(pool: pd.DataFrame, spec: dict, tasks_: list[str], boot: dict) -> pd.DataFrame:
    """The gate on the estimand: E_T of CE's test accuracy with its top validation ranks (:func:`longer_trials`)
    trained ``longer`` × the epochs — ranked by their own validation accuracy, the rest of the pool as at the
    budget — minus E_T at the budget, under the analysis's paired index bootstrap (``boot``:
    :func:`index_resamples`)."""
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
        r = (S.expected_selected(*replicate_values(longer, "test_acc", boot[task]), T)
             - S.expected_selected(*replicate_values(budget, "test_acc", boot[task]), T))
        lo, hi = S.percentile_interval(r, spec["confidence"])
        m = margin(spec, "acc", task)
        rows.append({"task": task, "trials": len(idx), "weight": float(S.selection_weights(vb, T)[idx].sum()),
                     "budget_E": e_b, "longer_E": e_l, "diff": e_l - e_b, "lo": lo, "hi": hi, "margin": m,
                     "verdict": convergence_verdict(lo, hi, m)})
    return pd.DataFrame(rows, columns=cols)


def power(pool: pd.DataFrame, spec: dict, sizes) -> pd.DataFrame:
    """Plug-in power analysis of the design: the verdicts the same pool's estimates would get with N′ trial
    indices per task instead of N. Δ is a smooth functional of the pool (a weighted mean of order
    statistics with T fixed), so its bootstrap spread shrinks as 1/√N′ (:func:`spread_ratio` measures this
    on the pool itself); each replicate's deviation from its estimate is scaled by √(N/N′) and the whole
    analysis (Holm levels, margins, convergence gate) rerun. It takes the estimates as the true effects, so it
    plans a design and is not evidence. One row per N′: ``trials``, ``verdicts``, ``inconclusive`` (share),
    ``predicted_agreement`` (the mean bootstrap-predicted agreement of :func:`analyse`)."""
    n = int(pool.trial.max()) + 1
    rows = []
    for size in sizes:
        R = analyse(pool, spec, spread=math.sqrt(n / size))
        t = pd.concat([R.comparisons[["verdict", "predicted_agreement"]],
                       R.aggregate[["verdict", "predicted_agreement"]]])
        rows.append({"trials": int(size), "verdicts": len(t),
                     "inconclusive": float((t.verdict == S.VERDICTS[3]).mean()),
                     "predicted_agreement": float(t.predicted_agreement.mean())})
    return pd.DataFrame(rows)


def spread_ratio(pool: pd.DataFrame, spec: dict, size: int, draws: int = 20, metric: str = "acc") -> pd.DataFrame:
    """The check behind :func:`power`'s 1/√N′: per (task, method), the bootstrap standard deviation of Δ
    (``metric``) on random ``size``-index subsets of the pool (drawn without replacement, ``draws`` of them;
    the mean of their standard deviations), divided by that on the whole pool of N indices. 1/√N scaling
    predicts √(N/size). Columns: task, method, ratio, predicted."""
    spec = check_spec(spec)
    col = METRICS[metric][0]
    T, B = spec["select"], spec["bootstrap"]
    n = int(pool.trial.max()) + 1
    if not T <= size <= n:
        raise ValueError(f"spread_ratio: size must lie in [select={T}, trials={n}], got {size}")
    rng = np.random.default_rng(spec["sample_seed"])

    def sd(v, t, vc, tc, idx):
        b = idx[rng.integers(0, len(idx), (B, len(idx)))]
        return float(np.std(S.expected_selected(v[b], t[b], T) - S.expected_selected(vc[b], tc[b], T)))

    rows = []
    for task in dict.fromkeys(pool.task):
        vc, tc = _pool_arrays(pool, task, "ce", col)
        for method in (m for m in spec["methods"] if m != "ce"):
            v, t = _pool_arrays(pool, task, method, col)
            full = sd(v, t, vc, tc, np.arange(n))
            sub = np.mean([sd(v, t, vc, tc, rng.choice(n, size, replace=False)) for _ in range(draws)])
            rows.append({"task": task, "method": method, "ratio": sub / full if full > 0 else math.nan,
                         "predicted": math.sqrt(n / size)})
    return pd.DataFrame(rows)


def agreement(a: ProtocolResult, b: ProtocolResult) -> dict:
    """How many categorical verdicts two runs of the protocol share (per task and across tasks):
    ``{'table', 'n', 'agree', 'rate', 'swaps', 'inconclusive', 'predicted'}``. ``swaps`` counts
    reproduced <-> reversed; ``predicted`` is the mean of ``a``'s bootstrap-predicted agreement."""
    keys = ["task", "method", "metric"]
    ta = pd.concat([a.comparisons[keys + ["verdict", "predicted_agreement"]],
                    a.aggregate.assign(task="all tasks")[keys + ["verdict", "predicted_agreement"]]])
    tb = pd.concat([b.comparisons[keys + ["verdict"]], b.aggregate.assign(task="all tasks")[keys + ["verdict"]]])
    t = ta.merge(tb, on=keys, suffixes=("", "_rerun"))
    t["agree"] = t.verdict == t.verdict_rerun
    pair = {frozenset((S.VERDICTS[0], S.VERDICTS[1]))}
    swaps = int(sum(frozenset((x, y)) in pair for x, y in zip(t.verdict, t.verdict_rerun)))
    return {"table": t, "n": len(t), "agree": int(t.agree.sum()), "rate": float(t.agree.mean()), "swaps": swaps,
            "inconclusive": float((t.verdict == S.VERDICTS[3]).mean()),
            "predicted": float(t.predicted_agreement.mean())}


def _subpool(pool: pd.DataFrame, idx) -> pd.DataFrame:
    """The rows of trial indices ``idx`` (their gate rows too), renumbered 0…len(idx)−1 in that order."""
    new = {int(t): k for k, t in enumerate(idx)}
    p = pool[pool.trial.isin(new)].copy()
    p["trial"] = p.trial.map(new)
    return p


def split_half(pool: pd.DataFrame, spec: dict, pairs: int = 4000) -> dict:
    """The pool's two halves analysed separately — two independent pools of N/2 trial indices (a random
    halving, seeded by ``sample_seed``) — and the share of their verdicts that agree, beside the bootstrap's
    prediction for two independent pools of N/2: the full pool read at N/2 (:func:`analyse` with spread √2),
    each replicate's verdicts (comparisons and across tasks, jointly, so their correlation is kept) paired
    with another replicate's; ``predicted`` is the mean agreement of ``pairs`` random pairs and ``band`` its
    central 95% (where a measured rate should fall if the intervals hold every source of variation).
    Returns ``{'rate', 'n', 'agree', 'swaps', 'predicted', 'band', 'halves', 'table'}``."""
    spec = check_spec(spec)
    n = int(pool.trial.max()) + 1
    perm = np.random.default_rng([spec["sample_seed"], 2]).permutation(n)
    a, b = (analyse(_subpool(pool, h), spec) for h in (perm[: n // 2], perm[n // 2: 2 * (n // 2)]))
    m = agreement(a, b)
    codes = analyse(pool, spec, spread=math.sqrt(n / (n // 2))).replicate_verdicts
    rng = np.random.default_rng([spec["sample_seed"], 3])
    i, j = rng.integers(0, codes.shape[1], (2, pairs))
    keep = i != j
    rates = (codes[:, i[keep]] == codes[:, j[keep]]).mean(axis=0)
    return {"rate": m["rate"], "n": m["n"], "agree": m["agree"], "swaps": m["swaps"],
            "predicted": float(rates.mean()), "band": tuple(float(x) for x in np.quantile(rates, [0.025, 0.975])),
            "halves": (a, b), "table": m["table"]}


def _position(v: np.ndarray, lo: float, hi: float, scale: str) -> np.ndarray:
    """Where values lie in a range, in its own scale: u = ln(v/lo)/ln(hi/lo) (log) or (v − lo)/(hi − lo)."""
    v = np.asarray(v, float)
    return np.log(v / lo) / np.log(hi / lo) if scale == "log" else (v - lo) / (hi - lo)


def edge_shares(result_or_pool, spec: dict | None = None, tenth: float = EDGE_TENTH,
                flag: float = EDGE_FLAG) -> pd.DataFrame:
    """Does the search hold every optimum? The share of E_T's selection weight at each edge of each searched
    range (Choi et al. 2019; Sivaprasad et al. 2020: a comparison is only as fair as its search spaces).

    Per (task, method): w_i, the chance that trial i is the one a T-trial search keeps
    (:func:`softgrad.stats.selection_weights` on validation accuracy, ties shared; Σ w_i = 1). Per searched
    dimension d (``lr_eff`` and each knob; :func:`~softgrad.protocol.spec.dimensions`) and trial i, the
    position u_i of its value in d's range, in the range's own scale (:func:`_position`; ``lr_eff`` read from
    the trial's ``setting``, its ``lr`` where a pool predates ``lr_eff``). Then
    ``share`` = Σ_{u_i < tenth} w_i (side 'low') or Σ_{u_i > 1 − tenth} w_i ('high'). A flat response puts
    ``flat`` there, the share of trials in that tenth (the design's Latin hypercube makes it ≈ ``tenth``).

    ``result_or_pool``: a :class:`ProtocolResult` (its spec used when ``spec`` is None) or a pool with a
    ``setting`` column (``ce_longer`` rows are ignored). One row per (task, method, dimension, side):
    ``edge`` (the range's end), ``share``, ``flat``, ``limit`` (the edge is a definitional limit:
    :func:`~softgrad.protocol.spec.limit`, the knob reaches CE or its domain ends there), ``why`` (which), and
    ``flag`` (share > ``flag`` at an edge that is no limit: the range cuts the kept models short; widen it)."""
    if isinstance(result_or_pool, ProtocolResult):
        pool, spec = result_or_pool.pool, spec if spec is not None else result_or_pool.spec
    else:
        pool = result_or_pool
    if spec is None:
        raise ValueError("edge_shares: pass the spec with a pool (a ProtocolResult carries its own)")
    if "setting" not in pool:
        raise ValueError("edge_shares: the pool needs a 'setting' column (each trial's lr, lr_eff and knob values)")
    spec = check_spec(spec)
    rows = []
    for task in dict.fromkeys(pool.task):
        for method in spec["methods"]:
            g = _rows(pool, task, method)
            if g.empty:
                continue
            w = S.selection_weights(g.val_acc.to_numpy(float), spec["select"])
            for dim, (lo, hi, scale) in dimensions(spec, method, task).items():
                key = (lambda s: s.get("lr_eff", s["lr"])) if dim == "lr_eff" else (lambda s, d=dim: s[d])
                u = _position([key(s) for s in g.setting], lo, hi, scale)
                for side, edge, at in (("low", lo, u < tenth), ("high", hi, u > 1 - tenth)):
                    why = limit(method, dim, edge)
                    share = float(w[at].sum())
                    rows.append({"task": task, "method": method, "dimension": dim, "side": side, "edge": edge,
                                 "share": share, "flat": float(at.mean()), "limit": bool(why), "why": why,
                                 "flag": share > flag and not why})
    return pd.DataFrame(rows, columns=["task", "method", "dimension", "side", "edge", "share", "flat", "limit",
                                       "why", "flag"])

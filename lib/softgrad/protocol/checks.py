"""Checks of the design and its readings (steps 7–9 of the protocol), each from a pool or a result: :func:`power`
and :func:`spread_ratio` (planning N), :func:`agreement` and :func:`split_half` (does a verdict replicate?),
:func:`widening` (what the test-set term adds to the intervals) and :func:`edge_shares` (does each search range
hold the models the search keeps?)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .. import stats as S
from .analysis import ProtocolResult, _pool_arrays, _rows, analyse
from .spec import METRICS, check_spec, dimensions, limit

__all__ = ["power", "spread_ratio", "agreement", "split_half", "widening", "edge_shares", "EDGE_TENTH", "EDGE_FLAG"]

# the edge-share diagnostic: the outer tenth of each side of a range (a flat response puts 10% of E_T's weight
# there), and the share above which an edge that is no definitional limit is flagged (widen that range)
EDGE_TENTH, EDGE_FLAG = 0.1, 0.15


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



def widening(R: ProtocolResult) -> pd.DataFrame:
    """How much wider the test-set term made the intervals: per (task, metric), the median over methods of the
    width of the two-way interval (trial indices × test examples, as reported) divided by the width of the
    index-only interval (the same trial-index draws, the test set held fixed; both at the reported Holm
    levels). Columns: task, metric, ratio (the median of the methods' ratios), two_way and index_only (median
    widths)."""
    if not R.test_resampled:
        raise ValueError("widening: the result's intervals do not resample test examples (resample_examples off, "
                         "or a pool without per-example results)")
    pool = R.pool.drop(columns="examples")
    base = analyse(pool, {**R.spec, "resample_examples": False})
    keys = ["task", "method", "metric"]
    t = R.comparisons[keys + ["lo", "hi"]].merge(base.comparisons[keys + ["lo", "hi"]], on=keys,
                                                  suffixes=("", "_idx"))
    t["two_way"], t["index_only"] = t.hi - t.lo, t.hi_idx - t.lo_idx
    t["ratio"] = t.two_way / t.index_only
    g = t.groupby(["task", "metric"], sort=False)[["ratio", "two_way", "index_only"]].median().reset_index()
    return g


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

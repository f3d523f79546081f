"""The bootstrap's draws (step 4 of the protocol): per task, the trial-index resamples shared by every method
and, with ``resample_examples``, the test-example resamples (two-way: trial indices × test examples), and the
one seam through which every resampled statistic reads its replicates (:func:`replicate_values`)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .. import stats as S
from .spec import METRICS

__all__ = ["index_resamples", "example_resamples", "replicate_values", "failed", "worst_finite"]


def failed(rows: pd.DataFrame, spec: dict) -> np.ndarray:
    """Which of ``rows`` failed: final validation accuracy below ``failed_val_acc`` (the run diverged or never
    left chance). Read on validation, so it is a property of the trial, as selection is."""
    return rows.val_acc.to_numpy(float) < spec.get("failed_val_acc", 0.0)


def worst_finite(pool: pd.DataFrame, task: str, col: str, higher_is_better: bool, spec: dict | None = None) -> float:
    """What a failed run's test metric counts as: the task's worst finite value of ``col`` (the lowest accuracy,
    the highest NLL or ECE) over every method and trial that did not fail (:func:`failed`, with ``spec``; without
    it only non-finite values are set aside).

    A search keeps a failed run only when all its T trials failed, so its weight in E_T is small
    (C(j−1, T−1)/C(N, T)); but NaN times any weight is NaN, a diverged run's finite NLL can be 1e16 (which then
    dominates E_T however small its weight), and a run stuck at a uniform prediction has an ECE near 0 (which
    would flatter the method). Counting each as the task's worst result among runs that trained keeps E_T finite
    and never flatters the method that failed. Accuracy is bounded and measured as it is (callers pass no mask
    for it). NaN when the task has no such value."""
    rows = pool[pool.task == task]
    v = rows[col].to_numpy(float)
    ok = np.isfinite(v) & (~failed(rows, spec) if spec is not None else True)
    v = v[ok] if ok.any() else v[np.isfinite(v)]
    return float("nan") if not len(v) else float(v.min() if higher_is_better else v.max())


def index_resamples(spec: dict, tasks_: list[str], n: int) -> dict[str, np.ndarray]:
    """task -> the bootstrap's trial-index resamples, shape ``(B, n)`` (B = ``bootstrap``): replicate b draws n
    of the task's n trial indices with replacement, the same draw for every method (paired). Drawn in task
    order from one generator seeded by ``sample_seed``."""
    rng = np.random.default_rng(spec["sample_seed"])
    return {t: rng.integers(0, n, (spec["bootstrap"], n)) for t in tasks_}


def example_resamples(spec: dict, pool: pd.DataFrame, tasks_: list[str]) -> dict[str, np.ndarray | None]:
    """task -> the bootstrap's test-example resamples, ``(B, n_examples)`` counts (:func:`softgrad.stats.
    example_counts`: replicate b draws the task's n test examples with replacement), one draw per task and
    replicate shared by every method and trial (paired); ``None`` for every task where ``resample_examples`` is
    off or the pool carries no per-example results (an ``examples`` column: :func:`softgrad.protocol.run`
    loads them). Each task draws from its own stream (``sample_seed``, the task's name), so the trial-index
    draws of :func:`index_resamples` are the same with and without this term."""
    if not spec["resample_examples"] or "examples" not in pool.columns:
        return {t: None for t in tasks_}
    out = {}
    for t in tasks_:
        ex = pool.examples[pool.task == t]
        n = {len(e["correct"]) for e in ex}
        if len(n) != 1:
            raise ValueError(f"task {t!r}: the runs' test sets differ in size ({sorted(n)}); "
                             "a paired example bootstrap needs one test set per task")
        rng = np.random.default_rng([spec["sample_seed"], 5, *t.encode()])
        out[t] = S.example_counts(n.pop(), spec["bootstrap"], rng)
    return out


# (run key, metric, resample key) -> (B,) float32: a run's test metric on each replicate's example resample.
# The same runs are read again by split_half's halves, power and the convergence gate: computed once.
_REPLICATES: dict = {}
_METRIC_OF = {col: metric for metric, (col, _) in METRICS.items()}


def _replicate_matrix(rows: pd.DataFrame, col: str, counts: np.ndarray) -> np.ndarray:
    """``(n_trials, B)``: each run's ``col`` recomputed on every replicate's resample of the test examples
    (:func:`softgrad.stats.replicate_metric`), rows in ``rows``' order."""
    metric = _METRIC_OF[col]
    ckey = (counts.shape, hash(counts[:8].tobytes()))  # the resample's identity (its first replicates)
    keys = [(r if isinstance(r, str) else id(e), metric, ckey)
            for r, e in zip(rows.get("run_id", pd.Series([None] * len(rows))), rows.examples)]
    todo = [i for i, k in enumerate(keys) if k not in _REPLICATES]
    if todo:
        ex = [rows.examples.iloc[i] for i in todo]
        stacked = {k: np.stack([e[k] for e in ex]) for k in ex[0] if all(k in e for e in ex)}
        if metric == "ece_ts" and "correct_ts" not in stacked:
            stacked["correct_ts"] = np.stack([e.get("correct_ts", e["correct"]) for e in ex])
        m = S.replicate_metric(stacked, metric, counts).astype(np.float32)
        for j, i in enumerate(todo):
            _REPLICATES[keys[i]] = m[j]
    return np.stack([_REPLICATES[k] for k in keys]).astype(float)


def replicate_values(rows: pd.DataFrame, col: str, idx: np.ndarray, counts: np.ndarray | None = None,
                     fill: float | None = None, bad: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Each bootstrap replicate's validation accuracy and test value per trial, both ``(B, n)``: ``rows`` one
    per trial index in index order (a (task, method)'s runs), ``idx`` the task's ``(B, n)`` index resamples
    (:func:`index_resamples`); entry [b, j] is trial ``idx[b, j]``'s.

    Every statistic that resamples the pool reads its replicates here (the comparisons, P(beats), the
    convergence gate). With ``counts`` (:func:`example_resamples`) the bootstrap is two-way: the validation
    values are kept (selection reads validation only) and the test value of entry [b, j] is trial ``idx[b, j]``'s
    metric recomputed on replicate b's resample of the test examples, the same resample for every method.
    ``fill``: the value a non-finite test metric (a diverged run's NaN NLL) counts as (:func:`worst_finite`), and
    so does every trial of ``bad`` (one flag per row: :func:`failed`)."""
    val = rows.val_acc.to_numpy(float)[idx]
    if counts is None:
        test = rows[col].to_numpy(float)[idx]
    else:
        test = _replicate_matrix(rows, col, counts)[idx, np.arange(idx.shape[0])[:, None]]  # (n, B) -> (B, n)
    if fill is None:
        return val, test
    keep = np.isfinite(test) if bad is None else np.isfinite(test) & ~np.asarray(bad, bool)[idx]
    return val, np.where(keep, test, fill)

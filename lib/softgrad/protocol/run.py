"""Training: :func:`run` trains (or reads back) the pool, the convergence gate's longer runs and the winners'
retrains, and analyses them (:func:`softgrad.protocol.analysis.analyse`); :func:`retrain_table` sets each
winner's own test score beside its fresh-seed retrains'."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..config import Config
from ..store import run_dir
from .analysis import ProtocolResult, analyse
from .design import _configs, _longer_configs, _retrain_configs, longer_trials, winners
from .spec import METRICS, check_spec, tasks

__all__ = ["run", "retrain_table"]


def _train(rows: list[dict], cfgs: list[Config], out, spec: dict, executor: str, progress, desc: str) -> tuple:
    """Train (or read back) ``cfgs``; their final metrics joined to ``rows``, and every epoch's rows."""
    from ..runs import run_grid
    from ..store import results_frame

    from ..store import load_examples

    need = spec["resample_examples"]  # the two-way bootstrap reads every run's per-example test results
    res = run_grid(cfgs, out, executor=executor, workers=spec["workers"] if executor == "processes" else None,
                   progress=progress, desc=desc, require_examples=need, max_stack=spec["max_stack"])
    keys = pd.DataFrame(rows).assign(run_id=[r["run_id"] for r in res])
    if need:
        keys["examples"] = [load_examples(out, r["run_id"], expect=r.get("examples")) for r in res]
    hist = results_frame(res).merge(keys[["run_id", "task", "method", "trial"]], on="run_id")
    fin = hist[hist["final"]].set_index("run_id")
    cols = ["val_acc", "val_nll", *(col for col, _ in METRICS.values()), "test_nll_ts_noisyval",
            "test_ece_ts_noisyval", "ts_temperature", "train_time"]
    return keys.join(fin[[c for c in cols if c in fin]], on="run_id"), hist


def run(base: dict, spec: dict, profile: str, out_root: Path | None = None, progress: bool | None = None,
        executor: str | None = None, loss_impl: str | None = None, retrain: bool = True) -> ProtocolResult:
    """Train the pool, then the convergence gate's longer CE runs on the indices the estimand selects
    (:func:`longer_trials`), then the winners' retrains (finished runs are read back, never recomputed), and
    :func:`analyse` it all.

    ``loss_impl`` (``Config.loss_impl``) trains every run with that implementation of the losses: a robustness
    rerun (``spec['rerun_loss_impl']``, the ci profile's test) is the whole protocol again under the other
    one, compared with :func:`agreement` (it decides no verdict). ``retrain``: also the ``retrain_seeds``
    fresh-seed retrains of each method's most frequent winner (the winner's curse)."""
    from ..runs import default_progress

    progress = default_progress() if progress is None else progress
    spec = check_spec(spec)
    out = run_dir(profile, out_root)
    executor = executor or ("processes" if spec["workers"] > 1 else "local")
    tag = f" [{loss_impl}]" if loss_impl else ""
    task_cfgs = {t: c if loss_impl is None else c.replace(loss_impl=loss_impl) for t, c in tasks(base, spec).items()}
    pool, hist = _train(*_configs(task_cfgs, spec), out, spec, executor, progress, "pooled trials" + tag)
    lrows, lcfgs = _longer_configs(task_cfgs, spec, longer_trials(pool, spec))
    if lcfgs:
        lpool, lhist = _train(lrows, lcfgs, out, spec, executor, progress, "convergence gate" + tag)
        pool, hist = pd.concat([pool, lpool], ignore_index=True), pd.concat([hist, lhist], ignore_index=True)
    result = analyse(pool, spec, hist)
    if retrain and spec["retrain_seeds"] > 0:
        rrows, rcfgs = _retrain_configs(task_cfgs, spec, winners(pool))
        fresh, _ = _train(rrows, rcfgs, out, spec, executor, progress, "winner retrains" + tag)
        result.retrain = retrain_table(pool, fresh)
    return result


def retrain_table(pool: pd.DataFrame, fresh: pd.DataFrame) -> pd.DataFrame:
    """Per (task, method): the winner's own test accuracy (what E_T averages) beside its fresh-seed retrains'
    mean and spread, and ``curse`` = own − fresh mean (positive: selection picked a lucky seed)."""
    own = pool.set_index(["task", "method", "trial"]).test_acc
    rows = []
    for (task, method, trial), g in fresh.groupby(["task", "method", "trial"], sort=False):
        o = float(own.loc[(task, method, trial)])
        f = g.test_acc.to_numpy(float)
        rows.append({"task": task, "method": method, "trial": int(trial), "setting": g.setting.iloc[0],
                     "own_test_acc": o, "fresh_mean": float(f.mean()), "fresh_min": float(f.min()),
                     "fresh_max": float(f.max()), "fresh_n": len(f), "curse": o - float(f.mean())})
    return pd.DataFrame(rows)

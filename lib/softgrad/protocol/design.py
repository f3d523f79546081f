"""Steps 1–2, 5 and 6 of the protocol as configs: the design of N trial indices (:func:`design`: one shared
Latin-hypercube column for the learning rate, one per method for its knobs), the pool's configs, the
convergence gate's longer CE runs on the indices the estimand selects (:func:`longer_trials`), the winners'
fresh-seed retrains (:func:`winners`); :func:`plan` and :func:`count` for the up-front check."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .. import stats as S
from ..config import Config
from .spec import METHODS, _range, check_spec, tasks

__all__ = ["design", "longer_trials", "winners", "plan", "count"]

def _with(cfg: Config, method: str, knobs: dict, lr: float, seed: int) -> Config:
    d = cfg.to_dict()
    d.update(METHODS[method])
    d["loss_params"] = {}
    for k, v in knobs.items():
        if k in Config.__dataclass_fields__:
            d[k] = v
        else:
            d["loss_params"][k] = v
    return cfg.replace(**{**d, "lr": lr, "seed": seed})


def _round(x: float) -> float:
    return float(f"{x:.3g}")  # readable settings; the sampled design is unchanged at 3 digits


def _column(u: np.ndarray, lo: float, hi: float, scale: str) -> np.ndarray:
    return np.exp(np.log(lo) + u * (np.log(hi) - np.log(lo))) if scale == "log" else lo + u * (hi - lo)


def _stream(spec: dict, name: str) -> np.random.Generator:
    # one stream per name (name-seeded), so adding a method does not move the others' draws
    return np.random.default_rng([spec["sample_seed"], *name.encode()])


def design(spec: dict) -> dict[str, list[dict]]:
    """method -> N settings ({'lr', knob: ...}), index i the same trial index for every method.

    The learning rate is one Latin-hypercube column shared by all methods (index i: the same stratum and
    value); each method's knobs are its own Latin-hypercube columns (scipy.stats.qmc)."""
    from scipy.stats import qmc

    n = spec["trials"]
    lr = _column(qmc.LatinHypercube(d=1, rng=_stream(spec, "lr")).random(n)[:, 0], *_range("lr", spec["lr"], True))
    out = {}
    for method, knobs in spec["methods"].items():
        cols = {}
        if knobs:
            u = qmc.LatinHypercube(d=len(knobs), rng=_stream(spec, method)).random(n)
            cols = {k: _column(u[:, j], *_range(k, v)) for j, (k, v) in enumerate(knobs.items())}
        out[method] = [{"lr": _round(lr[i]), **{k: _round(c[i]) for k, c in cols.items()}} for i in range(n)]
    return out


def _configs(task_cfgs: dict, spec: dict) -> tuple[list[dict], list[Config]]:
    rows, cfgs = [], []
    settings = design(spec)
    for task, tc in task_cfgs.items():
        for method in spec["methods"]:
            for i, s in enumerate(settings[method]):
                c = _with(tc, method, {k: v for k, v in s.items() if k != "lr"}, s["lr"], spec["seed_base"] + i)
                rows.append({"task": task, "method": method, "trial": i, "setting": s})
                cfgs.append(c)
    return rows, cfgs


def _top_share(n: int, T: int, share: float) -> int:
    """The number k of top validation ranks that carry at least ``share`` of E_T's selection weight in a
    pool of n untied trials: 1 − C(n−k, T)/C(n, T) >= share (the chance a T-subset's best is among them)."""
    w = S.selection_weights(np.arange(n, dtype=float), T)[::-1]  # rank 1 = best first
    return int(np.searchsorted(np.cumsum(w), share - 1e-12) + 1)


def longer_trials(pool: pd.DataFrame, spec: dict) -> dict[str, list[int]]:
    """task -> the CE trial indices the convergence gate trains ``longer``: CE's validation ranks from the
    top, until they carry ``longer_weight`` of E_T's selection weight (:func:`softgrad.stats.selection_weights`;
    tied trials enter together). These are the models the estimand selects, so the gate asks whether CE's
    own E_T grows with training, not whether random settings do."""
    out = {}
    for task in dict.fromkeys(pool.task):
        g = pool[(pool.task == task) & (pool.method == "ce")].sort_values("trial")
        w = S.selection_weights(g.val_acc.to_numpy(float), spec["select"])
        order = np.lexsort((g.trial.to_numpy(), -w))  # heaviest first; equal weights (ties) by index
        k = int(np.searchsorted(np.cumsum(w[order]), spec["longer_weight"] - 1e-12) + 1)
        k = min(len(w), k + int(np.sum(np.isclose(w[order][k:], w[order][k - 1]))))  # a tie group enters whole
        out[task] = sorted(int(t) for t in g.trial.to_numpy()[order[:k]])
    return out


def _longer_configs(task_cfgs: dict, spec: dict, chosen: dict[str, list[int]]) -> tuple[list[dict], list[Config]]:
    rows, cfgs = [], []
    if spec["longer"] <= 1:
        return rows, cfgs
    settings = design(spec)["ce"]
    for task, idx in chosen.items():
        for i in idx:
            s = settings[i]
            c = _with(task_cfgs[task], "ce", {}, s["lr"], spec["seed_base"] + i)
            rows.append({"task": task, "method": "ce_longer", "trial": i, "setting": s})
            cfgs.append(c.replace(epochs=int(round(c.epochs * spec["longer"]))))
    return rows, cfgs


def winners(pool: pd.DataFrame) -> pd.DataFrame:
    """Per (task, method): the most frequent winner of a T-trial search, i.e. the trial of highest validation
    accuracy (a T-subset keeps it whenever it holds it; among tied trials, the first index)."""
    p = pool[pool.method != "ce_longer"]
    order = {k: j for j, k in enumerate(dict.fromkeys(zip(p.task, p.method)))}  # the pool's (task, method) order
    best = (p.sort_values(["val_acc", "trial"], ascending=[False, True], kind="stable")
            .groupby(["task", "method"], sort=False).head(1))
    return best.iloc[np.argsort([order[k] for k in zip(best.task, best.method)], kind="stable")].reset_index(drop=True)


def _retrain_configs(task_cfgs: dict, spec: dict, win: pd.DataFrame) -> tuple[list[dict], list[Config]]:
    # fresh seeds: past every trial index's seed (seed_base + i, i < trials)
    rows, cfgs = [], []
    for r in win.itertuples():
        s = r.setting
        for k in range(spec["retrain_seeds"]):
            seed = spec["seed_base"] + spec["trials"] + k
            rows.append({"task": r.task, "method": r.method, "trial": r.trial, "setting": s, "seed": seed})
            cfgs.append(_with(task_cfgs[r.task], r.method, {k_: v for k_, v in s.items() if k_ != "lr"},
                              s["lr"], seed))
    return rows, cfgs


def plan(base: dict, spec: dict) -> list[Config]:
    """Every config of the pool (validated), for the up-front check of a parameter file; the runs that
    depend on the pool's results (the gate's longer runs, the winners' retrains) are counted by :func:`count`."""
    spec = check_spec(spec)
    return _configs(tasks(base, spec), spec)[1]


def count(base: dict, spec: dict) -> dict[str, int]:
    """How many runs the protocol trains: ``pool``, ``longer`` (the convergence gate; which indices depends
    on the pool, how many does not, unless validation accuracies tie), ``retrain`` (the winners' fresh seeds),
    ``rerun`` (the whole pool and gate again under ``rerun_loss_impl``) and ``total``."""
    spec = check_spec(spec)
    n_tasks = len(tasks(base, spec))
    pool = len(plan(base, spec))
    longer = n_tasks * _top_share(spec["trials"], spec["select"], spec["longer_weight"]) if spec["longer"] > 1 else 0
    retrain = n_tasks * len(spec["methods"]) * spec["retrain_seeds"]
    rerun = pool + longer if spec["rerun_loss_impl"] else 0
    return {"pool": pool, "longer": longer, "retrain": retrain, "rerun": rerun,
            "total": pool + longer + retrain + rerun}

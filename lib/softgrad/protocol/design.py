"""Steps 1–2, 5 and 6 of the protocol as configs: the design of N trial indices (:func:`design`: one shared
Latin-hypercube column for the learning rate, one per method for its knobs, each mapped into the method's
declared search space), the pool's configs, the convergence gate's longer CE runs on the indices the estimand
selects (:func:`longer_trials`), the winners' fresh-seed retrains (:func:`winners`); :func:`plan`,
:func:`count` and :func:`search_table` for the up-front check.

A comparison is only as fair as its search spaces (Choi et al. 2019, "On Empirical Comparisons of Optimizers
for Deep Learning", arXiv 1910.05446: rankings flip with the search space; Sivaprasad et al. 2020, "Optimizer
Benchmarking Needs to Account for Hyperparameter Tuning", ICML): each method searches in the coordinates its
own analysis gives, and :func:`softgrad.protocol.edge_shares` checks afterwards that the kept models do not
sit at a range's edge."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .. import stats as S
from ..config import Config
from .spec import METHODS, check_spec, dimensions, knobs, limit, lr_coupling, lr_range, tasks

__all__ = ["unit_design", "design", "search_table", "longer_trials", "winners", "plan", "count"]


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


def unit_design(spec: dict) -> tuple[np.ndarray, dict[str, dict[str, np.ndarray]]]:
    """The design on the unit cube: ``(u_lr, {method: {knob: u}})``, each ``(N,)`` in [0, 1). ``u_lr`` is one
    Latin-hypercube column shared by every method (common random numbers: index i is in the same
    learning-rate stratum for every method); each method's knobs are its own Latin-hypercube columns
    (scipy.stats.qmc), one name-seeded stream per method, so adding a method moves no other method's draws."""
    from scipy.stats import qmc

    n = spec["trials"]
    u_lr = qmc.LatinHypercube(d=1, rng=_stream(spec, "lr")).random(n)[:, 0]
    out = {}
    for method in spec["methods"]:
        ks = knobs(spec, method)
        u = qmc.LatinHypercube(d=len(ks), rng=_stream(spec, method)).random(n) if ks else None
        out[method] = {k: u[:, j] for j, k in enumerate(ks)}
    return u_lr, out


def design(spec: dict, task: str | None = None, optimizer: str = "sgd",
           weight_decay: float | None = None) -> dict[str, list[dict]]:
    """method -> N settings ``{'lr', 'lr_eff', knob: ...}`` on ``task`` (trained with ``optimizer``), index i
    the same trial index for every method (:func:`unit_design`'s columns mapped into each method's ranges).

    Each dimension maps its column u into its range, ``low·(high/low)^u`` (log) or ``low + u·(high − low)``
    (linear), rounded to 3 significant digits: ``lr_eff`` = u_lr in the method's learning-rate range
    (:func:`~softgrad.protocol.spec.lr_range`: its own ``lr`` or the shared one, per task where given), each
    knob its own column. ``lr`` is the learning rate the run trains with: ``lr_eff`` itself, or, for a method
    with ``lr_coupling: {knob, power}`` on an SGD task, ``round₃(lr_eff · knob^power)``, so that lr_eff is the
    step the method's analysis says it takes: temperature's loss CE(βz) has gradient β(softmax(βz) − y), its
    logits move by ηβ² (chapter 01; Agarwala et al. 2020), so it searches η_eff = ηβ² (power −2); SGT(α)'s
    gradient is that of CE(αz)/α, temperature β = α at step η/α, so its effective step is ηα (power −1). On
    an AdamW task (``optimizer != 'sgd'``) the coupling is not applied, ``lr == lr_eff``: Adam divides out the
    gradient's scale, so a temperature is no longer a step-size change. ``task`` may be None when no
    learning-rate range is per task.

    ``weight_decay`` (the task's): where the coupling applies, the setting also carries
    ``weight_decay = round₃(weight_decay · lr_eff / lr)``, so that the decay per step, lr · weight_decay, is the
    task's at lr_eff — SGD's coupled decay shrinks the weights by a factor 1 − lr·wd per step, and a coupled
    lr of 10⁴ (β = 0.01, lr_eff = 1) with the task's decay would shrink them to nothing (lr·wd > 2 diverges).
    The coupling rescales the loss's step, not the regulariser's."""
    u_lr, u = unit_design(spec)
    out = {}
    for method in spec["methods"]:
        lr_eff = [_round(x) for x in _column(u_lr, *lr_range(spec, method, task))]
        cols = {k: [_round(x) for x in _column(u[method][k], *r)]
                for k, r in dimensions(spec, method, task).items() if k != "lr_eff"}
        c = lr_coupling(spec, method) if optimizer == "sgd" else None
        lr = lr_eff if c is None else [_round(e * cols[c[0]][i] ** c[1]) for i, e in enumerate(lr_eff)]
        out[method] = [{"lr": lr[i], "lr_eff": lr_eff[i], **{k: v[i] for k, v in cols.items()}}
                       for i in range(spec["trials"])]
        if c is not None and weight_decay:
            for s_ in out[method]:
                s_["weight_decay"] = _round(weight_decay * s_["lr_eff"] / s_["lr"])
    return out


def _knob_values(setting: dict) -> dict:
    """A trial's knob values: its setting without the learning rates."""
    return {k: v for k, v in setting.items() if k not in ("lr", "lr_eff")}


def _configs(task_cfgs: dict, spec: dict) -> tuple[list[dict], list[Config]]:
    rows, cfgs = [], []
    for task, tc in task_cfgs.items():
        settings = design(spec, task, tc.optimizer, tc.weight_decay)
        for method in spec["methods"]:
            for i, s in enumerate(settings[method]):
                c = _with(tc, method, _knob_values(s), s["lr"], spec["seed_base"] + i)
                rows.append({"task": task, "method": method, "trial": i, "setting": s})
                cfgs.append(c)
    return rows, cfgs


def search_table(base: dict, spec: dict) -> pd.DataFrame:
    """The declared search spaces as the design trains them: one row per (task, method, dimension) with
    ``low``, ``high``, ``scale``, ``limits`` (the edges that are definitional limits, in words), ``coupling``
    (for ``lr_eff``: how the trained learning rate follows from it on this task's optimizer), ``optimizer``,
    ``lr_min`` / ``lr_max`` (on the ``lr_eff`` row: the trained learning rates the design draws) and
    ``reason`` (``search_reasons``: the method's, or ``lr``'s for a learning rate that is not the method's own)."""
    spec = check_spec(spec)
    rows, reasons = [], spec["search_reasons"]

    def own(m):  # a method whose learning-rate range is its own: its reason covers lr_eff too
        return m != "ce" and ("lr" in spec["methods"][m] or lr_coupling(spec, m) is not None)

    for task, tc in tasks(base, spec).items():
        settings = design(spec, task, tc.optimizer, tc.weight_decay)
        for method in spec["methods"]:
            c = lr_coupling(spec, method)
            lrs = [s["lr"] for s in settings[method]]
            for dim, (lo, hi, scale) in dimensions(spec, method, task).items():
                lr_row = dim == "lr_eff"
                coupling = "" if not lr_row else "lr = lr_eff" if c is None else (
                    f"lr = lr_eff · {c[0]}^{c[1]:g}" if tc.optimizer == "sgd"
                    else f"lr = lr_eff ({tc.optimizer}: the {c[0]} coupling is not applied)")
                rows.append({"task": task, "method": method, "dimension": dim, "low": lo, "high": hi, "scale": scale,
                             "limits": "; ".join(w for w in (limit(method, dim, lo), limit(method, dim, hi)) if w),
                             "coupling": coupling, "optimizer": tc.optimizer,
                             "lr_min": min(lrs) if lr_row else np.nan, "lr_max": max(lrs) if lr_row else np.nan,
                             "reason": reasons.get("lr" if lr_row and not own(method) else method, "")})
    return pd.DataFrame(rows)


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
    for task, idx in chosen.items():
        settings = design(spec, task, task_cfgs[task].optimizer)["ce"]
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
            cfgs.append(_with(task_cfgs[r.task], r.method, _knob_values(s), s["lr"], seed))
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

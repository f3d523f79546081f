"""The fair-comparison protocol every "improves on CE" claim in the book goes through: pooled trials with
common random numbers, the choice of settings inside the resampling.

Anchors: Dodge et al. 2019 (expected validation performance of a T-trial search), Bouthillier et al. 2021
(the choice of hyperparameters varies as much as the seed: randomise it inside the comparison; P(A > B)),
Musgrave et al. 2020 and Kornblith et al. 2021 (equal budgets, validation split from train), Guo et al. 2017
(temperature scaling), Agarwal et al. 2021 (stratified bootstrap). It replaced "tune on one seed, then
retrain the winner", whose intervals held seed noise around one tuning outcome while the outcome itself
moved with rounding. Per task:

1. **One design of N trial indices** (``trials``). Index i fixes, for every method (CE included), the seed
   (initialisation, data order, label noise and a fresh stratified train/validation re-split: the run seed
   drives all four) and the learning rate: one Latin-hypercube column over log-lr shared by every method, so
   index i is in the same learning-rate stratum with the same value everywhere. Each method draws its own
   knobs from its own Latin-hypercube columns.
2. **Every (method, i) is trained once**, recording validation and test metrics (accuracy, NLL, ECE, and
   NLL/ECE after temperature scaling).
3. **The estimand** — "the test metric you get when you run a T-trial random search with this loss and keep
   the model it picks on validation" — is E_T, computed in closed form over the pool
   (:func:`softgrad.stats.expected_selected`: without-replacement order-statistic weights, ties averaged);
   Δ = E_T(method) − E_T(CE) per task and metric.
4. **Intervals with the selection inside**: an outer bootstrap over trial indices, the same resampled indices
   for every method (paired); percentile intervals reported at each comparison's Holm level per metric
   family (:func:`softgrad.stats.holm_intervals`, so a verdict never contradicts its interval); a stratified
   across-task mean (indices resampled within each task), Bonferroni over the methods.
   P(method beats CE) over shared random T-subsets (:func:`softgrad.stats.p_beats`) with its bootstrap
   interval; budget curves E_T for T = 1…N/4 from the same pool.
5. **Convergence, on the estimand** (:func:`longer_trials`, :func:`convergence_verdict`): CE trained
   ``longer`` × the epochs (same settings and seeds) on its top validation ranks that carry ``longer_weight`` of
   E_T's selection weight — the models a search keeps — and E_T(longer) − E_T(budget) under the comparisons'
   own index resamples. A claim that a method beats CE counts only where CE has not been shown to gain from
   training longer: on a task where it has, a *reproduced* verdict is reported as *inconclusive at this
   budget* (``ce_not_converged`` says so beside it). Where longer training hurts, the budget is an
   early-stopping choice, the same for every method.
6. **The winner's curse**: E_T reports the selected trials' own test scores, which favours settings whose
   result varies with the seed. Each method's most frequent winner (the trial of highest validation accuracy:
   the one a T-subset keeps most often) is retrained with ``retrain_seeds`` fresh seeds (seed, data order,
   label noise and split all new); :attr:`ProtocolResult.retrain` sets its own test score beside theirs.
7. **Margins, bounds and stability**: each metric's equivalence margin is declared per task (``margins``, with
   ``margin_reasons``); every interval is reported with the bound it excludes (:func:`bound_text`) and the
   share of bootstrap replicates (each a plausible rerun) whose shifted interval gives the same verdict —
   its predicted stability (``predicted_agreement``; below 80%: ``fragile``). :func:`split_half` analyses the
   pool's two halves as two independent pools and sets their agreement beside the bootstrap's prediction.
8. **Power** (:func:`power`): the same analysis with each replicate's deviation scaled by √(N/N′) — what the
   verdicts and their predicted agreement would be with N′ trial indices, the estimates taken as the truth;
   :func:`spread_ratio` checks the 1/√N′ scaling on sub-pools. It plans a design and decides no verdict.

The specification is a parameter file's ``extra.protocol`` (:data:`DEFAULTS`); :func:`check_spec` validates it
before any training. The compared methods and their run settings come from the registry
(:data:`softgrad.losses.COMPARED`); a method listed with no mapping (``temperature:`` alone, i.e. null) searches
its registry entry's default knob range.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pandas as pd

from . import stats as S
from .common import POINTS, interval_text, number
from .config import LOSS_IMPLS, Config, ConfigError, expand
from .losses import COMPARED
from .store import run_dir

__all__ = ["DEFAULTS", "METHODS", "METRICS", "check_spec", "margin", "tasks", "design", "plan", "count", "run",
           "analyse", "agreement", "split_half", "bound_text", "ProtocolResult", "winners", "retrain_table",
           "longer_trials", "convergence_verdict", "power", "spread_ratio"]

# method -> the config settings it is made of (its knobs are set on top): the registry's compared methods
METHODS = {name: m.run for name, m in COMPARED.items()}
# metric -> (result column on the test set, higher is better)
METRICS = {"acc": ("test_acc", True), "nll": ("test_nll", False), "ece": ("test_ece", False),
           "nll_ts": ("test_nll_ts", False), "ece_ts": ("test_ece_ts", False)}
SCALES = ("log", "linear")

DEFAULTS = {
    "tasks": {"task": {}},
    "methods": {"ce": {}},
    "lr": [0.01, 1.0],
    "trials": 32,  # N: the pool of trial indices per task
    "select": 8,  # T: the random-search budget of the estimand
    "seed_base": 1000,  # index i trains with seed seed_base + i
    "sample_seed": 0,
    "longer": 2.0,
    "longer_weight": 0.9,  # CE is trained longer on its top validation ranks carrying this share of E_T's weight
    # metric -> margin (one number for every task, or {task: number}); declared before the data
    "margins": {"acc": 0.005, "nll": 0.02, "ece": 0.005, "nll_ts": 0.02, "ece_ts": 0.005},
    "margin_reasons": {},  # metric -> why its margins are what they are (printed beside them)
    "split_half": True,  # analyse the pool's two halves separately: their verdict agreement vs the prediction
    "confidence": 0.95,
    "alpha": 0.05,
    "bootstrap": 2000,
    "subsets": 500,
    "workers": 1,
    "rerun_loss_impl": None,  # a robustness rerun: the whole protocol again with this implementation (ci test)
    "retrain_seeds": 0,  # fresh-seed retrains of each method's most frequent winner (the winner's curse)
}

# the convergence check's verdicts (CE trained ``longer`` x the epochs minus CE at the budget, test accuracy)
CONVERGED, NOT_CONVERGED, OVERFITS, UNDETERMINED = (
    "converged", "not converged (gains from longer training)", "longer training hurts", "undetermined")


def _fail(key: str, msg: str):
    raise ConfigError(f"extra.protocol.{key}: {msg}")


def _range(key, v, positive=False):
    if not (isinstance(v, list) and len(v) in (2, 3) and all(isinstance(a, (int, float)) and not isinstance(a, bool)
                                                           for a in v[:2])):
        _fail(key, f"must be [low, high] or [low, high, 'log'|'linear'], got {v!r}")
    lo, hi = float(v[0]), float(v[1])
    scale = v[2] if len(v) == 3 else "log"
    if scale not in SCALES:
        _fail(key, f"scale must be one of {list(SCALES)}, got {scale!r}")
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi) or ((positive or scale == "log") and lo <= 0):
        _fail(key, f"must satisfy 0 < low < high (finite), got {v!r}")
    return lo, hi, scale


def _int(s, key, lo):
    if isinstance(s[key], bool) or not isinstance(s[key], int) or s[key] < lo:
        _fail(key, f"must be an int >= {lo}, got {s[key]!r}")


def check_spec(spec: dict | None) -> dict:
    """``extra.protocol`` merged over :data:`DEFAULTS`, validated; raises :class:`ConfigError` naming the key."""
    if not isinstance(spec, dict):
        _fail("", f"must be a mapping, got {type(spec).__name__}")
    unknown = sorted(set(spec) - set(DEFAULTS))
    if unknown:
        _fail(unknown[0], f"unknown key; allowed: {sorted(DEFAULTS)}")
    s = {**DEFAULTS, **spec}
    s["margins"] = {**DEFAULTS["margins"], **(spec.get("margins") or {})}
    s["margin_reasons"] = dict(spec.get("margin_reasons") or {})
    for key in ("tasks", "methods"):
        if not isinstance(s[key], dict) or not s[key]:
            _fail(key, "must be a non-empty mapping of name -> settings")
        if key == "methods":  # a method given no mapping (null) searches its registry's default knob range
            s[key] = {n: (COMPARED[n].knob if v is None and n in COMPARED else v) for n, v in s[key].items()}
        for name, v in s[key].items():
            if not isinstance(v, dict):
                _fail(f"{key}.{name}", f"must be a mapping, got {v!r}")
    if "ce" not in s["methods"] or s["methods"]["ce"]:
        _fail("methods", "must include 'ce' with no knob (its learning rate is tuned like every method's)")
    for name, knobs in s["methods"].items():
        if name not in METHODS:
            _fail("methods", f"method must be one of {list(METHODS)}, got {name!r}")
        for k, v in knobs.items():
            _range(f"methods.{name}.{k}", v)
    _range("lr", s["lr"], positive=True)
    _int(s, "trials", 2)
    _int(s, "select", 1)
    if s["select"] > s["trials"]:
        _fail("select", f"must be <= trials ({s['trials']}), got {s['select']}")
    for key, lo in (("seed_base", 0), ("sample_seed", 0), ("bootstrap", 100),
                    ("subsets", 10), ("workers", 1), ("retrain_seeds", 0)):
        _int(s, key, lo)
    lw = s["longer_weight"]
    if isinstance(lw, bool) or not isinstance(lw, (int, float)) or not 0 < lw <= 1:
        _fail("longer_weight", f"must be a number in (0, 1] (1: every trial index), got {lw!r}")
    if not isinstance(s["split_half"], bool):
        _fail("split_half", f"must be true or false, got {s['split_half']!r}")
    if s["rerun_loss_impl"] is not None and s["rerun_loss_impl"] not in LOSS_IMPLS:
        _fail("rerun_loss_impl", f"must be one of {list(LOSS_IMPLS)} or null (no rerun), got {s['rerun_loss_impl']!r}")
    if isinstance(s["longer"], bool) or not isinstance(s["longer"], (int, float)) or s["longer"] < 1:
        _fail("longer", f"must be a number >= 1 (1: no convergence check), got {s['longer']!r}")
    for key in ("confidence", "alpha"):
        if not isinstance(s[key], float) or not 0 < s[key] < 1:
            _fail(key, f"must be a float in (0, 1), got {s[key]!r}")
    for m, v in s["margins"].items():
        if m not in METRICS:
            _fail(f"margins.{m}", f"metric must be one of {list(METRICS)}")
        for task, x in (v.items() if isinstance(v, dict) else [(None, v)]):
            key = f"margins.{m}" + (f".{task}" if task is not None else "")
            if task is not None and task not in s["tasks"]:
                _fail(key, f"task must be one of {list(s['tasks'])}")
            if isinstance(x, bool) or not isinstance(x, (int, float)) or not (math.isfinite(x) and x >= 0):
                _fail(key, f"must be a non-negative number, got {x!r}")
        if isinstance(v, dict) and set(v) != set(s["tasks"]):
            _fail(f"margins.{m}", f"a per-task mapping must give every task, missing {sorted(set(s['tasks']) - set(v))}")
    for m, v in s["margin_reasons"].items():
        if m not in METRICS or not isinstance(v, str):
            _fail(f"margin_reasons.{m}", f"must map a metric of {list(METRICS)} to a sentence, got {v!r}")
    return s


def margin(spec: dict, metric: str, task: str | None = None) -> float:
    """The equivalence margin of ``metric`` on ``task`` (declared in ``margins``, one number or per task);
    ``task=None``: the margin of the across-task mean, the mean of the tasks' margins (the aggregate is the
    mean of the tasks' Δ, so an effect at every task's margin is an effect at this one)."""
    v = spec["margins"][metric]
    if not isinstance(v, dict):
        return float(v)
    return float(v[task]) if task is not None else float(np.mean([float(v[t]) for t in spec["tasks"]]))


def tasks(base: dict, spec: dict) -> dict[str, Config]:
    """Each task's base config (``base`` updated by the task's diff; seed 0). Validates every one."""
    out = {}
    for name, diff in spec["tasks"].items():
        try:
            cfgs = expand({**base, "seed": 0}, diff)
        except ConfigError as e:
            raise ConfigError(f"extra.protocol.tasks.{name}: {e}") from None
        if len(cfgs) != 1:
            _fail(f"tasks.{name}", "a task is one setting (no lists), got a grid of "
                                   f"{len(cfgs)}")
        if cfgs[0].val_fraction <= 0:
            _fail(f"tasks.{name}", "val_fraction must be > 0: selection uses a validation split, never the test set")
        out[name] = cfgs[0]
    return out


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


def _train(rows: list[dict], cfgs: list[Config], out, spec: dict, executor: str, progress, desc: str) -> tuple:
    """Train (or read back) ``cfgs``; their final metrics joined to ``rows``, and every epoch's rows."""
    from .runs import run_grid
    from .store import results_frame

    res = run_grid(cfgs, out, executor=executor, workers=spec["workers"] if executor == "processes" else None,
                   progress=progress, desc=desc)
    keys = pd.DataFrame(rows).assign(run_id=[r["run_id"] for r in res])
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
    from .runs import default_progress

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


def _pool_arrays(pool: pd.DataFrame, task: str, method: str, col: str) -> tuple[np.ndarray, np.ndarray]:
    g = pool[(pool.task == task) & (pool.method == method)].sort_values("trial")
    return g.val_acc.to_numpy(float), g[col].to_numpy(float)


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
    rng = np.random.default_rng(spec["sample_seed"])
    boot = {t: rng.integers(0, n, (B, n)) for t in tasks_}  # one index resample per task, shared by all methods
    conv = _convergence(pool, spec, tasks_, boot)
    unconverged = set(conv.task[conv.verdict == NOT_CONVERGED]) if len(conv) else set()

    rows, reps = [], []
    for metric, (col, higher) in METRICS.items():
        for task in tasks_:
            vc, tc = _pool_arrays(pool, task, "ce", col)
            ce_e = float(S.expected_selected(vc, tc, T))
            ce_b = S.expected_selected(vc[boot[task]], tc[boot[task]], T)
            for method in methods:
                vm, tm = _pool_arrays(pool, task, method, col)
                m_e = float(S.expected_selected(vm, tm, T))
                d_b = S.expected_selected(vm[boot[task]], tm[boot[task]], T) - ce_b
                if spread != 1.0:  # planning only (power); the default leaves the replicates untouched
                    d_b = (m_e - ce_e) + spread * (d_b - (m_e - ce_e))
                row = {"task": task, "method": method, "metric": metric, "method_E": m_e, "ce_E": ce_e,
                       "diff": m_e - ce_e, "margin": margin(spec, metric, task), "higher_is_better": higher,
                       "trials": n, "select": T}
                if metric == "acc":
                    pb = S.p_beats(vm, tm, vc, tc, T, higher, spec["subsets"], spec["sample_seed"])
                    pb_b = S.p_beats(vm[boot[task]], tm[boot[task]], vc[boot[task]], tc[boot[task]], T, higher,
                                     spec["subsets"], spec["sample_seed"])
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


def bound_text(row, scale: float = 1.0, unit: str = "") -> str:
    """The bound an interval excludes, in words, from its improvement side: "rules out a gain above +0.62
    pts" (a higher-is-better metric) or "rules out a reduction beyond −0.031" (NLL, ECE); when the whole
    interval lies on the losing side, "rules out any gain". ``row`` has ``lo``, ``hi``, ``higher_is_better``.
    Numbers as :func:`softgrad.common.number` prints them."""
    lo, hi = number(row.lo * scale, sign=True), number(row.hi * scale, sign=True)
    if row.higher_is_better:
        return f"rules out a gain above {hi}{unit}" if row.hi > 0 else f"rules out any gain (Δ < {hi}{unit})"
    return (f"rules out a reduction beyond {lo}{unit}" if row.lo < 0
            else f"rules out any reduction (Δ > {lo}{unit})")


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
    budget — minus E_T at the budget, under the analysis's paired index bootstrap."""
    rows, T = [], spec["select"]
    cols = ["task", "trials", "weight", "budget_E", "longer_E", "diff", "lo", "hi", "margin", "verdict"]
    for task in tasks_:
        lg = pool[(pool.task == task) & (pool.method == "ce_longer")].set_index("trial")
        if lg.empty:
            continue
        vb, tb = _pool_arrays(pool, task, "ce", "test_acc")
        idx = lg.index.to_numpy(int)
        vl, tl = vb.copy(), tb.copy()
        vl[idx], tl[idx] = lg.val_acc.to_numpy(float), lg.test_acc.to_numpy(float)
        b = boot[task]
        e_b, e_l = float(S.expected_selected(vb, tb, T)), float(S.expected_selected(vl, tl, T))
        r = S.expected_selected(vl[b], tl[b], T) - S.expected_selected(vb[b], tb[b], T)
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


#: each method's display name, in text, tables and figures (``softgrad.plots.method_name``)
SHORT = {"ce": "CE", "temperature": "temperature", "gradient_decay": "gradient decay", "noisy": "Noisy Softmax",
         "sgt": "SGT", "as_softmax": "AS-Softmax"}


def ci_text(r, metric: str | None = None) -> str:
    """"+0.12 [−0.26, +0.41]" in the metric's display unit (points for accuracy and ECE):
    :func:`softgrad.common.interval_text` of a comparison row."""
    get = (lambda k: r[k]) if isinstance(r, pd.Series) else (lambda k: getattr(r, k))  # noqa: E731 (Series.diff)
    return interval_text(get("diff"), get("lo"), get("hi"), metric or get("metric"))


def _names(ms) -> str:
    ms = [SHORT.get(m, m) for m in ms]
    return ms[0] if len(ms) == 1 else ", ".join(ms[:-1]) + " and " + ms[-1]


def bottom_line(R: ProtocolResult) -> str:
    """The finding in two or three quotable sentences (Markdown), read off the across-task verdicts: what
    beat CE on test accuracy and by how much, what was ruled out (the bound each interval excludes), what
    stayed open, and calibration before and after temperature scaling."""
    a = R.aggregate.set_index(["metric", "method"])
    acc = a.loc["acc"]
    by = {v: list(acc.index[acc.verdict == v]) for v in S.VERDICTS}
    pts = lambda m, k="acc": ci_text(a.loc[(k, m)], k)  # noqa: E731
    out = []
    if by[S.VERDICTS[0]]:
        out.append("**" + "; ".join(f"{SHORT.get(m, m)} beat tuned cross-entropy on test accuracy by {pts(m)} points"
                                    for m in by[S.VERDICTS[0]]) + "** (mean over tasks, interval in brackets).")
    else:
        out.append("**No loss beat tuned cross-entropy on test accuracy.**")
    said = []
    if by[S.VERDICTS[2]]:
        said.append(f"{_names(by[S.VERDICTS[2]])} showed no detectable effect (each interval rules out a gain above "
                    + ", ".join(number(100 * acc.loc[m].hi, sign=True) for m in by[S.VERDICTS[2]]) + " points)")
    if by[S.VERDICTS[1]]:
        said.append(f"{_names(by[S.VERDICTS[1]])} lost to it (" + ", ".join(pts(m) for m in by[S.VERDICTS[1]]) + " points)")
    if by[S.VERDICTS[3]]:
        said.append(f"{_names(by[S.VERDICTS[3]])} stayed inconclusive (gains up to "
                    + ", ".join(number(100 * acc.loc[m].hi, sign=True) for m in by[S.VERDICTS[3]])
                    + " points are not ruled out, nor losses down to "
                    + ", ".join(number(100 * acc.loc[m].lo, sign=True) for m in by[S.VERDICTS[3]]) + ")")
    if said:
        out.append(said[0][0].upper() + "; ".join(said)[1:] + ".")
    ece = a.loc["ece"]
    worse, better = list(ece.index[ece.verdict == S.VERDICTS[1]]), list(ece.index[ece.verdict == S.VERDICTS[0]])
    cal = []
    if worse:
        cal.append("worse for " + ", ".join(f"{SHORT.get(m, m)} ({pts(m, 'ece')} points)" for m in worse))
    if better:
        cal.append("better for " + ", ".join(f"{SHORT.get(m, m)} ({pts(m, 'ece')} points)" for m in better))
    ts = a.loc["ece_ts"]
    ts_by = {v: list(ts.index[ts.verdict == v]) for v in S.VERDICTS}
    after = []
    for v, word in ((S.VERDICTS[0], "better"), (S.VERDICTS[1], "worse"), (S.VERDICTS[2], "within the margin of CE's"),
                    (S.VERDICTS[3], "undecided")):
        if ts_by[v]:
            after.append(f"{word} for {_names(ts_by[v])}")
    out.append("Before temperature scaling, calibration (ECE) was " + ("; ".join(cal) if cal else
               "no different from CE's beyond the margin for any method with a definite verdict")
               + "; after it, " + "; ".join(after) + ".")
    return " ".join(out)

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
5. **Convergence**: CE trained ``longer`` × the epochs on the first ``longer_trials`` indices (same
   settings and seeds); the paired difference (longer − budget) with a bootstrap interval, and its verdict
   (:func:`convergence_verdict`). A claim that a method beats CE counts only where CE has not been shown to
   gain from training longer: on a task where it has, a *reproduced* verdict is reported as *inconclusive at
   this budget* (``ce_not_converged`` says so beside it).
6. **The winner's curse**: E_T reports the selected trials' own test scores, which favours settings whose
   result varies with the seed. Each method's most frequent winner (the trial of highest validation accuracy:
   the one a T-subset keeps most often) is retrained with ``retrain_seeds`` fresh seeds (seed, data order,
   label noise and split all new); :attr:`ProtocolResult.retrain` sets its own test score beside theirs.
7. **Predicted agreement**: for each verdict, the share of bootstrap replicates (each a plausible rerun)
   whose shifted interval gives the same verdict — what a rerun's agreement rate should be if the intervals
   hold every source of variation.
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
from .config import LOSS_IMPLS, Config, ConfigError, expand
from .losses import COMPARED
from .store import run_dir

__all__ = ["DEFAULTS", "METHODS", "METRICS", "check_spec", "tasks", "design", "plan", "run", "analyse",
           "agreement", "ProtocolResult", "winners", "retrain_table", "convergence_verdict", "power",
           "spread_ratio"]

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
    "longer_trials": 8,
    "margins": {"acc": 0.005, "nll": 0.02, "ece": 0.005, "nll_ts": 0.02, "ece_ts": 0.005},
    "confidence": 0.95,
    "alpha": 0.05,
    "bootstrap": 2000,
    "subsets": 500,
    "workers": 1,
    "rerun_loss_impl": "fused",  # the robustness rerun: the whole protocol again with this implementation
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
    for key, lo in (("seed_base", 0), ("sample_seed", 0), ("longer_trials", 0), ("bootstrap", 100),
                    ("subsets", 10), ("workers", 1), ("retrain_seeds", 0)):
        _int(s, key, lo)
    if s["longer_trials"] > s["trials"]:
        _fail("longer_trials", f"must be <= trials ({s['trials']}), got {s['longer_trials']}")
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
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
            _fail(f"margins.{m}", f"must be a non-negative number, got {v!r}")
    return s


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
                if method == "ce" and i < spec["longer_trials"] and spec["longer"] > 1:
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
    """Every config the protocol trains (validated), for the up-front check of a parameter file."""
    spec = check_spec(spec)
    return _configs(tasks(base, spec), spec)[1]


@dataclasses.dataclass
class ProtocolResult:
    spec: dict
    pool: pd.DataFrame  # one row per (task, method, trial): setting, validation and test metrics
    comparisons: pd.DataFrame  # per (task, method, metric): E_T, Δ, Holm-level interval, verdict, P(beats CE)
    aggregate: pd.DataFrame  # per (method, metric): mean Δ over tasks, stratified interval, verdict
    budget: pd.DataFrame  # per (task, method, T): E_T of validation and test accuracy
    convergence: pd.DataFrame  # per task: CE longer − CE at budget on the same indices (test accuracy), verdict
    histories: pd.DataFrame  # per-epoch rows of every run
    retrain: pd.DataFrame = dataclasses.field(default_factory=pd.DataFrame)  # per (task, method, fresh seed)


def run(base: dict, spec: dict, profile: str, out_root: Path | None = None, progress: bool | None = None,
        executor: str | None = None, loss_impl: str | None = None, retrain: bool = True) -> ProtocolResult:
    """Train the pool (finished runs are read back, never recomputed) and :func:`analyse` it.

    ``loss_impl`` (``Config.loss_impl``) trains every run with that implementation of the losses: the
    robustness rerun (``spec['rerun_loss_impl']``) is the whole protocol again under the other one, a test of
    the protocol, compared with :func:`agreement` (it decides no verdict). ``retrain``: also the
    ``retrain_seeds`` fresh-seed retrains of each method's most frequent winner (the winner's curse)."""
    from .runs import default_progress, run_grid
    from .store import results_frame

    progress = default_progress() if progress is None else progress
    spec = check_spec(spec)
    out = run_dir(profile, out_root)
    executor = executor or ("processes" if spec["workers"] > 1 else "local")
    task_cfgs = {t: c if loss_impl is None else c.replace(loss_impl=loss_impl) for t, c in tasks(base, spec).items()}
    rows, cfgs = _configs(task_cfgs, spec)
    res = run_grid(cfgs, out, executor=executor, workers=spec["workers"] if executor == "processes" else None,
                   progress=progress, desc="pooled trials" + (f" [{loss_impl}]" if loss_impl else ""))
    keys = pd.DataFrame(rows).assign(run_id=[r["run_id"] for r in res])
    hist = results_frame(res).merge(keys[["run_id", "task", "method", "trial"]], on="run_id")
    fin = hist[hist["final"]].set_index("run_id")
    cols = ["val_acc", "val_nll", *(col for col, _ in METRICS.values()), "train_time"]
    pool = keys.join(fin[[c for c in cols if c in fin]], on="run_id")
    result = analyse(pool, spec, hist)
    if retrain and spec["retrain_seeds"] > 0:
        rrows, rcfgs = _retrain_configs(task_cfgs, spec, winners(pool))
        rres = run_grid(rcfgs, out, executor=executor, workers=spec["workers"] if executor == "processes" else None,
                        progress=progress, desc="winner retrains" + (f" [{loss_impl}]" if loss_impl else ""))
        rkeys = pd.DataFrame(rrows).assign(run_id=[r["run_id"] for r in rres])
        rh = results_frame(rres)
        rfin = rh[rh["final"]].set_index("run_id")
        result.retrain = retrain_table(pool, rkeys.join(rfin[[c for c in cols if c in rfin]], on="run_id"))
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


def analyse(pool: pd.DataFrame, spec: dict, histories: pd.DataFrame | None = None,
            spread: float = 1.0) -> ProtocolResult:
    """Every statistic of the module docstring from a pool (one row per task, method, trial with
    ``val_acc`` and the test columns of :data:`softgrad.protocol.METRICS`). Selection reads ``val_acc`` only.
    ``spread`` scales each bootstrap replicate's deviation from its estimate (1, the default: the bootstrap
    as drawn; :func:`power` sets √(N/N′) to read the design at N′ trial indices)."""
    spec = check_spec(spec)
    T, B = spec["select"], spec["bootstrap"]
    tasks_ = list(dict.fromkeys(pool.task))
    methods = [m for m in spec["methods"] if m != "ce"]
    n = int(pool.trial.max()) + 1
    rng = np.random.default_rng(spec["sample_seed"])
    boot = {t: rng.integers(0, n, (B, n)) for t in tasks_}  # one index resample per task, shared by all methods
    conv = _convergence(pool, spec, tasks_)
    unconverged = set(conv.task[conv.verdict == NOT_CONVERGED]) if len(conv) else set()

    def gate(v: str, task: str) -> str:
        return _gate(v, task in unconverged)

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
                       "diff": m_e - ce_e, "higher_is_better": higher, "trials": n, "select": T}
                if metric == "acc":
                    pb = S.p_beats(vm, tm, vc, tc, T, higher, spec["subsets"], spec["sample_seed"])
                    pb_b = S.p_beats(vm[boot[task]], tm[boot[task]], vc[boot[task]], tc[boot[task]], T, higher,
                                     spec["subsets"], spec["sample_seed"])
                    row.update(p_beats=float(pb), **dict(zip(("p_beats_lo", "p_beats_hi"),
                                                             S.percentile_interval(pb_b, spec["confidence"]))))
                rows.append(row)
                reps.append(d_b)
    cmp = pd.DataFrame(rows)
    for metric, g in cmp.groupby("metric", sort=False):
        h = S.holm_intervals([reps[i] for i in g.index], spec["alpha"])
        for i, r in zip(g.index, h):
            cmp.loc[i, ["level", "lo", "hi", "p"]] = [r["level"], r["lo"], r["hi"], r["p"]]
            cmp.loc[i, "rejected"] = r["rejected"]
            shift = reps[i] - cmp.loc[i, "diff"]  # each replicate: a plausible rerun, the interval moved with it
            task, higher, margin = cmp.loc[i, "task"], cmp.loc[i, "higher_is_better"], spec["margins"][metric]
            v = gate(S.interval_verdict(r["lo"], r["hi"], r["rejected"], margin, higher), task)
            cmp.loc[i, "verdict"] = v
            cmp.loc[i, "predicted_agreement"] = float(np.mean([gate(S.interval_verdict(
                r["lo"] + s, r["hi"] + s, (r["lo"] + s > 0) or (r["hi"] + s < 0), margin, higher), task) == v
                for s in shift]))
    cmp["rejected"] = cmp["rejected"].astype(bool)
    cmp["ce_not_converged"] = cmp.task.isin(unconverged)
    agg = _aggregate(cmp, reps, spec, methods, bool(unconverged))
    return ProtocolResult(spec, pool, cmp, agg, _budget(pool, spec, tasks_, n), conv,
                          histories if histories is not None else pd.DataFrame())


def _budget(pool: pd.DataFrame, spec: dict, tasks_: list, n: int) -> pd.DataFrame:
    """Budget curves: E_T of validation and test accuracy for T = 1…N/4, every task and method."""
    return pd.DataFrame([{"task": t, "method": m, "T": k,
                          "val_acc": float(S.expected_selected(*_pool_arrays(pool, t, m, "val_acc"), k)),
                          "test_acc": float(S.expected_selected(*_pool_arrays(pool, t, m, "test_acc"), k))}
                         for t in tasks_ for m in spec["methods"] for k in range(1, max(1, n // 4) + 1)])


def _gate(verdict: str, ce_unconverged: bool) -> str:
    """A gain over a CE that still gains from longer training is not a gain at convergence: *reproduced*
    becomes *inconclusive at this budget* there; every other verdict stands."""
    return S.VERDICTS[3] if verdict == S.VERDICTS[0] and ce_unconverged else verdict


def _aggregate(cmp: pd.DataFrame, reps: list, spec: dict, methods: list[str], unconverged: bool) -> pd.DataFrame:
    """Mean over tasks of Δ, each task's indices resampled independently (stratified), the interval at
    confidence 1 − (1 − confidence)/m over the m methods (Bonferroni); the verdict read off that interval
    (a *reproduced* one reported as *inconclusive at this budget* if CE has not converged on some task)."""

    def gate(v: str) -> str:
        return _gate(v, unconverged)

    conf = 1 - (1 - spec["confidence"]) / max(1, len(methods))
    rows = []
    for (method, metric), g in cmp.groupby(["method", "metric"], sort=False):
        r = np.mean([reps[i] for i in g.index], axis=0)
        lo, hi = S.percentile_interval(r, conf)
        higher = bool(g.higher_is_better.iloc[0])
        diff = float(g["diff"].mean())
        verdict = gate(S.interval_verdict(lo, hi, lo > 0 or hi < 0, spec["margins"][metric], higher))
        shift = r - diff
        predicted = float(np.mean([gate(S.interval_verdict(lo + x, hi + x, lo + x > 0 or hi + x < 0,
                                                           spec["margins"][metric], higher)) == verdict
                                   for x in shift]))
        rows.append({"method": method, "metric": metric, "diff": diff, "lo": lo, "hi": hi, "level": conf,
                     "tasks": len(g), "higher_is_better": higher, "verdict": verdict,
                     "predicted_agreement": predicted, "ce_not_converged": unconverged})
    return pd.DataFrame(rows)


def convergence_verdict(lo: float, hi: float, margin: float) -> str:
    """The convergence check's rule on the interval of (CE trained longer − CE at the budget), test accuracy:
    *converged* when it lies inside ±margin (the accuracy margin of the comparisons), *not converged* when it
    lies above 0 (longer training gains), *longer training hurts* when it lies below 0 (CE overfits past
    the budget: the budget is not too short for CE), else *undetermined*."""
    if -margin < lo and hi < margin:
        return CONVERGED
    if lo > 0:
        return NOT_CONVERGED
    if hi < 0:
        return OVERFITS
    return UNDETERMINED


def _convergence(pool: pd.DataFrame, spec: dict, tasks_: list[str]) -> pd.DataFrame:
    rows = []
    rng = np.random.default_rng(spec["sample_seed"])
    for task in tasks_:
        a = pool[(pool.task == task) & (pool.method == "ce_longer")].set_index("trial").test_acc
        b = pool[(pool.task == task) & (pool.method == "ce")].set_index("trial").test_acc
        idx = sorted(set(a.index) & set(b.index))
        if len(idx) < 2:
            continue
        d = (a.loc[idx] - b.loc[idx]).to_numpy(float)
        r = d[rng.integers(0, len(d), (spec["bootstrap"], len(d)))].mean(axis=1)
        lo, hi = S.percentile_interval(r, spec["confidence"])
        rows.append({"task": task, "trials": len(idx), "budget_mean": float(b.loc[idx].mean()),
                     "longer_mean": float(a.loc[idx].mean()), "diff": float(d.mean()), "lo": lo, "hi": hi,
                     "verdict": convergence_verdict(lo, hi, spec["margins"]["acc"])})
    return pd.DataFrame(rows, columns=["task", "trials", "budget_mean", "longer_mean", "diff", "lo", "hi", "verdict"])


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

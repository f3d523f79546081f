"""The fair-comparison protocol every "improves on CE" claim in the book goes through.

Anchors: Musgrave et al. 2020 (same network, optimiser and budget; equal search budget; validation separate
from test; intervals), Kornblith et al. 2021 (each loss's knob tuned on a holdout from train; many seeds),
Guo et al. 2017 (ECE, temperature scaling on validation NLL), Dodge et al. 2019 (expected best validation
score against the number of trials), Agarwal et al. 2021 (stratified bootstrap, probability of improvement).

For every task (a config diff over the parameter file's ``base``) and method:

1. **Tuning, equal budget.** ``trials`` configurations, CE included, drawn by one seeded Latin hypercube
   over log learning rate and the method's knobs (CE: the learning rate alone, so CE gets as many trials
   as every other method). Each trial is trained with the ``tune_seeds`` and scored on the validation split
   carved from the training set (``val_fraction`` > 0; the test set is never used for a choice). The best
   mean validation accuracy wins (ties: lower validation NLL). *Interior check*: a winner whose learning
   rate (or knob) is the smallest or largest value tried is flagged: its optimum may lie outside the range.
2. **Final runs, paired.** The winner is retrained with every ``final_seeds`` seed; seed s fixes init, data
   order, the validation split and label noise for every method, so differences to CE are paired.
3. **Convergence.** CE's winner is also trained for ``longer`` × the epochs with the same seeds; the paired
   difference (longer − budget) shows whether the budget has converged.
4. **Statistics** (:mod:`softgrad.stats`): per (task, method, metric) the paired difference to tuned CE on
   the test set with a 95% BCa interval, an exact permutation p-value, Holm-adjusted over the family
   (all tasks × methods of one metric), the probability of improvement, and a verdict; per (method, metric)
   the mean over tasks with a stratified bootstrap interval, Bonferroni-widened over the methods.
   Metrics: accuracy, NLL and ECE on the test set, and NLL/ECE after temperature scaling.

The specification lives in a parameter file's ``extra.protocol`` (see :data:`DEFAULTS` and
``params/*/06_head_to_head.yaml``); :func:`check_spec` validates it before any training.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pandas as pd

from . import stats as S
from .config import LOSS_IMPLS, Config, ConfigError, config_id, expand
from .store import run_dir

__all__ = ["DEFAULTS", "METHODS", "METRICS", "check_spec", "tasks", "trial_configs", "plan", "run",
           "select", "compare", "aggregate", "budget_curves", "convergence", "ProtocolResult"]

# method -> the config settings it is made of (its knobs are set on top)
METHODS = {
    "ce": {"loss": "ce"},
    "temperature": {"loss": "temperature"},
    "gradient_decay": {"loss": "gradient_decay"},
    "noisy": {"loss": "ce", "head_bias": False},  # knob noise_alpha (a Config field)
    "sgt": {"loss": "sgt"},
    "as_softmax": {"loss": "as_softmax"},
}
# metric -> (result column on the test set, higher is better)
METRICS = {"acc": ("test_acc", True), "nll": ("test_nll", False), "ece": ("test_ece", False),
           "nll_ts": ("test_nll_ts", False), "ece_ts": ("test_ece_ts", False)}
DEFAULTS = {
    "tasks": {"task": {}},
    "methods": {"ce": {}},
    "lr": [0.01, 1.0],
    "trials": 8,
    "tune_seeds": [0],
    "final_seeds": [1, 2, 3],
    "longer": 2.0,
    "sample_seed": 0,
    "margins": {"acc": 0.005, "nll": 0.02, "ece": 0.005, "nll_ts": 0.02, "ece_ts": 0.005},
    "confidence": 0.95,
    "alpha": 0.05,
    "workers": 1,
    "numerics_replicates": ["auto"],
}
SCALES = ("log", "linear")


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


def check_spec(spec: dict | None) -> dict:
    """``extra.protocol`` merged over :data:`DEFAULTS`, validated; raises :class:`ConfigError` naming the key."""
    if spec is None:
        _fail("", "missing: this notebook needs extra.protocol")
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
        for name, v in s[key].items():
            if not isinstance(v, dict):
                _fail(f"{key}.{name}", f"must be a mapping, got {v!r}")
    if "ce" not in s["methods"]:
        _fail("methods", "must include 'ce' (the baseline every method is compared with)")
    if s["methods"]["ce"]:
        _fail("methods.ce", f"CE has no knob (its learning rate is tuned like every method's), got {s['methods']['ce']}")
    for name, knobs in s["methods"].items():
        if name not in METHODS:
            _fail("methods", f"method must be one of {list(METHODS)}, got {name!r}")
        for k, v in knobs.items():
            _range(f"methods.{name}.{k}", v)
    _range("lr", s["lr"], positive=True)
    for key in ("trials", "workers"):
        if isinstance(s[key], bool) or not isinstance(s[key], int) or s[key] < 1:
            _fail(key, f"must be a positive int, got {s[key]!r}")
    for key in ("tune_seeds", "final_seeds"):
        v = s[key]
        if not (isinstance(v, list) and v and all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in v)
                and len(set(v)) == len(v)):
            _fail(key, f"must be a non-empty list of distinct non-negative ints, got {v!r}")
    if len(s["final_seeds"]) < 2:
        _fail("final_seeds", "needs at least 2 seeds for a paired interval")
    if set(s["tune_seeds"]) & set(s["final_seeds"]):
        _fail("final_seeds", "must not share seeds with tune_seeds (the reported runs are fresh draws)")
    if not isinstance(s["longer"], (int, float)) or isinstance(s["longer"], bool) or s["longer"] < 1:
        _fail("longer", f"must be a number >= 1 (1: no convergence check), got {s['longer']!r}")
    for key in ("confidence", "alpha"):
        if not isinstance(s[key], float) or not 0 < s[key] < 1:
            _fail(key, f"must be a float in (0, 1), got {s[key]!r}")
    for m, v in s["margins"].items():
        if m not in METRICS:
            _fail(f"margins.{m}", f"metric must be one of {list(METRICS)}")
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
            _fail(f"margins.{m}", f"must be a non-negative number, got {v!r}")
    reps = s["numerics_replicates"]
    if not (isinstance(reps, list) and reps and all(r in LOSS_IMPLS for r in reps) and len(set(reps)) == len(reps)):
        _fail("numerics_replicates", f"must be a non-empty list of distinct values from {list(LOSS_IMPLS)}, got {reps!r}")
    if isinstance(s["sample_seed"], bool) or not isinstance(s["sample_seed"], int):
        _fail("sample_seed", f"must be an int, got {s['sample_seed']!r}")
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


def trial_settings(spec: dict, method: str) -> list[dict]:
    """The method's ``trials`` settings ({'lr': ..., knob: ...}): a seeded Latin hypercube (scipy.stats.qmc)
    over the learning rate and the knobs, log or linear per range. The same design for every task."""
    from scipy.stats import qmc

    names = ["lr", *spec["methods"][method]]
    ranges = [_range("lr", spec["lr"], True)] + [_range(k, v) for k, v in spec["methods"][method].items()]
    # one stream per method (name-seeded), so adding a method does not move the others' trials
    seed = spec["sample_seed"] * 1_000_003 + sum(ord(c) * 31 ** i for i, c in enumerate(method)) % 1_000_003
    u = qmc.LatinHypercube(d=len(names), rng=np.random.default_rng(seed)).random(spec["trials"])
    out = []
    for row in u:
        s = {}
        for name, (lo, hi, scale), x in zip(names, ranges, row):
            s[name] = _round(math.exp(math.log(lo) + x * (math.log(hi) - math.log(lo))) if scale == "log"
                             else lo + x * (hi - lo))
        out.append(s)
    return out


def trial_configs(task_cfg: Config, spec: dict, method: str) -> list[tuple[dict, Config]]:
    """[(setting, config)] of the method's tuning runs on one task (every trial × every tune seed)."""
    out = []
    for s in trial_settings(spec, method):
        knobs = {k: v for k, v in s.items() if k != "lr"}
        for seed in spec["tune_seeds"]:
            out.append((s, _with(task_cfg, method, knobs, s["lr"], seed)))
    return out


def plan(base: dict, spec: dict) -> list[Config]:
    """Every tuning config (validated), for the up-front check of a parameter file. Final runs depend on
    the tuning results, so they are built after it (from settings already validated here)."""
    spec = check_spec(spec)
    return [c for t in tasks(base, spec).values() for m in spec["methods"] for _, c in trial_configs(t, spec, m)]


@dataclasses.dataclass
class ProtocolResult:
    spec: dict
    trials: pd.DataFrame  # one row per (task, method, trial): setting, mean validation metrics
    chosen: pd.DataFrame  # one row per (task, method): the winning setting and the interior flags
    finals: pd.DataFrame  # one row per (task, method, seed): final-epoch metrics of the final runs
    histories: pd.DataFrame  # per-epoch rows of the final runs (and CE's longer runs: method 'ce_longer')
    comparisons: pd.DataFrame  # one row per (task, method, metric): paired difference to CE, verdict
    aggregate: pd.DataFrame  # one row per (method, metric): mean over tasks, stratified interval
    budget: pd.DataFrame  # expected best validation accuracy against the number of trials
    convergence: pd.DataFrame  # per task: CE longer − CE at budget (paired), test accuracy
    # one row per verdict (task or 'all tasks', method, metric): the verdict under each numerics replicate and
    # whether they agree; comparisons/aggregate hold the first replicate's numbers, with 'inconclusive at this
    # budget' wherever the replicates' verdicts differ
    replicates: pd.DataFrame | None = None


def _frame(results: list[dict]) -> pd.DataFrame:
    from .store import results_frame

    return results_frame(results)


UNSTABLE = "inconclusive at this budget"


def run(base: dict, spec: dict, profile: str, out_root: Path | None = None, progress: bool | None = None,
        executor: str | None = None) -> ProtocolResult:
    """Tune, retrain, compare (see the module docstring). Finished runs are read back, never recomputed.
    ``progress`` None: bars unless ``SOFTGRAD_PROGRESS=0`` (as in notebook kernels, so an executed notebook
    has no progress output that nbval would compare).

    With several ``numerics_replicates`` (``Config.loss_impl``: the same losses computed by implementations
    that agree to rounding) the whole protocol, tuning included, runs once per replicate; a verdict stands only
    if every replicate reaches it, else it is *inconclusive at this budget* (rounding differences grow over
    training and can change which trial wins; a verdict that depends on them is not evidence)."""
    from .runs import default_progress

    progress = default_progress() if progress is None else progress
    spec = check_spec(spec)
    out = run_dir(profile, out_root)
    executor = executor or ("processes" if spec["workers"] > 1 else "local")
    kw = dict(executor=executor, workers=spec["workers"] if executor == "processes" else None, progress=progress)
    task_cfgs = tasks(base, spec)
    results = {rep: _run_replicate({t: c.replace(loss_impl=rep) for t, c in task_cfgs.items()}, spec, out, kw, rep)
               for rep in spec["numerics_replicates"]}
    first = results[spec["numerics_replicates"][0]]
    if len(results) == 1:
        return first
    rows = []
    for level, frame, keys in (("task", "comparisons", ["task", "method", "metric"]),
                               ("all tasks", "aggregate", ["method", "metric"])):
        merged = None
        for rep, r in results.items():
            v = getattr(r, frame)[keys + ["verdict"]].rename(columns={"verdict": rep})
            merged = v if merged is None else merged.merge(v, on=keys)
        merged["agree"] = merged[list(results)].nunique(axis=1) == 1
        if level == "all tasks":
            merged.insert(0, "task", "all tasks")
        rows.append(merged)
        unstable = set(map(tuple, merged.loc[~merged.agree, keys].to_numpy()))
        tab = getattr(first, frame)
        tab.loc[[tuple(k) in unstable for k in tab[keys].to_numpy()], "verdict"] = UNSTABLE
    return dataclasses.replace(first, replicates=pd.concat(rows, ignore_index=True))


def _run_replicate(task_cfgs: dict, spec: dict, out: Path, kw: dict, rep: str) -> ProtocolResult:
    from .runs import run_grid

    tag = "" if rep == "auto" else f" [{rep}]"
    # 1. tuning
    rows, cfgs = [], []
    for task, tc in task_cfgs.items():
        for method in spec["methods"]:
            for i, (s, c) in enumerate(trial_configs(tc, spec, method)):
                rows.append({"task": task, "method": method, "trial": i // len(spec["tune_seeds"]), **{"setting": s},
                             "run_id": config_id(c)})
                cfgs.append(c)
    res = run_grid(cfgs, out, desc="tuning" + tag, **kw)
    val = pd.DataFrame(rows)
    val["val_acc"] = [r["final"]["val_acc"] for r in res]
    val["val_nll"] = [r["final"]["val_nll"] for r in res]
    trials = (val.groupby(["task", "method", "trial"], sort=False)
              .agg(setting=("setting", "first"), val_acc=("val_acc", "mean"), val_nll=("val_nll", "mean"))
              .reset_index())
    chosen = select(trials)
    # 2. final runs, 3. CE for longer
    frows, fcfgs = [], []
    for r in chosen.itertuples():
        tc = task_cfgs[r.task]
        knobs = {k: v for k, v in r.setting.items() if k != "lr"}
        for seed in spec["final_seeds"]:
            c = _with(tc, r.method, knobs, r.setting["lr"], seed)
            frows.append((r.task, r.method, seed))
            fcfgs.append(c)
            if r.method == "ce" and spec["longer"] > 1:
                frows.append((r.task, "ce_longer", seed))
                fcfgs.append(c.replace(epochs=int(round(c.epochs * spec["longer"]))))
    fres = run_grid(fcfgs, out, desc="final" + tag, **kw)
    hist = _frame(fres)
    keys = pd.DataFrame(frows, columns=["task", "method", "seed"]).assign(run_id=[r["run_id"] for r in fres])
    hist = hist.drop(columns=[c for c in ("method",) if c in hist]).merge(keys.drop(columns="seed"), on="run_id")
    finals = hist[hist["final"]].copy()
    comparisons = compare(finals[finals.method != "ce_longer"], spec)
    return ProtocolResult(spec, trials, chosen, finals[finals.method != "ce_longer"], hist, comparisons,
                          aggregate(finals[finals.method != "ce_longer"], spec), budget_curves(trials, spec),
                          convergence(finals))


def select(trials: pd.DataFrame) -> pd.DataFrame:
    """Per (task, method): the trial with the best mean validation accuracy (ties: lower validation NLL),
    with interior flags: ``edge`` lists the settings (lr, knobs) at the smallest or largest value tried."""
    out = []
    for (task, method), g in trials.groupby(["task", "method"], sort=False):
        g = g.assign(_acc=g.val_acc.fillna(-1.0), _nll=g.val_nll.fillna(np.inf))
        best = g.sort_values(["_acc", "_nll", "trial"], ascending=[False, True, True]).iloc[0]
        edge = []
        for k, v in best.setting.items():
            tried = [s[k] for s in g.setting]
            if v == min(tried) or v == max(tried):
                edge.append(k)
        out.append({"task": task, "method": method, "trial": int(best.trial), "setting": best.setting,
                    "val_acc": float(best.val_acc), "val_nll": float(best.val_nll), "edge": edge})
    return pd.DataFrame(out)


def compare(finals: pd.DataFrame, spec: dict) -> pd.DataFrame:
    """Paired differences (method − tuned CE) per (task, method, metric), Holm-adjusted per metric."""
    rows = []
    for task, g in finals.groupby("task", sort=False):
        ce = g[g.method == "ce"].set_index("seed")
        for method, m in g[g.method != "ce"].groupby("method", sort=False):
            m = m.set_index("seed")
            seeds = sorted(set(m.index) & set(ce.index))
            for metric, (col, higher) in METRICS.items():
                if col not in m or col not in ce:
                    continue
                x, y = m.loc[seeds, col].to_numpy(float), ce.loc[seeds, col].to_numpy(float)
                d = S.paired_difference(x, y, confidence=spec["confidence"])
                poi = S.probability_of_improvement(x, y, higher_is_better=higher, confidence=spec["confidence"])
                rows.append({"task": task, "method": method, "metric": metric, "method_mean": float(x.mean()),
                             "ce_mean": float(y.mean()), "diff": d["mean"], "lo": d["lo"], "hi": d["hi"],
                             "p": d["p"], "poi": poi["poi"], "poi_lo": poi["lo"], "poi_hi": poi["hi"],
                             "seeds": d["n"], "higher_is_better": higher})
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    df["p_holm"] = np.nan
    for metric, g in df.groupby("metric"):
        df.loc[g.index, "p_holm"] = S.holm(g["p"].to_numpy())
    df["verdict"] = [S.verdict(r.lo, r.hi, r.p_holm, spec["margins"][r.metric], r.higher_is_better, spec["alpha"])
                     for r in df.itertuples()]
    return df


def aggregate(finals: pd.DataFrame, spec: dict) -> pd.DataFrame:
    """Per (method, metric): mean over tasks of the paired difference to CE, with a stratified bootstrap
    interval at confidence 1 − (1 − confidence)/m over the m compared methods (Bonferroni), and the verdict
    from it (significance: the widened interval excludes 0)."""
    methods = [m for m in finals.method.unique() if m != "ce"]
    conf = 1 - (1 - spec["confidence"]) / max(1, len(methods))
    rows = []
    for method in methods:
        for metric, (col, higher) in METRICS.items():
            if col not in finals:
                continue
            diffs = []
            for task, g in finals.groupby("task", sort=False):
                a = g[g.method == method].set_index("seed")[col]
                b = g[g.method == "ce"].set_index("seed")[col]
                seeds = sorted(set(a.index) & set(b.index))
                diffs.append((a.loc[seeds] - b.loc[seeds]).to_numpy(float))
            r = S.stratified_mean_interval(diffs, confidence=conf)
            sig = 0.0 if (r["lo"] > 0 or r["hi"] < 0) else 1.0
            rows.append({"method": method, "metric": metric, "diff": r["mean"], "lo": r["lo"], "hi": r["hi"],
                         "tasks": r["tasks"], "confidence": conf, "higher_is_better": higher,
                         "verdict": S.verdict(r["lo"], r["hi"], sig, spec["margins"][metric], higher, spec["alpha"])})
    return pd.DataFrame(rows)


def budget_curves(trials: pd.DataFrame, spec: dict) -> pd.DataFrame:
    """Expected best validation accuracy of n = 1..trials random trials (Dodge et al. 2019)."""
    rows = []
    for (task, method), g in trials.groupby(["task", "method"], sort=False):
        for n in range(1, spec["trials"] + 1):
            rows.append({"task": task, "method": method, "n": n, "expected_best_val_acc":
                         S.expected_max(g.val_acc.to_numpy(), n)})
    return pd.DataFrame(rows)


def convergence(finals: pd.DataFrame) -> pd.DataFrame:
    """Per task: CE's tuned setting trained ``longer`` × the epochs minus at the budget (paired, test acc)."""
    rows = []
    for task, g in finals.groupby("task", sort=False):
        a = g[g.method == "ce_longer"].set_index("seed")
        b = g[g.method == "ce"].set_index("seed")
        seeds = sorted(set(a.index) & set(b.index))
        if len(seeds) < 2:
            continue
        for col in ("test_acc", "val_acc"):
            d = S.paired_difference(a.loc[seeds, col], b.loc[seeds, col])
            rows.append({"task": task, "metric": col, "epochs": int(b.epochs.iloc[0]),
                         "longer_epochs": int(a.epochs.iloc[0]), "budget_mean": float(b.loc[seeds, col].mean()),
                         "longer_mean": float(a.loc[seeds, col].mean()), "diff": d["mean"], "lo": d["lo"],
                         "hi": d["hi"]})
    return pd.DataFrame(rows)

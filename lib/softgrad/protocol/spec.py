"""Step 0 of the protocol: its specification (a parameter file's ``extra.protocol`` over :data:`DEFAULTS`),
validated by :func:`check_spec` before any training (a :class:`~softgrad.config.ConfigError` names the key and
the allowed values); each metric's equivalence margin (:func:`margin`); each task's base config
(:func:`tasks`)."""

from __future__ import annotations

import math

import numpy as np

from ..config import LOSS_IMPLS, Config, ConfigError, expand
from ..losses import COMPARED

__all__ = ["DEFAULTS", "METHODS", "METRICS", "SCALES", "LR_KEYS", "check_spec", "margin", "tasks", "knobs",
           "lr_range", "lr_coupling", "dimensions", "limit"]


# method -> the config settings it is made of (its knobs are set on top): the registry's compared methods
METHODS = {name: m.run for name, m in COMPARED.items()}
# metric -> (result column on the test set, higher is better)
METRICS = {"acc": ("test_acc", True), "nll": ("test_nll", False), "ece": ("test_ece", False),
           "nll_ts": ("test_nll_ts", False), "ece_ts": ("test_ece_ts", False)}
SCALES = ("log", "linear")
# the keys of a method's mapping that are not knobs: its own learning-rate range (in its own coordinates,
# lr_eff) and the coupling that turns lr_eff into the trained learning rate on SGD
LR_KEYS = ("lr", "lr_coupling")


DEFAULTS = {
    "tasks": {"task": {}},
    "methods": {"ce": {}},
    "lr": [0.01, 1.0],  # [low, high(, scale)] or {task: [low, high(, scale)]}: the learning rate's search range
    "trials": 32,  # N: the pool of trial indices per task
    "select": 8,  # T: the random-search budget of the estimand
    "seed_base": 1000,  # index i trains with seed seed_base + i
    "sample_seed": 0,
    "longer": 2.0,
    "longer_weight": 0.9,  # CE is trained longer on its top validation ranks carrying this share of E_T's weight
    # metric -> margin (one number for every task, or {task: number}); declared before the data
    "margins": {"acc": 0.005, "nll": 0.02, "ece": 0.005, "nll_ts": 0.02, "ece_ts": 0.005},
    "margin_reasons": {},  # metric -> why its margins are what they are (printed beside them)
    # the bootstrap also resamples test examples (two-way: trial indices x examples, one example resample per
    # task and replicate shared by every method), so intervals cover the sampling of the test set
    "resample_examples": True,
    "search_reasons": {},  # method (or 'lr') -> why its search space is what it is (printed beside the ranges)
    "split_half": True,  # analyse the pool's two halves separately: their verdict agreement vs the prediction
    "confidence": 0.95,
    "alpha": 0.05,
    "bootstrap": 2000,
    "subsets": 500,
    "workers": 1,
    "rerun_loss_impl": None,  # a robustness rerun: the whole protocol again with this implementation (ci test)
    "retrain_seeds": 0,  # fresh-seed retrains of each method's most frequent winner (the winner's curse)
    # a run whose final validation accuracy is below this failed (it diverged or never left chance: 0.15 is 1.5x
    # chance on ten classes); its NLL and ECE count as the task's worst among runs that did not fail, because an
    # unbounded NLL (1e16 after a divergence) or the ECE of a uniform prediction (about 0) measures nothing
    "failed_val_acc": 0.15,
    "max_stack": None,  # the stacked engine's largest stack (None: softgrad.stacked.MAX_STACK or $SOFTGRAD_MAX_STACK)
}


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


def _lr(key: str, v, task_names) -> None:
    """A learning-rate range: ``[low, high(, scale)]`` (every task) or ``{task: [low, high(, scale)]}`` giving
    every task (an AdamW task needs another range than an SGD one)."""
    if isinstance(v, dict):
        if set(v) != set(task_names):
            _fail(key, f"a per-task mapping must give exactly the tasks {list(task_names)}, got {list(v)}")
        for task, r in v.items():
            _range(f"{key}.{task}", r, positive=True)
    else:
        _range(key, v, positive=True)


def _check_method(name: str, m: dict, task_names) -> None:
    """A method's search space: knob -> range (inside the knob's declared domain), optionally ``lr`` (the
    method's own learning-rate range, in its own coordinates) and ``lr_coupling: {knob, power}``."""
    for k, v in knobs_of(m).items():
        lo, hi, _ = _range(f"methods.{name}.{k}", v)
        p = COMPARED[name].params.get(k)
        if p is not None:  # a loss parameter: the range stays inside its declared domain (limits included)
            try:
                p.check(k, lo), p.check(k, hi)
            except ValueError as e:
                _fail(f"methods.{name}.{k}", f"the range must lie inside the knob's domain: {e}")
    if "lr" in m:
        _lr(f"methods.{name}.lr", m["lr"], task_names)
    if "lr_coupling" in m:
        c, key = m["lr_coupling"], f"methods.{name}.lr_coupling"
        if not isinstance(c, dict) or set(c) != {"knob", "power"}:
            _fail(key, f"must be a mapping {{knob: <knob name>, power: <number>}}, got {c!r}")
        if c["knob"] not in knobs_of(m):
            _fail(f"{key}.knob", f"must be one of this method's searched knobs {list(knobs_of(m))}, got {c['knob']!r}")
        pw = c["power"]
        if isinstance(pw, bool) or not isinstance(pw, (int, float)) or not math.isfinite(pw) or pw == 0:
            _fail(f"{key}.power", f"must be a finite non-zero number (temperature: -2, SGT: -1), got {pw!r}")


def check_spec(spec: dict | None) -> dict:
    """``extra.protocol`` merged over :data:`DEFAULTS`, validated; raises :class:`ConfigError` naming the key.

    Search spaces: ``lr`` is ``[low, high(, scale)]`` or ``{task: [low, high(, scale)]}`` (every task);
    ``methods.<m>`` maps each knob to ``[low, high(, scale)]`` (scale 'log', the default, or 'linear'; the
    range inside the knob's declared domain, which it may reach: SGT α = 1, AS-Softmax δ ∈ [0, 1]) and may add
    ``lr`` (the method's own range of lr_eff, the same forms) and ``lr_coupling: {knob, power}`` (on SGD the
    trained learning rate is lr_eff · knob^power; :func:`softgrad.protocol.design`); ``search_reasons`` maps
    a method or ``lr`` to a sentence."""
    if not isinstance(spec, dict):
        _fail("", f"must be a mapping, got {type(spec).__name__}")
    unknown = sorted(set(spec) - set(DEFAULTS))
    if unknown:
        _fail(unknown[0], f"unknown key; allowed: {sorted(DEFAULTS)}")
    s = {**DEFAULTS, **spec}
    s["margins"] = {**DEFAULTS["margins"], **(spec.get("margins") or {})}
    s["margin_reasons"] = dict(spec.get("margin_reasons") or {})
    s["search_reasons"] = dict(spec.get("search_reasons") or {})
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
    for name, m in s["methods"].items():
        if name not in METHODS:
            _fail("methods", f"method must be one of {list(METHODS)}, got {name!r}")
        _check_method(name, m, list(s["tasks"]))
    _lr("lr", s["lr"], list(s["tasks"]))
    _int(s, "trials", 2)
    _int(s, "select", 1)
    if s["select"] > s["trials"]:
        _fail("select", f"must be <= trials ({s['trials']}), got {s['select']}")
    for key, lo in (("seed_base", 0), ("sample_seed", 0), ("bootstrap", 100),
                    ("subsets", 10), ("workers", 1), ("retrain_seeds", 0)):
        _int(s, key, lo)
    fv = s["failed_val_acc"]
    if isinstance(fv, bool) or not isinstance(fv, (int, float)) or not 0 <= fv < 1:
        _fail("failed_val_acc", f"must be a number in [0, 1) (0: only non-finite results count as failed), got {fv!r}")
    if s["max_stack"] is not None:
        _int(s, "max_stack", 1)
    lw = s["longer_weight"]
    if isinstance(lw, bool) or not isinstance(lw, (int, float)) or not 0 < lw <= 1:
        _fail("longer_weight", f"must be a number in (0, 1] (1: every trial index), got {lw!r}")
    if not isinstance(s["resample_examples"], bool):
        _fail("resample_examples", f"must be true or false, got {s['resample_examples']!r}")
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
    for m, v in s["search_reasons"].items():
        if m not in ["lr", *s["methods"]] or not isinstance(v, str):
            _fail(f"search_reasons.{m}", f"must map 'lr' or a method of {list(s['methods'])} to a sentence, got {v!r}")
    return s


def knobs_of(m: dict) -> dict:
    """A method mapping's knobs: knob -> range (its ``lr`` and ``lr_coupling`` left out)."""
    return {k: v for k, v in m.items() if k not in LR_KEYS}


def knobs(spec: dict, method: str) -> dict:
    """``method``'s searched knobs in a checked spec: knob -> ``[low, high(, scale)]``."""
    return knobs_of(spec["methods"][method])


def lr_range(spec: dict, method: str, task: str | None = None) -> tuple[float, float, str]:
    """``(low, high, scale)`` of ``method``'s lr_eff on ``task``: the method's own ``lr`` where given, else the
    shared ``lr``; a per-task range needs ``task`` (ValueError naming the tasks otherwise)."""
    key = f"methods.{method}.lr" if "lr" in spec["methods"][method] else "lr"
    v = spec["methods"][method].get("lr", spec["lr"])
    if isinstance(v, dict):
        if task not in v:
            raise ValueError(f"extra.protocol.{key} is given per task: task must be one of {list(v)}, got {task!r}")
        key, v = f"{key}.{task}", v[task]
    return _range(key, v, positive=True)


def lr_coupling(spec: dict, method: str) -> tuple[str, float] | None:
    """``(knob, power)`` of ``method``'s learning-rate coupling, or None."""
    c = spec["methods"][method].get("lr_coupling")
    return (c["knob"], float(c["power"])) if c else None


def dimensions(spec: dict, method: str, task: str | None = None) -> dict[str, tuple[float, float, str]]:
    """The dimensions ``method`` searches on ``task``: ``lr_eff`` (its learning-rate range) and each knob ->
    ``(low, high, scale)``."""
    return {"lr_eff": lr_range(spec, method, task),
            **{k: _range(f"methods.{method}.{k}", v) for k, v in knobs(spec, method).items()}}


def limit(method: str, dimension: str, value: float) -> str:
    """Why ``value`` is a definitional limit of ``method``'s ``dimension`` (the registry's
    :meth:`~softgrad.losses.core.Method.limits`: the knob reaches CE there, or its domain ends), else ''.
    The learning rate has none."""
    if dimension == "lr_eff" or method not in COMPARED:
        return ""
    return next((why for v, why in COMPARED[method].limits(dimension).items() if math.isclose(v, value, abs_tol=1e-12)),
                "")


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

"""One typed dataclass of defaults; parameter files are diffs over it.

A parameter file (YAML) has up to four top-level keys, which are also the papermill parameters of
the notebook that reads it::

    profile: quick              # where results go: outputs/<profile>/
    base:                       # a diff over Config, shared by every sweep
      dataset: mnist10k
      epochs: 8
      seed: [0, 1, 2]           # a list expands to a grid
    sweeps:                     # named sweeps, each a diff over base
      beta:
        loss: gradient_decay
        loss_params: {beta: [0.1, 1.0, 10.0]}   # lists inside loss_params expand too
      p1:
        zip: {loss_params.beta: [0.5, 1.0], lr: [0.4, 0.1]}  # varied together, not as a grid
    extra: {}                   # free-form notebook options (not run configs)

Unknown keys, wrong types and out-of-range values raise :class:`ConfigError` naming the key and
the allowed values, before any training starts.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from . import losses as _losses
from .data import DATASETS

__all__ = ["Config", "ConfigError", "expand", "load_params", "validate_params", "config_id", "MODELS"]

MODELS = ("mlp", "lenet5", "vgg_small", "resnet20", "resnet18")
OPTIMIZERS = ("sgd", "adamw")
LR_SCHEDULES = ("constant", "step", "cosine")
WARMUPS = ("none", "beta", "delta")
DEVICES = ("auto", "cpu", "cuda", "mps")
TOP_LEVEL = ("profile", "base", "sweeps", "extra")


class ConfigError(ValueError):
    """A parameter file or override that cannot describe a run."""


@dataclass(frozen=True)
class Config:
    """Everything that determines one training run. Defaults: a small, fast CPU run."""

    # data
    dataset: str = "mnist10k"
    data_root: str = ""  # "" -> $SOFTGRAD_DATA, else <repo>/data
    val_fraction: float = 0.0  # > 0: hold out this stratified fraction of train as the test set (model selection)
    synthetic_classes: int = 10
    synthetic_dim: int = 32
    synthetic_n_train: int = 5000
    synthetic_separation: float = 3.0
    synthetic_label_noise: float = 0.0
    # model
    model: str = "mlp"
    width: int = 256  # MLP hidden width / VGG base channels
    depth: int = 2  # MLP hidden layers
    head_bias: bool = True  # False: bias-free last layer
    head_init_scale: float = 1.0  # multiplier on the last layer's initial weights (the ||beta z0|| knob)
    # Noisy Softmax head (alpha > 0 replaces the last layer by NoisySoftmaxHead)
    noise_alpha: float = 0.0
    noise: str = "annealed"
    noise_sign: str = "positive"
    noise_std: float = 1.0
    noise_detach_scale: bool = False
    # loss
    loss: str = "ce"
    loss_params: dict = field(default_factory=dict)
    warmup: str = "none"  # 'beta': beta from warmup_start to loss_params.beta; 'delta': delta 1 -> loss_params.delta
    warmup_start: float = 0.01
    warmup_epochs: float = 0.0
    warmup_shape: str = "log"
    delta_ratio: float = 0.0  # delta warm-up length as a fraction of training
    as_speed: bool = False  # AS-Speed adaptive gradient accumulation
    as_speed_lambda: float = 1.0
    as_speed_kmax: int = 2
    # optimisation
    optimizer: str = "sgd"
    lr: float = 0.05
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4
    lr_schedule: str = "cosine"
    lr_warmup_epochs: float = 0.0
    step_every: int = 30  # 'step' schedule: multiply by step_gamma every step_every epochs
    step_gamma: float = 0.1
    epochs: int = 10
    batch_size: int = 128
    seed: int = 0
    crop_padding: int = 0  # augmentation: random crop with this zero padding
    hflip: bool = False
    # execution
    device: str = "auto"
    compile: bool = False
    amp: bool = True  # bf16 autocast on CUDA only
    threads: int = 0  # CPU threads (0: leave torch's default)
    track_samples: int = 0  # record p_t of this many fixed training samples every epoch

    def __post_init__(self):
        _check(self)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def replace(self, **changes) -> "Config":
        return from_dict({**self.to_dict(), **changes})


def _fail(key: str, msg: str):
    raise ConfigError(f"{key}: {msg}")


def _choice(cfg, key, allowed):
    if getattr(cfg, key) not in allowed:
        _fail(key, f"must be one of {list(allowed)}, got {getattr(cfg, key)!r}")


def _range(cfg, key, lo=-math.inf, hi=math.inf, lo_open=False):
    v = getattr(cfg, key)
    if (v <= lo if lo_open else v < lo) or v > hi:
        _fail(key, f"must be in {'(' if lo_open else '['}{lo}, {hi}], got {v!r}")


def _check(cfg: Config):
    _choice(cfg, "dataset", DATASETS)
    _choice(cfg, "model", MODELS)
    _choice(cfg, "optimizer", OPTIMIZERS)
    _choice(cfg, "lr_schedule", LR_SCHEDULES)
    _choice(cfg, "warmup", WARMUPS)
    _choice(cfg, "warmup_shape", _losses.SCHEDULE_SHAPES)
    _choice(cfg, "device", DEVICES)
    _choice(cfg, "noise", _losses.NOISE_KINDS)
    _choice(cfg, "noise_sign", _losses.NOISE_SIGNS)
    if cfg.loss not in _losses.LOSSES:
        _fail("loss", f"must be one of {sorted(_losses.LOSSES)}, got {cfg.loss!r}")
    try:  # the loss checks its own parameters (names, types, ranges)
        _losses.make_loss(cfg.loss, **cfg.loss_params)
    except ValueError as e:
        _fail("loss_params", str(e))
    _range(cfg, "val_fraction", 0.0, 0.9)
    _range(cfg, "synthetic_classes", 2)
    _range(cfg, "synthetic_dim", 1)
    _range(cfg, "synthetic_n_train", 10)
    _range(cfg, "synthetic_label_noise", 0.0, 1.0)
    _range(cfg, "width", 1)
    _range(cfg, "depth", 0)
    _range(cfg, "head_init_scale", 0.0, lo_open=True)
    _range(cfg, "noise_alpha", 0.0)
    _range(cfg, "noise_std", 0.0)
    _range(cfg, "lr", 0.0, lo_open=True)
    _range(cfg, "momentum", 0.0, 1.0)
    _range(cfg, "weight_decay", 0.0)
    _range(cfg, "lr_warmup_epochs", 0.0)
    _range(cfg, "step_every", 1)
    _range(cfg, "step_gamma", 0.0, 1.0, lo_open=True)
    _range(cfg, "epochs", 1)
    _range(cfg, "batch_size", 1)
    _range(cfg, "seed", 0)
    _range(cfg, "crop_padding", 0)
    _range(cfg, "threads", 0)
    _range(cfg, "track_samples", 0)
    _range(cfg, "as_speed_lambda", 0.0, lo_open=True)
    _range(cfg, "as_speed_kmax", 1)
    _range(cfg, "warmup_epochs", 0.0)
    _range(cfg, "delta_ratio", 0.0, 1.0)
    if cfg.warmup == "beta":
        if cfg.loss != "gradient_decay":
            _fail("warmup", f"'beta' warm-up needs loss 'gradient_decay', got loss {cfg.loss!r}")
        _range(cfg, "warmup_start", 0.0, lo_open=True)
    if cfg.warmup == "delta" and cfg.loss != "as_softmax":
        _fail("warmup", f"'delta' warm-up needs loss 'as_softmax', got loss {cfg.loss!r}")
    if cfg.as_speed and cfg.loss != "as_softmax":
        _fail("as_speed", f"AS-Speed needs loss 'as_softmax' (it counts zero-loss samples), got {cfg.loss!r}")
    if cfg.noise_alpha > 0 and cfg.head_bias:
        _fail("head_bias", "Noisy Softmax (noise_alpha > 0) needs a bias-free head: set head_bias: false")


_FIELDS = {f.name: f for f in dataclasses.fields(Config)}
_TYPES = {"str": str, "int": int, "float": float, "bool": bool, "dict": dict}


def _coerce(key: str, value: Any) -> Any:
    """Type-check one value against Config's annotation (ints are accepted for floats)."""
    want = _TYPES[_FIELDS[key].type]
    if want is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if want is int and isinstance(value, bool) or not isinstance(value, want):
        _fail(key, f"must be of type {want.__name__}, got {type(value).__name__} {value!r}")
    return value


def from_dict(d: dict) -> Config:
    if not isinstance(d, dict):
        raise ConfigError(f"a run configuration must be a mapping, got {type(d).__name__}")
    unknown = sorted(set(d) - set(_FIELDS))
    if unknown:
        raise ConfigError(f"unknown key(s) {unknown}; allowed keys: {sorted(_FIELDS)}")
    return Config(**{k: _coerce(k, v) for k, v in d.items()})


def _zipped(z) -> list[dict]:
    """``zip: {lr: [a, b], loss_params.beta: [c, d]}`` -> [{lr: a, beta: c}, {lr: b, beta: d}] (as diffs)."""
    if not isinstance(z, dict) or not z:
        raise ConfigError(f"zip: must be a non-empty mapping of key -> list, got {z!r}")
    lens = {k: len(v) if isinstance(v, list) else None for k, v in z.items()}
    if None in lens.values() or len(set(lens.values())) != 1:
        raise ConfigError(f"zip: every value must be a list and all lists the same length, got lengths {lens}")
    out = []
    for i in range(next(iter(lens.values()))):
        d: dict = {}
        for k, v in z.items():
            if k.startswith("loss_params."):
                d.setdefault("loss_params", {})[k.split(".", 1)[1]] = v[i]
            elif k in _FIELDS:
                d[k] = v[i]
            else:
                raise ConfigError(f"zip: unknown key {k!r}; allowed: Config fields or loss_params.<name>")
        out.append(d)
    return out


def _grid(diff: dict) -> list[dict]:
    """Expand list values (and list values inside loss_params) into the Cartesian product.

    A ``zip`` entry (mapping of key -> equal-length lists) varies those keys together, not as a grid;
    it is combined with the grid of the other keys.
    """
    diff = dict(diff)
    if "seeds" in diff:  # alias
        diff["seed"] = diff.pop("seeds")
    if "zip" in diff:
        rows = _zipped(diff.pop("zip"))
        out = []
        for d in _grid(diff):
            for r in rows:
                m = {**d, **{k: v for k, v in r.items() if k != "loss_params"}}
                if "loss_params" in r:
                    m["loss_params"] = {**d.get("loss_params", {}), **r["loss_params"]}
                out.append(m)
        return out
    flat = {}
    for k, v in diff.items():
        if k == "loss_params" and isinstance(v, dict):
            for pk, pv in v.items():
                flat[("loss_params", pk)] = pv
        else:
            flat[k] = v
    keys = list(flat)
    values = [v if isinstance(v, list) else [v] for v in flat.values()]
    out = []
    for combo in itertools.product(*values):
        d: dict = {}
        for k, v in zip(keys, combo):
            if isinstance(k, tuple):
                d.setdefault("loss_params", {})[k[1]] = v
            else:
                d[k] = v
        out.append(d)
    return out


def expand(base: dict | None = None, sweep: dict | None = None, overrides: dict | None = None) -> list[Config]:
    """Configs for ``base`` + ``sweep`` + ``overrides`` (later wins; loss_params merge), grid-expanded."""
    merged = dict(base or {})
    for extra in (sweep or {}), (overrides or {}):
        for k, v in extra.items():
            if k == "loss_params" and isinstance(v, dict) and isinstance(merged.get(k), dict):
                merged[k] = {**merged[k], **v}
            else:
                merged[k] = v
    if "loss" in (sweep or {}) and "loss_params" not in (sweep or {}) and "loss_params" in (base or {}):
        merged["loss_params"] = {}  # a sweep that changes the loss does not inherit another loss's params
    return [from_dict(d) for d in _grid(merged)]


def load_params(path: str | Path) -> dict:
    """Read and fully validate a parameter file; returns {'profile', 'base', 'sweeps', 'extra'}."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from e
    return validate_params(raw, where=str(path))


def validate_params(raw: dict, where: str = "parameters") -> dict:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: top level must be a mapping with keys {list(TOP_LEVEL)}")
    unknown = sorted(set(raw) - set(TOP_LEVEL))
    if unknown:
        raise ConfigError(f"{where}: unknown top-level key(s) {unknown}; allowed: {list(TOP_LEVEL)}")
    p = {"profile": raw.get("profile", "default"), "base": raw.get("base") or {}, "sweeps": raw.get("sweeps") or {},
         "extra": raw.get("extra") or {}}
    if not isinstance(p["profile"], str) or not p["profile"].replace("_", "").replace("-", "").isalnum():
        raise ConfigError(f"{where}: profile must be a simple name (letters, digits, - and _), got {p['profile']!r}")
    for key in ("base", "sweeps", "extra"):
        if not isinstance(p[key], dict):
            raise ConfigError(f"{where}: {key} must be a mapping, got {type(p[key]).__name__}")
    for name, sweep in p["sweeps"].items():
        try:
            if not isinstance(sweep, dict):
                raise ConfigError(f"must be a mapping, got {type(sweep).__name__}")
            expand(p["base"], sweep)
        except ConfigError as e:
            raise ConfigError(f"{where}: sweep {name!r}: {e}") from None
    if not p["sweeps"]:
        try:
            expand(p["base"])
        except ConfigError as e:
            raise ConfigError(f"{where}: base: {e}") from None
    return p


def parse_set(items: list[str]) -> dict:
    """``--set key=value`` overrides; values parsed as YAML (so 0.1 is a float, [1,2] a list)."""
    out: dict = {}
    for it in items:
        if "=" not in it:
            raise ConfigError(f"--set expects key=value, got {it!r}")
        k, v = it.split("=", 1)
        val = yaml.safe_load(v)
        if k.startswith("loss_params."):
            out.setdefault("loss_params", {})[k.split(".", 1)[1]] = val
        else:
            out[k] = val
    return out


# Fields that change how a run executes but not what it computes are left out of the run id.
_NOT_IN_ID = ("data_root", "threads")


def config_id(cfg: Config) -> str:
    """Content address of a run: sha256 of the canonical JSON of its result-determining fields."""
    d = {k: v for k, v in cfg.to_dict().items() if k not in _NOT_IN_ID}
    blob = json.dumps(d, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]

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
import functools
import hashlib
import itertools
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .data import DATASETS, dataset_shape
from .losses import IMPLEMENTATIONS, LOSSES
from .losses.core import SCHEDULE_SHAPES, check_range
from .losses.noisy import NOISE_KINDS, NOISE_SIGNS

__all__ = ["Config", "ConfigError", "expand", "load_params", "validate_params", "config_id", "MODELS", "MAX_RUNS",
           "check_grid_size", "effective_threads", "thread_override", "device_available", "ENGINES"]

MODELS = ("mlp", "lenet5", "vgg_small", "resnet20", "resnet18", "mlp1d", "cnn1d")
OPTIMIZERS = ("sgd", "adamw")
LR_SCHEDULES = ("constant", "step", "cosine")
WARMUPS = ("none", *(m.warmup.kind for m in LOSSES.values() if m.warmup))  # declared by the methods
DEVICES = ("auto", "cpu", "cuda", "mps")
LOSS_IMPLS = IMPLEMENTATIONS  # softgrad.losses.implementation
AMP = ("auto", "bf16", "off")
ENGINES = ("single", "stacked")  # softgrad.train (one run) or softgrad.stacked (K runs as one stacked model)
STACKED_MODELS = ("mlp", "lenet5", "cnn1d")  # mlp1d: its residual block (h + relu(W h)) is not stacked
STACKED_OPTIMIZERS = ("sgd", "adamw")
TOP_LEVEL = ("profile", "base", "sweeps", "extra")
IMAGE_MODELS = ("lenet5", "vgg_small", "resnet20", "resnet18")
VECTOR_MODELS = ("mlp1d", "cnn1d")  # the MNIST-1D authors' models: inputs (N, L)
SGD_ONLY = {"momentum": 0.9, "nesterov": False}  # with optimizer 'adamw' these must keep their (unused) defaults
SEED_MAX = 2**32 - 1  # numpy/torch generators accept every seed in [0, 2^32 - 1]
# A parameter file (or --set override) that expands to more runs than this fails validation unless
# allowed explicitly (run_params(..., allow_large=True), CLI --allow-large-grid): a typo in a list
# should not silently queue days of training.
MAX_RUNS = 2000


class ConfigError(ValueError):
    """A parameter file or override that cannot describe a run."""


@dataclass(frozen=True)
class Config:
    """Everything that determines one training run. Defaults: a small, fast CPU run."""

    # data
    dataset: str = "mnist10k"
    data_root: str = ""  # "" -> $SOFTGRAD_DATA, else <repo>/data
    val_fraction: float = 0.0  # > 0: a stratified validation split of train (split by `seed`): val_* metrics
    label_noise: float = 0.0  # symmetric noise: this fraction of training labels replaced by another class (by `seed`)
    synthetic_classes: int = 10
    synthetic_dim: int = 32
    synthetic_n_train: int = 5000
    synthetic_separation: float = 3.0
    synthetic_label_noise: float = 0.0
    # MNIST-1D (softgrad.data.mnist1d_arrays): the generator's num_samples (a multiple of 10; samples // 10 per
    # class), how many of them (the last, as the generator splits) are the test split, and its seed. The defaults
    # are the authors' frozen set (4,000 train, 1,000 test); any other value generates a new set (a new draw, not
    # a superset), e.g. mnist1d_samples: 14000 with mnist1d_test_samples: 10000 (4,000 train, 10,000 test).
    # MNIST-10k: the share of its 10,000 images held out as the test split (stratified, fixed split seed); the rest
    # is the training set (from which val_fraction is carved). 0.2 (2,000 test images) is the default.
    mnist10k_test_fraction: float = 0.2
    mnist1d_samples: int = 5000
    mnist1d_test_samples: int = 1000
    mnist1d_seed: int = 42
    # model
    model: str = "mlp"
    width: int = 256  # MLP hidden width / VGG base channels (lenet5, resnets, mlp1d, cnn1d: fixed sizes)
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
    optimizer: str = "sgd"  # 'adamw': torch.optim.AdamW (betas 0.9, 0.999); with weight_decay 0 it is Adam
    lr: float = 0.05
    momentum: float = 0.9  # SGD only: with adamw it must stay at this default (unused)
    nesterov: bool = False  # SGD only
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
    # which implementation of the loss runs (softgrad.losses.implementation): 'auto' chooses by size; 'native'
    # and 'fused' agree to rounding, so a run under each is a numerics replicate (chapter 06's robustness check)
    loss_impl: str = "auto"
    # 'stacked': runs that differ only in seed, lr, weight_decay, the method's knob (and noise_alpha) train as one
    # model with a leading member dimension (softgrad.stacked: models STACKED_MODELS, optimizers SGD and AdamW);
    # each member is stored as an ordinary run
    engine: str = "single"
    amp: str = "auto"  # bf16 autocast: 'auto' on CUDA only, 'bf16' on any device (CPU too), 'off'
    threads: int = 0  # CPU threads (0: torch's default in a fresh process; part of the run id either way)
    track_samples: int = 0  # record p_t of this many fixed training samples every epoch
    eval_every: int = 1  # evaluate (train/val/test metrics) every this many epochs; the last epoch always
    log_every: int = 0  # > 0: record the training-batch loss every this many optimizer steps (step_loss)

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


def _range(cfg, key, lo=-math.inf, hi=math.inf, lo_open=False, hi_open=False):
    try:  # the one range checker (softgrad.losses.core.check_range), its message under this key
        check_range(key, getattr(cfg, key), lo, hi, lo_open, hi_open)
    except ValueError as e:
        _fail(key, str(e)[len(key) + 1:])


def _check(cfg: Config):
    _choice(cfg, "dataset", DATASETS)
    _choice(cfg, "model", MODELS)
    _choice(cfg, "optimizer", OPTIMIZERS)
    _choice(cfg, "lr_schedule", LR_SCHEDULES)
    _choice(cfg, "warmup", WARMUPS)
    _choice(cfg, "warmup_shape", SCHEDULE_SHAPES)
    _choice(cfg, "device", DEVICES)
    _choice(cfg, "loss_impl", LOSS_IMPLS)
    _choice(cfg, "amp", AMP)
    _choice(cfg, "engine", ENGINES)
    _choice(cfg, "noise", NOISE_KINDS)
    _choice(cfg, "noise_sign", NOISE_SIGNS)
    if cfg.loss not in LOSSES:
        _fail("loss", f"must be one of {sorted(LOSSES)}, got {cfg.loss!r}")
    try:  # the loss's declared parameters (names, types, ranges): nothing is built or run
        LOSSES[cfg.loss].check_params(cfg.loss_params)
    except ValueError as e:
        _fail("loss_params", str(e))
    _range(cfg, "val_fraction", 0.0, 0.9)
    _range(cfg, "label_noise", 0.0, 0.9)
    _range(cfg, "eval_every", 1)
    _range(cfg, "log_every", 0)
    _range(cfg, "synthetic_classes", 2)
    _range(cfg, "synthetic_dim", 1)
    _range(cfg, "synthetic_n_train", 10)
    _range(cfg, "synthetic_label_noise", 0.0, 1.0)
    _range(cfg, "mnist10k_test_fraction", 0.0, 1.0, lo_open=True, hi_open=True)
    _range(cfg, "mnist1d_samples", 10)
    if cfg.mnist1d_samples % 10:
        _fail("mnist1d_samples", f"must be a multiple of 10 (the generator makes mnist1d_samples // 10 samples per "
                                 f"class), got {cfg.mnist1d_samples}")
    _range(cfg, "mnist1d_test_samples", 1, cfg.mnist1d_samples - 1)
    _range(cfg, "mnist1d_seed", 0, SEED_MAX)
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
    _range(cfg, "seed", 0, SEED_MAX)
    _range(cfg, "crop_padding", 0)
    _range(cfg, "threads", 0)
    _range(cfg, "track_samples", 0)
    _range(cfg, "as_speed_lambda", 0.0, lo_open=True)
    _range(cfg, "as_speed_kmax", 1)
    _range(cfg, "warmup_epochs", 0.0)
    _range(cfg, "delta_ratio", 0.0, 1.0)
    if cfg.warmup != "none":  # a warm-up belongs to the loss that declares it
        owner = next(m.name for m in LOSSES.values() if m.warmup and m.warmup.kind == cfg.warmup)
        if cfg.loss != owner:
            _fail("warmup", f"'{cfg.warmup}' warm-up needs loss '{owner}', got loss {cfg.loss!r}")
        if cfg.warmup == "beta":
            _range(cfg, "warmup_start", 0.0, lo_open=True)
    if cfg.as_speed and not LOSSES[cfg.loss].zero_loss:
        allowed = [m.name for m in LOSSES.values() if m.zero_loss]
        _fail("as_speed", f"AS-Speed needs a loss with exact zero-loss samples (it counts them): one of {allowed}, "
                          f"got {cfg.loss!r}")
    if cfg.optimizer != "sgd":  # momentum and nesterov are SGD's; AdamW has its own betas
        for key, default in SGD_ONLY.items():
            if getattr(cfg, key) != default:
                _fail(key, f"applies to optimizer 'sgd' only; with optimizer {cfg.optimizer!r} leave it at its default "
                           f"{json.dumps(default)} (unused; AdamW's betas are (0.9, 0.999)), got "
                           f"{json.dumps(getattr(cfg, key))}")
    if cfg.noise_alpha > 0 and cfg.head_bias:
        _fail("head_bias", "Noisy Softmax (noise_alpha > 0) needs a bias-free head: set head_bias: false")
    _check_applicable(cfg)
    if cfg.engine == "stacked":
        _check_stackable(cfg)


def _check_stackable(cfg: Config) -> None:
    """What the stacked engine (:mod:`softgrad.stacked`) trains; everything else stays on ``engine: single``."""
    if cfg.model not in STACKED_MODELS:
        _fail("engine", f"'stacked' trains models {list(STACKED_MODELS)}, got model {cfg.model!r}; set engine: single")
    if cfg.as_speed:
        _fail("engine", "'stacked' cannot train AS-Speed runs (AS-Speed changes the number of optimizer steps per "
                        "run); set engine: single")
    if cfg.optimizer not in STACKED_OPTIMIZERS:
        _fail("engine", f"'stacked' trains optimizers {list(STACKED_OPTIMIZERS)}, got {cfg.optimizer!r}; set engine: single")
    if cfg.crop_padding or cfg.hflip:
        _fail("engine", "'stacked' trains without augmentation (crop_padding: 0, hflip: false); set engine: single")
    if cfg.compile:
        _fail("engine", "'stacked' runs eagerly (compile: false); set engine: single to compile a model")


def _check_applicable(cfg: Config) -> None:
    """Settings that are valid alone but cannot apply to this dataset, model or machine (the models' declared
    input needs, :data:`softgrad.models.MODEL_NEEDS`)."""
    from .models import model_fits  # torchvision: imported when a config is checked, not with this module

    shape, classes = dataset_shape(cfg.dataset, cfg.synthetic_classes, cfg.synthetic_dim)
    allowed = lambda: [m for m in MODELS if model_fits(m, cfg.width, shape)]  # noqa: E731
    if len(shape) != 3:
        if cfg.model in IMAGE_MODELS:
            _fail("model", f"{cfg.model!r} needs image inputs but dataset {cfg.dataset!r} is vectors of shape {shape}; "
                           f"allowed for it: {allowed()}")
        if cfg.model in VECTOR_MODELS and not model_fits(cfg.model, cfg.width, shape):
            _fail("model", f"{cfg.model!r} cannot take {cfg.dataset!r} vectors of shape {shape} (too short for its "
                           f"strided convolutions); allowed for it: {allowed()}")
        for key in ("crop_padding", "hflip"):
            if getattr(cfg, key):
                _fail(key, f"image augmentation cannot apply to dataset {cfg.dataset!r} (vectors of shape {shape}); "
                           f"allowed for it: 0/false")
    elif cfg.model in VECTOR_MODELS:
        _fail("model", f"{cfg.model!r} needs vector inputs (N, L) but dataset {cfg.dataset!r} is images of shape "
                       f"{shape}; allowed for it: {allowed()}")
    elif cfg.model in IMAGE_MODELS and not model_fits(cfg.model, cfg.width, shape):
        _fail("model", f"{cfg.model!r} cannot take {cfg.dataset!r} inputs of shape {shape} (too small for its "
                       f"pooling); allowed for it: {allowed()}")
    if cfg.crop_padding and len(shape) == 3 and cfg.crop_padding >= min(shape[1:]):
        _fail("crop_padding", f"must be smaller than the image side {min(shape[1:])}, got {cfg.crop_padding}")
    if cfg.device in ("cuda", "mps") and not device_available(cfg.device):
        _fail("device", f"{cfg.device!r} is not available on this machine; allowed here: "
                        f"{[d for d in DEVICES if d in ('auto', 'cpu') or device_available(d)]}")


@functools.lru_cache(maxsize=None)
def device_available(name: str) -> bool:
    """Whether torch can use device ``name`` ('cuda' or 'mps') on this machine."""
    import torch

    if name == "cuda":
        return torch.cuda.is_available()
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def effective_threads(cfg: Config) -> int:
    """The CPU thread count a run uses: ``cfg.threads``, or (0) torch's default in a fresh process.

    ``$SOFTGRAD_THREADS`` overrides both: it simulates a machine with another thread count when checking
    that results do not depend on it (:mod:`softgrad.goldens`). The count is part of the run id either way.
    """
    return thread_override() or cfg.threads or _default_threads()


def thread_override() -> int:
    """``$SOFTGRAD_THREADS`` as a positive int, or 0 when unset (see :func:`effective_threads`)."""
    v = os.environ.get("SOFTGRAD_THREADS", "")
    if v and not (v.isdigit() and int(v) > 0):
        raise ConfigError(f"SOFTGRAD_THREADS must be a positive integer, got {v!r}")
    return int(v) if v else 0


@functools.lru_cache(maxsize=None)
def _default_threads() -> int:
    # torch's default intra-op thread count (physical cores, or $OMP_NUM_THREADS), read once before any
    # run changes it, so the id computed by a driver matches the count its spawned workers use
    import torch

    return torch.get_num_threads()


_FIELDS = {f.name: f for f in dataclasses.fields(Config)}
_TYPES = {"str": str, "int": int, "float": float, "bool": bool, "dict": dict}


def _coerce(key: str, value: Any) -> Any:
    """Type-check one value against Config's annotation (ints are accepted for floats)."""
    want = _TYPES[_FIELDS[key].type]
    if want is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if want is int and isinstance(value, bool) or not isinstance(value, want):
        _fail(key, f"must be of type {want.__name__}, got {type(value).__name__} {value!r}")
    if want is float and not math.isfinite(value):
        _fail(key, f"must be a finite number, got {value!r}")
    if want is dict:
        for k, v in value.items():
            if not isinstance(k, str):
                _fail(key, f"keys must be strings, got {k!r} ({type(k).__name__})")
            if isinstance(v, float) and not math.isfinite(v):
                _fail(f"{key}.{k}", f"must be a finite number, got {v!r}")
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
    if 0 in lens.values():
        raise ConfigError(f"zip: the lists must not be empty (an empty sweep runs nothing), got lengths {lens}")
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
    for k, v in flat.items():
        if isinstance(v, list) and not v:
            name = f"loss_params.{k[1]}" if isinstance(k, tuple) else k
            raise ConfigError(f"{name}: an empty list is an empty sweep (no runs); give at least one value")
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


def _normalise(diff: dict | None, where: str) -> dict:
    """One level of a diff with ``seeds`` spelt ``seed``; both spellings in one mapping are an error."""
    diff = dict(diff or {})
    for k in diff:
        if not isinstance(k, str):
            raise ConfigError(f"{where}keys must be strings, got {k!r} ({type(k).__name__}); YAML reads "
                              f"unquoted on/off/yes/no/true/false as booleans and numbers as numbers: quote the key")
    if "seeds" in diff:
        if "seed" in diff:
            raise ConfigError(f"{where}seed: give 'seed' or 'seeds' (an alias), not both: "
                              f"seed={diff['seed']!r}, seeds={diff['seeds']!r}")
        diff["seed"] = diff.pop("seeds")
    return diff


def expand(base: dict | None = None, sweep: dict | None = None, overrides: dict | None = None) -> list[Config]:
    """Configs for ``base`` + ``sweep`` + ``overrides`` (later wins), grid-expanded.

    ``loss_params`` merge across levels while the loss stays the same; a level that switches to another
    loss starts from that loss's defaults (it never inherits parameters meant for a different loss).
    """
    merged: dict = {}
    for level, where in ((base, ""), (sweep, ""), (overrides, "--set ")):
        diff = _normalise(level, where)
        switches = "loss" in diff and diff["loss"] != merged.get("loss", Config.loss)
        for k, v in diff.items():
            if k == "loss_params" and isinstance(v, dict) and isinstance(merged.get(k), dict) and not switches:
                merged[k] = {**merged[k], **v}
            else:
                merged[k] = v
        if switches and "loss_params" not in diff:
            merged.pop("loss_params", None)
    return [from_dict(d) for d in _grid(merged)]


def check_grid_size(n: int, allow_large: bool = False) -> None:
    if n > MAX_RUNS and not allow_large:
        raise ConfigError(f"grid: {n} runs exceeds the limit of {MAX_RUNS}; shrink the lists, or allow it "
                          f"explicitly (CLI --allow-large-grid, run_params(..., allow_large=True))")


class _StrictLoader(yaml.SafeLoader):
    """safe_load that rejects duplicate keys (PyYAML's default keeps the last one silently).

    Anchors, aliases and merge keys (``<<: *common``) work as in YAML 1.1: a key written in the mapping
    overrides the same key merged in (that is what a merge is for), but a key written twice is an error."""


def _no_duplicates(loader, node, deep=False):
    seen = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":  # '<<': merged below, may be overridden
            continue
        key = loader.construct_object(key_node, deep=deep)
        try:
            hash(key)
        except TypeError:
            raise yaml.constructor.ConstructorError(None, None, f"unhashable key {key!r}", key_node.start_mark)
        if key in seen:
            raise ConfigError(f"duplicate key {key!r} at line {key_node.start_mark.line + 1} "
                              f"(first at line {seen[key] + 1}); each key may appear once per mapping")
        seen[key] = key_node.start_mark.line
    loader.flatten_mapping(node)  # merged pairs first, so the mapping's own keys win
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _no_duplicates)


def yaml_load(text: str):
    """YAML as :func:`yaml.safe_load`, but duplicate keys are a :class:`ConfigError`."""
    return yaml.load(text, Loader=_StrictLoader)


def load_params(path: str | Path, allow_large: bool = False) -> dict:
    """Read and fully validate a parameter file; returns {'profile', 'base', 'sweeps', 'extra'}."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the parameter file: {e.strerror or e}") from None
    try:
        raw = yaml_load(text)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {' '.join(str(e).split())}") from None
    if raw is None:
        raise ConfigError(f"{path}: the parameter file is empty; it needs at least 'base:' or 'sweeps:' "
                          f"(top-level keys {list(TOP_LEVEL)})")
    return validate_params(raw, where=str(path), allow_large=allow_large)


def validate_params(raw: dict, where: str = "parameters", allow_large: bool = False) -> dict:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: top level must be a mapping with keys {list(TOP_LEVEL)}")
    bad = [k for k in raw if not isinstance(k, str)]
    if bad:
        raise ConfigError(f"{where}: top-level keys must be strings, got {bad!r}")
    unknown = sorted(set(raw) - set(TOP_LEVEL))
    if unknown:
        raise ConfigError(f"{where}: unknown top-level key(s) {unknown}; allowed: {list(TOP_LEVEL)}")
    # a section written with no value ('extra:' with every entry commented out) is an empty mapping
    p = {"profile": raw.get("profile", "default"),
         **{k: {} if raw.get(k) is None else raw[k] for k in ("base", "sweeps", "extra")}}
    if not isinstance(p["profile"], str) or not p["profile"].replace("_", "").replace("-", "").isalnum():
        raise ConfigError(f"{where}: profile must be a simple name (letters, digits, - and _), got {p['profile']!r}")
    for key in ("base", "sweeps", "extra"):
        if not isinstance(p[key], dict):
            got = "nothing" if p[key] is None else f"{type(p[key]).__name__} {p[key]!r}"
            raise ConfigError(f"{where}: {key} must be a mapping (write {key}: {{}} for none), got {got}")
    for name in p["sweeps"]:
        if not isinstance(name, str):
            raise ConfigError(f"{where}: sweep names must be strings, got {name!r} ({type(name).__name__}); YAML "
                              f"reads unquoted on/off/yes/no/true/false as booleans: quote the name")
    total = 0
    for name, sweep in p["sweeps"].items():
        try:
            if not isinstance(sweep, dict):
                raise ConfigError(f"must be a mapping, got {type(sweep).__name__}")
            total += len(expand(p["base"], sweep))
        except ConfigError as e:
            raise ConfigError(f"{where}: sweep {name!r}: {e}") from None
    if not p["sweeps"] and p["base"]:  # no base settings and no sweeps: the file trains nothing
        try:
            total = len(expand(p["base"]))
        except ConfigError as e:
            raise ConfigError(f"{where}: base: {e}") from None
    try:
        check_grid_size(total, allow_large)
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None
    return p


def parse_set(items: list[str]) -> dict:
    """``--set key=value`` overrides; values parsed as YAML (so 0.1 is a float, [1,2] a list)."""
    out: dict = {}
    for it in items:
        k, sep, v = it.partition("=")
        if not sep or not k:
            raise ConfigError(f"--set expects key=value, got {it!r}")
        try:
            val = yaml_load(v)
        except (ConfigError, yaml.YAMLError) as e:
            raise ConfigError(f"--set {k}: not a valid YAML value: {' '.join(str(e).split())}") from None
        group, key = (out.setdefault("loss_params", {}), k.split(".", 1)[1]) if k.startswith("loss_params.") else (out, k)
        if key in group:
            raise ConfigError(f"--set {k}: given twice")
        group[key] = val
    return out


# Fields that change how a run executes but not what it computes are left out of the run id. The thread
# count is in it: float32 reductions differ in the last bits between 1 and 2 threads.
_NOT_IN_ID = ("data_root",)
_MNIST1D_FIELDS = ("mnist1d_samples", "mnist1d_test_samples", "mnist1d_seed")


#: Part of every run's id. Bumped when a library change alters what a run computes (not only how fast), so
#: results cached under the old numerics are retrained rather than reused. 2: the losses' native small-input
#: paths (agree with the fused Functions to rounding, but rounding changes a training trajectory).
#: 3: under label noise, temperature scaling is fitted on the validation split's true labels.
NUMERICS_VERSION = 3


def config_id(cfg: Config) -> str:
    """Content address of a run: sha256 of the canonical JSON of its result-determining fields
    (``threads`` resolved to :func:`effective_threads`) and :data:`NUMERICS_VERSION`."""
    d = {k: v for k, v in cfg.to_dict().items() if k not in _NOT_IN_ID}
    d["threads"] = effective_threads(cfg)
    d["numerics_version"] = NUMERICS_VERSION
    if d["loss_impl"] == "auto":  # the default leaves the id as it was before the field existed
        del d["loss_impl"]
    if d["engine"] == "single":  # likewise: ids of single-engine runs are unchanged by the field
        del d["engine"]
    for k in _MNIST1D_FIELDS:  # only where they change the data: mnist1d away from the authors' frozen set
        if d["dataset"] != "mnist1d" or d[k] == _FIELDS[k].default:
            del d[k]
    default = _FIELDS["mnist10k_test_fraction"].default
    if d["dataset"] != "mnist10k" or d.get("mnist10k_test_fraction", default) == default:
        d.pop("mnist10k_test_fraction", None)  # likewise: the default split leaves every earlier id as it was
    blob = json.dumps(d, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]

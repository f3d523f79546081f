"""Content-addressed, resumable, cached runs and their results as a DataFrame.

Layout: ``outputs/<profile>/runs/<run_id>.json`` (the result, written atomically) and, while a run is
in progress, ``<run_id>.ckpt`` (its last epoch checkpoint; ignored by git). ``run_id`` is
:func:`~softgrad.config.config_id` of the resolved config. A finished run is read back, never
recomputed; an interrupted one resumes from its checkpoint.

Each result holds ``config``, ``run_id``, ``history`` (per-epoch metrics), ``final``, ``per_sample``
and ``provenance`` (git commit and dirty flag, package versions, device, start/end time, wall time).
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from .config import Config, config_id, expand, load_params, validate_params

__all__ = ["REPO_ROOT", "run_dir", "run_one", "run_many", "run_params", "run_configs", "notebook_params", "load_run", "load_results", "provenance",
           "default_progress"]


def default_progress() -> bool:
    """Progress bars unless ``SOFTGRAD_PROGRESS=0`` (the pipeline sets it for notebook kernels)."""
    return os.environ.get("SOFTGRAD_PROGRESS", "1") != "0"

REPO_ROOT = Path(__file__).resolve().parents[2]


def run_dir(profile: str, root: Path | None = None) -> Path:
    """``<root or $SOFTGRAD_OUTPUTS or <repo>/outputs>/<profile>/runs``."""
    base = Path(root) if root else Path(os.environ.get("SOFTGRAD_OUTPUTS", REPO_ROOT / "outputs"))
    return base / profile / "runs"


def _git(*args) -> str:
    try:
        return subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def provenance() -> dict:
    import numpy
    import torch
    import torchvision

    from . import __version__

    return {"git_commit": _git("rev-parse", "HEAD") or "unknown",
            "git_dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
            "python": platform.python_version(), "torch": torch.__version__,
            "torchvision": torchvision.__version__, "numpy": numpy.__version__, "softgrad": __version__,
            "platform": platform.platform(), "threads": torch.get_num_threads()}


def atomic_write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1, sort_keys=False)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def run_one(cfg: Config, out: Path, progress: bool = True, stop_after_epoch: int | None = None) -> dict:
    """The result of ``cfg``: read from ``out`` if finished, else trained (resuming if possible)."""
    from .train import train

    rid = config_id(cfg)
    path = out / f"{rid}.json"
    if path.exists():
        return json.loads(path.read_text())
    out.mkdir(parents=True, exist_ok=True)
    t0, started = time.time(), time.strftime("%Y-%m-%dT%H:%M:%S%z")
    res = train(cfg, ckpt_path=out / f"{rid}.ckpt", progress=progress, stop_after_epoch=stop_after_epoch)
    from .train import world

    if world()[1] != 0:  # data-parallel: rank 0 writes the result
        return {"run_id": rid, "config": cfg.to_dict(), **res, "provenance": {"device": res.get("device")}}
    prov = provenance()
    prov.update(device=res.pop("device"), device_name=res.pop("device_name"), started=started,
                finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"), wall_time=time.time() - t0)
    result = {"run_id": rid, "config": cfg.to_dict(), **res, "provenance": prov}
    atomic_write_json(path, result)
    (out / f"{rid}.ckpt").unlink(missing_ok=True)
    return result


def run_many(configs: list[Config], out: Path, progress: bool = True, desc: str = "runs") -> list[dict]:
    """Run (or load) every config in order; one failing run is reported and does not stop the others."""
    from tqdm.auto import tqdm

    results, failures = [], []
    todo = [c for c in configs if not (out / f"{config_id(c)}.json").exists()]
    bar = tqdm(configs, desc=f"{desc} ({len(configs) - len(todo)} cached)", disable=not progress)
    for cfg in bar:
        try:
            results.append(run_one(cfg, out, progress=progress))
        except Exception as e:  # keep going; report at the end
            failures.append((cfg, e))
            print(f"run {config_id(cfg)} failed: {type(e).__name__}: {e}", file=sys.stderr)
    if failures:
        raise RuntimeError(f"{len(failures)} of {len(configs)} runs failed; the other results are saved in {out}")
    return results


def run_params(params: dict | str | Path, sweeps: list[str] | None = None, overrides: dict | None = None,
               out_root: Path | None = None, progress: bool | None = None, executor: str = "local",
               workers: int | None = None, address: str | None = None):
    """Run the sweeps of a parameter file (or a dict with its keys); returns a DataFrame of them.

    Every config of every selected sweep is built (and so validated) before any training starts.
    ``executor``: 'local' (sequential), 'processes' or 'ray' (see :mod:`softgrad.executors`).
    """
    from .executors import check_executor, run_grid

    check_executor(executor, workers)  # before any training
    p = load_params(params) if isinstance(params, (str, Path)) else validate_params(params)
    progress = default_progress() if progress is None else progress
    names = sweeps or list(p["sweeps"]) or [None]
    plan = []
    for name in names:
        if name is not None and name not in p["sweeps"]:
            raise ValueError(f"sweep must be one of {list(p['sweeps'])}, got {name!r}")
        sweep = p["sweeps"].get(name, {}) if name else {}
        plan.append((name, expand(p["base"], sweep, overrides)))
    out = run_dir(p["profile"], out_root)
    frames = []
    for name, configs in plan:
        results = run_grid(configs, out, executor=executor, workers=workers, address=address, progress=progress,
                           desc=name or "base")
        frames.append(results_frame(results, sweep=name))
    import pandas as pd

    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def notebook_params(notebook: str, profile: str, base=None, sweeps=None, extra=None) -> dict:
    """A notebook's parameters: as injected by papermill, or (all None, interactive use) read from
    ``params/<profile>/<notebook>.yaml``. Validated either way."""
    if base is None and sweeps is None and extra is None:
        return load_params(REPO_ROOT / "params" / profile / f"{notebook}.yaml")
    return validate_params({"profile": profile, "base": base or {}, "sweeps": sweeps or {}, "extra": extra or {}},
                           where=f"{notebook} parameters")


def run_configs(configs: list[Config], profile: str, out_root: Path | None = None, progress: bool | None = None,
                desc: str = "runs"):
    """Run (or load) a list of configs under ``outputs/<profile>/runs``; returns their results frame."""
    progress = default_progress() if progress is None else progress
    return results_frame(run_many(configs, run_dir(profile, out_root), progress=progress, desc=desc), sweep=desc)


def results_frame(results: list[dict], sweep: str | None = None):
    """One row per (run, epoch): config fields (loss params as ``param.<name>``), metrics, run id."""
    import pandas as pd

    rows = []
    for r in results:
        cfg = dict(r["config"])
        lp = cfg.pop("loss_params")
        base = {**cfg, **{f"param.{k}": v for k, v in lp.items()}, "run_id": r["run_id"], "sweep": sweep,
                "device": r["provenance"]["device"]}
        clash = set(base) & set(r["history"][0])
        if clash:  # a metric named like a config field would silently shadow it
            raise ValueError(f"run {r['run_id']}: history keys {sorted(clash)} clash with config fields")
        last = r["config"]["epochs"]
        for h in r["history"]:
            extra = {k: r["final"][k] for k in ("train_time", "total_opt_steps")} if h["epoch"] == last else {}
            rows.append({**base, **h, **extra, "final": h["epoch"] == last})
    return pd.DataFrame(rows)


def load_run(profile: str, run_id: str, out_root: Path | None = None) -> dict:
    """The full stored result of one run (history, per_sample, reliability, provenance)."""
    return json.loads((run_dir(profile, out_root) / f"{run_id}.json").read_text())


def load_results(profile: str, out_root: Path | None = None):
    """Every finished run of ``profile`` as a DataFrame (see :func:`results_frame`)."""
    d = run_dir(profile, out_root)
    results = [json.loads(p.read_text()) for p in sorted(d.glob("*.json"))]
    return results_frame(results)

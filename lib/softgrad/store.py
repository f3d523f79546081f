"""Storage of run results: where they live, atomic writes, clean-up after kills, loading.

Layout: ``outputs/<profile>/runs/<run_id>.json`` (a finished result, written atomically) and, while a
run is in progress, ``<run_id>.ckpt`` (its last epoch checkpoint; ignored by git). ``run_id`` is
:func:`~softgrad.config.config_id` of the resolved config. Each result holds ``config``, ``run_id``,
``history`` (per-epoch metrics), ``final``, ``per_sample``, ``reliability`` and ``provenance`` (git
commit and dirty flag (:func:`git_dirty`), package versions, the lock file's hash, device, start/end time,
wall time).

This module only stores and reads; :mod:`softgrad.runs` executes. Data flows one way:
``config -> store -> train -> runs``.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import subprocess
from pathlib import Path

from .common import LOCK_FILE, REPO_ROOT, outputs_root

__all__ = ["REPO_ROOT", "LOCK_FILE", "RESULT_SOURCES", "run_dir", "result_path", "atomic_write_json",
           "atomic_torch_save", "clean_stale_tmp", "provenance", "git_dirty", "file_hash", "lock_hash", "load_run",
           "results_frame"]


# temporary files are named <final name>.tmp<pid>; a dead pid means a killed writer
_TMP = re.compile(r"^(?P<final>.+)\.tmp(?P<pid>\d+)$")


def run_dir(profile: str, root: Path | None = None) -> Path:
    """``<root or $SOFTGRAD_OUTPUTS or <repo>/outputs>/<profile>/runs``."""
    return outputs_root(root) / profile / "runs"


def result_path(out: Path, run_id: str) -> Path:
    return Path(out) / f"{run_id}.json"


def _tmp_name(path: Path) -> Path:
    return path.with_name(f"{path.name}.tmp{os.getpid()}")


def atomic_write_json(path: Path, obj) -> None:
    """Write ``obj`` as JSON to ``path`` so that a reader sees the old file or the whole new one.

    A kill mid-write leaves only ``<path>.tmp<pid>``, which :func:`clean_stale_tmp` removes later.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(path)
    try:
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=1, sort_keys=False)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)  # only still there if the write failed (an exception, not a kill)


def atomic_torch_save(obj, path: Path) -> None:
    """``torch.save`` with the same atomicity and clean-up as :func:`atomic_write_json`."""
    import torch

    path = Path(path)
    tmp = _tmp_name(path)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def clean_stale_tmp(folder: Path) -> list[Path]:
    """Remove ``*.tmp<pid>`` files in ``folder`` whose writer process is gone (a kill -9 mid-write).

    Files of live processes (a parallel worker writing right now) are left alone. Returns the removed paths.
    """
    removed = []
    folder = Path(folder)
    if not folder.is_dir():
        return removed
    for p in folder.iterdir():
        m = _TMP.match(p.name)
        if m and p.is_file() and not _alive(int(m["pid"])):
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed


def git(*args, cwd: Path | None = None) -> str:
    """``git *args`` in ``cwd`` (default: the repository), stripped stdout; '' where git fails or is missing."""
    try:
        return subprocess.run(["git", *args], cwd=cwd or REPO_ROOT, capture_output=True, text=True,
                              timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


#: What changes a run's result, relative to the repository root: the library, the notebooks, the parameter files
#: and the environment. Not outputs/ (what regenerating rewrites: a fresh clone's regeneration rewrites tracked
#: executed notebooks and figures there), nor the book's sources, tests or benchmarks.
RESULT_SOURCES = ("lib", "notebooks", "params", "requirements-lock.txt", "pyproject.toml")


def git_dirty(root: Path | None = None) -> bool:
    """Whether the working tree of ``root`` (default: the repository) differs from its commit in a file that changes
    results (:data:`RESULT_SOURCES`): an edit, staged or not, or a file git does not track yet (a new parameter
    file or module; ignored files such as ``__pycache__`` do not count). The one definition of "local changes",
    for a run's provenance and a book page's header (:func:`softgrad.book.page_header`)."""
    return bool(git("status", "--porcelain", "--untracked-files=all", "--", *RESULT_SOURCES, cwd=root))


def file_hash(path: Path) -> str:
    """sha256 (first 16 hex) of a file's bytes; 'none' if it cannot be read."""
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]
    except OSError:
        return "none"


def lock_hash() -> str:
    """:func:`file_hash` of ``requirements-lock.txt``, the reference environment."""
    return file_hash(LOCK_FILE)


def provenance() -> dict:
    import numpy
    import torch
    import torchvision

    from . import __version__

    return {"git_commit": git("rev-parse", "HEAD") or "unknown",
            "git_dirty": git_dirty(),
            "python": platform.python_version(), "torch": torch.__version__,
            "torchvision": torchvision.__version__, "numpy": numpy.__version__, "softgrad": __version__,
            "lock_sha256": lock_hash(), "platform": platform.platform(), "threads": torch.get_num_threads()}


def load_run(profile: str, run_id: str, out_root: Path | None = None) -> dict:
    """The full stored result of one run (history, per_sample, reliability, provenance)."""
    return json.loads(result_path(run_dir(profile, out_root), run_id).read_text())


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


"""Storage of run results: where they live, atomic writes, clean-up after kills, loading.

Layout: ``outputs/<profile>/runs/<run_id>.json`` (a finished result, written atomically), beside it
``<run_id>.examples.npz`` (the final model's per-example test results, :func:`write_examples`; written before the
JSON, which points to it) and, while a run is in progress, ``<run_id>.ckpt`` (its last epoch checkpoint; ignored
by git). ``run_id`` is
:func:`~softgrad.config.config_id` of the resolved config. Each result holds ``config``, ``run_id``,
``history`` (per-epoch metrics), ``final``, ``per_sample``, ``reliability`` and ``provenance`` (git
commit and dirty flag (:func:`git_dirty`), package versions, the lock file's hash, device, start/end time,
wall time) and ``examples`` (the pointer to the per-example file: :func:`examples_pointer`).

This module only stores and reads; :mod:`softgrad.runs` executes. Data flows one way:
``config -> store -> train -> runs``.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import re
import subprocess
from pathlib import Path

import numpy as np

from .common import LOCK_FILE, REPO_ROOT, outputs_root

__all__ = ["REPO_ROOT", "LOCK_FILE", "RESULT_SOURCES", "run_dir", "result_path", "atomic_write_json",
           "atomic_torch_save", "clean_stale_tmp", "provenance", "git_dirty", "file_hash", "lock_hash", "load_run",
           "results_frame", "EXAMPLES_FORMAT", "MissingExamples", "examples_path", "pack_examples", "write_examples",
           "examples_pointer", "has_examples", "load_examples", "load_examples_many"]


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


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(path)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
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
    """Remove ``*.tmp<pid>`` files in ``folder`` whose writer process is gone (a kill -9 mid-write): results
    (``.json.tmp<pid>``), per-example files (``.examples.npz.tmp<pid>``) and checkpoints (``.ckpt.tmp<pid>``).

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


# ------------------------------------------------------------------ per-example test results (issue 34)
#
# File ``<run_id>.examples.npz``: a zip of .npy arrays (``numpy.load`` reads it), written with fixed timestamps
# so that equal arrays give equal bytes. Arrays, for the n test examples in the data set's test order:
#   n        int64 scalar           the number of examples
#   correct  uint8 (ceil(n/8),)     the final model's correctness, numpy.packbits (bit order big)
#   nll      float16 (n,)           −log p_y (plain CE per example; its mean is test_nll)
#   conf     float16 (n,)           max softmax probability, rounded inside its 15-bin ECE bin
#                                   (softgrad.calibration.half_conf; its ECE is test_ece)
#   nll_ts, conf_ts  float16 (n,)   the same after temperature scaling with the run's ts_temperature (only runs
#                                   with a validation split); correctness is unchanged by scaling — where argmax
#                                   ties say otherwise, ``correct_ts`` (packed like ``correct``) is stored too.
# ~15 kB per run for 2,000 test examples (MNIST-10k: 14.4-15.1 kB; the arrays are 16.3 kB, deflate saves ~10%).

EXAMPLES_FORMAT = 1
_PACKED = ("correct", "correct_ts")
_FLOATS = ("nll", "conf", "nll_ts", "conf_ts")


class MissingExamples(FileNotFoundError):
    """A stored run has no per-example test results (it finished before they were kept, or the file is gone)."""


def examples_path(out: Path, run_id: str) -> Path:
    return Path(out) / f"{run_id}.examples.npz"


def pack_examples(ex: dict) -> dict:
    """The stored arrays (module comment above) from ``correct`` (bool) and float arrays ``(n,)``."""
    n = int(len(ex["correct"]))
    out = {"n": np.asarray(n, np.int64)}
    for k, v in ex.items():
        v = np.asarray(v)
        if v.shape != (n,):
            raise ValueError(f"per-example array {k!r} has shape {v.shape}, expected ({n},)")
        if k in _PACKED:
            out[k] = np.packbits(v.astype(bool))
        elif k in _FLOATS:
            out[k] = v.astype(np.float16)
        else:
            raise ValueError(f"unknown per-example array {k!r}")
    return out


def _content_hash(packed: dict) -> str:
    h = hashlib.sha256()
    for k in sorted(packed):
        a = np.ascontiguousarray(packed[k])
        h.update(f"{k}:{a.dtype.str}:{a.shape};".encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]


def _npz_bytes(packed: dict) -> bytes:
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for k in sorted(packed):
            b = io.BytesIO()
            np.lib.format.write_array(b, np.asarray(packed[k]), allow_pickle=False)
            info = zipfile.ZipInfo(f"{k}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, b.getvalue())
    return buf.getvalue()


def examples_pointer(out: Path, run_id: str, ex: dict) -> dict:
    """What a run's JSON says about its per-example file: ``{file, format, n, keys, sha256}`` (sha256: of the
    stored arrays' contents, so equal results give equal JSON)."""
    packed = pack_examples(ex)
    return {"file": examples_path(out, run_id).name, "format": EXAMPLES_FORMAT, "n": int(packed["n"]),
            "keys": sorted(k for k in packed if k != "n"), "sha256": _content_hash(packed)}


def write_examples(out: Path, run_id: str, ex: dict | bytes) -> dict:
    """Write a run's per-example test results atomically (temp file + rename: a killed writer leaves only
    ``<name>.tmp<pid>``, which :func:`clean_stale_tmp` removes). ``ex``: ``correct`` (bool ``(n,)``) and float
    arrays ``(n,)`` (module comment), or the bytes of such a file (a Ray worker's). Returns the pointer the
    run's JSON stores (:func:`examples_pointer`). Called before the JSON is written: a run is finished when its
    JSON exists, and then its per-example file exists too."""
    if isinstance(ex, (bytes, bytearray)):
        with np.load(io.BytesIO(ex)) as z:
            packed = {k: z[k] for k in z.files}
        ex = _unpack(packed)
    packed = pack_examples(ex)
    _atomic_write_bytes(examples_path(out, run_id), _npz_bytes(packed))
    return examples_pointer(out, run_id, ex)


def _unpack(packed: dict) -> dict:
    n = int(packed["n"])
    return {k: (np.unpackbits(v, count=n).astype(bool) if k in _PACKED else v) for k, v in packed.items() if k != "n"}


def has_examples(out: Path, run_id: str) -> bool:
    """Whether a run's per-example file exists (a run stored before they were kept has none)."""
    return examples_path(out, run_id).is_file()


def _where(profile_or_dir, out_root: Path | None) -> Path:
    if isinstance(profile_or_dir, Path) or os.sep in str(profile_or_dir):
        return Path(profile_or_dir)
    return run_dir(str(profile_or_dir), out_root)


def load_examples(profile_or_dir, run_id: str, out_root: Path | None = None, expect: dict | None = None) -> dict:
    """A run's per-example test results: ``correct`` (bool ``(n,)``), ``nll``, ``conf`` and (with a validation
    split) ``nll_ts``, ``conf_ts`` (float16 ``(n,)``), in the test set's order. ``profile_or_dir``: a profile
    name (``outputs/<profile>/runs``) or the runs folder. ``expect``: the run JSON's ``examples`` pointer, checked
    against the file (the file and the JSON come from one model). Raises :class:`MissingExamples`, naming the run
    and what to do, where the file is missing."""
    out = _where(profile_or_dir, out_root)
    path = examples_path(out, run_id)
    if not path.is_file():
        raise MissingExamples(
            f"run {run_id}: no per-example test results ({path.name} in {out}); the run was stored before they "
            f"were kept or the file was removed. Retrain it: softgrad.runs.run_grid(..., require_examples=True) "
            f"(or delete {run_id}.json)")
    with np.load(path) as z:
        packed = {k: z[k] for k in z.files}
    if expect is not None and expect.get("sha256") != _content_hash(packed):
        raise ValueError(f"run {run_id}: {path.name} does not match the run's JSON (sha256 {expect.get('sha256')}); "
                         "the two come from different trainings")
    return _unpack(packed)


def load_examples_many(profile_or_dir, run_ids, out_root: Path | None = None) -> dict:
    """The per-example results of several runs on one test set, stacked: each key ``(len(run_ids), n)``
    (``correct`` bool, the others float16), rows in the order of ``run_ids``. A key is kept only where every
    run has it (``correct_ts`` is filled from ``correct`` where a run lacks it). Raises where the runs'
    test sets differ in size."""
    exs = [load_examples(profile_or_dir, rid, out_root) for rid in run_ids]
    ns = {len(e["correct"]) for e in exs}
    if len(ns) > 1:
        raise ValueError(f"load_examples_many: the runs' test sets differ in size ({sorted(ns)})")
    if any("correct_ts" in e for e in exs):
        exs = [{**e, "correct_ts": e.get("correct_ts", e["correct"])} for e in exs]
    keys = [k for k in exs[0] if all(k in e for e in exs)] if exs else []
    return {k: np.stack([e[k] for e in exs]) for k in keys}


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


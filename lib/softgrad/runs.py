"""Executing runs: one config, a grid of them (here, in local processes, or on Ray), a parameter file.

    run_grid(configs, out, executor="local")                 # sequential, in this process
    run_grid(configs, out, executor="processes", workers=2)  # a local process pool (spawned workers)
    run_grid(configs, out, executor="ray", address=None)     # Ray: local instance, or address="ray://..."
    run_params("params/quick/02_gradient_decay.yaml")        # every sweep of a parameter file -> DataFrame

Every executor computes the same thing, :func:`run_one` per config, so the results are identical
(runs are deterministic given their config, and the thread count is part of the config's id). Finished
runs are read from ``out`` and never recomputed; an interrupted run resumes from its checkpoint; stale
temporary files of killed writers are removed first; one failed run is reported (which run, why) and does
not lose the others, and the call then raises :class:`RunFailures`. On Ray each run is a task asking for
one GPU when the cluster has GPUs (``gpus_per_run``); the driver writes every returned result into
``out``, so a cluster without a shared file system still ends with all results.

Configs with ``engine: stacked`` are grouped by :func:`softgrad.stacked.group` (same method and task; seeds,
learning rates, weight decays and knobs may differ) and each group trains as one stacked model
(:func:`run_stack`), one task of the executor per stack (split so that every worker gets one); each member is
written as an ordinary run result. ``max_stack`` (or ``$SOFTGRAD_MAX_STACK``) caps a stack's size (members
never depend on it).

Each finished run also stores its final model's per-example test results, ``<run_id>.examples.npz``
(:func:`softgrad.store.write_examples`), written before its JSON, which points to it (``examples``). A run stored
before these files existed is reused as it is (its id is unchanged); ``require_examples=True`` trains it again
instead, so that its JSON and its per-example file come from one model
(:func:`softgrad.store.load_examples` names such a run and this option).

Storage (paths, atomic writes, loading) is :mod:`softgrad.store`.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from .config import Config, ConfigError, config_id, expand, load_params, validate_params
from .common import REPO_ROOT, params_file
from .store import (atomic_write_json, clean_stale_tmp, examples_path, has_examples, load_run, provenance,
                    result_path, results_frame, run_dir, write_examples)

__all__ = ["EXECUTORS", "RunFailures", "check_executor", "run_one", "run_stack", "run_grid", "run_params", "notebook_params", "default_progress", "REPO_ROOT", "load_run"]

EXECUTORS = ("local", "processes", "ray")


class RunFailures(RuntimeError):
    """Some runs of a grid failed; every other result was saved. ``failures``: [(run_id, message)]."""

    def __init__(self, failures: list[tuple[str, str]], total: int, out: Path):
        self.failures = failures
        lines = "; ".join(f"run {rid}: {msg}" for rid, msg in failures[:5])
        more = f" (and {len(failures) - 5} more)" if len(failures) > 5 else ""
        super().__init__(f"{len(failures)} of {total} runs failed; the other results are saved in {out}: {lines}{more}")


def default_progress() -> bool:
    """Progress bars unless ``SOFTGRAD_PROGRESS=0`` (the pipeline sets it for notebook kernels)."""
    return os.environ.get("SOFTGRAD_PROGRESS", "1") != "0"


def check_executor(executor: str, workers: int | None = None) -> None:
    """Fail early, naming the parameter and the allowed values."""
    if executor not in EXECUTORS:
        raise ValueError(f"executor must be one of {list(EXECUTORS)}, got {executor!r}")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ValueError(f"workers must be a positive int, got {workers!r}")


def _describe(cfg: Config) -> str:
    lp = ",".join(f"{k}={v}" for k, v in sorted(cfg.loss_params.items()))
    return f"{config_id(cfg)} ({cfg.dataset}/{cfg.model}/{cfg.loss}{'[' + lp + ']' if lp else ''}, seed {cfg.seed})"


def _finished(out: Path, rid: str, require_examples: bool) -> bool:
    """Whether run ``rid`` is stored in ``out`` (with its per-example file, where ``require_examples``)."""
    return result_path(out, rid).exists() and (not require_examples or has_examples(out, rid))


def run_one(cfg: Config, out: Path, progress: bool = True, stop_after_epoch: int | None = None,
            require_examples: bool = False) -> dict:
    """The result of ``cfg``: read from ``out`` if finished, else trained (resuming if possible). With
    ``require_examples`` a stored result without its per-example file is trained again (and replaced)."""
    from .train import train, world

    rid = config_id(cfg)
    out = Path(out)
    path = result_path(out, rid)
    if _finished(out, rid, require_examples):
        return json.loads(path.read_text())
    out.mkdir(parents=True, exist_ok=True)
    t0, started = time.time(), time.strftime("%Y-%m-%dT%H:%M:%S%z")
    res = train(cfg, ckpt_path=out / f"{rid}.ckpt", progress=progress, stop_after_epoch=stop_after_epoch)
    ex = res.pop("examples")
    if world()[1] != 0:  # data-parallel: rank 0 writes the result
        return {"run_id": rid, "config": cfg.to_dict(), **res, "provenance": {"device": res.get("device")}}
    res["examples"] = write_examples(out, rid, ex)  # before the JSON: a stored JSON has its file
    prov = provenance()
    prov.update(device=res.pop("device"), device_name=res.pop("device_name"), engine="single", started=started,
                finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"), wall_time=time.time() - t0)
    result = {"run_id": rid, "config": cfg.to_dict(), **res, "provenance": prov}
    atomic_write_json(path, result)
    (out / f"{rid}.ckpt").unlink(missing_ok=True)
    return result


def run_stack(cfgs: list[Config], out: Path, progress: bool = True, stop_after_epoch: int | None = None,
              require_examples: bool = False) -> list[dict]:
    """The results of ``cfgs`` (``engine: stacked``, one :func:`softgrad.stacked.stack_key`): finished ones read
    from ``out``, the others trained as stacks (:func:`softgrad.stacked.train_stack`, resuming from a stack's
    checkpoint in ``out``), each member written as an ordinary run (provenance: ``engine``, ``stack_size``;
    ``wall_time`` is the stack's wall time divided by its size). ``require_examples``: as :func:`run_one`."""
    from .stacked import train_stack

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    results = {}
    for c in cfgs:
        if _finished(out, config_id(c), require_examples):
            results[config_id(c)] = json.loads(result_path(out, config_id(c)).read_text())
    todo = [c for c in cfgs if config_id(c) not in results]
    t0, started = time.time(), time.strftime("%Y-%m-%dT%H:%M:%S%z")

    def store(part: list[Config], res: list[dict]) -> None:
        nonlocal t0
        base = provenance()
        wall, t0 = time.time() - t0, time.time()
        for c, r in zip(part, res):
            prov = dict(base)
            prov.update(device=r.pop("device"), device_name=r.pop("device_name"), engine="stacked",
                        stack_size=r.pop("stack_size"), started=started,
                        finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"), wall_time=wall / len(part))
            r["examples"] = write_examples(out, config_id(c), r.pop("examples"))  # before the JSON
            result = {"run_id": config_id(c), "config": c.to_dict(), **r, "provenance": prov}
            atomic_write_json(result_path(out, config_id(c)), result)
            results[config_id(c)] = result

    train_stack(todo, ckpt_dir=out, progress=progress, stop_after_epoch=stop_after_epoch, on_part=store)
    return [results[config_id(c)] for c in cfgs]


def _todo(configs: list[Config], out: Path, require_examples: bool = False) -> list[Config]:
    seen, todo = set(), []
    for c in configs:
        rid = config_id(c)
        if rid not in seen and not _finished(out, rid, require_examples):
            seen.add(rid)
            todo.append(c)
    return todo


def _with_file(r: dict, out: str) -> dict:
    """A worker's result with its per-example file's bytes (``_examples_npz``), for a driver that does not share
    the worker's file system (Ray)."""
    p = examples_path(Path(out), r["run_id"])
    return {**r, "_examples_npz": p.read_bytes()} if p.is_file() else r


def _one(cfg_dict: dict, out: str, require_examples: bool = False) -> dict:  # module-level: picklable
    from .config import from_dict

    return _with_file(run_one(from_dict(cfg_dict), Path(out), progress=False, require_examples=require_examples), out)


def _stack(cfg_dicts: list[dict], out: str, require_examples: bool = False) -> list[dict]:  # module-level: picklable
    from .config import from_dict

    return [_with_file(r, out) for r in run_stack([from_dict(d) for d in cfg_dicts], Path(out), progress=False,
                                                  require_examples=require_examples)]


def _units(todo: list[Config], max_stack: int | None, parts: int) -> list[tuple[str, list[Config]]]:
    """The executor's tasks: ('one', [cfg]) per single-engine config, ('stack', cfgs) per stack."""
    from .stacked import MAX_STACK, group

    units = [("one", [c]) for c in todo if c.engine != "stacked"]
    stacked = [c for c in todo if c.engine == "stacked"]
    max_stack = max_stack or int(os.environ.get("SOFTGRAD_MAX_STACK", MAX_STACK))
    return units + [("stack", s) for s in group(stacked, max_stack, parts)] if stacked else units


def run_grid(configs: list[Config], out: Path, executor: str = "local", workers: int | None = None,
             address: str | None = None, gpus_per_run: float | None = None, progress: bool = True,
             desc: str = "runs", max_stack: int | None = None, require_examples: bool = False) -> list[dict]:
    """Run (or load) ``configs`` with ``executor``; returns their results in the order given. Configs with
    ``engine: stacked`` train in stacks of at most ``max_stack`` (default :data:`softgrad.stacked.MAX_STACK`).
    ``require_examples``: a stored run without its per-example test results is trained again (:func:`run_one`).

    Raises :class:`RunFailures` after all runs were tried if any failed (the others are saved).
    """
    from tqdm.auto import tqdm

    check_executor(executor, workers)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    clean_stale_tmp(out)
    todo = _todo(configs, out, require_examples)
    failures: list[tuple[Config, BaseException]] = []
    done: dict[str, dict] = {}  # results in hand (under DDP only rank 0 writes them to disk)
    bar = tqdm(total=len(todo), desc=f"{desc} ({len(configs) - len(todo)} cached, {executor})", disable=not progress)
    if executor == "local":
        for kind, cfgs in _units(todo, max_stack, 1):
            try:
                if kind == "one":
                    done[config_id(cfgs[0])] = run_one(cfgs[0], out, progress=progress,
                                                       require_examples=require_examples)
                else:
                    done.update((r["run_id"], r) for r in run_stack(cfgs, out, progress=progress,
                                                                    require_examples=require_examples))
            except Exception as e:  # keep going; report at the end
                failures += [(c, e) for c in cfgs]
            bar.update(len(cfgs))
    elif executor == "processes":
        workers = workers or max(1, (os.cpu_count() or 2) // 2)
        _processes(_units(todo, max_stack, workers), out, workers, bar, failures, require_examples)
    else:
        _ray(_units(todo, max_stack, workers or 1), out, address, gpus_per_run, workers, bar, failures,
             require_examples)
    bar.close()
    if failures:
        for cfg, e in failures:
            print(f"run {_describe(cfg)} failed: {type(e).__name__}: {e}", file=sys.stderr)
        raise RunFailures([(config_id(c), f"{type(e).__name__}: {e}") for c, e in failures], len(configs), out)
    return [done.get(config_id(c)) or json.loads(result_path(out, config_id(c)).read_text()) for c in configs]


def _submit(submit, kind, cfgs, out, require_examples=False):
    if kind == "one":
        return submit(_one, cfgs[0].to_dict(), str(out), require_examples)
    return submit(_stack, [c.to_dict() for c in cfgs], str(out), require_examples)


def _processes(units, out, workers, bar, failures, require_examples=False):
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    # spawn: a fresh interpreter per worker (fork + torch threads can deadlock)
    with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn")) as pool:
        futs = {_submit(pool.submit, kind, cfgs, out, require_examples): cfgs for kind, cfgs in units}
        for f in as_completed(futs):
            try:
                f.result()
            except Exception as e:  # keep going; report at the end
                failures += [(c, e) for c in futs[f]]
            bar.update(len(futs[f]))


def _ray(units, out, address, gpus_per_run, workers, bar, failures, require_examples=False):
    try:
        import ray
    except ImportError as e:
        raise ImportError("executor 'ray' needs Ray: pip install 'softgrad[ray]'") from e
    if not ray.is_initialized():
        kw = {"address": address} if address else {"num_cpus": workers} if workers else {}
        ray.init(ignore_reinit_error=True, log_to_driver=False, include_dashboard=False, **kw)
    if gpus_per_run is None:
        gpus_per_run = 1.0 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0
    remote = {f: ray.remote(num_cpus=1, num_gpus=gpus_per_run, max_retries=0)(f) for f in (_one, _stack)}
    pending = {_submit(lambda f, *a: remote[f].remote(*a), kind, cfgs, out, require_examples): cfgs
               for kind, cfgs in units}
    while pending:
        done, _ = ray.wait(list(pending), num_returns=1)
        ref = done[0]
        cfgs = pending.pop(ref)
        try:
            res = ray.get(ref)
            for r in res if isinstance(res, list) else [res]:
                npz = r.pop("_examples_npz", None)
                path = result_path(out, r["run_id"])
                if npz is not None and not has_examples(out, r["run_id"]):  # before the JSON, as a worker does
                    write_examples(out, r["run_id"], npz)
                if not path.exists():  # the worker wrote elsewhere (no shared file system)
                    atomic_write_json(path, r)
        except Exception as e:  # a failed task: keep going
            failures += [(c, e) for c in cfgs]
        bar.update(len(cfgs))


def plan_params(p: dict, sweeps: list[str] | None = None, overrides: dict | None = None,
                allow_large: bool = False) -> list[tuple[str | None, list[Config]]]:
    """[(sweep name, configs)] for the selected sweeps of validated parameters ``p``; builds (and so
    validates) every config, and checks the total against :data:`softgrad.config.MAX_RUNS`. A file with
    no base settings and no sweeps (a notebook that only reads other results) plans nothing."""
    from .config import check_grid_size

    if not p["sweeps"] and not p["base"]:
        if sweeps:
            raise ConfigError(f"--sweep: this parameter file has no sweeps, got {sweeps}")
        return []  # a notebook's file with only 'extra': nothing to train
    names = sweeps or list(p["sweeps"]) or [None]
    plan = []
    for name in names:
        if name is not None and name not in p["sweeps"]:
            raise ConfigError(f"--sweep: must be one of {list(p['sweeps'])}, got {name!r}")
        sweep = p["sweeps"].get(name, {}) if name else {}
        try:
            plan.append((name, expand(p["base"], sweep, overrides)))
        except ConfigError as e:
            raise ConfigError(f"sweep {name!r}: {e}" if name else str(e)) from None
    check_grid_size(sum(len(c) for _, c in plan), allow_large)
    return plan


def run_params(params: dict | str | Path, sweeps: list[str] | None = None, overrides: dict | None = None,
               out_root: Path | None = None, progress: bool | None = None, executor: str = "local",
               workers: int | None = None, address: str | None = None, allow_large: bool = False,
               require_examples: bool = False):
    """Run the sweeps of a parameter file (or a dict with its keys); returns a DataFrame of them.

    Every config of every selected sweep is built (and so validated) before any training starts.
    ``executor``: 'local' (sequential), 'processes' or 'ray'. ``require_examples``: :func:`run_grid`'s.
    """
    import pandas as pd

    check_executor(executor, workers)  # before any training
    p = load_params(params) if isinstance(params, (str, Path)) else validate_params(params)
    progress = default_progress() if progress is None else progress
    plan = plan_params(p, sweeps, overrides, allow_large)
    out = run_dir(p["profile"], out_root)
    frames = [results_frame(run_grid(configs, out, executor=executor, workers=workers, address=address,
                                     progress=progress, desc=name or "base", require_examples=require_examples),
                               sweep=name)
              for name, configs in plan]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def notebook_params(notebook: str, profile: str, base=None, sweeps=None, extra=None) -> dict:
    """A notebook's parameters: as injected by papermill, or (all None, interactive use) read from
    ``params/<profile>/<notebook>.yaml``. Validated either way."""
    if base is None and sweeps is None and extra is None:
        return load_params(params_file(profile, notebook))
    return validate_params({"profile": profile, "base": base or {}, "sweeps": sweeps or {}, "extra": extra or {}},
                           where=f"{notebook} parameters")


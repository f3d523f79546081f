"""Where a grid of runs executes: here, in local processes, or on a Ray cluster.

    run_grid(configs, out, executor="local")                 # sequential, in this process
    run_grid(configs, out, executor="processes", workers=2)  # a local process pool
    run_grid(configs, out, executor="ray", address=None)     # Ray: local instance, or address="ray://..."

Every executor computes the same thing: :func:`softgrad.runs.run_one` per config, so the results are
identical (runs are deterministic given their config and thread count). Finished runs are read from
``out`` and not resubmitted; one failed run is reported and does not lose the others; progress is a
tqdm bar over finished runs. On Ray each run is a task asking for one GPU when the cluster has GPUs
(``gpus_per_run``); the driver writes every returned result into ``out`` (so a cluster without a shared
file system still ends with all results on the driver).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from .config import Config, config_id
from .runs import atomic_write_json, run_one

__all__ = ["EXECUTORS", "check_executor", "run_grid"]

EXECUTORS = ("local", "processes", "ray")


def check_executor(executor: str, workers: int | None = None) -> None:
    """Fail early, naming the parameter and the allowed values."""
    if executor not in EXECUTORS:
        raise ValueError(f"executor must be one of {list(EXECUTORS)}, got {executor!r}")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ValueError(f"workers must be a positive int, got {workers!r}")


def _todo(configs: list[Config], out: Path) -> list[Config]:
    seen, todo = set(), []
    for c in configs:
        rid = config_id(c)
        if rid not in seen and not (out / f"{rid}.json").exists():
            seen.add(rid)
            todo.append(c)
    return todo


def _one(cfg_dict: dict, out: str) -> dict:  # module-level: picklable for process pools and Ray
    from .config import from_dict

    return run_one(from_dict(cfg_dict), Path(out), progress=False)


def run_grid(configs: list[Config], out: Path, executor: str = "local", workers: int | None = None,
             address: str | None = None, gpus_per_run: float | None = None, progress: bool = True,
             desc: str = "runs") -> list[dict]:
    """Run (or load) ``configs`` with ``executor``; returns their results in the order given."""
    check_executor(executor, workers)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if executor == "local":
        from .runs import run_many

        return run_many(configs, out, progress=progress, desc=desc)
    todo = _todo(configs, out)
    from tqdm.auto import tqdm

    bar = tqdm(total=len(todo), desc=f"{desc} via {executor} ({len(configs) - len(todo)} cached)", disable=not progress)
    failures: list[tuple[Config, BaseException]] = []
    if executor == "processes":
        _processes(todo, out, workers or max(1, (os.cpu_count() or 2) // 2), bar, failures)
    else:
        _ray(todo, out, address, gpus_per_run, workers, bar, failures)
    bar.close()
    for cfg, e in failures:
        print(f"run {config_id(cfg)} failed: {type(e).__name__}: {e}", file=sys.stderr)
    if failures:
        raise RuntimeError(f"{len(failures)} of {len(configs)} runs failed; the other results are saved in {out}")
    import json

    return [json.loads((out / f"{config_id(c)}.json").read_text()) for c in configs]


def _processes(todo, out, workers, bar, failures):
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    # spawn: a fresh interpreter per worker (fork + torch threads can deadlock)
    with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn")) as pool:
        futs = {pool.submit(_one, c.to_dict(), str(out)): c for c in todo}
        for f in as_completed(futs):
            try:
                f.result()
            except Exception as e:  # keep going; report at the end
                failures.append((futs[f], e))
            bar.update(1)


def _ray(todo, out, address, gpus_per_run, workers, bar, failures):
    try:
        import ray
    except ImportError as e:
        raise ImportError("executor 'ray' needs Ray: pip install 'softgrad[ray]'") from e
    if not ray.is_initialized():
        kw = {"address": address} if address else {"num_cpus": workers} if workers else {}
        ray.init(ignore_reinit_error=True, log_to_driver=False, include_dashboard=False, **kw)
    if gpus_per_run is None:
        gpus_per_run = 1.0 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0
    task = ray.remote(num_cpus=1, num_gpus=gpus_per_run, max_retries=0)(_one)
    pending = {task.remote(c.to_dict(), str(out)): c for c in todo}
    while pending:
        done, _ = ray.wait(list(pending), num_returns=1)
        ref = done[0]
        cfg = pending.pop(ref)
        try:
            res = ray.get(ref)
            path = out / f"{res['run_id']}.json"
            if not path.exists():  # the worker wrote elsewhere (no shared file system)
                atomic_write_json(path, res)
        except Exception as e:  # a failed task: keep going
            failures.append((cfg, e))
        bar.update(1)

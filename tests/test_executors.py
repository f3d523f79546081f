"""Executors: processes and Ray give the same results as the sequential one; failures and reruns."""

from __future__ import annotations

import json
import os

import pytest

from softgrad import config as C
from softgrad.runs import RunFailures, run_grid

TIMING = ("epoch_time", "samples_per_s", "train_time")


def tiny(**kw) -> C.Config:
    base = dict(dataset="synthetic", synthetic_classes=5, synthetic_dim=8, synthetic_n_train=400, epochs=2,
                batch_size=64, width=32, threads=1, lr=0.1)
    return C.Config(**{**base, **kw})


GRID = [tiny(loss=loss, seed=s) for loss in ("ce", "gradient_decay") for s in (0, 1)]


def strip(res: dict) -> list[dict]:
    return [{k: v for k, v in h.items() if k not in TIMING} for h in res["history"]]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return run_grid(GRID, tmp_path_factory.mktemp("local"), executor="local", progress=False)


def test_processes_equal_local(reference, tmp_path):
    got = run_grid(GRID, tmp_path, executor="processes", workers=2, progress=False)
    assert [strip(r) for r in got] == [strip(r) for r in reference]


def test_bad_executor_and_workers_named():
    with pytest.raises(ValueError, match=r"executor must be one of \['local', 'processes', 'ray'\]"):
        run_grid(GRID, "/tmp/unused", executor="dask")
    with pytest.raises(ValueError, match="workers must be a positive int"):
        run_grid(GRID, "/tmp/unused", executor="processes", workers=0)


@pytest.fixture(scope="module")
def ray_local():
    if os.environ.get("CI"):
        import ray  # CI installs the dev extra, which has Ray: the test must run there
    else:
        ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    yield ray
    ray.shutdown()


def test_ray_equals_local_and_reruns_only_missing(ray_local, reference, tmp_path):
    got = run_grid(GRID, tmp_path, executor="ray", progress=False)
    assert [strip(r) for r in got] == [strip(r) for r in reference]
    # delete one result: a rerun recomputes only that one
    victim = tmp_path / f"{C.config_id(GRID[1])}.json"
    victim.unlink()
    stamps = {p.name: p.stat().st_mtime_ns for p in tmp_path.glob("*.json")}
    again = run_grid(GRID, tmp_path, executor="ray", progress=False)
    assert victim.exists() and strip(again[1]) == strip(reference[1])
    assert {p.name: p.stat().st_mtime_ns for p in tmp_path.glob("*.json") if p.name in stamps} == stamps


def test_ray_one_failure_keeps_the_others(ray_local, tmp_path):
    raw = tmp_path / "broken" / "MNIST" / "raw"  # corrupt data: the config validates, the run fails
    raw.mkdir(parents=True)
    for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (raw / name).write_bytes(b"not an idx file")
    good = tiny(seed=5)
    bad = C.Config(dataset="mnist10k", data_root=str(tmp_path / "broken"), epochs=1, threads=1)
    with pytest.raises(RunFailures, match="1 of 2 runs failed"):
        run_grid([bad, good], tmp_path, executor="ray", progress=False)
    assert json.loads((tmp_path / f"{C.config_id(good)}.json").read_text())["config"]["seed"] == 5

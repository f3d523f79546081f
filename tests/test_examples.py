"""Per-example test results of every run (issue 34): ``<run_id>.examples.npz`` beside the run's JSON, for both
engines; they reproduce the stored metrics, are written atomically and survive resumes; a run stored without them
is reported by name, or trained again on request, with its id unchanged."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from softgrad import config as C
from softgrad import runs as R
from softgrad import stats as ST
from softgrad import store as S
from softgrad.calibration import half_conf

TIMING = ("epoch_time", "samples_per_s", "train_time")
F16_REL = 2.0 ** -11  # float16's relative rounding error (half an ulp)


def tiny(**kw) -> C.Config:
    base = dict(dataset="synthetic", synthetic_classes=5, synthetic_dim=8, synthetic_n_train=400, epochs=2,
                batch_size=64, width=32, threads=1, lr=0.1, val_fraction=0.2, amp="off")
    base.update(kw)
    return C.Config(**base)


def strip(res: dict) -> list[dict]:
    return [{k: v for k, v in h.items() if k not in TIMING} for h in res["history"]]


def check_reproduces(res: dict, ex: dict) -> None:
    """The per-example arrays give the run's stored test metrics: accuracy exactly, NLL to float16 rounding, the
    15-bin ECE with the very bins of the stored reliability diagram (counts equal) up to float16 rounding."""
    f = res["final"]
    n = len(ex["correct"])
    assert res["examples"]["n"] == n and ex["correct"].dtype == bool
    assert ex["nll"].dtype == ex["conf"].dtype == np.float16
    assert ex["correct"].mean() == f["test_acc"]
    nll = ex["nll"].astype(np.float64)
    assert abs(nll.mean() - f["test_nll"]) <= F16_REL * np.abs(nll).mean() + 1e-7
    ones = np.ones((1, n))
    assert np.bincount(ST.conf_bins(ex["conf"]), minlength=15).tolist() == res["reliability"]["count"]
    # the stored confidences are within one float16 step (<= 4.9e-4 below 1) of the evaluated ones
    assert abs(ST.replicate_ece(ex["conf"][None], ex["correct"][None], ones)[0, 0] - f["test_ece"]) <= 2 * F16_REL
    if "ts_temperature" in f:
        nll_ts = ex["nll_ts"].astype(np.float64)
        assert abs(nll_ts.mean() - f["test_nll_ts"]) <= F16_REL * np.abs(nll_ts).mean() + 1e-7
        ece_ts = ST.replicate_ece(ex["conf_ts"][None], ex.get("correct_ts", ex["correct"])[None], ones)[0, 0]
        assert abs(ece_ts - f["test_ece_ts"]) <= 2 * F16_REL
    else:
        assert "nll_ts" not in ex and "conf_ts" not in ex


def test_single_engine_stores_examples_that_reproduce_the_metrics(tmp_path):
    cfgs = [tiny(), tiny(val_fraction=0.0, seed=1), tiny(label_noise=0.3, seed=2)]
    for cfg in cfgs:
        res = R.run_one(cfg, tmp_path, progress=False)
        rid = C.config_id(cfg)
        saved = json.loads(S.result_path(tmp_path, rid).read_text())
        assert saved["examples"] == res["examples"] and saved["examples"]["file"] == f"{rid}.examples.npz"
        ex = S.load_examples(tmp_path, rid, expect=saved["examples"])
        check_reproduces(saved, ex)
        assert (("nll_ts" in ex) == (cfg.val_fraction > 0)) and len(ex["correct"]) == 2000
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        f"{C.config_id(c)}{s}" for c in cfgs for s in (".json", ".examples.npz"))


def test_stacked_engine_stores_examples_that_reproduce_the_metrics(tmp_path):
    cfgs = [tiny(engine="stacked", seed=s, lr=lr) for s, lr in ((0, 0.1), (1, 0.05))]
    res = R.run_stack(cfgs, tmp_path / "k", progress=False)
    single = R.run_one(tiny(seed=0, lr=0.1), tmp_path / "s", progress=False)
    for c, r in zip(cfgs, res):
        saved = json.loads(S.result_path(tmp_path / "k", C.config_id(c)).read_text())
        assert saved["examples"] == r["examples"]
        check_reproduces(saved, S.load_examples(tmp_path / "k", C.config_id(c), expect=saved["examples"]))
    a = S.load_examples(tmp_path / "k", C.config_id(cfgs[0]))
    b = S.load_examples(tmp_path / "s", single["run_id"])
    assert np.mean(a["correct"] == b["correct"]) > 0.99  # the same run up to rounding (test_stacked's tolerance)
    assert np.abs(a["nll"].astype(float) - b["nll"].astype(float)).max() < 1e-2
    many = S.load_examples_many(tmp_path / "k", [C.config_id(c) for c in cfgs])
    assert set(many) == {"correct", "nll", "conf", "nll_ts", "conf_ts"} and many["nll"].shape == (2, 2000)


@pytest.mark.parametrize("engine", ["single", "stacked"])
def test_a_finished_checkpoint_without_examples_is_evaluated_again(tmp_path, engine):
    """A kill after the last epoch's checkpoint resumes with the examples it holds; a checkpoint written before
    they were kept (no ``examples``) makes the resumed run evaluate its final model again: the same arrays."""
    cfgs = [tiny(engine=engine, seed=s) for s in (0, 1)][: 1 if engine == "single" else 2]
    go = (lambda out, **kw: [R.run_one(cfgs[0], out, progress=False, **kw)]) if engine == "single" else \
        (lambda out, **kw: R.run_stack(cfgs, out, progress=False, **kw))
    ref = go(tmp_path / "ref")
    for variant in ("kept", "old"):
        out = tmp_path / variant
        with pytest.raises(KeyboardInterrupt):
            go(out, stop_after_epoch=cfgs[0].epochs)
        (ck,) = out.glob("*.ckpt")
        state = torch.load(ck, weights_only=False)
        holders = [state] if engine == "single" else state["members"]
        assert all(h["examples"] is not None for h in holders)
        if variant == "old":
            for h in holders:
                del h["examples"]
            torch.save(state, ck)
        got = go(out)
        for r, g in zip(ref, got):
            assert strip(g) == strip(r) and g["examples"] == r["examples"]  # same content hash
            want = S.examples_path(tmp_path / "ref", r["run_id"]).read_bytes()
            assert S.examples_path(out, g["run_id"]).read_bytes() == want
        assert not list(out.glob("*.ckpt")) and not list(out.glob("*.tmp*"))


def test_examples_are_written_atomically_and_before_the_result(tmp_path, monkeypatch):
    ex = {"correct": np.array([True, False, True]), "nll": np.array([0.1, 2.0, 0.3]),
          "conf": half_conf(np.array([0.9, 0.6, 0.7]))}
    # a writer that fails mid-write leaves nothing
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError):
        S.write_examples(tmp_path, "abc", ex)
    monkeypatch.setattr(os, "fsync", real)
    assert list(tmp_path.iterdir()) == []
    # a killed writer's temporary file is removed on the next start, a live one's kept
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f"abc.examples.npz.tmp{dead.pid}"
    live = tmp_path / f"abd.examples.npz.tmp{os.getpid()}"
    stale.write_bytes(b"PK\x03")
    live.write_bytes(b"PK\x03")
    assert S.clean_stale_tmp(tmp_path) == [stale] and live.exists()
    live.unlink()
    # equal arrays give equal bytes (fixed zip timestamps) and the pointer's content hash
    p1 = S.write_examples(tmp_path, "abc", ex)
    b1 = S.examples_path(tmp_path, "abc").read_bytes()
    assert S.write_examples(tmp_path, "abc", b1) == p1 and S.examples_path(tmp_path, "abc").read_bytes() == b1
    got = S.load_examples(tmp_path, "abc", expect=p1)
    assert got["correct"].tolist() == [True, False, True] and got["nll"].dtype == np.float16
    with pytest.raises(ValueError, match="does not match"):
        S.load_examples(tmp_path, "abc", expect={**p1, "sha256": "0" * 16})
    # a kill between the per-example file and the JSON: the run is not finished; the rerun completes it
    cfg = tiny(epochs=1)
    out = tmp_path / "runs"
    monkeypatch.setattr(R, "atomic_write_json", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        R.run_one(cfg, out, progress=False)
    monkeypatch.undo()
    rid = C.config_id(cfg)
    assert S.has_examples(out, rid) and not S.result_path(out, rid).exists() and (out / f"{rid}.ckpt").exists()
    res = R.run_one(cfg, out, progress=False)
    check_reproduces(res, S.load_examples(out, rid, expect=res["examples"]))
    assert sorted(p.name for p in out.iterdir()) == [f"{rid}.examples.npz", f"{rid}.json"]


def test_a_run_stored_without_examples_is_reported_or_trained_again(tmp_path):
    cfgs = [tiny(), tiny(engine="stacked", seed=3)]
    first = R.run_grid(cfgs, tmp_path, progress=False)
    for c in cfgs:  # as a run stored before per-example results were kept
        rid = C.config_id(c)
        S.examples_path(tmp_path, rid).unlink()
        saved = json.loads(S.result_path(tmp_path, rid).read_text())
        del saved["examples"]
        S.atomic_write_json(S.result_path(tmp_path, rid), saved)
    again = R.run_grid(cfgs, tmp_path, progress=False)  # reused as stored: nothing trained
    assert all("examples" not in r for r in again)
    with pytest.raises(S.MissingExamples, match=f"run {C.config_id(cfgs[0])}.*require_examples=True"):
        S.load_examples(tmp_path, C.config_id(cfgs[0]))
    fresh = R.run_grid(cfgs, tmp_path, progress=False, require_examples=True)
    for c, a, b in zip(cfgs, first, fresh):
        assert b["run_id"] == a["run_id"] == C.config_id(c)  # ids unchanged
        assert strip(b) == strip(a) and b["examples"] == a["examples"]
        assert S.has_examples(tmp_path, b["run_id"])


def test_half_conf_keeps_every_confidence_in_its_bin():
    rng = np.random.default_rng(0)
    edges = np.arange(1, 16) / 15
    c = np.concatenate([rng.random(20_000), edges, edges + 1e-5, edges - 1e-5, edges + 2e-4, edges - 2e-4, [np.nan]])
    h = half_conf(torch.tensor(c, dtype=torch.float32))
    c32 = torch.tensor(c, dtype=torch.float32).double().numpy()  # what calibration() bins
    assert h.dtype == np.float16
    assert np.array_equal(ST.conf_bins(h), ST.conf_bins(c32))
    ok = ~np.isnan(c32)
    step = np.spacing(np.abs(h[ok])).astype(np.float64)
    assert np.all(np.abs(h[ok].astype(np.float64) - c32[ok]) <= step)  # at most one float16 step
    assert (h[ok].astype(np.float64) != c32[ok].astype(np.float16).astype(np.float64)).sum() > 0  # some moved


def test_a_worker_returns_its_examples_for_a_driver_without_the_workers_files(tmp_path):
    """Ray without a shared file system: the worker's result carries its file's bytes, the driver writes them."""
    cfg = tiny(epochs=1)
    r = R._one(cfg.to_dict(), str(tmp_path / "worker"))
    data = r.pop("_examples_npz")
    assert data == S.examples_path(tmp_path / "worker", r["run_id"]).read_bytes()
    assert S.write_examples(tmp_path / "driver", r["run_id"], data) == r["examples"]
    assert S.examples_path(tmp_path / "driver", r["run_id"]).read_bytes() == data

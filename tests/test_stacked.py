"""The stacked engine (softgrad.stacked): member k equals the single-engine run of its config within a stated
tolerance, does not depend on K or its slot, is stored as an ordinary run, and resumes after kill -9.

Tolerance (measured on the CPU, 2026-12-06, AMD EPYC, torch 2.14.1, threads 1): on these short runs stacked and
single agree to float32 rounding (largest metric difference ~1e-6; 2026-12-07: AdamW 2.4e-7, MNIST-1D's CNN and MLP
under SGD and AdamW <= 1.1e-6), which the tests hold to EQ_ABS. Over the
quick pool's full length (digits 60 epochs, MNIST-10k 20 epochs, with and without 40% label noise; 12 members of
a temperature pool) 7 of 12 members still agree to <= 1e-6 in every final metric; in the others rounding is
amplified by training as between two CPUs (README: it acts like a new seed): test accuracy within 5e-3 (10 of
2,000 test samples), test NLL within 5e-3. Bitwise equality is not possible: bmm is not mm.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from softgrad import config as C
from softgrad import losses as L
from softgrad import runs as R
from softgrad.losses.core import per_sample
from softgrad.stacked import group, stack_key, train_stack
from softgrad.store import results_frame
from softgrad.train import train

EQ_ABS = 1e-4  # every compared metric, stacked vs single, on these runs (measured: <= 1e-6)
TIMING = ("epoch_time", "samples_per_s", "train_time")
COMPARED = ("test_acc", "test_nll", "test_loss", "test_ece", "val_acc", "val_nll", "train_acc", "train_loss",
            "weight_dist", "train_loss_running", "grad_norm", "lr_now", "ts_temperature", "test_nll_ts", "opt_steps")

KNOBS = {"ce": {}, "temperature": {"beta": [0.5, 2.0, 1.0]}, "gradient_decay": {"beta": [0.1, 3.0, 1.0]},
         "sgt": {"alpha": [0.3, 0.7, 1.0]}, "as_softmax": {"delta": [0.2, 0.5, 0.9]}}


#: the device the tests train on: the CPU, or CUDA from the device script (softgrad.gpu), in float32 there
DEVICE = os.environ.get("SOFTGRAD_TEST_DEVICE", "cpu")


def tiny(**kw) -> C.Config:
    base = dict(dataset="synthetic", synthetic_classes=5, synthetic_dim=8, synthetic_n_train=400, epochs=3,
                batch_size=64, width=32, threads=1, lr=0.1, val_fraction=0.2, device=DEVICE, amp="off")
    base.update(kw)
    return C.Config(**base)


def members(method: str, **kw) -> list[C.Config]:
    """Three runs of one method that differ in seed, lr, weight decay and the knob."""
    out = []
    for k, (seed, lr, wd) in enumerate([(0, 0.05, 5e-4), (1, 0.2, 0.0), (2, 0.1, 1e-3)]):
        d = dict(seed=seed, lr=lr, weight_decay=wd, **kw)
        if method == "noisy":
            d.update(loss="ce", head_bias=False, noise_alpha=[0.05, 0.3, 0.1][k])
        else:
            d.update(loss=method, loss_params={p: v[k] for p, v in KNOBS[method].items()})
        out.append(tiny(**d))
    return out


def assert_close(a: dict, b: dict, tol: float = EQ_ABS) -> None:
    assert len(a["history"]) == len(b["history"])
    for ha, hb in zip(a["history"], b["history"]):
        assert set(ha) == set(hb), set(ha) ^ set(hb)
        for k in COMPARED:
            if k in ha:
                assert abs(ha[k] - hb[k]) <= tol, (k, ha["epoch"], ha[k], hb[k])
    assert a["per_sample"]["index"] == b["per_sample"]["index"]
    assert a["step_loss"]["step"] == b["step_loss"]["step"]


@pytest.mark.parametrize("method", [*KNOBS, "noisy"])
def test_member_equals_the_single_engine_run(method):
    cfgs = members(method, label_noise=0.2, track_samples=5, log_every=3, eval_every=2)
    stacked = train_stack([c.replace(engine="stacked") for c in cfgs], progress=False)
    for c, s in zip(cfgs, stacked):
        assert_close(s, train(c, progress=False))
        assert s["stack_size"] >= 1


@pytest.mark.parametrize("method", ["ce", "temperature", "noisy"])
def test_adamw_member_equals_the_single_engine_run(method):
    cfgs = [c.replace(optimizer="adamw", lr=lr) for c, lr in
            zip(members(method, label_noise=0.2, track_samples=5, log_every=3, eval_every=2), ADAMW_LRS)]
    stacked = train_stack([c.replace(engine="stacked") for c in cfgs], progress=False)
    for c, s in zip(cfgs, stacked):
        assert_close(s, train(c, progress=False))


ADAMW_LRS = (0.005, 0.02, 0.01)


def mnist1d(model: str, optimizer: str = "sgd", **kw) -> list[C.Config]:
    """Two runs on MNIST-1D (its 4,000 training samples, 2 epochs) that differ in seed, lr, weight decay, β."""
    lrs = ADAMW_LRS if optimizer == "adamw" else (0.02, 0.05)
    return [C.Config(dataset="mnist1d", model=model, optimizer=optimizer, epochs=2, batch_size=100, val_fraction=0.2,
                     threads=1, device=DEVICE, amp="off", seed=s, lr=lr, weight_decay=wd, loss="temperature",
                     loss_params={"beta": b}, **kw)
            for s, lr, wd, b in zip((0, 1), lrs, (5e-4, 0.0), (0.5, 2.0))]


@pytest.mark.parametrize("model, optimizer", [("cnn1d", "sgd"), ("cnn1d", "adamw")])
def test_mnist1d_member_equals_the_single_engine_run(model, optimizer):
    pytest.importorskip("mnist1d")
    cfgs = mnist1d(model, optimizer, label_noise=0.2, track_samples=5, log_every=7)
    for c, s in zip(cfgs, train_stack([c.replace(engine="stacked") for c in cfgs], progress=False)):
        assert_close(s, train(c, progress=False))


@pytest.mark.parametrize("k, stride, pad", [(3, 2, 1), (5, 2, 1), (3, 1, 0), (2, 3, 2), (4, 4, 0)])
def test_conv1d_columns_are_the_convolution(k, stride, pad):
    """The im2col GEMM (softgrad.stacked._Im2col1d) is F.conv1d, forward and backward, in float64."""
    from softgrad.stacked import _Im2col1d
    torch.manual_seed(0)
    K, B, c, L, o = 3, 4, 5, 17, 6
    x = torch.randn(K, B, c, L, dtype=torch.float64, requires_grad=True)
    W = torch.randn(K, o, c, k, dtype=torch.float64, requires_grad=True)
    b = torch.randn(K, o, dtype=torch.float64, requires_grad=True)
    xp = torch.nn.functional.pad(x.transpose(2, 3), (0, 0, pad, pad))
    Wc = W.permute(0, 3, 2, 1).reshape(K, k * c, o)  # Wc[k, j·c + ci, o] = W[k, o, ci, j]
    T = (L + 2 * pad - k) // stride + 1
    got = torch.baddbmm(b.unsqueeze(1), _Im2col1d.apply(xp, k, stride), Wc).view(K, B, T, o).transpose(2, 3)
    want = torch.stack([torch.nn.functional.conv1d(x[i], W[i], b[i], stride, pad) for i in range(K)])
    torch.testing.assert_close(got, want)
    g = torch.randn_like(want)
    grads = torch.autograd.grad(got, (x, W, b), g)
    torch.testing.assert_close(grads, torch.autograd.grad(want, (x, W, b), g))


def test_a_misread_model_fails_before_training(monkeypatch):
    import softgrad.stacked as S
    plan = S._plan
    monkeypatch.setattr(S, "_plan", lambda *a: [s for s in plan(*a) if s[0] != "relu"])  # as if ReLU were unknown
    with pytest.raises(ValueError, match="engine: 'stacked' does not reproduce model 'mlp'"):
        train_stack([c.replace(engine="stacked") for c in members("ce")], progress=False)


def test_warmup_schedules_per_member():
    cfgs = [tiny(loss="gradient_decay", warmup="beta", warmup_epochs=2.0, seed=s, loss_params={"beta": b})
            for s, b in [(0, 0.5), (1, 2.0)]]
    for c, s in zip(cfgs, train_stack([c.replace(engine="stacked") for c in cfgs], progress=False)):
        assert_close(s, train(c, progress=False))


def test_lenet5_member_equals_the_single_engine_run():
    pytest.importorskip("torchvision")
    base = dict(dataset="mnist10k", model="lenet5", epochs=1, batch_size=256, val_fraction=0.9, lr=0.05)
    try:
        cfgs = [C.Config(**base, seed=s, threads=1, loss="temperature", loss_params={"beta": b}, device=DEVICE)
                for s, b in [(0, 0.5), (1, 2.0)]]
        single = [train(c, progress=False) for c in cfgs]
    except FileNotFoundError as e:
        pytest.skip(f"mnist10k not available: {e}")
    for s, one in zip(train_stack([c.replace(engine="stacked") for c in cfgs], progress=False), single):
        assert_close(s, one)


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_member_does_not_depend_on_stack_size_or_slot(optimizer):
    cfgs = [c.replace(engine="stacked", optimizer=optimizer) for c in members("temperature")]
    full = train_stack(cfgs, progress=False)
    alone = train_stack([cfgs[1]], progress=False)[0]
    reordered = train_stack(cfgs[::-1], progress=False)
    assert_close(alone, full[1], tol=1e-6)
    for a, b in zip(full, reordered[::-1]):
        assert_close(a, b, tol=1e-6)


def test_per_row_loss_parameters_are_the_scalar_formula_row_by_row(loss_path):
    torch.manual_seed(0)
    z, t = torch.randn(12, 7, dtype=torch.float64), torch.randint(0, 7, (12,))
    for name, knob in KNOBS.items():
        for p, vals in knob.items():
            m = L.LOSSES[name]
            col = torch.tensor([vals[i % 3] for i in range(12)], dtype=torch.float64)[:, None]
            got = per_sample(m, z, t, None, -100, {**m.defaults(), p: col})
            want = torch.stack([per_sample(m, z[i:i + 1], t[i:i + 1], None, -100, {**m.defaults(), p: vals[i % 3]})[0]
                                for i in range(12)])
            torch.testing.assert_close(got, want)
            zg = z.clone().requires_grad_()
            per_sample(m, zg, t, None, -100, {**m.defaults(), p: col}).sum().backward()
            for i in range(12):
                zi = z[i:i + 1].clone().requires_grad_()
                per_sample(m, zi, t[i:i + 1], None, -100, {**m.defaults(), p: vals[i % 3]}).sum().backward()
                torch.testing.assert_close(zg.grad[i], zi.grad[0])


def test_engine_validation_and_run_ids():
    cfg = tiny()
    assert C.config_id(cfg) == C.config_id(cfg.replace(engine="single"))  # the field leaves single ids alone
    assert C.config_id(cfg) != C.config_id(cfg.replace(engine="stacked"))
    with pytest.raises(C.ConfigError, match="engine: 'stacked' cannot train AS-Speed runs"):
        tiny(engine="stacked", loss="as_softmax", as_speed=True)
    with pytest.raises(C.ConfigError, match=r"engine: must be one of \['single', 'stacked'\]"):
        tiny(engine="vmap")
    with pytest.raises(C.ConfigError, match=r"engine: 'stacked' trains models \['mlp', 'lenet5', 'cnn1d'\]"):
        C.Config(dataset="mnist10k", model="vgg_small", engine="stacked")
    assert tiny(engine="stacked", optimizer="adamw").optimizer == "adamw"


def test_grouping_by_method_and_task():
    cfgs = members("temperature") + members("sgt") + [tiny(seed=9, width=16)]
    stacked = [c.replace(engine="stacked") for c in cfgs]
    groups = group(stacked, max_size=2)
    assert [len(g) for g in groups] == [2, 1, 2, 1, 1]
    assert all(len({stack_key(c) for c in g}) == 1 for g in groups)
    assert [len(g) for g in group(stacked[:3], parts=2)] == [2, 1]
    many = [stacked[0].replace(seed=s) for s in range(175)]  # balanced: no idle worker at the end
    assert [len(g) for g in group(many, max_size=64, parts=2)] == [44, 44, 44, 43]
    assert [len(g) for g in group(many[:48], max_size=8, parts=2)] == [8] * 6  # chapter 06's stacks
    assert [len(g) for g in group(many[:14], max_size=8, parts=2)] == [7, 7]
    assert [len(g) for g in group(many[:5], max_size=64, parts=1)] == [5]
    assert [c.seed for g in group(many, max_size=64, parts=2) for c in g] == list(range(175))
    adamw = [c.replace(optimizer="adamw") for c in stacked[:3]]  # (momentum is SGD's: validation refuses it here)
    assert [len(g) for g in group(adamw)] == [3] and all(c.optimizer == "adamw" for g in group(adamw) for c in g)
    assert [len(g) for g in group([c.replace(momentum=m) for c, m in zip(stacked[:3], (0.9, 0.0, 0.5))])] == [1, 1, 1]


def test_run_grid_stores_members_as_ordinary_runs(tmp_path):
    cfgs = [c.replace(engine="stacked") for c in members("sgt")] + [tiny(seed=5)]
    res = R.run_grid(cfgs, tmp_path, progress=False)
    for c, r in zip(cfgs, res):
        saved = json.loads((tmp_path / f"{C.config_id(c)}.json").read_text())
        assert saved["config"] == c.to_dict() and saved["run_id"] == r["run_id"]
        assert saved["provenance"]["engine"] == c.engine
        assert {"git_commit", "device", "wall_time", "torch"} <= set(saved["provenance"])
    assert saved["provenance"]["engine"] == "single"
    assert json.loads((tmp_path / f"{C.config_id(cfgs[0])}.json").read_text())["provenance"]["stack_size"] == 3
    frame = results_frame(res)
    assert set(frame.engine) == {"stacked", "single"} and frame.final.sum() == 4
    assert not list(tmp_path.glob("*.ckpt"))
    again = R.run_grid(cfgs, tmp_path, progress=False)  # finished: read back
    assert [a["run_id"] for a in again] == [r["run_id"] for r in res]


def strip(res: dict) -> list[dict]:
    return [{k: v for k, v in h.items() if k not in TIMING} for h in res["history"]]


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_resume_equals_uninterrupted(tmp_path, optimizer):
    cfgs = [c.replace(engine="stacked", epochs=4, optimizer=optimizer) for c in members("noisy")]
    ref = R.run_stack(cfgs, tmp_path / "ref", progress=False)
    with pytest.raises(KeyboardInterrupt):
        R.run_stack(cfgs, tmp_path / "v", progress=False, stop_after_epoch=2)
    assert len(list((tmp_path / "v").glob("stack-*.ckpt"))) == 1 and not list((tmp_path / "v").glob("*.json"))
    got = R.run_stack(cfgs, tmp_path / "v", progress=False)
    assert [strip(a) for a in got] == [strip(b) for b in ref]
    assert not list((tmp_path / "v").glob("*.ckpt"))


def test_kill_9_then_rerun_equals_an_uninterrupted_stack(tmp_path):
    p = tmp_path / "p.yaml"
    p.write_text("profile: k\nbase:\n  dataset: synthetic\n  synthetic_n_train: 2000\n  width: 16\n  batch_size: 50\n"
                 "  threads: 1\n  epochs: 6\n  engine: stacked\n  val_fraction: 0.2\n  loss: sgt\n"
                 "  loss_params: {alpha: [0.3, 0.8]}\n  seeds: [0, 1]\n")
    run = [sys.executable, "-m", "softgrad", "run", "--quiet", str(p)]
    ref, victim = tmp_path / "ref", tmp_path / "victim"
    assert subprocess.run(run, env={**os.environ, "SOFTGRAD_OUTPUTS": str(ref)}, capture_output=True,
                          timeout=300).returncode == 0
    runs = victim / "k" / "runs"
    kills = 0
    for _ in range(3):  # kill right after each new stack checkpoint
        seen = {f.name: f.stat().st_mtime_ns for f in runs.glob("*.ckpt")} if runs.exists() else {}
        proc = subprocess.Popen(run, env={**os.environ, "SOFTGRAD_OUTPUTS": str(victim)},
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline:
            now = {}
            for f in runs.glob("*.ckpt") if runs.exists() else []:
                with contextlib.suppress(FileNotFoundError):
                    now[f.name] = f.stat().st_mtime_ns
            if now and now != seen:
                break
            time.sleep(0.002)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
    assert kills >= 2
    assert subprocess.run(run, env={**os.environ, "SOFTGRAD_OUTPUTS": str(victim)}, capture_output=True,
                          timeout=300).returncode == 0
    got = {f.name: strip(json.loads(f.read_text())) for f in sorted(runs.glob("*.json"))}
    want = {f.name: strip(json.loads(f.read_text())) for f in sorted((ref / "k" / "runs").glob("*.json"))}
    assert got == want and len(got) == 4
    examples = {f.name: f.read_bytes() for f in runs.glob("*.examples.npz")}  # each member's per-example results
    assert examples == {f.name: f.read_bytes() for f in (ref / "k" / "runs").glob("*.examples.npz")}
    assert len(examples) == 4 and not [f for f in runs.iterdir() if f.suffix != ".json" and f.name not in examples]

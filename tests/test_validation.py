"""Bad input never gets past validation, the CLI answers it with one line, and interrupted work leaves nothing.

Classes of bad input (each with its own cases): non-finite numbers, duplicate and non-string keys, YAML 1.1
booleans as names, empty sweeps/grids/files, `base: 0`, conflicting seed/seeds, settings that cannot apply
to the dataset/model/device, oversized grids, bad `--set` overrides. Then: a run that fails inside
training is named and the others are kept (exit 1); kill -9 at any moment + rerun equals an uninterrupted
sweep; stale temporary files are cleaned; the thread count is part of the run id; the bf16 autocast path
runs on CPU for every loss and model.
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
from softgrad import store as S

TINY = ("dataset: synthetic\n  synthetic_classes: 4\n  synthetic_dim: 8\n  synthetic_n_train: 300\n  width: 16\n"
        "  batch_size: 50\n  threads: 1")


def cli(*args, env=None, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "softgrad", *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, cwd=cwd, timeout=300)


def one_line_error(out: subprocess.CompletedProcess) -> str:
    """The CLI's answer to user error: exit 2, one stderr line, no traceback."""
    assert out.returncode == 2, (out.returncode, out.stdout, out.stderr)
    assert "Traceback" not in out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), out.stderr
    return lines[0]


BAD_FILES = {
    # non-finite numbers, wherever a float is read
    "nan lr": ("base: {lr: .nan}", "lr: must be a finite number"),
    "inf weight decay": ("base: {weight_decay: .inf}", "weight_decay: must be a finite number"),
    "-inf warm-up start": ("base: {warmup_start: -.inf}", "warmup_start: must be a finite number"),
    "nan val_fraction": ("base: {val_fraction: .nan}", "val_fraction: must be a finite number"),
    "nan noise_std": ("base: {noise_std: .NaN}", "noise_std: must be a finite number"),
    "inf synthetic separation": ("base: {synthetic_separation: .inf}", "synthetic_separation: must be a finite"),
    "nan in a sweep list": ("base: {}\nsweeps: {a: {lr: [0.1, .nan]}}", "sweep 'a': lr: must be a finite"),
    "nan loss parameter": ("base: {loss: temperature, loss_params: {beta: .nan}}", "beta"),
    "inf loss parameter": ("base: {loss: gradient_decay, loss_params: {beta: .inf}}", "loss_params.beta: must be a finite"),
    # duplicate keys, anywhere
    "duplicate base key": ("base:\n  lr: 0.1\n  lr: 0.2\n", "duplicate key 'lr' at line 3"),
    "duplicate sweep": ("base: {}\nsweeps:\n  a: {lr: 0.1}\n  a: {lr: 0.2}\n", "duplicate key 'a'"),
    "duplicate top level": ("base: {}\nbase: {lr: 0.1}\n", "duplicate key 'base'"),
    # non-string keys and YAML 1.1 booleans as names
    "on/off sweep names": ("base: {}\nsweeps:\n  on: {lr: 0.1}\n  off: {lr: 0.2}\n", "sweep names must be strings"),
    "numeric sweep name": ("base: {}\nsweeps:\n  1: {lr: 0.1}\n", "sweep names must be strings"),
    "non-string config key": ("base: {1: 2}", "keys must be strings"),
    "non-string loss_params key": ("base: {loss_params: {yes: 2}}", "loss_params: keys must be strings"),
    # empty sweeps, grids and files
    "empty list": ("base: {loss: temperature, loss_params: {beta: []}}", "loss_params.beta: an empty list"),
    "empty seeds": ("base: {seeds: []}", "seed: an empty list"),
    "empty zip": ("base: {zip: {lr: [], seed: []}}", "zip: the lists must not be empty"),
    "empty file": ("", "the parameter file is empty"),
    "comment-only file": ("# nothing here\n", "the parameter file is empty"),
    "base: 0": ("base: 0", "base must be a mapping"),
    "base a string": ("base: digits\nsweeps: {a: {lr: 0.1}}", "base must be a mapping"),
    "duplicate key beside a merge": ("c: &x {lr: 0.1}\nbase:\n  <<: *x\n  epochs: 1\n  epochs: 2\n", "duplicate key 'epochs'"),
    "sweep with no value": ("base: {}\nsweeps:\n  a:\n", "sweep 'a': must be a mapping"),
    "sweeps a list": ("sweeps: [a, b]", "sweeps must be a mapping"),
    # seed and seeds together
    "seed and seeds": ("base: {seed: 1, seeds: [1, 2]}", "seed: give 'seed' or 'seeds'"),
    "seed and seeds in a sweep": ("base: {}\nsweeps: {a: {seed: 0, seeds: [3]}}", "give 'seed' or 'seeds'"),
    # settings that cannot apply
    "conv net on vectors": ("base: {dataset: synthetic, model: lenet5}", "model: 'lenet5' needs image inputs"),
    "resnet on vectors": ("base: {dataset: teacher, model: resnet18}", "needs image inputs"),
    "crop on vectors": ("base: {dataset: synthetic, crop_padding: 4}", "crop_padding: image augmentation cannot"),
    "flip on vectors": ("base: {dataset: synthetic, hflip: true}", "hflip: image augmentation cannot"),
    "lenet5 on 8x8 digits": ("base: {dataset: digits, model: lenet5}", "cannot take 'digits' inputs"),
    "crop wider than image": ("base: {dataset: digits, crop_padding: 8}", "crop_padding: must be smaller"),
    "1-d conv net on images": ("base: {dataset: digits, model: cnn1d}", "model: 'cnn1d' needs vector inputs"),
    "momentum with adamw": ("base: {optimizer: adamw}\nsweeps: {a: {momentum: [0.9, 0.0]}}",
                            "sweep 'a': momentum: applies to optimizer 'sgd' only"),
    "nesterov with adamw": ("base: {optimizer: adamw, nesterov: true}", "nesterov: applies to optimizer 'sgd' only"),
    "mnist1d samples per class": ("base: {dataset: mnist1d, mnist1d_samples: 4999}",
                                  "mnist1d_samples: must be a multiple of 10"),
    "mnist1d test split too large": ("base: {dataset: mnist1d, mnist1d_samples: 100, mnist1d_test_samples: 100}",
                                     "mnist1d_test_samples: must be in [1, 99]"),
    "seed above generator range": ("base: {seed: 18446744073709551616}", "seed: must be in [0, 4294967295]"),
    "negative seed": ("base: {seeds: [0, -1]}", "seed: must be in"),
    "unknown amp": ("base: {amp: fp8}", "amp: must be one of ['auto', 'bf16', 'off']"),
    "bool amp": ("base: {amp: true}", "amp: must be of type str"),
    # grids
    "grid too large": ("base: {lr: [" + ", ".join(f"0.{i + 1}" for i in range(9)) + "], seed: "
                       + str(list(range(300))) + "}", "2700 runs exceeds the limit of 2000"),
}
if not torch.cuda.is_available():
    BAD_FILES["cuda on a CPU machine"] = ("base: {device: cuda}", "device: 'cuda' is not available on this machine")


def test_anchors_and_merge_keys_are_valid_parameter_files(tmp_path):
    """YAML 1.1 anchors, aliases and merge keys: the mapping's own keys override what is merged in."""
    p = tmp_path / "anchors.yaml"
    p.write_text("base: &common {dataset: digits, model: mlp, epochs: 1, lr: 0.1}\n"
                 "sweeps:\n  a:\n    <<: *common\n    epochs: 2\n    lr: [0.1, 0.2]\n"
                 "  b: {<<: *common, loss: temperature, loss_params: {beta: 2.0}}\n")
    got = C.load_params(p)
    assert got["sweeps"]["a"] == {"dataset": "digits", "model": "mlp", "epochs": 2, "lr": [0.1, 0.2]}
    assert got["sweeps"]["b"]["loss"] == "temperature" and got["sweeps"]["b"]["epochs"] == 1


@pytest.mark.parametrize("section", ["base", "sweeps", "extra"])
def test_a_section_with_no_value_is_an_empty_mapping(tmp_path, section):
    """Decision: 'extra:' with every entry commented out means no entries, as '{}' would."""
    p = tmp_path / "empty_section.yaml"
    body = {"base": "base: {dataset: digits}\n", "sweeps": "sweeps: {a: {lr: 0.1}}\n", "extra": "extra: {}\n"}
    body[section] = f"{section}:\n  # lr: 0.1\n"
    p.write_text("profile: t\n" + "".join(body.values()))
    assert C.load_params(p)[section] == {}


@pytest.mark.parametrize("text,match", list(BAD_FILES.values()), ids=list(BAD_FILES))
def test_bad_parameter_file_rejected_by_validator(tmp_path, text, match):
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    with pytest.raises(C.ConfigError) as e:
        C.load_params(p)
    assert match in str(e.value)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("name", ["nan lr", "duplicate base key", "on/off sweep names", "empty zip", "empty file",
                                  "seed and seeds", "conv net on vectors", "grid too large"])
def test_cli_answers_bad_files_with_one_line_and_trains_nothing(tmp_path, name):
    text, match = BAD_FILES[name]
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    for cmd in ("validate", "run"):
        line = one_line_error(cli(cmd, p, env={"SOFTGRAD_OUTPUTS": str(tmp_path / "o")}))
        assert match in line
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("override,match", [
    ("lr=.nan", "lr: must be a finite number"),
    ("loss_params.beta=.inf", "beta"),
    ("seed=-3", "seed: must be in"),
    ("lerning_rate=0.1", "unknown key(s) ['lerning_rate']"),
    ("epochs=", "epochs: must be of type int"),
    ("noequals", "--set expects key=value"),
    ("lr=[0.1", "--set lr: not a valid YAML value"),
    ("model=lenet5", "model: 'lenet5' needs image inputs"),
])
def test_cli_bad_overrides(tmp_path, override, match):
    p = tmp_path / "p.yaml"
    p.write_text(f"base:\n  {TINY}\n  epochs: 1\n  loss: temperature\n")
    line = one_line_error(cli("run", p, "--set", override, env={"SOFTGRAD_OUTPUTS": str(tmp_path / "o")}))
    assert match in line
    assert not (tmp_path / "o").exists()


def test_cli_debug_shows_the_traceback(tmp_path):
    p = tmp_path / "p.yaml"
    p.write_text("base: {lr: .nan}")
    out = cli("--debug", "validate", p)
    assert out.returncode != 0 and "Traceback" in out.stderr and "ConfigError" in out.stderr


def test_grid_limit_can_be_lifted_explicitly(tmp_path):
    p = tmp_path / "big.yaml"
    p.write_text(BAD_FILES["grid too large"][0])
    out = cli("validate", "--allow-large-grid", p)
    assert out.returncode == 0 and "2700 runs" in out.stdout


def test_seed_spellings_override_consistently():
    # a later level wins whichever spelling each level uses
    assert [c.seed for c in C.expand({"seeds": [0, 1]}, {"seed": 3})] == [3]
    assert [c.seed for c in C.expand({"seed": 0}, {"seeds": [1, 2]})] == [1, 2]
    assert [c.seed for c in C.expand({"seeds": [0, 1]}, {}, C.parse_set(["seed=5"]))] == [5]
    assert [c.seed for c in C.expand({"seeds": [0, 1]}, {}, C.parse_set(["seeds=[7, 8]"]))] == [7, 8]
    with pytest.raises(C.ConfigError, match="--set seed: give 'seed' or 'seeds'"):
        C.expand({}, {}, {"seed": 1, "seeds": [2]})


def test_file_without_base_or_sweeps_trains_nothing(tmp_path):
    p = tmp_path / "nb.yaml"
    p.write_text("profile: t\nextra: {points: 3}\n")
    out = cli("run", p, env={"SOFTGRAD_OUTPUTS": str(tmp_path / "o")})
    assert out.returncode == 0 and "nothing to train" in out.stdout
    assert not (tmp_path / "o").exists()


# ------------------------------------------------------------------ failures inside training


def test_cli_run_failure_names_the_run_keeps_the_others_and_exits_1(tmp_path):
    raw = tmp_path / "broken" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (raw / name).write_bytes(b"not an idx file")
    p = tmp_path / "p.yaml"
    p.write_text(f"profile: t\nbase:\n  {TINY}\n  epochs: 1\nsweeps:\n  good: {{}}\n"
                 f"  bad: {{dataset: mnist10k, data_root: '{tmp_path / 'broken'}'}}\n")
    out = cli("run", "--quiet", p, env={"SOFTGRAD_OUTPUTS": str(tmp_path / "o")})
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert "1 of 1 runs failed" in out.stderr and "ValueError" in out.stderr and "magic" in out.stderr
    assert len(list((tmp_path / "o" / "t" / "runs").glob("*.json"))) == 1  # the good run is saved


# ------------------------------------------------------------------ interruption


def strip(res: dict) -> list[dict]:
    timing = ("epoch_time", "samples_per_s", "train_time")
    return [{k: v for k, v in h.items() if k not in timing} for h in res["history"]]


def results(folder: Path) -> dict:
    return {p.name: strip(json.loads(p.read_text())) for p in sorted(folder.glob("*.json"))}


def _progress(runs: Path) -> dict:
    """What a sweep has written so far: each checkpoint's and result's name and mtime (no temporaries)."""
    files = [f for f in runs.glob("*") if f.suffix in (".ckpt", ".json")] if runs.exists() else []
    out = {}
    for f in files:
        with contextlib.suppress(FileNotFoundError):  # a finished run deletes its checkpoint
            out[f.name] = f.stat().st_mtime_ns
    return out


def test_kill_9_at_any_moment_then_rerun_equals_an_uninterrupted_sweep(tmp_path):
    p = tmp_path / "p.yaml"
    p.write_text(f"profile: k\nbase:\n  {TINY}\n  epochs: 4\n  loss: gradient_decay\n"
                 f"  loss_params: {{beta: [0.3, 3.0]}}\n  seeds: [0, 1]\n")
    ref, victim = tmp_path / "ref", tmp_path / "victim"
    assert cli("run", "--quiet", p, env={"SOFTGRAD_OUTPUTS": str(ref)}).returncode == 0
    env = {**os.environ, "SOFTGRAD_OUTPUTS": str(victim)}
    runs = victim / "k" / "runs"
    # Kill moments follow the sweep's own progress, not the clock (a fixed delay misses on a fast machine):
    # once during start-up, then each time right after the process wrote something new, an epoch's
    # checkpoint (mid-run) or a finished run's result (between runs). 16 epochs in all, so 5 kills fit.
    kills = 0
    for stage in range(6):
        before = _progress(runs)
        proc = subprocess.Popen([sys.executable, "-m", "softgrad", "run", "--quiet", str(p)], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        if stage == 0:
            time.sleep(0.3)  # start-up: nothing written yet
        else:
            while proc.poll() is None and _progress(runs) == before and time.monotonic() < deadline:
                time.sleep(0.002)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
    # a killed writer leaves <name>.tmp<pid>; simulate one mid-write for certain (the pid is dead now)
    runs.mkdir(parents=True, exist_ok=True)
    (runs / f"deadbeef.json.tmp{proc.pid}").write_text('{"half": ')
    assert kills >= 4
    assert cli("run", "--quiet", p, env={"SOFTGRAD_OUTPUTS": str(victim)}).returncode == 0
    assert results(runs) == results(ref / "k" / "runs")
    examples = {x.name: x.read_bytes() for x in runs.glob("*.examples.npz")}  # each run's per-example results
    assert examples == {x.name: x.read_bytes() for x in (ref / "k" / "runs").glob("*.examples.npz")}
    assert sorted(x.name for x in runs.iterdir()) == sorted([*results(runs), *examples])  # no .tmp, no .ckpt left
    assert len(examples) == len(results(runs))


def test_clean_stale_tmp_removes_only_dead_writers(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f"a.json.tmp{dead.pid}"
    live = tmp_path / f"b.json.tmp{os.getpid()}"
    keep = tmp_path / "c.json"
    for f in (stale, live, keep):
        f.write_text("x")
    assert S.clean_stale_tmp(tmp_path) == [stale]
    assert not stale.exists() and live.exists() and keep.exists()


def test_failed_atomic_write_leaves_nothing(tmp_path):
    with pytest.raises(TypeError):
        S.atomic_write_json(tmp_path / "x.json", {"bad": object()})
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------ run id, threads, mixed precision


def test_thread_count_is_part_of_the_run_id(monkeypatch):
    monkeypatch.delenv("SOFTGRAD_THREADS", raising=False)  # the override (softgrad.goldens) would equalise them
    one, two = C.Config(threads=1), C.Config(threads=2)
    assert C.config_id(one) != C.config_id(two)
    default = C.Config(threads=0)
    assert C.config_id(default) == C.config_id(C.Config(threads=C.effective_threads(default)))
    assert C.config_id(C.Config(data_root="/a")) == C.config_id(C.Config(data_root="/b"))  # where, not what


def test_lock_hash_is_recorded_in_provenance():
    prov = S.provenance()
    assert prov["lock_sha256"] == S.lock_hash() and len(prov["lock_sha256"]) == 16


MODEL_SHAPES = {"mlp": (1, 8, 8), "lenet5": (1, 28, 28), "vgg_small": (3, 32, 32), "resnet20": (3, 32, 32),
                "resnet18": (3, 32, 32), "mlp1d": (40,), "cnn1d": (40,)}


@pytest.mark.parametrize("model", list(MODEL_SHAPES))
def test_bf16_autocast_on_cpu_every_loss_and_model(model):
    """The trainer's mixed-precision branch (autocast to bf16, losses in float32) on CPU."""
    from softgrad.models import build_model

    shape = MODEL_SHAPES[model]
    torch.manual_seed(0)
    net = build_model(C.Config(model=model, width=8, dataset="mnist1d" if len(shape) == 1 else "mnist10k"), shape, 10)
    x, y = torch.rand(4, *shape), torch.arange(4)
    for name in L.LOSSES:
        net.zero_grad()
        with torch.autocast("cpu", torch.bfloat16):
            logits = net(x)
        assert logits.dtype == torch.bfloat16
        loss = L.make_loss(name)(logits.float(), y)
        loss.backward()
        assert torch.isfinite(loss), name
        assert all(torch.isfinite(p.grad).all() for p in net.parameters() if p.grad is not None), name


@pytest.mark.parametrize("kw", [dict(loss="gradient_decay", loss_params={"beta": 0.3}),
                                dict(loss="as_softmax", loss_params={"delta": 0.3}, as_speed=True),
                                dict(noise_alpha=0.1, head_bias=False),
                                dict(dataset="digits", model="resnet20", batch_size=128)])
def test_trainer_bf16_branch_runs_on_cpu(kw):
    from softgrad.train import train

    cfg = C.Config(**{**dict(dataset="synthetic", synthetic_n_train=300, synthetic_dim=8, width=16, epochs=1,
                             threads=1, amp="bf16"), **kw})
    res = train(cfg, progress=False)
    assert all(torch.isfinite(torch.tensor(res["final"][k])) for k in ("train_loss", "test_nll", "test_acc"))
    off = train(cfg.replace(amp="off"), progress=False)
    assert res["final"]["train_loss"] != off["final"]["train_loss"]  # autocast really changed the arithmetic


def test_mnist10k_test_fraction_sets_the_split_and_only_then_the_id(monkeypatch):
    """A larger MNIST-10k test split (chapter 06 buys precision with it): the stratified split holds that share
    of each class out, the default leaves every earlier run id unchanged, and (0, 1) is the allowed range."""
    from softgrad.config import Config, ConfigError, config_id
    from softgrad.train import dataset_options

    c = Config()
    assert dataset_options(c) == {"test_fraction": 0.2}
    with_field = [config_id(c), config_id(Config(dataset="digits", lr=0.1))]
    orig = Config.to_dict  # the default: the ids the runs had before the field existed
    monkeypatch.setattr(Config, "to_dict", lambda self: {k: v for k, v in orig(self).items()
                                                         if k != "mnist10k_test_fraction"})
    assert with_field == [config_id(c), config_id(Config(dataset="digits", lr=0.1))]
    monkeypatch.undo()
    assert config_id(c.replace(mnist10k_test_fraction=0.3)) != config_id(c)
    assert config_id(c.replace(dataset="digits", mnist10k_test_fraction=0.3)) == config_id(c.replace(dataset="digits"))
    for bad in (0.0, 1.0, 1.5):
        with pytest.raises(ConfigError, match=r"mnist10k_test_fraction: must be in \(0.0, 1.0\)"):
            c.replace(mnist10k_test_fraction=bad)
    import torch

    from softgrad.data import stratified_split

    y = torch.arange(10).repeat(100)
    tr, te = stratified_split(y, 0.3, 0)
    assert len(te) == 300 and torch.bincount(y[te]).tolist() == [30] * 10

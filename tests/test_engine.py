"""Engine: data formats, augmentation, calibration, config validation, determinism, resume, atomicity."""

import json
import pickle
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from softgrad import config as C
from softgrad import data as D
from softgrad import runs as R
from softgrad.train import calibration, train

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


def tiny(**kw) -> C.Config:
    base = dict(dataset="synthetic", synthetic_classes=5, synthetic_dim=8, synthetic_n_train=400, epochs=3,
                batch_size=64, width=32, threads=1, lr=0.1)
    base.update(kw)
    return C.Config(**base)


# ------------------------------------------------------------------ data formats, written by the tests


def write_idx(path: Path, arr: np.ndarray):
    with open(path, "wb") as f:
        f.write(bytes([0, 0, 8, arr.ndim]) + b"".join(struct.pack(">I", s) for s in arr.shape))
        f.write(arr.astype(np.uint8).tobytes())


def test_mnist10k_reads_idx_and_splits_stratified(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (200, 28, 28))
    labels = np.repeat(np.arange(10), 20)
    write_idx(raw / "t10k-images-idx3-ubyte", imgs)
    write_idx(raw / "t10k-labels-idx1-ubyte", labels)
    ds = D.load_dataset("mnist10k", root=tmp_path, download=False)
    assert ds.x_train.shape == (160, 1, 28, 28) and ds.x_test.shape == (40, 1, 28, 28)
    assert torch.bincount(ds.y_test).tolist() == [4] * 10  # stratified
    # pixel values survive the round trip
    i = int(torch.nonzero(ds.y_train == labels[0])[0])
    all_x = torch.from_numpy(imgs).float() / 255
    assert any(torch.equal(ds.x_train[i, 0], all_x[j]) for j in range(200))
    assert ds.x_train.max() <= 1 and ds.x_train.min() >= 0


def test_read_idx_rejects_bad_magic(tmp_path):
    p = tmp_path / "bad"
    p.write_bytes(b"\x00\x00\x09\x01" + struct.pack(">I", 1) + b"\x00")
    with pytest.raises(ValueError, match="not an unsigned-byte idx file"):
        D.read_idx(p)


def test_missing_data_error_names_path_variable_and_download(tmp_path, monkeypatch):
    import torchvision

    def boom(*a, **k):
        raise RuntimeError("no network")

    monkeypatch.setattr(torchvision.datasets, "MNIST", boom)
    with pytest.raises(D.DataUnavailable) as e:
        D.load_dataset("mnist10k", root=tmp_path / "nowhere")
    msg = str(e.value)
    assert "nowhere" in msg and "SOFTGRAD_DATA" in msg and "download failed" in msg


def test_cifar_pickle_and_svhn_mat_loaders(tmp_path, monkeypatch):
    # CIFAR-10 python pickles and SVHN .mat files in the layout torchvision reads; torchvision checks
    # the official md5s, which test files cannot match, so those checks are patched out.
    import torchvision.datasets as tvd
    import torchvision.datasets.cifar as tv_cifar

    monkeypatch.setattr(tv_cifar, "check_integrity", lambda *a, **k: True)

    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for name in ["data_batch_%d" % i for i in range(1, 6)] + ["test_batch"]:
        with open(folder / name, "wb") as f:
            pickle.dump({"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8), "labels": [0, 1, 2, 3]}, f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [str(i) for i in range(10)]}, f)
    monkeypatch.setattr(tvd.CIFAR10, "_check_integrity", lambda self: True)
    ds = D.load_dataset("cifar10", root=tmp_path, download=False)
    assert ds.x_train.shape == (20, 3, 32, 32) and ds.x_test.shape == (4, 3, 32, 32)
    assert ds.y_train.tolist()[:4] == [0, 1, 2, 3] and ds.num_classes == 10

    from scipy.io import savemat

    svhn = tmp_path / "SVHN"
    svhn.mkdir()
    for split in ("train", "test"):
        savemat(svhn / f"{split}_32x32.mat", {"X": rng.integers(0, 256, (32, 32, 3, 6), dtype=np.uint8),
                                              "y": np.array([[10], [1], [2], [3], [4], [5]])})
    monkeypatch.setattr(tvd.SVHN, "_check_integrity", lambda self: True)
    ds = D.load_dataset("svhn", root=tmp_path, download=False)
    assert ds.x_train.shape == (6, 3, 32, 32) and ds.y_train.tolist() == [0, 1, 2, 3, 4, 5]  # label 10 -> 0


@pytest.mark.skipif(not (SHARED / "MNIST" / "raw" / "t10k-images-idx3-ubyte").exists(), reason="../shared/data absent")
def test_real_mnist10k_from_shared_data():
    ds = D.load_dataset("mnist10k", root=SHARED, download=False)
    assert ds.x_train.shape[0] + ds.x_test.shape[0] == 10_000
    counts = torch.bincount(torch.cat([ds.y_train, ds.y_test])).tolist()
    assert counts == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]  # shared/data/README.md


def test_digits_and_synthetic():
    d = D.load_dataset("digits")
    assert d.x_train.shape[1:] == (1, 8, 8) and d.x_train.shape[0] + d.x_test.shape[0] == 1797
    s1 = D.load_dataset("synthetic", classes=1000, dim=16, n_train=3000, seed=3)
    s2 = D.load_dataset("synthetic", classes=1000, dim=16, n_train=3000, seed=3)
    assert torch.equal(s1.x_train, s2.x_train) and s1.y_train.max() < 1000
    t = D.load_dataset("teacher", classes=7, dim=10, n_train=100)
    assert t.num_classes == 7 and t.y_train.max() < 7


# ------------------------------------------------------------------ augmentation and batching


def test_augment_keeps_shapes_and_content():
    g = torch.Generator().manual_seed(0)
    x = torch.arange(2 * 3 * 6 * 6, dtype=torch.float32).reshape(2, 3, 6, 6) + 1
    out = D.augment(x, g, crop_padding=2, hflip=True)
    assert out.shape == x.shape
    # every non-zero output pixel is a pixel of the same image (crop/flip move, never mix, samples)
    for b in range(2):
        vals = set(out[b][out[b] > 0].tolist())
        assert vals <= set(x[b].flatten().tolist())
    # zero padding = identity crop with no flip reproduces the input
    assert torch.equal(D.augment(x, g, 0, False), x)


def test_batcher_covers_each_sample_once_and_keeps_labels():
    x = torch.arange(10).float()[:, None]
    y = torch.arange(10)
    seen = []
    for xb, yb, idx in D.Batcher(x, y, 3, seed=1).epoch(0):
        assert torch.equal(xb[:, 0].long(), yb) and torch.equal(yb, idx)
        seen += idx.tolist()
    assert sorted(seen) == list(range(10))
    a = [i.tolist() for *_, i in D.Batcher(x, y, 3, seed=1).epoch(2)]
    b = [i.tolist() for *_, i in D.Batcher(x, y, 3, seed=1).epoch(2)]
    assert a == b


# ------------------------------------------------------------------ calibration (hand computed)


def test_ece_mce_hand_computed():
    # 15 bins. conf 0.95,0.95 (both right) -> bin 15: acc 1, conf .95, gap .05
    # conf 0.55 (wrong), 0.55 (right) -> bin 9 (0.5333, 0.6]: acc .5, conf .55, gap .05
    # conf 0.30 (wrong) -> bin 5 (0.2667, 0.3333]: acc 0, conf .3, gap .3
    conf = torch.tensor([0.95, 0.95, 0.55, 0.55, 0.30])
    correct = torch.tensor([1, 1, 0, 1, 0])
    ece, mce = calibration(conf, correct)
    assert ece == pytest.approx((2 * 0.05 + 2 * 0.05 + 1 * 0.3) / 5)
    assert mce == pytest.approx(0.3)


# ------------------------------------------------------------------ configuration


BAD = [
    ({"model": "transformer"}, r"model: must be one of \['mlp'"),
    ({"lr": -1.0}, r"lr: must be in \(0.0, inf\]"),
    ({"epochs": "ten"}, r"epochs: must be of type int"),
    ({"epochs": 2.5}, r"epochs: must be of type int"),
    ({"head_bias": 1}, r"head_bias: must be of type bool"),
    ({"lerning_rate": 0.1}, r"unknown key\(s\) \['lerning_rate'\]"),
    ({"loss": "focal"}, r"loss: must be one of \["),
    ({"loss": "sgt", "loss_params": {"alpha": 2.0}}, r"loss_params: alpha must be in \(0.0, 1.0\]"),
    ({"loss": "ce", "loss_params": {"beta": 1.0}}, r"loss_params: unknown parameter"),
    ({"warmup": "beta", "loss": "ce"}, r"warmup: 'beta' warm-up needs loss 'gradient_decay'"),
    ({"as_speed": True}, r"as_speed: AS-Speed needs a loss with exact zero-loss samples.*as_softmax"),
    ({"noise_alpha": 0.1}, r"head_bias: Noisy Softmax .* needs a bias-free head"),
    ({"dataset": "imagenet"}, r"dataset: must be one of"),
    ({"val_fraction": 0.95}, r"val_fraction: must be in \[0.0, 0.9\]"),
]


@pytest.mark.parametrize("diff,match", BAD)
def test_bad_config_rejected(diff, match):
    with pytest.raises(C.ConfigError, match=match):
        C.expand(diff)


@pytest.mark.parametrize(
    "text,match",
    [
        ("base: {epochs: [1, 'x']}", r"sweep|base: epochs: must be of type int"),
        ("bse: {}", r"unknown top-level key\(s\) \['bse'\]"),
        ("sweeps: {a: {loss: sgt, loss_params: {alpha: 0}}}", r"sweep 'a': loss_params: alpha must be in"),
        ("sweeps: {a: [1, 2]}", r"sweep 'a': must be a mapping"),
        ("profile: ../etc", r"profile must be a simple name"),
        ("base: {epochs: 1\n", r"not valid YAML"),
    ],
)
def test_bad_parameter_files_rejected(tmp_path, text, match):
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    with pytest.raises(C.ConfigError, match=match):
        C.load_params(p)


def test_grid_expansion_and_loss_params_lists():
    cfgs = C.expand({"epochs": 1, "seeds": [0, 1]}, {"loss": "gradient_decay", "loss_params": {"beta": [0.1, 1.0, 10.0]}})
    assert len(cfgs) == 6 and {c.loss_params["beta"] for c in cfgs} == {0.1, 1.0, 10.0}
    assert len({C.config_id(c) for c in cfgs}) == 6
    # a sweep that switches loss does not inherit the base's loss parameters, even when it gives its own
    assert C.expand({"loss": "sgt", "loss_params": {"alpha": 0.5}}, {"loss": "ce"})[0].loss_params == {}
    got = C.expand({"loss": "temperature", "loss_params": {"beta": 2.0}}, {"loss": "sgt", "loss_params": {"alpha": 0.5}})
    assert got[0].loss_params == {"alpha": 0.5}
    # the same loss: parameters merge
    got = C.expand({"loss": "sgt", "loss_params": {"alpha": 0.5}}, {"loss_params": {"label_smoothing": 0.1}})
    assert got[0].loss_params == {"alpha": 0.5, "label_smoothing": 0.1}


def test_cli_validate_fails_before_training(tmp_path):
    p = tmp_path / "p.yaml"
    p.write_text("profile: t\nbase: {epochs: 1}\nsweeps:\n  ok: {loss: ce}\n  bad: {loss: sgt, loss_params: {alpha: 3}}\n")
    out = subprocess.run([sys.executable, "-m", "softgrad", "run", str(p)], capture_output=True, text=True,
                         env={**__import__("os").environ, "SOFTGRAD_OUTPUTS": str(tmp_path / "o")})
    assert out.returncode == 2 and "alpha must be in (0.0, 1.0]" in out.stderr
    assert not (tmp_path / "o").exists()  # nothing trained, nothing written


@pytest.mark.parametrize("path", sorted((ROOT / "params").glob("*/*.yaml")), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_shipped_parameter_file_validates(path):
    p = C.load_params(path)
    assert p["profile"] == path.parent.name


# ------------------------------------------------------------------ determinism, resume, atomicity

TIMING = ("epoch_time", "samples_per_s", "train_time")


def strip(history):
    return [{k: v for k, v in h.items() if k not in TIMING} for h in history]


@pytest.mark.parametrize("kw", [{}, {"loss": "as_softmax", "loss_params": {"delta": 0.3}, "as_speed": True},
                                {"noise_alpha": 0.3, "head_bias": False},
                                {"loss": "gradient_decay", "warmup": "beta", "warmup_epochs": 2.0,
                                 "loss_params": {"beta": 1.0}}])
def test_same_seed_same_metrics_and_resume_equals_uninterrupted(tmp_path, kw):
    cfg = tiny(**kw)
    a = train(cfg, progress=False)
    b = train(cfg, progress=False)
    assert strip(a["history"]) == strip(b["history"])
    ck = tmp_path / "run.ckpt"
    with pytest.raises(KeyboardInterrupt):
        train(cfg, ckpt_path=ck, progress=False, stop_after_epoch=1)
    assert ck.exists()
    c = train(cfg, ckpt_path=ck, progress=False)
    assert strip(c["history"]) == strip(a["history"])


def test_run_one_caches_and_leaves_no_partial_file_after_crash(tmp_path):
    cfg = tiny(epochs=2)
    out = tmp_path / "runs"
    with pytest.raises(KeyboardInterrupt):
        R.run_one(cfg, out, progress=False, stop_after_epoch=1)
    rid = C.config_id(cfg)
    assert not (out / f"{rid}.json").exists() and (out / f"{rid}.ckpt").exists()
    assert not list(out.glob("*.tmp*"))
    res = R.run_one(cfg, out, progress=False)
    assert (out / f"{rid}.json").exists() and not (out / f"{rid}.ckpt").exists()
    saved = json.loads((out / f"{rid}.json").read_text())
    assert saved["config"] == cfg.to_dict() and saved["provenance"]["torch"] == torch.__version__
    assert {"git_commit", "device", "wall_time", "torchvision"} <= set(saved["provenance"])
    # a finished run is read back, not recomputed
    (out / f"{rid}.json").write_text(json.dumps({**saved, "marker": 1}))
    assert R.run_one(cfg, out, progress=False)["marker"] == 1
    assert res["history"][-1]["epoch"] == 2


def broken_mnist_root(tmp_path) -> Path:
    """A data root whose MNIST files are corrupt: configs validate, the run fails when it loads them."""
    raw = tmp_path / "broken" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (raw / name).write_bytes(b"not an idx file")
    return tmp_path / "broken"


def test_run_grid_keeps_going_after_a_failure_and_names_it(tmp_path):
    good = tiny(epochs=1)
    bad = C.Config(dataset="mnist10k", data_root=str(broken_mnist_root(tmp_path)), epochs=1, threads=1)
    with pytest.raises(R.RunFailures, match=rf"1 of 2 runs failed.*run {C.config_id(bad)}: ValueError"):
        R.run_grid([bad, good], tmp_path / "runs", progress=False)
    assert (tmp_path / "runs" / f"{C.config_id(good)}.json").exists()


def test_as_speed_takes_fewer_optimizer_steps():
    base = dict(loss="as_softmax", loss_params={"delta": 0.5}, epochs=3, lr=0.2)
    plain = train(tiny(**base), progress=False)
    fast = train(tiny(**base, as_speed=True, as_speed_kmax=3), progress=False)
    assert fast["final"]["total_opt_steps"] < plain["final"]["total_opt_steps"]
    assert max(h.get("accum_k", 1) for h in fast["history"]) > 1


def test_models_build_and_run():
    from softgrad.models import build_model

    for name, shape in [("mlp", (1, 8, 8)), ("lenet5", (1, 28, 28)), ("vgg_small", (3, 32, 32)),
                        ("resnet20", (3, 32, 32)), ("resnet18", (3, 32, 32))]:
        m = build_model(C.Config(model=name, width=16), shape, 10)
        assert m(torch.zeros(2, *shape)).shape == (2, 10)
    m = build_model(C.Config(head_bias=False, head_init_scale=0.0 + 3.0), (4,), 3)
    assert m.head.bias is None


def test_epoch_zero_row_is_the_initial_model_and_reliability_matches_ece():
    res = train(tiny(epochs=2), progress=False)
    h0 = res["history"][0]
    assert h0["epoch"] == 0 and h0["weight_dist"] == 0.0 and "epoch_time" not in h0
    assert [h["epoch"] for h in res["history"]] == [0, 1, 2]
    rel = res["reliability"]
    n = sum(rel["count"])
    ece = sum(k / n * abs(a - c) for k, a, c in zip(rel["count"], rel["acc"], rel["conf"]) if k)
    assert ece == pytest.approx(res["final"]["test_ece"], abs=1e-5)


def test_zip_varies_keys_together_and_combines_with_grid():
    cfgs = C.expand({"loss": "temperature", "seed": [0, 1]},
                    {"zip": {"loss_params.beta": [0.5, 2.0], "lr": [0.4, 0.025]}})
    got = sorted((c.seed, c.loss_params["beta"], c.lr) for c in cfgs)
    assert got == [(0, 0.5, 0.4), (0, 2.0, 0.025), (1, 0.5, 0.4), (1, 2.0, 0.025)]
    for bad, msg in [({"zip": {"lr": [0.1, 0.2], "epochs": [1]}}, "same length"),
                     ({"zip": {"lrr": [0.1]}}, "unknown key 'lrr'"), ({"zip": []}, "non-empty mapping")]:
        with pytest.raises(C.ConfigError, match=msg):
            C.expand({}, bad)


def test_as_speed_window_state_machine():
    """softgrad.train.ASSpeed: k is set at a window's first micro-batch from its zero-loss count, never
    decreases, grows by at most 1 per window; an optimizer step closes the window; off, every micro-batch is
    its own window."""
    import types

    from softgrad.train import ASSpeed

    on = types.SimpleNamespace(as_speed=True, as_speed_lambda=1.0, as_speed_kmax=3)
    state = {"k": 1, "remaining": 0}
    s = ASSpeed(on, state)
    y = torch.zeros(8, dtype=torch.long)
    all_zero = torch.zeros(8)  # every sample at zero loss: k_raw is huge, k grows by 1 per window
    assert s.window(all_zero, y, 8, 1) == 2 and state == {"k": 2, "remaining": 2}
    assert s.window(all_zero, y, 8, 1) == 2  # mid-window: unchanged
    assert not s.consumed() and s.consumed() and state["remaining"] == 0
    assert s.window(all_zero, y, 8, 1) == 3 and s.window(torch.ones(8), y, 8, 1) == 3
    s.close()
    assert s.window(torch.ones(8), y, 8, 1) == 3 and s.k == 3  # never decreases
    off = ASSpeed(types.SimpleNamespace(as_speed=False, as_speed_lambda=1.0, as_speed_kmax=3), {"k": 1, "remaining": 0})
    assert off.window(None, y, 8, 1) == 1 and off.consumed() and off.k == 1

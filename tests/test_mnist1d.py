"""MNIST-1D (Greydanus & Kobak, ICML 2024): the generated set is the authors' frozen one, cached and deterministic;
their MLP and CNN are built as in their notebooks/models.py; AdamW trains them on the single engine as Adam does.
"""

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from softgrad import config as C
from softgrad import data as D
from softgrad.data import Batcher
from softgrad.models import build_model, model_fits

ROOT = Path(__file__).resolve().parents[1]
FROZEN = ROOT.parent / "shared" / "data" / "MNIST1D" / "mnist1d_frozen.npz"


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """The default set, generated into a fresh data root (and read back from its cache)."""
    root = tmp_path_factory.mktemp("data")
    with pytest.MonkeyPatch.context() as mp:  # no fallback cache of the repository's (.cache/MNIST1D) is read
        mp.setattr(D, "REPO_ROOT", tmp_path_factory.mktemp("repo"))
        return root, D.mnist1d_arrays(root)


def test_default_generation_is_the_authors_frozen_set(generated):
    if not FROZEN.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{FROZEN} is missing (CI provides ../shared/data/MNIST1D/mnist1d_frozen.npz)")
        pytest.skip("../shared/data/MNIST1D/mnist1d_frozen.npz absent (the authors' frozen MNIST-1D copy)")
    _, a = generated
    with np.load(FROZEN) as f:
        for k in ("x", "x_test", "t"):
            assert a[k].shape == f[k].shape and np.abs(a[k] - f[k]).max() <= 1e-12, k
        for k in ("y", "y_test"):
            assert np.array_equal(a[k], f[k]), k
        ds = D.load_dataset("mnist1d", root=generated[0])
        assert torch.equal(ds.x_train, torch.from_numpy(f["x"]).float())  # float32 of the raw values, no rescale
        assert torch.equal(ds.y_test, torch.from_numpy(f["y_test"]).long())


def test_generation_is_cached_deterministic_and_leaves_global_rngs_alone(generated, tmp_path):
    root, a = generated
    cached = sorted((root / "MNIST1D").glob("generated_*.npz"))
    assert len(cached) == 1 and not list((root / "MNIST1D").glob("*.tmp*"))
    assert all(np.array_equal(a[k], v) for k, v in D.mnist1d_arrays(root).items())  # read back from the cache
    ds = D.load_dataset("mnist1d", root=root)
    assert (ds.x_train.shape, ds.x_test.shape, ds.num_classes, ds.x_train.dtype) == ((4000, 40), (1000, 40), 10,
                                                                                       torch.float32)
    assert abs(float(torch.cat([ds.x_train, ds.x_test]).double().mean())) < 1e-6  # the generator's standardisation
    import random

    np.random.seed(7), random.seed(7)
    D.mnist1d_arrays(tmp_path, samples=60, test_samples=20, seed=3)  # generated (a new root): seeds the globals
    after = np.random.rand(), random.random()
    np.random.seed(7), random.seed(7)
    assert after == (np.random.rand(), random.random())


def test_larger_sets_split_as_asked_and_are_new_draws(generated, tmp_path):
    _, a = generated
    b = D.mnist1d_arrays(tmp_path, samples=5000, test_samples=3000)  # same draw, another split point
    assert np.array_equal(np.concatenate([b["x"], b["x_test"]]), np.concatenate([a["x"], a["x_test"]]))
    assert b["x"].shape == (2000, 40) and b["y_test"].shape == (3000,)
    c = D.mnist1d_arrays(tmp_path, samples=6000, test_samples=1000)  # same seed, more samples: not a superset
    assert c["x"].shape == (5000, 40) and np.bincount(np.concatenate([c["y"], c["y_test"]])).tolist() == [600] * 10
    assert not np.allclose(c["x"][:10], a["x"][:10])
    with pytest.raises(ValueError, match="multiple of 10"):
        D.mnist1d_arrays(tmp_path, samples=105)


def test_a_read_only_data_root_is_never_written(tmp_path, monkeypatch):
    ro = tmp_path / "shared"
    (ro / "MNIST1D").mkdir(parents=True)
    fallback = tmp_path / "repo"
    monkeypatch.setattr(D, "REPO_ROOT", fallback)
    ro.joinpath("MNIST1D").chmod(0o555)
    try:
        D.mnist1d_arrays(ro, samples=40, test_samples=10)
        assert list((ro / "MNIST1D").iterdir()) == []  # even as root, who may write anywhere
        assert len(list((fallback / ".cache" / "MNIST1D").glob("generated_*.npz"))) == 1
    finally:
        ro.joinpath("MNIST1D").chmod(0o755)


# ------------------------------------------------------------------ configuration


def test_config_fields_validated_and_kept_out_of_ids_at_their_defaults():
    assert D.dataset_shape("mnist1d") == ((40,), 10)
    with pytest.raises(C.ConfigError, match=r"^mnist1d_samples: must be a multiple of 10"):
        C.Config(dataset="mnist1d", mnist1d_samples=5001)
    with pytest.raises(C.ConfigError, match=r"^mnist1d_test_samples: must be in \[1, 4999\]"):
        C.Config(dataset="mnist1d", mnist1d_test_samples=5000)
    with pytest.raises(C.ConfigError, match=r"^mnist1d_seed: must be in"):
        C.Config(dataset="mnist1d", mnist1d_seed=-1)
    assert C.Config(dataset="mnist1d", mnist1d_samples=14000, mnist1d_test_samples=10000)  # a 10,000-sample test split
    base = C.config_id(C.Config())
    assert C.config_id(C.Config(mnist1d_samples=6000)) == base  # not mnist1d: the fields change nothing
    m = C.Config(dataset="mnist1d")
    assert C.config_id(m) == C.config_id(m.replace(mnist1d_samples=5000))
    assert len({C.config_id(m), C.config_id(m.replace(mnist1d_samples=6000)), C.config_id(m.replace(mnist1d_seed=1)),
                C.config_id(m.replace(mnist1d_test_samples=2000))}) == 4


@pytest.mark.parametrize("kw, match", [
    (dict(dataset="mnist1d", model="lenet5"), r"^model: 'lenet5' needs image inputs .* allowed for it: "
                                               r"\['mlp', 'mlp1d', 'cnn1d'\]"),
    (dict(dataset="digits", model="cnn1d"), r"^model: 'cnn1d' needs vector inputs \(N, L\) but dataset 'digits'"),
    (dict(dataset="digits", model="mlp1d"), r"^model: 'mlp1d' needs vector inputs"),
    (dict(dataset="synthetic", synthetic_dim=2, model="cnn1d"), r"^model: 'cnn1d' cannot take 'synthetic' vectors of "
                                                                r"shape \(2,\) .* allowed for it: \['mlp', 'mlp1d'\]"),
    (dict(optimizer="adamw", momentum=0.0), r"^momentum: applies to optimizer 'sgd' only; with optimizer 'adamw' "
                                            r"leave it at its default 0.9"),
    (dict(optimizer="adamw", nesterov=True), r"^nesterov: applies to optimizer 'sgd' only"),
])
def test_what_cannot_apply_is_refused(kw, match):
    with pytest.raises(C.ConfigError, match=match):
        C.Config(**kw)


def test_model_fits_declares_the_1d_models_inputs():
    assert model_fits("cnn1d", 256, (40,)) and model_fits("mlp1d", 256, (3,)) and model_fits("cnn1d", 256, (3,))
    assert not model_fits("cnn1d", 256, (2,)) and not model_fits("cnn1d", 256, (1, 28, 28))
    assert not model_fits("mlp1d", 256, (1, 8, 8)) and not model_fits("lenet5", 256, (40,))


# ------------------------------------------------------------------ the authors' models


class AuthorsMLP(nn.Module):  # greydanus/mnist1d notebooks/models.py MLPBase(40, 10), hidden 100, written out
    def __init__(self):
        super().__init__()
        self.linear1, self.linear2, self.linear3 = nn.Linear(40, 100), nn.Linear(100, 100), nn.Linear(100, 10)

    def forward(self, x):
        h = self.linear1(x).relu()
        h = h + self.linear2(h).relu()
        return self.linear3(h)


class AuthorsCNN(nn.Module):  # ConvBase(10): channels 25, linear_in 125
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv1d(1, 25, 5, stride=2, padding=1)
        self.conv2 = nn.Conv1d(25, 25, 3, stride=2, padding=1)
        self.conv3 = nn.Conv1d(25, 25, 3, stride=2, padding=1)
        self.linear = nn.Linear(125, 10)

    def forward(self, x):
        h = self.conv3(self.conv2(self.conv1(x.view(-1, 1, x.shape[-1])).relu()).relu()).relu()
        return self.linear(h.view(h.shape[0], -1))


@pytest.mark.parametrize("model, ref, params", [("mlp1d", AuthorsMLP, 15210), ("cnn1d", AuthorsCNN, 5210)])
def test_models_are_the_authors_with_their_initialisation(model, ref, params):
    torch.manual_seed(3)
    theirs = ref()
    torch.manual_seed(3)
    ours = build_model(C.Config(dataset="mnist1d", model=model), (40,), 10)
    assert sum(p.numel() for p in ours.parameters()) == params  # the authors' printed counts
    assert all(torch.equal(a, b) for a, b in zip(ours.parameters(), theirs.parameters()))  # same layers, same order
    x = torch.randn(6, 40)
    assert torch.allclose(ours(x), theirs(x), atol=1e-6)
    assert isinstance(ours.head, nn.Linear) and ours.head.in_features == (100 if model == "mlp1d" else 125)
    nf = build_model(C.Config(dataset="mnist1d", model=model, head_bias=False, noise_alpha=0.1), (40,), 10)
    assert type(nf.head).__name__ == "NoisySoftmaxHead"  # the last layer is the one every experiment can replace
    assert nf(x, torch.arange(6) % 10).shape == (6, 10)


@pytest.mark.parametrize("model", ["mlp1d", "cnn1d"])
def test_adamw_trains_the_1d_models_as_adam(model, tmp_path):
    """optimizer 'adamw' with weight_decay 0 and a constant rate is Adam (the authors' setting): the trainer's
    run equals a hand-written Adam loop over the same batches."""
    from softgrad.train import train

    cfg = C.Config(dataset="mnist1d", mnist1d_samples=300, mnist1d_test_samples=100, data_root=str(tmp_path),
                   model=model, optimizer="adamw", lr=1e-2, weight_decay=0.0, lr_schedule="constant", batch_size=50,
                   epochs=3, threads=1, amp="off")
    res = train(cfg, progress=False)
    ds = D.load_dataset("mnist1d", root=tmp_path, samples=300, test_samples=100)
    torch.manual_seed(cfg.seed)
    net = build_model(cfg, ds.input_shape, 10)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    batcher = Batcher(ds.x_train, ds.y_train, 50, cfg.seed)
    for epoch in range(cfg.epochs):
        for xb, yb, _ in batcher.epoch(epoch):
            nn.functional.cross_entropy(net(xb), yb).backward()
            opt.step()
            opt.zero_grad()
    with torch.no_grad():
        logits = net(ds.x_test)
    assert res["final"]["test_nll"] == pytest.approx(float(nn.functional.cross_entropy(logits, ds.y_test)), rel=1e-4)
    assert res["final"]["test_acc"] == pytest.approx(float((logits.argmax(1) == ds.y_test).double().mean()), abs=0.011)
    assert res["final"]["train_acc"] > 0.3 and res["final"]["total_opt_steps"] == 3 * 4
    sgd = train(cfg.replace(optimizer="sgd"), progress=False)  # the optimizer really is switched
    assert sgd["final"]["test_nll"] != res["final"]["test_nll"]


# ------------------------------------------------------------------ the reference check (chapter 08)


def test_reference_sweep_is_the_authors_setup_and_its_table():
    from softgrad.reference import AUTHORS_SETUP, FROZEN_SET, authors_epochs, reference_table
    from softgrad.runs import plan_params

    assert authors_epochs() == 150 and authors_epochs(n_train=40000) == 15
    for profile, seeds, epochs in (("quick", 3, 150), ("paper", 5, 150), ("ci", 1, 5)):
        (name, cfgs), = plan_params(C.load_params(ROOT / "params" / profile / "08_cost.yaml"))
        assert sorted({c.model for c in cfgs}) == ["cnn1d", "mlp1d"] and len(cfgs) == 2 * seeds, profile
        for c in cfgs:
            want = {**AUTHORS_SETUP, **FROZEN_SET, "epochs": epochs}
            assert {k: getattr(c, k) for k in want} == want, profile
    import pandas as pd

    rows = [{**AUTHORS_SETUP, **FROZEN_SET, "model": m, "seed": s, "final": True, "test_acc": a,
             "total_opt_steps": 6000, "train_time": 2.0} for m, s, a in (("mlp1d", 0, 0.6), ("mlp1d", 1, 0.7), ("cnn1d", 0, 0.9))]
    rows.append({**rows[0], "final": False, "test_acc": 0.1})  # not a final epoch: ignored
    t = reference_table(pd.DataFrame(rows)).set_index("model")
    assert t.loc["mlp1d", "test_acc_mean"] == pytest.approx(0.65) and t.loc["mlp1d", "runs"] == 2
    assert t.loc["mlp1d", "test_acc_std"] == pytest.approx(0.0707107, rel=1e-5) and t.loc["cnn1d", "test_acc_std"] == 0
    assert t.loc["cnn1d", "difference"] == pytest.approx(0.9 - 0.94) and t.authors_setup.all()
    rows[2]["lr"] = 1e-3
    assert not reference_table(pd.DataFrame(rows)).set_index("model").loc["cnn1d", "authors_setup"]

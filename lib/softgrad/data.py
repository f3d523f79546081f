"""Named datasets as tensors, and an on-device batcher with augmentation.

Every dataset returns a :class:`Dataset` of four tensors: ``x_train (N, ...)`` float32 (images ``(N, C, H, W)``
in [0, 1]; vectors ``(N, D)`` on their own scale: ``synthetic``/``teacher`` as drawn, ``mnist1d`` standardised by
its generator to mean 0 and standard deviation 1 over the whole set, as its authors feed it), ``y_train (N,)``
int64, and the same for test.
The whole set is moved to the training device once; batching, shuffling and augmentation (random
crop with zero padding, horizontal flip) are tensor ops there, with no per-sample Python, and are
deterministic given a ``torch.Generator``.

Names:
  ``mnist``, ``fashion_mnist``, ``cifar10``, ``cifar100``, ``svhn``  torchvision, downloaded if absent
  ``mnist10k``  the official MNIST *test* split (10,000 images) divided by a seeded, stratified split
  ``digits``    scikit-learn's bundled 8x8 digits (1,797 images)
  ``synthetic`` Gaussian mixture (``classes``, ``dim``, ``separation``, ``label_noise``)
  ``teacher``   labels from a random two-layer teacher network
  ``mnist1d``   MNIST-1D (Greydanus & Kobak, "Scaling Down Deep Learning with MNIST-1D", ICML 2024): 40-long
                signals of 10 digit templates, generated offline by the authors' ``mnist1d`` package (never
                downloaded) and cached under ``<root>/MNIST1D/`` (:func:`mnist1d_arrays`)

Data root: the ``root`` argument, else ``$SOFTGRAD_DATA``, else ``./data`` (relative to the repo root).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .common import REPO_ROOT

__all__ = ["Dataset", "DATASETS", "load_dataset", "data_root", "read_idx", "Batcher", "augment", "dataset_shape",
           "mnist1d_arrays", "MNIST1D_DEFAULTS"]



class DataUnavailable(FileNotFoundError):
    """Raised when a dataset is neither on disk nor downloadable."""


@dataclass
class Dataset:
    name: str
    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    num_classes: int
    x_val: Tensor | None = None  # a validation split carved from train (:meth:`split_validation`)
    y_val: Tensor | None = None
    # the true labels where :meth:`with_label_noise` replaced some (None: the labels are the true ones)
    y_train_clean: Tensor | None = None
    y_val_clean: Tensor | None = None

    @property
    def input_shape(self) -> tuple:
        return tuple(self.x_train.shape[1:])

    def to(self, device) -> "Dataset":
        to = lambda t: None if t is None else t.to(device)  # noqa: E731
        return Dataset(self.name, self.x_train.to(device), self.y_train.to(device), self.x_test.to(device),
                       self.y_test.to(device), self.num_classes, to(self.x_val), to(self.y_val),
                       to(self.y_train_clean), to(self.y_val_clean))

    def split_validation(self, fraction: float, seed: int) -> "Dataset":
        """Hold out a stratified ``fraction`` of the training part as a validation split (model selection,
        temperature scaling); the test split is untouched and never used for any choice."""
        tr, va = stratified_split(self.y_train, fraction, seed)
        clean = (None, None) if self.y_train_clean is None else (self.y_train_clean[tr], self.y_train_clean[va])
        return Dataset(self.name, self.x_train[tr], self.y_train[tr], self.x_test, self.y_test, self.num_classes,
                       self.x_train[va], self.y_train[va], *clean)

    def with_label_noise(self, rate: float, seed: int) -> "Dataset":
        """Symmetric label noise on the training labels: each label is, with probability ``rate``, replaced
        by a class drawn uniformly from the *other* ``C - 1`` classes (so ``rate`` is the fraction of wrong
        labels). Applied before :meth:`split_validation`, so a validation split is as noisy as the data it
        comes from (what a practitioner holds out); the test labels stay clean."""
        if rate <= 0:
            return self
        g = torch.Generator().manual_seed(seed * 7919 + 17)  # its own stream: the split and init do not shift
        y = self.y_train.clone()
        flip = torch.rand(y.shape[0], generator=g) < rate
        shift = torch.randint(1, self.num_classes, (y.shape[0],), generator=g)  # 1..C-1: never the true class
        y[flip] = (y[flip] + shift[flip]) % self.num_classes
        return Dataset(self.name, self.x_train, y, self.x_test, self.y_test, self.num_classes, self.x_val, self.y_val,
                       self.y_train, None if self.y_val is None else self.y_val)


def data_root(root: str | os.PathLike | None = None) -> Path:
    """``root`` if given, else ``$SOFTGRAD_DATA``, else ``<repo>/data``."""
    if root:
        return Path(root).expanduser()
    env = os.environ.get("SOFTGRAD_DATA")
    return Path(env).expanduser() if env else REPO_ROOT / "data"


def stratified_split(y: Tensor, test_fraction: float, seed: int) -> tuple[Tensor, Tensor]:
    """Indices (train, test): each class contributes round(test_fraction * n_class) test samples."""
    g = torch.Generator().manual_seed(seed)
    tr, te = [], []
    for c in torch.unique(y).tolist():
        idx = torch.nonzero(y == c).squeeze(1)
        idx = idx[torch.randperm(len(idx), generator=g)]
        k = int(round(test_fraction * len(idx)))
        te.append(idx[:k])
        tr.append(idx[k:])
    return torch.sort(torch.cat(tr)).values, torch.sort(torch.cat(te)).values


# ------------------------------------------------------------------ file formats


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an idx file (MNIST's format; optionally gzipped): magic 0x0000 08 NDIM, big-endian dims."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise ValueError(f"{path} is not an unsigned-byte idx file (bad magic {data[:4].hex()})")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if arr.size != int(np.prod(dims)):
        raise ValueError(f"{path}: header says {dims} but holds {arr.size} values")
    return arr.reshape(dims)


def _find(root: Path, folder: str, stem: str) -> Path | None:
    for cand in (root / folder / "raw" / stem, root / folder / "raw" / (stem + ".gz")):
        if cand.exists():
            return cand
    return None


def _mnist10k(root: Path, download: bool, test_fraction: float = 0.2, split_seed: int = 0) -> Dataset:
    img = _find(root, "MNIST", "t10k-images-idx3-ubyte")
    lab = _find(root, "MNIST", "t10k-labels-idx1-ubyte")
    if img is None or lab is None:
        if not download:
            raise DataUnavailable(_missing_msg("mnist10k", root / "MNIST" / "raw", "download disabled"))
        try:
            import torchvision

            torchvision.datasets.MNIST(str(root), train=False, download=True)
        except Exception as e:  # network failures come in many types
            raise DataUnavailable(_missing_msg("mnist10k", root / "MNIST" / "raw",
                                               f"torchvision MNIST download failed: {e}")) from e
        return _mnist10k(root, False, test_fraction, split_seed)
    x = torch.from_numpy(read_idx(img).copy()).float().div_(255).unsqueeze(1)
    y = torch.from_numpy(read_idx(lab).astype(np.int64))
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"{img} has {x.shape[0]} images but {lab} has {y.shape[0]} labels")
    tr, te = stratified_split(y, test_fraction, split_seed)
    return Dataset("mnist10k", x[tr], y[tr], x[te], y[te], 10)


def _missing_msg(name: str, path: Path, why: str) -> str:
    return (f"dataset {name!r} not found under {path} and not downloadable ({why}). Set the data root with "
            f"the 'data_root' parameter or the SOFTGRAD_DATA environment variable (now "
            f"{os.environ.get('SOFTGRAD_DATA', 'unset')}).")


def _torchvision(name: str, root: Path, download: bool) -> Dataset:
    import torchvision.datasets as tvd

    def arrays(ds):
        if name == "svhn":
            return torch.from_numpy(ds.data).float().div_(255), torch.from_numpy(ds.labels.astype(np.int64))
        data = ds.data if isinstance(ds.data, np.ndarray) else ds.data.numpy()
        x = torch.from_numpy(np.ascontiguousarray(data)).float().div_(255)
        x = x.unsqueeze(1) if x.dim() == 3 else x.permute(0, 3, 1, 2)
        return x.contiguous(), torch.as_tensor(np.asarray(ds.targets), dtype=torch.int64)

    cls = {"mnist": tvd.MNIST, "fashion_mnist": tvd.FashionMNIST, "cifar10": tvd.CIFAR10,
           "cifar100": tvd.CIFAR100, "svhn": tvd.SVHN}[name]
    try:
        if name == "svhn":
            tr, te = (cls(str(root / "SVHN"), split=s, download=download) for s in ("train", "test"))
        else:
            tr, te = (cls(str(root), train=s, download=download) for s in (True, False))
    except Exception as e:
        raise DataUnavailable(_missing_msg(name, root, f"torchvision {cls.__name__}(download={download}): {e}")) from e
    (xtr, ytr), (xte, yte) = arrays(tr), arrays(te)
    return Dataset(name, xtr, ytr, xte, yte, {"cifar100": 100}.get(name, 10))


def _digits(test_fraction: float = 0.2, split_seed: int = 0) -> Dataset:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).div_(16).unsqueeze(1)
    y = torch.tensor(d.target, dtype=torch.int64)
    tr, te = stratified_split(y, test_fraction, split_seed)
    return Dataset("digits", x[tr], y[tr], x[te], y[te], 10)


def _synthetic(classes: int = 10, dim: int = 32, n_train: int = 5000, n_test: int = 2000, separation: float = 3.0,
               label_noise: float = 0.0, seed: int = 0, kind: str = "mixture") -> Dataset:
    """Gaussian mixture (unit-variance clusters, means ~ N(0, (separation^2/dim) I)) or teacher net."""
    g = torch.Generator().manual_seed(seed)
    n = n_train + n_test
    if kind == "mixture":
        means = torch.randn(classes, dim, generator=g) * (separation / dim**0.5)
        y = torch.randint(0, classes, (n,), generator=g)
        x = means[y] + torch.randn(n, dim, generator=g) / dim**0.5
    else:  # teacher: random 2-layer tanh net, argmax labels
        w1 = torch.randn(dim, 4 * dim, generator=g) / dim**0.5
        w2 = torch.randn(4 * dim, classes, generator=g) * separation / (4 * dim) ** 0.5
        x = torch.randn(n, dim, generator=g)
        y = (torch.tanh(x @ w1) @ w2).argmax(1)
    if label_noise > 0:
        flip = torch.rand(n, generator=g) < label_noise
        y = torch.where(flip, torch.randint(0, classes, (n,), generator=g), y)
    return Dataset(kind if kind != "mixture" else "synthetic", x[:n_train], y[:n_train], x[n_train:], y[n_train:],
                   classes)


# ------------------------------------------------------------------ MNIST-1D (generated, never downloaded)

#: The authors' frozen set: ``mnist1d.data.get_dataset_args()``'s ``num_samples`` and ``seed``, and the test
#: split its ``train_split`` 0.8 leaves (the last 1,000 of 5,000). Config: ``mnist1d_samples``,
#: ``mnist1d_test_samples``, ``mnist1d_seed``.
MNIST1D_DEFAULTS = {"samples": 5000, "test_samples": 1000, "seed": 42}
MNIST1D_LENGTH = 40  # the generator's final_seq_length (not exposed: the models are built for it)


def _mnist1d_args(samples: int, seed: int) -> dict:
    """The generator's arguments: the authors' ``get_dataset_args()`` with ``num_samples`` and ``seed`` replaced
    (``url`` dropped: nothing is downloaded)."""
    from mnist1d.data import get_dataset_args

    args = {k: v for k, v in get_dataset_args(as_dict=True).items() if k != "url"}
    return {**args, "num_samples": int(samples), "seed": int(seed)}


def _mnist1d_generate(args: dict) -> dict[str, np.ndarray]:
    """``mnist1d.data.make_dataset`` on ``args``; returns the whole shuffled set before its train/test split:
    ``x (N, 40)`` float64, ``y (N,)`` int64, ``t (40,)``. The generator seeds numpy's and Python's global RNGs;
    both are restored afterwards, so generating leaves no trace on the caller's random streams."""
    import random

    from mnist1d.data import make_dataset
    from mnist1d.utils import ObjectView

    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        d = make_dataset(ObjectView(dict(args)))
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    return {"x": np.concatenate([d["x"], d["x_test"]]), "y": np.concatenate([d["y"], d["y_test"]]).astype(np.int64),
            "t": np.asarray(d["t"], dtype=np.float64)}


def _mnist1d_cache_dirs(root: Path) -> list[Path]:
    """Where a generated set is cached: ``<root>/MNIST1D`` and, where that is read-only (a shared data root),
    ``<repo>/.cache/MNIST1D`` (git-ignored)."""
    return [root / "MNIST1D", REPO_ROOT / ".cache" / "MNIST1D"]


def mnist1d_arrays(root=None, samples: int = 5000, test_samples: int = 1000, seed: int = 42) -> dict[str, np.ndarray]:
    """MNIST-1D in its authors' layout: ``x (N - test_samples, 40)``, ``y``, ``x_test (test_samples, 40)``,
    ``y_test`` (float64 / int64, exactly the generator's values) and ``t (40,)``.

    Greydanus & Kobak, "Scaling Down Deep Learning with MNIST-1D" (ICML 2024). The set is
    ``mnist1d.data.make_dataset`` with the authors' arguments (``get_dataset_args()``) except ``num_samples``
    (``samples``; ``samples // 10`` per class) and ``seed``; it is split as the generator splits (the first
    samples train, the last ``test_samples`` test: the generator's ``train_split`` = 1 − test_samples/samples,
    without its rounding of ``int(N * train_split)``). The defaults give the authors' frozen set
    (``mnist1d_data.pkl``: 4,000 train, 1,000 test) to float rounding (tested against a copy).

    A larger set is a new draw, not an extension: the generator makes every class in turn, shuffles the whole set
    and standardises it with its own mean and deviation, so with the same seed the first samples of a
    50,000-sample set differ from the 5,000-sample set's (the same raw signals for the first 500 of class 0
    only, placed and scaled differently).

    Generation takes about 0.4 ms per sample on one CPU core; each set is cached once as
    ``generated_<hash>.npz`` (the hash covers every generator argument and the package version), written
    atomically under ``<root>/MNIST1D`` or, where the data root is read-only, ``<repo>/.cache/MNIST1D``.
    """
    import importlib.metadata

    if samples % 10 or samples < 10:
        raise ValueError(f"mnist1d samples must be a positive multiple of 10 (the generator makes samples // 10 per "
                         f"class), got {samples}")
    if not 1 <= test_samples < samples:
        raise ValueError(f"mnist1d test_samples must be in [1, samples - 1] = [1, {samples - 1}], got {test_samples}")
    args = _mnist1d_args(samples, seed)
    version = importlib.metadata.version("mnist1d")
    key = json.dumps({"args": args, "mnist1d": version}, sort_keys=True)
    name = f"generated_{hashlib.sha256(key.encode()).hexdigest()[:16]}.npz"
    arrays = None
    for folder in _mnist1d_cache_dirs(data_root(root)):
        try:
            with np.load(folder / name) as f:
                if str(f["key"]) == key:
                    arrays = {k: f[k] for k in ("x", "y", "t")}
                    break
        except (OSError, KeyError, ValueError):  # absent, unreadable or truncated: generate
            continue
    if arrays is None:
        arrays = _mnist1d_generate(args)
        for folder in _mnist1d_cache_dirs(data_root(root)):
            if _write_npz(folder / name, key=np.array(key), **arrays):
                break
    n_train = samples - test_samples
    return {"x": arrays["x"][:n_train], "y": arrays["y"][:n_train], "x_test": arrays["x"][n_train:],
            "y_test": arrays["y"][n_train:], "t": arrays["t"]}


def _writable(folder: Path) -> bool:
    """Whether ``folder`` (or, before it exists, its nearest existing parent) may be written: its permission
    bits grant some write access and the process has it. A shared data root marked read-only (mode ``r-x``)
    stays untouched even for root, whom the kernel would let write."""
    p = folder
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        return bool(p.stat().st_mode & 0o222) and os.access(p, os.W_OK)
    except OSError:
        return False


def _write_npz(path: Path, **arrays) -> bool:
    """``np.savez`` to ``path`` atomically (a temporary file renamed into place); False where it cannot or must
    not be written (a read-only data root), so the caller tries the next place."""
    if not _writable(path.parent):
        return False
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        return True
    except OSError:
        return False
    finally:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass


def _mnist1d(root: Path, samples: int = 5000, test_samples: int = 1000, seed: int = 42) -> Dataset:
    """MNIST-1D as a :class:`Dataset`: inputs ``(N, 40)`` float32, the generator's standardised values unchanged
    (its authors feed them raw; no rescaling to [0, 1])."""
    a = mnist1d_arrays(root, samples, test_samples, seed)
    x = lambda k: torch.from_numpy(a[k]).float()  # noqa: E731
    y = lambda k: torch.from_numpy(a[k]).long()  # noqa: E731
    return Dataset("mnist1d", x("x"), y("y"), x("x_test"), y("y_test"), 10)


DATASETS = ("mnist", "fashion_mnist", "cifar10", "cifar100", "svhn", "mnist10k", "digits", "synthetic", "teacher",
            "mnist1d")
# (input shape, classes) of each data set, known without loading it (config validation uses it)
_SHAPES = {"mnist": ((1, 28, 28), 10), "fashion_mnist": ((1, 28, 28), 10), "mnist10k": ((1, 28, 28), 10),
           "cifar10": ((3, 32, 32), 10), "cifar100": ((3, 32, 32), 100), "svhn": ((3, 32, 32), 10),
           "digits": ((1, 8, 8), 10), "mnist1d": ((MNIST1D_LENGTH,), 10)}


def dataset_shape(name: str, classes: int = 10, dim: int = 32) -> tuple[tuple, int]:
    """``(input_shape, num_classes)`` of dataset ``name`` without loading it (``classes``/``dim``: synthetic)."""
    if name in ("synthetic", "teacher"):
        return (dim,), classes
    return _SHAPES[name]


def load_dataset(name: str, root=None, download: bool = True, **options) -> Dataset:
    """Load dataset ``name`` (see module docstring) as CPU tensors."""
    if name not in DATASETS:
        raise ValueError(f"dataset must be one of {DATASETS}, got {name!r}")
    if name == "mnist10k":
        return _mnist10k(data_root(root), download, **options)
    if name == "digits":
        return _digits(**options)
    if name == "mnist1d":
        return _mnist1d(data_root(root), **options)
    if name in ("synthetic", "teacher"):
        return _synthetic(kind="mixture" if name == "synthetic" else "teacher", **options)
    return _torchvision(name, data_root(root), download)


# ------------------------------------------------------------------ on-device batching


def augment(x: Tensor, generator: torch.Generator, crop_padding: int = 0, hflip: bool = False) -> Tensor:
    """Per-sample random crop (zero padding ``crop_padding``) and horizontal flip, as batched tensor ops.

    x ``(B, C, H, W)`` -> same shape. Offsets and flips come from ``generator`` (on x's device).
    The crop is a gather with per-sample row/column indices into the padded batch.
    """
    if crop_padding:
        B, C, H, W = x.shape
        pad = crop_padding
        xp = torch.nn.functional.pad(x, (pad, pad, pad, pad))
        dy = torch.randint(0, 2 * pad + 1, (B,), generator=generator, device=x.device)
        dx = torch.randint(0, 2 * pad + 1, (B,), generator=generator, device=x.device)
        rows = (dy[:, None] + torch.arange(H, device=x.device)[None, :])  # (B, H)
        cols = (dx[:, None] + torch.arange(W, device=x.device)[None, :])  # (B, W)
        xp = xp.gather(2, rows[:, None, :, None].expand(B, C, H, xp.shape[3]))
        x = xp.gather(3, cols[:, None, None, :].expand(B, C, H, W))
    if hflip:
        flip = torch.rand(x.shape[0], generator=generator, device=x.device) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(3), x)
    return x


class Batcher:
    """Shuffled mini-batches of device-resident tensors, reproducible per (seed, epoch).

    ``for xb, yb, idx in Batcher(x, y, 256, seed=0).epoch(e)``: ``idx`` are the sample indices
    (for per-sample tracking). The last partial batch is kept (``drop_last=False``).
    """

    def __init__(self, x: Tensor, y: Tensor, batch_size: int, seed: int, crop_padding: int = 0,
                 hflip: bool = False, drop_last: bool = False):
        self.x, self.y, self.batch_size, self.seed = x, y, batch_size, seed
        self.crop_padding, self.hflip, self.drop_last = crop_padding, hflip, drop_last

    def __len__(self) -> int:
        n = self.x.shape[0]
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def epoch(self, epoch: int):
        dev = self.x.device
        g = torch.Generator(device=dev).manual_seed(self.seed * 100_003 + epoch)
        perm = torch.randperm(self.x.shape[0], generator=g, device=dev)
        for i in range(len(self)):
            idx = perm[i * self.batch_size:(i + 1) * self.batch_size]
            xb = self.x[idx]
            if self.crop_padding or self.hflip:
                xb = augment(xb, g, self.crop_padding, self.hflip)
            yield xb, self.y[idx], idx

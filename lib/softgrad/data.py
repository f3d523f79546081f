"""Named datasets as tensors, and an on-device batcher with augmentation.

Every dataset returns a :class:`Dataset` of four tensors: ``x_train (N, ...)`` float32 in [0, 1]
(images ``(N, C, H, W)``, vectors ``(N, D)``), ``y_train (N,)`` int64, and the same for test.
The whole set is moved to the training device once; batching, shuffling and augmentation (random
crop with zero padding, horizontal flip) are tensor ops there, with no per-sample Python, and are
deterministic given a ``torch.Generator``.

Names:
  ``mnist``, ``fashion_mnist``, ``cifar10``, ``cifar100``, ``svhn``  torchvision, downloaded if absent
  ``mnist10k``  the official MNIST *test* split (10,000 images) divided by a seeded, stratified split
  ``digits``    scikit-learn's bundled 8x8 digits (1,797 images)
  ``synthetic`` Gaussian mixture (``classes``, ``dim``, ``separation``, ``label_noise``)
  ``teacher``   labels from a random two-layer teacher network

Data root: the ``root`` argument, else ``$SOFTGRAD_DATA``, else ``./data`` (relative to the repo root).
"""

from __future__ import annotations

import gzip
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .common import REPO_ROOT

__all__ = ["Dataset", "DATASETS", "load_dataset", "data_root", "read_idx", "Batcher", "augment", "dataset_shape"]



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


DATASETS = ("mnist", "fashion_mnist", "cifar10", "cifar100", "svhn", "mnist10k", "digits", "synthetic", "teacher")
# (input shape, classes) of each data set, known without loading it (config validation uses it)
_SHAPES = {"mnist": ((1, 28, 28), 10), "fashion_mnist": ((1, 28, 28), 10), "mnist10k": ((1, 28, 28), 10),
           "cifar10": ((3, 32, 32), 10), "cifar100": ((3, 32, 32), 100), "svhn": ((3, 32, 32), 10),
           "digits": ((1, 8, 8), 10)}


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

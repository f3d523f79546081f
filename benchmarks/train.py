"""Trainer throughput vs (a) a minimal hand-written PyTorch loop and (b) a torchvision DataLoader pipeline.

    python benchmarks/train.py [--models mlp lenet5] [--epochs 3] [--json benchmarks/results/train_cpu.json]

All three train the same model (same init) with SGD on ``mnist10k`` (or ``--dataset``), batch 256,
and report median samples/s over epochs after a warm-up epoch, pooled over ``--rounds``
interleaved rounds. (a) keeps the data as device tensors and
indexes shuffled batches; (b) is the conventional ``TensorDataset``-free path: torchvision
``datasets.MNIST``-style uint8 images through ``transforms.ToTensor`` in a ``DataLoader``. Ratios are
softgrad / baseline, measured in the same process.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))
from softgrad.config import Config  # noqa: E402
from softgrad.data import Batcher  # noqa: E402
from softgrad.models import build_model  # noqa: E402
from softgrad.train import pick_device, prepare_data, train  # noqa: E402


def hand_loop(cfg, ds, device, epochs):
    torch.manual_seed(cfg.seed)
    model = build_model(cfg, ds.input_shape, ds.num_classes).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=0.9)
    x, y = ds.x_train.to(device), ds.y_train.to(device)
    rates = []
    for _ in range(epochs):
        t0 = time.perf_counter()
        perm = torch.randperm(x.shape[0], device=device)
        for i in range(0, x.shape[0], cfg.batch_size):
            idx = perm[i:i + cfg.batch_size]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        rates.append(x.shape[0] / (time.perf_counter() - t0))
    return rates


def dataloader_loop(cfg, ds, device, epochs):
    from PIL import Image
    from torchvision import transforms

    class ImageFolderLike(torch.utils.data.Dataset):  # what torchvision.datasets.MNIST does per item
        def __init__(self, x, y):
            self.x = (x.squeeze(1) * 255).to(torch.uint8).numpy() if x.dim() == 4 and x.shape[1] == 1 else None
            self.y = y.tolist()
            self.t = transforms.ToTensor()

        def __len__(self):
            return len(self.y)

        def __getitem__(self, i):
            return self.t(Image.fromarray(self.x[i], mode="L")), self.y[i]

    torch.manual_seed(cfg.seed)
    model = build_model(cfg, ds.input_shape, ds.num_classes).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=0.9)
    loader = torch.utils.data.DataLoader(ImageFolderLike(ds.x_train, ds.y_train), batch_size=cfg.batch_size,
                                         shuffle=True, num_workers=0)
    rates = []
    for _ in range(epochs):
        t0 = time.perf_counter()
        n = 0
        for xb, yb in loader:
            xb, yb = xb.to(device), yb.to(device)
            loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            n += yb.shape[0]
        if device.type == "cuda":
            torch.cuda.synchronize()
        rates.append(n / (time.perf_counter() - t0))
    return rates


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="*", default=["mlp", "lenet5"])
    ap.add_argument("--dataset", default="mnist10k")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=3, help="interleaved softgrad/hand-loop rounds")
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args(argv)
    device = pick_device("auto")
    rows = []
    for m in a.models:
        cfg = Config(dataset=a.dataset, model=m, batch_size=256, epochs=a.epochs, lr=0.05, weight_decay=0.0,
                     momentum=0.9, lr_schedule="constant")
        ds = prepare_data(cfg)
        ours_r, hand_r = [], []
        for _ in range(a.rounds):  # interleaved, so drift in machine speed hits both alike
            ours_r += [h["samples_per_s"] for h in train(cfg, progress=False)["history"][1:]]
            hand_r += hand_loop(cfg, ds, device, a.epochs)[1:]
        ours, hand = statistics.median(ours_r), statistics.median(hand_r)
        dl = statistics.median(dataloader_loop(cfg, ds, device, a.epochs)[1:])
        rows.append({"device": device.type, "model": m, "softgrad": ours, "hand_loop": hand, "dataloader": dl,
                     "vs_hand": ours / hand, "vs_dataloader": ours / dl})
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, device {device}")
    print(f"{'model':8} {'softgrad/s':>11} {'hand/s':>9} {'DataLoader/s':>13} {'x hand':>7} {'x DataLoader':>12}")
    for r in rows:
        print(f"{r['model']:8} {r['softgrad']:11.0f} {r['hand_loop']:9.0f} {r['dataloader']:13.0f} "
              f"{r['vs_hand']:7.2f} {r['vs_dataloader']:12.2f}")
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()

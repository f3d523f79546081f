"""Training throughput of the paper-profile models on CIFAR-shaped tensors, and vs a DataLoader pipeline.

    python benchmarks/throughput.py [--models resnet18 resnet20 vgg_small] [--json benchmarks/results/throughput_cpu.json]

softgrad path: the data set as device tensors, :class:`softgrad.data.Batcher` with on-device random crop
(padding 4) and flip, bf16 autocast + channels_last on CUDA, CE through ``softgrad.losses``, SGD. Baseline
(ResNet-18 only by default, ``--dataloader-models``): the conventional pipeline — PIL images through
torchvision ``RandomCrop(32, 4)``, ``RandomHorizontalFlip``, ``ToTensor`` in a ``DataLoader`` (workers =
``--workers``), same model and step. Reports median samples/s over timed steps after warm-up; the
ratio is softgrad / DataLoader, measured in the same run. Used by notebook 08 for the cost estimates.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))
from softgrad import losses as L  # noqa: E402
from softgrad.config import Config  # noqa: E402
from softgrad.data import Batcher  # noqa: E402
from softgrad.models import build_model  # noqa: E402
from softgrad.train import pick_device  # noqa: E402


def _sync(d):
    if d.type == "cuda":
        torch.cuda.synchronize()


def step_fn(model, device, amp):
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_fn = L.make_loss("ce")

    def step(xb, yb):
        if device.type == "cuda":
            xb = xb.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cuda", torch.bfloat16, enabled=amp):
            logits = model(xb, yb)
        loss = loss_fn(logits.float(), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return step


def measure(batches, step, device, warmup: int) -> float:
    times = []
    for i, (xb, yb) in enumerate(batches):
        _sync(device)
        t0 = time.perf_counter()
        step(xb.to(device, non_blocking=True), yb.to(device, non_blocking=True))
        _sync(device)
        if i >= warmup:
            times.append(yb.shape[0] / (time.perf_counter() - t0))
    return statistics.median(times)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="*", default=["resnet18", "resnet20", "vgg_small"])
    ap.add_argument("--dataloader-models", nargs="*", default=["resnet18"])
    ap.add_argument("--batch", type=int, default=None, help="default: 256 on CUDA, 32 on CPU")
    ap.add_argument("--steps", type=int, default=None, help="timed steps (default: 30 on CUDA, 4 on CPU)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args(argv)
    device = pick_device("auto")
    cuda = device.type == "cuda"
    bs = a.batch or (256 if cuda else 32)
    steps, warmup = a.steps or (30 if cuda else 4), 3 if cuda else 1
    n = bs * (steps + warmup)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(n, 3, 32, 32, generator=g)
    y = torch.randint(0, 10, (n,), generator=g)
    rows = []
    for m in a.models:
        torch.manual_seed(0)
        model = build_model(Config(model=m, dataset="cifar10"), (3, 32, 32), 10).to(device)
        if cuda:
            model = model.to(memory_format=torch.channels_last)
        model.train()
        step = step_fn(model, device, amp=cuda)
        batcher = Batcher(x.to(device), y.to(device), bs, seed=0, crop_padding=4, hflip=True, drop_last=True)
        ours = measure(((xb, yb) for xb, yb, _ in batcher.epoch(0)), step, device, warmup)
        row = {"device": device.type, "device_name": torch.cuda.get_device_name() if cuda else platform.processor(),
               "model": m, "batch": bs, "softgrad_samples_per_s": ours, "dataloader_samples_per_s": None,
               "vs_dataloader": None, "torch": torch.__version__, "threads": torch.get_num_threads()}
        if m in a.dataloader_models:
            from PIL import Image
            from torchvision import transforms

            imgs = [Image.fromarray((im.permute(1, 2, 0).numpy() * 255).astype("uint8")) for im in x]
            tf = transforms.Compose([transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip(),
                                     transforms.ToTensor()])

            class DS(torch.utils.data.Dataset):
                def __len__(self):
                    return n

                def __getitem__(self, i):
                    return tf(imgs[i]), int(y[i])

            loader = torch.utils.data.DataLoader(DS(), batch_size=bs, shuffle=True, num_workers=a.workers,
                                                 pin_memory=cuda, drop_last=True, persistent_workers=False)
            dl = measure(iter(loader), step, device, warmup)
            row.update(dataloader_samples_per_s=dl, vs_dataloader=ours / dl)
        rows.append(row)
        print(f"{device.type} {m:10} batch {bs}: softgrad {ours:9.1f} samples/s"
              + (f", DataLoader {row['dataloader_samples_per_s']:9.1f}, ratio {row['vs_dataloader']:.2f}"
                 if row["vs_dataloader"] else ""), flush=True)
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()

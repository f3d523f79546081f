"""Runs per minute: the stacked engine (K runs as one model) vs the single engine (K runs one after another).

    python benchmarks/stacked.py [--tasks digits_mlp mnist_mlp mnist_lenet5] [--sizes 8 32] [--rounds 3]
                                 [--threads 2] [--json benchmarks/results/stacked_cpu.json]

Each task is a chapter-06 pool in miniature: K runs of one method (temperature, its β drawn per run) that differ
in seed, learning rate and β, with a validation split and the quick profile's evaluation rhythm, fewer epochs.
Per round both engines train the same K configs in this process with the same thread count (interleaved, so
drift in machine speed hits both alike); wall time includes data preparation and evaluation, as in a real
pool. Reports the median runs/min of each engine over rounds and their ratio (stacked / single); no result is
stored. ``--device cuda`` on a GPU machine (``softgrad.gpu`` runs it there).
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
from softgrad.config import Config  # noqa: E402
from softgrad.stacked import train_stack  # noqa: E402
from softgrad.train import _cpu_name, train  # noqa: E402

TASKS = {
    "digits_mlp": dict(dataset="digits", model="mlp", batch_size=64, epochs=10, eval_every=10),
    "mnist_mlp": dict(dataset="mnist10k", model="mlp", batch_size=128, epochs=4, eval_every=4),
    "mnist_lenet5": dict(dataset="mnist10k", model="lenet5", batch_size=128, epochs=1, eval_every=1),
}


def configs(task: str, k: int, threads: int, device: str, epochs: int | None, amp: str = "auto") -> list[Config]:
    t = dict(TASKS[task])
    if epochs:
        t.update(epochs=epochs, eval_every=epochs)
    return [Config(**t, val_fraction=0.2, weight_decay=5e-4, lr_schedule="cosine", loss="temperature",
                   loss_params={"beta": round(0.25 * 16 ** (i / max(1, k - 1)), 3)}, lr=round(0.02 + 0.3 * i / k, 4),
                   seed=i, threads=threads, device=device, amp=amp) for i in range(k)]


def time_single(cfgs) -> float:
    t0 = time.perf_counter()
    for c in cfgs:
        train(c, progress=False)
    return len(cfgs) / (time.perf_counter() - t0) * 60


def time_stacked(cfgs) -> float:
    t0 = time.perf_counter()
    train_stack([c.replace(engine="stacked") for c in cfgs], progress=False)
    return len(cfgs) / (time.perf_counter() - t0) * 60


def measure(task: str, k: int, rounds: int, threads: int, device: str, epochs: int | None = None,
            amp: str = "auto") -> dict:
    cfgs = configs(task, k, threads, device, epochs, amp)
    time_stacked(cfgs[:2])  # warm-up: data loading, kernels, allocator
    single, stacked = [], []
    for r in range(rounds):
        if r % 2 == 0:
            single.append(time_single(cfgs))
            stacked.append(time_stacked(cfgs))
        else:
            stacked.append(time_stacked(cfgs))
            single.append(time_single(cfgs))
    s, t = statistics.median(single), statistics.median(stacked)
    return {"task": task, "K": k, "epochs": cfgs[0].epochs, "device": device, "amp": amp, "threads": threads,
            "single_runs_per_min": s, "stacked_runs_per_min": t, "ratio": t / s,
            "ratios_per_round": [b / a for a, b in zip(single, stacked)]}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", nargs="*", default=list(TASKS), choices=list(TASKS))
    ap.add_argument("--sizes", nargs="*", type=int, default=[8, 32], help="stack sizes K")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=None, help="override every task's epochs (a quick look)")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args(argv)
    name = torch.cuda.get_device_name() if a.device == "cuda" else _cpu_name()
    print(f"torch {torch.__version__}, {a.threads} threads, {a.device} ({name})")
    print(f"{'task':13} {'K':>3} {'single/min':>11} {'stacked/min':>12} {'ratio':>6}  per round")
    rows = []
    for task in a.tasks:
        for k in a.sizes:
            r = measure(task, k, a.rounds, a.threads, a.device, a.epochs)
            rows.append(r)
            print(f"{task:13} {k:3d} {r['single_runs_per_min']:11.1f} {r['stacked_runs_per_min']:12.1f} "
                  f"{r['ratio']:6.2f}  {' '.join(f'{x:.2f}' for x in r['ratios_per_round'])}", flush=True)
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps({"device_name": name, "torch": torch.__version__, "platform": platform.platform(),
                                      "rows": rows}, indent=1))


if __name__ == "__main__":
    main()

"""The prepared device script: everything a lent GPU machine (about 15 minutes, start-up included, no internet)
should measure, in one command with a time limit per step.

    python -m softgrad.gpu                 # on a CUDA machine (make gpu): <= 10 minutes on one H100
    python -m softgrad.gpu --dry-run       # anywhere, on the CPU at tiny sizes (make gpu-dry; CI runs it)
    python -m softgrad.gpu --steps tests losses   # a subset

Steps (each a subprocess with its own time limit, so one hung or failed step costs only its budget; every
step's status, wall time and output tail go to ``<results>/gpu_<device>.json``):

``tests``     the CUDA-relevant tests: the stacked engine (``tests/test_stacked.py``) and the trainer's bf16,
              resume and executor paths (``tests/test_engine.py``), on the device (``SOFTGRAD_TEST_DEVICE``);
``losses``    ``benchmarks/losses.py`` against ``F.cross_entropy`` (eager and compiled), plus a Liger-Kernel
              row where ``liger_kernel`` imports (the machine has no internet: it must be in the venv);
``trainer``   trainer throughput: ``benchmarks/train.py`` (fp32), ``benchmarks/throughput.py`` (bf16 autocast,
              channels_last) with a compiled row, and ``benchmarks/stacked.py`` (stacked vs single, fp32 and bf16);
``paper``     every ``params/paper/*.yaml``: one config per distinct (model, loss, warm-up, AS-Speed, head)
              of its plan, a few optimizer steps on CIFAR-shaped synthetic tensors with the data set's class
              count (nothing downloaded): no crash, finite loss, the warm-up and AS-Speed branches exercised;
``protocol``  chapter 06's protocol (``params/quick/06_head_to_head.yaml``) at N = 512 trial indices on the quick
              tasks with the stacked engine: the pool's runs go to ``outputs/gpu/runs`` (ordinary run results,
              read by chapter 06 where present), the comparisons and timings to ``protocol_<device>.json``.

Results: ``benchmarks/results/*_cuda.json`` on a GPU (chapter 08 reads them where present); the dry run writes
to a temporary folder (``--results`` to keep them) at sizes that finish in about a minute on two CPU cores.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

from .common import REPO_ROOT

STEPS = ("tests", "losses", "trainer", "paper", "protocol")
#: seconds per step: on the GPU (sum <= 10 minutes with start-up), and in the dry run on two CPU cores
BUDGET = {"cuda": {"tests": 100, "losses": 80, "trainer": 120, "paper": 60, "protocol": 210},
          "cpu": {"tests": 60, "losses": 30, "trainer": 40, "paper": 40, "protocol": 60}}


def _py(*args) -> list[str]:
    return [sys.executable, *map(str, args)]


def commands(step: str, dev: str, res: Path, dry: bool) -> list[list[str]]:
    """The subprocess command lines of ``step`` (run in the repository root)."""
    bench = REPO_ROOT / "benchmarks"
    if step == "tests":
        sel = "bf16 or resume or run_one or run_grid" if not dry else "resume_equals"
        tests = ["tests/test_stacked.py"] if not dry else ["tests/test_stacked.py", "-k",
                                                           "equals_the_single and (ce or noisy) or resume or grouping"]
        return [_py("-m", "pytest", "-p", "no:xdist", "-q", "-x", *tests),
                _py("-m", "pytest", "-p", "no:xdist", "-q", "tests/test_engine.py", "-k", sel)]
    if step == "losses":
        shapes = ["128x10", "4096x10", "8192x1000", "2048x32000"] if not dry else ["128x10"]
        return [_py(bench / "losses.py", "--device", dev, "--shapes", *shapes, "--repeats", 15 if not dry else 3,
                    *(["--compiled"] if not dry else []), "--json", res / f"losses_{dev}.json"),
                _py("-m", "softgrad.gpu", "--liger", "--device", dev, "--results", res, *(["--dry-run"] if dry else []))]
    if step == "trainer":
        if dry:
            return [_py(bench / "stacked.py", "--device", dev, "--tasks", "digits_mlp", "--sizes", 4, "--rounds", 1,
                        "--epochs", 1, "--threads", 1, "--json", res / f"stacked_{dev}.json")]
        return [_py(bench / "train.py", "--epochs", 3, "--rounds", 2, "--json", res / f"train_{dev}.json"),
                _py(bench / "throughput.py", "--json", res / f"throughput_{dev}.json"),
                _py(bench / "stacked.py", "--device", dev, "--sizes", 32, 256, "--rounds", 2,
                    "--json", res / f"stacked_{dev}.json")]
    return [_py("-m", "softgrad.gpu", f"--{step}", "--device", dev, "--results", res, *(["--dry-run"] if dry else []))]


# ------------------------------------------------------------------ in-process steps


def liger(dev: str, res: Path, dry: bool) -> dict:
    """Liger-Kernel's fused cross-entropy beside ``F.cross_entropy`` (forward + backward, median of repeats)."""
    import importlib.util
    import statistics

    import torch
    import torch.nn.functional as F

    out = {"device": dev, "rows": []}
    if importlib.util.find_spec("liger_kernel") is None or dev != "cuda":
        out["status"] = "not measured: " + ("liger_kernel is not installed in this venv" if dev == "cuda" or
                                            importlib.util.find_spec("liger_kernel") is None else "needs CUDA")
    else:
        from liger_kernel.transformers import LigerCrossEntropyLoss

        lig = LigerCrossEntropyLoss()
        for n, c in [(4096, 10), (8192, 1000), (2048, 32000)]:
            z = torch.randn(n, c, device=dev, requires_grad=True)
            t = torch.randint(0, c, (n,), device=dev)
            times = {}
            for name, fn in (("ce", F.cross_entropy), ("liger", lig)):
                ts = []
                for _ in range(15):
                    torch.cuda.synchronize()
                    t0 = time.perf_counter()
                    for _ in range(10):
                        fn(z, t).backward()
                    torch.cuda.synchronize()
                    ts.append((time.perf_counter() - t0) / 10)
                times[name] = statistics.median(ts)
            out["rows"].append({"shape": f"{n}x{c}", "ce_s": times["ce"], "liger_s": times["liger"],
                                "ratio": times["liger"] / times["ce"]})
        out["status"] = "measured"
    (res / f"liger_{dev}.json").write_text(json.dumps(out, indent=1))
    print(out["status"], *(f"{r['shape']}: liger/ce {r['ratio']:.2f}" for r in out["rows"]))
    return out


def _fake_data(name, root=None, download=True, n_train=256, n_test=128, **_):
    """CIFAR-shaped random tensors with ``name``'s input shape and class count (nothing read or downloaded)."""
    import torch

    from .data import Dataset, dataset_shape

    shape, classes = dataset_shape(name)
    g = torch.Generator().manual_seed(0)
    mk = lambda n: (torch.rand(n, *shape, generator=g), torch.randint(0, classes, (n,), generator=g))  # noqa: E731
    return Dataset(name, *mk(n_train), *mk(n_test), classes)


def paper(dev: str, res: Path, dry: bool) -> dict:
    """Every paper parameter file, a few steps per distinct setting, on synthetic CIFAR-shaped tensors."""
    import torch

    from . import train as T
    from .config import load_params
    from .runs import plan_params

    T.load_dataset = _fake_data  # the trainer's data loader; this process only runs these smoke runs
    rows = []
    for f in sorted((REPO_ROOT / "params" / "paper").glob("*.yaml")):
        p = load_params(f, allow_large=True)
        seen = {}
        for _, cfgs in plan_params(p, allow_large=True):
            for c in cfgs:
                key = (c.model, c.loss, c.warmup, c.as_speed, c.noise_alpha > 0)
                seen.setdefault(key, c)
        # warm-up and AS-Speed settings first: the dry run keeps two per file
        for key, c in sorted(seen.items(), key=lambda kv: (not kv[0][3], kv[0][2] == "none"))[: 2 if dry else None]:
            small = c.replace(epochs=1, eval_every=1, batch_size=min(c.batch_size, 64), device=dev,
                              width=min(c.width, 32) if dry else c.width, val_fraction=min(c.val_fraction, 0.25),
                              threads=0, track_samples=0)
            if dry and small.model in ("resnet18", "vgg_small", "resnet20"):
                small = small.replace(model="lenet5", crop_padding=0, hflip=False)
            t0 = time.perf_counter()
            try:
                r = T.train(small, progress=False)
                loss = r["final"]["train_loss_running"]
                ok = math.isfinite(loss) and all(math.isfinite(h.get("test_nll", 0.0)) for h in r["history"])
                rows.append({"file": f.name, "setting": list(map(str, key)), "ok": ok, "train_loss": loss,
                             "opt_steps": r["final"]["total_opt_steps"], "s": time.perf_counter() - t0})
            except Exception as e:  # recorded, the other settings still run
                rows.append({"file": f.name, "setting": list(map(str, key)), "ok": False, "error": f"{type(e).__name__}: {e}"})
            print(rows[-1], flush=True)
    out = {"device": dev, "torch": torch.__version__, "rows": rows,
           "warmup_exercised": any(r["setting"][2] != "none" for r in rows),
           "as_speed_exercised": any(r["setting"][3] == "True" for r in rows)}
    (res / f"paper_smoke_{dev}.json").write_text(json.dumps(out, indent=1))
    bad = [r for r in rows if not r["ok"]]
    if bad:
        raise SystemExit(f"paper smoke: {len(bad)} of {len(rows)} settings failed: {bad[:3]}")
    return out


def protocol(dev: str, res: Path, dry: bool) -> dict:
    """Chapter 06's protocol at N = 512 (dry run: 4) on the quick tasks, every run on the stacked engine."""
    from . import protocol as P
    from .config import load_params

    p = load_params(REPO_ROOT / "params" / "quick" / "06_head_to_head.yaml")
    base = {**p["base"], "engine": "stacked", "device": dev, "threads": 0}
    spec = {**p["extra"]["protocol"], "trials": 512, "workers": 1, "rerun_loss_impl": None,
            "max_stack": None}  # a GPU stacks far more than the CPU profile's 8 (SOFTGRAD_MAX_STACK below)
    if dry:
        base.update(epochs=1, eval_every=1)
        spec.update(trials=4, select=2, longer_weight=0.5, bootstrap=100, subsets=10, retrain_seeds=0,
                    split_half=False, tasks={k: {**v, "epochs": 1, "eval_every": 1} if "epochs" in v else v
                                             for k, v in list(spec["tasks"].items())[-1:]})
        spec["margins"] = {m: {t: v[t] for t in spec["tasks"]} if isinstance(v, dict) else v
                           for m, v in spec.get("margins", {}).items()}  # per-task margins of the kept task
        keep = lambda r: {t: r[t] for t in spec["tasks"]} if isinstance(r, dict) else r  # noqa: E731 (per-task ranges)
        spec["lr"] = keep(spec.get("lr", P.DEFAULTS["lr"]))
        spec["methods"] = {m: {**v, "lr": keep(v["lr"])} if v and "lr" in v else v for m, v in spec["methods"].items()}
    os.environ.setdefault("SOFTGRAD_MAX_STACK", "512")
    root = res if dry else None  # the pool's runs: <root>/gpu/runs (outputs/gpu/runs on the GPU)
    t0 = time.perf_counter()
    r = P.run(base, spec, profile="gpu", out_root=root, progress=False, executor="local")
    wall = time.perf_counter() - t0
    out = {"device": dev, "trials": spec["trials"], "runs": int(len(r.pool)), "wall_s": wall,
           "comparisons": r.comparisons.astype(str).to_dict(orient="records")}
    (res / f"protocol_{dev}.json").write_text(json.dumps(out, indent=1))
    print(f"protocol: {out['runs']} pooled runs, N = {spec['trials']}, {wall:.0f} s")
    return out


# ------------------------------------------------------------------ the driver


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dry-run", action="store_true", help="CPU, tiny sizes (what CI runs)")
    ap.add_argument("--steps", nargs="*", default=list(STEPS), choices=STEPS)
    ap.add_argument("--device", default=None, choices=["cpu", "cuda"])
    ap.add_argument("--results", type=Path, default=None)
    for s in ("liger", "paper", "protocol"):  # the in-process steps (the driver runs them as subprocesses)
        ap.add_argument(f"--{s}", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    import torch

    dev = a.device or ("cuda" if torch.cuda.is_available() and not a.dry_run else "cpu")
    if dev == "cpu" and not a.dry_run and not (a.liger or a.paper or a.protocol):
        print("softgrad.gpu: no CUDA device here; run with --dry-run (tiny sizes on the CPU)", file=sys.stderr)
        return 2
    dry = a.dry_run or dev == "cpu"
    if a.results is None and dry and not (a.liger or a.paper or a.protocol):
        import tempfile

        a.results = Path(tempfile.mkdtemp(prefix="softgrad-gpu-dry-"))  # nothing of a dry run lands in the tree
    res = a.results or REPO_ROOT / "benchmarks" / "results"
    res.mkdir(parents=True, exist_ok=True)
    for s, fn in (("liger", liger), ("paper", paper), ("protocol", protocol)):
        if getattr(a, s):
            fn(dev, res, dry)
            return 0
    env = {**os.environ, "SOFTGRAD_TEST_DEVICE": dev, "SOFTGRAD_PROGRESS": "0",
           "PYTHONPATH": os.pathsep.join([str(REPO_ROOT / "lib"), os.environ.get("PYTHONPATH", "")])}
    if dry:
        env.update(OMP_NUM_THREADS=env.get("OMP_NUM_THREADS", "1"))
    report, t_all = {"device": dev, "dry_run": dry, "torch": torch.__version__, "steps": []}, time.perf_counter()
    for step in a.steps:
        budget = BUDGET["cpu" if dry else "cuda"][step]
        t0, status, tail = time.perf_counter(), "ok", ""
        for cmd in commands(step, dev, res, dry):
            left = budget - (time.perf_counter() - t0)
            try:
                p = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=max(1, left))
                tail += (p.stdout + p.stderr)[-1500:]
                if p.returncode != 0:
                    status = f"failed (exit {p.returncode}): {' '.join(map(str, cmd[1:4]))}"
            except subprocess.TimeoutExpired as e:
                tail += ((e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or ""))[-1500:]
                status = f"time limit {budget} s: {' '.join(map(str, cmd[1:4]))}"
            if status != "ok":
                break
        dt = time.perf_counter() - t0
        report["steps"].append({"step": step, "status": status, "seconds": round(dt, 1), "tail": tail[-3000:]})
        print(f"[{step:8}] {status} ({dt:.0f} s of {budget})", flush=True)
        if status != "ok":
            print(tail[-1500:], file=sys.stderr)
    report["seconds"] = round(time.perf_counter() - t_all, 1)
    (res / f"gpu_{dev}.json").write_text(json.dumps(report, indent=1))
    failed = [s["step"] for s in report["steps"] if s["status"] != "ok"]
    print(f"softgrad.gpu: {len(report['steps']) - len(failed)} of {len(report['steps'])} steps ok in "
          f"{report['seconds']:.0f} s; results in {res}" + (f"; failed: {failed}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

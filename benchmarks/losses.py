"""Forward+backward time of every softgrad loss as a ratio to eager ``F.cross_entropy``.

Usage::

    python benchmarks/losses.py                 # CPU, and CUDA when available
    python benchmarks/losses.py --shapes 8192x1000 --repeats 30 --json benchmarks/results/losses_cpu.json
    python benchmarks/losses.py --allocators glibc tcmalloc --compiled   # both allocators, + compiled rows

``--allocators`` runs one child process per allocator (tcmalloc is LD_PRELOADed, which only a new process
can do) and reports their rows together; each ratio is within its own process, against that process's
``F.cross_entropy``. ``--compiled`` adds ``<loss> (compiled)`` rows: ``torch.compile(loss)`` (compile
time excluded by the warm-up); its baseline stays eager ``F.cross_entropy``.

Each cell is the median over ``--repeats`` samples (after warm-up) of forward + backward on
float32 logits with ``reduction='mean'``; the baseline is the loss a method replaces, measured in the same
run: ``F.cross_entropy``, or ``F.cross_entropy(label_smoothing=0.1)`` for a label-smoothed setting (``sgt+ls``), or
for Noisy Softmax, a classifier head rather than a loss, a bias-free linear head + ``F.cross_entropy`` (``noisy``:
``NoisySoftmaxHead`` + CE, from ``HEAD_FEATURES``-wide features to the loss and back), interleaved with the others, so the ratios are robust to machine load. A sample is
the mean of a burst of back-to-back calls lasting about 2 ms (one call at the large shapes, ~20 at 128 x 10;
``calls_per_sample`` in the JSON rows), the same burst length for every method of a shape. On CUDA the table also
reports the bytes floor (read logits once + write the gradient once at the device's measured copy
bandwidth) and peak memory per call.
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
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))
from softgrad import losses as L  # noqa: E402
from softgrad.noisy import NoisySoftmaxHead  # noqa: E402

SHAPES = [(128, 10), (4096, 10), (8192, 1000), (2048, 32000)]
TCMALLOC = [p for p in ("/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4",
                        "/usr/lib/aarch64-linux-gnu/libtcmalloc_minimal.so.4") if Path(p).exists()]
METHODS = {
    "ce": {},
    "temperature": {"beta": 0.5},
    "gradient_decay": {"beta": 0.1},
    "sgt": {"alpha": 0.3},
    "sgt+ls": {"alpha": 0.3, "label_smoothing": 0.1},  # the SGT paper's setting
    "noisy": {"alpha": 0.1},  # Noisy Softmax: a head, timed as head + CE against a linear head + CE
    "as_softmax": {"delta": 0.1},
    "sparse_softmax": {"k": 5},
    "sparsemax": {},
    "entmax15": {},
}
LS_BASELINE = "F.cross_entropy (ls=0.1)"  # what a label-smoothed loss replaces: its ratio is against this
HEAD_BASELINE = "F.cross_entropy (linear head)"  # what Noisy Softmax replaces: a bias-free linear head + CE
HEAD_FEATURES = 64  # the feature width of the heads Noisy Softmax is timed with


class _CEFunction(torch.autograd.Function):
    """F.cross_entropy's own two kernels each way, inside a Python ``autograd.Function``: the reference row
    ``CE as autograd.Function`` shows what that wrapper alone costs (the floor of any custom-backward loss)."""

    @staticmethod
    def forward(ctx, z, t):
        logp = torch.log_softmax(z, 1)
        out, total_weight = torch.ops.aten.nll_loss_forward(logp, t, None, 1, -100)
        ctx.save_for_backward(logp, t, total_weight)
        return out

    @staticmethod
    def backward(ctx, g):
        logp, t, total_weight = ctx.saved_tensors
        grad = torch.ops.aten.nll_loss_backward(g, logp, t, None, 1, -100, total_weight)
        return torch.ops.aten._log_softmax_backward_data(grad, logp, 1, logp.dtype), None


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_call(fn, device, repeats: int, inner: int = 1) -> list[float]:
    """``repeats`` samples, each the mean time of ``inner`` back-to-back calls (one sync per sample)."""
    out = []
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        _sync(device)
        out.append((time.perf_counter() - t0) / inner)
    return out


def inner_calls(fn, device, target_s: float = 2e-3, cap: int = 50) -> int:
    """Calls per sample so that one sample lasts about ``target_s``: a ~0.1 ms call timed alone varies with
    the machine's state from one call to the next; the mean of a short burst is steadier."""
    one = min(time_call(fn, device, 3))
    return max(1, min(cap, round(target_s / max(one, 1e-9))))


def allocator() -> str:
    import os

    return "tcmalloc" if "tcmalloc" in os.environ.get("LD_PRELOAD", "") else "glibc"


def bench(device: torch.device, shapes, repeats: int, methods, compiled: bool = False) -> list[dict]:
    rows = []
    # every loss module shares SoftmaxLoss.forward's code object, so dynamo counts their compilations together
    torch._dynamo.config.recompile_limit = 64
    for n, c in shapes:
        torch._dynamo.reset()
        g = torch.Generator(device="cpu").manual_seed(0)
        z0 = (torch.randn(n, c, generator=g) * 3).to(device)
        t = torch.randint(0, c, (n,), generator=g).to(device)
        z = z0.clone().requires_grad_(True)

        def run(loss_fn):
            def f():
                z.grad = None
                loss_fn(z, t).backward()
            return f

        fns = {"F.cross_entropy": run(lambda a, b: F.cross_entropy(a, b)),
               LS_BASELINE: run(lambda a, b: F.cross_entropy(a, b, label_smoothing=0.1)),
               "CE as autograd.Function": run(_CEFunction.apply)}
        if "noisy" in methods:  # Noisy Softmax perturbs the head's logits: head + CE, features to logits and back
            x = torch.randn(n, HEAD_FEATURES, generator=g).to(device).requires_grad_(True)
            head = NoisySoftmaxHead(HEAD_FEATURES, c, **METHODS["noisy"]).to(device)  # training mode: noisy

            def run_head(loss_fn):
                def f():
                    x.grad = head.weight.grad = None
                    loss_fn(x, t).backward()
                return f

            fns[HEAD_BASELINE] = run_head(lambda a, b: F.cross_entropy(a @ head.weight.t(), b))
            fns["noisy"] = run_head(lambda a, b: F.cross_entropy(head(a, b), b))
            if compiled:
                fns["noisy (compiled)"] = run_head(torch.compile(lambda a, b: F.cross_entropy(head(a, b), b),
                                                                 fullgraph=True))
        for name in methods:
            if name == "noisy":
                continue  # above
            if name in ("sparsemax", "entmax15") and c > 1000:
                continue  # sort-based, minutes at C=32000 on CPU
            loss = name.split("+")[0]
            fns[name] = run(L.make_loss(loss, **METHODS[name]))
            if compiled:
                fns[f"{name} (compiled)"] = run(torch.compile(L.make_loss(loss, **METHODS[name]), fullgraph=True))
        for f in fns.values():  # warm-up (and compilation)
            f(), f()
        inner = inner_calls(fns["F.cross_entropy"], device)  # the same burst length for every method
        times = {k: [] for k in fns}
        peaks = {}
        for _ in range(repeats):  # interleave so drift hits every method alike
            for k, f in fns.items():
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats()
                times[k] += time_call(f, device, 1, inner)
                if device.type == "cuda":
                    peaks[k] = torch.cuda.max_memory_allocated() / 2**20
        base = statistics.median(times["F.cross_entropy"])
        base_ls = statistics.median(times[LS_BASELINE])
        base_head = statistics.median(times[HEAD_BASELINE]) if HEAD_BASELINE in times else None
        floor = None
        if device.type == "cuda":  # bytes floor: read logits once, write grad once
            buf = torch.empty_like(z0)
            copy = statistics.median(time_call(lambda: buf.copy_(z0), device, 20))
            floor = copy  # a copy reads N*C*4 bytes and writes N*C*4 bytes: exactly the floor
        for k, ts in times.items():
            med = statistics.median(ts)
            smoothed = k == LS_BASELINE or METHODS.get(k.split(" ")[0], {}).get("label_smoothing")
            headed = k == HEAD_BASELINE or k.split(" ")[0] == "noisy"
            baseline, b = ((HEAD_BASELINE, base_head) if headed else (LS_BASELINE, base_ls) if smoothed
                           else ("F.cross_entropy", base))
            rows.append({"device": device.type, "allocator": allocator(), "N": n, "C": c, "loss": k,
                         "median_ms": med * 1e3, "calls_per_sample": inner, "baseline": baseline,
                         "ratio_to_ce": med / b, "ratio_to_floor": (med / floor) if floor else None,
                         "peak_MiB": peaks.get(k)})
    return rows


def print_table(rows):
    print(f"{'device':6} {'alloc':8} {'N x C':>12} {'loss':30} {'median ms':>10} {'x F.ce':>7} {'x floor':>8} {'peak MiB':>9}")
    for r in rows:
        fl = f"{r['ratio_to_floor']:.2f}" if r["ratio_to_floor"] else "-"
        pk = f"{r['peak_MiB']:.0f}" if r["peak_MiB"] else "-"
        print(f"{r['device']:6} {r.get('allocator', '?'):8} {str(r['N']) + 'x' + str(r['C']):>12} {r['loss']:30} "
              f"{r['median_ms']:10.3f} {r['ratio_to_ce']:7.2f} {fl:>8} {pk:>9}")


def _children(argv, allocators) -> list[dict]:
    """Run this script once per allocator in a child process; collect their rows."""
    import os
    import subprocess
    import tempfile

    rows = []
    for alloc in allocators:
        env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
        if alloc == "tcmalloc":
            if not TCMALLOC:
                print("tcmalloc not found (Debian: libtcmalloc-minimal4); skipping that allocator")
                continue
            env["LD_PRELOAD"] = TCMALLOC[0]
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "rows.json"
            subprocess.run([sys.executable, __file__, *argv, "--json", str(out)], env=env, check=True,
                           stdout=subprocess.DEVNULL)
            rows += json.loads(out.read_text())["rows"]
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shapes", nargs="*", default=[f"{n}x{c}" for n, c in SHAPES])
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--methods", nargs="*", default=list(METHODS))
    ap.add_argument("--device", nargs="*", default=None, help="cpu and/or cuda (default: cpu, plus cuda if present)")
    ap.add_argument("--json", type=Path, default=None, help="also write the raw rows here")
    ap.add_argument("--compiled", action="store_true", help="add torch.compile(loss) rows")
    ap.add_argument("--impl", choices=list(L.IMPLEMENTATIONS), default="auto",
                    help="softgrad.losses.implementation: 'auto' (by size), 'native' or 'fused' for every call")
    ap.add_argument("--allocators", nargs="*", default=None, choices=["glibc", "tcmalloc"],
                    help="one child process per allocator (default: this process's allocator only)")
    a = ap.parse_args(argv)
    shapes = [tuple(int(v) for v in s.split("x")) for s in a.shapes]
    devices = a.device or (["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
    if a.allocators:
        child = ["--shapes", *a.shapes, "--repeats", str(a.repeats), "--methods", *a.methods, "--device", *devices]
        child += ["--impl", a.impl]
        rows = _children(child + (["--compiled"] if a.compiled else []), a.allocators)
    else:
        rows = []
        with L.implementation(a.impl):
            for d in devices:
                rows += bench(torch.device(d), shapes, a.repeats, a.methods, a.compiled)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, {platform.processor() or platform.machine()}")
    print_table(rows)
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        meta = {"torch": torch.__version__, "threads": torch.get_num_threads(),
                "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None}
        a.json.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    return rows


if __name__ == "__main__":
    main()

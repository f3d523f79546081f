"""What the authors' tie rule costs: Sparse-softmax (forward + backward) with :func:`softgrad.losses.sparse.top_k`
against the same loss with plain ``torch.topk`` (the library's path before the tie rule) and against
``F.cross_entropy``, measured in one run.

Usage::

    python benchmarks/ties.py                                   # 128x10, 4096x10, 8192x1000, k = 5
    python benchmarks/ties.py --crossover 8 16 24 32 48         # sort form vs repair form by class count
    python benchmarks/ties.py --compiled                        # + torch.compile(loss) rows of both
    python benchmarks/ties.py --logits bf16                     # logits rounded to bf16: many ties at the k-th place

Each cell is the median over ``--repeats`` samples of forward + backward on float32 logits (``reduction='mean'``;
``--logits``: ``randn`` * 3, the same rounded to bf16, or all zeros, a zero-initialised head; the share of rows
with a tie at the k-th place is printed),
interleaved, a sample being a ~2 ms burst of calls (``benchmarks/losses.py``'s method). Rows:

- ``topk (unordered ties)``: ``torch.topk`` in place of ``top_k`` (the old path; ties kept arbitrarily);
- ``top_k (authors' ties)``: the library as it is (the sort form up to ``SORT_MAX_CLASSES`` classes, the repair
  form above);
- ``--crossover``: both forms forced at each class count, to place ``SORT_MAX_CLASSES``;
- ``--compiled``: the first two again under ``torch.compile(fullgraph=True)`` (compile time excluded).
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import statistics
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from losses import inner_calls, time_call  # noqa: E402  (benchmarks/losses.py)

from softgrad import losses as L  # noqa: E402
from softgrad.losses import sparse  # noqa: E402

SHAPES = [(128, 10), (4096, 10), (8192, 1000)]


@contextlib.contextmanager
def selection(kind: str):
    """``'topk'``: torch.topk (the old path); ``'sort'`` / ``'repair'``: one form of ``top_k`` at every C;
    ``'auto'``: the library as it is."""
    old_fn, old_max = sparse.top_k, sparse.SORT_MAX_CLASSES
    if kind == "topk":
        sparse.top_k = lambda z, k: z.topk(k, dim=1)
    elif kind in ("sort", "repair"):
        sparse.SORT_MAX_CLASSES = 1 << 62 if kind == "sort" else 0
    try:
        yield
    finally:
        sparse.top_k, sparse.SORT_MAX_CLASSES = old_fn, old_max


def bench(shapes, k: int, repeats: int, kinds: dict, compiled: bool = False, logits: str = "randn") -> list[dict]:
    dev = torch.device("cpu")
    rows = []
    for n, c in shapes:
        g = torch.Generator().manual_seed(0)
        z = torch.randn(n, c, generator=g) * 3
        z = {"randn": z, "bf16": z.bfloat16().float(), "zeros": torch.zeros_like(z)}[logits].requires_grad_(True)
        t = torch.randint(0, c, (n,), generator=g)
        kk = min(k, c)
        v = z.detach().topk(min(kk + 1, c), dim=1).values
        tied = float((v[:, -1] == v[:, kk - 1]).float().mean()) if kk < c else 0.0
        loss = L.make_loss("sparse_softmax", k=min(k, c))

        def run(kind=None, fn=loss):
            def f():
                z.grad = None
                if kind is None:
                    F.cross_entropy(z, t).backward()
                else:
                    with selection(kind):
                        fn(z, t).backward()
            return f

        fns = {"F.cross_entropy": run()} | {label: run(kind) for label, kind in kinds.items()}
        if compiled:
            torch._dynamo.reset()
            for label, kind in kinds.items():  # one compiled module per selection: each traces its own top_k
                fns[f"{label} (compiled)"] = run(kind, torch.compile(L.make_loss("sparse_softmax", k=min(k, c)),
                                                                     fullgraph=True))
        for f in fns.values():
            f(), f()
        inner = inner_calls(fns["F.cross_entropy"], dev)
        times = {name: [] for name in fns}
        for _ in range(repeats):  # interleaved: drift hits every row alike
            for name, f in fns.items():
                times[name] += time_call(f, dev, 1, inner)
        med = {name: statistics.median(ts) for name, ts in times.items()}
        first = next(iter(kinds))
        for name, m in med.items():
            rows.append({"N": n, "C": c, "k": min(k, c), "tied_rows": tied, "loss": name, "median_ms": m * 1e3,
                         "x_first": m / med[first], "x_ce": m / med["F.cross_entropy"]})
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shapes", nargs="*", default=[f"{n}x{c}" for n, c in SHAPES])
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=31)
    ap.add_argument("--compiled", action="store_true", help="add torch.compile(loss) rows")
    ap.add_argument("--logits", choices=["randn", "bf16", "zeros"], default="randn")
    ap.add_argument("--crossover", nargs="*", type=int, default=None, metavar="C",
                    help="compare the sort and repair forms at these class counts (N = 4096 and 128)")
    a = ap.parse_args(argv)
    if a.crossover:
        shapes = [(n, c) for c in a.crossover for n in (128, 4096)]
        kinds = {"repair form": "repair", "sort form": "sort"}
    else:
        shapes = [tuple(int(v) for v in s.split("x")) for s in a.shapes]
        kinds = {"topk (unordered ties)": "topk", "top_k (authors' ties)": "auto"}
    rows = bench(shapes, a.k, a.repeats, kinds, a.compiled, a.logits)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, {platform.processor() or platform.machine()}, "
          f"SORT_MAX_CLASSES {sparse.SORT_MAX_CLASSES}, logits {a.logits}")
    first = next(iter(kinds))
    print(f"{'N x C':>10} {'k':>3} {'tied':>5} {'loss':35} {'median ms':>10} {'x ' + first:>24} {'x F.ce':>7}")
    for r in rows:
        print(f"{str(r['N']) + 'x' + str(r['C']):>10} {r['k']:>3} {r['tied_rows']:5.0%} {r['loss']:35} {r['median_ms']:10.3f} "
              f"{r['x_first']:24.2f} {r['x_ce']:7.2f}")
    return rows


if __name__ == "__main__":
    main()

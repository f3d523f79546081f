"""Runs per minute: the stacked engine (K runs as one model) vs the single engine (K runs one after another).

    python benchmarks/stacked.py [--tasks T ...] [--new] [--sizes 8 32] [--rounds 3] [--setups 1x1 2x1]
                                 [--threads T] [--epochs E] [--steps] [--json FILE]

Each task is a pool in miniature: K runs of one method (temperature, its β drawn per run) that differ in seed,
learning rate and β, with a validation split, fewer epochs than the protocol. Wall time includes data
preparation and evaluation, as in a real pool. Per round both engines train the same K configs, interleaved (the
order alternates between rounds, so drift in machine speed hits both alike); the report is the median runs/min
of each engine over rounds and their ratio (stacked / single), each ratio against a baseline measured in the
same run. No result is stored.

Tasks: digits_mlp, mnist_mlp, mnist_lenet5 (the default), and with ``--new`` the MNIST-1D ones (issue 35):
mnist1d_cnn (the authors' ConvBase, SGD), mnist1d_cnn_adamw (the same under AdamW).

Setups (``--setups``, each ``PxT``: P worker processes of T threads each, all on this machine):
  1x1  one process, one thread: both engines in this process.
  2x1  two spawned worker processes of one thread each: what the quick profile runs (``threads: 1``,
       ``extra.workers: 2``; softgrad.runs' process pool). Single: each run is one task of the pool. Stacked:
       the K configs as two stacks of K/2 (``softgrad.stacked.group(parts=2)``), one task each.
  1x2  one process with two threads (this benchmark's only setup before issue 35).
Default: 1x1 and 2x1 on the CPU; ``--threads T`` alone means the one setup 1xT (``--device cuda`` too).

``--steps`` adds the per-member-step comparison behind the Conv1d stack (MNIST-1D's CNN, batch 100, AdamW,
one thread): the nn.Module with torch.optim.AdamW (single), the engine's im2col + ``baddbmm`` stack, a grouped
``conv1d`` stack and ``torch.func.vmap`` over ``functional_call`` (``stack_module_state``), each at the sizes K;
ms per member-step (medians of CPU time, interleaved) and the ratio single ÷ variant.

The MNIST-1D tasks on an idle machine (estimated 4-5 minutes on 2 idle cores, extrapolated from runs under load;
the end prints the total):
    python benchmarks/stacked.py --new --steps --json benchmarks/results/stacked_mnist1d_cpu.json
``--floor`` adds the ceiling of the MLP tasks' ratio on this CPU (one thread): the stacked model's forward and
backward alone (its batched matrix products, the ReLUs and the batch gather; no loss, no optimizer update, no
evaluation) per member-step, times a run's steps, against a whole single run measured in the same process. A
stack cannot beat single runs by more than single-run time ÷ that floor, however little else it does. Measured
for the digits MLP (issue 35's goal of 2.5x; the 256-wide hidden layers at batch 64 are matrix products
that one run already computes near this core's GEMM rate, so stacking removes overhead but not arithmetic):
    python benchmarks/stacked.py --tasks digits_mlp --floor --sizes 8 32

``--device cuda`` on a GPU machine (``softgrad.gpu`` runs it there).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import platform
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor, wait
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))
from softgrad.config import Config  # noqa: E402
from softgrad.stacked import group, train_stack  # noqa: E402
from softgrad.train import _cpu_name, train  # noqa: E402

TASKS = {
    "digits_mlp": dict(dataset="digits", model="mlp", batch_size=64, epochs=10, eval_every=10),
    "mnist_mlp": dict(dataset="mnist10k", model="mlp", batch_size=128, epochs=4, eval_every=4),
    "mnist_lenet5": dict(dataset="mnist10k", model="lenet5", batch_size=128, epochs=1, eval_every=1),
    # MNIST-1D (4,000 training samples, 3,200 after the validation split: 32 steps an epoch at batch 100)
    "mnist1d_cnn": dict(dataset="mnist1d", model="cnn1d", batch_size=100, epochs=4, eval_every=4),
    "mnist1d_cnn_adamw": dict(dataset="mnist1d", model="cnn1d", optimizer="adamw", batch_size=100, epochs=4,
                              eval_every=4),
}
NEW = ("mnist1d_cnn", "mnist1d_cnn_adamw")  # the authors' MLP (mlp1d) is residual: not stacked
DEFAULT = ("digits_mlp", "mnist_mlp", "mnist_lenet5")


def configs(task: str, k: int, threads: int, device: str, epochs: int | None, amp: str = "auto") -> list[Config]:
    t = dict(TASKS[task])
    if epochs:
        t.update(epochs=epochs, eval_every=epochs)
    adamw = t.get("optimizer") == "adamw"
    return [Config(**t, val_fraction=0.2, weight_decay=5e-4, lr_schedule="cosine", loss="temperature",
                   loss_params={"beta": round(0.25 * 16 ** (i / max(1, k - 1)), 3)},
                   lr=round((0.001 + 0.01 * i / k) if adamw else (0.02 + 0.3 * i / k), 4),
                   seed=i, threads=threads, device=device, amp=amp) for i in range(k)]


# ------------------------------------------------------------------ the two engines, timed


def _single(cfg_dicts: list[dict]) -> int:  # module level: a worker process runs it
    for d in cfg_dicts:
        train(Config(**d), progress=False)
    return len(cfg_dicts)


def _stacked(cfg_dicts: list[dict]) -> int:
    train_stack([Config(**d).replace(engine="stacked") for d in cfg_dicts], progress=False)
    return len(cfg_dicts)


class _Here:
    """Both engines in this process (setup 1xT)."""

    def single(self, cfgs) -> float:
        t0 = time.perf_counter()
        _single([c.to_dict() for c in cfgs])
        return len(cfgs) / (time.perf_counter() - t0) * 60

    def stacked(self, cfgs) -> float:
        t0 = time.perf_counter()
        _stacked([c.to_dict() for c in cfgs])
        return len(cfgs) / (time.perf_counter() - t0) * 60

    def close(self):
        pass


class _Pool(_Here):
    """P spawned worker processes (setup PxT), as softgrad.runs' process pool: one task per single run, one task
    per stack (the K configs in P stacks). One pool per P serves every task and K (its start is not timed)."""

    def __init__(self, workers: int):
        self.P = workers
        self.pool = ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"))

    def warm(self, cfgs: list[Config]) -> None:  # each worker: data loading, kernels, allocator
        wait([self.pool.submit(_stacked, [c.to_dict() for c in cfgs]) for _ in range(2 * self.P)])

    def single(self, cfgs) -> float:
        t0 = time.perf_counter()
        for f in [self.pool.submit(_single, [c.to_dict()]) for c in cfgs]:
            f.result()
        return len(cfgs) / (time.perf_counter() - t0) * 60

    def stacked(self, cfgs) -> float:
        t0 = time.perf_counter()
        for f in [self.pool.submit(_stacked, [c.to_dict() for c in g]) for g in group(cfgs, parts=self.P)]:
            f.result()
        return len(cfgs) / (time.perf_counter() - t0) * 60

    def close(self):
        self.pool.shutdown()


_POOLS: dict[int, _Pool] = {}


def measure(task: str, k: int, rounds: int, threads: int, device: str, epochs: int | None = None,
            amp: str = "auto", workers: int = 1) -> dict:
    cfgs = configs(task, k, threads, device, epochs, amp)
    warm = configs(task, 2, threads, device, 1, amp)
    if workers > 1:
        eng = _POOLS.get(workers) or _POOLS.setdefault(workers, _Pool(workers))
        eng.warm(warm)
    else:
        eng = _Here()
        torch.set_num_threads(threads)
        eng.stacked(warm)  # warm-up: data loading, kernels, allocator
    single, stacked = [], []
    for r in range(rounds):  # interleaved: the order alternates
        if r % 2 == 0:
            single.append(eng.single(cfgs))
            stacked.append(eng.stacked(cfgs))
        else:
            stacked.append(eng.stacked(cfgs))
            single.append(eng.single(cfgs))
    s, t = statistics.median(single), statistics.median(stacked)
    return {"task": task, "K": k, "epochs": cfgs[0].epochs, "optimizer": cfgs[0].optimizer, "device": device,
            "amp": amp, "threads": threads, "workers": workers, "setup": f"{workers}x{threads}",
            "single_runs_per_min": s, "stacked_runs_per_min": t, "ratio": t / s,
            "ratios_per_round": [b / a for a, b in zip(single, stacked)]}


# ------------------------------------------------------------------ --steps: the Conv1d stack's variants


def steps(sizes: list[int], rounds: int) -> list[dict]:
    """ms per member-step (CPU time, one thread) of MNIST-1D's CNN under AdamW: the nn.Module (single) and three
    ways to stack it, each variant timed in turn within every round."""
    import torch.nn.functional as F
    from torch.func import functional_call, stack_module_state, vmap

    from softgrad.data import load_dataset
    from softgrad.models import build_model
    from softgrad.stacked import _Stack, _base_data, _member_split

    torch.set_num_threads(1)
    B = 100
    ds = load_dataset("mnist1d")
    X, Y = ds.x_train, ds.y_train
    cfg = configs("mnist1d_cnn_adamw", 1, 1, "cpu", 1)[0]
    g = torch.Generator().manual_seed(0)

    def batch(K):
        idx = torch.randint(0, X.shape[0], (K, B), generator=g)
        return X[idx], Y[idx]

    def adamw(params, state):  # the engine's update for the hand-made stacks (foreach ops, scalar lr)
        state["t"] += 1
        t, grads = state["t"], [p.grad for p in params]
        with torch.no_grad():
            torch._foreach_mul_(params, 1 - 1e-3 * 5e-4)
            torch._foreach_lerp_(state["m"], grads, 0.1)
            torch._foreach_mul_(state["v"], 0.999)
            torch._foreach_addcmul_(state["v"], grads, grads, value=0.001)
            d = torch._foreach_sqrt(state["v"])
            torch._foreach_div_(d, (1 - 0.999 ** t) ** 0.5)
            torch._foreach_add_(d, 1e-8)
            u = torch._foreach_mul(state["m"], -1e-3 / (1 - 0.9 ** t))
            torch._foreach_div_(u, d)
            torch._foreach_add_(params, u)
        for p in params:
            p.grad = None

    def single_step():
        model = build_model(cfg, (40,), 10)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=5e-4)

        def step():
            x, y = batch(1)
            F.cross_entropy(model(x[0]), y[0]).backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        return step, 1

    def engine_step(K):  # the engine's own epoch loop, timed per step
        cfgs = [c.replace(engine="stacked", seed=i) for i, c in enumerate(configs("mnist1d_cnn_adamw", K, 1, "cpu", 1))]
        base = _base_data(cfgs[0])
        st = _Stack(cfgs, base, [_member_split(base, c) for c in cfgs], torch.device("cpu"), False)
        ep = [0]

        def step():
            st.train_epoch(ep[0])
            ep[0] += 1
        return step, K * st.steps_per_epoch

    def state_of(params):
        return {"m": [torch.zeros_like(p) for p in params], "v": [torch.zeros_like(p) for p in params], "t": 0}

    def grouped_step(K):
        models = [build_model(cfg, (40,), 10) for _ in range(K)]
        P = [torch.stack([dict(m.named_parameters())[n].detach() for m in models]).requires_grad_()
             for n, _ in models[0].named_parameters()]
        convs = [m for m in models[0].features if isinstance(m, torch.nn.Conv1d)]
        state = state_of(P)

        def step():
            x, y = batch(K)
            h = x.transpose(0, 1).reshape(B, K, 40)
            for i, m in enumerate(convs):
                W, b = P[2 * i], P[2 * i + 1]
                h = torch.relu(F.conv1d(h, W.reshape(-1, *W.shape[2:]), b.reshape(-1), m.stride, m.padding, 1, K))
            h = h.reshape(B, K, -1).transpose(0, 1)
            logits = torch.baddbmm(P[-1].unsqueeze(1), h, P[-2].transpose(1, 2))
            F.cross_entropy(logits.reshape(K * B, -1), y.reshape(-1), reduction="none").view(K, B).mean(1).sum().backward()
            adamw(P, state)
        return step, K

    def vmap_step(K):
        models = [build_model(cfg, (40,), 10) for _ in range(K)]
        params, _ = stack_module_state(models)
        names, P = list(params), [p.detach().requires_grad_() for p in params.values()]
        base = build_model(cfg, (40,), 10).to("meta")
        f = vmap(lambda p, x: functional_call(base, p, (x,)))
        state = state_of(P)

        def step():
            x, y = batch(K)
            logits = f(dict(zip(names, P)), x)
            F.cross_entropy(logits.reshape(K * B, -1), y.reshape(-1), reduction="none").view(K, B).mean(1).sum().backward()
            adamw(P, state)
        return step, K

    def clock(step, per, n):
        step()
        t0 = time.process_time()
        for _ in range(n):
            step()
        return (time.process_time() - t0) / (n * per) * 1e3

    rows = []
    for K in sizes:
        variants = {"single (nn.Module)": single_step(), "stacked: im2col + baddbmm (engine)": engine_step(K),
                    "stacked: grouped conv1d": grouped_step(K), "stacked: vmap(functional_call)": vmap_step(K)}
        n = {"single (nn.Module)": 200, "stacked: im2col + baddbmm (engine)": 2}
        times = {v: [] for v in variants}
        for _ in range(rounds):
            for v, (step, per) in variants.items():
                times[v].append(clock(step, per, n.get(v, max(4, 256 // K))))
        base = statistics.median(times["single (nn.Module)"])
        for v, ts in times.items():
            ms = statistics.median(ts)
            rows.append({"K": K, "variant": v, "ms_per_member_step": ms, "speedup_vs_single": base / ms})
            print(f"  K={K:3d} {v:36} {ms:7.3f} ms/member-step  {base / ms:5.2f}x", flush=True)
    return rows


# ------------------------------------------------------------------ --floor: the MLP stack's arithmetic floor


def floor(tasks: list[str], sizes: list[int], rounds: int) -> list[dict]:
    """Per task and K (one thread, CPU time): a whole single run (median over ``rounds`` runs of distinct
    configs), the stacked model's forward + backward per member-step (no loss, update or evaluation: the
    arithmetic every engine must do), the floor per member-run (that × the run's steps) and the ceiling
    single ÷ floor."""
    from softgrad.stacked import _Stack, _base_data, _member_split

    torch.set_num_threads(1)
    rows = []
    for task in tasks:
        for K in sizes:
            cfgs = [c.replace(engine="stacked") for c in configs(task, K, 1, "cpu", None)]
            base = _base_data(cfgs[0])
            st = _Stack(cfgs, base, [_member_split(base, c) for c in cfgs], torch.device("cpu"), False)
            S = cfgs[0].epochs * st.steps_per_epoch
            idx = st.tr[:, :st.B]
            y = st.y.gather(1, idx)

            def products():
                st._forward(idx, y, train=False).sum().backward()
                for p in st.plist:
                    p.grad = None
            single, fb = [], []
            train(cfgs[0].replace(engine="single"), progress=False)  # warm-up
            for r in range(rounds):
                t0 = time.process_time()
                train(cfgs[r % K].replace(engine="single"), progress=False)
                single.append(time.process_time() - t0)
                products()
                t0 = time.process_time()
                for _ in range(20):
                    products()
                fb.append((time.process_time() - t0) / 20 / K)
            s, f = statistics.median(single), statistics.median(fb)
            rows.append({"task": task, "K": K, "steps_per_run": S, "single_run_s": s, "floor_ms_per_member_step": f * 1e3,
                         "floor_run_s": f * S, "ceiling": s / (f * S)})
            print(f"  {task:12} K={K:3d} single run {s:6.3f} s; stacked forward+backward {f * 1e3:6.3f} ms per "
                  f"member-step x {S} steps = {f * S:6.3f} s; ceiling {s / (f * S):5.2f}x", flush=True)
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", nargs="*", default=None, choices=list(TASKS),
                    help=f"tasks to run (default: {' '.join(DEFAULT)})")
    ap.add_argument("--new", action="store_true", help=f"only the MNIST-1D tasks of issue 35: {' '.join(NEW)}")
    ap.add_argument("--sizes", nargs="*", type=int, default=[8, 32], help="stack sizes K (default: 8 32)")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds per task and K; medians (default 3)")
    ap.add_argument("--setups", nargs="*", default=None, metavar="PxT",
                    help="P worker processes of T threads each (default on the CPU: 1x1 2x1; see above)")
    ap.add_argument("--threads", type=int, default=None, help="shorthand for the one setup 1xT")
    ap.add_argument("--epochs", type=int, default=None, help="override every task's epochs (a quick look)")
    ap.add_argument("--steps", action="store_true", help="also the Conv1d stack's per-member-step comparison")
    ap.add_argument("--steps-only", action="store_true", help="only the per-member-step comparison")
    ap.add_argument("--floor", action="store_true", help="also the MLP tasks' ceiling (see above)")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args(argv)
    tasks = list(NEW) if a.new else (a.tasks or list(DEFAULT))
    if a.setups is None:
        a.setups = [f"1x{a.threads or 2}"] if a.threads or a.device == "cuda" else ["1x1", "2x1"]
    setups = []
    for s in a.setups:
        p, _, t = s.partition("x")
        if not (p.isdigit() and t.isdigit() and int(p) >= 1 and int(t) >= 1):
            ap.error(f"--setups: PxT with positive integers, got {s!r}")
        setups.append((int(p), int(t)))
    name = torch.cuda.get_device_name() if a.device == "cuda" else _cpu_name()
    print(f"torch {torch.__version__}, {a.device} ({name}), setups {' '.join(a.setups)} (processes x threads)")
    rows, step_rows, floor_rows = [], [], []
    t0 = time.perf_counter()
    if not a.steps_only:
        print(f"{'task':18} {'setup':>5} {'K':>3} {'single/min':>11} {'stacked/min':>12} {'ratio':>6}  per round")
        try:
            for task in tasks:
                for workers, threads in setups:
                    for k in a.sizes:
                        r = measure(task, k, a.rounds, threads, a.device, a.epochs, workers=workers)
                        rows.append(r)
                        print(f"{task:18} {r['setup']:>5} {k:3d} {r['single_runs_per_min']:11.1f} "
                              f"{r['stacked_runs_per_min']:12.1f} {r['ratio']:6.2f}  "
                              f"{' '.join(f'{x:.2f}' for x in r['ratios_per_round'])}", flush=True)
        finally:
            for pool in _POOLS.values():
                pool.close()
    if a.steps or a.steps_only:
        print("per member-step, MNIST-1D CNN, AdamW, batch 100, one thread (CPU time):")
        step_rows = steps(a.sizes, a.rounds)
    if a.floor:
        print("ceiling of the ratio, one thread (CPU time): a single run vs the stacked model's products alone:")
        floor_rows = floor([t for t in tasks if TASKS[t]["model"] == "mlp"], a.sizes, a.rounds)
    print(f"({time.perf_counter() - t0:.0f} s)")
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        out = {"device_name": name, "torch": torch.__version__, "platform": platform.platform(), "rows": rows}
        if step_rows:
            out["steps"] = step_rows
        if floor_rows:
            out["floor"] = floor_rows
        a.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()

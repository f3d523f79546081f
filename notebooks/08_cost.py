# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 08 · What each method costs
#
# Three measurements, each from a benchmark script whose raw output is kept in `benchmarks/results/`
# (`make bench`): the loss benchmark (`benchmarks/losses.py`: forward + backward as a ratio to
# `F.cross_entropy`, and on CUDA to the bytes floor), the trainer benchmarks (`benchmarks/train.py`,
# `benchmarks/throughput.py`), and AS-Speed's speed-up from chapter 05. A device whose JSON is absent was
# not measured. The last section turns the measured throughput into a compute estimate for the `paper`
# profile.

# %% tags=["parameters"]
profile = "ci"
base = None
sweeps = None
extra = None

# %% tags=["hide-input"]
import json

import numpy as np
import pandas as pd
import matplotlib.pyplot as plt
from IPython.display import Markdown, display
from myst_nb import glue

from softgrad.analysis import read_glue
from softgrad.config import expand, load_params
from softgrad.plots import COLORS, loss_cost_figure, show, table
from softgrad.book import page_header
from softgrad import protocol
from softgrad.runs import REPO_ROOT, notebook_params

NB = "08_cost"
P = notebook_params(NB, profile, base, sweeps, extra)
res = REPO_ROOT / "benchmarks" / "results"


def load(pattern):
    out = []
    for f in sorted(res.glob(pattern)):
        d = json.loads(f.read_text())
        out += [{**r, "file": f.name} for r in (d["rows"] if isinstance(d, dict) else d)]
    return pd.DataFrame(out)


losses, trainer, thr = load("losses_*.json"), load("train_*.json"), load("throughput_*.json")
if "allocator" in losses:  # one allocator per device: tcmalloc where it was measured (as `make bench` prefers)
    losses = pd.concat([sub[sub.allocator == ("tcmalloc" if (sub.allocator == "tcmalloc").any() else sub.allocator.iloc[0])]
                        for _, sub in losses.groupby("device")], ignore_index=True)
print("benchmark files:", sorted(p.name for p in res.glob("*.json")))
print("devices measured:", sorted(set(losses.get("device", [])) | set(trainer.get("device", [])) | set(thr.get("device", []))))
page_header(NB, P)

# %% [markdown]
# ## Loss cost: forward + backward relative to the loss it replaces (median over repeats, same run)
#
# The baseline is `F.cross_entropy`, measured in the same run; a label-smoothed setting (`sgt+ls`) is compared
# with `F.cross_entropy(label_smoothing=0.1)`, which costs about twice as much at small shapes. Each repeat
# times a burst of back-to-back calls lasting about 2 ms (one call at the large shapes), interleaved across
# the losses; a single ~0.1 ms call varies too much with the machine's state to compare. Small inputs
# (fewer than `softgrad.losses.FUSED_MIN_NUMEL` logits) take the native compositions, large ones the fused
# one-pass Functions.

# %% tags=["hide-input"] mystnb={"figure": {"name": "fig-08-loss-cost", "caption": "{glue:md}`fig_08_loss_cost_num` Forward + backward time of CE and the five papers' methods relative to the loss each replaces, measured in the same run (median over repeats), per batch × classes shape, eager and compiled, log scale: `F.cross_entropy`, or for Noisy Softmax, a classifier head, a linear head + `F.cross_entropy` (its head + CE against it). The table below lists every benchmarked loss. {glue:md}`fig_08_loss_cost_src`"}}
if len(losses):
    fig = loss_cost_figure(losses)  # the book's methods; the table below lists every benchmarked loss
    show(fig, "08_loss_cost", profile, NB, runs=None)
else:
    print("no loss benchmark results: run `make bench`")

# %% tags=["hide-input"]
if len(losses):
    shapes = losses.assign(shape=losses.N.astype(str) + " × " + losses.C.astype(str))
    wide = shapes[~shapes.loss.str.startswith("F.cross_entropy")].pivot_table(index=["device", "loss"], columns="shape",
                                                                 values="ratio_to_ce", sort=False)
    display(table(wide.reset_index(), formats={c: "{:.2f}×" for c in wide.columns}))

# %% [markdown]
# ## Trainer throughput

# %% tags=["hide-input"] mystnb={"figure": {"name": "fig-08-trainer", "caption": "{glue:md}`fig_08_trainer_num` softgrad's trainer throughput relative to a hand-written loop and to a plain DataLoader loop. {glue:md}`fig_08_trainer_src`"}}
if len(trainer):
    t = trainer.set_index(["device", "model"])[["softgrad", "hand_loop", "dataloader", "vs_hand", "vs_dataloader"]]
    fig, ax = plt.subplots(figsize=(7, 3))
    t[["vs_hand", "vs_dataloader"]].rename(columns={"vs_hand": "÷ hand-written loop", "vs_dataloader": "÷ DataLoader loop"}
                                           ).plot.barh(ax=ax)
    ax.axvline(1.0, color="k", lw=0.8)
    ax.set_xlabel("samples per second, softgrad ÷ baseline")
    ax.set_ylabel("device, model")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    show(fig, "08_trainer", profile, NB, runs=None)

# %% tags=["hide-input"]
if len(trainer):
    display(table(t.reset_index(), names={"softgrad": "softgrad (samples/s)", "hand_loop": "hand-written loop (samples/s)",
                                          "dataloader": "DataLoader loop (samples/s)", "vs_hand": "÷ hand-written",
                                          "vs_dataloader": "÷ DataLoader"},
                  formats={"softgrad (samples/s)": "{:,.0f}", "hand-written loop (samples/s)": "{:,.0f}",
                           "DataLoader loop (samples/s)": "{:,.0f}", "÷ hand-written": "{:.2f}",
                           "÷ DataLoader": "{:.2f}"}))
if len(thr):
    display(table(thr[["device", "model", "batch", "softgrad_samples_per_s", "dataloader_samples_per_s", "vs_dataloader"]],
                  names={"softgrad_samples_per_s": "softgrad (samples/s)", "dataloader_samples_per_s":
                         "DataLoader pipeline (samples/s)", "vs_dataloader": "÷ DataLoader"},
                  formats={"softgrad (samples/s)": "{:,.0f}", "DataLoader pipeline (samples/s)": "{:,.0f}",
                           "÷ DataLoader": "{:.2f}"}))

# %% [markdown]
# ## AS-Speed against the paper's 1.2× claim (chapter 05, this profile)
# {glue:md}`cost_as_speed_text`

# %% tags=["hide-input"] mystnb={"figure": {"name": "fig-08-as-speed", "caption": "{glue:md}`fig_08_as_speed_num` AS-Speed against CE from chapter 05: how many times fewer optimizer steps and how much less wall-clock time it needed to reach CE's accuracy (less 0.5 points), with 95% bootstrap intervals over seeds, beside the paper's 1.2× claim. {glue:md}`fig_08_as_speed_src`"}}
g = read_glue(REPO_ROOT / "outputs" / P["profile"] / "notebooks" / "05_adaptive_sparse.ipynb")
bars = {"optimizer steps": g["claim_as_speed_steps"], "wall clock (this machine)": g["claim_as_speed_time"]}
# a ratio of 0 means AS-Speed never reached CE's accuracy (its mean time is infinite): there is no bar to draw
drawn = {k: v for k, v in bars.items() if v.get("est") is not None and np.isfinite(v["est"]) and v["est"] > 0}
never = [k for k in bars if k not in drawn]
if drawn:
    fig, ax = plt.subplots(figsize=(6.5, 0.5 * len(drawn) + 1.3))
    est_ = np.array([v["est"] for v in drawn.values()])
    err = np.array([[v["est"] - v["lo"] for v in drawn.values()], [v["hi"] - v["est"] for v in drawn.values()]])
    ax.barh(list(drawn), est_, xerr=err, capsize=3, color=COLORS["as_softmax"], alpha=0.7)
    ax.axvline(1.2, color="k", ls="--", lw=0.8, label="paper: 1.2×")
    ax.axvline(1.0, color="0.5", lw=0.8)
    ax.set_xlabel("CE ÷ AS-Speed, to CE's accuracy")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    show(fig, "08_as_speed", profile, NB, runs=None)
fmt = lambda v: f"{v['est']:.2f}× [{v['lo']:.2f}, {v['hi']:.2f}]"
glue("cost_as_speed_text", Markdown(
    ("To reach CE's accuracy (less 0.5 points), AS-Speed needed " + " and ".join(
        f"{fmt(v)} fewer {'optimizer steps' if k == 'optimizer steps' else 'seconds of wall-clock time'}"
        for k, v in drawn.items()) + " (95% intervals over seeds; the paper claims about 1.2×). " if drawn else "")
    + (f"For the {' and the '.join(never)}, there is nothing to draw: in this profile at least one AS-Speed run "
       "never reached CE's accuracy (less 0.5 points), so AS-Speed's mean cost is infinite and the ratio to CE is 0 "
       "— no speed-up, against the paper's 1.2×. Chapter 05 shows how far each run got." if never else "")),
    display=False)
print("AS-Speed ÷ CE to CE's accuracy: " + "; ".join(f"{k}: {fmt(v)}" for k, v in bars.items()))

# %% [markdown]
# ## Compute estimate for the `paper` profile
# Sample-epochs of every run in `params/paper/*.yaml` (training-set sizes of the torchvision datasets),
# divided by the measured throughput of that model on each measured device. Evaluation passes and data
# loading are not counted, so these are lower bounds.

# %% tags=["hide-input"] mystnb={"figure": {"name": "fig-08-paper-hours", "caption": "{glue:md}`fig_08_paper_hours_num` Estimated device-hours of the `paper` profile per notebook and device (lower bound, from measured throughput), log scale. {glue:md}`fig_08_paper_hours_src`"}}
TRAIN_SIZE = P["extra"]["train_size"]
rows = []
for f in sorted((REPO_ROOT / "params" / "paper").glob("0[0-9]_*.yaml")):
    p = load_params(f)
    cfgs = [c for s in p["sweeps"].values() for c in expand(p["base"], s)]
    uniq = {json.dumps(c.to_dict(), sort_keys=True): c for c in cfgs}.values()
    for c in uniq:
        rows.append({"notebook": f.stem, "model": c.model, "sample_epochs": c.epochs * TRAIN_SIZE.get(c.dataset, 0)})
    if "protocol" in p["extra"]:  # 06: every run of the pooled protocol (CE's longer runs included), twice if rerun
        spec = protocol.check_spec(p["extra"]["protocol"])
        reps = 2 if spec["rerun_loss_impl"] else 1
        rows += [{"notebook": f.stem, "model": c.model, "sample_epochs": c.epochs * TRAIN_SIZE.get(c.dataset, 0)}
                 for c in protocol.plan(p["base"], spec) for _ in range(reps)]
plan = pd.DataFrame(rows)
if len(plan) and len(thr):
    est = []
    for (nb, model), sub in plan.groupby(["notebook", "model"]):
        for _, r in thr[thr.model == model].iterrows():
            est.append({"notebook": nb, "device": r["device"], "runs": len(sub),
                        "hours": sub.sample_epochs.sum() / r["softgrad_samples_per_s"] / 3600})
    est = pd.DataFrame(est).groupby(["notebook", "device"]).agg(runs=("runs", "sum"), hours=("hours", "sum"))
    total = est.groupby(level="device").hours.sum()
    for dev, h in total.items():
        glue(f"cost_paper_hours_{dev}", float(h), display=False)
    fig, ax = plt.subplots(figsize=(7, 3))
    est.hours.unstack("device").plot.barh(ax=ax, logx=True)
    ax.set_xlabel("device-hours (lower bound, from measured throughput)")
    ax.legend(title="device", fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    show(fig, "08_paper_hours", profile, NB, runs=None)

# %% tags=["hide-input"]
if len(plan) and len(thr):
    if "cuda" not in set(thr.device):
        print("no CUDA throughput measured yet: the estimate is for the CPU measured here")
    display(table(est.reset_index().drop(columns="runs"), names={"hours": "device-hours (lower bound)"},
                  formats={"device-hours (lower bound)": "{:,.1f}"}))

# %% [markdown]
# ## Many small runs on one device: the stacked engine and the prepared GPU script
#
# Chapter 06's pool is hundreds of small runs that differ only in seed, learning rate and the method's knob. One
# small run is launch-bound on a GPU (an MNIST MLP step is about 43 ATen ops, one kernel launch each), so the
# stacked engine (`engine: stacked`, `softgrad.stacked`) trains K such runs as one model with a leading member
# dimension: one batched GEMM (or grouped convolution) per layer and one loss call for all K·B rows; each member is
# still stored as an ordinary run and equals its single-engine run to float32 rounding (`tests/test_stacked.py`).
# `benchmarks/stacked.py` measures runs per minute, stacked against single, on the same cores (table below).
#
# No GPU has been lent to this project yet. The script for the first one is prepared and tested on the CPU
# (`make gpu-dry`, in CI): `make gpu` (`python -m softgrad.gpu`) runs, each step under its own time limit and
# within 10 minutes on one H100, the CUDA-relevant tests (stacked engine, bf16, resume); the loss benchmark
# against `F.cross_entropy` (with a Liger-Kernel row where `liger_kernel` is installed in the venv: the machine
# has no internet); trainer throughput in fp32, bf16, channels_last and compiled, stacked and single; every
# `params/paper/*.yaml` for a few steps on CIFAR-shaped synthetic tensors with the right class count (no crash,
# finite loss, warm-up and AS-Speed branches); and chapter 06's protocol at N = 512 trial indices on the quick
# tasks with the stacked engine. It writes `benchmarks/results/*_cuda.json`, which this chapter reads when present.

# %% tags=["hide-input"]
stacked = load("stacked_*.json")
if len(stacked):
    display(table(stacked[["device", "task", "K", "threads", "single_runs_per_min", "stacked_runs_per_min", "ratio"]],
                  names={"single_runs_per_min": "single (runs/min)", "stacked_runs_per_min": "stacked (runs/min)",
                         "ratio": "stacked ÷ single"},
                  formats={"single (runs/min)": "{:,.1f}", "stacked (runs/min)": "{:,.1f}", "stacked ÷ single": "{:.2f}"}))
else:
    print("stacked engine not benchmarked yet (python benchmarks/stacked.py --json benchmarks/results/stacked_cpu.json)")
for name in ("gpu_cuda.json", "protocol_cuda.json", "paper_smoke_cuda.json", "liger_cuda.json"):
    f = res / name
    if f.exists():
        d = json.loads(f.read_text())
        if name == "gpu_cuda.json":
            print("GPU script:", ", ".join(f"{s['step']} {s['status']} ({s['seconds']:.0f} s)" for s in d["steps"]))
        elif name == "protocol_cuda.json":
            print(f"protocol on CUDA: {d['runs']} pooled runs at N = {d['trials']} in {d['wall_s'] / 60:.1f} min")
        elif name == "paper_smoke_cuda.json":
            print(f"paper parameter files on CUDA: {sum(r['ok'] for r in d['rows'])} of {len(d['rows'])} settings ran")
        else:
            print("Liger-Kernel:", d["status"])
    elif name == "gpu_cuda.json":
        print("not measured on CUDA yet: no GPU has been lent to this project (make gpu on the first one)")

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
# **The finding.** {glue:md}`cost_finding` {glue:md}`cost_ref_text`
#
# Three measurements, each from a script a reader can run on their own machine; the raw output is kept in
# `benchmarks/results/<script>_<device>.json`, and this chapter draws every device it finds there:
#
# - `make bench` runs, on the device it finds (CUDA if PyTorch sees one, else the CPU), the loss benchmark
#   (`benchmarks/losses.py`: forward + backward of each loss as a ratio to `F.cross_entropy`, eager and compiled,
#   and on CUDA against the time to read and write the logits once) and the trainer benchmarks
#   (`benchmarks/train.py`: softgrad's trainer against a hand-written loop and a DataLoader loop;
#   `benchmarks/throughput.py`: samples per second per model, which the last section turns into a compute
#   estimate for the `paper` profile).
# - `python benchmarks/stacked.py --json benchmarks/results/stacked_cpu.json` measures runs per minute of the
#   stacked engine against one run at a time.
# - `make gpu` (`python -m softgrad.gpu`) runs all of the above on a GPU, plus the CUDA tests and chapter 06's
#   protocol at a larger pool (the section on many small runs).
#
# A device without a file has no columns (run `make bench` on a GPU for CUDA's). AS-Speed's speed-up comes from
# chapter 05's runs; the only runs this chapter trains check the trainer against MNIST-1D's reference accuracies.

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
from softgrad.common import interval_text, number
from softgrad.config import expand, load_params
from softgrad.plots import (COLORS, device_name, loss_cost_figure, loss_name, model_name, paper_hours_figure, show,
                            table, trainer_figure)
from softgrad.book import page_header
from softgrad import protocol
from softgrad.reference import AUTHORS_OTHER, AUTHORS_STEPS, reference_table
from softgrad.runs import REPO_ROOT, notebook_params, run_params

NB = "08_cost"
P = notebook_params(NB, profile, base, sweeps, extra)
res = REPO_ROOT / "benchmarks" / "results"


def load(pattern, key="rows"):
    out = []
    for f in sorted(res.glob(pattern)):
        d = json.loads(f.read_text())
        out += [{**r, "file": f.name} for r in (d.get(key, []) if isinstance(d, dict) else d if key == "rows" else [])]
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

# %% tags=["hide-input"] mystnb={"figure": {"name": "fig-08-loss-cost", "caption": "{glue:md}`fig_08_loss_cost_num` Forward + backward time of CE and the five papers' methods relative to the loss each replaces, measured in the same run (median over repeats), per batch × classes shape, eager and compiled, log scale: `F.cross_entropy`, or for Noisy Softmax, a classifier head, a linear head + `F.cross_entropy` (its head + CE against it). The CE row is softgrad's own cross-entropy (`make_loss("ce")`) against `F.cross_entropy`: its excess above 1× is the thin wrapper every softgrad loss shares (Python and one autograd node), and is included in every other ratio. The table below lists every benchmarked loss. {glue:md}`fig_08_loss_cost_src`"}}
if len(losses):
    fig = loss_cost_figure(losses)  # the book's methods; the table below lists every benchmarked loss
    show(fig, "08_loss_cost", profile, NB, runs=None)
else:
    print("no loss benchmark results in benchmarks/results: run `make bench`")

# %% tags=["hide-input", "hide-output"]
if len(losses):
    shapes = losses.assign(shape=losses.N.astype(str) + " × " + losses.C.astype(str))
    wide = shapes[~shapes.loss.str.startswith("F.cross_entropy")].pivot_table(index=["device", "loss"], columns="shape",
                                                                 values="ratio_to_ce", sort=False).reset_index()
    wide = wide.assign(device=wide.device.map(device_name), loss=wide.loss.map(loss_name))  # words, not code names
    display(table(wide, formats={c: "{:.2f}×" for c in wide.columns if "×" in str(c)}))

# %% tags=["remove-cell"]
# each method's cost at a small classifier's batch (128 × 10, eager, the CPU), for "Which loss should I use?"
small = losses[(losses.get("device", pd.Series(dtype=str)) == "cpu") & (losses.N == 128) & (losses.C == 10)] \
    if len(losses) else losses
for m in ("ce", "temperature", "gradient_decay", "noisy", "sgt", "as_softmax"):
    r = small[small.loss == m] if len(small) else small
    glue(f"cost_small_{m}", f"{number(float(r.ratio_to_ce.iloc[0]))}×" if len(r) else "not measured", display=False)
ratios = {m: float(small[small.loss == m].ratio_to_ce.iloc[0]) for m in ("temperature", "gradient_decay", "noisy",
                                                                          "sgt", "as_softmax")
          if len(small) and (small.loss == m).any()}
glue("cost_finding", Markdown(
    (f"On the CPU, at a small classifier's batch (128 × 10, eager), each loss's forward and backward costs between "
     f"{number(min(ratios.values()))}× and {number(max(ratios.values()))}× `F.cross_entropy` "
     f"(the most: {protocol.SHORT[max(ratios, key=ratios.get)]}); in a whole training step that is a small part "
     "(chapter 06's figure *Cost* times whole runs)." if ratios else
     "No loss benchmark result is stored for the CPU here: run `make bench`.")), display=False)

# %% [markdown]
# ## Trainer throughput

# %% tags=["hide-input"] mystnb={"figure": {"name": "fig-08-trainer", "caption": "{glue:md}`fig_08_trainer_num` softgrad's trainer throughput relative to a hand-written loop and to a plain DataLoader loop. {glue:md}`fig_08_trainer_src`"}}
if len(trainer):
    t = trainer.set_index(["device", "model"])[["softgrad", "hand_loop", "dataloader", "vs_hand", "vs_dataloader"]]
    fig = trainer_figure(trainer)  # models and devices in words ("LeNet-5, CPU")
    show(fig, "08_trainer", profile, NB, runs=None)

# %% tags=["hide-input", "hide-output"]
if len(trainer):
    t = t.reset_index().assign(device=lambda d: d.device.map(device_name), model=lambda d: d.model.map(model_name))
    display(table(t, names={"softgrad": "softgrad (samples/s)", "hand_loop": "hand-written loop (samples/s)",
                                          "dataloader": "DataLoader loop (samples/s)", "vs_hand": "÷ hand-written",
                                          "vs_dataloader": "÷ DataLoader"},
                  formats={"softgrad (samples/s)": "{:,.0f}", "hand-written loop (samples/s)": "{:,.0f}",
                           "DataLoader loop (samples/s)": "{:,.0f}", "÷ hand-written": "{:.2f}",
                           "÷ DataLoader": "{:.2f}"}))
if len(thr):
    display(table(thr[["device", "model", "batch", "softgrad_samples_per_s", "dataloader_samples_per_s", "vs_dataloader"]]
                  .assign(device=lambda d: d.device.map(device_name), model=lambda d: d.model.map(model_name)),
                  names={"softgrad_samples_per_s": "softgrad (samples/s)", "dataloader_samples_per_s":
                         "DataLoader pipeline (samples/s)", "vs_dataloader": "÷ DataLoader"},
                  formats={"softgrad (samples/s)": "{:,.0f}", "DataLoader pipeline (samples/s)": "{:,.0f}",
                           "÷ DataLoader": "{:.2f}"}))

# %% [markdown]
# ## The trainer against MNIST-1D's reference accuracies
#
# Before MNIST-1D (Greydanus & Kobak, ICML 2024; dataset `mnist1d`, generated offline by the authors' package)
# judges any loss, CE is trained here with the authors' setup (`softgrad.reference.AUTHORS_SETUP`): their MLP and
# CNN (`mlp1d`, `cnn1d`: `MLPBase` with 100 hidden units and its residual second layer, `ConvBase` with 25
# channels), Adam (`optimizer: adamw`, weight decay 0) at a constant learning rate 1e-2, batch 100, 6,000 steps
# (150 epochs of the frozen set's 4,000 training signals), on their frozen test split of 1,000. They report 68%
# (MLP) and 94% (CNN). The trainer reshuffles the batches every epoch where their loop cycles through the
# training set in one order; a seed-to-seed spread is shown, where they report one run.
# {glue:md}`cost_ref_text`

# %% tags=["hide-input"]
ref_df = run_params(P)
ref = reference_table(ref_df)
print(f"{len(ref_df[ref_df.final])} runs: " + "; ".join(
    f"{r.model} {r.runs} seed{'s' if r.runs != 1 else ''} × {r.steps} optimizer steps ({r.epochs} epochs)"
    for r in ref.itertuples()) + f"; the authors' setup and {AUTHORS_STEPS:,} steps: {bool(ref.authors_setup.all())}")

# %% tags=["hide-input", "nbval-ignore-output"]
def _acc(r):
    return f"{100 * r.test_acc_mean:.1f}%" + (f" (sd {100 * r.test_acc_std:.1f} points)" if r.runs > 1 else "")


for r in ref.itertuples():
    glue(f"cost_ref_{r.model}_acc", float(r.test_acc_mean), display=False)
glue("cost_ref_text", Markdown(
    ("With the authors' setup, CE reaches " if ref.authors_setup.all() else
     f"**This profile cuts the authors' {AUTHORS_STEPS:,} steps to {ref.steps.iloc[0]:,}**, so its accuracies are not "
     "comparable with theirs; here CE reaches ")
    + " and ".join(f"{_acc(r)} with their {'CNN' if 'cnn' in r.model else 'MLP'} (`{r.model}`; they report "
                   f"{100 * r.authors:.0f}%)" for r in ref.itertuples())
    + (" (means over seeds)" if (ref.runs > 1).any() else "")
    + f", in {' and '.join(f'{r.train_seconds:.1f} s' for r in ref.itertuples())} of training per run (evaluation "
    f"excluded) on this machine's {ref_df.device.iloc[0].upper()}"
    + (f" with {threads} thread{'s' if threads > 1 else ''}" if (threads := int(ref_df.threads.iloc[0])) else "")
    + ". The authors' other references: "
    + ", ".join(f"{k} {100 * v:.0f}%" for k, v in AUTHORS_OTHER.items()) + "."), display=False)
display(table(ref.drop(columns="authors_setup").assign(difference=lambda d: 100 * d.difference),
              names={"runs": "seeds", "steps": "optimizer steps", "test_acc_mean": "test accuracy (mean)",
                     "test_acc_std": "sd", "test_acc_min": "min", "test_acc_max": "max", "authors": "authors",
                     "difference": "mean − authors (points)", "train_seconds": "training s / run"},
              formats={"test accuracy (mean)": "{:.2%}", "sd": "{:.2%}", "min": "{:.1%}", "max": "{:.1%}",
                       "authors": "{:.0%}", "mean − authors (points)": "{:+.2f}", "training s / run": "{:.1f}"}))

# %% [markdown]
# ## AS-Speed against the paper's 1.2× claim (chapter 05, this profile)
# The paper claims "about 1.2x training speedup comparing with the standard softmax while maintaining
# classification effectiveness". Chapter 05 compares AS-Speed with CE as the paper does, both trained for the same
# epochs: how many times as many optimizer steps and as much training wall-clock time CE took, and how far
# AS-Speed's final accuracy is from CE's. {glue:md}`cost_as_speed_text`

# %% tags=["hide-input"] mystnb={"figure": {"name": "fig-08-as-speed", "caption": "{glue:md}`fig_08_as_speed_num` AS-Speed against CE from chapter 05, both trained for the same epochs: CE's optimizer steps and training wall-clock time divided by AS-Speed's, with 95% bootstrap intervals over seeds, beside the paper's 1.2× claim. {glue:md}`fig_08_as_speed_src`"}}
g = read_glue(REPO_ROOT / "outputs" / P["profile"] / "notebooks" / "05_adaptive_sparse.ipynb")
bars = {"optimizer steps": g["as_speed_steps_est"], "wall clock (this machine)": g["claim_as_speed_time"]}
# a ratio without a finite estimate has no bar
drawn = {k: v for k, v in bars.items() if v.get("est") is not None and np.isfinite(v["est"]) and v["est"] > 0}
if drawn:
    fig, ax = plt.subplots(figsize=(6.5, 0.5 * len(drawn) + 1.3))
    est_ = np.array([v["est"] for v in drawn.values()])
    err = np.array([[v["est"] - v["lo"] for v in drawn.values()], [v["hi"] - v["est"] for v in drawn.values()]])
    ax.barh(list(drawn), est_, xerr=err, capsize=3, color=COLORS["as_softmax"], alpha=0.7)
    ax.axvline(1.2, color="k", ls="--", lw=0.8, label="paper: 1.2×")
    ax.axvline(1.0, color="0.5", lw=0.8)
    ax.set_xlabel("CE ÷ AS-Speed, the same epochs")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    show(fig, "08_as_speed", profile, NB, runs=None)
fmt = lambda v: interval_text(v.get("est"), v.get("lo"), v.get("hi"), sign=False)  # noqa: E731 (ratios: unsigned)
q = g["claim_as_speed_quality"]
glue("cost_as_speed_text", Markdown(
    f"Here CE took {fmt(bars['optimizer steps'])} times as many optimizer steps and "
    f"{fmt(bars['wall clock (this machine)'])} times as much training time (this machine), and AS-Speed's final "
    f"accuracy differed from CE's by {interval_text(q.get('est'), q.get('lo'), q.get('hi'), 'acc')} points (95% "
    "intervals over seeds; the verdicts are in chapter 07). The steps saved are the mechanism; how much time they "
    "save depends on the share of a training step the optimizer's update takes, which differs between a small MLP on "
    "a CPU and the paper's models: rerunning chapter 05 on your hardware (`python -m softgrad.pipeline notebooks "
    "--only 05_adaptive_sparse`) measures it there."),
    display=False)
print("CE ÷ AS-Speed, the same epochs: " + "; ".join(f"{k}: {fmt(v)}" for k, v in bars.items()))

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
    fig = paper_hours_figure(est.hours)  # chapters and devices in words ("06 · head to head", "CPU")
    show(fig, "08_paper_hours", profile, NB, runs=None)

# %% tags=["hide-input"]
if len(plan) and len(thr):
    if "cuda" not in set(thr.device):
        print("no CUDA throughput in benchmarks/results (run `make bench` on a GPU to add the CUDA column): the "
              "estimate is for the CPU measured here")
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
# P×T: P processes of T threads. An MLP's products already run near the CPU's GEMM rate in one run, so a stack
# removes only the rest; the second table (`--floor`: MLPs, 1×1) is the ceiling, a single run ÷ its products.
#
# On a GPU, `make gpu` (`python -m softgrad.gpu`) runs, each step under its own time limit (budgeted at 10 minutes in
# all on one H100; not yet run on one): the CUDA-relevant tests (stacked engine, bf16, resume); the loss benchmark against
# `F.cross_entropy` (with a Liger-Kernel row where `liger_kernel` is installed in the venv); trainer throughput in
# fp32, bf16, channels_last and compiled, stacked and single; every `params/paper/*.yaml` for a few steps on
# CIFAR-shaped synthetic tensors with the right class count (no crash, finite loss, warm-up and AS-Speed branches);
# and chapter 06's protocol at N = 512 trial indices on the quick tasks with the stacked engine. It writes
# `benchmarks/results/*_cuda.json`, which this chapter reads when present. `make gpu-dry` runs the same steps on
# the CPU at tiny sizes in about a minute (CI runs it), so the script is tested before a GPU is at hand.

# %% tags=["hide-input", "hide-output"]
stacked = load("stacked_*.json")
if len(stacked):
    cols = [c for c in ("device", "task", "optimizer", "K", "setup", "threads", "single_runs_per_min",
                        "stacked_runs_per_min", "ratio") if c in stacked]
    display(table(stacked[cols].fillna("").assign(device=lambda d: d.device.map(device_name)),
                  names={"setup": "processes × threads", "K": "members per stack",
                         "single_runs_per_min": "single (runs/min)", "stacked_runs_per_min": "stacked (runs/min)",
                         "ratio": "stacked ÷ single"},
                  formats={"single (runs/min)": "{:,.1f}", "stacked (runs/min)": "{:,.1f}", "stacked ÷ single": "{:.2f}"}))
else:
    print("stacked engine not benchmarked yet (python benchmarks/stacked.py --json benchmarks/results/stacked_cpu.json)")
floor = load("stacked_*.json", "floor")
if len(floor):  # the MLP stack's ceiling: a whole single run ÷ the stacked model's products alone (--floor)
    display(table(floor[["task", "K", "steps_per_run", "single_run_s", "floor_run_s", "ceiling"]],
                  names={"K": "members per stack", "steps_per_run": "steps per run", "single_run_s": "single run (s)",
                         "floor_run_s": "stacked products per member-run (s)", "ceiling": "ceiling of stacked ÷ single"},
                  formats={"single run (s)": "{:.3f}", "stacked products per member-run (s)": "{:.3f}",
                           "ceiling of stacked ÷ single": "{:.2f}"}))
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
        print("no CUDA results in benchmarks/results: run `make gpu` on a GPU to add them")

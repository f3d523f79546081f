# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 06 · Head to head under one fair protocol
#
# **What is estimated.** For each loss and task: *the test metric you get when you run a T-trial random
# search over the learning rate and the loss's own knob and keep the model the search picks on validation*
# (T = {glue:text}`h2h_select:d`), and its difference Δ to the same quantity for plain cross-entropy, whose
# learning rate is searched with the same budget.
#
# **What this book finds.** Of {glue:text}`h2h_n_cells:d` (task, method) accuracy comparisons with CE,
# {glue:text}`h2h_acc_reproduced:d` showed a significant gain, {glue:text}`h2h_acc_reversed:d` a significant
# loss, {glue:text}`h2h_acc_no:d` no detectable effect (the whole interval within ±0.5 points) and
# {glue:text}`h2h_acc_inconclusive:d` were inconclusive at this budget. Across tasks (table below) the verdicts
# are {glue:md}`h2h_agg_acc_summary`. Rerunning the whole protocol with the losses' other implementation
# (same formulas, agreement to rounding) reproduced {glue:text}`h2h_agree_pct:.0f`% of the
# {glue:text}`h2h_agree_n:d` verdicts (the bootstrap predicted {glue:text}`h2h_predicted_pct:.0f`%), with
# {glue:text}`h2h_swaps:d` swap between reproduced and reversed; {glue:text}`h2h_inconclusive_pct:.0f`% of the
# verdicts are inconclusive. That misses the design's goal of 95%, and so does the bootstrap's prediction for
# a rerun that also redraws seeds and settings; the power analysis below puts the goal at
# {glue:text}`h2h_power_goal:s` trial indices per task, beyond what this profile's hour on two CPU cores can
# train. Trained twice as long, CE {glue:md}`h2h_conv_summary`; a gain over CE on a task where CE still gains
# from training longer is not counted (see below). Retrained with fresh seeds, the models
# the searches pick lost {glue:text}`h2h_curse_mean:.2f` points of test accuracy on average (the winner's
# curse; range over methods and tasks {glue:text}`h2h_curse_min:+.2f` to {glue:text}`h2h_curse_max:+.2f`).
#
# **The design** (`softgrad.protocol`, after Dodge et al. 2019 and Bouthillier et al. 2021). Per task, one
# pool of N = {glue:text}`h2h_trials:d` trial indices. Index *i* fixes, for every method (CE included), the seed —
# initialisation, data order, label noise and a fresh stratified train/validation re-split — and the learning
# rate (one Latin-hypercube column over log-lr shared by all methods); each method draws its own knob from its
# own Latin-hypercube column. Every (method, *i*) is trained once ({glue:text}`h2h_n_runs:d` runs in all, on
# {glue:text}`h2h_n_tasks:d` tasks), recording validation and test metrics.
#
# - *The estimand in closed form.* Sorting a pool by validation accuracy, the trial of rank *j* is the one a
#   random T-subset keeps with probability C(*j*−1, T−1)/C(N, T) (without replacement; tied trials share
#   their ranks' probability). E_T is the weighted mean of the test metric; Δ = E_T(method) − E_T(CE). The
#   test set never takes part in a choice.
# - *Intervals with the selection inside.* The trial indices are resampled (bootstrap,
#   {glue:text}`h2h_bootstrap:d` replicates), the same indices for every method, so a replicate redraws seeds,
#   splits and learning rates together and the comparison stays paired. Within each metric, the
#   (task, method) comparisons form a family tested by Holm's step-down; each interval is printed at the
#   level of its Holm step (at least 95%), so an interval excludes 0 exactly when Holm rejects — a verdict
#   never contradicts the interval beside it. The across-task mean uses a stratified bootstrap (indices
#   resampled within each task), Bonferroni over the methods.
# - *Verdicts.* *No detectable effect*: the whole interval lies within ± the equivalence margin (0.5 points of
#   accuracy and ECE, 0.02 of NLL; `extra.protocol.margins`), checked first: an effect smaller than the
#   margin is not the effect a paper claims, even where the interval excludes 0. Otherwise *reproduced* /
#   *reversed*: the interval excludes 0 on the claimed / other side; otherwise *inconclusive at this budget*.
# - *P(beats CE)*: over shared random T-subsets of the indices, the share in which the method's
#   validation-picked model beats CE's on test (Bouthillier et al. 2021), with its bootstrap interval.
# - *Convergence.* CE is also trained for twice the epochs on {glue:text}`h2h_longer_trials:d` of the indices.
#   Its rule, on the interval of the paired test-accuracy gain: *converged* inside ±0.5 points, *not
#   converged* above 0, *longer training hurts* below 0, else *undetermined*. On a *not converged* task a
#   *reproduced* verdict (a method beats CE) is reported as *inconclusive at this budget*, across tasks too:
#   a gain over a baseline that has not finished training is not the gain a paper claims.
# - *Caveats.* The selected trial's own test score is what a practitioner gets, and it favours settings whose
#   result varies with the seed (the winner's curse); each method's most frequent winner is retrained with
#   {glue:text}`h2h_retrain_seeds:d` fresh seeds to measure it (below). Weight decay is fixed (5e-4) for every method. Label
#   noise (`mnist_label_noise`): 40% of training labels replaced by another class before the split, so the
#   validation labels are as noisy as the training labels; the test labels are clean. Noisy Softmax runs with a
#   bias-free head (the method needs it). LeNet-5 and the many-class synthetic task are not in the default
#   profile: with N = 32 trials per method the whole profile, with its rerun, must regenerate within an hour
#   on two CPU cores (each is one line in the parameter file).

# %% tags=["parameters"]
profile = "ci"
base = None
sweeps = None
extra = None

# %% tags=["hide-input"]
import numpy as np
import pandas as pd
import matplotlib.pyplot as plt
from IPython.display import Markdown, display
from myst_nb import glue

from softgrad import protocol
from softgrad.book import page_header
from softgrad.plots import COLORS, VERDICT_BACKGROUND, forest, show, table, verdict_legend
from softgrad.runs import notebook_params

NB = "06_head_to_head"
P = notebook_params(NB, profile, base, sweeps, extra)
spec = protocol.check_spec(P["extra"].get("protocol"))
page_header(NB, P)

# %% [markdown]
# The whole protocol is one call (finished runs are read back from `outputs/<profile>/runs/`); the robustness
# rerun is the same call with the other implementation of the losses:

# %%
R = protocol.run(P["base"], P["extra"]["protocol"], P["profile"])
R2 = protocol.run(P["base"], P["extra"]["protocol"], P["profile"], loss_impl=spec["rerun_loss_impl"], retrain=False)

# %% tags=["remove-cell"]
# The nbval golden of this page (hidden in the book). The tables below move with the CPU at toy scale (their
# cells are not compared: nbval-ignore-output); these statements do not (python -m softgrad.goldens).
from softgrad.goldens import protocol_checks

protocol_checks(R, chance=0.1, margin=0.3)

# %% tags=["hide-input"]
tasks = list(spec["tasks"])
methods = [m for m in spec["methods"] if m != "ce"]
POINTS = {"acc", "ece", "ece_ts"}
n_runs = len(R.pool) + len(R2.pool)
n_retrain = len(R.retrain) * spec["retrain_seeds"]
print(f"{len(tasks)} tasks × {len(spec['methods'])} methods × {spec['trials']} trial indices "
      f"(+ {spec['longer_trials']} longer CE runs per task), twice (rerun: {spec['rerun_loss_impl']}): {n_runs} runs; "
      f"+ {n_retrain} fresh-seed retrains of the winners")
n_runs += n_retrain
for k, v in {"h2h_n_runs": n_runs, "h2h_trials": spec["trials"], "h2h_select": spec["select"],
             "h2h_n_tasks": len(tasks), "h2h_bootstrap": spec["bootstrap"]}.items():
    glue(k, int(v), display=False)


def ci_text(r, metric):
    sc = 100 if metric in POINTS else 1
    return f"{r.diff * sc:+.2f} [{r.lo * sc:+.2f}, {r.hi * sc:+.2f}]"


# %% [markdown]
# ## Has CE converged?
# CE trained for the budget and for twice the epochs on the same {glue:text}`h2h_longer_trials:d` trial
# indices (same settings and seeds; the cosine schedule stretched to the longer run): validation accuracy
# over epochs, mean ± std over those indices, and the paired test-accuracy difference with its bootstrap
# interval and the rule's verdict. Digits trains 60 epochs: at 30, the previous regeneration measured a gain
# of 1.6 [0.6, 3.1] points from doubling them, so the budget was raised there (a design change made after
# seeing that check, stated here). MNIST's budget could not be doubled within the hour this profile has.

# %% tags=["hide-input"] mystnb={"figure": {"name": "fig-06-convergence", "caption": "{glue:md}`fig_06_convergence_num` Validation accuracy of CE over epochs on the convergence indices, trained for the budget (solid) and twice as long (dashed), mean ± std over the indices, one panel per task. {glue:md}`fig_06_convergence_src`"}}
glue("h2h_longer_trials", spec["longer_trials"], display=False)
h = R.histories[R.histories.method.isin(["ce", "ce_longer"]) & R.histories.val_acc.notna()
                & (R.histories.trial < spec["longer_trials"])]
fig, axes = plt.subplots(1, len(tasks), figsize=(3.6 * len(tasks), 3.0), squeeze=False)
for ax, t in zip(axes[0], tasks):
    for m, style in (("ce", "-"), ("ce_longer", "--")):
        s = h[(h.task == t) & (h.method == m)].groupby("epoch").val_acc.agg(["mean", "std"])
        s = s[s.index > 0]
        ax.plot(s.index, s["mean"], style, color="k", label="budget" if m == "ce" else "2× budget")
        ax.fill_between(s.index, s["mean"] - s["std"], s["mean"] + s["std"], color="k", alpha=0.1)
    ax.set_title(t)
    ax.set_xlabel("epoch")
axes[0][0].set_ylabel("validation accuracy")
axes[0][0].legend()
fig.tight_layout()
show(fig, "06_convergence", P["profile"], NB, runs=int(h.run_id.nunique()))

# %% tags=["hide-input", "nbval-ignore-output"]
conv = R.convergence
display(table(pd.DataFrame({
    "task": conv.task, "indices": conv.trials, "test accuracy at budget (%)": [f"{x:.2f}" for x in 100 * conv.budget_mean],
    "at 2× budget (%)": [f"{x:.2f}" for x in 100 * conv.longer_mean],
    "gain (points) [95% CI]": [f"{100 * r.diff:+.2f} [{100 * r.lo:+.2f}, {100 * r.hi:+.2f}]" for r in conv.itertuples()],
    "verdict": conv.verdict})))
glue("h2h_conv_summary", Markdown("; ".join(
    f"on {r.task}: {100 * r.diff:+.2f} [{100 * r.lo:+.2f}, {100 * r.hi:+.2f}] points, *{r.verdict}*"
    for r in conv.itertuples()) if len(conv) else "was not trained longer"), display=False)
glue("h2h_conv_text", "; ".join(f"on {r.task}: {100 * r.diff:+.2f} [{100 * r.lo:+.2f}, {100 * r.hi:+.2f}] points, "
                                f"{r.verdict}" for r in conv.itertuples()) if len(conv) else "was not trained longer",
     display=False)

# %% [markdown]
# ## Differences to CE (test set)
# Each point is Δ = E_T(method) − E_T(CE) with its interval at the level of its Holm step; colour is the
# verdict. Accuracy and ECE in percentage points.

# %% tags=["hide-input"] mystnb={"figure": {"name": "fig-06-forest", "caption": "{glue:md}`fig_06_forest_num` Δ = E_T(method) − E_T(CE) on the test set — accuracy (points), NLL and ECE after temperature scaling (points) — with its bootstrap interval over trial indices at the level of its Holm step, coloured by verdict. {glue:md}`fig_06_forest_src`"}}
fig, axes = plt.subplots(1, 3, figsize=(13, 0.32 * len(tasks) * len(methods) + 1.6), sharey=True)
for ax, metric in zip(axes, ["acc", "nll", "ece_ts"]):
    forest(ax, R.comparisons, metric)
verdict_legend(axes[0], loc="lower left")
fig.tight_layout()
show(fig, "06_forest", P["profile"], NB, runs=len(R.pool))

# %% tags=["hide-input", "nbval-ignore-output"]
cmp = R.comparisons.copy()
cmp["ci"] = [ci_text(r, r.metric) for r in cmp.itertuples()]
wide = cmp.pivot_table(index=["task", "method"], columns="metric", values="ci", aggfunc="first", sort=False)
verd = cmp.pivot_table(index=["task", "method"], columns="metric", values="verdict", aggfunc="first", sort=False)
pb = cmp[cmp.metric == "acc"].set_index(["task", "method"])
wide["P(beats CE)"] = [f"{r.p_beats:.2f} [{r.p_beats_lo:.2f}, {r.p_beats_hi:.2f}]" for r in pb.itertuples()]
both = wide[["acc", "P(beats CE)", "nll", "ece_ts"]].join(verd[["acc"]].rename(columns={"acc": "verdict"}))
both["CE at 2× budget"] = [dict(zip(R.convergence.task, R.convergence.verdict)).get(t, "not checked")
                           for t, _ in both.index]
display(table(both.reset_index(), names={"acc": "Δ accuracy (points)", "nll": "Δ NLL",
                                         "ece_ts": "Δ ECE after T (points)", "verdict": "accuracy verdict"},
              styles={"accuracy verdict": lambda v: VERDICT_BACKGROUND.get(v, "")}))

# %% [markdown]
# ## Across tasks
# The mean over tasks of Δ, with a stratified bootstrap interval (trial indices resampled within each task)
# at confidence 1 − 0.05/{glue:text}`h2h_n_methods:d` (Bonferroni over the methods).

# %% tags=["hide-input", "nbval-ignore-output"]
glue("h2h_n_methods", len(methods), display=False)
agg = R.aggregate.copy()
agg["ci"] = [ci_text(r, r.metric) for r in agg.itertuples()]
aw = agg.pivot_table(index="method", columns="metric", values="ci", aggfunc="first", sort=False)
av = agg.pivot_table(index="method", columns="metric", values="verdict", aggfunc="first", sort=False)
display(table(aw[["acc", "nll", "ece", "nll_ts", "ece_ts"]].join(av[["acc", "ece_ts"]].rename(
    columns={"acc": "accuracy verdict", "ece_ts": "calibration verdict"})).reset_index(),
    names={"acc": "Δ accuracy (points)", "nll": "Δ NLL", "ece": "Δ ECE (points)", "nll_ts": "Δ NLL after T",
           "ece_ts": "Δ ECE after T (points)"},
    styles={c: lambda v: VERDICT_BACKGROUND.get(v, "") for c in ("accuracy verdict", "calibration verdict")}))
for r in R.aggregate.itertuples():
    glue(f"h2h_agg_{r.method}_{r.metric}_verdict", r.verdict, display=False)
    glue(f"h2h_agg_{r.method}_{r.metric}_diff", float(r.diff), display=False)
    glue(f"h2h_agg_{r.method}_{r.metric}_lo", float(r.lo), display=False)
    glue(f"h2h_agg_{r.method}_{r.metric}_hi", float(r.hi), display=False)
acc_agg = R.aggregate[R.aggregate.metric == "acc"]
glue("h2h_agg_acc_summary", Markdown("; ".join(f"{r.method}: *{r.verdict}*" for r in acc_agg.itertuples())),
     display=False)
for m in methods:
    c = R.comparisons[(R.comparisons.method == m) & (R.comparisons.metric == "acc")]
    for v in ("reproduced", "reversed", "no detectable effect"):
        glue(f"h2h_{m}_acc_n_{v.replace(' ', '_')}", int((c.verdict == v).sum()), display=False)
acc = R.comparisons[R.comparisons.metric == "acc"]
for v in ("reproduced", "reversed", "no detectable effect", "inconclusive at this budget"):
    glue(f"h2h_acc_{v.split()[0]}", int((acc.verdict == v).sum()), display=False)
glue("h2h_n_cells", len(acc), display=False)
glue("h2h_verdicts", [[r.task, r.method, r.metric, r.verdict] for r in R.comparisons.itertuples()]
     + [["all tasks", r.method, r.metric, r.verdict] for r in R.aggregate.itertuples()], display=False)

# %% [markdown]
# ## Do the verdicts survive a rerun?
# The whole protocol ran a second time with the losses' other implementation (`rerun_loss_impl`; the two agree
# to rounding and the tests hold both to the same float64 references), every run retrained. Rounding
# differences grow over training, so every trial's result moves; a verdict that holds only because of them is
# not evidence. This rerun tests the protocol; it decides no verdict. The bootstrap predicts the agreement
# rate: for each verdict, the share of bootstrap replicates (each a plausible rerun) whose interval, moved with
# the replicate, gives the same verdict. If the measured rate fell far below the prediction, the intervals
# would leave out a source of variation.

# %% tags=["hide-input", "nbval-ignore-output"]
A = protocol.agreement(R, R2)
glue("h2h_agree_pct", 100 * A["rate"], display=False)
glue("h2h_agree_n", A["n"], display=False)
glue("h2h_predicted_pct", 100 * A["predicted"], display=False)
glue("h2h_swaps", A["swaps"], display=False)
glue("h2h_inconclusive_pct", 100 * A["inconclusive"], display=False)
display(table(pd.DataFrame([{"verdicts": A["n"], "identical": A["agree"], "agreement": f"{100 * A['rate']:.1f}%",
                             "predicted by the bootstrap": f"{100 * A['predicted']:.1f}%",
                             "reproduced ↔ reversed swaps": A["swaps"],
                             "inconclusive": f"{100 * A['inconclusive']:.1f}%"}])))
differ = A["table"][~A["table"].agree]
display(table(differ[["task", "method", "metric", "verdict", "verdict_rerun", "predicted_agreement"]],
              names={"verdict": "verdict", "verdict_rerun": f"verdict ({spec['rerun_loss_impl']} rerun)",
                     "predicted_agreement": "predicted agreement"},
              formats={"predicted agreement": "{:.2f}"}))

# %% [markdown]
# ## How many trials would the goal take?
# The design's goal is that at least 95% of the verdicts survive a rerun. The fused rerun above redraws only
# the rounding, so it agrees more often than a rerun that also redraws seeds, splits and settings — which is
# what the bootstrap's prediction describes, and what a reader who reruns with another seed stream gets. The
# plug-in power analysis below (`protocol.power`) reads this pool's estimates as the true effects and shrinks
# every bootstrap replicate's deviation by √(N/N′), as it would with N′ trial indices per task; the whole
# analysis (Holm levels, margins, the convergence gate) is then rerun. It plans a design; it is not evidence.
# Its 1/√N′ assumption is checked on the pool itself: on random halves of the indices the bootstrap spread of
# Δ accuracy grew by a median factor of {glue:text}`h2h_spread_ratio:.2f` (1/√N predicts
# {glue:text}`h2h_spread_pred:.2f`). {glue:md}`h2h_power_text`

# %% tags=["hide-input", "nbval-ignore-output"] mystnb={"figure": {"name": "fig-06-power", "caption": "{glue:md}`fig_06_power_num` Plug-in power analysis of the design: the bootstrap-predicted share of verdicts a full rerun reproduces (left) and the share of verdicts inconclusive (right) against the number of trial indices per task N′, computed from this pool's estimates with the bootstrap spread scaled by √(N/N′) (`protocol.power`). The dashed line is the 95% goal; the dotted one the pool's own N. {glue:md}`fig_06_power_src`"}}
n_pool = int(R.pool.trial.max()) + 1
PW = protocol.power(R.pool, spec, [n_pool * k for k in (1, 2, 4, 8, 16)])
SR = protocol.spread_ratio(R.pool, spec, max(spec["select"], n_pool // 2))
glue("h2h_spread_ratio", float(SR.ratio.median()), display=False)
glue("h2h_spread_pred", float(SR.predicted.iloc[0]), display=False)
meets = PW[PW.predicted_agreement >= 0.95]
goal_n = int(meets.trials.iloc[0]) if len(meets) else None
at4 = PW[PW.trials == 4 * n_pool].iloc[0]
glue("h2h_power_goal", f"about {goal_n}" if goal_n else f"more than {int(PW.trials.max())}", display=False)
glue("h2h_power_text", Markdown(
    (f"The bootstrap predicts {100 * PW.predicted_agreement.iloc[0]:.0f}% agreement at this pool's N = {n_pool}; "
     + (f"the goal needs N′ ≈ {goal_n} trial indices per task, {goal_n // n_pool}× the training of this pool"
        if goal_n else f"the goal is not reached even at N′ = {int(PW.trials.max())}")
     + f". At N′ = {4 * n_pool} the prediction is {100 * at4.predicted_agreement:.0f}% with "
     f"{100 * at4.inconclusive:.0f}% of the verdicts inconclusive (now {100 * PW.inconclusive.iloc[0]:.0f}%). "
     "Verdicts whose effect lies near a margin or near zero stay uncertain up to a larger N than the rest.")),
     display=False)
fig, axes = plt.subplots(1, 2, figsize=(8.4, 3.0))
for ax, col, label in [(axes[0], "predicted_agreement", "predicted agreement of a rerun (%)"),
                       (axes[1], "inconclusive", "verdicts inconclusive (%)")]:
    ax.plot(PW.trials, 100 * PW[col], "o-", color="k")
    ax.axvline(n_pool, color="0.5", ls=":")
    ax.set_xscale("log", base=2)
    ax.set_xticks(PW.trials, [str(n) for n in PW.trials])
    ax.minorticks_off()
    ax.set_xlabel("trial indices per task N′")
    ax.set_ylabel(label)
axes[0].axhline(95, color="C3", ls="--", label="goal 95%")
axes[0].legend(fontsize=8)
fig.tight_layout()
show(fig, "06_power", P["profile"], NB, runs=len(R.pool))

# %% tags=["hide-input", "nbval-ignore-output"]
display(table(PW, names={"trials": "N′", "predicted_agreement": "predicted agreement", "inconclusive":
                         "inconclusive"}, formats={"predicted agreement": "{:.1%}", "inconclusive": "{:.0%}"}))

# %% [markdown]
# ## Is a win only a bigger search?
# E_T of validation and test accuracy against the search budget T = 1…N/4, from the same pool. Where a
# method's test curve crosses CE's, which of the two is better depends on the budget:
# {glue:md}`h2h_crossings`.

# %% tags=["hide-input"] mystnb={"figure": {"name": "fig-06-budget", "caption": "{glue:md}`fig_06_budget_num` E_T — the expected test accuracy of the model a T-trial random search keeps on validation — against T, each method and task, from the pool (closed form). {glue:md}`fig_06_budget_src`"}}
fig, axes = plt.subplots(1, len(tasks), figsize=(3.6 * len(tasks), 3.0), squeeze=False)
crossings = []
for ax, t in zip(axes[0], tasks):
    b = R.budget[R.budget.task == t]
    ce_curve = b[b.method == "ce"].set_index("T").test_acc
    for m, g in b.groupby("method", sort=False):
        ax.plot(g["T"], g.test_acc * 100, "o-", ms=3, color=COLORS.get(m), label=m)
        d = np.sign((g.set_index("T").test_acc - ce_curve).to_numpy())
        if m != "ce" and len(set(d[d != 0])) > 1:
            crossings.append(f"{m} on {t}")
    ax.set_title(t)
    ax.set_xlabel("search budget T (trials)")
axes[0][0].set_ylabel("E_T test accuracy (%)")
axes[0][-1].legend(fontsize=8)
fig.tight_layout()
glue("h2h_crossings", Markdown(", ".join(crossings) if crossings else "no curve crosses CE's in this range"),
     display=False)
show(fig, "06_budget", P["profile"], NB, runs=len(R.pool))

# %% [markdown]
# ## The winner's curse
# E_T averages the test scores of the trials a search keeps, and a trial is kept for a high validation score
# that is partly a lucky seed. For each task and method the most frequent winner — the trial of highest
# validation accuracy, which a T-subset keeps whenever it holds it — was trained again with
# {glue:text}`h2h_retrain_seeds:d` fresh seeds (initialisation, data order, label noise and split all new),
# same settings. The curse is its own test accuracy minus the fresh seeds' mean: what a reader who reuses the
# winning settings should expect to lose. A method whose winners lose more than CE's is flattered by E_T.

# %% tags=["hide-input"] mystnb={"figure": {"name": "fig-06-curse", "caption": "{glue:md}`fig_06_curse_num` Test accuracy of each method's most frequent winner: its own score in the pool (black diamond) and its retrains with fresh seeds (dots; bar: their mean), one panel per task. {glue:md}`fig_06_curse_src`"}}
rt = R.retrain
glue("h2h_retrain_seeds", int(spec["retrain_seeds"]), display=False)
fig, axes = plt.subplots(1, len(tasks), figsize=(3.6 * len(tasks), 3.0), squeeze=False)
for ax, t in zip(axes[0], tasks):
    g = rt[rt.task == t].reset_index(drop=True) if len(rt) else rt
    for j, r in enumerate(g.itertuples()):
        ax.plot([j - 0.3, j + 0.3], [100 * r.fresh_mean] * 2, color=COLORS.get(r.method), lw=2)
        ax.plot([j] * 2, [100 * r.fresh_min, 100 * r.fresh_max], color=COLORS.get(r.method), lw=0.8)
        ax.plot(j, 100 * r.own_test_acc, "D", color="k", ms=4)
    ax.set_xticks(range(len(g)), list(g.method) if len(g) else [], rotation=45, ha="right", fontsize=8)
    ax.set_title(t)
axes[0][0].set_ylabel("test accuracy (%)")
fig.tight_layout()
show(fig, "06_curse", P["profile"], NB, runs=int(len(rt) * spec["retrain_seeds"]))

# %% tags=["hide-input", "nbval-ignore-output"]
if len(rt):
    display(table(pd.DataFrame({
        "task": rt.task, "method": rt.method, "trial": rt.trial,
        "setting": [", ".join(f"{k} {v:g}" for k, v in s_.items()) for s_ in rt.setting],
        "own test accuracy (%)": [f"{100 * x:.2f}" for x in rt.own_test_acc],
        "fresh seeds: mean [min, max] (%)": [f"{100 * r.fresh_mean:.2f} [{100 * r.fresh_min:.2f}, {100 * r.fresh_max:.2f}]"
                                             for r in rt.itertuples()],
        "curse (points)": [f"{100 * x:+.2f}" for x in rt.curse]})))
    glue("h2h_curse_mean", float(100 * rt.curse.mean()), display=False)
    glue("h2h_curse_min", float(100 * rt.curse.min()), display=False)
    glue("h2h_curse_max", float(100 * rt.curse.max()), display=False)
else:
    for k in ("mean", "min", "max"):
        glue(f"h2h_curse_{k}", float("nan"), display=False)

# %% [markdown]
# ## Calibration before and after temperature scaling
# E_T of test ECE (percentage points; 15 bins) and NLL, before and after dividing the logits by the temperature
# fitted on each run's validation split. β-methods rescale logits, so a calibration gain counts only if it
# survives temperature scaling.

# %% tags=["hide-input", "nbval-ignore-output"]
cal = R.comparisons[R.comparisons.metric.isin(["ece", "ece_ts", "nll", "nll_ts"])]
ce_rows = cal.drop_duplicates(["task", "metric"]).assign(method="ce", method_E=lambda d: d.ce_E)
calw = pd.concat([ce_rows, cal]).pivot_table(index=["task", "method"], columns="metric", values="method_E",
                                             sort=False)
calw[["ece", "ece_ts"]] *= 100
display(table(calw[["ece", "ece_ts", "nll", "nll_ts"]].reset_index(),
              names={"ece": "ECE (points)", "ece_ts": "ECE after T (points)", "nll": "NLL", "nll_ts": "NLL after T"},
              formats={c: "{:.2f}" for c in ["ECE (points)", "ECE after T (points)", "NLL", "NLL after T"]}))

# %% [markdown]
# ## Cost
# Training time relative to CE on the same task (median over the pool; this machine, one thread per run —
# an indicator; chapter 08 has the controlled measurements).

# %% tags=["hide-input"] mystnb={"figure": {"name": "fig-06-time", "caption": "{glue:md}`fig_06_time_num` Training time of each method relative to CE on the same task (median over the pool of trials; this machine, one thread per run). {glue:md}`fig_06_time_src`"}}
pool = R.pool[R.pool.method != "ce_longer"]
tt = pool.groupby(["task", "method"], sort=False).train_time.median()
rel = (tt / tt.xs("ce", level="method").reindex(tt.index.get_level_values("task")).to_numpy()).unstack("task")
fig, ax = plt.subplots(figsize=(6.5, 3.2))
rel.loc[[m for m in spec["methods"] if m in rel.index]].plot.barh(ax=ax)
ax.axvline(1.0, color="k", lw=0.8)
ax.set_xlabel("training time relative to CE (×)")
ax.set_ylabel("method")
show(fig, "06_time", P["profile"], NB, runs=len(pool))

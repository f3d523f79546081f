# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 02 · Probability-dependent gradient decay
#
# $J_\beta=-\log\frac{e^{z_t}}{\sum_{i\ne t}e^{z_i}+\beta e^{z_t}}$ (Zhang, Xie & Chen), target gradient
# $g_\beta(p)=(1-p)/(1-(1-\beta)p)$ in the plain softmax probability $p$. Small β keeps pushing confident
# samples (a margin $-\ln\beta$); large β lets them go. Sweeps: `beta` (β × seeds, with per-sample
# tracking), `warmup` (β rising from a small start). Confidence and calibration use the plain softmax.


# %% [markdown]
# **Definition** {cite}`zhang2022gradientdecay`. With $\hat p_t=e^{z_t}/(\sum_{i\ne t}e^{z_i}+\beta e^{z_t})$,
# $J_\beta=-\log\hat p_t=\log\big(\beta+\sum_{i\ne t}e^{z_i-z_t}\big)$; β = 1 is CE.
#
# **Identity.** $J_\beta(z,t)=\mathrm{CE}(z-m\,e_t,t)+\log\beta$ with $m=-\ln\beta$: β < 1 is an additive
# target-logit margin, β > 1 a negative margin (checked numerically in chapter 00 and in the tests).
#
# **Gradient.** In the plain softmax probability $p=p_t$: $\partial J/\partial z_t=-(1-p)/(1-(1-\beta)p)$, so
# $g_\beta(p)=(1-p)/(1-(1-\beta)p)$ — concave for β < 1, linear at β = 1, convex for β > 1, with its half-gradient
# point at $p=1/(1+\beta)$.
#
# **What the paper claims.** Generalization depends on β; small β acts like a curriculum (hard samples are
# attended to only after easy ones are confident); larger β improves calibration (the journal version's main
# claim); a β warm-up gives fast early convergence and less over-confidence.
#
# **What this book finds**, in one setting ({glue:text}`gd_setting:s`: one learning rate, tuned for neither
# loss). The correlation of $\log\beta$ with raw test ECE over the sweep was {glue:text}`gd_rho_ece:.2f` (ECE
# {glue:text}`gd_ece_small_pts:.2f` points at β = {glue:text}`gd_beta_small:g`,
# {glue:text}`gd_ece_large_pts:.2f` at β = {glue:text}`gd_beta_large:g`). After one epoch the easy − hard gap in
# target probability was {glue:text}`gd_gap_small:.3f` at the smallest β and {glue:text}`gd_gap_large:.3f` at
# the largest. The best β, {glue:text}`gd_best_beta:g`, reached {glue:text}`gd_acc_best:.2%` test accuracy
# against {glue:text}`gd_acc_ce:.2%` for CE (β = 1) in the same setting: {glue:text}`gd_gain_pts:s` points.
# **That gain belongs to one learning rate, tuned for neither loss; with each loss's learning rate and β
# searched with the same budget (chapter 06) it becomes
# {glue:text}`06_head_to_head.ipynb::h2h_agg_gradient_decay_acc_ci:s` points —
# {glue:text}`06_head_to_head.ipynb::h2h_agg_gradient_decay_acc_verdict:s`.** A small β keeps the gradient of
# confident samples larger than CE's (chapter 00), so at a fixed learning rate part of what β changes is the
# size of the step, which a search over the learning rate gives CE too.
#
# :::{dropdown} Reproduction decisions
# - Confidence, ECE and MCE use the plain softmax $p$, not $\hat p$ (which can exceed 1 when β < 1).
# - The warm-up schedule is unknown: β rises from `warmup_start` to the target over `warmup_epochs`, with
#   `warmup_shape` linear or log-linear; both shapes and two lengths are swept.
# - Curriculum groups are terciles of the training samples' $p_t$ under the β = 1 model after one epoch;
#   `track_samples` fixed samples are followed (seed 0).
# :::
#
# **Against tuned CE** (chapter 06: each loss's learning rate and knob searched with the same budget, T =
# {glue:text}`06_head_to_head.ipynb::h2h_select:d` trials). The mean test-accuracy difference to CE over its
# tasks is {glue:text}`06_head_to_head.ipynb::h2h_agg_gradient_decay_acc_ci:s` points:
# **{glue:text}`06_head_to_head.ipynb::h2h_agg_gradient_decay_acc_verdict:s`** — the book's one answer to
# "does gradient decay beat CE?", the verdict chapter 07 reports.
#
# **Calibration: three verdicts, three questions.** This chapter's calibration claim (larger β lowers ECE) is a
# trend *across β at one learning rate*, on raw ECE: here it is **{glue:text}`gd_calibration_verdict:s`** (last
# section). Chapter 06 asks a different question — is gradient decay, with its β and learning rate tuned, better
# calibrated than tuned CE? On raw ECE the difference is
# {glue:text}`06_head_to_head.ipynb::h2h_agg_gradient_decay_ece_ci:s` points,
# **{glue:text}`06_head_to_head.ipynb::h2h_agg_gradient_decay_ece_verdict:s`**; after temperature scaling
# {cite}`guo2017calibration` it is {glue:text}`06_head_to_head.ipynb::h2h_agg_gradient_decay_ece_ts_ci:s` points,
# **{glue:text}`06_head_to_head.ipynb::h2h_agg_gradient_decay_ece_ts_verdict:s`**. Chapter 07 judges the paper's
# calibration claim on the scaled ECE — a raw difference that one fitted temperature removes is a difference of
# logit scale — so its verdict is the last one. Where these verdicts differ, it is because the questions differ
# (a trend at one untuned setting, tuned against tuned, raw against scaled), not because one of them is wrong.
# %% tags=["parameters"]
profile = "ci"
base = None
sweeps = None
extra = None

# %% tags=["hide-input"]
import numpy as np
import pandas as pd
import matplotlib.pyplot as plt
from IPython.display import display
from myst_nb import glue

from softgrad import analysis as A
from softgrad import claims as C
from softgrad.plots import points_figure, reliability_grid, show, summary_table, sweep_figure, table
from softgrad.book import page_header, setting_text
from softgrad.common import number
from softgrad.runs import load_run, notebook_params, run_params

NB = "02_gradient_decay"
P = notebook_params(NB, profile, base, sweeps, extra)
df = run_params(P)
df["beta"] = df["param.beta"]
print(f"{df.run_id.nunique()} runs, profile {P['profile']}, dataset {P['base'].get('dataset')}")
page_header(NB, P)

# %% [markdown]
# ## Accuracy, ECE and MCE against β
# The journal version's main claim: larger β improves calibration.

# %% tags=["hide-input"] mystnb={"figure": {"name": "fig-02-beta-sweep", "caption": "{glue:md}`fig_02_beta_sweep_num` Test accuracy, ECE and MCE (15 bins) against the gradient-decay β, mean ± std over seeds; the dotted line is β = 1 (CE). {glue:md}`fig_02_beta_sweep_src`"}}
sw = df[df.sweep == "beta"]
fig = sweep_figure(sw, "beta", ["test_acc", "test_ece", "test_mce"], ref=1.0)
show(fig, "02_beta_sweep", profile, NB, runs=sw.run_id.nunique())

# %% tags=["hide-input"]
s = A.summarize(sw, ["beta"])
display(summary_table(s, ["test_acc_mean", "test_acc_std", "test_ece_mean", "test_ece_std", "test_mce_mean"]))
betas = s.index.to_numpy()
rho_ece = A.pearson(np.log(betas), s["test_ece_mean"])
glue("gd_rho_ece", rho_ece, display=False)
glue("gd_ece_small_pts", 100 * float(s["test_ece_mean"].iloc[0]), display=False)
glue("gd_ece_large_pts", 100 * float(s["test_ece_mean"].iloc[-1]), display=False)
glue("gd_setting", setting_text(P, ["beta"]), display=False)
glue("gd_gain_pts", number(100 * (s["test_acc_mean"].max() - s.loc[1.0, "test_acc_mean"]), sign=True)
     if 1.0 in s.index else "n/a", display=False)
glue("gd_beta_small", float(betas[0]), display=False)
glue("gd_beta_large", float(betas[-1]), display=False)
glue("gd_best_beta", float(s["test_acc_mean"].idxmax()), display=False)
glue("gd_acc_ce", float(s.loc[1.0, "test_acc_mean"]) if 1.0 in s.index else float("nan"), display=False)
glue("gd_acc_best", float(s["test_acc_mean"].max()), display=False)
glue("gd_acc_best_std", float(s.loc[s["test_acc_mean"].idxmax(), "test_acc_std"]), display=False)
glue("gd_acc_ce_std", float(s.loc[1.0, "test_acc_std"]) if 1.0 in s.index else float("nan"), display=False)
print(f"correlation of log β with ECE over the sweep: {rho_ece:.3f}")

# %% [markdown]
# ## The curriculum plot
# Training samples are split into hard / medium / easy terciles by their target probability under the
# β = 1 (CE) model after the first epoch; each line is a group's mean $p_t$ over training, seed 0.
# The paper's claim: small β behaves like a curriculum — easy samples become confident first and the hard
# ones are attended to later.

# %% tags=["hide-input"] mystnb={"figure": {"name": "fig-02-curriculum", "caption": "{glue:md}`fig_02_curriculum_num` Mean training target probability of the easy, medium and hard terciles (fixed by the CE model after epoch 1) over training, at the smallest and largest β; seed 0. {glue:md}`fig_02_curriculum_src`"}}
tracked = {b: load_run(P["profile"], A.final(sw[(sw.beta == b) & (sw.seed == sw.seed.min())]).run_id.iloc[0])
           for b in sorted(sw.beta.unique())}
ref = np.asarray(tracked[1.0]["per_sample"]["pt"][1])
groups = A.tercile_groups(ref)
lo, hi = min(tracked), max(tracked)
fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), sharey=True)
gap = {}
for ax, b in zip(axes, [lo, hi]):
    pt = np.asarray(tracked[b]["per_sample"]["pt"])  # (epochs + 1, samples)
    for g, c in zip(["easy", "medium", "hard"], ["tab:green", "tab:orange", "tab:red"]):
        ax.plot(np.arange(pt.shape[0]), pt[:, groups == g].mean(1), "o-", ms=3, color=c, label=g)
    gap[b] = float(pt[1, groups == "easy"].mean() - pt[1, groups == "hard"].mean())
    ax.set_title(f"β = {b:g}: easy − hard after epoch 1 = {gap[b]:.3f}")
    ax.set_xlabel("epoch")
    ax.legend(fontsize=8)
axes[0].set_ylabel("mean target probability $p_t$ (train)")
show(fig, "02_curriculum", profile, NB, runs=2)

# %% tags=["hide-input"]
glue("gd_gap_small", gap[lo], display=False)
glue("gd_gap_large", gap[hi], display=False)

# %% [markdown]
# ## Reliability diagrams (test set, final epoch, seed 0)

# %% tags=["hide-input"] mystnb={"figure": {"name": "fig-02-reliability", "caption": "{glue:md}`fig_02_reliability_num` Reliability diagrams on the test set after the last epoch, one per β (seed 0). {glue:md}`fig_02_reliability_src`"}}
fig = reliability_grid([(f"β = {b:g}, ECE {r['final']['test_ece']:.3f}", r["reliability"]) for b, r in tracked.items()])
show(fig, "02_reliability", profile, NB, runs=len(tracked))

# %% [markdown]
# ## Warm-up against fixed β
# β rises from `warmup_start` to the target over `warmup_epochs` (linear or log-linear; the paper gives no
# schedule, so both are swept). Compared with fixed small and fixed target β from the `beta` sweep.

# %% tags=["hide-input"] mystnb={"figure": {"name": "fig-02-warmup", "caption": "{glue:md}`fig_02_warmup_num` Test accuracy against test ECE for the β warm-up schedules and the fixed β at their endpoints, mean ± std over seeds. {glue:md}`fig_02_warmup_src`"}}
wu = A.final(df[df.sweep == "warmup"])
wu["setting"] = wu.apply(lambda r: f"warm-up {r.warmup_shape} {r.warmup_start:g}→{r.beta:g} in {r.warmup_epochs:g} ep",
                         axis=1)
fixed = A.final(sw[sw.beta.isin(set(wu.warmup_start) | set(wu.beta))]).copy()  # its endpoints, held fixed
fixed["setting"] = fixed.beta.map(lambda b: f"fixed β={b:g}")
both = pd.concat([fixed, wu])
m = both.groupby("setting")[["test_acc", "test_ece"]].agg(["mean", "std"]).fillna(0.0)
kind = both.drop_duplicates("setting").set_index("setting").apply(
    lambda r: "fixed β" if r.sweep != "warmup" else f"warm-up {r.warmup_shape}", axis=1)
fig = points_figure(m, "test_ece", "test_acc", groups=kind.to_dict())
show(fig, "02_warmup", profile, NB, runs=both.run_id.nunique())

# %% tags=["hide-input"]
display(summary_table(A.summarize(both, ["setting"], metrics=("test_acc", "test_ece", "test_nll")),
                      ["test_acc_mean", "test_acc_std", "test_ece_mean", "test_ece_std", "test_nll_mean", "test_nll_std"]))

# %% tags=["hide-input"]
glue("gd_warmup_best_acc", float(wu.groupby("setting").test_acc.mean().max()), display=False)
glue("gd_fixed_best_acc", float(fixed.groupby("setting").test_acc.mean().max()), display=False)

# %% [markdown]
# ## This chapter's claims, with intervals
# Each statistic is recomputed on 1,000 bootstrap resamples of the seeds (all runs of a seed resampled
# together); the interval is the 2.5–97.5 % percentile range {cite}`efron1993bootstrap`. Claims read at the end of training are read
# again at the middle epoch, and the change must be small (*settled*: within the claim's margin or a tenth of
# the effect, `softgrad.claims.settled`); the rules were
# fixed in `softgrad.claims.CLAIMS` before these numbers were computed. The curriculum claim reads epoch 1
# only: its terciles come from the CE (β = 1) model of the same seed after epoch 1.
# Chapter 07 collects the verdicts ([its claims table](07_paper_claims.ipynb)); this chapter's table, with
# the statistic behind each claim, is the collapsed output below.

# %% tags=["hide-input", "hide-output"]
E = int(P["base"]["epochs"])
E2 = (E + 1) // 2


def calib_table(f):
    return [C.seed_table(f[f.sweep == "beta"], ["beta"], ["test_ece"])]


def calibration(m):
    return A.pearson(np.log(m.index.get_level_values("beta").to_numpy(float)), m["test_ece"])


def warmup_table(f):
    w = f[f.sweep == "warmup"].assign(kind="warm-up", setting=lambda d: d.warmup_shape + " " + d.warmup_epochs.astype(str))
    x = f[(f.sweep == "beta") & f.beta.isin(set(w.warmup_start) | set(w.beta))].assign(kind="fixed",
                                                                                         setting=lambda d: d.beta.astype(str))
    return [C.seed_table(pd.concat([w, x]), ["kind", "setting"], ["test_acc"])]


def warmup_gain(m):
    a = m["test_acc"]
    return float(a.xs("warm-up", level="kind").max() - a.xs("fixed", level="kind").max())


runs = A.final(sw)
pt1 = {r.run_id: np.asarray(load_run(P["profile"], r.run_id)["per_sample"]["pt"][1]) for r in runs.itertuples()}
ref = {r.seed: A.tercile_groups(pt1[r.run_id]) for r in runs[runs.beta == 1.0].itertuples()}
runs["gap"] = [float(pt1[r.run_id][ref[r.seed] == "easy"].mean() - pt1[r.run_id][ref[r.seed] == "hard"].mean())
               for r in runs.itertuples()]


def curriculum(m):
    g = m["gap"]
    return float(g.loc[g.index.min()] - g.loc[g.index.max()])


fin, mid = A.final(df), C.at_epoch(df, E2)
est = {"gd_calibration": C.estimate("gd_calibration", calibration, calib_table(fin), calib_table(mid), (E2, E)),
       "gd_curriculum": C.estimate("gd_curriculum", curriculum, [C.seed_table(runs, ["beta"], ["gap"])]),
       "gd_warmup": C.estimate("gd_warmup", warmup_gain, warmup_table(fin), warmup_table(mid), (E2, E))}
glue("gd_calibration_verdict", C.judge(C.CLAIMS["gd_calibration"], est["gd_calibration"])[0], display=False)
C.publish(est)

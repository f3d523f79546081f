# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 01 · Temperature check: inverse temperature β
#
# Training loss $L=\mathrm{CE}(\beta z, y)$ (Agarwala et al., 2020). Its target gradient is
# $\beta\,(1-\sigma(\beta z)_t)$: β both rescales the gradient and changes where it decays. The paper's two
# knobs are β and the initial logit scale $\lVert\beta z_0\rVert$, which we vary independently through the
# last layer's initial weights (`head_init_scale`). Sweeps: `beta` (β × learning rate × seeds),
# `init_scale` (‖βz₀‖ at two β), `p1` / `p1_control` (the collapse prediction), `flow_p2`, `flow_p4`,
# `flow_p5` (full-batch gradient descent for P2, P4, P5).


# %% [markdown]
# **Definition** {cite}`agarwala2020temperature`. Train with $L=\mathrm{CE}(\beta z,y)$, β the inverse temperature.
#
# **Gradient.** $\partial L/\partial z=\beta\,(\mathrm{softmax}(\beta z)-e_y)$; the logit Hessian is
# $\beta^2(\mathrm{diag}\,\sigma-\sigma\sigma^\top)$. The target gradient is $g(p)=\beta(1-\sigma(\beta z)_t)$, so β
# both scales the gradient and moves the point where it decays. A second knob is the initial logit scale
# $\lVert\beta z_0\rVert$, varied independently here by scaling the last layer's initial weights.
#
# **What the paper claims.** Generalization depends strongly on β and weakly on $\lVert\beta z_0\rVert$; the
# effect is dynamical; tuning β in $10^{-2}\ldots10^{1}$ helps; small β can peak higher but is more
# seed-sensitive. Five early-learning predictions P1–P5 follow from its gradient-flow argument; they are
# **reconstructed** from the abstract's description, and their constants were not checked against the paper.
#
# **What this book finds**, in one setting ({glue:text}`t_setting:s`; each β at its best η of that grid). The
# best β was {glue:text}`t_best_beta:g`, with {glue:text}`t_best_acc:.2%` test accuracy, against
# {glue:text}`t_ce_acc:.2%` for CE (β = 1) at its own best η of the same grid. Accuracy varied by
# {glue:text}`t_beta_range_pts:.2f` points across β and by {glue:text}`t_init_range_pts:.2f` points across
# $\lVert\beta z_0\rVert$ at fixed β, among runs that trained ({glue:text}`t_init_failed:d` of
# {glue:text}`t_init_runs:d` runs did not train at the one learning rate used; the notebook lists their ‖βz₀‖).
# For P1 the largest spread of the loss curves across β was
# {glue:text}`t_p1_spread:.3f` with the η = η̃/β² scaling, against
# {glue:text}`t_p1_control_spread:.3f` without it. The P2 slope was
# {glue:text}`t_p2_slope:.2f` (predicted 1), the P4 slope
# {glue:text}`t_p4_slope:.2f` (predicted −2) and the P5 slope
# {glue:text}`t_p5_slope:.2f` (predicted > 0), all three under full-batch gradient descent. Each claim's
# interval over seeds, its rule and its verdict are in the last section and in chapter 07.
#
# :::{dropdown} Reproduction decisions
# - A fixed learning rate is not neutral across β (the logit-space step is ∝ ηβ²), so accuracy is shown for each
#   η of a decade grid rather than at one η (`params/*/01_temperature.yaml`, sweep `beta`).
# - $\lVert\beta z_0\rVert$ is β times the mean L2 norm of the initial logits over the training set, measured at
#   epoch 0, with a bias-free head so that `head_init_scale` scales it exactly.
# - P1 uses `zip` sweeps (β, η = 0.01/β², `head_init_scale` = 1/β varied together), no weight decay and a
#   constant learning rate, on the minibatch MLP. There, scaling the head's initial weights by 1/β to hold
#   ‖βz₀‖ fixed also scales the gradient that reaches the hidden layers, which the paper's argument (a fixed
#   tangent kernel) does not have: a failure of P1 here is a failure outside the argument's assumptions, and
#   the text says so where it happens.
# - P2, P4 and P5 are measured under full-batch gradient descent on a linear softmax model (the setting of the
#   paper's gradient-flow argument; the section says why), not on the minibatch MLP.
# :::
#
# **Against tuned CE.** Whether tuning β beats CE is chapter 06's question, answered there with every loss's
# learning rate and knob searched with the same budget (T = {glue:text}`06_head_to_head.ipynb::h2h_select:d`
# trials), not by this sweep's grid: the mean test-accuracy difference to CE over its tasks is
# {glue:text}`06_head_to_head.ipynb::h2h_agg_temperature_acc_ci:s` points,
# **{glue:text}`06_head_to_head.ipynb::h2h_agg_temperature_acc_verdict:s`** — the book's one answer, the verdict
# chapter 07 reports.
# %% tags=["parameters"]
profile = "ci"
base = None
sweeps = None
extra = None

# %% tags=["hide-input"]
import numpy as np
import matplotlib.pyplot as plt
from IPython.display import display
from myst_nb import glue

from softgrad import analysis as A
from softgrad import claims as C
from softgrad.plots import flow_figure, lr_sweep_figure, show, summary_table, table
from softgrad.book import page_header, setting_text
from softgrad.data import dataset_shape
from softgrad.runs import load_run, notebook_params, run_params

NB = "01_temperature"
P = notebook_params(NB, profile, base, sweeps, extra)
df = run_params(P)
df["beta"] = df["param.beta"]
z0 = df[df.epoch == 0].drop_duplicates("run_id").set_index("run_id")["train_logit_norm"]
df["beta_z0"] = df["run_id"].map(z0) * df["beta"]  # ‖βz₀‖: β × mean initial logit norm (train set)
print(f"{df.run_id.nunique()} runs, profile {P['profile']}, dataset {P['base'].get('dataset')}")
page_header(NB, P)

# %% [markdown]
# ## Accuracy against β, one line per learning rate
# A fixed learning rate η is not neutral across β: in logit space the step is ∝ ηβ². Each line is one η;
# error bars are the std over seeds. The right panel is that std alone: the paper's claim is that small β
# can peak higher but is more seed-sensitive.

# %% tags=["hide-input"] mystnb={"figure": {"name": "fig-01-beta-sweep", "caption": "{glue:md}`fig_01_beta_sweep_num` Left: test accuracy against β, one line per learning rate η, mean ± std over seeds. Right: that std alone (same colours; the legend below). {glue:md}`fig_01_beta_sweep_src`"}}
sw = df[df.sweep == "beta"]
s = A.summarize(sw, ["beta", "lr"])
fig = lr_sweep_figure(sw, "beta", "test_acc", hue="lr", label=lambda v: f"η={v:g}")
show(fig, "01_beta_sweep", profile, NB, runs=sw.run_id.nunique())

# %% tags=["hide-input", "hide-output"]
best = s["test_acc_mean"].groupby(level="beta").max()
display(table((100 * best).rename("best test accuracy over η (%, mean over seeds)").reset_index(), names={"beta": "β"},
              formats={"best test accuracy over η (%, mean over seeds)": "{:.2f}"}))
glue("t_setting", setting_text(P, ["beta"]), display=False)
beta_best = float(best.idxmax())
at_best = s.loc[beta_best]
glue("t_best_std", float(at_best.loc[at_best["test_acc_mean"].idxmax(), "test_acc_std"]), display=False)
glue("t_best_beta", beta_best, display=False)
glue("t_best_acc", float(best.max()), display=False)
glue("t_ce_acc", float(best.get(1.0, np.nan)), display=False)
glue("t_beta_range_pts", 100 * float(best.max() - best.min()), display=False)

# %% [markdown]
# ## Accuracy against ‖βz₀‖
# Same β, different initial logit scale. The paper: generalization depends only weakly on ‖βz₀‖.

# %% tags=["hide-input"] mystnb={"figure": {"name": "fig-01-init-scale", "caption": "{glue:md}`fig_01_init_scale_num` Test accuracy against the initial logit scale ‖βz₀‖ (set through the head's init scale) at two values of β, mean ± std over seeds. {glue:md}`fig_01_init_scale_src`"}}
sw = df[(df.sweep == "init_scale")]
fig, ax = plt.subplots(figsize=(6, 4))
f = A.final(sw)
for b, sub in f.groupby("beta"):
    g = sub.groupby("head_init_scale").agg(x=("beta_z0", "mean"), m=("test_acc", "mean"), s=("test_acc", "std"))
    ax.errorbar(g["x"], g["m"], yerr=g["s"].fillna(0), marker="o", capsize=3, label=f"β={b:g}")
ax.set_xscale("log")
ax.set_xlabel("‖βz₀‖ (mean over training samples)")
ax.set_ylabel("test accuracy")
ax.legend()
show(fig, "01_init_scale", profile, NB, runs=sw.run_id.nunique())

# %% tags=["hide-input"]
# runs that never trained (final train accuracy ≤ 0.5: saturated or diverged at this η) are counted, not
# averaged into the range: the claim is about how well a model generalizes once it trains
ok = f[f.train_acc > 0.5]
si = ok.groupby(["beta", "head_init_scale"])["test_acc"].mean()
init_range = float(si.groupby(level="beta").agg(lambda v: v.max() - v.min()).max())
failed = f[f.train_acc <= 0.5]
print(f"largest accuracy range over ‖βz₀‖ at fixed β (runs that trained): {100 * init_range:.2f} points")
print(f"runs that did not train: {len(failed)} of {len(f)}; ‖βz₀‖ of those: "
      f"{sorted(round(float(v), 2) for v in failed.beta_z0.unique())}")
glue("t_init_range_pts", 100 * init_range, display=False)
glue("t_init_failed", len(failed), display=False)
glue("t_init_runs", len(f), display=False)

# %% [markdown]
# ## Early-learning predictions (reconstructed; constants not checked against the paper)
# **P1, collapse.** With $\eta=\tilde\eta/\beta^2$ and ‖βz₀‖ fixed (`head_init_scale` ∝ 1/β, bias-free
# head), loss curves at different β should coincide. Control: the same β with one η and one init scale.
# **P3.** The weights travel ∝ 1/β, so β·‖θ−θ₀‖ should be about constant across the collapsed runs.

# %% tags=["hide-input"] mystnb={"figure": {"name": "fig-01-p1-collapse", "caption": "{glue:md}`fig_01_p1_collapse_num` P1: training loss over epochs with η = η̃/β² and ‖βz₀‖ fixed (left) against the control with one η and one init scale (right), one line per β. {glue:md}`fig_01_p1_collapse_src`"}}
fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
spread = {}
for ax, name in zip(axes, ["p1", "p1_control"]):
    sw = df[df.sweep == name]
    A.curves(ax, sw, "train_loss", hue="beta", label=lambda v: f"β={v:g}")
    m = sw.groupby(["beta", "epoch"])["train_loss"].mean().unstack("beta")
    spread[name] = float((m.max(axis=1) - m.min(axis=1)).max())
    ax.set_title(f"{name}: max spread across β = {spread[name]:.3f}")
    ax.set_ylabel("training loss CE(βz)")
    ax.legend(fontsize=8)
show(fig, "01_p1_collapse", profile, NB, runs=df[df.sweep.isin(["p1", "p1_control"])].run_id.nunique())

# %% tags=["hide-input"]
fp1 = A.final(df[df.sweep == "p1"])
travel = (fp1["beta"] * fp1["weight_dist"]).groupby(fp1["beta"]).mean()
raw = fp1.groupby("beta")["weight_dist"].mean()
cv = lambda v: float(v.std(ddof=0) / v.mean())
print("β·‖θ−θ₀‖ by β:", travel.round(3).to_dict(), f" CV {cv(travel):.3f} (raw ‖θ−θ₀‖ CV {cv(raw):.3f})")
glue("t_p1_spread", spread["p1"], display=False)
glue("t_p1_control_spread", spread["p1_control"], display=False)
glue("t_p3_cv", cv(travel), display=False)
glue("t_p3_cv_raw", cv(raw), display=False)

# %% [markdown]
# ## Full-batch gradient descent: P2, P4 and P5
# The paper derives P2, P4 and P5 from gradient-flow dynamics, which minibatch SGD on an MLP only
# approximates (there, at large ‖βz₀‖ the loss collapses within a few noisy steps and no phase can be read).
# These three are therefore measured where the argument applies: full-batch gradient descent (every step sees
# all 1,437 training images of scikit-learn's digits), no momentum or weight decay, a constant learning rate,
# and a linear softmax model (`depth: 0`), whose logits move in proportion to ηβ² exactly as the argument
# assumes. Sweeps `flow_p2`, `flow_p4`, `flow_p5`; one "epoch" is one full-batch step.
#
# :::{dropdown} How P2, P4 and P5 are read
# - **P2**: the learning time, i.e. the steps until the training loss CE(βz) first falls to
#   `p2_loss_fraction` × ln C (its value at zero logits is ln C), against 1/(ηβ²), at small ‖βz₀‖ (head
#   init scale 0.01): predicted slope 1 on log-log axes. (Accuracy is no clock here: the argmax of the
#   logits ignores their scale, so the time to an accuracy threshold scales as 1/(ηβ), not 1/(ηβ²).)
# - **P4**: per β, the largest η of a grid (factor 2^½) at which the loss falls at every one of the first 50
#   steps (monotone descent, the signature of a step below 2/λ_max; a rise of at most 10⁻⁵ × the initial loss
#   counts as rounding): predicted slope −2.
# - **P5**, two parts. *The loss falls linearly at first*: per run, the length of the linear phase, the
#   steps until the per-step loss decrease first falls below half its first value; among saturated runs
#   (initial loss above 2 ln C, C classes) it should grow with ‖βz₀‖ (log-log slope > 0: the saturated
#   gradient is bounded, so a larger initial loss is shed at a constant rate for longer). *The time to learn
#   depends only weakly on ‖βz₀‖*: the steps until the training accuracy reaches `p5_learned` (evaluated every 10 steps), read on the
#   same saturated runs; "weakly" is fixed in advance as a log-log slope within ±0.3 (a tenfold larger
#   ‖βz₀‖ changes the time by less than a factor 2).
# :::

# %% tags=["hide-input"]
flow = {name: df[df.sweep == name] for name in ["flow_p2", "flow_p4", "flow_p5"]}
steps = {rid: np.asarray(load_run(P["profile"], rid)["step_loss"]["loss"])
         for name in flow for rid in flow[name].run_id.unique()}
n_classes = dataset_shape("digits")[1]
thr = P["extra"]["p2_loss_fraction"] * np.log(n_classes)
fp2 = A.final(flow["flow_p2"]).copy()
fp2["t"] = [A.steps_to(steps[r], thr) for r in fp2.run_id]
fp4 = A.final(flow["flow_p4"]).copy()
fp4["monotone"] = [float(A.monotone_descent(steps[r])) for r in fp4.run_id]
fp5 = A.final(flow["flow_p5"]).copy()
fp5["ell"] = [A.linear_phase_length(steps[r]) for r in fp5.run_id]
fp5["L0"] = [steps[r][0] for r in fp5.run_id]
fp5["t_learn"] = A.epochs_to(flow["flow_p5"], "train_acc", P["extra"]["p5_learned"]).reindex(fp5.run_id).to_numpy()
fp5["z0"] = fp5.run_id.map(flow["flow_p5"].drop_duplicates("run_id").set_index("run_id")["beta_z0"])
t_p2 = C.seed_table(fp2, ["beta", "lr"], ["t"])
t_p4 = C.seed_table(fp4, ["beta", "lr"], ["monotone"])
t_p5 = C.seed_table(fp5, ["head_init_scale"], ["ell", "z0", "L0", "t_learn"])


def p2_slope(m):
    b, lr = (m.index.get_level_values(k).to_numpy(float) for k in ("beta", "lr"))
    return A.loglog_slope(1 / (lr * b ** 2), m["t"])


def p4_slope(m):
    ok = m["monotone"].unstack("lr")
    largest = ok.apply(lambda r: r.index[r.to_numpy() >= 0.5].max() if (r >= 0.5).any() else np.nan, axis=1)
    return A.loglog_slope(largest.index.to_numpy(float), largest.to_numpy(float))


def p5_slope(m):
    big = m[m["L0"] > 2 * np.log(n_classes)]
    return A.loglog_slope(big["z0"], big["ell"])


def p5_time_slope(m):
    big = m[m["L0"] > 2 * np.log(n_classes)]
    return A.loglog_slope(big["z0"], big["t_learn"])


print(f"P2: {len(fp2)} runs, {int(fp2.t.isna().sum())} never reached a training loss of {thr:.3f}; P5: linear phase never ended in "
      f"{int(fp5.ell.isna().sum())} of {len(fp5)} runs")

# %% tags=["hide-input"] mystnb={"figure": {"name": "fig-01-flow", "caption": "{glue:md}`fig_01_flow_num` Full-batch gradient descent on a linear softmax model (digits). Top left (P2): steps until the training loss falls to 0.9 ln C, against 1/(ηβ²). Top right (P4): the largest learning rate of the grid with monotone descent, against β. Bottom (P5): the length of the linear phase (left) and the steps to learn (right) against ‖βz₀‖; filled markers: initial loss above 2 ln C, the saturated runs both slopes are read from. Dashed lines: the predicted slopes of P2 and P4. {glue:md}`fig_01_flow_src`"}}
m2, m4, m5 = t_p2.means(), t_p4.means(), t_p5.means()
largest_eta = lambda m: m.apply(lambda r: r.index[r.to_numpy() >= 0.5].max() if (r >= 0.5).any() else np.nan, axis=1)
fig = flow_figure(
    fp2.assign(x=1 / (fp2.lr * fp2.beta ** 2)),
    [largest_eta(fp4[fp4.seed == s_].pivot_table(index="beta", columns="lr", values="monotone")) for s_ in t_p4.seeds],
    largest_eta(m4["monotone"].unstack("lr")),
    fp5.assign(saturated=fp5.L0 > 2 * np.log(n_classes)),
    {"p2": f"P2: slope {p2_slope(m2):.2f} (predicted 1)", "p4": f"P4: slope {p4_slope(m4):.2f} (predicted −2)",
     "p5": f"P5, the loss falls linearly: slope {p5_slope(m5):.2f} (> 0)",
     "p5_time": f"P5, time to learn: slope {p5_time_slope(m5):.2f} (|·| < 0.3)"},
    f"steps to training loss {thr:.2f}", f"steps to training accuracy {P['extra']['p5_learned']}")
show(fig, "01_flow", profile, NB, runs=sum(f.run_id.nunique() for f in flow.values()))

# %% [markdown]
# ## This chapter's claims, with intervals
# Each statistic is recomputed on 1,000 bootstrap resamples of the seeds (all runs of a seed resampled
# together); the interval is the 2.5–97.5 % percentile range {cite}`efron1993bootstrap`. Claims read at the end of training are read
# again at the middle epoch, and the change must be small (*settled*: within the claim's margin or a tenth of
# the effect, `softgrad.claims.settled`); the rules were
# fixed in `softgrad.claims.CLAIMS` before these numbers were computed. Chapter 07 collects the verdicts
# ([its claims table](07_paper_claims.ipynb)); this chapter's table, with the statistic behind each claim, is
# the collapsed output below.

# %% tags=["hide-input", "hide-output"]
E = int(P["base"]["epochs"])
E2 = (E + 1) // 2
fin, mid = A.final(df), C.at_epoch(df, E2)


def beta_tables(f):
    b = C.seed_table(f[f.sweep == "beta"], ["beta", "lr"], ["test_acc"])
    i = f[f.sweep == "init_scale"].assign(acc_trained=lambda d: d.test_acc.where(d.train_acc > 0.5))
    return [b, C.seed_table(i, ["beta", "head_init_scale"], ["acc_trained"])]


def beta_vs_init(mb, mi):
    best = mb["test_acc"].groupby(level="beta").max()
    rng = mi["acc_trained"].groupby(level="beta").agg(lambda v: v.max() - v.min())
    return float((best.max() - best.min()) - rng.max())


p1 = df[df.sweep.isin(["p1", "p1_control"])]
t_p1 = C.seed_table(p1, ["sweep", "beta", "epoch"], ["train_loss"])


def p1_ratio(m):
    sp = {k: (lambda u: (u.max(axis=1) - u.min(axis=1)).max())(m["train_loss"].xs(k, level="sweep").unstack("beta"))
          for k in ("p1", "p1_control")}
    return float(sp["p1"] / sp["p1_control"])


t_p3 = C.seed_table(A.final(df[df.sweep == "p1"]), ["beta"], ["weight_dist"])


def p3_ratio(m):
    b = m.index.get_level_values("beta").to_numpy(float)
    d = m["weight_dist"].to_numpy(float)
    cv = lambda v: v.std() / v.mean()
    return float(cv(b * d) / cv(d))


est = {"t_beta_vs_init": C.estimate("t_beta_vs_init", beta_vs_init, beta_tables(fin), beta_tables(mid), (E2, E)),
       "t_p1": C.estimate("t_p1", p1_ratio, [t_p1]),
       "t_p3": C.estimate("t_p3", p3_ratio, [t_p3]),
       "t_p2": C.estimate("t_p2", p2_slope, [t_p2]),
       "t_p4": C.estimate("t_p4", p4_slope, [t_p4]),
       "t_p5": C.estimate("t_p5", p5_slope, [t_p5]),
       "t_p5_time": C.estimate("t_p5_time", p5_time_slope, [t_p5])}
glue("t_p2_slope", est["t_p2"]["est"], display=False)
glue("t_p4_slope", est["t_p4"]["est"], display=False)
glue("t_p5_slope", est["t_p5"]["est"], display=False)
C.publish(est)

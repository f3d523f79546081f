# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 07 · The papers' claims beside what this book finds
#
# Every number below is read from the values glued by chapters 01–06 of the same profile (their executed
# notebooks under `outputs/<profile>/notebooks/`), so this table always describes the runs the book shows.
# Each verdict comes from a stated rule; the rules are decisions of this book, written next to each claim.
# Verdicts: **reproduced**, **partly**, **not reproduced**, **not testable here**.


# %% [markdown]
# Of {glue:text}`claims_total:d` claims checked,
# {glue:text}`claims_reproduced:d` were reproduced,
# {glue:text}`claims_partly:d` partly,
# {glue:text}`claims_not_reproduced:d` not reproduced,
# {glue:text}`claims_reversed:d` reversed (a significant effect in the
# opposite direction), {glue:text}`claims_no_effect:d` showed no detectable
# effect, {glue:text}`claims_inconclusive:d` were inconclusive at this budget,
# and {glue:text}`claims_not_testable:d` are not testable here.
#
# Every "improves on CE" claim is judged by chapter 06's protocol: the test metric of a T-trial random search
# for every method, CE's learning rate searched with the same budget, over a pool of trials whose seeds, splits
# and learning rates are shared by the methods; the mean over tasks of the difference to CE, with a
# bootstrap interval over trial indices (the choice of settings inside it) corrected for the number of methods. *Reproduced* needs the interval to exclude
# zero in the claimed direction; *no detectable effect* needs the whole interval inside the equivalence margin;
# anything else is *inconclusive at this budget*. Identities are verified in float64 on runs short enough that
# rounding cannot grow; their float32 training drift is shown in chapter 04 as an observation, not a verdict.
# Where a paper's gain vanishes under this protocol, the table says so: that is a result.
# %% tags=["parameters"]
profile = "ci"
base = None
sweeps = None
extra = None

# %% tags=["hide-input"]
import math

import pandas as pd
from myst_nb import glue

from softgrad.analysis import read_glue
from softgrad.book import page_header
from softgrad.plots import VERDICT_BACKGROUND, table
from softgrad.runs import REPO_ROOT, notebook_params

NB = "07_paper_claims"
P = notebook_params(NB, profile, base, sweeps, extra)
nbdir = REPO_ROOT / "outputs" / P["profile"] / "notebooks"
g = {}
for name in ["01_temperature", "02_gradient_decay", "03_noisy_softmax", "04_gradient_tampering",
             "05_adaptive_sparse", "06_head_to_head"]:
    g.update(read_glue(nbdir / f"{name}.ipynb"))
print(f"{len(g)} glued values read from {nbdir.relative_to(REPO_ROOT)}")
setup = P["extra"]["setup"]
page_header(NB, P)

# %% [markdown]
# ## How each verdict is decided
# Each row is one call: the paper's claim, what this book measured (read from the chapter's glued values),
# the rule, the verdict, and the section holding the evidence.

# %% tags=["hide-input"]
rows = []
EVIDENCE = {  # paper -> chapter page; a claim names the figure that holds its evidence
    "Temperature": "01_temperature", "Gradient decay": "02_gradient_decay", "Noisy Softmax": "03_noisy_softmax",
    "SGT": "04_gradient_tampering", "AS-Softmax": "05_adaptive_sparse", "AS-Speed": "05_adaptive_sparse"}


def claim(paper, text, measured, rule, verdict, difference="", evidence=None):
    """One row; ``evidence`` is a figure name (fig-…) in the paper's chapter, or a (page, anchor) pair."""
    page, anchor = evidence if isinstance(evidence, tuple) else (EVIDENCE[paper], evidence)
    href = f"{page}.html" + (f"#{anchor}" if anchor else "")
    label = f"chapter {page[:2]}" + (f", figure {anchor[4:]}" if anchor and anchor.startswith("fig-") else "")
    rows.append({"paper": paper, "claim": text, "this book": measured, "rule": rule, "verdict": verdict,
                 "evidence": f'<a href="{href}">{label}</a>', "setup difference": difference or setup})


def yes(cond, partly=False):
    return "reproduced" if cond else ("partly" if partly else "not reproduced")


PROTOCOL_RULE = ("chapter 06 protocol: the test metric of a T-trial random search (learning rate and knob; CE's "
                 "learning rate searched with the same budget), mean over tasks of Δ to CE; interval over "
                 "resampled trial indices (selection inside), Bonferroni over methods, excludes 0")
POINTS = {"acc", "ece", "ece_ts"}


def protocol_claim(paper, text, method, metric="acc", difference=""):
    """A claim that ``method`` improves on CE, judged by chapter 06's protocol (its across-task verdict)."""
    k = f"h2h_agg_{method}_{metric}"
    sc, unit = (100, " pts") if metric in POINTS else (1, "")
    per_task = ""
    if metric == "acc":
        per_task = (f"; per task: {g[f'h2h_{method}_acc_n_reproduced']} gain, {g[f'h2h_{method}_acc_n_reversed']} "
                    f"loss, {g[f'h2h_{method}_acc_n_no_detectable_effect']} no effect of {g['h2h_n_tasks']}")
    claim(paper, text, f"{g[k + '_diff'] * sc:+.2f}{unit} [{g[k + '_lo'] * sc:+.2f}, {g[k + '_hi'] * sc:+.2f}]"
          + per_task, PROTOCOL_RULE, g[k + "_verdict"], difference, evidence=("06_head_to_head", "fig-06-forest"))


def margin_verdict(diff, margin=0.005):
    """A mean difference without an interval: only a difference beyond the margin counts either way."""
    return "reproduced" if diff > margin else ("not reproduced" if diff < -margin else "inconclusive at this budget")


claim("Temperature", "generalization depends strongly on β, weakly on ‖βz₀‖",
      f"acc range over β {g['t_beta_range']:.3f}; over ‖βz₀‖ at fixed β {g['t_init_range']:.3f} "
      f"(runs that trained; {g['t_init_failed']} of {g['t_init_runs']} did not)",
      "β range > 2 × ‖βz₀‖ range", yes(g["t_beta_range"] > 2 * g["t_init_range"],
                                       partly=g["t_beta_range"] > g["t_init_range"]), evidence="fig-01-init-scale")
protocol_claim("Temperature", "tuning β improves on β = 1 (CE)", "temperature")
claim("Temperature", "P1: with η = η̃/β² and ‖βz₀‖ fixed, early loss curves collapse (reconstructed)",
      f"max spread across β {g['t_p1_spread']:.3f} vs {g['t_p1_control_spread']:.3f} without the scaling",
      "spread < ½ × control", yes(g["t_p1_spread"] < 0.5 * g["t_p1_control_spread"],
                                  partly=g["t_p1_spread"] < g["t_p1_control_spread"]), evidence="fig-01-p1-collapse")
claim("Temperature", "P2: learning time ∝ 1/(ηβ²) at small ‖βz₀‖ (reconstructed)",
      f"log-log slope {g['t_p2_slope']:.2f}", "slope in [0.7, 1.3]",
      yes(0.7 <= g["t_p2_slope"] <= 1.3, partly=0.4 <= g["t_p2_slope"] <= 1.6), evidence="fig-01-p2-p4")
claim("Temperature", "P3: weights travel ∝ 1/β (β·‖θ−θ₀‖ about constant; reconstructed)",
      f"CV of β·‖θ−θ₀‖ {g['t_p3_cv']:.2f} vs CV of ‖θ−θ₀‖ {g['t_p3_cv_raw']:.2f}",
      "CV(β·dist) < ½ CV(dist)", yes(g["t_p3_cv"] < 0.5 * g["t_p3_cv_raw"], partly=g["t_p3_cv"] < g["t_p3_cv_raw"]), evidence="fig-01-p1-collapse")
claim("Temperature", "P4: largest stable learning rate ∝ 1/β² (reconstructed)",
      f"slope {g['t_p4_slope']:.2f} on a decade grid of η", "slope in [−2.5, −1.5]",
      yes(-2.5 <= g["t_p4_slope"] <= -1.5, partly=g["t_p4_slope"] < -0.5), evidence="fig-01-p2-p4")
claim("Temperature", "P5: large ‖βz₀‖ saturates; loss falls linearly first", "not measured",
      "—", "not testable here", "the trainer logs per-step losses (log_every), but with minibatch SGD on this MLP the "
      "loss at large ‖βz₀‖ collapses within a few steps; P5 needs a full-batch gradient-flow setup not built here")

claim("Gradient decay", "larger β improves calibration (ECE/MCE)",
      f"corr(log β, ECE) = {g['gd_rho_ece']:.2f}; ECE {g['gd_ece_small']:.3f} at β={g['gd_beta_small']:g} → "
      f"{g['gd_ece_large']:.3f} at β={g['gd_beta_large']:g}",
      "corr < −0.5", "reproduced" if g["gd_rho_ece"] < -0.5 else
      ("not reproduced (opposite)" if g["gd_rho_ece"] > 0.5 else "not reproduced"), evidence="fig-02-beta-sweep")
claim("Gradient decay", "small β acts as a curriculum (easy samples first)",
      f"easy − hard p_t after epoch 1: {g['gd_gap_small']:.3f} (small β) vs {g['gd_gap_large']:.3f} (large β)",
      "gap(small β) > gap(large β)", yes(g["gd_gap_small"] > g["gd_gap_large"]), evidence="fig-02-curriculum")
protocol_claim("Gradient decay", "β ≠ 1 beats CE", "gradient_decay")
protocol_claim("Gradient decay", "tuned gradient decay is better calibrated than CE (ECE after temperature scaling)",
               "gradient_decay", "ece_ts")
claim("Gradient decay", "β warm-up beats a fixed β",
      f"best warm-up {g['gd_warmup_best_acc']:.4f} vs best fixed endpoint {g['gd_fixed_best_acc']:.4f}",
      "difference beyond ±0.5 points (no interval: a mean over seeds)",
      margin_verdict(g["gd_warmup_best_acc"] - g["gd_fixed_best_acc"]), evidence="fig-02-warmup")

protocol_claim("Noisy Softmax", "annealed noise improves on softmax", "noisy")
claim("Noisy Softmax", "large α hurts",
      f"α = {g['ns_largest_alpha']:g}: {g['ns_acc_largest']:.4f}; softmax {g['ns_acc_softmax']:.4f} "
      f"± {g['ns_acc_softmax_std']:.4f}", "below softmax by more than 0.5 points",
      margin_verdict(g["ns_acc_softmax"] - g["ns_acc_largest"]), evidence="fig-03-alpha-sweep")
claim("Noisy Softmax", "noise postpones saturation (larger gradients late in training)",
      f"last-epoch grad norm, Noisy / softmax = {g['ns_gradnorm_ratio']:.2f}", "ratio > 1", yes(g["ns_gradnorm_ratio"] > 1), evidence="fig-03-saturation")
claim("Noisy Softmax", "negative noise −σ|ξ| is worse than softmax",
      f"{g['ns_acc_negative']:.4f} vs softmax {g['ns_acc_softmax']:.4f}", "below softmax by more than 0.5 points",
      margin_verdict(g["ns_acc_softmax"] - g["ns_acc_negative"]), evidence="fig-03-ablation")

claim("SGT", "SGT(α) trains exactly like temperature-scaled CE (derived identity)",
      f"float64, 50 SGD steps side by side: relative parameter gap < {g['traj_tol']:g}: {g['sgt_traj64_ok']}",
      "gap < 1e-12 in float64 (identity); float32 drift is shown in chapter 04 as an observation",
      yes(g["sgt_traj64_ok"]), "a small tanh MLP on random batches; the gradient identity is also tested in tests/")
claim("Gradient decay", "J_β is CE with an additive target margin −ln β (derived identity)",
      f"float64, 50 SGD steps side by side: relative parameter gap < {g['traj_tol']:g}: {g['gd_traj64_ok']}",
      "gap < 1e-12 in float64", yes(g["gd_traj64_ok"]), "a small tanh MLP on random batches")
claim("SGT", "final training CE rises as α falls, while the logit norm grows",
      f"corr(log α, train CE) = {g['sgt_rho_ce']:.2f}; corr(log α, logit norm) = {g['sgt_rho_norm']:.2f}",
      "both corr < 0", yes(g["sgt_rho_ce"] < 0 and g["sgt_rho_norm"] < 0, partly=g["sgt_rho_norm"] < 0), evidence="fig-04-alpha-sweep")
claim("SGT", "ImageNet ResNet-50: 75.97 → 76.49 top-1 (α = 0.05, step)", "—", "—", "not testable here",
      "ImageNet-1K, 100 epochs on 4 GPUs")
protocol_claim("SGT", "small α improves on CE", "sgt")

protocol_claim("AS-Softmax", "AS-Softmax beats softmax", "as_softmax",
               difference=setup + "; the paper's results are text classification with BERT")
claim("AS-Speed", "≈1.2× faster training at equal quality",
      f"{g['as_speed_speedup']:.2f}× wall clock, {g['as_speed_step_ratio']:.2f}× fewer optimizer steps; "
      f"acc {g['as_speed_acc']:.4f} vs CE {g['as_acc_ce']:.4f}",
      "speed-up ≥ 1.1 and acc ≥ CE − 0.005",
      yes(g["as_speed_speedup"] >= 1.1 and g["as_speed_acc"] >= g["as_acc_ce"] - 0.005,
          partly=g["as_speed_step_ratio"] >= 1.1), evidence="fig-05-as-speed")
claim("AS-Softmax", "the AS loss tracks validation accuracy (softmax's does not)",
      f"corr(train loss, test acc) over epochs: AS {g['as_corr_as']:.2f}, softmax {g['as_corr_ce']:.2f}",
      "AS corr < softmax corr − 0.1", yes(g["as_corr_as"] < g["as_corr_ce"] - 0.1, partly=g["as_corr_as"] < g["as_corr_ce"]), evidence="fig-05-delta-sweep")

claims = pd.DataFrame(rows)
CATEGORIES = {"reproduced": "reproduced", "partly": "partly", "reversed": "reversed",
              "no detectable effect": "no_effect", "inconclusive at this budget": "inconclusive",
              "not testable here": "not_testable"}
for v, key in CATEGORIES.items():
    glue(f"claims_{key}", int((claims.verdict == v).sum()), display=False)
glue("claims_not_reproduced", int(claims.verdict.str.startswith("not reproduced").sum()), display=False)
glue("claims_total", len(claims), display=False)
glue("claims_verdicts", [[r.paper, r.claim, r.verdict] for r in claims.itertuples()], display=False)
glance = claims.groupby("verdict", sort=False).size().rename("claims").reset_index()
glue("claims_glance", table(glance, styles={"verdict": lambda v: VERDICT_BACKGROUND.get(v.split(" (")[0], "")}),
     display=False)
NAMES = {"temperature": "Temperature (β)", "gradient_decay": "Gradient decay (β)", "noisy": "Noisy Softmax (α)",
         "sgt": "SGT (α)", "as_softmax": "AS-Softmax (δ)"}
methods = [m for m in NAMES if f"h2h_agg_{m}_acc_verdict" in g]


def ci(m, metric):
    k, sc = f"h2h_agg_{m}_{metric}", (100 if metric in POINTS else 1)
    return f"{g[k + '_diff'] * sc:+.2f} [{g[k + '_lo'] * sc:+.2f}, {g[k + '_hi'] * sc:+.2f}]"


findings = pd.DataFrame([{"method (knob)": NAMES[m], "Δ accuracy vs tuned CE (points)": ci(m, "acc"),
                          "accuracy verdict": g[f"h2h_agg_{m}_acc_verdict"],
                          "Δ ECE after T (points)": ci(m, "ece_ts"), "calibration verdict": g[f"h2h_agg_{m}_ece_ts_verdict"]}
                         for m in methods])
vstyle = lambda v: VERDICT_BACKGROUND.get(v, "")
glue("findings_glance", table(findings, styles={"accuracy verdict": vstyle, "calibration verdict": vstyle}),
     display=False)

# %% [markdown]
# ## The claims
# Verdicts are colour-coded; *evidence* links to the figure or section that holds the measurement. The last
# column says how this book's setup differs from the paper's: every quick-profile claim is tested on small
# real data with a small model on CPU, far from the papers' settings; the `paper` profile carries the papers'
# datasets where torchvision has them.

# %% tags=["hide-input"]
table(claims, formats={}, styles={"verdict": lambda v: VERDICT_BACKGROUND.get(v.split(" (")[0], "")})

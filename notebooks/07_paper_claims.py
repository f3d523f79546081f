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

# %% tags=["parameters"]
profile = "ci"
base = None
sweeps = None
extra = None

# %%
import math

import pandas as pd
from myst_nb import glue

from softgrad.analysis import read_glue
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

# %%
rows = []


def claim(paper, text, measured, rule, verdict, difference=""):
    rows.append({"paper": paper, "claim": text, "this book": measured, "rule": rule, "verdict": verdict,
                 "setup difference": difference or setup})


def yes(cond, partly=False):
    return "reproduced" if cond else ("partly" if partly else "not reproduced")


def beats(a, a_std, b, b_std):
    """a beats b by more than the larger seed std (the book's rule for 'improves on')."""
    return a - b > max(a_std, b_std)


gain = g["t_best_acc"] - g["t_ce_acc"]
claim("Temperature", "generalization depends strongly on β, weakly on ‖βz₀‖",
      f"acc range over β {g['t_beta_range']:.3f}; over ‖βz₀‖ at fixed β {g['t_init_range']:.3f} "
      f"(runs that trained; {g['t_init_failed']} of {g['t_init_runs']} did not)",
      "β range > 2 × ‖βz₀‖ range", yes(g["t_beta_range"] > 2 * g["t_init_range"],
                                       partly=g["t_beta_range"] > g["t_init_range"]))
claim("Temperature", "tuning β in 1e-2..1e1 improves on β = 1",
      f"best β = {g['t_best_beta']:g}: {g['t_best_acc']:.4f} vs β = 1: {g['t_ce_acc']:.4f} (seed std {g['t_best_std']:.4f})",
      "gain > 2 seed stds", yes(gain > 2 * g["t_best_std"], partly=gain > 0))
claim("Temperature", "P1: with η = η̃/β² and ‖βz₀‖ fixed, early loss curves collapse (reconstructed)",
      f"max spread across β {g['t_p1_spread']:.3f} vs {g['t_p1_control_spread']:.3f} without the scaling",
      "spread < ½ × control", yes(g["t_p1_spread"] < 0.5 * g["t_p1_control_spread"],
                                  partly=g["t_p1_spread"] < g["t_p1_control_spread"]))
claim("Temperature", "P2: learning time ∝ 1/(ηβ²) at small ‖βz₀‖ (reconstructed)",
      f"log-log slope {g['t_p2_slope']:.2f}", "slope in [0.7, 1.3]",
      yes(0.7 <= g["t_p2_slope"] <= 1.3, partly=0.4 <= g["t_p2_slope"] <= 1.6))
claim("Temperature", "P3: weights travel ∝ 1/β (β·‖θ−θ₀‖ about constant; reconstructed)",
      f"CV of β·‖θ−θ₀‖ {g['t_p3_cv']:.2f} vs CV of ‖θ−θ₀‖ {g['t_p3_cv_raw']:.2f}",
      "CV(β·dist) < ½ CV(dist)", yes(g["t_p3_cv"] < 0.5 * g["t_p3_cv_raw"], partly=g["t_p3_cv"] < g["t_p3_cv_raw"]))
claim("Temperature", "P4: largest stable learning rate ∝ 1/β² (reconstructed)",
      f"slope {g['t_p4_slope']:.2f} on a decade grid of η", "slope in [−2.5, −1.5]",
      yes(-2.5 <= g["t_p4_slope"] <= -1.5, partly=g["t_p4_slope"] < -0.5))
claim("Temperature", "P5: large ‖βz₀‖ saturates; loss falls linearly first", "not measured (needs sub-epoch loss curves)",
      "—", "not testable here", "the trainer logs per epoch; P5 needs per-step losses")

claim("Gradient decay", "larger β improves calibration (ECE/MCE)",
      f"corr(log β, ECE) = {g['gd_rho_ece']:.2f}; ECE {g['gd_ece_small']:.3f} at β={g['gd_beta_small']:g} → "
      f"{g['gd_ece_large']:.3f} at β={g['gd_beta_large']:g}",
      "corr < −0.5", "reproduced" if g["gd_rho_ece"] < -0.5 else
      ("not reproduced (opposite)" if g["gd_rho_ece"] > 0.5 else "not reproduced"))
claim("Gradient decay", "small β acts as a curriculum (easy samples first)",
      f"easy − hard p_t after epoch 1: {g['gd_gap_small']:.3f} (small β) vs {g['gd_gap_large']:.3f} (large β)",
      "gap(small β) > gap(large β)", yes(g["gd_gap_small"] > g["gd_gap_large"]))
claim("Gradient decay", "generalization depends on β; β ≠ 1 can beat CE",
      f"best β = {g['gd_best_beta']:g}: {g['gd_acc_best']:.4f} ± {g['gd_acc_best_std']:.4f} vs β = 1: "
      f"{g['gd_acc_ce']:.4f} ± {g['gd_acc_ce_std']:.4f}", "best β ≠ 1, ahead by > 1 seed std",
      yes(g["gd_best_beta"] != 1.0 and beats(g["gd_acc_best"], g["gd_acc_best_std"], g["gd_acc_ce"], g["gd_acc_ce_std"]),
          partly=g["gd_best_beta"] != 1.0))
claim("Gradient decay", "β warm-up beats a fixed β",
      f"best warm-up {g['gd_warmup_best_acc']:.4f} vs best fixed endpoint {g['gd_fixed_best_acc']:.4f}",
      "warm-up > fixed", yes(g["gd_warmup_best_acc"] > g["gd_fixed_best_acc"]))

claim("Noisy Softmax", "annealed noise (α ≈ 0.1) improves on softmax; large α hurts",
      f"best α = {g['ns_best_alpha']:g}: {g['ns_acc_best']:.4f} ± {g['ns_acc_best_std']:.4f}; softmax "
      f"{g['ns_acc_softmax']:.4f} ± {g['ns_acc_softmax_std']:.4f}; α = {g['ns_largest_alpha']:g}: {g['ns_acc_largest']:.4f}",
      "best α > 0 ahead by > 1 seed std, and largest α < softmax",
      yes(g["ns_best_alpha"] > 0 and beats(g["ns_acc_best"], g["ns_acc_best_std"], g["ns_acc_softmax"],
                                           g["ns_acc_softmax_std"]) and g["ns_acc_largest"] < g["ns_acc_softmax"],
          partly=g["ns_acc_largest"] < g["ns_acc_softmax"]))
claim("Noisy Softmax", "noise postpones saturation (larger gradients late in training)",
      f"last-epoch grad norm, Noisy / softmax = {g['ns_gradnorm_ratio']:.2f}", "ratio > 1", yes(g["ns_gradnorm_ratio"] > 1))
claim("Noisy Softmax", "negative noise −σ|ξ| is worse than softmax",
      f"{g['ns_acc_negative']:.4f} vs softmax {g['ns_acc_softmax']:.4f}", "negative < softmax",
      yes(g["ns_acc_negative"] < g["ns_acc_softmax"]))

claim("SGT", "SGT(α) trains exactly like temperature-scaled CE (derived identity)",
      f"max |Δ train CE| after epoch 1: {g['sgt_match_dnll_e1']:.1e}; over all epochs {g['sgt_match_dnll']:.1e}; "
      f"max |Δ test acc| {g['sgt_match_dacc']:.4f}",
      "|Δ CE| after epoch 1 < 1e-4 (later epochs amplify float rounding)", yes(g["sgt_match_dnll_e1"] < 1e-4),
      "two code paths, same data and seeds; the gradient identity itself is tested to 1e-12 in tests/")
claim("SGT", "final training CE rises as α falls, while the logit norm grows",
      f"corr(log α, train CE) = {g['sgt_rho_ce']:.2f}; corr(log α, logit norm) = {g['sgt_rho_norm']:.2f}",
      "both corr < 0", yes(g["sgt_rho_ce"] < 0 and g["sgt_rho_norm"] < 0, partly=g["sgt_rho_norm"] < 0))
claim("SGT", "ImageNet ResNet-50: 75.97 → 76.49 top-1 (α = 0.05, step)", "—", "—", "not testable here",
      "ImageNet-1K, 100 epochs on 4 GPUs")
claim("SGT", "small α improves on CE",
      f"best α = {g['sgt_best_alpha']:g}: {g['sgt_acc_best']:.4f} ± {g['sgt_acc_best_std']:.4f} vs CE "
      f"{g['sgt_acc_ce']:.4f} ± {g['sgt_acc_ce_std']:.4f}", "best α < 1, ahead by > 1 seed std",
      yes(g["sgt_best_alpha"] < 1.0 and beats(g["sgt_acc_best"], g["sgt_acc_best_std"], g["sgt_acc_ce"], g["sgt_acc_ce_std"]),
          partly=g["sgt_best_alpha"] < 1.0))

claim("AS-Softmax", "AS-Softmax beats softmax",
      f"best δ = {g['as_best_delta']:g}: {g['as_acc_best']:.4f} ± {g['as_acc_best_std']:.4f} vs CE "
      f"{g['as_acc_ce']:.4f} ± {g['as_acc_ce_std']:.4f}", "best δ < 1, ahead by > 1 seed std",
      yes(g["as_best_delta"] < 1 and beats(g["as_acc_best"], g["as_acc_best_std"], g["as_acc_ce"], g["as_acc_ce_std"]),
          partly=g["as_best_delta"] < 1 and g["as_acc_best"] > g["as_acc_ce"]),
      setup + "; the paper's results are text classification with BERT")
claim("AS-Speed", "≈1.2× faster training at equal quality",
      f"{g['as_speed_speedup']:.2f}× wall clock, {g['as_speed_step_ratio']:.2f}× fewer optimizer steps; "
      f"acc {g['as_speed_acc']:.4f} vs CE {g['as_acc_ce']:.4f}",
      "speed-up ≥ 1.1 and acc ≥ CE − 0.005",
      yes(g["as_speed_speedup"] >= 1.1 and g["as_speed_acc"] >= g["as_acc_ce"] - 0.005,
          partly=g["as_speed_step_ratio"] >= 1.1))
claim("AS-Softmax", "the AS loss tracks validation accuracy (softmax's does not)",
      f"corr(train loss, test acc) over epochs: AS {g['as_corr_as']:.2f}, softmax {g['as_corr_ce']:.2f}",
      "AS corr < softmax corr − 0.1", yes(g["as_corr_as"] < g["as_corr_ce"] - 0.1, partly=g["as_corr_as"] < g["as_corr_ce"]))

table = pd.DataFrame(rows)
counts = table.verdict.str.split(" ").str[0].value_counts()
for k in ["reproduced", "partly", "not"]:
    glue(f"claims_{k.replace(' ', '_')}", int(counts.get(k, 0)), display=False)
glue("claims_total", len(table), display=False)
with pd.option_context("display.max_colwidth", None, "display.width", 250):
    print(table[["paper", "claim", "this book", "rule", "verdict"]].to_string(index=False))

# %% [markdown]
# Setup differences (the last column): every quick-profile claim is tested on small real data with a
# small model for a few epochs on CPU, which is far from the papers' settings. The `paper` profile runs the
# papers' datasets where torchvision has them.

# %%
table[["paper", "claim", "verdict", "setup difference"]]

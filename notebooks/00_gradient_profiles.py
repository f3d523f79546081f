# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 00 · One footing: the target-gradient profile g(p)
#
# For softmax cross-entropy the gradient on the target logit is $-(1-p_t)$: it decays linearly as the
# sample becomes confident. Each of the five methods changes that curve. This notebook draws every
# method's $g(p_t)$ from `softgrad.target_gradient_profile` (analytic where the formula is
# known, autograd otherwise; the two are tested to agree) and checks the identities the papers state numerically.

# %% tags=["parameters"]
profile = "ci"
base = {}
sweeps = {}
extra = {"num_classes": 10, "points": 99}

# %% tags=["hide-input"]
import pandas as pd
import torch
import matplotlib.pyplot as plt
from myst_nb import glue

from softgrad.book import page_header
from softgrad.profiles import identity_errors, target_gradient_profile
from softgrad.plots import COLORS, show, table
from softgrad.runs import notebook_params

NB = "00_gradient_profiles"
P = notebook_params(NB, profile, base, sweeps, extra)
torch.set_printoptions(precision=4)
C = extra["num_classes"]
p = torch.linspace(0.005, 0.995, extra["points"])
page_header(NB, P)

# %% [markdown]
# ## The profiles
# Rivals are held equal, so $p_t$ alone fixes the logits ($C$ classes). Temperature and SGT are shown
# at matching values ($\beta=\alpha=0.3$): their curves differ only by the factor $1/\alpha$.

# %% tags=["hide-input"] mystnb={"figure": {"name": "fig-00-profiles", "caption": "{glue:md}`fig_00_profiles_num` The target-gradient profile $g(p_t)=|\\partial L/\\partial z_t|$ of every method against the target probability, rivals held equal (log scale). Dashed: the strong settings of the two β-methods. {glue:md}`fig_00_profiles_src`"}}
curves = {
    "CE": ("ce", {}),
    "temperature β=0.3": ("temperature", {"beta": 0.3}),
    "temperature β=3": ("temperature", {"beta": 3.0}),
    "gradient decay β=0.1": ("gradient_decay", {"beta": 0.1}),
    "gradient decay β=10": ("gradient_decay", {"beta": 10.0}),
    "SGT α=0.3": ("sgt", {"alpha": 0.3}),
    "AS-Softmax δ=0.1": ("as_softmax", {"delta": 0.1}),
    "Noisy Softmax α=0.5 (E over noise)": ("noisy", {"alpha": 0.5, "scale": 2.0}),
    "sparsemax": ("sparsemax", {}),
}
profiles = {label: target_gradient_profile(name, p, num_classes=C, **kw) for label, (name, kw) in curves.items()}
fig, ax = plt.subplots(figsize=(9.5, 4.5))
for label, g in profiles.items():
    name = curves[label][0]
    ls = "--" if ("β=3" in label or "β=10" in label) else "-"
    ax.plot(p, g, ls, label=label, color=COLORS.get(name, None), lw=1.6)
ax.set_xlabel("target probability $p_t$")
ax.set_ylabel("target gradient $|\\partial L/\\partial z_t|$")
ax.set_yscale("log")
ax.set_ylim(1e-3, 4)
ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside the curves, not over them
ax.set_title(f"Target-gradient profiles, C = {C} classes")
show(fig, "00_profiles", profile, NB, runs=0)

# %% [markdown]
# ## Easy and hard samples
# Relative weight of each method's target gradient against CE's at a hard ($p_t=0.1$), medium
# ($0.5$) and easy ($0.9$) sample. Values above 1 push that sample harder than CE does.

# %% tags=["hide-input"]
at = torch.tensor([0.1, 0.5, 0.9])
ce = target_gradient_profile("ce", at, num_classes=C)
table_ = pd.DataFrame({label: (target_gradient_profile(name, at, num_classes=C, **kw) / ce).numpy()
                      for label, (name, kw) in curves.items()}, index=["hard p=0.1", "medium p=0.5", "easy p=0.9"]).T
glue("gd01_easy_weight", float(table_.loc["gradient decay β=0.1", "easy p=0.9"]), display=False)
table(table_.rename_axis("method").reset_index(), names={"hard p=0.1": "hard sample (p_t = 0.1)",
      "medium p=0.5": "medium (p_t = 0.5)", "easy p=0.9": "easy (p_t = 0.9)"},
      formats={c: "{:.3f}" for c in ["hard sample (p_t = 0.1)", "medium (p_t = 0.5)", "easy (p_t = 0.9)"]})

# %% [markdown]
# ## The papers' identities, numerically
# Max-abs difference in float64 on random logits; every identity must hold to < 1e-12 (rounding level: the
# exact error differs between torch versions and CPUs, so only the bound is printed).

# %% tags=["hide-input"]
TOL = 1e-12
errors = identity_errors(num_classes=C)
for k, v in errors.items():
    print(f"{k:60s} {'ok' if v < TOL else 'FAIL'}  (max err < {TOL:g}: {v < TOL})")
glue("identity_count", len(errors), display=False)
glue("identity_tol", TOL, display=False)
assert max(errors.values()) < TOL

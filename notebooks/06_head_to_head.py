# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 06 · Head to head: every method under one protocol
#
# None of the five papers compares against the others. Protocol: same model, data, optimiser, budget and
# seeds for every method. **Selection**: each method's small grid (one sweep per method) is trained on a
# stratified 80/20 split of the training set and scored on the held-out 20% (never the test set).
# **Evaluation**: each method's best setting per dataset is retrained on the full training set with
# `extra.final_seeds` seeds and scored on the test set: mean ± std of accuracy, NLL, ECE and training time.

# %% tags=["parameters"]
profile = "ci"
base = None
sweeps = None
extra = None

# %%
import pandas as pd
import matplotlib.pyplot as plt
from myst_nb import glue

from softgrad import analysis as A
from softgrad.config import config_id
from softgrad.plots import COLORS, save
from softgrad.runs import notebook_params, run_configs, run_params

NB = "06_head_to_head"
P = notebook_params(NB, profile, base, sweeps, extra)
if not P["base"].get("val_fraction"):
    raise ValueError("06_head_to_head: base.val_fraction must be > 0 (selection never sees the test set)")
sel = A.final(run_params(P))
sel["method"] = sel["sweep"]
sel["setting"] = [config_id(A.config_from_row(r, seed=0)) for _, r in sel.iterrows()]
best = A.best_settings(sel, ["dataset", "method"], ["setting"], metric="test_acc")
print(f"selection: {sel.run_id.nunique()} runs on validation splits")

# %%
finals, method_of = [], {}
for _, r in best.iterrows():
    for s in P["extra"]["final_seeds"]:
        c = A.config_from_row(r, val_fraction=0.0, seed=s)
        finals.append(c)
        method_of[config_id(c)] = r["method"]
res = A.final(run_configs(finals, P["profile"], desc="final"))
res["method"] = res["run_id"].map(method_of)


def describe(r):
    ps = {k[6:]: v for k, v in r.items() if k.startswith("param.") and v == v}
    if r["noise_alpha"] > 0:
        ps["noise_alpha"] = r["noise_alpha"]
    return ", ".join(f"{k}={v:g}" for k, v in ps.items() if k != "label_smoothing" or v) or "—"


chosen = best.set_index(["dataset", "method"]).apply(describe, axis=1).rename("chosen setting")
print(chosen.to_string())

# %% [markdown]
# ## Results (test set, mean ± std over seeds)

# %%
summ = A.summarize(res, ["dataset", "method"])
datasets = list(dict.fromkeys(P["base"]["dataset"] if isinstance(P["base"]["dataset"], list) else [P["base"]["dataset"]]))
fig, axes = plt.subplots(1, len(datasets), figsize=(4.2 * len(datasets), 3.6), squeeze=False)
for ax, d in zip(axes[0], datasets):
    s = summ.loc[d].sort_values("test_acc_mean")
    ax.barh(s.index, s["test_acc_mean"], xerr=s["test_acc_std"], capsize=3,
            color=[COLORS.get(m, "tab:purple") for m in s.index], alpha=0.8)
    lo = (s["test_acc_mean"] - 3 * s["test_acc_std"]).min()
    ax.set_xlim(max(0.0, lo - 0.01), min(1.0, s["test_acc_mean"].max() + 3 * s["test_acc_std"].max() + 0.01))
    ax.set_title(d)
    ax.set_xlabel("test accuracy")
save(fig, "06_head_to_head", profile, NB)
plt.show()
table = pd.DataFrame({
    "accuracy": [A.fmt_pm(r.test_acc_mean, r.test_acc_std, 4) for r in summ.itertuples()],
    "NLL": [A.fmt_pm(r.test_nll_mean, r.test_nll_std, 3) for r in summ.itertuples()],
    "ECE": [A.fmt_pm(r.test_ece_mean, r.test_ece_std, 3) for r in summ.itertuples()],
    "seeds": summ["seeds"].to_numpy()}, index=summ.index).join(chosen)
print(table.to_string())

# %% [markdown]
# Training time relative to CE on the same dataset (median over seeds; this machine, so a cost
# indicator, not a benchmark — see chapter 08 for the controlled measurements):

# %%
tt = res.groupby(["dataset", "method"]).train_time.median()
rel = (tt / tt.xs("ce", level="method").reindex(tt.index.get_level_values("dataset")).to_numpy()).unstack("dataset")
fig, ax = plt.subplots(figsize=(6, 3.2))
rel.plot.barh(ax=ax)
ax.axvline(1.0, color="k", lw=0.8)
ax.set_xlabel("training time / CE's")
save(fig, "06_time", profile, NB)
plt.show()
n_beat = 0
for i, d in enumerate(datasets):  # glued by position (d0, d1, ...) so the book's text fits every profile
    s = summ.loc[d]
    ce = s.loc["ce"]
    top = s["test_acc_mean"].idxmax()
    # methods that beat CE by more than the larger of the two seed stds
    beat = [m for m in s.index if m != "ce" and s.loc[m, "test_acc_mean"] - ce.test_acc_mean
            > max(s.loc[m, "test_acc_std"], ce.test_acc_std)]
    n_beat += len(beat)
    for k, v in {"name": d, "best": top, "best_acc": float(s.loc[top, "test_acc_mean"]),
                 "ce_acc": float(ce.test_acc_mean), "n_beat": len(beat)}.items():
        glue(f"h2h_d{i}_{k}", v, display=False)
    print(f"{d}: best {top}; beat CE by more than one std: {beat or 'none'}")
glue("h2h_n_beat", n_beat, display=False)
glue("h2h_n_cells", len(datasets) * (summ.index.get_level_values("method").nunique() - 1), display=False)

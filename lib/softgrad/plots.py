"""Figure helpers shared by the notebooks: headless, stamped with the notebook and parameter file that made them."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

import sys  # noqa: E402

if "ipykernel" not in sys.modules and not os.environ.get("MPLBACKEND"):
    # headless scripts and CI: no display. Inside a kernel keep its inline backend, so plt.show()
    # embeds each figure in the executed notebook (and so in the book).
    matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from .store import REPO_ROOT  # noqa: E402

COLORS = {"ce": "black", "temperature": "tab:blue", "gradient_decay": "tab:orange", "sgt": "tab:green",
          "as_softmax": "tab:red", "noisy": "tab:purple", "sparse_softmax": "tab:brown", "sparsemax": "tab:pink",
          "entmax15": "tab:gray"}


def figure_dir(profile: str) -> Path:
    base = os.environ.get("SOFTGRAD_FIGURES")
    d = Path(base) / profile if base else REPO_ROOT / "outputs" / profile / "figures"
    d.mkdir(parents=True, exist_ok=True)
    return d


def save(fig, name: str, profile: str, notebook: str) -> Path:
    """Stamp ``fig`` with its source (notebook and parameter file) and save it as PNG.

    No commit or time in the stamp: a figure changes only when what it shows changes, so regenerating the
    results twice leaves the committed figures as they are (the executed notebook and the runs' provenance
    record the commit)."""
    fig.text(0.99, -0.01, f"softgrad notebooks/{notebook}.py · params/{profile}/{notebook}.yaml", ha="right",
             va="top", fontsize=6, color="0.5")
    path = figure_dir(profile) / f"{name}.png"
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path


def mean_std(df, by: list[str], col: str):
    """Mean and std of ``col`` over seeds, grouped by ``by`` (final-epoch rows)."""
    g = df.groupby(by)[col]
    return g.mean(), g.std(ddof=1).fillna(0.0)


VERDICT_COLORS = {"reproduced": "tab:green", "reversed": "tab:red", "no detectable effect": "tab:blue",
                  "inconclusive at this budget": "0.55"}
METRIC_LABELS = {"acc": "test accuracy (points)", "nll": "test NLL", "ece": "test ECE (points)",
                 "nll_ts": "test NLL after temperature scaling", "ece_ts": "test ECE after temperature scaling (points)"}
POINTS = {"acc", "ece", "ece_ts"}  # shown ×100


def forest(ax, comparisons, metric: str = "acc", methods=None, tasks=None):
    """Forest plot of :func:`softgrad.protocol.compare` rows: per (task, method) the paired difference to
    tuned CE with its interval, coloured by verdict; a vertical line at 0 and the equivalence margin band."""
    c = comparisons[comparisons.metric == metric]
    if methods is not None:
        c = c[c.method.isin(methods)]
    if tasks is not None:
        c = c[c.task.isin(tasks)]
    scale = 100.0 if metric in POINTS else 1.0
    labels = []
    for i, r in enumerate(c.itertuples()):
        y = len(c) - 1 - i
        col = VERDICT_COLORS.get(r.verdict, "0.3")
        ax.errorbar([r.diff * scale], [y], xerr=[[(r.diff - r.lo) * scale], [(r.hi - r.diff) * scale]], fmt="o",
                    color=col, ms=5, capsize=3)
        labels.append(f"{r.task} · {r.method}")
    ax.set_yticks(range(len(c) - 1, -1, -1), labels)
    ax.axvline(0.0, color="k", lw=0.8)
    ax.set_xlabel(f"difference to tuned CE, {METRIC_LABELS.get(metric, metric)}")
    return ax


def verdict_legend(ax, **kw):
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], marker="o", ls="", color=c, label=v) for v, c in VERDICT_COLORS.items()]
    ax.legend(handles=handles, **kw)

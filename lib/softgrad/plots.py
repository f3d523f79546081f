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

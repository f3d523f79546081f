"""Summaries and plots shared by the notebooks (results DataFrames from :mod:`softgrad.runs`).

A results frame has one row per (run, epoch); ``final`` marks each run's last epoch; loss parameters are
columns ``param.<name>``; epoch 0 is the initial model. Every summary here is a mean ± sample std over
seeds (``ddof=1``), so error bars are seed-to-seed spread, not standard errors.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .config import Config, from_dict
from .plots import axis_label

__all__ = ["quantize", "final", "summarize", "errorbars", "curves", "epochs_to", "config_from_row",
           "pearson", "tercile_groups", "read_glue", "reliability_plot", "loglog_slope", "monotone_descent",
           "linear_phase_length", "time_to", "steps_to"]

METRICS = ("test_acc", "test_nll", "test_ece", "test_mce", "train_time")


def final(df: pd.DataFrame) -> pd.DataFrame:
    """The last-epoch row of every run."""
    return df[df["final"]].copy()


def summarize(df: pd.DataFrame, by: list[str], metrics=METRICS) -> pd.DataFrame:
    """Mean, std and number of seeds of each metric at the final epoch, grouped by ``by``."""
    f = final(df)
    g = f.groupby(by, dropna=False)
    out = g[list(metrics)].agg(["mean", "std"])
    out.columns = [f"{m}_{s}" for m, s in out.columns]
    out["seeds"] = g.size()
    return out.fillna({c: 0.0 for c in out.columns if c.endswith("_std")})


def errorbars(ax, df: pd.DataFrame, x: str, y: str, hue: str | None = None, label=None, logx=False, **kw):
    """Final-epoch ``y`` against ``x`` (mean ± std over seeds), one line per ``hue`` value."""
    f = final(df)
    groups = [(None, f)] if hue is None else list(f.groupby(hue, dropna=False))
    for key, sub in groups:
        s = sub.groupby(x)[y].agg(["mean", "std"]).fillna(0.0)
        lab = label(key) if callable(label) else (label if hue is None else f"{hue}={key}")
        ax.errorbar(s.index, s["mean"], yerr=s["std"], marker="o", ms=4, capsize=3, label=lab, **kw)
    if logx:
        ax.set_xscale("log")
    ax.set_xlabel(axis_label(x))
    ax.set_ylabel(axis_label(y))


def curves(ax, df: pd.DataFrame, y: str, hue: str, label=None, x: str = "epoch", colors=None, **kw):
    """``y`` over epochs, mean over seeds with a ±std band, one line per ``hue`` value."""
    for key, sub in df.groupby(hue, dropna=False):
        s = sub.groupby(x)[y].agg(["mean", "std"]).fillna(0.0)
        lab = label(key) if callable(label) else f"{hue}={key}"
        c = colors(key) if callable(colors) else None
        line, = ax.plot(s.index, s["mean"], label=lab, color=c, **kw)
        ax.fill_between(s.index, s["mean"] - s["std"], s["mean"] + s["std"], color=line.get_color(), alpha=0.15)
    ax.set_xlabel(axis_label(x))
    ax.set_ylabel(axis_label(y))


def epochs_to(df: pd.DataFrame, metric: str, threshold: float, above: bool = True) -> pd.Series:
    """Per run: the (linearly interpolated) epoch at which ``metric`` first crosses ``threshold``; nan if never.
    Epochs without the metric (not evaluated: ``eval_every`` > 1) are skipped, so the interpolation runs
    between evaluated epochs."""
    out = {}
    for rid, sub in df.sort_values("epoch").groupby("run_id"):
        sub = sub[sub[metric].notna()]
        e, v = sub["epoch"].to_numpy(float), sub[metric].to_numpy(float)
        hit = v >= threshold if above else v <= threshold
        if not hit.any():
            out[rid] = math.nan
            continue
        i = int(np.argmax(hit))
        if i == 0:
            out[rid] = e[0]
        else:
            frac = (threshold - v[i - 1]) / (v[i] - v[i - 1]) if v[i] != v[i - 1] else 1.0
            out[rid] = e[i - 1] + frac * (e[i] - e[i - 1])
    return pd.Series(out, name=f"epochs_to_{metric}")


def loglog_slope(x, y) -> float:
    """Least-squares slope of log y against log x (finite positive pairs only)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    if ok.sum() < 2:
        return math.nan
    return float(np.polyfit(np.log(x[ok]), np.log(y[ok]), 1)[0])


def monotone_descent(losses, rel_tol: float = 1e-5) -> bool:
    """Whether a loss curve never rises: every step's loss is at most the previous one plus
    ``rel_tol`` × the first loss (a float32 loss carries rounding of about 1e-7 relative; 1e-5 is far above it
    and far below a real rise). For full-batch GD on a quadratic, monotone descent holds iff η < 2/λ_max."""
    L = np.asarray(losses, float)
    return bool(np.isfinite(L).all() and (np.diff(L) <= rel_tol * abs(L[0])).all())


def steps_to(losses, threshold: float) -> float:
    """Steps until a per-step loss curve first falls to ``threshold``, linearly interpolated between the two
    steps around the crossing (0 if it starts there); nan if it never does."""
    L = np.asarray(losses, float)
    hit = L <= threshold
    if not hit.any():
        return math.nan
    k = int(np.argmax(hit))
    return float(k) if k == 0 else float(k - 1 + (L[k - 1] - threshold) / (L[k - 1] - L[k]))


def linear_phase_length(losses) -> float:
    """Steps until the per-step loss decrease ``L[k] − L[k+1]`` first falls below half of its first value
    ``L[0] − L[1]`` (the end of the phase in which the loss falls at a constant rate); nan if it never does
    within the curve, or if the loss did not fall at the first step."""
    L = np.asarray(losses, float)
    d = -np.diff(L)
    if len(d) < 2 or not d[0] > 0:
        return math.nan
    below = d < d[0] / 2
    return float(np.argmax(below)) if below.any() else math.nan


def time_to(df: pd.DataFrame, metric: str, threshold: float, cumulative: str) -> pd.Series:
    """Per run: the cumulative ``cumulative`` column (e.g. ``epoch_time``, ``opt_steps``) spent until ``metric``
    first reaches ``threshold``, linearly interpolated within the epoch in which it crosses (at the same
    fractional epoch as :func:`epochs_to`); nan if never."""
    e = epochs_to(df, metric, threshold)
    out = {}
    for rid, sub in df.sort_values("epoch").groupby("run_id"):
        if not math.isfinite(e.get(rid, math.nan)):
            out[rid] = math.nan
            continue
        ep = sub["epoch"].to_numpy(float)
        cum = np.concatenate([[0.0], np.cumsum(sub.loc[sub.epoch > 0, cumulative].to_numpy(float))])
        out[rid] = float(np.interp(e[rid], np.concatenate([[0.0], ep[ep > 0]]), cum))
    return pd.Series(out, name=f"{cumulative}_to_{metric}")


def config_from_row(row, **changes) -> Config:
    """Rebuild a run's Config from a results-frame row (config columns plus ``param.*``)."""
    fields = Config.__dataclass_fields__
    d = {k: _py(row[k]) for k in fields if k in row.index and k != "loss_params"}
    d["loss_params"] = {k.split(".", 1)[1]: _py(v) for k, v in row.items()
                        if k.startswith("param.") and not (isinstance(v, float) and math.isnan(v))}
    d.update(changes)
    return from_dict(d)


def _py(v):
    return v.item() if hasattr(v, "item") else v


def pearson(x, y) -> float:
    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(x) < 3 or x.std() == 0 or y.std() == 0:
        return math.nan
    return float(np.corrcoef(x, y)[0, 1])


def tercile_groups(values) -> np.ndarray:
    """Labels 'hard' / 'medium' / 'easy' by terciles of ``values`` (e.g. p_t of a reference model)."""
    v = np.asarray(values, float)
    lo, hi = np.quantile(v, [1 / 3, 2 / 3])
    return np.where(v <= lo, "hard", np.where(v <= hi, "medium", "easy"))


def quantize(x: float, floor: float, digits: int = 2) -> float:
    """``x`` at the precision that can be evidence, for glued and compared output.

    0.0 below ``floor`` (rounding level: it differs between torch versions, CPUs and thread counts, and
    must not make a golden fail), else ``x`` rounded to ``digits`` significant digits.
    """
    x = float(x)
    if not math.isfinite(x) or abs(x) < floor:
        return 0.0 if math.isfinite(x) else x
    return float(f"{x:.{digits - 1}e}")


def read_glue(path) -> dict:
    """The values a notebook glued (``myst_nb.glue``) as {name: value}, read from its executed .ipynb."""
    import ast

    import nbformat

    out = {}
    for cell in nbformat.read(str(path), as_version=4).cells:
        for o in cell.get("outputs", []):
            name = o.get("metadata", {}).get("scrapbook", {}).get("name")
            text = o.get("data", {}).get("application/papermill.record/text/plain")
            if name and text is not None:
                try:
                    out[name] = ast.literal_eval(text)
                except (ValueError, SyntaxError):
                    out[name] = float(text) if text in ("nan", "inf", "-inf") else text
    return out


def reliability_plot(ax, rel: dict, label: str, color=None):
    """A reliability diagram from a result's ``reliability`` bins (accuracy against confidence)."""
    pts = [(c, a, n) for c, a, n in zip(rel["conf"], rel["acc"], rel["count"]) if n]
    c, a, n = map(np.asarray, zip(*pts))
    ax.plot([0, 1], [0, 1], ":", color="0.6", lw=1)
    line, = ax.plot(c, a, "-", color=color, label=label, lw=1)
    ax.scatter(c, a, s=8 + 60 * n / n.max(), color=line.get_color(), zorder=3)  # marker area ~ bin count
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")

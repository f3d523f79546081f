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

__all__ = ["quantize", "final", "summarize", "errorbars", "curves", "epochs_to", "best_settings", "config_from_row",
           "pearson", "tercile_groups", "read_glue", "reliability_plot", "fmt_pm", "loglog_slope"]

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


def fmt_pm(mean: float, std: float, digits: int = 3, scale: float = 1.0) -> str:
    return f"{mean * scale:.{digits}f} ± {std * scale:.{digits}f}"


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
    """Per run: the (linearly interpolated) epoch at which ``metric`` first crosses ``threshold``; nan if never."""
    out = {}
    for rid, sub in df.sort_values("epoch").groupby("run_id"):
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


def best_settings(df: pd.DataFrame, group: list[str], setting: list[str], metric: str = "test_acc",
                  higher: bool = True) -> pd.DataFrame:
    """For each ``group`` (e.g. dataset × method), the ``setting`` with the best seed-mean final ``metric``.

    Returns one row per group with the winning setting, its mean metric and a ``run_id`` of it (a row
    from which :func:`config_from_row` rebuilds the config).
    """
    f = final(df)
    means = f.groupby(group + setting, dropna=False)[metric].mean().reset_index()
    idx = means.groupby(group, dropna=False)[metric].idxmax() if higher else \
        means.groupby(group, dropna=False)[metric].idxmin()
    best = means.loc[idx.values]
    rows = f.merge(best[group + setting], on=group + setting).drop_duplicates(group)
    return rows.merge(best.rename(columns={metric: f"{metric}_mean"}), on=group + setting)


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

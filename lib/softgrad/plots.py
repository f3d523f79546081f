"""The one figure style of the book, and the helpers every notebook draws and shows figures with.

Importing this module applies :data:`STYLE` (sizes and fonts readable at 100% zoom in the book: a 6-inch
figure is 720 px wide at the display dpi). :func:`show` saves a figure (PNG under
``outputs/<profile>/figures``) and glues it for a numbered, captioned ``{glue:figure}`` in the page, with a
second glued text naming the notebook, the parameter file and the number of runs behind it.
Headless: the Agg backend outside a kernel."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import matplotlib

import sys  # noqa: E402

if "ipykernel" not in sys.modules and not os.environ.get("MPLBACKEND"):
    # headless scripts and CI: no display. Inside a kernel keep its inline backend, so plt.show()
    # embeds each figure in the executed notebook (and so in the book).
    matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

STYLE = {
    "figure.figsize": (8.0, 4.5), "figure.dpi": 120, "savefig.dpi": 150, "font.size": 11,
    "axes.titlesize": 12, "axes.labelsize": 11, "xtick.labelsize": 10, "ytick.labelsize": 10,
    "legend.fontsize": 9, "legend.frameon": False, "axes.grid": True, "grid.alpha": 0.3,
    "axes.spines.top": False, "axes.spines.right": False, "lines.markersize": 5, "errorbar.capsize": 3,
}
plt.rcParams.update(STYLE)

from .losses import METHODS  # noqa: E402
from .common import POINTS  # noqa: E402
from .common import (IDENTITY_FAILED, INCONCLUSIVE, NO_EFFECT, NOT_TESTABLE, NOTEBOOKS_DIR, PARTLY, REPO_ROOT,  # noqa: E402
                     REPRODUCED, REVERSED, figures_dir)

COLORS = {name: m.color for name, m in METHODS.items()}  # each method's colour, declared in its registry entry


AXIS_LABELS = {  # column name -> axis label in words, with units
    "test_acc": "test accuracy", "train_acc": "training accuracy", "val_acc": "validation accuracy",
    "test_ece": "test ECE (15 bins)", "test_mce": "test MCE (15 bins)", "test_nll": "test NLL (nats)",
    "val_ece": "validation ECE (15 bins)", "val_nll": "validation NLL (nats)",
    "train_loss": "training loss (nats)", "step_loss": "training loss (nats)", "epoch": "epoch",
    "beta": "β", "alpha": "α", "delta": "δ", "lr": "learning rate η", "head_init_scale": "head init scale",
    "train_logit_norm": "mean logit norm ‖z‖ (train)", "weight_dist": "weight travel ‖θ−θ₀‖",
    "zero_loss_frac": "fraction of samples with zero loss", "seconds": "wall-clock time (s)",
    "train_zero_frac": "fraction of training samples with zero loss", "train_nll": "training NLL (nats)",
    "noise_alpha": "noise scale α", "ls": "label smoothing", "train_pt": "mean target probability p_t (train)",
    "grad_norm": "gradient norm", "lr_eff": "effective learning rate η_eff",
}


def axis_label(col: str) -> str:
    """The words an axis shows for a results column (the column name itself where none is defined)."""
    return AXIS_LABELS.get(col, col.replace("_", " "))


def figure_dir(profile: str) -> Path:
    d = figures_dir(profile)
    d.mkdir(parents=True, exist_ok=True)
    return d


def _is_data(artist, ax) -> bool:
    """Whether ``artist`` draws data of ``ax``: in its data coordinates, with at least one finite, non-degenerate
    element. Reference lines and bands (``axvline``, ``axhspan``: axes-relative transforms) and text do not."""
    import numpy as np
    from matplotlib.collections import Collection
    from matplotlib.image import AxesImage
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch, Rectangle

    if not artist.get_visible():
        return False
    if isinstance(artist, Line2D):
        if artist.get_transform() != ax.transData:
            return False
        xy = np.asarray(artist.get_xydata(), float)
        return bool(len(xy) and np.isfinite(xy).all(axis=1).any())
    if isinstance(artist, Rectangle):  # bars: a zero-width bar draws nothing
        if artist.get_data_transform() != ax.transData:
            return False
        w, h = artist.get_width(), artist.get_height()
        return bool(np.isfinite([w, h, *artist.get_xy()]).all() and w != 0 and h != 0)
    if isinstance(artist, Patch):
        if artist.get_data_transform() != ax.transData:
            return False
        v = artist.get_path().vertices
        return bool(len(v) and np.isfinite(v).all(axis=1).any())
    if isinstance(artist, Collection):
        off = np.asarray(artist.get_offsets(), float).reshape(-1, 2)
        if artist.get_offset_transform() == ax.transData and len(off) and np.isfinite(off).all(axis=1).any():
            return True  # scatter markers
        if artist.get_transform() != ax.transData:
            return False
        for path in artist.get_paths():  # error bars, fill_between: finite and of non-zero extent
            v = path.vertices
            v = v[np.isfinite(v).all(axis=1)]
            if len(v) and np.ptp(v, axis=0).max() > 0:
                return True
        return False
    return isinstance(artist, AxesImage)


def _covered(artist, ax, bb) -> int:
    """How many of a data artist's points (markers and vertices, line segments sampled every few pixels) or
    bars lie inside the display-space box ``bb`` (a legend's)."""
    import numpy as np
    from matplotlib.collections import Collection
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    if isinstance(artist, Patch):  # a bar under the legend, even where none of its corners is
        e = artist.get_window_extent()
        return int(e.x0 < bb.x1 and bb.x0 < e.x1 and e.y0 < bb.y1 and bb.y0 < e.y1)
    if isinstance(artist, Line2D):
        xy = np.asarray(artist.get_xydata(), float)
    elif isinstance(artist, Collection):
        off = np.asarray(artist.get_offsets(), float).reshape(-1, 2)
        xy = off if artist.get_offset_transform() == ax.transData and len(off) else np.concatenate(
            [p.vertices for p in artist.get_paths()] or [np.empty((0, 2))])
    else:
        return 0
    xy = xy[np.isfinite(xy).all(axis=1)]
    if not len(xy):
        return 0
    pts = ax.transData.transform(xy)
    if isinstance(artist, Line2D) and artist.get_linestyle() not in ("None", "", " ") and len(pts) > 1:
        t = np.linspace(0, 1, 16)[:, None, None]
        pts = (pts[:-1] * (1 - t) + pts[1:] * t).reshape(-1, 2)
    x, y = pts.T
    return int(((x > bb.x0) & (x < bb.x1) & (y > bb.y0) & (y < bb.y1)).sum())


def figure_data(fig) -> dict:
    """What a figure shows, for the book's rendering test (:func:`save` stores it in the PNG): per axes, how
    many artists draw data (``data``) and how many data points or bar corners its legend covers
    (``legend_covers``); ``data_artists``, the total. An axes with no data, or a legend over data, is a defect
    the test reports. Draws the figure."""
    fig.canvas.draw()
    axes = []
    for ax in fig.axes:
        if not ax.get_visible():
            continue
        arts = [a for a in (*ax.lines, *ax.collections, *ax.patches, *ax.images) if _is_data(a, ax)]
        covers, leg = 0, ax.get_legend()
        if leg is not None and leg.get_visible():
            bb = leg.get_window_extent()
            covers = sum(_covered(a, ax, bb) for a in arts)
        axes.append({"title": ax.get_title() or ax.get_ylabel(), "data": len(arts), "legend_covers": covers})
    return {"data_artists": sum(a["data"] for a in axes), "axes": axes}


def save(fig, name: str, profile: str, notebook: str) -> bytes:
    """Stamp ``fig`` with its source (notebook and parameter file), save it as PNG, and return the PNG's bytes.

    The stamp goes below everything else the figure draws (its axis labels included), right-aligned. The PNG
    carries :func:`figure_data` as JSON in its ``softgrad`` text field, which the book's rendering test reads.

    No commit or time in the stamp: a figure changes only when what it shows changes, so regenerating the
    results twice leaves the committed figures as they are (the executed notebook and the runs' provenance
    record the commit)."""
    import io
    import json

    meta = figure_data(fig)  # draws the figure
    w, h = fig.get_size_inches()
    bb = fig.get_tightbbox(fig.canvas.get_renderer())  # inches: everything drawn so far
    fig.text(bb.x1 / w, (bb.y0 - 0.03) / h, f"softgrad notebooks/{notebook}.py · params/{profile}/{notebook}.yaml",
             ha="right", va="top", fontsize=6, color="0.5")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=fig.dpi, bbox_inches="tight",
                metadata={"Software": None, "softgrad": json.dumps(meta, sort_keys=True)})
    png = buf.getvalue()
    (figure_dir(profile) / f"{name}.png").write_bytes(png)
    return png


def png_metadata(png: bytes) -> dict | None:
    """The :func:`figure_data` a PNG written by :func:`save` carries (None if it carries none)."""
    import io
    import json

    from PIL import Image

    text = Image.open(io.BytesIO(png)).text.get("softgrad")
    return json.loads(text) if text else None


_FIGURES: dict[str, int] = {}  # notebook -> figures shown so far: the figure numbers (show)


def figure_number(notebook: str, name: str) -> str | None:
    """"C.k" for figure ``name`` ("01_flow", or its label "fig-01-flow") of ``notebook``: C the chapter (the
    notebook's two-digit prefix), k the figure's place among the figure labels of ``notebooks/<notebook>.py``
    in source order. None if the source or the label is not found."""
    import re

    src = NOTEBOOKS_DIR / f"{notebook}.py"
    label = name if name.startswith("fig-") else "fig-" + name.replace("_", "-")
    if not src.exists():
        return None
    labels = re.findall(r'"name": "(fig-[0-9a-z-]+)"', src.read_text())
    return f"{int(notebook[:2])}.{labels.index(label) + 1}" if label in labels else None



def show(fig, name: str, profile: str, notebook: str, runs: int | None = None) -> None:
    """Save ``fig`` (:func:`save`), display it, and glue its number and source line.

    The book captions the figure through the cell's metadata (jupytext header)::

        # %% tags=["hide-input"] mystnb={"figure": {"name": "fig-<name>", "caption": "{glue:md}`fig_<name>_num` What it shows. {glue:md}`fig_<name>_src`"}}

    ``fig_<name>_num`` is "Figure C.k": C the chapter, k the figure's place among the figures the notebook has
    shown so far, so numbers restart with each chapter and a figure a notebook does not draw (nothing to plot:
    the page says so in words instead) leaves no gap. ``fig_<name>_number`` ("C.k") is the same number for other
    chapters' references (chapter 07 reads it back). ``fig_<name>_src`` names the notebook, the parameter file
    and the number of training runs behind it. The image shown is the saved PNG, its metadata included."""
    import base64

    from IPython.display import Markdown, display
    from myst_nb import glue

    png = save(fig, name, profile, notebook)
    _FIGURES[notebook] = _FIGURES.get(notebook, 0) + 1
    number = f"{int(notebook[:2])}.{_FIGURES[notebook]}"
    glue(f"fig_{name}_num", Markdown(f"**Figure {number}.**"), display=False)
    glue(f"fig_{name}_number", number, display=False)
    n = f" from {runs} training run{'s' if runs != 1 else ''}" if runs is not None else ""
    glue(f"fig_{name}_src", Markdown(f"Made by `notebooks/{notebook}.py` with `params/{profile}/{notebook}.yaml`{n}."),
         display=False)
    # the saved bytes (with their metadata), and the text form a displayed figure has (what nbval compares)
    display({"image/png": base64.b64encode(png).decode(), "text/plain": repr(fig)}, raw=True)
    plt.close(fig)  # returns nothing: a cell's value would be a second output inside the figure


def table(df, names: dict | None = None, formats: dict | None = None, index: bool = False,
          styles: dict | None = None):
    """A results table for the book: human column names, number formats, rendered as HTML (pandas Styler),
    with the plain-text table as its text form (what nbval compares and a terminal shows).

    ``names`` maps column -> heading (columns not named keep theirs); ``formats`` maps heading -> format
    string or callable (float columns default to 4 significant digits); ``styles`` maps heading -> callable(value) -> CSS for that column's cells (e.g. the
    verdict colours of :data:`VERDICT_BACKGROUND`). Cell text is HTML (links stay links)."""
    names = names or {}
    d = df.rename(columns=names)
    # numbers to 4 significant digits unless a column says otherwise (not 0.030000)
    fmt = {c: "{:.4g}" for c in d.columns if d[c].dtype.kind == "f"}
    fmt.update(formats or {})
    sty = d.style.format(fmt, na_rep="–")
    for col, fn in (styles or {}).items():
        sty = sty.map(fn, subset=[col])
    if not index:
        sty = sty.hide(axis="index")
    # a content-derived id instead of Styler's random one: re-executing a notebook leaves its HTML unchanged
    uid = hashlib.sha1(d.to_csv().encode()).hexdigest()[:10]
    sty = sty.set_uuid(uid).set_table_attributes('class="softgrad-table"')

    class _Table:
        def _repr_html_(self):
            return sty.to_html()

        def __repr__(self):
            return d.to_string(index=index)

    return _Table()


def summary_table(s, cols, digits: int = 4):
    """:func:`table` of a :func:`softgrad.analysis.summarize` frame: its index as leading columns, and each
    ``<metric>_mean`` / ``<metric>_std`` column named in words ("test accuracy, mean over seeds")."""
    d = s[list(cols)].reset_index()

    def name(c):
        for suffix, words in (("_mean", "mean over seeds"), ("_std", "std over seeds")):
            if c.endswith(suffix):
                return f"{axis_label(c[: -len(suffix)])}, {words}"
        return axis_label(c)

    names = {c: name(c) for c in d.columns}
    return table(d, names=names, formats={names[c]: f"{{:.{digits}f}}" for c in cols})


VERDICT_COLORS = {REPRODUCED: "tab:green", REVERSED: "tab:red", NO_EFFECT: "tab:blue", INCONCLUSIVE: "0.55"}
VERDICT_BACKGROUND = {  # table cells: light tints of VERDICT_COLORS, plus the chapter-level verdicts
    REPRODUCED: "background-color: #d9f2d9", PARTLY: "background-color: #fff2cc",
    IDENTITY_FAILED: "background-color: #fde0c5", REVERSED: "background-color: #f8cccc",
    NO_EFFECT: "background-color: #d6e6f5", INCONCLUSIVE: "background-color: #e6e6e6",
    NOT_TESTABLE: "background-color: #f2f2f2; color: #555"}
METRIC_LABELS = {"acc": "test accuracy (points)", "nll": "test NLL", "ece": "test ECE (points)",
                 "nll_ts": "test NLL after temperature scaling", "ece_ts": "test ECE after temperature scaling (points)"}


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
        if "margin" in c:  # the row's equivalence margin: a grey band behind its interval
            ax.fill_betweenx([y - 0.35, y + 0.35], -r.margin * scale, r.margin * scale, color="0.88", lw=0, zorder=0)
        ax.errorbar([r.diff * scale], [y], xerr=[[(r.diff - r.lo) * scale], [(r.hi - r.diff) * scale]], fmt="o",
                    color=col, ms=5, capsize=3)
        labels.append(f"{r.task} · {r.method}")
    ax.set_yticks(range(len(c) - 1, -1, -1), labels)
    ax.axvline(0.0, color="k", lw=0.8)
    ax.set_xlabel(f"difference to tuned CE:\n{METRIC_LABELS.get(metric, metric)}")
    return ax


def verdict_legend(ax, **kw):
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], marker="o", ls="", color=c, label=v) for v, c in VERDICT_COLORS.items()]
    ax.legend(handles=handles, **kw)


def claim_intervals(items):
    """One row per descriptive claim: its estimate and interval against its rule (chapter 07's figure).

    ``items``: (label, estimate dict with est/lo/hi, rule with kind/null/margin/band, verdict, note, scale,
    unit). Each row has its own x-axis (the claims have different units): the null with its margin in grey,
    a value rule's predicted band in green, the interval coloured by verdict; a hollow dot: not settled."""
    import math

    n = len(items)
    fig, axes = plt.subplots(n, 1, figsize=(9, 0.5 * n + 0.5), squeeze=False)
    for ax, (label, est, rule, verdict, note, scale, unit) in zip(axes[:, 0], items):
        f = lambda k: math.nan if est.get(k) is None else float(est[k]) * scale
        e, lo, hi = f("est"), f("lo"), f("hi")
        null, m = rule.null * scale, rule.margin * scale
        ax.axvspan(null - m, null + m, color="0.9", zorder=0)
        ax.axvline(null, color="0.5", lw=0.8, zorder=1)
        pts = [null - m, null + m] + [v for v in (e, lo, hi) if math.isfinite(v)]
        if rule.kind == "value":
            ax.axvspan(rule.band[0] * scale, rule.band[1] * scale, color="tab:green", alpha=0.15, zorder=0)
            pts += [rule.band[0] * scale, rule.band[1] * scale]
        c = VERDICT_COLORS.get(verdict, "0.55")
        if math.isfinite(lo) and math.isfinite(hi):
            ax.plot([lo, hi], [0, 0], "-", color=c, lw=3, solid_capstyle="butt")
        if math.isfinite(e):
            ax.plot([e], [0], "o", color=c, mfc=c if note != "not settled" else "white", ms=6, zorder=3)
        span = max(pts) - min(pts) or 1.0
        ax.set_xlim(min(pts) - 0.08 * span, max(pts) + 0.08 * span)
        ax.set_yticks([])
        ax.tick_params(axis="x", labelsize=7, pad=1)
        ax.set_title(f"{label} — {verdict}{f' ({note})' if note else ''}" + (f" [{unit.strip()}]" if unit else ""),
                     fontsize=7.5, loc="left", pad=2)
        for s in ("top", "right", "left"):
            ax.spines[s].set_visible(False)
    fig.tight_layout(h_pad=0.4)
    return fig


# ---------------------------------------------------------------------------------------------------------
# Chapter 06's figures (drawn here so that their layout is tested and shared; the notebook shows them)


def convergence_figure(histories, tasks, longer: float = 2.0):
    """Validation accuracy of CE over epochs at the budget (solid, method ``ce``) and trained ``longer`` × as
    long (dashed, ``ce_longer``), mean ± std over the trials in ``histories`` (the caller picks them: the ones the
    convergence gate trains longer), one panel per task. The band is clipped to [0, 1] and each panel's y-axis
    stops at its data (an accuracy axis never runs past 100%)."""
    h = histories[histories.method.isin(["ce", "ce_longer"]) & histories.val_acc.notna()]
    fig, axes = plt.subplots(1, len(tasks), figsize=(3.6 * len(tasks), 3.0), squeeze=False)
    for ax, t in zip(axes[0], tasks):
        lo_all, hi_all = [], []
        for m, style in (("ce", "-"), ("ce_longer", "--")):
            s = h[(h.task == t) & (h.method == m)].groupby("epoch").val_acc.agg(["mean", "std"])
            s = s[s.index > 0].fillna({"std": 0.0})
            if not len(s):
                continue
            lo, hi = (s["mean"] - s["std"]).clip(0, 1), (s["mean"] + s["std"]).clip(0, 1)
            ax.plot(s.index, 100 * s["mean"], style, color="k", label="budget" if m == "ce" else f"{longer:g}× budget")
            ax.fill_between(s.index, 100 * lo, 100 * hi, color="k", alpha=0.1, lw=0)
            lo_all.append(lo.min())
            hi_all.append(hi.max())
        if lo_all:
            lo, hi = min(lo_all), max(hi_all)
            pad = 0.03 * (hi - lo or 0.01)
            ax.set_ylim(100 * max(0.0, lo - pad), 100 * min(1.0, hi + pad))
        ax.set_title(t)
        ax.set_xlabel("epoch")
    axes[0][0].set_ylabel("validation accuracy (%)")
    axes[0][0].legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


def budget_figure(budget, tasks, margins: dict | None = None, labels: dict | None = None):
    """E_T against the search budget T as the difference to CE's E_T (test accuracy, points), one panel per task:
    the curves of absolute E_T lie within a few tenths of a point of each other at T ≥ 4, where the comparison is
    made, so the difference is drawn (CE's own E_T at T = 1 and the largest T is in each panel's title), with
    the task's margin (``margins``: task -> margin, a fraction) as a grey band. ``labels``: method -> legend
    name. The legend sits below the panels. Returns ``(fig, crossings)``: "method on task" for each curve that
    changes sign (crosses CE's)."""
    import numpy as np

    labels = labels or {}
    fig, axes = plt.subplots(1, len(tasks), figsize=(3.6 * len(tasks), 3.0), squeeze=False, sharey=True)
    crossings = []
    for ax, t in zip(axes[0], tasks):
        b = budget[budget.task == t]
        ce = b[b.method == "ce"].set_index("T").test_acc
        if margins and t in margins:
            ax.axhspan(-100 * margins[t], 100 * margins[t], color="0.9", lw=0)
        ax.axhline(0.0, color="k", lw=0.8)
        for m, g in b[b.method != "ce"].groupby("method", sort=False):
            d = (g.set_index("T").test_acc - ce).dropna()
            ax.plot(d.index, 100 * d.to_numpy(), "o-", ms=3, color=COLORS.get(m), label=labels.get(m, m))
            sign = np.sign(d.to_numpy())
            if len(set(sign[sign != 0])) > 1:
                crossings.append(f"{labels.get(m, m)} on {t}")
        ax.set_title(f"{t} (CE: {100 * ce.iloc[0]:.1f} → {100 * ce.iloc[-1]:.1f}%)", fontsize=10)
        ax.set_xlabel("search budget T (trials)")
    axes[0][0].set_ylabel("E_T(method) − E_T(CE)\n(test accuracy, points)")
    handles, names = axes[0][0].get_legend_handles_labels()
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    fig.legend(handles, names, loc="lower center", ncol=max(1, len(names)), frameon=False, bbox_to_anchor=(0.5, 0.0))
    return fig, crossings


def time_figure(pool, methods):
    """Training time of each method relative to CE on the same task (median over the pool), bars grouped by
    method, one colour per task; the legend to the right of the axes, clear of the bars."""
    p = pool[pool.method != "ce_longer"]
    tt = p.groupby(["task", "method"], sort=False).train_time.median()
    rel = (tt / tt.xs("ce", level="method").reindex(tt.index.get_level_values("task")).to_numpy()).unstack("task")
    fig, ax = plt.subplots(figsize=(7.5, 0.12 * len(rel) * max(1, rel.shape[1]) + 1.0))
    rel.loc[[m for m in methods if m in rel.index]].plot.barh(ax=ax)
    ax.axvline(1.0, color="k", lw=0.8)
    ax.set_xlabel("training time relative to CE (×)")
    ax.set_ylabel("method")
    ax.invert_yaxis()
    ax.legend(title="task", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    return fig


def edge_figure(shares, tasks=None, labels: dict | None = None, tenth: float = 0.1, flag: float = 0.15):
    """Where the models a search keeps sit in each searched range: :func:`softgrad.protocol.edge_shares`'s share
    of E_T's selection weight in the outer tenth of each range, one panel per task, one row per (method,
    dimension; η_eff: the learning rate in the method's own coordinates): the low edge drawn to the left of 0,
    the high edge to the right, in each method's colour; hatched where the edge is a definitional limit (the
    knob reaches CE or its domain ends: an optimum there is the method's own), outlined in black where the
    diagnostic flags it. Dotted lines: ``tenth`` (what a
    flat response puts there); dashed: ``flag``. ``labels``: method -> display name (default: the protocol's
    short names). The legend sits below the panels."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    if labels is None:
        from .protocol.text import SHORT

        labels = {"ce": "CE", **SHORT}
    tasks = list(dict.fromkeys(shares.task)) if tasks is None else list(tasks)
    keys = list(dict.fromkeys(zip(shares.method, shares.dimension)))
    fig, axes = plt.subplots(1, len(tasks), figsize=(3.2 * len(tasks) + 1.6, 0.32 * len(keys) + 1.6), squeeze=False,
                             sharey=True, sharex=True)
    for ax, t in zip(axes[0], tasks):
        g = shares[shares.task == t].set_index(["method", "dimension", "side"])
        for j, (m, d) in enumerate(keys):
            for side, sign in (("low", -1.0), ("high", 1.0)):
                if (m, d, side) not in g.index:
                    continue
                r = g.loc[(m, d, side)]
                ax.barh(j, sign * 100 * r.share, height=0.7, color=COLORS.get(m, "0.5"), alpha=0.45 if r.limit else 0.9,
                        hatch="///" if r.limit else None, edgecolor="k" if r.flag else "none", lw=1.5 if r.flag else 0)
        for x, style in ((100 * tenth, ":"), (100 * flag, "--")):
            for sign in (-1, 1):
                ax.axvline(sign * x, color="0.3", ls=style, lw=0.9)
        ax.axvline(0.0, color="k", lw=0.8)
        ax.set_title(t)
        ax.set_xlabel("← low edge · high edge →\nshare of E_T's weight (%)")
    top = max(100 * float(shares.share.max()) if len(shares) else 0.0, 100 * flag) * 1.1
    axes[0][0].set_xlim(-top, top)
    axes[0][0].xaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{abs(v):g}"))
    axes[0][0].set_yticks(range(len(keys)), [f"{labels.get(m, m)} · {'η_eff' if d == 'lr_eff' else axis_label(d)}"
                                             for m, d in keys])
    axes[0][0].set_ylim(len(keys) - 0.5, -0.5)
    handles = [Line2D([], [], color="0.3", ls=":", label=f"flat response ({100 * tenth:g}%)"),
               Line2D([], [], color="0.3", ls="--", label=f"flagged above {100 * flag:g}%"),
               Patch(facecolor="0.6", alpha=0.45, hatch="///", label="definitional limit"),
               Patch(facecolor="0.6", edgecolor="k", lw=1.5, label="flagged edge")]
    fig.tight_layout(rect=(0, 0.45 / fig.get_size_inches()[1], 1, 1))
    fig.legend(handles=handles, loc="lower center", ncol=4, frameon=False, bbox_to_anchor=(0.5, 0.0))
    return fig

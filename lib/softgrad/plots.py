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
    "grad_norm": "gradient norm",
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


def _segments_in_box(p0, p1, bb):
    """Which segments ``p0[i] -> p1[i]`` (display coordinates) pass through the open box ``bb`` (Liang-Barsky)."""
    import numpy as np

    d = p1 - p0
    t0, t1 = np.zeros(len(p0)), np.ones(len(p0))
    for k, (lo, hi) in enumerate(((bb.x0, bb.x1), (bb.y0, bb.y1))):
        par = d[:, k] == 0
        with np.errstate(divide="ignore", invalid="ignore"):
            a, b = (lo - p0[:, k]) / d[:, k], (hi - p0[:, k]) / d[:, k]
        inside = (p0[:, k] > lo) & (p0[:, k] < hi)
        t0 = np.maximum(t0, np.where(par, np.where(inside, -np.inf, np.inf), np.minimum(a, b)))
        t1 = np.minimum(t1, np.where(par, np.where(inside, np.inf, -np.inf), np.maximum(a, b)))
    return t0 < t1


def _points_in_box(pts, bb) -> int:
    x, y = pts.T
    return int(((x > bb.x0) & (x < bb.x1) & (y > bb.y0) & (y < bb.y1)).sum())


def _overlap(a, b) -> tuple[float, float]:
    """Width and height (px) of the intersection of two display-space boxes (0 where they are apart)."""
    return max(0.0, min(a.x1, b.x1) - max(a.x0, b.x0)), max(0.0, min(a.y1, b.y1) - max(a.y0, b.y0))


def _covered(artist, ax, bb) -> int:
    """How much of a data artist lies inside the display-space box ``bb`` (a legend's, a text's): its markers and
    vertices inside, its line segments that pass through (error bars included), a filled area (``fill_between``)
    under the box, or a bar or image that overlaps it by more than :data:`OVERLAP_PX` each way."""
    import numpy as np
    from matplotlib.collections import Collection
    from matplotlib.image import AxesImage
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch, Rectangle

    def lines(pts):  # vertices inside, plus segments through the box
        ok = np.isfinite(pts).all(axis=1)
        n = _points_in_box(pts[ok], bb)
        if len(pts) > 1:
            keep = ok[:-1] & ok[1:]
            n += int(_segments_in_box(pts[:-1][keep], pts[1:][keep], bb).sum())
        return n

    def area(path, trans) -> int:  # a filled region under the box: a grid of the box's points inside it
        gx, gy = np.meshgrid(np.linspace(bb.x0 + 1, bb.x1 - 1, 7), np.linspace(bb.y0 + 1, bb.y1 - 1, 5))
        return int(path.contains_points(np.c_[gx.ravel(), gy.ravel()], transform=trans).any())

    if isinstance(artist, (Rectangle, AxesImage)):  # bars: under the box, even where none of its corners is
        w, h = _overlap(artist.get_window_extent(), bb)
        return int(w > OVERLAP_PX and h > OVERLAP_PX)
    if isinstance(artist, Patch):
        trans = artist.get_transform()
        return area(artist.get_path(), trans) or lines(trans.transform(artist.get_path().vertices))
    if isinstance(artist, Line2D):
        xy = np.asarray(artist.get_xydata(), float)
        if not len(xy):
            return 0
        pts = artist.get_transform().transform(xy)
        if artist.get_linestyle() in ("None", "", " "):
            return _points_in_box(pts[np.isfinite(pts).all(axis=1)], bb)
        return lines(pts)
    if isinstance(artist, Collection):
        off = np.asarray(artist.get_offsets(), float).reshape(-1, 2)
        if artist.get_offset_transform() == ax.transData and len(off):  # scatter markers
            off = off[np.isfinite(off).all(axis=1)]
            return _points_in_box(ax.transData.transform(off), bb) if len(off) else 0
        trans = artist.get_transform()
        fc = artist.get_facecolor()
        filled = len(fc) and float(np.max(fc[:, 3])) > 0
        return sum((area(p, trans) if filled else 0) or lines(trans.transform(p.vertices))
                   for p in artist.get_paths() if len(p.vertices))
    return 0


def _data_artists(ax) -> list:
    return [a for a in (*ax.lines, *ax.collections, *ax.patches, *ax.images) if _is_data(a, ax)]


def _axes_name(ax) -> str:
    return ax.get_title() or ax.get_title("left") or ax.get_ylabel() or ax.get_xlabel()


def figure_data(fig) -> dict:
    """What a figure shows, for the book's rendering test (:func:`save` stores it in the PNG): per axes, how
    many artists draw data (``data``) and how many data points, segments or bars its legend covers
    (``legend_covers``); ``data_artists``, the total. An axes with no data, or a legend over data, is a defect
    the test reports. Draws the figure."""
    fig.canvas.draw()
    axes = []
    for ax in fig.axes:
        if not ax.get_visible():
            continue
        arts = _data_artists(ax)
        covers, leg = 0, ax.get_legend()
        if leg is not None and leg.get_visible():
            bb = leg.get_window_extent()
            covers = sum(_covered(a, ax, bb) for a in arts)
        axes.append({"title": _axes_name(ax), "data": len(arts), "legend_covers": covers})
    return {"data_artists": sum(a["data"] for a in axes), "axes": axes}


# ---------------------------------------------------------------------------------------------------------
# Layout: what a reader of the book sees go wrong in a figure (save() records it in every PNG)

#: width (CSS px) a figure gets in the book at a 1280 px window: the window less the chapter list (sphinx-book-
#: theme: 20% = 256 px), the article's padding (2 × 2rem) and a cell output's left padding (myst-nb: 1em),
#: 1280 − 256 − 64 − 16; the right sidebar is hidden (book/_static/softgrad.css). A PNG wider than this is
#: scaled down to it; a narrower one is shown at its own size (1 PNG pixel = 1 CSS px). tests/test_book.py
#: measures the width of every scaled figure in the browser against this value.
COLUMN_PX = 944
#: the smallest font (em size, CSS px) a figure's text may have once shown in the column
MIN_TEXT_PX = 9.0
#: overlaps of at most this many pixels (either way) are ignored: a text's box includes the font's line gap, so
#: neighbouring labels that touch without their glyphs meeting overlap by a pixel or so
OVERLAP_PX = 1.0
#: WCAG AA contrast of normal text on white
MIN_CONTRAST = 4.5
#: secondary text (the provenance stamp, notes in a panel): 7.5:1 on white
MUTED = "#555555"
#: the provenance stamp's font size in the column (px)
STAMP_PX = 9.5

_DRAWN: list[list] = []  # the texts drawn while layout_defects draws the figure (the innermost list records)


def _record_texts():
    """A context in which every text matplotlib actually draws (visible, non-empty; a tick beyond the axis
    limits is not drawn) is appended to the list it yields."""
    from contextlib import contextmanager

    import matplotlib.text as mtext

    @contextmanager
    def ctx():
        orig = mtext.Text.draw

        def draw(self, renderer):
            orig(self, renderer)
            if _DRAWN and self.get_visible() and self.get_text():
                _DRAWN[-1].append(self)

        _DRAWN.append([])
        mtext.Text.draw = draw  # Annotation.draw calls Text.draw: annotations are recorded too
        try:
            yield _DRAWN[-1]
        finally:
            mtext.Text.draw = orig
            _DRAWN.pop()

    return ctx()


def _text_roles(fig) -> dict:
    """id(text) -> what it is, in words ("x tick label of 'panel'", "legend text", "figure text")."""
    roles = {}

    def legend(leg, where):
        if leg is not None:
            for t in leg.get_texts():
                roles[id(t)] = f"legend text{where}"
            roles[id(leg.get_title())] = f"legend title{where}"

    for t in fig.texts:
        roles[id(t)] = "figure text"
    for attr in ("_suptitle", "_supxlabel", "_supylabel"):
        if getattr(fig, attr, None) is not None:
            roles[id(getattr(fig, attr))] = attr.strip("_")
    for leg in fig.legends:
        legend(leg, " (figure legend)")
    for ax in fig.axes:
        where = f" of {_axes_name(ax)!r}" if _axes_name(ax) else ""
        for t in (ax.title, getattr(ax, "_left_title", None), getattr(ax, "_right_title", None)):
            if t is not None:
                roles[id(t)] = f"title{where}"
        for axis, n in ((ax.xaxis, "x"), (ax.yaxis, "y")):
            roles[id(axis.label)] = f"{n}-axis label{where}"
            roles[id(axis.get_offset_text())] = f"{n}-axis offset{where}"
            for tick in (*axis.majorTicks, *axis.minorTicks):
                roles[id(tick.label1)] = roles[id(tick.label2)] = f"{n} tick label{where}"
        for t in ax.texts:
            roles[id(t)] = f"text in the panel{where}"
        legend(ax.get_legend(), where)
    return roles


def _quad(t, renderer):
    """The four corners (display px) of a drawn text's box, rotated with the text."""
    import numpy as np

    bb = t.get_window_extent(renderer)
    angle = t.get_rotation()
    if min(angle % 90, 90 - angle % 90) < 1e-6:
        return np.array([[bb.x0, bb.y0], [bb.x1, bb.y0], [bb.x1, bb.y1], [bb.x0, bb.y1]])
    t.set_rotation(0)
    flat = t.get_window_extent(renderer)
    t.set_rotation(angle)
    w, h, th = flat.width / 2, flat.height / 2, np.deg2rad(angle)
    r = np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
    return np.array([bb.x0 + bb.x1, bb.y0 + bb.y1]) / 2 + np.array([[-w, -h], [w, -h], [w, h], [-w, h]]) @ r.T


def _quad_overlap(a, b) -> float:
    """How deep two convex quadrilaterals overlap (px): the smallest overlap of their projections on the
    edge normals of both (separating axes); 0 where they are apart."""
    import numpy as np

    depth = np.inf
    for q in (a, b):
        for i in range(2):
            e = q[i + 1] - q[i]
            n = np.array([-e[1], e[0]]) / (np.hypot(*e) or 1.0)
            pa, pb = a @ n, b @ n
            depth = min(depth, min(pa.max(), pb.max()) - max(pa.min(), pb.min()))
    return max(0.0, float(depth))


def contrast(color, alpha: float | None = None) -> float:
    """WCAG contrast ratio of ``color`` (its alpha, or ``alpha``, blended onto white) against white."""
    from matplotlib.colors import to_rgba

    r, g, b, a = to_rgba(color, alpha)
    lum = sum(w * (c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4)
              for w, c in zip((0.2126, 0.7152, 0.0722), (a * r + 1 - a, a * g + 1 - a, a * b + 1 - a)))
    return 1.05 / (lum + 0.05)


def shown_width(fig) -> float:
    """The width (px) of the PNG :func:`save` writes: the figure's tight box, padded, at ``figure.dpi``."""
    bb = fig.get_tightbbox(fig.canvas.get_renderer())
    return (bb.width + 2 * plt.rcParams["savefig.pad_inches"]) * fig.dpi


def page_scale(fig, column_px: float | None = None) -> float:
    """How much the book scales the figure's PNG to fit its column (1: shown at its own size)."""
    return min(1.0, (column_px or COLUMN_PX) / shown_width(fig))


def text_px(size_pt: float, fig, column_px: float | None = None) -> float:
    """The size (CSS px) of a ``size_pt`` font of ``fig`` in the book's column: ``size_pt × dpi/72 × scale``."""
    return size_pt * fig.dpi / 72 * page_scale(fig, column_px)


def layout_defects(fig, column_px: float | None = None) -> list[str]:
    """What a reader of the book sees go wrong in ``fig`` (:func:`_layout`, which documents the checks)."""
    return _layout(fig, column_px)[0]


def _layout(fig, column_px: float | None = None) -> tuple[list[str], float]:
    """What a reader of the book sees go wrong in ``fig`` as :func:`save` writes it and the book shows it in a
    column ``column_px`` wide (default :data:`COLUMN_PX`), one line each (empty for a clean figure), and the
    smallest font drawn (px, the PNG at its own size). Draws the figure.

    - **text over text**: two drawn texts (titles, axis and tick labels, annotations, legend texts and titles,
      the suptitle, figure texts such as the provenance stamp) whose boxes, rotated with the text, overlap by
      more than :data:`OVERLAP_PX` each way;
    - **legend over data**: a legend (an axes' own, over that axes; a figure legend, over any axes) covering
      data: markers, line segments, error bars, scatter points, bars, filled areas, images. Reference lines and
      spans drawn in axes coordinates (``axhline``, ``axvspan``) are not data;
    - **text over data**: a text placed in a panel (``ax.text``, ``ax.annotate``) covering its data, likewise
      (its box less :data:`OVERLAP_PX` each side);
    - **small text**: a font under :data:`MIN_TEXT_PX` once the PNG is scaled to the column (:func:`text_px`:
      ``size_pt × dpi/72 × min(1, column_px / png_width_px)``);
    - **low contrast**: text under :data:`MIN_CONTRAST`:1 against the white page (WCAG AA).

    Only texts actually drawn count: a tick beyond the view and a shared axis's hidden tick labels do not, while
    tick labels of neighbouring panels that run into each other are a defect like any other."""
    from matplotlib.transforms import Bbox

    col = column_px or COLUMN_PX
    renderer = fig.canvas.get_renderer()
    with _record_texts() as drawn:
        fig.canvas.draw()
    texts, seen = [], set()
    for t in drawn:
        if id(t) not in seen:
            seen.add(id(t))
            texts.append(t)
    roles = _text_roles(fig)
    name = lambda t: f"{roles.get(id(t), 'text')} {t.get_text()[:40]!r}"  # noqa: E731
    out = []

    boxes = [t.get_window_extent(renderer) for t in texts]
    quads = [_quad(t, renderer) for t in texts]
    for i in range(len(texts)):
        for j in range(i + 1, len(texts)):
            w, h = _overlap(boxes[i], boxes[j])
            if w > OVERLAP_PX and h > OVERLAP_PX and _quad_overlap(quads[i], quads[j]) > OVERLAP_PX:
                out.append(f"text over text: {name(texts[i])} overlaps {name(texts[j])} ({w:.0f}×{h:.0f} px)")

    for leg, axes in [(ax.get_legend(), [ax]) for ax in fig.axes] + [(leg, fig.axes) for leg in fig.legends]:
        if leg is None or not leg.get_visible():
            continue
        bb = leg.get_window_extent(renderer)
        for ax in axes:
            n = sum(_covered(a, ax, bb) for a in _data_artists(ax)) if ax.get_visible() else 0
            if n:
                out.append(f"legend over data: the {'figure ' if len(axes) > 1 or leg in fig.legends else ''}legend "
                           f"covers {n} data points of {_axes_name(ax)!r}")

    for ax in fig.axes:
        for t in ax.texts:
            if id(t) not in seen:
                continue
            b = t.get_window_extent(renderer)
            b = Bbox.from_extents(b.x0 + OVERLAP_PX, b.y0 + OVERLAP_PX, b.x1 - OVERLAP_PX, b.y1 - OVERLAP_PX)
            n = sum(_covered(a, ax, b) for a in _data_artists(ax)) if b.width > 0 and b.height > 0 else 0
            if n:
                out.append(f"text over data: {name(t)} covers {n} data points of {_axes_name(ax)!r}")

    width = shown_width(fig)
    scale = min(1.0, col / width)
    small: dict[float, list] = {}
    for t in texts:
        if t.get_fontsize() * fig.dpi / 72 * scale < MIN_TEXT_PX - 1e-9:
            small.setdefault(t.get_fontsize(), []).append(t)
    for size, ts in sorted(small.items()):
        out.append(f"small text: {len(ts)} text{'s' if len(ts) > 1 else ''} at {size:g} pt = "
                   f"{size * fig.dpi / 72 * scale:.1f} px in the {col:.0f} px column (the figure is {width:.0f} px "
                   f"wide; minimum {MIN_TEXT_PX:g} px), e.g. {name(ts[0])}")

    for t in texts:
        c = contrast(t.get_color(), t.get_alpha())
        if c < MIN_CONTRAST:
            out.append(f"low contrast: {name(t)} at {c:.1f}:1 on white (minimum {MIN_CONTRAST:g}:1)")
    return out, min((t.get_fontsize() * fig.dpi / 72 for t in texts), default=0.0)


def _freeze_figure_legends(fig) -> None:
    """Anchor each figure legend where it is now, in figure coordinates. A figure legend is anchored to the
    figure's box by default, and saving with ``bbox_inches="tight"`` swaps that box for the tight one, which
    moves the legend (figure 1.1's legend onto the provenance stamp)."""
    for leg in fig.legends:
        box = leg.get_bbox_to_anchor().transformed(fig.transFigure.inverted())
        leg.set_bbox_to_anchor(box.bounds, transform=fig.transFigure)


def save(fig, name: str, profile: str, notebook: str) -> bytes:
    """Stamp ``fig`` with its source (notebook and parameter file), save it as PNG, and return the PNG's bytes.

    The stamp goes below everything else the figure draws (axis labels and figure legends included),
    right-aligned, in :data:`MUTED` grey, at :data:`STAMP_PX` once the figure is scaled to the book's column.
    The PNG carries :func:`figure_data` as JSON in its ``softgrad`` text field, with the figure's
    :func:`layout_defects` as saved (stamp included) under ``layout`` and its smallest font under ``min_text_px``
    (px, the PNG at its own size): the book's rendering test and tests/test_plots.py read them.

    No commit or time in the stamp: a figure changes only when what it shows changes, so regenerating the
    results twice leaves the committed figures as they are (the executed notebook and the runs' provenance
    record the commit)."""
    import io
    import json

    _freeze_figure_legends(fig)
    meta = figure_data(fig)  # draws the figure
    w, h = fig.get_size_inches()
    bb = fig.get_tightbbox(fig.canvas.get_renderer())  # inches: everything drawn so far
    size = max(6.0, STAMP_PX / page_scale(fig) * 72 / fig.dpi)
    fig.text(bb.x1 / w, (bb.y0 - 0.04) / h, f"softgrad notebooks/{notebook}.py · params/{profile}/{notebook}.yaml",
             ha="right", va="top", fontsize=size, color=MUTED)
    meta["layout"], meta["min_text_px"] = _layout(fig)
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

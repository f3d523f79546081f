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

#: width (CSS px) a figure gets in the book at a 1280 px window, measured in Chromium (tests/test_book.py): the
#: article's column is 960 px (the window less the chapter list, sphinx-book-theme's 20% = 256 px, and the
#: article's padding, 2 × 2rem; the right sidebar is hidden by book/_static/softgrad.css); a figure in the page's
#: flow gets 944 px of it (a cell output's 1em left padding) and one in a collapsed output (hide-output toggle)
#: 922 px: the narrower is used. A PNG wider than this is scaled down to it; a narrower one is shown at its own
#: size (1 PNG pixel = 1 CSS px). The book test checks every scaled figure against this value.
COLUMN_PX = 922
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


def task_name(t: str, task_labels: dict | None = None) -> str:
    """A task's display label (``task_labels``: task -> label, as :func:`softgrad.protocol.task_labels` gives
    them), else its key."""
    return (task_labels or {}).get(t, t)


def param_name(d: str) -> str:
    """A searched parameter's display name (:data:`softgrad.protocol.PARAM_LABELS`: "β", "effective step
    η_eff"), else :func:`axis_label`'s words for it."""
    from .protocol.text import PARAM_LABELS

    return PARAM_LABELS.get(d, axis_label(d))


def convergence_figure(histories, tasks, longer: float = 2.0, task_labels: dict | None = None):
    """Validation accuracy of CE over epochs at the budget (solid, method ``ce``) and trained ``longer`` × as
    long (dashed, ``ce_longer``), mean ± std over the trials in ``histories`` (the caller picks them: the ones the
    convergence gate trains longer), one panel per task, titled by ``task_labels`` (task -> display label; the
    key where none). The band is clipped to [0, 1] and each panel's y-axis stops at its data (an accuracy axis
    never runs past 100%)."""
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
        ax.set_title(task_name(t, task_labels), fontsize=11)
        ax.set_xlabel("epoch")
    axes[0][0].set_ylabel("validation accuracy (%)")
    axes[0][0].legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


def budget_figure(budget, tasks, margins: dict | None = None, labels: dict | None = None,
                  task_labels: dict | None = None):
    """E_T against the search budget T as the difference to CE's E_T (test accuracy, points), one panel per task:
    the curves of absolute E_T lie within a few tenths of a point of each other at T ≥ 4, where the comparison is
    made, so the difference is drawn (CE's own E_T at T = 1 and the largest T is in each panel's title), with
    the task's margin (``margins``: task -> margin, a fraction) as a grey band. ``labels``: method -> legend
    name; ``task_labels``: task -> display label (panel titles and the crossings; the key where none). The
    legend sits below the panels. Returns ``(fig, crossings)``: "method on task" for each curve that changes
    sign (crosses CE's)."""
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
            ax.plot(d.index, 100 * d.to_numpy(), "o-", ms=3, color=COLORS.get(m), label=labels.get(m, method_name(m)))
            sign = np.sign(d.to_numpy())
            if len(set(sign[sign != 0])) > 1:
                crossings.append(f"{labels.get(m, method_name(m))} on {task_name(t, task_labels)}")
        ax.set_title(f"{task_name(t, task_labels)}\nCE: {100 * ce.iloc[0]:.1f} → {100 * ce.iloc[-1]:.1f}%",
                     fontsize=10)
        ax.set_xlabel("search budget T (trials)")
    axes[0][0].set_ylabel("E_T(method) − E_T(CE)\n(test accuracy, points)")
    handles, names = axes[0][0].get_legend_handles_labels()
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    fig.legend(handles, names, loc="lower center", ncol=max(1, len(names)), frameon=False, bbox_to_anchor=(0.5, 0.0))
    return fig, crossings


def time_figure(pool, methods, task_labels: dict | None = None):
    """Figure 6.6: training time of each method relative to CE on the same task (median over the pool), bars
    grouped by method (display names), one colour per task (``task_labels``: task -> the legend's label; the key
    where none); the legend to the right of the axes, clear of the bars."""
    p = pool[pool.method != "ce_longer"]
    tt = p.groupby(["task", "method"], sort=False).train_time.median()
    rel = (tt / tt.xs("ce", level="method").reindex(tt.index.get_level_values("task")).to_numpy()).unstack("task")
    fig, ax = plt.subplots(figsize=(7.5, 0.12 * len(rel) * max(1, rel.shape[1]) + 1.0))
    rel = rel.loc[[m for m in methods if m in rel.index]]
    rel.index = [method_name(m) for m in rel.index]  # display names, as every other figure
    rel.columns = [task_name(t, task_labels) for t in rel.columns]
    rel.plot.barh(ax=ax)
    ax.axvline(1.0, color="k", lw=0.8)
    ax.set_xlabel("training time relative to CE (×)")
    ax.set_ylabel("method")
    ax.invert_yaxis()
    ax.legend(title="task", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    return fig


def edge_figure(shares, tasks=None, labels: dict | None = None, tenth: float = 0.1, flag: float = 0.15,
                task_labels: dict | None = None, coupled: set | None = None):
    """Where the models a search keeps sit in each searched range: :func:`softgrad.protocol.edge_shares`'s share
    of E_T's selection weight in the outer tenth of each range, one panel per task, one row per (method,
    dimension; η_eff: the learning rate in the method's own coordinates): the low edge drawn to the left of 0,
    the high edge to the right, in each method's colour; hatched where the edge is a definitional limit (the
    knob reaches CE or its domain ends: an optimum there is the method's own), outlined in black where the
    diagnostic flags it. Dotted lines: ``tenth`` (what a
    flat response puts there); dashed: ``flag``. ``labels``: method -> display name (default: the protocol's
    short names); each row names its dimension by :func:`param_name`; ``task_labels``: task -> panel title (the
    key where none). The legend sits below the panels."""
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
        ax.set_title(task_name(t, task_labels), fontsize=11)
        ax.set_xlabel("← low edge · high edge →\nshare of E_T's weight (%)")
    top = max(100 * float(shares.share.max()) if len(shares) else 0.0, 100 * flag) * 1.1
    axes[0][0].set_xlim(-top, top)
    axes[0][0].xaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{abs(v):g}"))
    # ``coupled``: the methods whose learning-rate dimension is an effective step (a coupling); the others' is
    # the learning rate itself (None: every row named as the dimension is)
    dim = lambda m, d: "η" if coupled is not None and d == "lr_eff" and m not in coupled else param_name(d)  # noqa: E731
    axes[0][0].set_yticks(range(len(keys)), [f"{labels.get(m, m)} · {dim(m, d)}" for m, d in keys])
    axes[0][0].set_ylim(len(keys) - 0.5, -0.5)
    handles = [Line2D([], [], color="0.3", ls=":", label=f"flat response ({100 * tenth:g}%)"),
               Line2D([], [], color="0.3", ls="--", label=f"flagged above {100 * flag:g}%"),
               Patch(facecolor="0.6", alpha=0.45, hatch="///", label="definitional limit"),
               Patch(facecolor="0.6", edgecolor="k", lw=1.5, label="flagged edge")]
    fig.tight_layout(rect=(0, 0.45 / fig.get_size_inches()[1], 1, 1))
    fig.legend(handles=handles, loc="lower center", ncol=4, frameon=False, bbox_to_anchor=(0.5, 0.0))
    return fig


# ---------------------------------------------------------------------------------------------------------
# Helpers every chapter's figures use


def method_name(m: str) -> str:
    """A method's display name ("gradient decay", "SGT"; :data:`softgrad.protocol.SHORT`), else ``m``."""
    from .protocol import SHORT

    return SHORT.get(m, m)


def readable_log_axis(ax, axis: str = "y") -> None:
    """A log axis whose labelled ticks are plain numbers: at 10^k over more than 2.5 decades, else at 1, 2 and
    5 × 10^k (all of 1–9 × 10^k where that leaves fewer than two in view, the view's ends where even that does):
    matplotlib's default labels a log axis spanning less than a decade with one tick, or none."""
    import numpy as np
    from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, NullFormatter, NullLocator

    a = ax.yaxis if axis == "y" else ax.xaxis
    lo, hi = sorted(a.get_view_interval())
    fmt = FuncFormatter(lambda v, _: f"{v:.4g}")
    decades = np.log10(hi / lo) if lo > 0 else np.inf
    first = (1.0,) if decades > 2.5 else (1.0, 2.0, 5.0)  # labels that fit: fewer per decade on a wide range
    for subs in (first, (1.0, 2.0, 5.0), tuple(np.arange(1.0, 10.0))):
        loc = LogLocator(base=10, subs=subs, numticks=30)
        if sum(lo <= v <= hi for v in loc.tick_values(lo, hi)) >= 2:
            break
    else:
        loc = FixedLocator([float(f"{lo:.2g}"), float(f"{hi:.2g}")])
    a.set_major_locator(loc)
    a.set_major_formatter(fmt)
    a.set_minor_locator(NullLocator())
    a.set_minor_formatter(NullFormatter())


def _final(df):
    from .analysis import final

    return final(df)


def _mean_std(df, x: str, y: str):
    return df.groupby(x)[y].agg(["mean", "std"]).fillna({"std": 0.0})


def legend_below(fig, handles, labels, ncol: int | None = None, rows_height: float = 0.35, **kw):
    """One legend for all panels, centred below them (``tight_layout`` leaves it room): clear of every panel's
    data, whatever the data. ``rows_height``: inches per legend row."""
    import math

    ncol = ncol or len(labels)
    rows = math.ceil(len(labels) / ncol)
    h = fig.get_size_inches()[1]
    fig.tight_layout(rect=(0, min(0.45, (rows * rows_height + 0.1) / h), 1, 1))
    kw.setdefault("fontsize", 10)
    return fig.legend(handles, labels, loc="lower center", ncol=ncol, frameon=False, bbox_to_anchor=(0.5, 0.0), **kw)


def sweep_figure(df, x: str, ys, hue: str | None = None, label=None, logx: bool = True, ref: float | None = None):
    """Final-epoch ``ys`` (one panel each, side by side, at most 11 in wide) against ``x``, mean ± std over
    seeds, one line per ``hue`` value with one legend below the panels; ``ref``: a dotted vertical line (the
    neutral setting, e.g. β = 1). Figures 2.1 and 4.1."""
    from .analysis import errorbars

    fig, axes = plt.subplots(1, len(ys), figsize=(min(11.0, 3.7 * len(ys)), 3.8), squeeze=False)
    for ax, y in zip(axes[0], ys):
        errorbars(ax, df, x, y, hue=hue, label=label, logx=logx)
        if logx:
            readable_log_axis(ax, "x")
        if ref is not None:
            ax.axvline(ref, color="0.6", ls=":", lw=1)
    if hue:
        legend_below(fig, *axes[0][0].get_legend_handles_labels())
    else:
        fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------------------------------
# Chapter 01


def lr_sweep_figure(df, x: str = "beta", y: str = "test_acc", hue: str = "lr", label=None):
    """Figure 1.1: final-epoch ``y`` against ``x`` (log axis), one line per ``hue`` (mean ± std over seeds;
    left), and that std alone (right); one legend below both panels."""
    label = label or (lambda v: f"{hue}={v:g}")
    f = _final(df)
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for i, (h, sub) in enumerate(f.groupby(hue)):
        s = _mean_std(sub, x, y)
        ax.errorbar(s.index, s["mean"], yerr=s["std"], marker="o", ms=4, capsize=3, color=f"C{i}", label=label(h))
        ax2.plot(s.index, s["std"], "o-", color=f"C{i}")
    for a in (ax, ax2):
        a.set_xscale("log")
        a.set_xlabel(f"{axis_label(x)} (inverse temperature)" if x == "beta" else axis_label(x))
    ax.set_ylim(0, 1)
    ax.set_ylabel(axis_label(y))
    ax.set_title(f"{axis_label(y)} against {axis_label(x)}")
    ax2.set_ylabel(f"std of {axis_label(y)} over seeds")
    ax2.set_title("spread over seeds")
    legend_below(fig, *ax.get_legend_handles_labels())
    return fig


def flow_figure(p2, p4_seeds, p4, p5, titles: dict, p2_ylabel: str, p5_ylabel: str):
    """Figure 1.4, full-batch gradient descent, four panels on log-log axes with plain-number ticks
    (:func:`readable_log_axis`). ``p2``: rows ``x`` (1/(ηβ²)), ``t`` (steps), ``beta``; ``p4_seeds``: one Series
    per seed, β -> largest η with monotone descent, and ``p4`` the seeds' majority; ``p5``: rows ``z0``, ``ell``,
    ``t_learn``, ``saturated``. ``titles``: panel -> title ("p2", "p4", "p5", "p5_time")."""
    import numpy as np

    fig, axes = plt.subplots(2, 2, figsize=(8.6, 7.0))
    ax2, ax4, ax5, ax6 = axes.ravel()
    for b, sub in p2.groupby("beta"):
        ax2.loglog(sub.x, sub.t, "o", ms=4, alpha=0.7, label=f"β={b:g}")
    xs = np.sort(p2.x.to_numpy(float))
    ax2.loglog(xs, p2.t.median() * xs / np.median(xs), "k--", lw=0.8, label="slope 1")
    ax2.set_xlabel("1/(ηβ²)")
    ax2.set_ylabel(p2_ylabel)
    ax2.legend(loc="upper left")
    for i, s in enumerate(p4_seeds):
        ax4.loglog(s.index, s.to_numpy(float), ".", color="0.6", label="one seed" if i == 0 else None)
    ax4.loglog(p4.index, p4.to_numpy(float), "o-", label="seed majority")
    ax4.loglog(p4.index, p4.iloc[0] * (p4.index / p4.index[0]) ** -2.0, "k--", lw=0.8, label="slope −2")
    ax4.set_xlabel("β")
    ax4.set_ylabel("largest η with monotone descent")
    ax4.legend(loc="lower left")
    big = p5.saturated.to_numpy(bool)
    for ax, col, marker, color, ylabel in ((ax5, "ell", "o", "tab:blue", "steps in the linear phase"),
                                           (ax6, "t_learn", "s", "tab:red", p5_ylabel)):
        ax.loglog(p5.z0[big], p5[col][big], marker, ms=4, color=color)
        ax.loglog(p5.z0[~big], p5[col][~big], marker, ms=4, mfc="none", color=color)
        ax.set_xlabel("‖βz₀‖")
        ax.set_ylabel(ylabel)
    for ax, key in zip(axes.ravel(), ("p2", "p4", "p5", "p5_time")):
        ax.set_title(titles.get(key, ""), fontsize=11)
        ax.relim()
        ax.autoscale_view()
        for which in ("x", "y"):
            readable_log_axis(ax, which)
    ax4.set_xticks(p4.index, [f"{b:g}" for b in p4.index])
    ax4.minorticks_off()
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], marker="o", ls="", color="k", label="P5: saturated (initial loss > 2 ln C)"),
               Line2D([], [], marker="o", ls="", color="k", mfc="none", label="P5: not saturated")]
    legend_below(fig, handles, [h.get_label() for h in handles])  # the bottom panels' markers, clear of their data
    return fig


# ---------------------------------------------------------------------------------------------------------
# Chapter 02


def reliability_grid(diagrams, ncols: int = 3):
    """Figure 2.3: one reliability diagram per item of ``diagrams`` ((title, reliability bins dict with ``conf``,
    ``acc``, ``count``)), in a grid ``ncols`` wide at the column's width (shared axes, labels on the outer panels
    only). Marker area is proportional to the bin's count; the dotted diagonal is perfect calibration."""
    import math

    import numpy as np

    n = len(diagrams)
    rows = max(1, math.ceil(n / ncols))
    cols = min(ncols, n) or 1
    fig, axes = plt.subplots(rows, cols, figsize=(2.75 * cols + 0.6, 2.6 * rows + 0.5), sharex=True, sharey=True,
                             squeeze=False)
    for ax, (title, rel) in zip(axes.ravel(), diagrams):
        pts = [(c, a, k) for c, a, k in zip(rel["conf"], rel["acc"], rel["count"]) if k]
        ax.plot([0, 1], [0, 1], ":", color="0.45", lw=1)
        if pts:
            c, a, k = map(np.asarray, zip(*pts))
            ax.plot(c, a, "-", color="tab:blue", lw=1)
            ax.scatter(c, a, s=8 + 60 * k / k.max(), color="tab:blue", zorder=3)
        ax.set_title(title, fontsize=11)
        ax.set_xlim(0, 1.02)
        ax.set_ylim(-0.02, 1.02)
        ax.set_xticks([0, 0.5, 1], ["0", "0.5", "1"])
        ax.set_yticks([0, 0.5, 1], ["0", "0.5", "1"])
    for ax in axes.ravel()[n:]:
        ax.set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel("confidence")
    for r in range(rows):  # the last row's x labels where a panel of it is missing: the one above has ticks
        for c_ in range(cols):
            if r * cols + c_ >= n and r > 0:
                axes[r - 1][c_].xaxis.set_tick_params(labelbottom=True)
                axes[r - 1][c_].set_xlabel("confidence")
    for ax in axes[:, 0]:
        ax.set_ylabel("accuracy")
    fig.tight_layout()
    return fig


MARKERS = "osD^vP*Xhp<>"


def points_figure(m, x: str, y: str, groups=None, xlabel: str | None = None, ylabel: str | None = None,
                  ncol: int | None = None):
    """Figure 2.4: one point per row of ``m`` (index: the setting's name; columns ``(x, "mean")``,
    ``(x, "std")``, ``(y, "mean")``, ``(y, "std")``) with error bars both ways, each setting its own colour and
    marker, named in a legend below the axes (a label beside each point collides with its neighbours and error
    bars). ``groups``: setting -> group name: a group's settings share a colour (and a legend column, unless
    ``ncol`` says otherwise), their markers tell them apart."""
    from matplotlib.lines import Line2D

    fig, ax = plt.subplots(figsize=(7.5, 4.6))
    names = list(m.index)
    fams = {}
    for n in names:
        fams.setdefault((groups or {}).get(n, n), []).append(n)
    handles = []
    for gi, (g, members) in enumerate(fams.items()):
        for mi, n in enumerate(members):
            r = m.loc[n]
            color = f"C{gi}" if groups else f"C{names.index(n) % 10}"
            marker = MARKERS[(mi if groups else names.index(n)) % len(MARKERS)]
            ax.errorbar([r[(x, "mean")]], [r[(y, "mean")]], xerr=[r[(x, "std")]], yerr=[r[(y, "std")]], fmt=marker,
                        color=color, ms=7, capsize=3, lw=1.2)
            handles.append(Line2D([], [], marker=marker, color=color, ls="", ms=7, label=n))
    ax.set_xlabel(xlabel or axis_label(x))
    ax.set_ylabel(ylabel or axis_label(y))
    legend_below(fig, handles, [h.get_label() for h in handles], ncol=ncol or (len(fams) if groups else 2))
    return fig


# ---------------------------------------------------------------------------------------------------------
# Chapter 03


def baseline_sweep_figure(df, x: str, ys, baseline=0.0, baseline_label: str = "α = 0 (plain softmax)",
                          point_label: str | None = None):
    """Figure 3.1: final-epoch ``ys`` (one panel each) against ``x`` on a log axis for ``x > 0``, mean ± std
    over seeds, and the setting ``x == baseline`` (which a log axis cannot place: α = 0) as a dashed line with
    its ± std band across the panel; one legend below the panels."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    f = _final(df)
    fig, axes = plt.subplots(1, len(ys), figsize=(4.6 * len(ys), 3.8), squeeze=False)
    for ax, y in zip(axes[0], ys):
        s = _mean_std(f, x, y)
        on, base = s[s.index != baseline], s[s.index == baseline]
        ax.errorbar(on.index, on["mean"], yerr=on["std"], marker="o", ms=4, capsize=3, color="tab:purple")
        if len(base):
            m0, s0 = float(base["mean"].iloc[0]), float(base["std"].iloc[0])
            ax.axhline(m0, color="k", ls="--", lw=1)
            ax.axhspan(m0 - s0, m0 + s0, color="k", alpha=0.12, lw=0)
        ax.set_xscale("log")
        readable_log_axis(ax, "x")
        ax.set_xlabel(axis_label(x))
        ax.set_ylabel(axis_label(y))
    handles = [Line2D([], [], marker="o", color="tab:purple", label=point_label or f"{axis_label(x)} > 0"),
               Line2D([], [], color="k", ls="--", label=baseline_label),
               Patch(color="k", alpha=0.12, label="± std over seeds")]
    legend_below(fig, handles, [h.get_label() for h in handles])
    return fig


# ---------------------------------------------------------------------------------------------------------
# Chapter 04


def match_figure(curves, floor: float = 0.0):
    """Figure 4.2: ``curves``: label -> DataFrame indexed by epoch with columns ``a`` (SGT(α)) and ``b`` (CE(αz)
    with η/α, λα). Left: both over epochs (lines: a; dots: b). Right: |a − b| on a log axis where it is not 0;
    a difference of exactly 0 (at or below ``floor``) is drawn as a hollow marker on its own row below the log
    axis, labelled "exactly 0", instead of on an artificial floor."""
    import numpy as np
    from matplotlib.lines import Line2D

    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(10, 3.9))
    diffs = {k: (c["a"] - c["b"]).abs() for k, c in curves.items()}
    pos = np.concatenate([d[d > floor].to_numpy(float) for d in diffs.values()] or [np.array([])])
    lo = float(pos.min()) if len(pos) else 1e-8
    hi = float(pos.max()) if len(pos) else 1e-6
    zero_y = lo / 10 ** 1.5  # the "exactly 0" row, 1.5 decades under the smallest difference
    handles = []
    for i, (k, c) in enumerate(curves.items()):
        col = f"C{i}"
        ax.plot(c.index, c["a"], "-", color=col)
        ax.plot(c.index, c["b"], "o", color=col, ms=4)
        d = diffs[k]
        nz = d.where(d > floor)
        ax2.plot(nz.index, nz.to_numpy(float), "o-", color=col, ms=4)
        z = d.index[(d <= floor).to_numpy()].to_numpy(float)
        shift = (i - (len(curves) - 1) / 2) * 0.1  # side by side, so that every curve's zeros show
        ax2.plot(z + shift, np.full(len(z), zero_y), "o", mfc="white", color=col, ms=5, ls="")
        handles.append(Line2D([], [], color=col, label=k))
    handles += [Line2D([], [], color="k", ls="-", label="SGT(α)"),
                Line2D([], [], color="k", ls="", marker="o", ms=4, label="CE(αz), η/α, λα")]
    ax.set_xlabel("epoch")
    ax.set_ylabel("training CE (nats)")
    ax2.set_yscale("log")
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("|Δ training CE| (nats)")
    if len(pos):
        ax2.set_ylim(zero_y / 4, hi * 4)
        ax2.axhline((zero_y * lo) ** 0.5, color="0.45", lw=0.8, ls=":")
        readable_log_axis(ax2, "y")
        ticks = [t for t in ax2.get_yticks() if lo / 1.01 <= t <= hi * 4] or [lo]
        if len(ticks) > 5:
            ticks = ticks[::-(-len(ticks) // 5)]
    else:  # every difference is exactly 0: the one row, no log scale to read
        ax2.set_ylim(zero_y / 4, zero_y * 4)
        ticks = []
    ax2.set_yticks([zero_y, *ticks], ["exactly 0", *[f"{t:.0e}".replace("e-0", "e-") for t in ticks]])
    ax2.minorticks_off()
    from matplotlib.ticker import MaxNLocator

    for a in (ax, ax2):
        a.xaxis.set_major_locator(MaxNLocator(integer=True))
    legend_below(fig, handles, [h.get_label() for h in handles])
    return fig


# ---------------------------------------------------------------------------------------------------------
# Chapter 05


def as_speed_figure(speed, names, k_runs, kmax: int, lam: float = 1.0):
    """Figure 5.2. Top: optimizer steps and seconds until the test accuracy first reaches CE's (less 0.5
    points), per run (dots) and mean over the runs that got there (bars), one row per setting of ``names``
    (``speed``: rows ``setting``, ``steps_to``, ``time_to``; NaN: never reached); how many runs never got there
    is written under the setting's name. Bottom: why AS-Speed's window k is what it is: the window the rule
    asks for, λ/(1 − zero-loss fraction) (``k_runs``: rows ``seed``, ``epoch``, ``train_zero_frac``,
    ``accum_k``), one line per seed, against the cap ``kmax`` (dashed) and the window applied (dots)."""
    import numpy as np

    fig = plt.figure(figsize=(8.6, 6.4))
    gs = fig.add_gridspec(2, 2, height_ratios=(1, 1.1))
    ax0 = fig.add_subplot(gs[0, 0])
    ax1 = fig.add_subplot(gs[0, 1], sharey=ax0)
    ax2 = fig.add_subplot(gs[1, :])
    labels = []
    for j, n in enumerate(names):
        v = speed.loc[speed.setting == n]
        miss = int(v.steps_to.isna().sum())
        labels.append(n.replace(" + ", "\n+ ") + (f"\n({miss} of {len(v)} runs never got there)" if miss else ""))
    for ax, col, xlabel in ((ax0, "steps_to", "optimizer steps\nto CE's accuracy"),
                            (ax1, "time_to", "seconds to CE's accuracy\n(this machine)")):
        for j, n in enumerate(names):
            v = speed.loc[speed.setting == n, col].dropna()
            if len(v):
                ax.barh(j, v.mean(), color="tab:red", alpha=0.35, height=0.6)
                ax.plot(v, np.full(len(v), j), "k.", ms=5)
        ax.set_xlabel(xlabel)
        ax.set_xlim(left=0)
    ax0.set_yticks(range(len(names)), labels)
    ax0.set_ylim(len(names) - 0.5, -0.5)
    ax1.tick_params(labelleft=False)
    for s, sub in k_runs.groupby("seed"):
        sub = sub[sub.epoch > 0].sort_values("epoch")
        frac = sub.train_zero_frac.clip(upper=1 - 1e-6)
        ax2.plot(sub.epoch, lam / (1 - frac), "-", color="tab:blue", lw=1.2, alpha=0.7,
                 label="asked for: λ/(1 − zero-loss fraction)" if s == k_runs.seed.min() else None)
        ax2.plot(sub.epoch, sub.accum_k, "o", color="k", ms=4, label="applied" if s == k_runs.seed.min() else None)
    ax2.axhline(kmax, color="tab:red", ls="--", lw=1, label=f"cap as_speed_kmax = {kmax}")
    ax2.set_yscale("log")
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("accumulation window k")
    ax2.relim()
    ax2.autoscale_view()
    lo, hi = ax2.get_ylim()
    ax2.set_ylim(min(lo, 0.8), max(hi, 2.0 * kmax))
    readable_log_axis(ax2, "y")
    from matplotlib.ticker import MaxNLocator

    ax2.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax2.set_title("AS-Speed's accumulation window, one line per seed", fontsize=11)
    legend_below(fig, *ax2.get_legend_handles_labels())
    return fig


# ---------------------------------------------------------------------------------------------------------
# Chapter 06 and 08


def _wrap_label(text: str, width: int = 24) -> str:
    """A label longer than ``width`` characters on several lines, broken after its commas ("MNIST MLP, SGD,\n40%
    label noise"); one without a comma, or short enough, as it is."""
    parts = text.split(", ")
    if len(text) <= width or len(parts) == 1:
        return text
    lines = [parts[0]]
    for part in parts[1:]:
        if len(lines[-1]) + 2 + len(part) <= width:
            lines[-1] += ", " + part
        else:
            lines[-1] += ","
            lines.append(part)
    return "\n".join(lines)


def forest_figure(comparisons, tasks, methods, metrics=("acc", "nll", "ece", "ece_ts"), ncols: int = 2,
                  task_labels: dict | None = None):
    """Figure 6.2: :func:`softgrad.protocol.compare` rows, one panel per metric (a grid ``ncols`` wide at the
    column's width): per (task, method) the difference to tuned CE with its interval, coloured by verdict, over
    the task's equivalence margin (grey band, its edges marked so that a margin narrower than the interval's
    scale still shows). Rows are grouped by task (the task's label heads its group: ``task_labels``, task ->
    display label, the key where none), methods by display name; the verdict legend sits above the panels."""
    import math

    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    c = comparisons[comparisons.task.isin(tasks) & comparisons.method.isin(methods)]
    rows, ticks, labels, headers, heads, slots = {}, [], [], [], set(), 0
    for t in tasks:  # a header row per task (a long label on as many rows as its lines), then its methods
        header = _wrap_label(task_name(t, task_labels))
        lines = header.count("\n") + 1
        headers.append(slots)  # where the group starts
        ticks.append(slots + (lines - 1) / 2)
        heads.add(ticks[-1])
        labels.append(header)
        slots += lines
        for m in methods:
            rows[(t, m)] = slots
            ticks.append(slots)
            labels.append(method_name(m))
            slots += 1
    n = len(metrics)
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(9.2, 0.17 * slots * nrows + 1.3 * nrows + 0.5),
                             sharey=True, squeeze=False)
    for ax, metric in zip(axes.ravel(), metrics):
        scale = 100.0 if metric in POINTS else 1.0
        sub = c[c.metric == metric]
        for r in sub.itertuples():
            y = rows[(r.task, r.method)]
            if "margin" in sub and math.isfinite(r.margin):
                m = r.margin * scale
                ax.fill_betweenx([y - 0.4, y + 0.4], -m, m, color="0.82", lw=0, zorder=0)
                ax.plot([-m, -m], [y - 0.4, y + 0.4], color="0.35", lw=1, zorder=1)
                ax.plot([m, m], [y - 0.4, y + 0.4], color="0.35", lw=1, zorder=1)
            ax.errorbar([r.diff * scale], [y], xerr=[[(r.diff - r.lo) * scale], [(r.hi - r.diff) * scale]], fmt="o",
                        color=VERDICT_COLORS.get(r.verdict, "0.3"), ms=5, capsize=3, zorder=2)
        ax.axvline(0.0, color="k", lw=0.8)
        ax.set_title(METRIC_LABELS.get(metric, metric), fontsize=11)
        ax.set_xlabel("difference to tuned CE")
        ax.xaxis.set_major_locator(MaxNLocator(nbins=5))  # "−0.075" and its neighbours apart in a narrow panel
    for ax in axes.ravel()[n:]:
        ax.set_visible(False)
    ax0 = axes[0][0]
    ax0.set_yticks(ticks, labels)
    ax0.set_ylim(slots - 0.4, -0.6)
    for ax in axes[:, 0]:
        for y, tl in zip(ticks, ax.get_yticklabels()):
            if y in heads:
                tl.set_fontweight("bold")
    for ax in axes.ravel():
        ax.tick_params(axis="y", length=0)
        for y in headers:
            if y:
                ax.axhline(y - 0.5, color="0.6", lw=0.6)
    handles = [Line2D([], [], marker="o", ls="", color=col, label=v) for v, col in VERDICT_COLORS.items()]
    handles.append(Line2D([], [], color="0.35", lw=6, alpha=0.4, label="margin"))
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.45 / fig.get_size_inches()[1]))
    fig.legend(handles=handles, loc="upper center", ncol=len(handles), frameon=False, fontsize=10,
               bbox_to_anchor=(0.5, 1.0))
    return fig


def power_figure(power, n_pool: int, goals=(95, 35)):
    """Figure 6.3: the bootstrap-predicted share of verdicts a rerun reproduces (left) and the share
    inconclusive (right) against the trial indices per task N′ (``power``: rows ``trials``,
    ``predicted_agreement``, ``inconclusive``), the goals dashed, this pool's N dotted."""
    fig, axes = plt.subplots(1, 2, figsize=(8.4, 3.2))
    for ax, col, label, goal in [(axes[0], "predicted_agreement", "predicted agreement of a rerun (%)", goals[0]),
                                 (axes[1], "inconclusive", "verdicts inconclusive (%)", goals[1])]:
        ax.plot(power.trials, 100 * power[col], "o-", color="k")
        ax.axvline(n_pool, color="0.5", ls=":")
        ax.axhline(goal, color="C3", ls="--", lw=1)
        ax.set_xscale("log", base=2)
        ax.set_xticks(power.trials, [str(n) for n in power.trials])
        ax.minorticks_off()
        ax.set_xlabel("trial indices per task N′")
        ax.set_ylabel(label)
    fig.tight_layout()
    return fig


def curse_figure(retrain, tasks, task_labels: dict | None = None):
    """Figure 6.5: test accuracy of each method's most frequent winner, one panel per task (titled by
    ``task_labels``, task -> display label; the key where none): its own score in the pool (black diamond) and
    its retrains with fresh seeds (bar: their mean; line: their range); ``retrain``: rows ``task``, ``method``,
    ``own_test_acc``, ``fresh_mean``, ``fresh_min``, ``fresh_max``."""
    fig, axes = plt.subplots(1, len(tasks), figsize=(min(11.0, 3.6 * len(tasks)), 3.2), squeeze=False)
    for ax, t in zip(axes[0], tasks):
        g = retrain[retrain.task == t].reset_index(drop=True) if len(retrain) else retrain
        for j, r in enumerate(g.itertuples()):
            ax.plot([j - 0.3, j + 0.3], [100 * r.fresh_mean] * 2, color=COLORS.get(r.method), lw=2)
            ax.plot([j] * 2, [100 * r.fresh_min, 100 * r.fresh_max], color=COLORS.get(r.method), lw=0.8)
            ax.plot(j, 100 * r.own_test_acc, "D", color="k", ms=4)
        ax.set_xticks(range(len(g)), [method_name(m) for m in g.method] if len(g) else [], rotation=45, ha="right",
                      rotation_mode="anchor", fontsize=9)
        ax.set_title(task_name(t, task_labels), fontsize=11)
    axes[0][0].set_ylabel("test accuracy (%)")
    fig.tight_layout()
    return fig


#: the methods chapter 08 shows: the five papers' methods and CE (the table lists every benchmarked loss)
BOOK_METHODS = ("ce", "temperature", "gradient_decay", "noisy", "sgt", "as_softmax")
#: a benchmarked device in words (chapter 08's figures)
DEVICE_LABELS = {"cpu": "CPU", "cuda": "GPU (CUDA)", "mps": "Apple GPU (MPS)"}


def device_name(d: str) -> str:
    """A device's display name ("CPU", "GPU (CUDA)"), else ``d``."""
    return DEVICE_LABELS.get(d, d)


def model_name(m: str) -> str:
    """A model's display name (:data:`softgrad.protocol.MODEL_LABELS`: "LeNet-5", "ResNet-18"), else ``m``."""
    from .protocol.text import MODEL_LABELS

    return MODEL_LABELS.get(m, m)


#: benchmark rows that are not a compared method, in words (the compared ones: softgrad.protocol.SHORT)
LOSS_LABELS = {"ce": "softgrad CE", "sgt+ls": "SGT + label smoothing", "sparse_softmax": "sparse softmax",
               "sparsemax": "sparsemax", "entmax15": "1.5-entmax", "noisy": "Noisy Softmax (head)"}


def loss_name(loss: str) -> str:
    """A benchmarked loss's display name: "gradient decay", "SGT + label smoothing", "gradient decay (compiled)"."""
    from .protocol.text import SHORT

    base, compiled = (loss[:-len(" (compiled)")], " (compiled)") if loss.endswith(" (compiled)") else (loss, "")
    return LOSS_LABELS.get(base, SHORT.get(base, base)) + compiled


def chapter_name(notebook: str) -> str:
    """A chapter in words from its notebook's name: "06_head_to_head" -> "06 · head to head"."""
    head, _, rest = notebook.partition("_")
    return f"{head} · {rest.replace('_', ' ')}" if head.isdigit() and rest else notebook


def loss_cost_figure(losses, methods=BOOK_METHODS):
    """Figure 8.1: forward + backward time of each of ``methods`` relative to the loss it replaces (benchmark
    rows ``device``, ``loss``, ``N``, ``C``, ``ratio_to_ce``; ``<loss> (compiled)`` rows in a second panel),
    bars per batch × classes shape, log axis; one row of panels per device. Noisy Softmax is a head, measured as
    head + CE against a linear head + CE. A method with no row is named "not measured" in its tick label."""
    import numpy as np

    devices = sorted(losses.device.unique())
    compiled = losses.loss.str.endswith(" (compiled)").any()
    kinds = [("eager", "")] + ([("torch.compile", " (compiled)")] if compiled else [])
    shapes = (losses[["N", "C"]].drop_duplicates().sort_values(["C", "N"]).itertuples(index=False))
    shapes = [(int(n), int(c)) for n, c in shapes]
    fig, axes = plt.subplots(len(devices), len(kinds), figsize=(4.3 * len(kinds) + 1.8, 0.5 * len(methods) * len(devices)
                                                                + 1.6), squeeze=False, sharey=True)
    width = 0.8 / max(1, len(shapes))
    for row, dev in zip(axes, devices):
        d = losses[losses.device == dev]
        for ax, (kind, suffix) in zip(row, kinds):
            for k, (n, c) in enumerate(shapes):
                vals = []
                for m in methods:
                    v = d[(d.loss == m + suffix) & (d.N == n) & (d.C == c)].ratio_to_ce
                    vals.append(float(v.iloc[0]) if len(v) else np.nan)
                ax.barh(np.arange(len(methods)) + (k - (len(shapes) - 1) / 2) * width, vals, height=width,
                        color=f"C{k}", label=f"{n:,} × {c:,}")
            ax.axvline(1.0, color="k", lw=0.8)
            ax.set_xscale("log")
            readable_log_axis(ax, "x")
            ax.set_title(f"{device_name(dev)}, {kind}", fontsize=11)
            ax.set_xlabel("time ÷ the loss it replaces")
        names = []
        for m in methods:
            name = method_name(m) + (" (head + CE)" if m == "noisy" else "")
            measured = (d.loss == m).any() or (d.loss == m + " (compiled)").any()
            names.append(name if measured else f"{name}\n(not measured)")
        row[0].set_yticks(range(len(methods)), names)
        row[0].set_ylim(len(methods) - 0.5, -0.5)
    legend_below(fig, *axes[0][0].get_legend_handles_labels(), title="batch size × classes", rows_height=0.6)
    return fig


def trainer_figure(trainer):
    """Figure 8.2: softgrad's trainer throughput divided by a hand-written loop's and by a plain DataLoader loop's
    (benchmark rows ``device``, ``model``, ``vs_hand``, ``vs_dataloader``), one pair of bars per model and
    device, named in words ("LeNet-5, CPU"); the legend to the right of the axes."""
    import numpy as np

    t = trainer.reset_index(drop=True)
    fig, ax = plt.subplots(figsize=(7.0, 0.45 * len(t) + 1.6))
    y = np.arange(len(t))
    for k, (col, name) in enumerate((("vs_hand", "÷ a hand-written loop"), ("vs_dataloader", "÷ a DataLoader loop"))):
        ax.barh(y + (k - 0.5) * 0.38, t[col].astype(float), height=0.38, color=f"C{k}", label=name)
    ax.axvline(1.0, color="k", lw=0.8)
    ax.set_yticks(y, [f"{model_name(r.model)}, {device_name(r.device)}" for r in t.itertuples()])
    ax.set_ylim(len(t) - 0.5, -0.5)
    ax.set_xlabel("softgrad's samples per second ÷ the baseline's")
    ax.set_ylabel("model, device")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    return fig


def paper_hours_figure(hours):
    """Figure 8.4: estimated device-hours of the ``paper`` profile per chapter and device (``hours``: a Series
    indexed by ``notebook`` and ``device``, a lower bound from measured throughput), log axis with plain-number
    ticks; chapters and devices named in words ("06 · head to head", "CPU"), the legend to the right."""
    import numpy as np

    h = hours.unstack("device")
    fig, ax = plt.subplots(figsize=(7.0, 0.3 * len(h) * max(1, h.shape[1]) + 1.4))
    y = np.arange(len(h))
    width = 0.8 / max(1, h.shape[1])
    for k, dev in enumerate(h.columns):
        ax.barh(y + (k - (h.shape[1] - 1) / 2) * width, h[dev].astype(float), height=width, color=f"C{k}",
                label=device_name(dev))
    ax.set_xscale("log")
    readable_log_axis(ax, "x")
    ax.xaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v:,.0f}" if v >= 1 else f"{v:.2g}"))
    ax.set_yticks(y, [chapter_name(nb) for nb in h.index])
    ax.set_ylim(len(h) - 0.5, -0.5)
    ax.set_xlabel("device-hours (lower bound, from measured throughput)")
    ax.set_ylabel("chapter")
    ax.legend(title="device", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    return fig

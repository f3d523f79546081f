"""Figures that read at the book's page width: :func:`softgrad.plots.layout_defects` and the figure functions.

The checker (recorded by ``softgrad.plots.save`` in every PNG) is tested by planting each defect alone in a
small figure and asserting it is reported, and nothing on a clean figure; each figure function of
``softgrad.plots`` draws synthetic data without a defect. ``test_saved_quick_figures_have_no_layout_defects``
reads the metadata of every committed figure of the quick profile: a figure saved before the checker existed
has no ``layout`` record and is an expected failure (xfail, "regenerate it") until the figures are regenerated;
the book test (tests/test_book.py) reports the same defects, and a missing record, as failures.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from softgrad import plots
from softgrad.plots import plt

ROOT = Path(__file__).resolve().parents[1]
QUICK_FIGURES = sorted((ROOT / "outputs" / "quick" / "figures").glob("*.png"))


@pytest.fixture(autouse=True)
def _close_figures(tmp_path, monkeypatch):
    monkeypatch.setenv("SOFTGRAD_FIGURES", str(tmp_path / "figures"))
    yield
    plt.close("all")


def _small(draw, size=(6, 3)):
    fig, ax = plt.subplots(figsize=size)
    draw(fig, ax)
    return fig


def _kinds(found):
    return sorted({d.split(":")[0] for d in found})


def test_clean_figure_has_no_defects():
    def draw(fig, ax):
        ax.plot([0, 1, 2, 3], [1, 0, 2, 3], "o-", label="a line")
        ax.errorbar([0.5, 1.5], [2, 2.5], yerr=0.2, fmt="s", label="points")
        ax.set_title("a clean figure")
        ax.set_xlabel("x")
        ax.set_ylabel("y")
        ax.legend(loc="upper left")
        fig.tight_layout()
    fig = _small(draw)
    assert plots.layout_defects(fig) == []
    meta = plots.png_metadata(plots.save(fig, "clean", "ci", "01_temperature"))
    assert meta["layout"] == [] and meta["min_text_px"] > plots.MIN_TEXT_PX


def _text_over_text(fig, ax):
    ax.plot([0, 1], [0, 1])
    ax.text(0.2, 0.8, "first label", fontsize=11)
    ax.text(0.25, 0.81, "second label", fontsize=11)


def _crowded_ticks(fig, ax):
    ax.plot(range(12), range(12))
    ax.set_xticks(range(12), [f"label number {i}" for i in range(12)])


def _stamp_on_legend(fig, ax):  # figure 1.1: a figure legend below the panels, then the provenance stamp
    ax.plot([0, 1], [0, 1], label="η=0.003")
    ax.plot([0, 1], [1, 0], label="η=30")
    fig.legend(loc="lower right", ncol=2, frameon=False)
    fig.text(0.99, 0.02, "softgrad notebooks/01_temperature.py · params/quick/01_temperature.yaml", ha="right",
             fontsize=8, color=plots.MUTED)


def _legend_over_line(fig, ax):
    ax.plot(np.linspace(0, 1, 50), np.full(50, 0.5), label="a flat line")
    ax.legend(loc="center left")


def _legend_over_segment(fig, ax):  # no vertex under the legend: only the segment between two points
    ax.plot([0, 1], [0.5, 0.5], label="two points")
    ax.set_xlim(-0.05, 1.05)
    ax.legend(loc="center", fontsize=14)


def _legend_over_scatter(fig, ax):
    ax.scatter(np.linspace(0, 1, 40), np.full(40, 0.5), label="points")
    ax.legend(loc="center", fontsize=14)


def _legend_over_bars(fig, ax):
    ax.bar(range(6), [5] * 6, label="bars")
    ax.legend(loc="center", fontsize=14)


def _legend_over_errorbar(fig, ax):  # only an error bar's whisker under the legend, its point clear of it
    ax.errorbar([0.5], [0.1], yerr=[[0.05], [0.8]], fmt="o", label="point ± error", capsize=0)
    ax.set_ylim(0, 1)
    ax.set_xlim(0, 1)
    ax.legend(loc="center", fontsize=14)


def _legend_over_fill(fig, ax):  # a band whose edges are all clear of the legend: only its area under it
    ax.fill_between([0, 1], [0.05, 0.05], [0.95, 0.95], alpha=0.3, label="band")
    ax.plot([0, 1], [0.05, 0.05], "k-")
    ax.set_ylim(0, 1)
    ax.legend(loc="center", fontsize=14)


def _figure_legend_over_axes(fig, ax):
    ax.plot(np.linspace(0, 1, 50), np.full(50, 0.5), label="a flat line")
    fig.legend(loc="center", fontsize=14)


def _text_on_bar(fig, ax):  # figure 5.2: a note written on a bar
    ax.barh(["a", "b"], [300, 400])
    ax.text(0.02, 1, "2 of 5 runs never reached it", va="center", transform=ax.get_yaxis_transform())


def _label_on_error_bar(fig, ax):  # figure 2.4: a point's label on its own error bar
    ax.errorbar([0.5], [0.5], xerr=[0.3], fmt="o")
    ax.annotate("a point's label", (0.5, 0.5), fontsize=10)
    ax.set_xlim(0, 1)


def _small_font(fig, ax):
    ax.plot([0, 1], [0, 1])
    ax.text(0.1, 0.8, "tiny", fontsize=5)


def _wide_figure(fig, ax):  # 10-pt tick labels of a 20-inch figure, scaled into the column
    ax.plot([0, 1], [0, 1])


def _low_contrast(fig, ax):
    ax.plot([0, 1], [0, 1])
    ax.text(0.1, 0.8, "pale note", color="0.6")


PLANTED = {
    "text over text": (_text_over_text, {}),
    "crowded ticks": (_crowded_ticks, {"kind": "text over text"}),
    "stamp on legend": (_stamp_on_legend, {"kind": "text over text"}),
    "legend over line": (_legend_over_line, {"kind": "legend over data"}),
    "legend over segment": (_legend_over_segment, {"kind": "legend over data"}),
    "legend over scatter": (_legend_over_scatter, {"kind": "legend over data"}),
    "legend over bars": (_legend_over_bars, {"kind": "legend over data"}),
    "legend over error bar": (_legend_over_errorbar, {"kind": "legend over data"}),
    "legend over fill": (_legend_over_fill, {"kind": "legend over data"}),
    "figure legend over axes": (_figure_legend_over_axes, {"kind": "legend over data"}),
    "text on bar": (_text_on_bar, {"kind": "text over data"}),
    "label on error bar": (_label_on_error_bar, {"kind": "text over data"}),
    "small font": (_small_font, {"kind": "small text"}),
    "wide figure": (_wide_figure, {"kind": "small text", "size": (20, 3)}),
    "low contrast": (_low_contrast, {}),
}


@pytest.mark.parametrize("name", list(PLANTED))
def test_planted_defect_is_reported(name):
    draw, opt = PLANTED[name]
    fig = _small(draw, opt.get("size", (6, 3)))
    found = plots.layout_defects(fig)
    assert _kinds(found) == [opt.get("kind", name)], f"planted {name!r}: reported {found}"
    print(f"planted {name!r}: {found[0]}")


def test_rotated_tick_labels_count_by_their_rotated_box():
    """45° tick labels whose upright boxes overlap but whose rotated boxes do not are no defect."""
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.plot(range(6), range(6))
    ax.set_xticks(range(6), ["temperature", "gradient decay", "Noisy Softmax", "SGT", "AS-Softmax", "CE"],
                  rotation=45, ha="right", rotation_mode="anchor")
    fig.tight_layout()
    assert plots.layout_defects(fig) == []


def test_small_text_uses_the_column_width():
    """The same 8-pt text is fine in a 6-inch figure (shown at its own size) and too small in a 16-inch one."""
    for width, ok in ((6, True), (16, False)):
        fig, ax = plt.subplots(figsize=(width, 3))
        ax.plot([0, 1], [0, 1])
        ax.tick_params(labelsize=8)
        assert (not any(d.startswith("small text") for d in plots.layout_defects(fig))) == ok
        assert plots.text_px(8, fig) == pytest.approx(8 * fig.dpi / 72 * plots.page_scale(fig))


def test_contrast_ratios():
    assert plots.contrast("white") == pytest.approx(1.0)
    assert plots.contrast("black") == pytest.approx(21.0)
    assert plots.contrast(plots.MUTED) >= plots.MIN_CONTRAST
    assert plots.contrast("0.5") < plots.MIN_CONTRAST  # the old stamp's grey


def test_figure_legend_stays_put_when_saved():
    """``save`` anchors figure legends in figure coordinates: bbox_inches="tight" moved a legend anchored to the
    figure's box onto the provenance stamp (figure 1.1). The legend sits in the saved figure where it sat in
    the checked one, relative to the axes."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for i in range(5):
        axes[1].plot([1, 2], [i, i], label=f"η={i}")
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    fig.legend(*axes[1].get_legend_handles_labels(), loc="lower center", ncol=6, frameon=False)
    seen = []

    def on_draw(event):
        r = event.renderer
        leg, ax = fig.legends[0].get_window_extent(r), axes[0].get_window_extent(r)
        seen.append((round(leg.x0 - ax.x0, 1), round(leg.y0 - ax.y0, 1)))

    fig.canvas.mpl_connect("draw_event", on_draw)
    meta = plots.png_metadata(plots.save(fig, "legend", "ci", "01_temperature"))
    assert len(set(seen)) == 1, f"the legend moved while saving: {seen}"
    assert meta["layout"] == []


@pytest.mark.parametrize("png", QUICK_FIGURES, ids=[p.stem for p in QUICK_FIGURES])
def test_saved_quick_figures_have_no_layout_defects(png):
    meta = plots.png_metadata(png.read_bytes())
    if meta is None:  # 06_head_to_head.png, 08_as_speed.png: left from older versions, shown by no page
        pytest.xfail(f"{png.name}: no softgrad metadata (not made by softgrad.plots.save: a stale file?)")
    if "layout" not in meta:
        pytest.xfail(f"{png.name} was saved before softgrad.plots.layout_defects existed: regenerate it")
    assert meta["layout"] == [], f"{png.name}: {meta['layout']}"
    assert all(a["data"] for a in meta["axes"]), f"{png.name}: a panel plots no data"

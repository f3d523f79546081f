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


# ---------------------------------------------------------------------------------------------------------
# Each figure function of softgrad.plots, drawn on synthetic data: every panel plots data, no layout defect.

RNG = np.random.default_rng(0)
TASKS = ["mnist_mlp", "mnist_label_noise", "digits_mlp"]
METHODS = ["temperature", "gradient_decay", "noisy", "sgt", "as_softmax"]
# what softgrad.protocol.task_labels gives such tasks: the longest labels a figure has to fit (the paper profile's
# "CIFAR-10 ResNet-18, SGD, 40% label noise" is longer still: see test_long_task_labels_fit)
LABELS = {"mnist_mlp": "MNIST MLP, SGD", "mnist_label_noise": "MNIST MLP, SGD, 40% label noise",
          "digits_mlp": "digits MLP, AdamW"}


def _lr_sweep():
    rows = [{"run_id": f"{lr}-{b}-{s}", "final": True, "epoch": 1, "lr": lr, "beta": b, "seed": s,
             "test_acc": float(np.clip(0.5 + 0.4 * np.tanh(np.log10(b * lr * 10)) + RNG.normal(0, 0.05), 0, 1))}
            for lr in [0.003, 0.03, 0.3, 3, 30] for b in [0.01, 0.03, 0.1, 0.3, 1, 3, 10] for s in range(3)]
    return plots.lr_sweep_figure(pd.DataFrame(rows), label=lambda v: f"η={v:g}")


def _flow():
    p2 = pd.DataFrame([{"beta": b, "x": 1 / (lr * b * b), "t": 1.2 / (lr * b * b)} for b in (0.5, 1, 2)
                       for lr in (0.01, 0.02, 0.04)])
    p4 = pd.Series({0.5: 8.0, 1.0: 2.0, 2.0: 0.5, 4.0: 0.125})
    p5 = pd.DataFrame({"z0": np.geomspace(0.8, 90, 30), "ell": RNG.integers(2, 30, 30).astype(float),
                       "t_learn": np.geomspace(6, 500, 30)})
    p5["saturated"] = p5.z0 > 10
    titles = {"p2": "P2: slope 1.00 (predicted 1)", "p4": "P4: slope -2.00 (predicted −2)",
              "p5": "P5, the loss falls linearly: slope 0.95 (> 0)", "p5_time": "P5, time to learn: slope 1.02 (|·| < 0.3)"}
    return plots.flow_figure(p2, [p4, p4 * 1.41], p4, p5, titles, "steps to training loss 2.07",
                             "steps to training accuracy 0.5")


def _reliability():
    def rel():
        conf = np.linspace(0.05, 0.95, 15)
        return {"conf": list(conf), "acc": list(np.clip(conf + RNG.normal(0, 0.1, 15), 0, 1)),
                "count": list(RNG.integers(0, 100, 15))}
    return plots.reliability_grid([(f"β = {b:g}, ECE 0.0{i}", rel()) for i, b in enumerate([0.03, 0.1, 0.3, 1, 3, 10])])


def _points():  # figure 2.4's settings: six close points with error bars both ways
    names = ["fixed β=0.1", "fixed β=1", "warm-up linear 0.1→1 in 2 ep", "warm-up linear 0.1→1 in 4 ep",
             "warm-up log 0.1→1 in 2 ep", "warm-up log 0.1→1 in 4 ep"]
    m = pd.DataFrame({("test_ece", "mean"): [0.023, 0.0105, 0.009, 0.0099, 0.0099, 0.011],
                      ("test_ece", "std"): [0.002, 0.002, 0.003, 0.001, 0.002, 0.002],
                      ("test_acc", "mean"): [0.956, 0.9427, 0.9478, 0.9505, 0.9487, 0.952],
                      ("test_acc", "std"): [0.0015, 0.002, 0.0015, 0.0025, 0.0007, 0.0013]}, index=names)
    groups = {n: "fixed β" if n.startswith("fixed") else n.split(" ")[1] for n in names}
    return plots.points_figure(m, "test_ece", "test_acc", groups)


def _baseline_sweep():
    rows = [{"run_id": f"{a}-{s}", "final": True, "epoch": 1, "seed": s, "noise_alpha": a,
             "test_acc": (0.95 if a < 0.5 else 0.1) + RNG.normal(0, 0.003),
             "test_nll": (0.2 if a < 0.5 else 2.3) + RNG.normal(0, 0.01)} for a in (0, 0.03, 0.1, 0.3, 1) for s in range(3)]
    return plots.baseline_sweep_figure(pd.DataFrame(rows), "noise_alpha", ["test_acc", "test_nll"])


def _match():  # figure 4.2: one curve differs from its twin, two are identical (difference exactly 0)
    ep = np.arange(9)
    curves = {}
    for a in (0.1, 0.25, 0.5):
        c = 2.3 * np.exp(-ep * a * 3) + 0.1
        d = c.copy()
        if a == 0.1:
            d[1:] += np.r_[3e-4, 2e-2, 1e-2, 2e-3, 8e-4, 2e-3, 3e-3, 3e-3]
        curves[f"α={a:g}"] = pd.DataFrame({"a": c, "b": d}, index=ep)
    return plots.match_figure(curves)


def _as_speed():  # figure 5.2: some runs never reach CE's accuracy; the window is capped at 2 throughout
    names = ["softmax (CE)", "AS-Softmax δ=0.1", "AS-Softmax δ=0.1 + AS-Speed"]
    speed = pd.DataFrame([{"setting": n, "seed": s, "steps_to": v} for n, vals in
                          zip(names, ([250, 300, 320, 330, 340], [370, 372, 420, None, None], [None] * 5))
                          for s, v in enumerate(vals)]).astype({"steps_to": float})
    speed["time_to"] = speed.steps_to / 300
    k = pd.DataFrame([{"seed": s, "epoch": e, "train_zero_frac": min(0.95, 0.5 + 0.05 * e + 0.01 * s), "accum_k": 2}
                      for s in range(5) for e in range(9)])
    return plots.as_speed_figure(speed, names, k, 2)


def _forest(labels=None, tasks=TASKS):
    verdicts = list(plots.VERDICT_COLORS)
    rows = []
    for t in tasks:
        for m in METHODS:
            for metric, sd, margin in (("acc", 0.003, 0.004), ("nll", 0.3, 0.02), ("ece", 0.003, 0.002),
                                       ("ece_ts", 0.003, 0.005)):
                d, w = RNG.normal(0, sd), abs(RNG.normal(sd, sd / 2))
                rows.append({"task": t, "method": m, "metric": metric, "diff": d, "lo": d - w, "hi": d + w,
                             "margin": margin, "verdict": verdicts[RNG.integers(4)]})
    return plots.forest_figure(pd.DataFrame(rows), tasks, METHODS, task_labels=labels)


def _time(labels=None):
    pool = pd.DataFrame([{"task": t, "method": m, "trial": i, "train_time": 1 + j * 0.05 + RNG.random() * 0.1}
                         for t in TASKS for j, m in enumerate(["ce", *METHODS]) for i in range(8)])
    return plots.time_figure(pool, ["ce", *METHODS], task_labels=labels)


def _convergence(labels=None):
    rows = [{"task": t, "method": m, "trial": i, "epoch": e, "run_id": f"{t}-{m}-{i}",
             "val_acc": min(1.0, 0.8 + 0.01 * e + RNG.normal(0, 0.01))}
            for t in TASKS for m in ("ce", "ce_longer") for i in range(3)
            for e in range(1, (10 if m == "ce" else 20) + 1)]
    return plots.convergence_figure(pd.DataFrame(rows), TASKS, 2.0, task_labels=labels)


def _budget(labels=None):
    rows = [{"task": t, "method": m, "T": k, "test_acc": 0.95 + 0.001 * k + RNG.normal(0, 0.002)}
            for t in TASKS for m in ["ce", *METHODS] for k in range(1, 13)]
    return plots.budget_figure(pd.DataFrame(rows), TASKS, {t: 0.004 for t in TASKS}, task_labels=labels)


def _edges(labels=None, tasks=TASKS):
    keys = [(m, "lr_eff") for m in ["ce", *METHODS]] + [("temperature", "beta"), ("gradient_decay", "beta"),
                                                        ("noisy", "noise_alpha"), ("sgt", "alpha"),
                                                        ("as_softmax", "delta")]
    rows = [{"task": t, "method": m, "dimension": d, "side": side, "edge": 0.1, "share": 0.3 * RNG.random(),
             "flat": 0.1, "limit": bool(RNG.random() < 0.2), "why": "", "flag": bool(RNG.random() < 0.2)}
            for t in tasks for m, d in keys for side in ("low", "high")]
    return plots.edge_figure(pd.DataFrame(rows), tasks, task_labels=labels)


def _trainer():  # figure 8.2, as benchmarks/train.py writes its rows, on two devices
    rows = [{"device": dev, "model": m, "softgrad": 1e4, "hand_loop": 1e4, "dataloader": 5e3,
             "vs_hand": 1.0 + 0.05 * RNG.random(), "vs_dataloader": 2 + 4 * RNG.random()}
            for dev in ("cpu", "cuda") for m in ("mlp", "lenet5")]
    return plots.trainer_figure(pd.DataFrame(rows))


def _paper_hours():  # figure 8.4: device-hours per notebook and device
    idx = pd.MultiIndex.from_product([["01_temperature", "02_gradient_decay", "03_noisy_softmax",
                                       "04_gradient_tampering", "05_adaptive_sparse", "06_head_to_head"],
                                      ["cpu", "cuda"]], names=["notebook", "device"])
    return plots.paper_hours_figure(pd.Series(np.exp(RNG.uniform(1, 11, len(idx))), index=idx, name="hours"))


def _loss_cost(with_noisy: bool):
    rows = []
    names = ["ce", "temperature", "gradient_decay", "sgt", "sgt+ls", "as_softmax", "sparsemax", "entmax15",
             "CE as autograd.Function", "F.cross_entropy", *(["noisy"] if with_noisy else [])]
    for suffix in ("", " (compiled)"):
        for m in names:
            for n, c in ((128, 10), (4096, 10), (8192, 1000), (2048, 32000)):
                rows.append({"device": "cpu", "loss": m + suffix, "N": n, "C": c,
                             "ratio_to_ce": float(np.exp(RNG.normal(0.3, 0.5)))})
    return plots.loss_cost_figure(pd.DataFrame(rows))


def _sweep(hue):
    rows = [{"run_id": f"{a}-{ls}-{s}", "final": True, "epoch": 1, "seed": s, "alpha": a, "ls": ls,
             "test_acc": 0.95 - 0.01 * a + RNG.normal(0, 0.002), "train_nll": 0.1 + 0.1 * a + RNG.normal(0, 0.01),
             "train_logit_norm": 20 / a + RNG.normal(0, 1)}
            for a in (0.03, 0.05, 0.1, 0.25, 0.5, 1.0, 3.0, 10.0) for ls in (0.0, 0.1) for s in range(3)]
    return plots.sweep_figure(pd.DataFrame(rows), "alpha", ["test_acc", "train_nll", "train_logit_norm"],
                              hue="ls" if hue else None, label=(lambda v: f"label smoothing {v:g}") if hue else None,
                              ref=None if hue else 1.0)


def _power():
    pw = pd.DataFrame({"trials": [32, 64, 128, 256, 512], "predicted_agreement": [0.7, 0.78, 0.85, 0.9, 0.95],
                       "inconclusive": [0.6, 0.5, 0.4, 0.3, 0.2]})
    return plots.power_figure(pw, 32)


def _curse(labels=None):
    rows = [{"task": t, "method": m, "own_test_acc": 0.96 + RNG.normal(0, 0.003), "fresh_mean": 0.96,
             "fresh_min": 0.955, "fresh_max": 0.965} for t in TASKS for m in ["ce", *METHODS]]
    return plots.curse_figure(pd.DataFrame(rows), TASKS, task_labels=labels)


FIGURES = {"2.1 sweep": lambda: _sweep(False), "4.1 sweep with hue": lambda: _sweep(True), "6.3 power": _power,
           "6.5 curse": _curse, "1.1 lr sweep": _lr_sweep, "1.4 flow": _flow, "2.3 reliability": _reliability, "2.4 points": _points,
           "3.1 baseline sweep": _baseline_sweep, "4.2 match": _match, "5.2 AS-Speed": _as_speed,
           "6.2 forest": _forest, "6.6 time": _time, "8.1 loss cost": lambda: _loss_cost(True),
           "8.1 loss cost, Noisy Softmax not measured": lambda: _loss_cost(False),
           # chapter 06's figures with the task labels the notebook passes (longer than the keys)
           "6.1 convergence, labelled": lambda: _convergence(LABELS), "6.2 forest, labelled": lambda: _forest(LABELS),
           "6.4 budget, labelled": lambda: _budget(LABELS)[0], "6.5 curse, labelled": lambda: _curse(LABELS),
           "6.6 time, labelled": lambda: _time(LABELS), "6.7 edges, labelled": lambda: _edges(LABELS),
           "8.2 trainer": _trainer, "8.4 paper hours": _paper_hours}


@pytest.mark.parametrize("name", list(FIGURES))
def test_figure_function_draws_without_layout_defects(name):
    fig = FIGURES[name]()
    meta = plots.png_metadata(plots.save(fig, "synthetic", "ci", "01_temperature"))
    assert all(a["data"] for a in meta["axes"]), f"{name}: a panel plots no data: {meta['axes']}"
    assert meta["layout"] == [], f"{name}: {meta['layout']}"


def test_figures_use_display_names():
    """Method code names (gradient_decay, as_softmax) appear in no tick label or legend (figures 6.6, 8.1)."""
    for fig in (_time(), _loss_cost(True), _forest(), _curse()):
        fig.canvas.draw()
        shown = [t.get_text() for ax in fig.axes for t in (*ax.get_yticklabels(), *ax.get_xticklabels())]
        shown += [t.get_text() for leg in fig.legends + [ax.get_legend() for ax in fig.axes] if leg for t in leg.get_texts()]
        assert not {"gradient_decay", "as_softmax", "sgt", "noisy", "ce"} & set(shown), shown
        assert "gradient decay" in shown and "AS-Softmax" in shown


def test_loss_cost_figure_shows_the_books_methods_only():
    fig = _loss_cost(False)
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels == ["CE", "temperature", "gradient decay", "Noisy Softmax (head + CE)\n(not measured)", "SGT",
                      "AS-Softmax"]


def test_readable_log_axis_has_two_labelled_ticks():
    """Figure 1.4 (P4): a log axis spanning less than a decade labelled one tick; now at least two."""
    for lo, hi in ((0.3, 3.0), (0.11, 0.19), (2.0, 30.0), (1.01, 1.02)):
        fig, ax = plt.subplots(figsize=(4, 3))
        ax.loglog([1, 2], [lo, hi], "o")
        ax.set_ylim(lo, hi)
        plots.readable_log_axis(ax, "y")
        fig.canvas.draw()
        labels = [t.get_text() for t in ax.get_yticklabels() if t.get_text() and lo <= t.get_position()[1] <= hi]
        assert len(labels) >= 2, (lo, hi, labels)


def test_match_figure_marks_exact_zeros_instead_of_a_floor():
    fig = _match()
    ax = fig.axes[1]
    assert "exactly 0" in [t.get_text() for t in ax.get_yticklabels()]
    ys = np.concatenate([ln.get_ydata() for ln in ax.lines if ln.get_linestyle() != ":"])
    assert np.nanmin(ys) > 1e-10  # nothing on an artificial 1e-16 floor


# ---------------------------------------------------------------------------------------------------------
# What a reader sees: task labels and parameter names instead of the internal keys (issue 36)


def _texts(fig) -> list[str]:
    """Every string the figure draws: titles, axis and tick labels, legends, texts."""
    from matplotlib.text import Text

    fig.canvas.draw()
    return [t.get_text() for t in fig.findobj(Text) if t.get_visible() and t.get_text()]


def test_task_labels_of_the_standard_configs_are_words_not_keys():
    from softgrad import protocol
    from softgrad.config import load_params

    for profile in ("ci", "quick", "paper"):
        p = load_params(ROOT / "params" / profile / "06_head_to_head.yaml")
        spec = protocol.check_spec(p["extra"]["protocol"])
        labels = protocol.task_labels(protocol.tasks(p["base"], spec))
        assert list(labels) == list(spec["tasks"]), profile
        for key, label in labels.items():
            assert label != key and key not in label and "_" not in label, (profile, key, label)
        assert len(set(labels.values())) == len(labels), (profile, labels)
        if profile == "quick":
            assert labels == {"mnist_mlp": "MNIST MLP, SGD", "mnist1d_cnn_sgd": "MNIST-1D CNN, SGD",
                              "mnist1d_cnn_adamw": "MNIST-1D CNN, AdamW"}
        if profile == "paper":
            assert labels["cifar10_label_noise"] == "CIFAR-10 ResNet-18, SGD, 40% label noise"


def test_task_labels_fall_back_to_the_key_where_two_tasks_read_alike():
    from softgrad import protocol
    from softgrad.config import Config

    labels = protocol.task_labels({"narrow": Config(width=32), "wide": Config(width=512),
                                   "noisy": Config(label_noise=0.3), "cnn": Config(dataset="mnist1d", model="cnn1d",
                                                                                   optimizer="adamw")})
    assert labels == {"narrow": "MNIST MLP, SGD (narrow)", "wide": "MNIST MLP, SGD (wide)",
                      "noisy": "MNIST MLP, SGD, 30% label noise", "cnn": "MNIST-1D CNN, AdamW"}


def test_parameter_names_come_from_one_mapping():
    from softgrad import protocol

    assert protocol.setting_text({"lr": 0.05, "lr_eff": 0.0125, "beta": 0.5}) == "η 0.05, β 0.5"
    assert (protocol.setting_text({"lr": 0.05, "lr_eff": 0.0125, "beta": 0.5}, drop=())
            == "η 0.05, effective step η_eff 0.0125, β 0.5")
    assert protocol.param_text("lr = lr_eff · beta^-2") == "η = η_eff · β^−2"
    assert protocol.param_text("delta = 0 ends its domain; alpha = 1 is CE") == "δ = 0 ends its domain; α = 1 is CE"
    assert plots.param_name("noise_alpha") == protocol.PARAM_LABELS["noise_alpha"] == "α"


@pytest.mark.parametrize("draw", [_convergence, _forest, lambda labels: _budget(labels)[0], _curse, _time, _edges],
                         ids=["convergence", "forest", "budget", "curse", "time", "edges"])
def test_chapter06_figures_draw_task_labels_not_keys(draw):
    shown = _texts(draw(LABELS))
    for key, label in LABELS.items():
        assert not any(key in s for s in shown), (key, shown)
        # the label whole: one line, or wrapped after a comma (forest headers), or a title's first line (budget)
        assert any(label in (s.replace("\n", " "), s.split("\n")[0]) for s in shown), (label, shown)
    plt.close("all")
    assert any("mnist_mlp" in s for s in _texts(draw(None)))  # without labels: the keys, as before


def test_budget_crossings_name_the_task_by_its_label():
    rows = [{"task": "mnist_mlp", "method": m, "T": k, "test_acc": 0.9 + (0.01 * (-1) ** k if m == "sgt" else 0.0)}
            for m in ("ce", "sgt") for k in range(1, 5)]
    _, crossings = plots.budget_figure(pd.DataFrame(rows), ["mnist_mlp"], task_labels=LABELS)
    assert crossings == ["SGT on MNIST MLP, SGD"]


def test_edge_figure_names_dimensions_by_their_display_names():
    shown = _texts(_edges(LABELS))
    assert "SGT · effective step η_eff" in shown and "Noisy Softmax · α" in shown and "temperature · β" in shown
    assert not any(code in s for s in shown for code in ("lr_eff", "noise_alpha", "beta", "as_softmax"))


def test_long_task_labels_fit():
    """The paper profile's longest label heads a forest group on two lines and titles an edge panel."""
    labels = {"cifar10": "CIFAR-10 ResNet-18, SGD", "cifar10_label_noise": "CIFAR-10 ResNet-18, SGD, 40% label noise"}
    for fig in (_forest(labels, list(labels)), _edges(labels, list(labels))):
        assert plots.layout_defects(fig) == [], plots.layout_defects(fig)


def test_chapter08_figures_name_models_devices_and_chapters_in_words():
    shown = _texts(_trainer()) + _texts(_paper_hours())
    assert {"MLP, CPU", "LeNet-5, GPU (CUDA)", "06 · head to head", "CPU", "GPU (CUDA)"} <= set(shown), shown
    assert not {"cpu", "cuda", "lenet5", "mlp", "06_head_to_head", "vs_hand", "vs_dataloader"} & set(shown), shown
    assert not any(s.startswith("(") for s in shown)  # no "(cpu, mlp)" tuples

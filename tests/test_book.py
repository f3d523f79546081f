"""The built book as a reader sees it, in a real browser at 1280 px.

Builds the book from the committed quick-profile notebooks (``python -m softgrad.pipeline book``, with a
GitHub repository set so the launch buttons are built), then loads every page in headless Chromium (Debian's
``chromium``, driven by Playwright through ``executable_path``: Playwright's own browser download is never
used) after its scripts ran (MathJax is vendored, offline). Each page is screenshotted into the test's temp
dir (full page; look at them: ``pytest tests/test_book.py --basetemp=/tmp/book-shots``) and must have: one
title; no raw ``{glue`` or ``??``; typeset equations where it has TeX; figures that exist and are at least
600 px wide; no code block, table or output wider than its column (horizontal overflow). :func:`defects`
adds what a reader notices on a finished page:

- a figure caption numbered twice (Sphinx's "Fig. 23" before the book's own "Figure 7.1");
- a figure that plots no data, has an empty panel, or has a layout defect: text over text, a legend or a
  label over data, text under 9 px as the page shows it, low-contrast text (read from the metadata
  ``softgrad.plots.save`` writes into every PNG, ``softgrad.plots.layout_defects``; a figure without it was not
  made by the book's code, or made before the layout check: regenerate it); and a figure scaled to a column
  narrower than the ``softgrad.plots.COLUMN_PX`` that check assumes;
- a table column narrower than its longest word (a word broken across lines, or sticking out of its cell);
- a page taller than :data:`MAX_PAGE_PX` with its collapsed sections closed.

``test_checker_reports_planted_defects`` plants each defect in a small page and asserts :func:`defects`
reports it (and nothing on a clean page), so the checks cannot pass silently. Skipped without Chromium or
Playwright, except in CI (CI=true), where it fails.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from softgrad import pipeline

ROOT = Path(__file__).resolve().parents[1]
HTML = ROOT / "book" / "_build" / "html"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
REPO = "softgrad-example/softgrad"  # any GitHub slug: the launch buttons are built from it
CHAPTERS = {  # page -> (needs math, needs figures); one page per chapter: the executed notebook
    "notebooks/00_gradient_profiles.html": (True, True),
    "notebooks/01_temperature.html": (True, True),
    "notebooks/02_gradient_decay.html": (True, True),
    "notebooks/03_noisy_softmax.html": (True, True),
    "notebooks/04_gradient_tampering.html": (True, True),
    "notebooks/05_adaptive_sparse.html": (True, True),
    "notebooks/06_head_to_head.html": (False, True),
    "notebooks/07_paper_claims.html": (False, False),  # its one figure is collapsed
    "notebooks/08_cost.html": (False, True),
    "notebooks/09_using_the_losses.html": (False, False),
    "intro.html": (True, False),
    "practitioner.html": (False, False),
    "glossary.html": (False, False),
    "references.html": (False, False),
}
WIDTH, MIN_FIGURE_PX = 1280, 600
MAX_PAGE_PX = 6500  # "about 6,000 px" of main text at 1280 px; diagnostics go in collapsed sections

MEASURE = """(() => {
  // shown: laid out and visible (not inside a closed <details>, whose content Chromium lays out but skips)
  const shown = el => el.offsetParent !== null && el.getClientRects().length > 0
                      && el.checkVisibility({visibilityProperty: true, contentVisibilityAuto: true});
  const short = s => s.trim().replace(/\\s+/g, ' ').slice(0, 60);
  const overflow = [];
  for (const el of document.querySelectorAll('article pre, article table, article .cell_output, article .output')) {
    if (shown(el) && el.scrollWidth > el.clientWidth + 2)
      overflow.push(`${el.tagName.toLowerCase()}.${el.className}: ${el.scrollWidth}px in ${el.clientWidth}px: `
                    + short(el.textContent));
  }
  if (document.documentElement.scrollWidth > window.innerWidth + 2)
    overflow.push(`page: ${document.documentElement.scrollWidth}px wide at ${window.innerWidth}px`);
  const narrow = [], images = [], widths = {};
  for (const img of document.querySelectorAll('article img')) {
    if (!shown(img)) continue;
    const w = img.getBoundingClientRect().width;
    if (w < %d) narrow.push(`${img.getAttribute('src').slice(0, 50)}: ${Math.round(w)}px`);
    images.push(img.getAttribute('src'));
    widths[img.getAttribute('src')] = [w, img.naturalWidth];  // as shown, and the PNG's own width
  }
  const captions = [...document.querySelectorAll('article figcaption')].map(c => short(c.innerText));
  // words of table cells: broken across lines, or sticking out of the cell's content box
  const words = [];
  for (const cell of document.querySelectorAll('article table th, article table td')) {
    if (!shown(cell)) continue;
    const cs = getComputedStyle(cell), box = cell.getBoundingClientRect();
    const right = box.right - parseFloat(cs.paddingRight) - parseFloat(cs.borderRightWidth) + 1;
    const walker = document.createTreeWalker(cell, NodeFilter.SHOW_TEXT);
    for (let node; (node = walker.nextNode());) {
      const nowrap = /nowrap|pre/.test(getComputedStyle(node.parentElement).whiteSpace);
      // a word: up to a space, or up to and including a hyphen (a compound may break after its hyphen)
      const re = nowrap ? /\\S(.*\\S)?/gs : /[^\\s\\-\u2010]+[\\-\u2010]?|[\\-\u2010]/g;
      for (const m of node.textContent.matchAll(re)) {
        const r = document.createRange();
        r.setStart(node, m.index);
        r.setEnd(node, m.index + m[0].length);
        const tops = new Set([...r.getClientRects()].filter(q => q.width > 0).map(q => Math.round(q.top)));
        const rb = r.getBoundingClientRect();
        if (tops.size > 1 || rb.right > right)
          words.push(`"${m[0].slice(0, 40)}" in a ${Math.round(box.width)}px cell`
                     + (tops.size > 1 ? ` (broken over ${tops.size} lines)` : ' (sticks out)'));
      }
    }
  }
  const titles = [...document.querySelectorAll('article h1')].map(h => h.textContent.trim());
  return {overflow, narrow, images, widths, captions, words, titles, height: document.documentElement.scrollHeight,
          html: document.documentElement.outerHTML, text: document.body.innerText};
})()""" % MIN_FIGURE_PX

# a caption's number: Sphinx's "Fig. 23" or the book's "Figure 7.1."
_NUMBER = re.compile(r"^\s*(?:Fig\.|Figure)\s+\d+(?:\.\d+)?\.?\s*")


class Browser:
    """Headless Chromium (the system's) driven by Playwright: load a page after its scripts ran, screenshot."""

    def __init__(self):
        from playwright.sync_api import sync_playwright

        self._pw = sync_playwright().start()
        self._browser = self._pw.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu", "--allow-file-access-from-files"])
        self.page = self._browser.new_page(viewport={"width": WIDTH, "height": 900}, device_scale_factor=1)

    def load(self, url: str) -> dict:
        self.page.goto(url, wait_until="load")
        # MathJax typesets after load: wait for it where the page has it
        self.page.evaluate("window.MathJax && MathJax.startup && MathJax.startup.promise ? "
                           "MathJax.startup.promise.then(() => true) : true")
        return self.page.evaluate(MEASURE)

    def screenshot(self, path: Path):
        self.page.screenshot(path=str(path), full_page=True)

    def close(self):
        self._browser.close()
        self._pw.stop()


def figure_defects(src: str, page: Path, shown: tuple[float, float] | None = None) -> list[str]:
    """What the metadata of one figure's PNG says is wrong with it (``softgrad.plots.png_metadata``): no data, an
    empty panel, and the layout defects ``softgrad.plots.layout_defects`` found when the figure was saved (text
    over text, legend or text over data, small text, low contrast). ``shown``: its width in the page and the
    PNG's own width; with it, the smallest text is checked at the size this page shows it (the saved check
    assumed a column of ``plots.COLUMN_PX``)."""
    from softgrad import plots

    if src.startswith("data:") or "_static" in src or not src.endswith(".png"):
        return []
    f = (page.parent / src).resolve()
    if not f.is_file():
        return [f"figure {src}: missing"]
    meta = plots.png_metadata(f.read_bytes())
    if meta is None:
        return [f"figure {src}: no softgrad metadata (not made by softgrad.plots.save; regenerate it)"]
    out = []
    if meta["data_artists"] == 0:
        out.append(f"figure {src}: plots no data")
    else:
        out += [f"figure {src}: panel {a['title']!r} plots no data" for a in meta["axes"] if a["data"] == 0]
    if "layout" not in meta:
        return out + [f"figure {src}: no layout check (saved before softgrad.plots.layout_defects; regenerate it)"]
    out += [f"figure {src}: {d}" for d in meta["layout"]]
    if shown and shown[1] and meta.get("min_text_px"):
        px = meta["min_text_px"] * min(1.0, shown[0] / shown[1])
        if px < plots.MIN_TEXT_PX - 0.05 and not any(d.startswith("small text") for d in meta["layout"]):
            out.append(f"figure {src}: small text: {px:.1f} px as shown ({shown[0]:.0f} px of {shown[1]} px; "
                       f"minimum {plots.MIN_TEXT_PX:g} px)")
    return out


def defects(m: dict, page: Path, max_height: int = MAX_PAGE_PX) -> list[str]:
    """The defects a reader notices on a loaded page (``m``: :data:`MEASURE`'s result for ``page``)."""
    out = []
    for c in m["captions"]:
        first = _NUMBER.match(c)
        if first and _NUMBER.match(c[first.end():]):
            out.append(f"caption numbered twice: {c!r}")
    for src in m["images"]:
        out += figure_defects(src, page, m.get("widths", {}).get(src))
    out += [f"table column narrower than its longest word: {w}" for w in m["words"]]
    if m["height"] > max_height:
        out.append(f"page {m['height']}px tall at {WIDTH}px (limit {max_height}px)")
    return out


@pytest.fixture(scope="module")
def book():
    if os.environ.get("SOFTGRAD_BOOK_BUILT"):  # a book built just before (the screenshots of a manual check)
        return HTML
    old = os.environ.get("SOFTGRAD_REPOSITORY")
    os.environ["SOFTGRAD_REPOSITORY"] = REPO
    try:
        assert pipeline.build_book("quick") == 0, "jupyter-book build failed (warnings are errors)"
    finally:
        if old is None:
            os.environ.pop("SOFTGRAD_REPOSITORY")
        else:
            os.environ["SOFTGRAD_REPOSITORY"] = old
    return HTML


@pytest.fixture(scope="module")
def browser():
    missing = "chromium is not installed" if CHROMIUM is None else None
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing = missing or "playwright is not installed"
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"{missing} (CI installs Debian's chromium and the lock's playwright in .ci/run)")
        pytest.skip(missing)
    b = Browser()
    yield b
    b.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    return tmp_path_factory.mktemp("screenshots")


@pytest.mark.parametrize("page", list(CHAPTERS))
def test_page_reads_well_at_1280px(browser, book, shots, page):
    path = book / page
    assert path.exists(), f"{page} missing from the built book"
    m = browser.load(path.as_uri())
    browser.screenshot(shots / (page.replace("/", "__") + ".png"))
    html, text = m["html"], m["text"]
    assert "<article" in html or 'role="main"' in html
    assert "{glue" not in text and "??" not in text, f"{page}: an unresolved glue value or reference"
    assert len(m["titles"]) == 1, f"{page}: a page has exactly one title, not {m['titles']}"
    assert not m["overflow"], f"{page}: horizontal overflow at {WIDTH}px: {m['overflow'][:5]}"
    assert not m["narrow"], f"{page}: figures narrower than {MIN_FIGURE_PX}px: {m['narrow'][:5]}"
    from softgrad.plots import COLUMN_PX

    scaled = [w for w, natural in m["widths"].values() if natural > w + 1]  # scaled down: as wide as the column
    assert all(w >= COLUMN_PX - 8 for w in scaled), (
        f"{page}: figures are scaled to {min(scaled):.0f}px, narrower than the column softgrad.plots.COLUMN_PX "
        f"({COLUMN_PX}px) the layout check assumes: set it to the measured width")
    found = defects(m, path)
    assert not found, f"{page}: {len(found)} defects: {found[:8]}"
    needs_math, needs_figs = CHAPTERS[page]
    if needs_math:
        assert html.count("<mjx-container") >= 3, f"{page}: MathJax did not typeset the equations"
        assert "<mjx-merror" not in html, f"{page}: MathJax reported a TeX error"
    imgs = [s for s in re.findall(r'<img[^>]+src="([^"]+)"', html) if s.endswith(".png") or s.startswith("data:")]
    if needs_figs:
        assert imgs, f"{page}: no figures"
        assert any(re.match(r"Figure \d+\.\d+\.", c) for c in m["captions"]), f"{page}: figures are not numbered"
    if page.startswith("notebooks/0"):
        assert "The parameters this page ran with" in text, f"{page}: no page header"
        assert "injected-parameters" not in html, f"{page}: papermill's parameter cell is shown"


def _png(tmp: Path, name: str, draw) -> str:
    """A PNG written by softgrad.plots.save (metadata included) from ``draw(ax)``; its file name."""
    import matplotlib.pyplot as plt

    from softgrad import plots

    fig, ax = plt.subplots(figsize=(6, 3))
    draw(ax)
    (tmp / name).write_bytes(plots.save(fig, "planted", "ci", "01_temperature"))
    plt.close(fig)
    return name


def test_checker_reports_planted_defects(browser, tmp_path, monkeypatch):
    """Each defect planted alone in a small page is reported, and a clean page has none."""
    monkeypatch.setenv("SOFTGRAD_FIGURES", str(tmp_path / "figures"))
    ok = _png(tmp_path, "ok.png", lambda ax: ax.plot([0, 1, 2], [1, 0, 2], "o-"))
    empty = _png(tmp_path, "empty.png", lambda ax: (ax.barh(["a", "b"], [0, 0]), ax.axvline(1.2)))

    def covered(ax):
        ax.bar(range(6), [5, 5, 5, 5, 5, 5], label="bars")
        ax.legend(loc="center", fontsize=20)
    legend = _png(tmp_path, "legend.png", covered)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3))
    ax.plot([0, 1], [0, 1])
    fig.savefig(tmp_path / "plain.png", dpi=120)  # saved by hand: no softgrad metadata
    plt.close(fig)

    css = ("<style>table { border-collapse: collapse; } td { padding: 4px; overflow-wrap: break-word; }"
           ".nw { white-space: nowrap; }</style>")

    def fig_html(src, caption="Figure 1.1. A clean figure."):
        return f'<figure><img src="{src}" width="700"><figcaption><p>{caption}</p></figcaption></figure>'

    table = ('<table style="table-layout: fixed; width: 600px"><tr><td style="width: 300px">a plain cell</td>'
             '<td style="width: 300px">{}</td></tr></table>')
    clean = fig_html(ok) + table.format('an interval <span class="nw">+0.12 [−0.30, +0.54]</span>')
    planted = {
        "caption numbered twice": fig_html(ok, '<span class="caption-number">Fig. 23 </span>Figure 7.1. Twice.'),
        "plots no data": fig_html(empty),
        "covers": fig_html(legend),
        "no softgrad metadata": fig_html("plain.png"),
        "narrower than its longest word": fig_html(ok) + '<table style="table-layout: fixed; width: 200px"><tr>'
                                          '<td style="width: 40px">Temperature</td><td>x</td></tr></table>',
        "sticks out": fig_html(ok) + '<table style="table-layout: fixed; width: 200px"><tr><td style="width: 60px">'
                      '<span class="nw">+0.12 [−0.30, +0.54]</span></td><td>x</td></tr></table>',
        "tall at": fig_html(ok) + '<div style="height: 9000px"></div>',
    }
    reports = {}
    for name, body in [("clean", clean), *planted.items()]:
        f = tmp_path / f"{name.replace(' ', '_')}.html"
        f.write_text(f"<!doctype html><html><head><meta charset='utf-8'>{css}</head><body><article>{body}</article>"
                     "</body></html>")
        reports[name] = defects(browser.load(f.as_uri()), f)
    assert reports.pop("clean") == []
    for name, found in reports.items():
        assert len(found) == 1 and name in found[0], f"planted '{name}': the checker reported {found}"
        print(f"planted {name!r}: {found[0]}")


def test_chapter_links_to_its_notebook(book):
    """Launch buttons (Binder, Colab) open the committed executed notebook; the download links exist."""
    name = "01_temperature"
    html = (book / "notebooks" / f"{name}.html").read_text()
    nb_path = f"outputs/quick/notebooks/{name}.ipynb"
    assert (ROOT / nb_path).is_file()
    assert f"https://colab.research.google.com/github/{REPO}/blob/main/{nb_path}" in html
    assert f"https://mybinder.org/v2/gh/{REPO}/main?urlpath=lab/tree/{nb_path}" in html
    src = re.search(r'href="([^"]*_downloads/[^"]*/{0}\.py)"'.format(name), html)
    assert src and (book / "notebooks" / src.group(1)).resolve().is_file(), "no download link to the .py source"
    assert (book / "_sources" / "notebooks" / f"{name}.ipynb").is_file(), "no executed notebook to download"


def test_claims_table_links_resolve(book):
    """Each row of chapter 07's claims table links to a page (and figure) of the book that exists."""
    html = (book / "notebooks" / "07_paper_claims.html").read_text()
    hrefs = re.findall(r'<a href="(0\d_\w+\.html)(?:#([\w-]+))?">(?:chapter|ch\.)', html)
    assert len(hrefs) >= 10, "the claims table has no evidence links"
    for page, anchor in hrefs:
        target = (book / "notebooks" / page)
        assert target.is_file(), page
        if anchor:
            assert f'id="{anchor}"' in target.read_text(), f"{page}#{anchor} does not exist"


def test_mathjax_is_vendored_not_cdn(book):
    html = (book / "notebooks" / "01_temperature.html").read_text()
    assert "cdn.jsdelivr" not in html and "_static/mathjax/tex-chtml.js" in html


def test_chapter06_figures_draw_data_clear_of_their_legends():
    """The figures chapter 06 draws with softgrad.plots, on a synthetic pool: every panel has data, no legend
    covers it, and the accuracy axis stops at 100%."""
    import numpy as np
    import pandas as pd

    from softgrad import plots

    rng = np.random.default_rng(0)
    tasks, methods = ["a", "b", "c"], ["ce", "temperature", "gradient_decay", "noisy", "sgt", "as_softmax"]
    budget = pd.DataFrame([{"task": t, "method": m, "T": T, "test_acc": 0.95 + 0.02 * (1 - 1 / T) + rng.normal(0, 0.002)}
                           for t in tasks for m in methods for T in range(1, 9)])
    hist = pd.DataFrame([{"task": t, "method": m, "trial": i, "epoch": e, "val_acc": min(1.0, 0.99 + rng.normal(0, 0.02))}
                         for t in tasks for m, n in (("ce", 20), ("ce_longer", 40)) for i in range(8)
                         for e in range(0, n + 1, 4)])
    pool = pd.DataFrame([{"task": t, "method": m, "trial": i, "train_time": 1 + j + rng.random()}
                         for t in tasks for j, m in enumerate(methods) for i in range(8)])
    conv = plots.convergence_figure(hist, tasks, 2.0)
    assert all(ax.get_ylim()[1] <= 100 for ax in conv.axes)
    figs = [conv, plots.budget_figure(budget, tasks, {t: 0.005 for t in tasks})[0], plots.time_figure(pool, methods)]
    for fig in figs:
        meta = plots.figure_data(fig)
        assert all(a["data"] > 0 and a["legend_covers"] == 0 for a in meta["axes"]), meta
    fig, ax = plots.plt.subplots()
    ax.barh(["steps", "time"], [0, 0])  # chapter 08's AS-Speed ratios where AS-Speed never got there
    ax.axvline(1.2)
    assert plots.figure_data(fig)["data_artists"] == 0

"""The built book as a reader sees it, in a real browser at 1280 px.

Builds the book from the committed quick-profile notebooks (``python -m softgrad.pipeline book``, with a
GitHub repository set so the launch buttons are built), then loads every page in headless Chromium (Debian's
``chromium``) over the DevTools protocol, after its scripts ran (MathJax is vendored, offline). Each page is
screenshotted into the test's temp dir (full page; look at them: ``pytest tests/test_book.py
--basetemp=/tmp/book-shots``) and must have: one title; no raw ``{glue`` or ``??``; typeset equations where
it has TeX; figures that exist and are at least 600 px wide; no code block, table or output wider than its
column (horizontal overflow). Skipped without Chromium, except in CI (CI=true), where it fails.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import urllib.request
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
    "notebooks/07_paper_claims.html": (False, False),
    "notebooks/08_cost.html": (False, True),
    "notebooks/09_using_the_losses.html": (False, False),
    "intro.html": (True, False),
    "references.html": (False, False),
}
WIDTH, MIN_FIGURE_PX = 1280, 600

MEASURE = """(() => {
  const shown = el => el.offsetParent !== null && el.getClientRects().length > 0;
  const overflow = [];
  for (const el of document.querySelectorAll('article pre, article table, article .cell_output, article .output')) {
    if (shown(el) && el.scrollWidth > el.clientWidth + 2)
      overflow.push(`${el.tagName.toLowerCase()}.${el.className}: ${el.scrollWidth}px in ${el.clientWidth}px: `
                    + el.textContent.trim().slice(0, 60));
  }
  if (document.documentElement.scrollWidth > window.innerWidth + 2)
    overflow.push(`page: ${document.documentElement.scrollWidth}px wide at ${window.innerWidth}px`);
  const narrow = [];
  for (const img of document.querySelectorAll('article img')) {
    const w = img.getBoundingClientRect().width;
    if (shown(img) && w < %d) narrow.push(`${img.getAttribute('src').slice(0, 50)}: ${Math.round(w)}px`);
  }
  const titles = [...document.querySelectorAll('article h1')].map(h => h.textContent.trim());
  return JSON.stringify({overflow, narrow, titles, html: document.documentElement.outerHTML,
                         text: document.body.innerText});
})()""" % MIN_FIGURE_PX


class Browser:
    """Headless Chromium driven over the DevTools protocol (websocket-client): navigate, evaluate, screenshot."""

    def __init__(self):
        import websocket

        self.profile = tempfile.mkdtemp(prefix="softgrad-chromium-")
        self.proc = subprocess.Popen([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                                      "--allow-file-access-from-files", "--remote-debugging-port=0",
                                      f"--user-data-dir={self.profile}", f"--window-size={WIDTH},900", "about:blank"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file = Path(self.profile) / "DevToolsActivePort"
        for _ in range(300):
            if port_file.exists() and port_file.read_text().strip():
                break
            time.sleep(0.1)
        port = port_file.read_text().split()[0]
        pages = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list"))
        ws_url = next(p["webSocketDebuggerUrl"] for p in pages if p["type"] == "page")
        self.ws = websocket.create_connection(ws_url, timeout=120, suppress_origin=True)
        self.n = 0
        self.call("Page.enable")
        self.call("Emulation.setDeviceMetricsOverride", width=WIDTH, height=900, deviceScaleFactor=1, mobile=False)

    def call(self, method, **params):
        self.n += 1
        self.ws.send(json.dumps({"id": self.n, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == self.n:
                assert "error" not in msg, f"{method}: {msg['error']}"
                return msg["result"]

    def evaluate(self, js, await_promise=False):
        r = self.call("Runtime.evaluate", expression=js, returnByValue=True, awaitPromise=await_promise)
        return r["result"].get("value")

    def load(self, url: str) -> dict:
        self.call("Page.navigate", url=url)
        for _ in range(300):
            if self.evaluate("document.readyState") == "complete":
                break
            time.sleep(0.1)
        # MathJax typesets after load: wait for it where the page has it
        self.evaluate("window.MathJax && MathJax.startup && MathJax.startup.promise ? "
                      "MathJax.startup.promise.then(() => true) : true", await_promise=True)
        return json.loads(self.evaluate(MEASURE))

    def screenshot(self, path: Path):
        r = self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        path.write_bytes(base64.b64decode(r["data"]))

    def close(self):
        self.ws.close()
        self.proc.terminate()
        self.proc.wait(timeout=30)
        shutil.rmtree(self.profile, ignore_errors=True)


@pytest.fixture(scope="module")
def book():
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed (CI installs Debian's chromium in .ci/run)")
        pytest.skip("chromium not installed")
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
def browser(book):
    b = Browser()
    yield b
    b.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    return tmp_path_factory.mktemp("screenshots")


@pytest.mark.parametrize("page", list(CHAPTERS))
def test_page_reads_well_at_1280px(book, browser, shots, page):
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
    needs_math, needs_figs = CHAPTERS[page]
    if needs_math:
        assert html.count("<mjx-container") >= 3, f"{page}: MathJax did not typeset the equations"
        assert "<mjx-merror" not in html, f"{page}: MathJax reported a TeX error"
    imgs = [s for s in re.findall(r'<img[^>]+src="([^"]+)"', html) if s.endswith(".png") or s.startswith("data:")]
    if needs_figs:
        assert imgs, f"{page}: no figures"
        assert re.search(r'<span class="caption-number">Fig\. \d+', html), f"{page}: figures are not numbered"
    for src in imgs:
        if not src.startswith("data:") and "_static" not in src:
            f = (path.parent / src).resolve()
            assert f.exists() and f.stat().st_size > 1000, f"{page}: figure {src} missing or empty"
    if page.startswith("notebooks/0"):
        assert "The parameters this page ran with" in text, f"{page}: no page header"
        assert "injected-parameters" not in html, f"{page}: papermill's parameter cell is shown"


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
    hrefs = re.findall(r'<a href="(0\d_\w+\.html)(?:#([\w-]+))?">chapter', html)
    assert len(hrefs) >= 10, "the claims table has no evidence links"
    for page, anchor in hrefs:
        target = (book / "notebooks" / page)
        assert target.is_file(), page
        if anchor:
            assert f'id="{anchor}"' in target.read_text(), f"{page}#{anchor} does not exist"


def test_mathjax_is_vendored_not_cdn(book):
    html = (book / "notebooks" / "01_temperature.html").read_text()
    assert "cdn.jsdelivr" not in html and "_static/mathjax/tex-chtml.js" in html

"""The nbval goldens under simulated foreign CPUs: what moves, and by how much.

    python -m softgrad.goldens                        # every ci notebook, every perturbation
    python -m softgrad.goldens --only 09_using_the_losses --perturb avx2 threads

Run this before committing regenerated goldens (``python -m softgrad.pipeline notebooks --profile ci``).
Each perturbation re-executes the ci notebooks from scratch (no cached runs) in a fresh process whose
environment simulates another machine, and every compared output is diffed against the committed golden
after nbval's own sanitizer (``tests/nbval_sanitize.cfg``): the cells that moved are printed with their
text lines side by side and, where only numbers differ, the largest absolute change. Exit 1 if any
compared output moved (what nbval would fail), else 0.

Perturbations (:data:`PERTURBATIONS`): another SIMD dispatch of ATen, oneDNN and MKL (``avx2`` and the
scalar ``default`` kernels; ``ATEN_CPU_CAPABILITY`` and friends are read when torch loads, hence a fresh
process), and another intra-op thread count (``SOFTGRAD_THREADS``, which overrides every run's
``threads``; see :func:`softgrad.config.effective_threads`). CI runs nbval under ``avx2`` and ``threads``
besides the native run (``python -m softgrad.pipeline nbval --profile ci --perturb NAME``).
"""

from __future__ import annotations

import argparse
import configparser
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from .common import NO_EFFECT, REPO_ROOT, REPRODUCED, REVERSED, VERDICTS, notebooks_out

__all__ = ["PERTURBATIONS", "SANITIZE_FILE", "sanitizers", "sanitize", "compared_outputs", "diff_notebooks",
           "trained_checks", "protocol_checks", "main"]

# Each: the environment that simulates it. The ISA variables are the documented switches of ATen
# (ATEN_CPU_CAPABILITY: default | avx2 | avx512), oneDNN (ONEDNN_MAX_CPU_ISA), MKL (MKL_ENABLE_INSTRUCTIONS)
# and NumPy's runtime dispatch (NPY_DISABLE_CPU_FEATURES; numpy 2.4 dispatches to X86_V3 = AVX2, X86_V4 and
# AVX512_* above its X86_V2 baseline). A machine without AVX-512 runs 'avx2' natively, hence 'default'.
_NO_AVX512 = "X86_V4 AVX512_ICL AVX512_SPR"
PERTURBATIONS: dict[str, dict[str, str]] = {
    "native": {},  # this machine as it is: what nbval itself sees here
    "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2",
             "NPY_DISABLE_CPU_FEATURES": _NO_AVX512},
    "default": {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41", "MKL_ENABLE_INSTRUCTIONS": "SSE4_2",
                "NPY_DISABLE_CPU_FEATURES": "X86_V3 " + _NO_AVX512},
    "threads": {"SOFTGRAD_THREADS": "1"},  # the ci params use 2 threads in chapters 01-05
    "threads3": {"SOFTGRAD_THREADS": "3"},  # and 1 in 06 and 09
}

SANITIZE_FILE = REPO_ROOT / "tests" / "nbval_sanitize.cfg"
_SKIP = {"image/png", "image/jpeg", "metadata", "traceback", "application/vnd.jupyter.widget-view+json"}
_NUM = re.compile(r"[-+−]?\d+(?:\.\d+)?(?:e[-+]?\d+)?")


def sanitizers(path: Path = SANITIZE_FILE) -> list[tuple[re.Pattern, str]]:
    """nbval's sanitizer file as (pattern, replacement) pairs, in file order (as nbval applies them)."""
    cp = configparser.ConfigParser(interpolation=None)
    cp.read(path)
    return [(re.compile(cp[s]["regex"]), cp[s]["replace"]) for s in cp.sections()]


def sanitize(text: str, rules=None) -> str:
    for pattern, repl in rules if rules is not None else sanitizers():
        text = pattern.sub(repl, text)
    return text


def compared_outputs(nb) -> dict[str, list[tuple[str, str]]]:
    """For each code cell nbval compares (not tagged ``nbval-ignore-output``/``nbval-skip``), its outputs as
    (kind, text) pairs: stream text, and every data MIME type nbval does not skip (images are skipped)."""
    out = {}
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        tags = set(cell.metadata.get("tags", []))
        if tags & {"nbval-ignore-output", "nbval-skip"}:
            continue
        items = []
        for o in cell.get("outputs", []):
            if o.get("output_type") == "stream":
                items.append((f"stream:{o.get('name')}", "".join(o.get("text", ""))))
            for mime, val in (o.get("data") or {}).items():
                if mime not in _SKIP:
                    items.append((mime, val if isinstance(val, str) else "".join(val) if isinstance(val, list)
                                  else str(val)))
        out[cell.get("id", str(len(out)))] = items
    return out


def trained_checks(trained: dict, chance: float, margin: float, initial_loss: float) -> None:
    """Show, for each example, that it trained: its loss fell (last < first, or below ``initial_loss``,
    the loss of a uniform prediction, where no first loss is known) and its test accuracy beats ``chance`` by
    at least ``margin``. ``trained``: name -> (first loss or None, last loss or None, test accuracy).

    These are the statements an example's golden should make: unlike the printed decimals, they do not
    move with the CPU (their margins are many times the spread :func:`main` measures)."""
    import pandas as pd
    from IPython.display import display

    from .plots import table

    rows = []
    for name, (first, last, acc) in trained.items():
        fell = "–" if last is None else "yes" if last < (first if first is not None else initial_loss) else "NO"
        rows.append({"example": name, "loss fell": fell,
                     f"test accuracy ≥ chance + {margin:g}": "yes" if acc >= chance + margin else "NO"})
    display(table(pd.DataFrame(rows)))


def protocol_checks(R, chance: float, margin: float) -> None:
    """The golden of chapter 06: the statements about a protocol run that rounding cannot move.

    Its intervals and verdicts are not among them at the ci profile's toy scale (a handful of trials, 3
    epochs): they move when rounding changes a trial's result (measured under the previous protocol: BCa
    bounds up to 1.4 points under the 'default' ISA, 0.8 under AVX-512 vs AVX2). Shown instead: that every
    verdict is one of the four and agrees with its own interval (the rule of :func:`softgrad.stats.interval_verdict`),
    and that CE trained (its E_T test accuracy beats ``chance`` by ``margin`` on every task)."""
    import math

    c = R.comparisons

    def agrees(r) -> bool:
        lo, hi = (r.lo, r.hi) if r.higher_is_better else (-r.hi, -r.lo)
        if r.verdict == REPRODUCED:
            return lo > 0
        if r.verdict == REVERSED:
            return hi < 0
        if r.verdict == NO_EFFECT:
            return -r.margin < lo and hi < r.margin
        return r.verdict == VERDICTS[-1] and not (math.isfinite(lo) and math.isfinite(hi) and lo > hi)

    ce = c[c.metric == "acc"].groupby("task").ce_E.first()
    print(f"{len(c)} comparisons; every verdict one of the four: {bool(c.verdict.isin(VERDICTS).all())}; "
          f"every verdict agrees with its interval: {all(agrees(r) for r in c.itertuples())}")
    print(f"CE's E_T test accuracy beats chance ({chance:g}) by ≥ {margin:g} on every task: "
          f"{bool((ce >= chance + margin).all())}")


def _numbers(s: str) -> list[float]:
    return [float(x.replace("−", "-")) for x in _NUM.findall(s)]


def _line_diff(ref: str, new: str) -> tuple[list[tuple[str, str]], float | None]:
    """Differing lines, and the largest absolute numeric change when the lines differ only in numbers."""
    rl, nl = ref.splitlines(), new.splitlines()
    pairs = [(a, b) for a, b in zip(rl, nl) if a != b]
    pairs += [(a, "") for a in rl[len(nl):]] + [("", b) for b in nl[len(rl):]]
    worst = 0.0
    for a, b in pairs:
        if _NUM.sub("#", a) != _NUM.sub("#", b):
            return pairs, None
        na, nb_ = _numbers(a), _numbers(b)
        worst = max([worst, *(abs(x - y) for x, y in zip(na, nb_))])
    return pairs, worst


def diff_notebooks(golden: Path, test: Path, rules=None) -> list[dict]:
    """The compared outputs of ``test`` that differ from ``golden`` after sanitizing: one dict per
    (cell, output kind) with the differing lines and the largest numeric change (None: text differs)."""
    import nbformat

    rules = sanitizers() if rules is None else rules
    g = compared_outputs(nbformat.read(str(golden), as_version=4))
    t = compared_outputs(nbformat.read(str(test), as_version=4))
    moved = []
    for cell_id, ref_items in g.items():
        if cell_id not in t:  # not compared in the re-executed notebook (its source now ignores it)
            continue
        new_items = t[cell_id]
        if len(new_items) != len(ref_items):
            moved.append({"cell": cell_id, "kind": "outputs", "lines": [(str(len(ref_items)), str(len(new_items)))],
                          "max_abs": None})
            continue
        for (kind, ref), (kind2, new) in zip(ref_items, new_items):
            ref_s, new_s = sanitize(ref, rules), sanitize(new, rules)
            if kind != kind2 or ref_s != new_s:
                lines, worst = _line_diff(ref_s, new_s)
                moved.append({"cell": cell_id, "kind": kind, "lines": lines, "max_abs": worst})
    return moved


def _execute(names: list[str], env_extra: dict[str, str], out: Path) -> int:
    """Execute the ci notebooks in a fresh process with ``env_extra``; runs recompute under ``out``; the
    process's output goes to ``out/log.txt``, one progress bar per notebook to the terminal."""
    from tqdm.auto import tqdm

    env = {**os.environ, **env_extra, "SOFTGRAD_OUTPUTS": str(out / "outputs"), "SOFTGRAD_FIGURES": str(out / "figs"),
           "PYTHONWARNINGS": "ignore", "SOFTGRAD_PROGRESS": "0"}
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "log.txt", "w") as log:
        for name in tqdm(names, desc="  executing", leave=False):
            cmd = [sys.executable, "-m", "softgrad.pipeline", "notebooks", "--profile", "ci", "--out", str(out / "nb"),
                   "--quiet", "--only", name]
            rc = subprocess.call(cmd, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
            if rc:
                print(f"   {name} failed to execute; its log: {out / 'log.txt'}")
                return rc
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="softgrad.goldens", description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", nargs="*", default=None, help="notebooks (default: every ci notebook)")
    ap.add_argument("--perturb", nargs="*", default=["avx2", "default", "threads"], choices=sorted(PERTURBATIONS))
    ap.add_argument("--keep", default=None, help="keep the executed notebooks under this folder")
    a = ap.parse_args(argv)
    names = a.only or sorted(p.stem for p in notebooks_out("ci").glob("*.ipynb"))
    rules = sanitizers()
    any_moved = False
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(a.keep) if a.keep else Path(tmp)
        if a.keep:
            print(f"executed notebooks and logs kept under {root}/<perturbation>/")
        for pert in a.perturb:
            env = PERTURBATIONS[pert]
            print(f"== {pert}: {' '.join(f'{k}={v}' for k, v in env.items())}", flush=True)
            if _execute(names, env, root / pert):
                print(f"   execution failed under {pert}")
                any_moved = True
                continue
            for name in names:
                moved = diff_notebooks(notebooks_out("ci") / f"{name}.ipynb",
                                       root / pert / "nb" / f"{name}.ipynb", rules)
                any_moved |= bool(moved)
                status = "unchanged" if not moved else f"{len(moved)} output(s) moved"
                print(f"   {name}: {status}")
                for m in moved:
                    size = "text differs" if m["max_abs"] is None else f"max |Δ| = {m['max_abs']:.3g}"
                    print(f"     {m['cell']} {m['kind']}: {size}")
                    for ref, new in m["lines"][:6]:
                        print(f"       golden: {ref.strip()[:150]}\n       now:    {new.strip()[:150]}")
    print("every compared output unchanged under " + ", ".join(a.perturb) if not any_moved else
          "some compared outputs moved: make them robust (see the golden cells) before committing goldens")
    return int(any_moved)


if __name__ == "__main__":
    sys.exit(main())

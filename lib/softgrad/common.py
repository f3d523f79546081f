"""Paths and shared names, defined once: where the repository, parameter files and outputs live, and the
verdict labels every chapter uses. Depends on nothing else in the package.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["REPO_ROOT", "NOTEBOOKS_DIR", "PARAMS_DIR", "LOCK_FILE", "params_file", "outputs_root", "notebooks_out",
           "figures_dir", "VERDICTS", "REPRODUCED", "REVERSED", "NO_EFFECT", "INCONCLUSIVE", "PARTLY", "NOT_TESTABLE",
           "IDENTITY_HOLDS", "IDENTITY_FAILED", "POINTS", "display_scale", "number", "interval_text"]

REPO_ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS_DIR = REPO_ROOT / "notebooks"  # the jupytext sources (py:percent)
PARAMS_DIR = REPO_ROOT / "params"
LOCK_FILE = REPO_ROOT / "requirements-lock.txt"


def params_file(profile: str, notebook: str) -> Path:
    """``params/<profile>/<notebook>.yaml``: the parameter file a notebook runs with under a profile."""
    return PARAMS_DIR / profile / f"{notebook}.yaml"


def outputs_root(root: Path | str | None = None) -> Path:
    """Where results go: ``root``, else ``$SOFTGRAD_OUTPUTS``, else ``<repo>/outputs``."""
    return Path(root) if root else Path(os.environ.get("SOFTGRAD_OUTPUTS", REPO_ROOT / "outputs"))


def notebooks_out(profile: str) -> Path:
    """``outputs/<profile>/notebooks``: the executed notebooks (the ci ones are the nbval goldens)."""
    return REPO_ROOT / "outputs" / profile / "notebooks"


def figures_dir(profile: str) -> Path:
    """Where a profile's figures are written: ``$SOFTGRAD_FIGURES/<profile>``, else ``outputs/<profile>/figures``."""
    base = os.environ.get("SOFTGRAD_FIGURES")
    return Path(base) / profile if base else REPO_ROOT / "outputs" / profile / "figures"


# The verdicts. Chapter 06's protocol and every descriptive claim end in one of the four; a descriptive claim
# about a value can also be ``PARTLY`` (the sign without the size). An algebraic identity is not an empirical
# reproduction: it is derived, then checked exactly, and either holds or fails (counted apart in chapter 07).
REPRODUCED, REVERSED, NO_EFFECT, INCONCLUSIVE = VERDICTS = (
    "reproduced", "reversed", "no detectable effect", "inconclusive at this budget")
PARTLY = "partly"
NOT_TESTABLE = "not testable here"
IDENTITY_HOLDS = "identity holds"
IDENTITY_FAILED = "identity fails"

#: the metrics shown in percentage points (×100) in tables, figures and text: accuracy and ECE
POINTS = frozenset({"acc", "ece", "ece_ts"})
MINUS = "\u2212"  # a true minus sign: a number never breaks across a line, and reads as one


def display_scale(metric: str | None) -> float:
    """100 for a metric shown in percentage points (:data:`POINTS`, with or without a ``test_`` prefix), else 1."""
    m = (metric or "").removeprefix("test_").removeprefix("val_")
    return 100.0 if m in POINTS else 1.0


def number(x, digits: int = 2, sign: bool = False, sig: int | None = None) -> str:
    """One number as every page prints it: ``digits`` decimals (or, with ``sig``, that many significant digits
    and no exponent: 0.8333 -> "0.83", 100 -> "100"), a leading "+" with ``sign``, a true minus sign, and "n/a"
    where it is not finite (no "nan", "inf" or "0.00×" for a value that does not exist)."""
    import math

    if x is None or not math.isfinite(float(x)):
        return "n/a"
    x = float(x)
    if sig is not None:
        s = f"{float(f'{x:.{sig}g}'):{'+' if sign else ''}g}"
    else:
        s = f"{x:{'+' if sign else ''}.{digits}f}"
        if s.lstrip("+-") == f"{0:.{digits}f}":  # "-0.00" and "+0.00": zero at this precision, unsigned
            s = s.lstrip("+-")
    return s.replace("-", MINUS)


def interval_text(est, lo, hi, metric: str | None = None, scale: float | None = None, unit: str = "",
                  digits: int = 2, sign: bool = True) -> str:
    """An estimate and its interval, "+0.12 [−0.26, +0.41]" (then ``unit``), in the display unit: points
    (×100) for the metrics of :data:`POINTS` named by ``metric``, else ``scale`` (default 1). The one format
    of every interval in the book: chapter 06's (``protocol.ci_text``), the descriptive claims'
    (``claims.fmt_interval``), chapter 07's table and the text of chapters 01–05 and 08. ``sign=False`` for a
    ratio ("1.87 [1.80, 1.95]")."""
    sc = display_scale(metric) if scale is None else scale
    f = lambda v: number(None if v is None else float(v) * sc, digits, sign=sign)  # noqa: E731
    return f"{f(est)} [{f(lo)}, {f(hi)}]{unit}"

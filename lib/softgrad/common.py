"""Paths and shared names, defined once: where the repository, parameter files and outputs live, and the
verdict labels every chapter uses. Depends on nothing else in the package.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["REPO_ROOT", "NOTEBOOKS_DIR", "PARAMS_DIR", "LOCK_FILE", "params_file", "outputs_root", "notebooks_out",
           "figures_dir", "VERDICTS", "REPRODUCED", "REVERSED", "NO_EFFECT", "INCONCLUSIVE", "PARTLY", "NOT_TESTABLE",
           "IDENTITY_FAILED"]

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
# about a value can also be ``PARTLY`` (the sign without the size); an identity that fails is IDENTITY_FAILED.
REPRODUCED, REVERSED, NO_EFFECT, INCONCLUSIVE = VERDICTS = (
    "reproduced", "reversed", "no detectable effect", "inconclusive at this budget")
PARTLY = "partly"
NOT_TESTABLE = "not testable here"
IDENTITY_FAILED = "not reproduced"

#: the metrics shown in percentage points (×100) in tables, figures and text: accuracy and ECE
POINTS = frozenset({"acc", "ece", "ece_ts"})

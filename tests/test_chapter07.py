"""Chapter 07's counts add up, and its "runs" column describes the runs each row reads.

Reads the executed notebooks (the ci goldens, and the quick profile the book shows): the verdict counts and
the counts by kind each sum to the number of claims, and to the rows of ``claims_verdicts``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from softgrad.analysis import read_glue
from softgrad.book import protocol_setup_text, setup_text
from softgrad.claims import CLAIMS, SWEEPS

ROOT = Path(__file__).resolve().parents[1]
# empirical verdicts, then the identities (counted apart: they hold or fail) and the claims not testable here
VERDICT_KEYS = ["reproduced", "partly", "reversed", "no_effect", "inconclusive", "identity_holds", "identity_fails",
                "not_testable"]
KIND_KEYS = ["protocol", "descriptive", "identity", "not_testable"]


@pytest.mark.parametrize("profile", ["ci", "quick"])
def test_counts_add_up(profile):
    g = read_glue(ROOT / "outputs" / profile / "notebooks" / "07_paper_claims.ipynb")
    total = g["claims_total"]
    by_verdict = {k: g.get(f"claims_{k}", 0) for k in VERDICT_KEYS}  # a notebook before identities were apart: 0
    by_kind = {k: g[f"claims_n_{k}"] for k in KIND_KEYS}
    assert sum(by_verdict.values()) == total, by_verdict
    assert sum(by_kind.values()) == total, by_kind
    assert len(g["claims_verdicts"]) == total
    assert by_kind["descriptive"] == len(CLAIMS)
    if "claims_identity_holds" in g:  # identities are not counted as reproduced
        assert by_verdict["identity_holds"] + by_verdict["identity_fails"] == by_kind["identity"]
        assert g["claims_n_empirical"] == by_kind["protocol"] + by_kind["descriptive"]


def _ran_with(profile, nb):
    return json.loads((ROOT / "outputs" / profile / "notebooks" / f"{nb}.ipynb").read_text())["metadata"]["papermill"][
        "parameters"]


def test_runs_column_reads_the_parameters_each_chapter_ran_with():
    # chapter 06's rows: its tasks, trial indices, T and epochs, not chapters 01-05's seeds and epochs
    p = _ran_with("quick", "06_head_to_head")
    spec = p["extra"]["protocol"]
    text = protocol_setup_text(p)
    assert text.startswith(f"{len(spec['tasks'])} tasks")
    assert f"{spec['trials']} trial indices per task" in text and f"T = {spec['select']}" in text
    for t in spec["tasks"].values():  # each task's epochs, beside its data, model and optimiser
        assert f"{t.get('epochs', p['base']['epochs'])} epochs" in text
    assert "seeds" not in text
    assert "SGD, momentum 0.9, cosine schedule" in text  # the scale a verdict is read at names its optimiser
    # a descriptive row: the sweeps its claim reads (P2 reads full-batch GD on digits, not the MLP sweep)
    p1 = _ran_with("quick", "01_temperature")
    assert setup_text(p1, SWEEPS["t_p2"]).startswith("digits 8×8 · linear softmax · full-batch GD")
    assert setup_text(p1, SWEEPS["t_beta_vs_init"]) == "MNIST-10k · MLP 2×256 · 8 epochs · 5 seeds"
    for cid, c in CLAIMS.items():  # every claim names sweeps its chapter has
        assert set(SWEEPS[cid]) <= set(_ran_with("ci", c.chapter)["sweeps"]), cid

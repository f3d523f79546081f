"""The golden checker (softgrad.goldens): sanitizing as nbval does, diffing outputs, the perturbations."""

from __future__ import annotations

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook, new_output

from softgrad import config as C
from softgrad import goldens as G
from softgrad import pipeline


def _nb(path, cells):
    """cells: list of (text output, tags)."""
    nb = new_notebook(cells=[new_code_cell("x", id=f"cell-{i:03d}", metadata={"tags": tags},
                                           outputs=[new_output("stream", name="stdout", text=text)])
                             for i, (text, tags) in enumerate(cells)])
    nbformat.write(nb, str(path))
    return path


def test_sanitizers_are_nbvals_file_in_order():
    rules = G.sanitizers()
    assert len(rules) >= 4
    assert G.sanitize("acc 0.861234 at 0x7f3a in 12.5 s", rules) == "acc 0.8612 at 0xADDRESS in TIME"


def test_diff_reports_numeric_moves_with_their_size(tmp_path):
    golden = _nb(tmp_path / "g.ipynb", [("loss 2.72 → 0.60\n", []), ("same 1.0\n", [])])
    test = _nb(tmp_path / "t.ipynb", [("loss 2.72 → 0.63\n", []), ("same 1.0\n", [])])
    moved = G.diff_notebooks(golden, test)
    assert [m["cell"] for m in moved] == ["cell-000"]
    assert moved[0]["max_abs"] == pytest.approx(0.03)
    assert moved[0]["lines"] == [("loss 2.72 → 0.60", "loss 2.72 → 0.63")]


def test_diff_reports_text_changes_and_below_resolution_is_unchanged(tmp_path):
    golden = _nb(tmp_path / "g.ipynb", [("verdict reproduced\n", []), ("0.123456\n", [])])
    test = _nb(tmp_path / "t.ipynb", [("verdict reversed\n", []), ("0.123459\n", [])])  # 4 decimals equal
    moved = G.diff_notebooks(golden, test)
    assert [(m["cell"], m["max_abs"]) for m in moved] == [("cell-000", None)]


@pytest.mark.parametrize("side", ["golden", "test"])
def test_cells_nbval_ignores_are_not_compared(tmp_path, side):
    tags = {"golden": ([], []), "test": ([], [])}
    tags[side] = (["nbval-ignore-output"], [])
    golden = _nb(tmp_path / "g.ipynb", [("a 1.0\n", tags["golden"][0])])
    test = _nb(tmp_path / "t.ipynb", [("a 2.0\n", tags["test"][0])])
    assert G.diff_notebooks(golden, test) == []


def test_perturbations_are_choices_of_nbval():
    assert {"avx2", "default", "threads"} <= set(G.PERTURBATIONS)
    args = pipeline.parser().parse_args(["nbval", "--profile", "ci", "--perturb", "avx2"])
    assert args.perturb == "avx2"
    with pytest.raises(SystemExit):
        pipeline.parser().parse_args(["nbval", "--perturb", "avx9"])
    for env in G.PERTURBATIONS.values():
        assert all(k.isupper() and isinstance(v, str) for k, v in env.items())


def test_thread_override(monkeypatch):
    monkeypatch.delenv("SOFTGRAD_THREADS", raising=False)
    assert C.effective_threads(C.Config(threads=2)) == 2
    monkeypatch.setenv("SOFTGRAD_THREADS", "1")
    assert C.effective_threads(C.Config(threads=2)) == 1
    # the override is part of the run id, like the configured count
    assert C.config_id(C.Config(threads=2)) == C.config_id(C.Config(threads=1))
    monkeypatch.setenv("SOFTGRAD_THREADS", "two")
    with pytest.raises(C.ConfigError, match="SOFTGRAD_THREADS must be a positive integer"):
        C.effective_threads(C.Config())


def test_trained_checks(capsys):
    G.trained_checks({"ok": (2.3, 0.5, 0.9), "flat": (2.3, 2.4, 0.95), "weak": (None, 1.0, 0.3),
                      "no loss": (None, None, 0.8)}, chance=0.1, margin=0.5, initial_loss=2.3)
    out = capsys.readouterr().out.splitlines()
    rows = {ln.split()[0]: ln.split()[-2:] for ln in out[1:]}
    assert rows == {"ok": ["yes", "yes"], "flat": ["NO", "yes"], "weak": ["yes", "NO"], "no": ["–", "yes"]}

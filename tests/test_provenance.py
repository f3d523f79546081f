"""The provenance's dirty flag tells the truth: a fresh clone's regeneration, which rewrites tracked files under
outputs/, stays clean; an edit to what changes results (lib/, notebooks/, params/, the lock, pyproject.toml) or a
new file there is dirty. One helper (``softgrad.store.git_dirty``) serves runs and book pages."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from softgrad import book, store

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")

FILES = {
    "lib/softgrad/losses.py": "x = 1\n",
    "notebooks/01_a.py": "# %%\n",
    "params/quick/01_a.yaml": "profile: quick\n",
    "requirements-lock.txt": "torch==2.14.1\n",
    "pyproject.toml": "[project]\n",
    "outputs/quick/notebooks/01_a.ipynb": "{}\n",
    "outputs/quick/figures/01_a.png": "png\n",
    "book/intro.md": "# intro\n",
    "tests/test_a.py": "\n",
    ".gitignore": "__pycache__/\n",
}


@pytest.fixture
def clone(tmp_path: Path) -> Path:
    """A committed repository with the project's layout: a clean clone."""
    for rel, text in FILES.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    env = ["-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
    for cmd in (["init", "-q"], ["add", "-A"], [*env, "commit", "-q", "-m", "clone"]):
        subprocess.run(["git", *cmd], cwd=tmp_path, check=True, capture_output=True)
    assert not store.git_dirty(tmp_path)
    return tmp_path


@pytest.mark.parametrize("rel", ["outputs/quick/notebooks/01_a.ipynb", "outputs/quick/figures/01_a.png",
                                 "outputs/quick/runs/abc.json", "book/intro.md", "tests/test_a.py",
                                 "lib/softgrad/__pycache__/losses.cpython-311.pyc"])
def test_regenerated_outputs_and_non_result_files_stay_clean(clone, rel):
    (clone / rel).parent.mkdir(parents=True, exist_ok=True)
    (clone / rel).write_text("regenerated\n")
    assert not store.git_dirty(clone)


@pytest.mark.parametrize("rel", ["lib/softgrad/losses.py", "notebooks/01_a.py", "params/quick/01_a.yaml",
                                 "requirements-lock.txt", "pyproject.toml", "lib/softgrad/new_module.py",
                                 "params/quick/02_new.yaml"])
def test_what_changes_results_is_dirty(clone, rel):
    (clone / rel).write_text("changed\n")  # an edit, or a file git does not track yet
    assert store.git_dirty(clone)


def test_staged_and_deleted_files_are_dirty(clone):
    (clone / "lib/softgrad/losses.py").write_text("x = 2\n")
    subprocess.run(["git", "add", "-A"], cwd=clone, check=True)
    assert store.git_dirty(clone)
    subprocess.run(["git", "reset", "-q", "--hard"], cwd=clone, check=True)
    assert not store.git_dirty(clone)
    (clone / "params/quick/01_a.yaml").unlink()
    assert store.git_dirty(clone)


def test_runs_and_book_pages_use_the_one_helper(monkeypatch):
    calls = []
    monkeypatch.setattr(store, "git_dirty", lambda root=None: calls.append("store") or True)
    monkeypatch.setattr(book, "git_dirty", lambda root=None: calls.append("book") or True)
    assert store.provenance()["git_dirty"] is True
    pytest.importorskip("IPython")
    header = book.page_header("01_a", {"profile": "quick"}).data
    assert "(+ local changes)" in header and calls == ["store", "book"]

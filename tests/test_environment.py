"""environment.yml and pyproject.toml must agree (pyproject is the single list of packages)."""

import tomllib
from pathlib import Path

import yaml
from packaging.specifiers import SpecifierSet

ROOT = Path(__file__).resolve().parents[1]
CONDA_TO_PYPI = {"pytorch": "torch", "py-opencv": "opencv-python"}


def test_environment_installs_project_with_existing_extras():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    proj = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    deps = env["dependencies"]
    python = [d for d in deps if isinstance(d, str) and d.startswith("python")]
    assert len(python) == 1, "environment.yml must pin python exactly once"
    version = python[0].split("=", 1)[1]
    assert SpecifierSet(proj["requires-python"]).contains(version + ".0"), (version, proj["requires-python"])
    pip = next(d["pip"] for d in deps if isinstance(d, dict) and "pip" in d)
    installs = [p for p in pip if p.startswith("-e .") or p.startswith(".")]
    assert installs, "environment.yml must install the project itself through pip"
    extras = installs[0].split("[", 1)[1].rstrip("]").split(",") if "[" in installs[0] else []
    for e in extras:
        assert e in proj["optional-dependencies"], f"environment.yml asks for extra {e!r} that pyproject lacks"
    assert {"notebooks", "dev"} <= set(extras)
    # no package listed twice under different names/versions: conda/pip extras must not shadow pyproject
    listed = {CONDA_TO_PYPI.get(d.split("=")[0], d.split("=")[0]) for d in deps if isinstance(d, str)}
    listed |= {p.split("=")[0].split(">")[0].split("<")[0] for p in pip if not p.startswith((".", "-e"))}
    declared = {d.split(">")[0].split("=")[0].split("<")[0].split("[")[0].strip() for d in proj["dependencies"]}
    for extra in proj["optional-dependencies"].values():
        declared |= {d.split(">")[0].split("=")[0].split("<")[0].split("[")[0].strip() for d in extra}
    assert not (listed - {"python", "pip"}) & declared, "environment.yml duplicates pyproject dependencies"


def test_design_packages_are_declared():
    proj = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = " ".join(proj["dependencies"] + sum(proj["optional-dependencies"].values(), []))
    for pkg in ("jupyter", "jupytext", "papermill", "torch", "torchvision", "matplotlib", "nbval"):
        assert pkg in names, pkg

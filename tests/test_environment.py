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


def _lock() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements-lock.txt").read_text().splitlines():
        if line and not line.startswith((" ", "#")) and "==" in line:
            name, version = line.split("==", 1)
            pins[name.strip().lower().replace("_", "-")] = version.split(";")[0].strip()
    return pins


def _declared() -> list:
    from packaging.requirements import Requirement

    proj = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = proj["optional-dependencies"]
    reqs = proj["dependencies"] + extras["notebooks"] + extras["dev"] + extras["examples"]
    return [Requirement(r) for r in reqs]


def test_lock_pins_every_declared_dependency_inside_its_range():
    lock = _lock()
    for req in _declared():
        name = req.name.lower().replace("_", "-")
        assert name in lock, f"{name} is declared in pyproject.toml but not pinned in requirements-lock.txt (make lock)"
        assert req.specifier.contains(lock[name], prereleases=True), (name, str(req.specifier), lock[name])


def test_declared_lower_bounds_are_the_tested_releases():
    """A lower bound below the locked minor release would claim versions nobody ran."""
    from packaging.version import Version

    lock = _lock()
    for req in _declared():
        lows = [Version(s.version) for s in req.specifier if s.operator in (">=", "==")]
        assert lows, f"{req.name} has no lower bound"
        locked = Version(lock[req.name.lower().replace("_", "-")])
        assert (lows[0].major, lows[0].minor) == (locked.major, locked.minor), (req.name, str(lows[0]), str(locked))


def test_lock_pins_a_torch_every_machine_here_installs():
    # some machines cap pip at torch<=2.14.1 (a constraints file); the lock must install there too
    from packaging.version import Version

    assert Version(_lock()["torch"]) <= Version("2.14.1")

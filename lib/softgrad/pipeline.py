"""Regenerate the paper: execute notebooks with papermill, check nbval goldens, build the book.

    python -m softgrad.pipeline notebooks --profile quick [--only 00_gradient_profiles]
    python -m softgrad.pipeline nbval --profile ci      # re-execute the committed goldens, compare
    python -m softgrad.pipeline book --profile quick

The ``.py`` (jupytext py:percent) under ``notebooks/`` is the source. Each notebook with a parameter
file ``params/<profile>/<name>.yaml`` is converted in memory and executed by papermill with that
file's top-level keys as parameters, from the repo root, into ``outputs/<profile>/notebooks/``
(written atomically, with deterministic cell ids and no timing metadata, so reruns diff cleanly).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from .common import NOTEBOOKS_DIR, REPO_ROOT, notebooks_out, params_file
from .config import load_params
from .goldens import PERTURBATIONS
from .store import clean_stale_tmp, file_hash

NB_DIR = NOTEBOOKS_DIR


def notebook_names(profile: str) -> list[str]:
    return [p.stem for p in sorted(NB_DIR.glob("[0-9][0-9]_*.py")) if params_file(profile, p.stem).exists()]


def _clean(nb, source: Path):
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"cell-{i:03d}"
        cell.get("metadata", {}).pop("execution", None)
        tags = cell.get("metadata", {}).get("tags", [])
        if ("parameters" in tags or "injected-parameters" in tags) and "remove-cell" not in tags:
            # the book shows the parameters once, in the page header (softgrad.book.page_header)
            cell["metadata"]["tags"] = [*tags, "remove-cell"]
        pm = cell.get("metadata", {}).get("papermill")
        if pm is not None:
            cell["metadata"]["papermill"] = {}
    pmeta = nb.metadata.get("papermill", {})
    pmeta["input_path"] = str(source.relative_to(REPO_ROOT))
    pmeta.pop("output_path", None)
    pmeta["environment_variables"] = {}
    for k in ("start_time", "end_time", "duration"):
        pmeta.pop(k, None)
    return nb


def validate(name: str, profile: str) -> dict:
    """Fully validate a notebook's parameter file (sweeps, and the protocol spec where it has one)."""
    p = load_params(params_file(profile, name))
    sweep_workers(p)
    if "protocol" in p["extra"]:
        from . import protocol

        protocol.plan(p["base"], p["extra"]["protocol"])
    return p


def sweep_workers(p: dict) -> int:
    """``extra.workers`` of a parameter file: how many runs of its sweeps train at once (default 1, in this
    process). More than one needs ``threads: 1`` in ``base`` (two torch processes sharing cores with several
    threads each slow small runs about 20×)."""
    from .config import ConfigError

    w = p["extra"].get("workers", 1)
    if not isinstance(w, int) or isinstance(w, bool) or w < 1:
        raise ConfigError(f"extra.workers: must be an integer >= 1, got {w!r}")
    if w > 1 and p["base"].get("threads") != 1:
        raise ConfigError(f"extra.workers: {w} workers need base threads: 1, got threads: {p['base'].get('threads')!r}")
    return w


def execute(name: str, profile: str, out_dir: Path | None = None, progress: bool = True, pre_run: bool = True) -> Path:
    import jupytext
    import nbformat
    import papermill as pm

    src = NB_DIR / f"{name}.py"
    params = yaml.safe_load(params_file(profile, name).read_text()) or {}
    p = validate(name, profile)  # before running anything
    out_dir = out_dir or notebooks_out(profile)
    out_dir.mkdir(parents=True, exist_ok=True)
    if pre_run and params.get("sweeps"):  # train the sweeps here, with progress in the terminal; the kernel reads the cache
        from .runs import run_params

        w = sweep_workers(p)
        run_params(params_file(profile, name), progress=progress,
                   executor="processes" if w > 1 else "local", workers=w if w > 1 else None)
    if pre_run and "protocol" in p["extra"]:  # the same for a notebook that runs the comparison protocol
        from . import protocol

        spec = protocol.check_spec(p["extra"]["protocol"])
        protocol.run(p["base"], spec, p["profile"], progress=progress)
        if spec["rerun_loss_impl"]:  # the robustness rerun the chapter compares with
            protocol.run(p["base"], spec, p["profile"], progress=progress, loss_impl=spec["rerun_loss_impl"],
                         retrain=False)  # as the chapter calls it: the winners are retrained once
    os.environ["SOFTGRAD_PROGRESS"] = "0"  # kernels inherit it: no progress bars inside executed notebooks
    nb = jupytext.read(src)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    clean_stale_tmp(out_dir)  # partial notebooks of a killed earlier execution
    tmp = out_dir / f"{name}.ipynb.tmp{os.getpid()}"
    try:
        result = pm.execute_notebook(nb, str(tmp), parameters=params, kernel_name="python3", language="python",
                                     cwd=str(REPO_ROOT), progress_bar=progress, log_output=False)
        nbformat.write(_clean(result, src), str(tmp))
        final = out_dir / f"{name}.ipynb"
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)  # a failed execution leaves no partial notebook behind
    return final


def stale_goldens(profile: str = "ci") -> list[str]:
    """Goldens whose code cells differ from their .py source (ignoring papermill's injected cell)."""
    import jupytext
    import nbformat

    stale = []
    for name in notebook_names(profile):
        golden = notebooks_out(profile) / f"{name}.ipynb"
        if not golden.exists():
            stale.append(f"{name} (no golden)")
            continue
        g = nbformat.read(str(golden), as_version=4)
        g_code = [c.source for c in g.cells if c.cell_type == "code" and "injected-parameters" not in c.metadata.get("tags", [])]
        s_code = [c.source for c in jupytext.read(NB_DIR / f"{name}.py").cells if c.cell_type == "code"]
        if g_code != s_code:
            stale.append(name)
    return stale


def nbval(profile: str = "ci", perturb: str | None = None) -> int:
    """Re-execute the committed goldens of ``profile`` (every run recomputed) and compare them with nbval.
    ``perturb`` names one of :data:`softgrad.goldens.PERTURBATIONS`: the kernels then run as on another CPU
    (SIMD dispatch) or with another thread count, and the goldens must still pass."""
    stale = stale_goldens(profile)
    if stale:
        print(f"stale nbval goldens (their .py changed): {stale}. Regenerate on purpose with:\n"
              f"  python -m softgrad.pipeline notebooks --profile {profile}", file=sys.stderr)
        return 1
    nbs = [str(notebooks_out(profile) / f"{n}.ipynb") for n in notebook_names(profile)]
    with tempfile.TemporaryDirectory() as tmp:
        # kernels inherit this: runs recompute in a scratch folder instead of reading cached results
        env = {**os.environ, "SOFTGRAD_OUTPUTS": tmp, "SOFTGRAD_FIGURES": tmp, "PYTHONWARNINGS": "ignore",
               "SOFTGRAD_PROGRESS": "0", **PERTURBATIONS[perturb or "native"]}
        if perturb:
            print(f"nbval under '{perturb}': {' '.join(f'{k}={v}' for k, v in PERTURBATIONS[perturb].items())}",
                  flush=True)
        cmd = [sys.executable, "-m", "pytest", "--nbval", "--nbval-current-env", "--nbval-cell-timeout", "600",
               "--nbval-sanitize-with", str(REPO_ROOT / "tests" / "nbval_sanitize.cfg"), "-p", "no:cacheprovider",
               "-n", "2", "--dist", "loadfile", "-q", *nbs]
        return subprocess.call(cmd, cwd=REPO_ROOT, env=env)


MATHJAX = REPO_ROOT / "book" / "_vendor" / "mathjax"


def vendor_mathjax() -> Path:
    """MathJax 3 (its ``es5/`` build) under ``book/_vendor/mathjax``, fetched with ``npm pack`` once.

    The book then renders math offline. ~24 MB, so it is fetched at build time, not committed; ``_vendor``
    is not ``_static`` because Jupyter Book 1.x injects every .js it finds in ``_static``.
    """
    if (MATHJAX / "tex-chtml.js").exists():
        return MATHJAX
    import tarfile

    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("npm is needed once to fetch MathJax for offline math (npm pack mathjax@3); install Node.js")
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run([npm, "pack", "mathjax@3", "--pack-destination", tmp], capture_output=True, text=True)
        tgz = sorted(Path(tmp).glob("mathjax-*.tgz"))
        if out.returncode or not tgz:
            raise RuntimeError(f"npm pack mathjax@3 failed: {out.stderr.strip()[-500:]}")
        with tarfile.open(tgz[0]) as tf:
            members = [m for m in tf.getmembers() if m.name.startswith("package/es5/")]
            tf.extractall(tmp, members=members, filter="data")
        staging = MATHJAX.with_name("mathjax.tmp")
        shutil.rmtree(staging, ignore_errors=True)
        shutil.move(str(Path(tmp) / "package" / "es5"), staging)
        os.replace(staging, MATHJAX)
    return MATHJAX


def book_config(profile: str, repo: str | None) -> dict:
    """``book/_config.yml`` plus what is known only at build time: the repository the launch buttons
    (Binder, Colab) point at, and where in it the executed notebooks live (``outputs/<profile>/notebooks``,
    committed, which the book copies to ``book/notebooks``). Without a GitHub repository (see
    :func:`softgrad.book.repo_url`) the book has no launch buttons; the download button is always there."""
    cfg = yaml.safe_load((REPO_ROOT / "book" / "_config.yml").read_text())
    if repo:
        cfg["repository"] = {"url": repo, "branch": "main", "path_to_book": f"outputs/{profile}"}
        cfg["launch_buttons"] = {"notebook_interface": "jupyterlab", "binderhub_url": "https://mybinder.org",
                                 "colab_url": "https://colab.research.google.com"}
        cfg.setdefault("html", {})["use_repository_button"] = True
    return cfg


def build_book(profile: str) -> int:
    """Build the book from ``outputs/<profile>``: its executed notebooks and figures are copied to
    ``book/notebooks`` (with each chapter's ``.py`` source, for download), then Jupyter Book builds with
    warnings as errors and a config from :func:`book_config`."""
    from .book import repo_url

    vendor_mathjax()
    gen = REPO_ROOT / "book" / "notebooks"
    shutil.rmtree(gen, ignore_errors=True)
    gen.mkdir(parents=True)
    for nb in sorted(notebooks_out(profile).glob("*.ipynb")):
        shutil.copy(nb, gen / nb.name)
        if (NB_DIR / f"{nb.stem}.py").exists():
            shutil.copy(NB_DIR / f"{nb.stem}.py", gen / f"{nb.stem}.py")
    figs = REPO_ROOT / "outputs" / profile / "figures"
    if figs.exists():
        shutil.copytree(figs, gen / "figures")
    cfg = REPO_ROOT / "book" / "_config.built.yml"
    cfg.write_text(yaml.safe_dump(book_config(profile, repo_url()), sort_keys=False))
    jb = shutil.which("jupyter-book", path=str(Path(sys.executable).parent)) or "jupyter-book"
    return subprocess.call([jb, "build", str(REPO_ROOT / "book"), "--config", str(cfg), "--all", "--warningiserror",
                            "--keep-going"], cwd=REPO_ROOT)


_TORCH_STACK = ("torch", "torchvision", "triton", "nvidia-", "cuda-")


def alt_torch(venv: Path, torch_spec: str, lock: Path) -> int:
    """Check the nbval goldens (and the loss tests) under another torch release, in a second venv.

    The venv gets the lock with the torch stack (torch, torchvision, triton, CUDA wheels) swapped for
    ``torch_spec``, resolved together by pip. Where that release cannot be installed here, say so plainly
    and return 0 without testing (machines that cap pip's torch, or that reach no registry).
    """
    venv = Path(venv)
    py = venv / "bin" / "python"
    stamp = venv / ".installed"
    want = f"{torch_spec} | {file_hash(lock)}"
    if not (stamp.exists() and stamp.read_text() == want):
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.check_call([sys.executable, "-m", "venv", str(venv)])
        pins = [ln for ln in lock.read_text().splitlines()
                if ln and not ln.startswith((" ", "#")) and not ln.lower().startswith(_TORCH_STACK)]
        with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
            f.write("\n".join(pins) + "\n")
        # this venv deliberately installs a torch other than a machine-wide pip cap allows: read no pip
        # config files (where such a cap lives); PIP_* variables still apply
        env = {**os.environ, "PIP_CONFIG_FILE": os.devnull}
        cmd = [str(py), "-m", "pip", "install", "--quiet", "-r", f.name, *torch_spec.split()]
        r = subprocess.run(cmd, env=env, capture_output=True, text=True)
        os.unlink(f.name)
        if r.returncode:
            tail = " ".join(r.stderr.strip().splitlines()[-2:])[-400:]
            print(f"alt-torch: NOT TESTED: {torch_spec} cannot be installed on this machine ({tail})")
            shutil.rmtree(venv, ignore_errors=True)
            return 0
        subprocess.check_call([str(py), "-m", "pip", "install", "--quiet", "--no-deps", "-e", str(REPO_ROOT)], env=env)
        stamp.write_text(want)
    ver = subprocess.run([str(py), "-c", "import torch, torchvision; print(torch.__version__, torchvision.__version__)"],
                         capture_output=True, text=True).stdout.strip()
    print(f"alt-torch: testing under torch/torchvision {ver} ({venv})", flush=True)
    rc = subprocess.call([str(py), "-m", "pytest", "-q", "-n", "2", "-p", "no:cacheprovider", "tests/test_losses.py"],
                         cwd=REPO_ROOT)
    return rc or subprocess.call([str(py), "-m", "softgrad.pipeline", "nbval", "--profile", "ci"], cwd=REPO_ROOT)


def parser() -> argparse.ArgumentParser:
    """The command line (``python -m softgrad.pipeline``); :func:`softgrad.book.rerun_commands` is tested
    against it."""
    ap = argparse.ArgumentParser(prog="softgrad.pipeline")
    ap.add_argument("what", choices=["notebooks", "nbval", "book", "stale", "alt-torch"])
    ap.add_argument("--profile", default="quick")
    ap.add_argument("--only", nargs="*", default=None)
    ap.add_argument("--perturb", default=None, choices=sorted(PERTURBATIONS),
                    help="nbval: simulate another CPU or thread count (softgrad.goldens.PERTURBATIONS)")
    ap.add_argument("--quiet", action="store_true", help="notebooks: no progress bars")
    ap.add_argument("--out", default=None, help="notebooks: write the executed notebooks here instead of outputs/<profile>/notebooks")
    ap.add_argument("--venv", default=".venv-alt", help="alt-torch: the second venv")
    ap.add_argument("--torch", default="torch==2.15.0 torchvision==0.29.2", help="alt-torch: what to install")
    ap.add_argument("--lock", default="requirements-lock.txt", help="alt-torch: the lock file")
    return ap


def main(argv=None) -> int:
    a = parser().parse_args(argv)
    if a.what == "alt-torch":
        return alt_torch(REPO_ROOT / a.venv, a.torch, REPO_ROOT / a.lock)
    if a.what == "notebooks":
        names = a.only or notebook_names(a.profile)
        for name in names:  # every parameter file is checked before any notebook trains
            validate(name, a.profile)
        from tqdm.auto import tqdm

        for name in tqdm(names, desc=f"notebooks ({a.profile})", disable=a.quiet):
            print(f"executing {name} with params/{a.profile}/{name}.yaml", flush=True)
            execute(name, a.profile, out_dir=Path(a.out) if a.out else None, progress=not a.quiet)
        return 0
    if a.what == "nbval":
        return nbval(a.profile, a.perturb)
    if a.what == "stale":
        s = stale_goldens(a.profile)
        print(json.dumps(s))
        return 1 if s else 0
    return build_book(a.profile)


def _main() -> int:
    from .config import ConfigError

    try:
        return main()
    except ConfigError as e:  # a bad parameter file: one line naming the key, no traceback
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(_main())

"""What each book page shows about itself: the parameters it ran with and how to rerun it.

A chapter is an executed notebook. Its first code cell calls :func:`page_header`, which shows (once — the
papermill parameter cells are removed from the rendered page by :mod:`softgrad.pipeline`) the profile, the
parameter file, the git commit and the parameters as YAML, and a "rerun this chapter" box with the exact
commands (:func:`rerun_commands`; ``tests/test_rerun.py`` parses them with the real command-line parsers).
The book's launch buttons (Binder, Colab) and its download button are configured at build time
(:func:`softgrad.pipeline.build_book`).
"""

from __future__ import annotations

import os
import re
import shlex

import yaml

from .store import git, git_dirty


def rerun_commands(notebook: str, profile: str) -> list[list[str]]:
    """The two ways to rerun a chapter from the repository root, as argv lists.

    1. the pipeline (trains the missing runs with progress bars, then executes the notebook):
       ``python -m softgrad.pipeline notebooks --profile P --only NB``;
    2. plain papermill on the executed notebook with the parameter file:
       ``papermill outputs/P/notebooks/NB.ipynb NB.rerun.ipynb -f params/P/NB.yaml --cwd .``.
    """
    params = f"params/{profile}/{notebook}.yaml"
    return [
        ["python", "-m", "softgrad.pipeline", "notebooks", "--profile", profile, "--only", notebook],
        ["papermill", f"outputs/{profile}/notebooks/{notebook}.ipynb", f"{notebook}.rerun.ipynb", "-f", params,
         "--cwd", "."],
    ]


def page_header(notebook: str, P: dict):
    """A MyST block for the top of a chapter: what it ran with, and how to rerun it.

    ``P`` is the validated parameter dict (:func:`softgrad.runs.notebook_params`). The commit is the one the
    notebook was executed at ("+ local changes" when a file that changes results differed from it:
    :func:`softgrad.store.git_dirty`, the flag every run's provenance records).
    """
    from IPython.display import Markdown

    profile = P["profile"]
    commit = git("rev-parse", "--short=12", "HEAD") or "unknown"
    dirty = git_dirty()  # outputs/ is what regenerating writes: only what changes results counts
    shown = {k: P[k] for k in ("base", "sweeps", "extra") if P.get(k)}
    text = yaml.safe_dump(shown, sort_keys=False, default_flow_style=None, width=100, allow_unicode=True).rstrip() if shown else "{}"
    cmds = "\n".join(shlex.join(c) for c in rerun_commands(notebook, profile))
    return Markdown(
        f"::::{{admonition}} The parameters this page ran with\n:class: note\n\n"
        f"Profile **{profile}** · parameter file `params/{profile}/{notebook}.yaml` · source "
        f"`notebooks/{notebook}.py` · executed at commit `{commit}`{' (+ local changes)' if dirty else ''}.\n\n"
        f":::{{dropdown}} Parameters (the file's settings over the defaults in `softgrad.config.Config`)\n"
        f"```yaml\n{text}\n```\n:::\n\n"
        f"**Rerun this chapter** from the repository root — with the pipeline (trains what is missing, then "
        f"executes), or with plain papermill on the executed notebook:\n\n```bash\n{cmds}\n```\n"
        f"Downloads: {{download}}`the source <{notebook}.py>` (jupytext py:percent); the executed notebook is "
        f"under the download button (top right), and the launch buttons open it on Binder or Colab (there, run "
        f"`pip install -e .` in a clone of the repository first).\n::::\n")


def repo_url() -> str | None:
    """The GitHub repository the book links to: ``SOFTGRAD_REPOSITORY`` or ``GITHUB_REPOSITORY`` (set by
    GitHub Actions) as ``owner/name``, else the ``origin`` remote when it is on GitHub; None otherwise."""
    slug = os.environ.get("SOFTGRAD_REPOSITORY") or os.environ.get("GITHUB_REPOSITORY")
    if not slug:
        m = re.search(r"github\.com[:/]([\w.-]+/[\w.-]+?)(?:\.git)?$", git("remote", "get-url", "origin"))
        slug = m.group(1) if m else None
    return f"https://github.com/{slug}" if slug else None


DATASET_NAMES = {"mnist10k": "MNIST-10k", "digits": "digits 8×8", "mnist": "MNIST", "fashion_mnist": "Fashion-MNIST",
                 "cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "svhn": "SVHN", "synthetic": "synthetic",
                 "teacher": "teacher", "mnist1d": "MNIST-1D"}
FULL_BATCH = 4096  # a batch this large holds the whole training set of the small datasets: full-batch GD


def _model_text(c) -> str:
    if c.model == "mlp":
        return "linear softmax" if c.depth == 0 else f"MLP {c.depth}×{c.width}"
    return {"mlp1d": "MNIST-1D MLP", "cnn1d": "MNIST-1D CNN"}.get(c.model, c.model)


def _run_text(c) -> str:
    """One run's setting in a few words: data, model, optimiser, length."""
    ds = DATASET_NAMES.get(c.dataset, c.dataset) + (f", {c.label_noise:.0%} label noise" if c.label_noise else "")
    if c.batch_size >= FULL_BATCH:
        return f"{ds} · {_model_text(c)} · full-batch GD, {c.epochs} steps"
    opt = " · AdamW" if c.optimizer == "adamw" else ""
    return f"{ds} · {_model_text(c)}{opt} · {c.epochs} epochs"


def setup_text(params: dict, sweeps) -> str:
    """The runs of ``sweeps`` of a chapter, in a few words ("MNIST-10k · MLP 2×256 · 8 epochs · 5 seeds"):
    ``params`` are the papermill parameters the chapter was executed with (``base``, ``sweeps``), so the text
    describes the runs it read. Distinct settings are joined by "; "."""
    from .config import expand

    parts: dict[str, set] = {}
    for name in sweeps:
        for c in expand(params.get("base") or {}, (params.get("sweeps") or {})[name]):
            parts.setdefault(_run_text(c), set()).add(c.seed)
    return "; ".join(f"{k} · {len(s)} seed{'s' if len(s) != 1 else ''}" for k, s in parts.items())


def setting_text(params: dict, sweeps) -> str:
    """The setting a chapter's accuracy levels are read in, for the label beside each of them ("MNIST-10k ·
    MLP 2×256 · η = 0.05 · 8 epochs · 5 seeds"): :func:`setup_text` with the learning rate(s) of the runs of
    ``sweeps`` (a grid is listed: "η ∈ {0.003, 0.03, 0.3}")."""
    from .config import expand

    cfgs = [c for name in sweeps for c in expand(params.get("base") or {}, (params.get("sweeps") or {})[name])]
    lrs = sorted({c.lr for c in cfgs})
    eta = f"η = {lrs[0]:g}" if len(lrs) == 1 else "η ∈ {" + ", ".join(f"{x:g}" for x in lrs) + "}"
    parts = setup_text(params, sweeps).split(" · ")
    return " · ".join(parts[:2] + [eta] + parts[2:])


def _optimizer_text(c) -> str:
    """A run's optimiser in a few words: "SGD, momentum 0.9, cosine schedule"."""
    opt = {"sgd": "SGD", "adamw": "AdamW"}.get(c.optimizer, c.optimizer)
    mom = (f", {'Nesterov ' if c.nesterov else ''}momentum {c.momentum:g}" if c.optimizer == "sgd" and c.momentum
           else "")
    return f"{opt}{mom}, {c.lr_schedule} schedule"


def protocol_setup_text(params: dict) -> str:
    """Chapter 06's runs in a few words, from the parameters it was executed with (``extra.protocol`` over
    ``base``): its tasks (data, model, optimiser and epochs each), trial indices and search budget T — the scale
    every verdict of the book's front page is read at."""
    from .config import expand
    from .protocol import DEFAULTS

    # the defaults filled in; read, not validated (an executed notebook of an older specification stays readable)
    spec = {**DEFAULTS, **((params.get("extra") or {}).get("protocol") or {})}
    tasks = {name: expand(params.get("base") or {}, over or {})[0] for name, over in (spec.get("tasks") or {}).items()}
    # each task in words, not by its key (mnist1d_cnn_sgd): the reader meets the tasks by what they are
    what = "; ".join(f"{DATASET_NAMES.get(c.dataset, c.dataset)}, {_model_text(c)}"
                     + (f", {c.label_noise:.0%} label noise" if c.label_noise else "")
                     + f", {_optimizer_text(c)}, {c.epochs} epochs" for c in tasks.values())
    return (f"{len(tasks)} tasks ({what}), {spec.get('trials')} trial indices per task, "
            f"T = {spec.get('select')}")

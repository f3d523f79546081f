"""The "rerun this chapter" box: its commands parse with the real command-line parsers and name files
that exist (the executed notebook and the parameter file), for every chapter of every profile."""

from __future__ import annotations

import pytest
from papermill.cli import papermill as papermill_cli

from softgrad import pipeline
from softgrad.book import rerun_commands
from softgrad.store import REPO_ROOT

CHAPTERS = [(p, n) for p in ("quick", "ci") for n in pipeline.notebook_names(p)]


@pytest.mark.parametrize("profile,name", CHAPTERS)
def test_pipeline_command_parses(profile, name):
    argv = rerun_commands(name, profile)[0]
    assert argv[:3] == ["python", "-m", "softgrad.pipeline"]
    a = pipeline.parser().parse_args(argv[3:])
    assert (a.what, a.profile, a.only) == ("notebooks", profile, [name])
    assert name in pipeline.notebook_names(a.profile)


@pytest.mark.parametrize("profile,name", CHAPTERS)
def test_papermill_command_parses_and_names_existing_files(profile, name):
    argv = rerun_commands(name, profile)[1]
    assert argv[0] == "papermill"
    ctx = papermill_cli.make_context("papermill", argv[1:])  # click parses, nothing runs
    nb, params = ctx.params["notebook_path"], ctx.params["parameters_file"]
    assert (REPO_ROOT / nb).is_file(), f"{nb}: the executed notebook the box points at is missing"
    assert all((REPO_ROOT / f).is_file() for f in params), params
    assert ctx.params["cwd"] == "."


def test_a_bad_rerun_command_would_fail_to_parse():
    with pytest.raises(SystemExit):
        pipeline.parser().parse_args(["notebooks", "--profile"])

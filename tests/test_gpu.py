"""The prepared device script (softgrad.gpu): its CPU dry run works and says what it exercised; without CUDA the
full run refuses with one line. The whole dry run is `make gpu-dry` (CI)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from softgrad import gpu


def test_full_run_without_cuda_says_so():
    if torch.cuda.is_available():
        pytest.skip("a CUDA machine runs the full script")
    p = subprocess.run([sys.executable, "-m", "softgrad.gpu"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and "--dry-run" in p.stderr and len(p.stderr.strip().splitlines()) == 1


def test_fake_data_has_the_data_sets_shape_and_classes():
    ds = gpu._fake_data("cifar100")
    assert tuple(ds.x_train.shape[1:]) == (3, 32, 32) and ds.num_classes == 100 and int(ds.y_train.max()) < 100


def test_every_step_has_a_budget_and_the_gpu_budget_fits_ten_minutes():
    assert set(gpu.BUDGET["cuda"]) == set(gpu.STEPS) == set(gpu.BUDGET["cpu"])
    assert sum(gpu.BUDGET["cuda"].values()) <= 600 - 30  # start-up and the driver's own seconds


def test_dry_paper_step_exercises_warmup_and_as_speed(tmp_path):
    p = subprocess.run([sys.executable, "-m", "softgrad.gpu", "--dry-run", "--steps", "paper", "--results",
                        str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    smoke = json.loads((tmp_path / "paper_smoke_cpu.json").read_text())
    assert smoke["warmup_exercised"] and smoke["as_speed_exercised"] and all(r["ok"] for r in smoke["rows"])
    report = json.loads((tmp_path / "gpu_cpu.json").read_text())
    assert report["dry_run"] and [s["status"] for s in report["steps"]] == ["ok"]

"""One run across processes: torchrun + DDP (gloo, CPU, 2 processes) equals one process, same global batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


ROOT = Path(__file__).resolve().parents[1]
# an odd training-set size: the last global batch splits 9/8 across the two ranks
PARAMS = """profile: ddp
base: {dataset: synthetic, synthetic_classes: 5, synthetic_dim: 8, synthetic_n_train: 521, epochs: 3,
       batch_size: 64, width: 32, threads: 1, lr: 0.1, device: cpu, seed: 3}
sweeps:
  ce: {loss: ce}
  as_speed: {loss: as_softmax, loss_params: {delta: 0.5}, as_speed: true, as_speed_kmax: 3}
"""


def _run(cmd, out: Path):
    env = {**os.environ, "SOFTGRAD_OUTPUTS": str(out), "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    return {p.name: json.loads(p.read_text()) for p in sorted((out / "ddp" / "runs").glob("*.json"))}


def test_ddp_two_processes_match_one(tmp_path):
    params = tmp_path / "p.yaml"
    params.write_text(PARAMS)
    one = _run([sys.executable, "-m", "softgrad", "run", str(params), "--quiet"], tmp_path / "one")
    two = _run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29531",
                "-m", "softgrad", "run", str(params), "--quiet"], tmp_path / "two")
    assert set(one) == set(two) and len(one) == 2
    for name in one:
        a, b = one[name]["history"], two[name]["history"]
        assert [h["opt_steps"] for h in a[1:]] == [h["opt_steps"] for h in b[1:]]
        for ha, hb in zip(a, b):
            for key in ("train_loss", "test_nll", "test_acc", "weight_dist"):
                assert hb[key] == pytest.approx(ha[key], rel=1e-4, abs=1e-5), (name, ha["epoch"], key)
            if "train_loss_running" in ha:
                assert hb["train_loss_running"] == pytest.approx(ha["train_loss_running"], rel=1e-4)

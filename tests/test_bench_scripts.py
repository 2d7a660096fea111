"""Bench scripts keep working (smoke runs; the numbers they measure live in bench/README.md)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_simclr_budget_smoke_run_then_reuses_its_work(tmp_path):
    cmd = [sys.executable, "bench/simclr_budget.py", "--work", str(tmp_path), "--epochs", "2", "--checkpoints", "1",
           "--temperatures", "0.5", "--seeds", "0", "--eval-seeds", "0", "--pool-patients", "12"]
    first = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-3000:]
    rows = [line.split() for line in first.stdout.splitlines()[1:]]  # seed 0 <run> <epoch> [(exported)] f0 f1 mean
    assert [r[:4] for r in rows] == [["seed", "0", "random_init", "0"], ["seed", "0", "simclr_t0.5_s0_e2", "1"],
                                     ["seed", "0", "simclr_t0.5_s0_e2", rows[2][3]]]
    assert rows[2][3] in {"1", "2"} and rows[2][4] == "(exported)"
    for r in rows:
        f0, f1, mean = map(float, r[-3:])
        assert 0 < f0 <= 1 and 0 < f1 <= 1 and mean == pytest.approx((f0 + f1) / 2, abs=6e-4)
    again = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and again.stdout == first.stdout  # encoders and metrics reused
    bad = subprocess.run(cmd[:2] + ["--epochs", "2", "--checkpoints", "2"], cwd=REPO, capture_output=True, text=True)
    assert bad.returncode != 0 and "--checkpoints [2] must lie in 1..1" in bad.stderr

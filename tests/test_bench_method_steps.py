"""bench/method_steps.py keeps working (a smoke run; its numbers live in bench/README.md)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_method_steps_smoke_run_prints_every_row():
    cmd = [sys.executable, "bench/method_steps.py", "--sizes", "32", "--batches", "4", "--steps", "1",
           "--warmup", "0", "--cpu-amp", "off"]
    run = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    rows = [line.strip("|").split("|") for line in run.stdout.splitlines() if line.startswith("| 32 ")]
    got = [(r[2].strip(), r[3].strip()) for r in rows]
    assert got == [("simclr", "resnet18"), ("dino", "resnet18"), ("meta_uscl", "resnet18"),
                   ("simclr", "vit_tiny_patch16_224"), ("mae", "vit_tiny_patch16_224"),
                   ("dino", "vit_tiny_patch16_224"), ("meta_uscl", "vit_tiny_patch16_224")]
    assert rows[1][4].strip() == "2x32 + 8x16" and rows[4][4].strip() == "1x32"  # DINO crops, MAE's one view
    assert all(r[6].strip().endswith("x") and float(r[6].strip()[:-1]) > 0 for r in rows)
    assert rows[0][6].strip() == rows[3][6].strip() == "1.00x"
    bad = subprocess.run(cmd[:2] + ["--sizes", "32", "64", "--batches", "4"], cwd=REPO, capture_output=True, text=True)
    assert bad.returncode != 0 and "one batch per size" in bad.stderr

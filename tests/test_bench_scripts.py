"""Bench scripts keep working (smoke runs; the numbers they measure live in bench/README.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

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


def _bench_module(name: str):
    """Import ``bench/<name>.py`` (bench/ is not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"bench_{name}", REPO / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_loader_bench_prints_and_writes_the_ratios(tmp_path):
    out = tmp_path / "loader.json"
    cmd = [sys.executable, "bench/loader.py", "--work", str(tmp_path), "--videos", "30", "--frames", "4",
           "--height", "40", "--width", "52", "--sizes", "32", "--workers", "0", "1", "--rounds", "2",
           "--batch", "4", "--threads", "1", "--json", str(out)]
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "loader/model" in r.stdout and "proposed" not in r.stdout
    result = json.loads(out.read_text())
    rows = result["rows"]
    assert [(x["method"], x["size"], x["workers"]) for x in rows] == [
        ("simclr", 32, 0), ("simclr", 32, 1), ("hico_pooled", 32, 0), ("hico_pooled", 32, 1)]
    for x in rows:
        k = {"simclr": 1, "hico_pooled": 3}[x["method"]]
        assert x["frames_per_sample"] == k and x["batch"] == 4 and len(x["model_step_s"]) == 2
        assert x["model_samples_per_s"] == pytest.approx(4 / (sum(x["model_step_s"]) / 2))  # median of 2
        assert x["model_images_per_s"] == pytest.approx(2 * x["model_samples_per_s"])
        assert len(x["loader_epoch_s"]) == 2 and x["loader_samples_per_s"] > 0
        assert x["loader_frames_per_s"] == pytest.approx(k * x["loader_samples_per_s"])
        per_epoch = x["train_videos"] // 4 * 4  # drop_last batches of 4
        assert 16 <= per_epoch <= 28  # 30 videos, ~20 % held out by patient
        assert x["loader_samples_per_s"] == pytest.approx(sum(per_epoch / s for s in x["loader_epoch_s"]) / 2)
        assert x["ratio"] == pytest.approx(x["loader_samples_per_s"] / x["model_samples_per_s"])
        assert not any(key.startswith("proposed") for key in x)
    assert result["threads"] == 1 and len(result["load_average"]) == 2


@pytest.mark.slow
def test_gpu_check_dry_run_runs_every_section_on_the_cpu(tmp_path):
    out = tmp_path / "gpu_check.json"
    r = subprocess.run([sys.executable, "bench/gpu_check.py", "--dry-run", "--json", str(out)], cwd=REPO,
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    assert "GPU CHECK FAILED" not in r.stderr and "summary (CPU (dry run" in r.stdout
    res = json.loads(out.read_text())
    assert res["dry_run"] and res["device"] == "cpu" and res["size"] == 32 and res["failed"] == []
    names = {c["check"] for c in res["checks"]}
    for expected in ("precision simclr", "precision hico_flatten", "precision hico_pooled", "fused Adam hico_pooled b4",
                     "finite loss simclr b4", "reference equality b4", "ddp loss", "ddp weights after one step",
                     "torchrun loss", "torchrun val_loss"):
        assert expected in names
    assert all(c["ok"] for c in res["checks"])
    assert [t["variant"] for t in res["throughput"]] == ["simclr", "hico_flatten", "hico_pooled"]
    for t in res["throughput"]:
        assert t["fused_adam"] and t["images_per_s"] == pytest.approx(2 * 4 / (t["ms_per_step"] / 1e3))
        assert t["peak_mb"] > 0
    ref = res["reference"][0]
    assert ref["rel_diff"] <= 1e-4 and ref["speedup"] == pytest.approx(ref["ms_reference"] / ref["ms_ours"])
    assert res["ddp"]["backend"] == "gloo" and res["ddp"]["rel_diff"] <= 1e-6 and res["ddp"]["weight_diff"] <= 1e-6
    assert res["torchrun"]["loss_rel_diff"] <= 5e-3 and set(res["torchrun"]["wall_s"]) == {"plain", "torchrun"}
    assert [(x["method"], x["workers"]) for x in res["loader"]] == [
        ("simclr", 0), ("simclr", 1), ("hico_pooled", 0), ("hico_pooled", 1)]
    assert set(res["section_s"]) == {"precision", "throughput", "against_reference", "ddp", "torchrun", "loader"}


def test_gpu_check_fails_loudly_when_a_check_fails(tmp_path):
    """Impossible tolerances: the precision and DDP checks must fail, with exit 1 and one line each."""
    out = tmp_path / "gpu_check.json"
    r = subprocess.run([sys.executable, "bench/gpu_check.py", "--dry-run", "--sections", "precision", "ddp",
                        "--bf16-rtol", "-1", "--ddp-rtol", "-1", "--json", str(out)], cwd=REPO,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 1, (r.stdout + r.stderr)[-3000:]
    failed = [line for line in r.stderr.splitlines() if line.startswith("GPU CHECK FAILED: ")]
    assert [line.split(":")[1].strip() for line in failed] == [
        "precision simclr", "precision hico_flatten", "precision hico_pooled", "ddp loss", "ddp weights after one step"]
    res = json.loads(out.read_text())
    assert len(res["failed"]) == 5 and res["throughput"] == [] and res["torchrun"] == {}


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message of a machine without CUDA")
def test_gpu_check_without_a_gpu_says_how_to_run_it(tmp_path):
    r = subprocess.run([sys.executable, "bench/gpu_check.py", "--json", str(tmp_path / "x.json")], cwd=REPO,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "no CUDA device here" in r.stderr and "--dry-run" in r.stderr
    assert not (tmp_path / "x.json").exists()

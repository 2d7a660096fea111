"""SimCLR against the random-init control on the synthetic lung-US data: budget and temperature.

Where the numbers of ``results/README.md`` ("The demo's numbers": how long SimCLR must train to
beat ``random_init``, temperature 0.2 vs 0.5, a second evaluation set) come from. It runs the
suite's own commands, as the demo workflow does (``python -m hico simulate``, ``folds``,
``pretrain``, ``evaluate --protocol linear_probe``), with the demo's settings: a pool of 240
simulated patients x 2 videos x 8 frames, 64 px, batch 16, one frame per video per step, and the
demo's probe (2 patient-grouped folds, C chosen on the inner validation split). Every encoder is
probed at its checkpoints and at the exported (best validation loss) epoch, on each evaluation
set (45 patients x 2 videos x 8 frames; seed 0 is the demo's).

    python bench/simclr_budget.py            # tau 0.2 and 0.5 x seeds 0 and 1, 40 epochs: ~15 min, 2 cores
    python bench/simclr_budget.py --epochs 2 --checkpoints 1 --temperatures 0.5 --seeds 0   # smoke, ~1 min

Prints one row per (evaluation set, encoder, epoch): the frame accuracy of each fold and their
mean. Work files (data, encoders, metrics) go to ``--work`` and are reused when present.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

DEMO_OVERRIDES = {"image_size": 64, "batch_size": 16, "num_workers": 0, "pretrained": False}


def hico(*args: str) -> None:
    """Run ``python -m hico ARGS`` on one thread; raise with its output if it fails."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-m", "hico", *args], capture_output=True, text=True, env=env)
    if r.returncode != 0:
        raise RuntimeError(f"python -m hico {' '.join(args)} failed:\n{(r.stdout + r.stderr)[-3000:]}")


def simulate(root: Path, name: str, patients: int, frames: int, seed: int, folds: bool) -> Path:
    path = root / name
    if not (path / "manifest.csv").exists():
        hico("simulate", "--out", str(root), "--name", name, "--n-patients", str(patients),
             "--videos-per-patient", "2", "--frames", str(frames), "--size", "96", "--seed", str(seed))
    if folds and not (path / "folds.csv").exists():
        hico("folds", str(path), "--k", "2", "--seed", "0", "--out", str(path / "folds.csv"))
    return path


def pretrain(pool: Path, out: Path, method: str, overrides: list[dict]) -> Path:
    if not (out / "encoder.pt").exists():
        args = ["pretrain", method, "--name", out.name, "--out", str(out), "--overrides", json.dumps(overrides)]
        if method != "random_init":
            args += ["--data", str(pool), "--device", "cpu"]
        hico(*args)
    return out


def probe(encoder: Path, data: Path, out_dir: Path, method: str) -> list[float]:
    """Frame accuracy of each fold of the demo's linear probe."""
    outs = [out_dir / f"fold{f}.json" for f in (0, 1)]
    if not all(o.exists() for o in outs):
        out_dir.mkdir(parents=True, exist_ok=True)
        hico("evaluate", "--encoder", str(encoder), "--data", str(data), "--folds", str(data / "folds.csv"),
             "--fold", "0", "1", "--protocol", "linear_probe", "--seed", "0", "--image-size", "64",
             "--max-frames", "8", "--method", method, "--device", "cpu", "--out", *map(str, outs))
    return [json.loads(o.read_text())["frame"]["accuracy"] for o in outs]


def exported_epoch(encoder: Path) -> int | str:
    import torch

    return torch.load(encoder, map_location="cpu", weights_only=True).get("meta", {}).get("epoch", "-")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", type=Path, default=Path("runs/bench_simclr_budget"))
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--checkpoints", type=int, nargs="*", default=[10, 20, 30])
    ap.add_argument("--temperatures", type=float, nargs="+", default=[0.2, 0.5])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="training seeds")
    ap.add_argument("--eval-seeds", type=int, nargs="+", default=[0, 5], help="simulator seeds of the evaluation sets")
    ap.add_argument("--pool-patients", type=int, default=240)
    ap.add_argument("--jobs", type=int, default=2, help="commands run at once (one thread each)")
    args = ap.parse_args(argv)
    if any(not 1 <= c < args.epochs for c in args.checkpoints):
        ap.error(f"--checkpoints {args.checkpoints} must lie in 1..{args.epochs - 1}")

    data = args.work / "data"
    pool = simulate(data, f"pool_p{args.pool_patients}", args.pool_patients, 8, 1, folds=False)
    eval_sets = [simulate(data, f"eval_s{s}", 45, 8, s, folds=True) for s in args.eval_seeds]

    runs = {"random_init": ("random_init", [DEMO_OVERRIDES, {"seed": 0}])}
    for tau in args.temperatures:
        for seed in args.seeds:
            runs[f"simclr_t{tau:g}_s{seed}"] = ("simclr", [
                {**DEMO_OVERRIDES, "epochs": args.epochs, "checkpoint_epochs": args.checkpoints},
                {"params": {"temperature": tau}}, {"seed": seed}])
    with ThreadPoolExecutor(args.jobs) as pool_exec:
        dirs = dict(zip(runs, pool_exec.map(
            lambda item: pretrain(pool, args.work / "encoders" / item[0], item[1][0], item[1][1]), runs.items())))

        encoders = []  # (name, epoch label, file, method)
        for name, out in dirs.items():
            method = runs[name][0]
            for c in ([] if method == "random_init" else args.checkpoints):
                encoders.append((name, str(c), out / f"encoder_epoch{c}.pt", method))
            encoders.append((name, f"{exported_epoch(out / 'encoder.pt')} (exported)", out / "encoder.pt", method))
        jobs = [(ev, enc) for ev in eval_sets for enc in encoders]
        accs = list(pool_exec.map(
            lambda job: probe(job[1][2], job[0], args.work / "eval" / job[0].name / job[1][0] / job[1][2].stem,
                              job[1][3]), jobs))

    print(f"{'evaluation set':<15} {'encoder':<18} {'epoch':<15} {'fold 0':>7} {'fold 1':>7} {'mean':>7}")
    for (ev, (name, epoch, _, _)), (a0, a1) in zip(jobs, accs):
        print(f"{ev.name:<15} {name:<18} {epoch:<15} {a0:7.3f} {a1:7.3f} {(a0 + a1) / 2:7.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

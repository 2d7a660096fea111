"""SimCLR against the random-init control on the synthetic lung-US data: budget and temperature.

Where the numbers of ``results/README.md`` ("The demo's numbers": how long SimCLR must train to
beat ``random_init``, temperature 0.2 vs 0.5, a second evaluation set) come from. It runs the
suite's own commands, as the demo workflow does (``python -m hico simulate``, ``folds``,
``pretrain``, ``evaluate --protocol linear_probe``), with the settings it reads from
``workflows/config/demo.yaml``: the pretraining pool (240 simulated patients x 2 videos x 8
frames), the harness overrides (64 px, batch 16), and the probe (2 patient-grouped folds, C chosen
on the inner validation split). Every encoder is probed at its checkpoints and at the exported
(best validation loss) epoch, on the demo's evaluation set simulated with each ``--eval-seeds``
seed (seed 0 is the demo's own).

    python bench/simclr_budget.py            # tau 0.2 and 0.5 x seeds 0 and 1, 40 epochs: ~12 min, 2 cores
    python bench/simclr_budget.py --epochs 2 --checkpoints 1 --temperatures 0.5 --seeds 0 \
        --eval-seeds 0 --pool-patients 30    # smoke, ~40 s

Prints one row per (evaluation set, encoder, epoch): the frame accuracy of each fold and their
mean. Work files (data, encoders, metrics) go to ``--work``; a step whose outputs exist there is
not run again (folder names carry the simulator parameters and the run's epochs).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

import yaml

DEMO_CONFIG = Path(__file__).resolve().parents[1] / "workflows" / "config" / "demo.yaml"


class Run(NamedTuple):
    name: str
    method: str
    overrides: list[dict]
    checkpoints: list[int]


class Encoder(NamedTuple):
    run: str
    method: str
    epoch: str  # label: a checkpoint's epoch, or the exported epoch
    path: Path


def hico(*args: str) -> None:
    """Run ``python -m hico ARGS`` on one thread; raise with its output if it fails."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-m", "hico", *args], capture_output=True, text=True, env=env)
    if r.returncode != 0:
        raise RuntimeError(f"python -m hico {' '.join(args)} failed:\n{(r.stdout + r.stderr)[-3000:]}")


def simulate(root: Path, params: dict, folds: dict | None) -> Path:
    """The demo's simulator call with ``params``; its folds too when ``folds`` ({k, seed}) is given."""
    name = "sim_" + "_".join(f"{k}{v}" for k, v in sorted(params.items()))
    path = root / name
    if not (path / "manifest.csv").exists():
        hico("simulate", "--out", str(root), "--name", name,
             *[a for k, v in params.items() for a in (f"--{k.replace('_', '-')}", str(v))])
    if folds and not (path / "folds.csv").exists():
        hico("folds", str(path), "--k", str(folds["k"]), "--seed", str(folds["seed"]), "--out", str(path / "folds.csv"))
    return path


def pretrain(pool: Path, out: Path, run: Run) -> Path:
    expected = [out / "encoder.pt"] + [out / f"encoder_epoch{c}.pt" for c in run.checkpoints]
    if not all(f.exists() for f in expected):
        args = ["pretrain", run.method, "--name", run.name, "--out", str(out), "--overrides", json.dumps(run.overrides)]
        if run.method != "random_init":
            args += ["--data", str(pool), "--device", "cpu"]
        hico(*args)
    missing = [f.name for f in expected if not f.exists()]
    if missing:
        raise RuntimeError(f"{out}: pretraining finished without {missing}, probably an earlier run with other "
                           f"--checkpoints in the same folder; delete {out} or pick another --work")
    return out


def probe(enc: Encoder, data: Path, out_dir: Path, evaluation: dict) -> list[float]:
    """Frame accuracy of each fold of the demo's linear probe."""
    outs = [out_dir / f"fold{f}.json" for f in range(evaluation["folds"])]
    if not all(o.exists() for o in outs):
        out_dir.mkdir(parents=True, exist_ok=True)
        hico("evaluate", "--encoder", str(enc.path), "--data", str(data), "--folds", str(data / "folds.csv"),
             "--fold", *map(str, range(evaluation["folds"])), "--protocol", "linear_probe", "--seed", "0",
             "--image-size", str(evaluation["image_size"]), "--max-frames", str(evaluation["max_frames"]),
             "--method", enc.method, "--device", "cpu", "--out", *map(str, outs))
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
    ap.add_argument("--pool-patients", type=int, default=None, help="default: the demo's pretraining pool")
    ap.add_argument("--jobs", type=int, default=2, help="commands run at once (one thread each)")
    args = ap.parse_args(argv)
    if any(not 1 <= c < args.epochs for c in args.checkpoints):
        ap.error(f"--checkpoints {args.checkpoints} must lie in 1..{args.epochs - 1}")

    demo = yaml.safe_load(DEMO_CONFIG.read_text())
    evaluation = demo["evaluation"]
    evaluated = next(d for d in demo["datasets"].values() if d.get("evaluate"))
    pool_params = dict(demo["datasets"][evaluated["pool"]]["params"])
    if args.pool_patients:
        pool_params["n_patients"] = args.pool_patients
    harness = {k: v for k, v in demo["pretrain"]["overrides"].items() if k != "epochs"}

    data = args.work / "data"
    pool = simulate(data, pool_params, None)
    folds = {"k": evaluation["folds"], "seed": evaluation.get("fold_seed", 0)}
    eval_sets = {s: simulate(data, {**evaluated["params"], "seed": s}, folds) for s in args.eval_seeds}

    runs = [Run("random_init", "random_init", [harness, {"seed": 0}], [])]
    for tau in args.temperatures:
        for seed in args.seeds:
            runs.append(Run(f"simclr_t{tau:g}_s{seed}_e{args.epochs}", "simclr", [
                {**harness, "epochs": args.epochs, "checkpoint_epochs": args.checkpoints},
                {"params": {"temperature": tau}}, {"seed": seed}], args.checkpoints))
    with ThreadPoolExecutor(args.jobs) as workers:
        dirs = list(workers.map(lambda run: pretrain(pool, args.work / "encoders" / run.name, run), runs))
        encoders = []
        for run, out in zip(runs, dirs):
            encoders += [Encoder(run.name, run.method, str(c), out / f"encoder_epoch{c}.pt") for c in run.checkpoints]
            encoders.append(Encoder(run.name, run.method, f"{exported_epoch(out / 'encoder.pt')} (exported)",
                                    out / "encoder.pt"))
        jobs = [(seed, enc) for seed in eval_sets for enc in encoders]
        accs = list(workers.map(lambda job: probe(
            job[1], eval_sets[job[0]], args.work / "eval" / eval_sets[job[0]].name / job[1].run / job[1].path.stem,
            evaluation), jobs))

    folds_header = "".join(f"{f'fold {f}':>7} " for f in range(evaluation["folds"]))
    print(f"{'evaluation set':<15} {'encoder':<22} {'epoch':<15} {folds_header}{'mean':>7}")
    for (seed, enc), acc in zip(jobs, accs):
        cells = "".join(f"{a:7.3f} " for a in acc)
        print(f"{'seed ' + str(seed):<15} {enc.run:<22} {enc.epoch:<15} {cells}{sum(acc) / len(acc):7.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Frozen-protocol evaluation jobs with and without the feature cache, side by side.

The demo's frozen-feature jobs of one encoder (linear probe on all, 10 % and 50 % of the training
videos, k-NN, AdaBN linear probe), run as the workflow runs them, one ``python -m hico`` process
per job, on the demo's evaluation set (its simulator parameters, image size, frames and folds
read from ``workflows/config/demo.yaml``):

- ``computed``: every job decodes the frames and runs the encoder itself (before the cache);
- ``cached``: one ``hico features`` job per BN mode (frozen, AdaBN), then every job reads its file.

Prints the median wall time of each job over ``--repeats`` and the totals, and checks that both
ways write the same metrics (minus provenance). ``--code DIR`` runs the jobs with another
checkout; ``--baseline DIR`` adds the jobs of an older checkout (``computed``, it has no cache),
interleaved with the others. Metrics are compared minus provenance and, against a baseline,
minus the keys it does not write.

    python bench/feature_cache.py --work /tmp/fc            # ~5 min on 2 busy cores
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
JOBS = {  # name: (protocol, --args); the demo's frozen protocols and label fractions
    "linear_probe": ("linear_probe", {}),
    "linear_probe frac10": ("linear_probe", {"train_fraction": 0.1}),
    "linear_probe frac50": ("linear_probe", {"train_fraction": 0.5}),
    "knn": ("knn", {"k": 20}),
    "linear_probe_adabn": ("linear_probe_adabn", {}),
}


def hico(code: Path, *args: str) -> float:
    env = {**os.environ, "PYTHONPATH": str(code), "OMP_NUM_THREADS": "1"}
    start = time.perf_counter()
    # cwd: `python -m` puts the working folder first on sys.path, before PYTHONPATH
    r = subprocess.run([sys.executable, "-m", "hico", *args], env=env, cwd=code, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"hico {' '.join(args[:1])} failed:\n{r.stderr[-2000:]}")
    return time.perf_counter() - start


def prepare(work: Path) -> dict:
    demo = yaml.safe_load((REPO / "workflows/config/demo.yaml").read_text())
    name, spec = next((n, s) for n, s in demo["datasets"].items() if s.get("evaluate"))
    ev = demo["evaluation"]
    data = work / name
    if not (data / "folds.csv").exists():
        flags = [f"--{k.replace('_', '-')}={v}" for k, v in spec["params"].items()]
        hico(REPO, "simulate", "--out", str(work), "--name", name, *flags)
        hico(REPO, "folds", str(data), "--k", str(ev["folds"]), "--seed", str(ev.get("fold_seed", 0)))
    encoder = work / "random_init" / "encoder.pt"
    if not encoder.exists():
        hico(REPO, "pretrain", "random_init", "--out", str(encoder.parent))
    return {"data": data, "encoder": encoder, "folds": ev["folds"], "image_size": ev["image_size"],
            "max_frames": ev.get("max_frames", 30)}


def evaluate(code: Path, case: dict, job: str, out: Path, features: Path | None) -> float:
    protocol, args = JOBS[job]
    folds = [str(f) for f in range(case["folds"])]
    cmd = ["evaluate", "--encoder", str(case["encoder"]), "--data", str(case["data"]),
           "--folds", str(case["data"] / "folds.csv"), "--fold", *folds, "--protocol", protocol,
           "--image-size", str(case["image_size"]), "--max-frames", str(case["max_frames"]),
           "--args", json.dumps(args), "--device", "cpu",
           "--out", *(str(out / job.replace(" ", "_") / f"fold{f}.json") for f in folds)]
    return hico(code, *cmd, *(["--features", str(features)] if features else []))


def features(code: Path, case: dict, out: Path, bn: str) -> float:
    cmd = ["features", "--encoder", str(case["encoder"]), "--data", str(case["data"]), "--image-size",
           str(case["image_size"]), "--max-frames", str(case["max_frames"]), "--bn", bn, "--device", "cpu",
           "--out", str(out)]
    if bn == "adabn":
        cmd += ["--folds", str(case["data"] / "folds.csv")]
    if out.exists():
        out.unlink()
    return hico(code, *cmd)


def run_once(code: Path, case: dict, work: Path, mode: str, label: str) -> dict[str, float]:
    out = work / label
    times = {}
    files = {}
    if mode == "cached":
        for bn in ("frozen", "adabn"):
            files[bn] = work / f"features_{bn}.npz"
            times[f"features {bn}"] = features(code, case, files[bn], bn)
    for job, (protocol, _) in JOBS.items():
        bn = "adabn" if protocol.endswith("_adabn") else "frozen"
        times[job] = evaluate(code, case, job, out, files.get(bn))
    return times


def same_metrics(a: Path, b: Path) -> bool:
    def load(p):
        m = json.loads(p.read_text())
        m.pop("provenance")
        return m

    files = sorted(p.relative_to(a) for p in a.rglob("*.json"))
    pairs = [(load(a / f), load(b / f)) for f in files]
    return bool(files) and all({k: v for k, v in y.items() if k in x and k != "schema_version"}
                               == {k: v for k, v in x.items() if k != "schema_version"} for x, y in pairs)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work", required=True, type=Path)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--code", type=Path, default=REPO, help="checkout whose hico runs the jobs")
    p.add_argument("--modes", nargs="+", default=["computed", "cached"], choices=["computed", "cached"])
    p.add_argument("--baseline", type=Path, help="also run `computed` with this (older) checkout, interleaved")
    a = p.parse_args(argv)
    a.work = a.work.resolve()
    a.work.mkdir(parents=True, exist_ok=True)
    case = prepare(a.work)
    modes = {m: (a.code.resolve(), m) for m in a.modes}
    if a.baseline:
        modes["baseline"] = (a.baseline.resolve(), "computed")
    runs: dict[str, list[dict[str, float]]] = {m: [] for m in modes}
    for _ in range(a.repeats):  # interleaved, so a busy spell hits every mode
        for label, (code, mode) in modes.items():
            runs[label].append(run_once(code, case, a.work, mode, label))
    print(f"{case['data'].name}: image {case['image_size']} px, {case['max_frames']} frames/video, "
          f"{case['folds']} folds; median of {a.repeats} (s), one process per job, 1 thread")
    totals = {}
    for label, rows in runs.items():
        medians = {j: statistics.median(r[j] for r in rows) for j in rows[0]}
        totals[label] = sum(medians.values())
        print(f"{label:9s} " + "  ".join(f"{j}: {t:.2f}" for j, t in medians.items()) + f"  | total {totals[label]:.2f}")
    for label in ("computed", "baseline"):
        if label in totals and "cached" in totals:
            print(f"{label} / cached total: {totals[label] / totals['cached']:.2f}x; metrics identical: "
                  f"{same_metrics(a.work / label, a.work / 'cached')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

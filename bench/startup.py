"""Start-up cost of each ``python -m hico <command>``: import time and the heavy packages loaded.

Each command runs in a fresh process under ``python -X importtime``, ``--help`` and (where it is
cheap) a real small invocation on a tiny simulated dataset. Reported per command: the import
time (the sum of the cumulative times of the top-level imports, i.e. everything imported, in
ms; median of ``--repeats``), the process's wall time, and which of torch, timm, sklearn,
matplotlib were imported. ``--code DIR`` measures another checkout (before/after a change);
a command that checkout does not have reads ``n/a``. ``--baseline DIR`` measures a second
checkout interleaved with the first, command by command.

    python bench/startup.py --work /tmp/startup [--code /path/to/other/checkout]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "timm", "sklearn", "matplotlib")
_LINE = re.compile(r"import time:\s+\d+ \|\s+(\d+) \|( +)(\S+)")


def _remove_outputs(args: list[str]) -> None:
    """Delete what a call writes, so that every repeat does the whole work (a features or
    pretrain call that finds its output would return before importing the model code)."""
    for flag, value in zip(args, args[1:]):
        if flag in ("--out", "--out-dir"):
            target = Path(value)
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()


def measure(code: Path, args: list[str]) -> dict | None:
    env = {**os.environ, "PYTHONPATH": str(code), "OMP_NUM_THREADS": "1"}
    _remove_outputs(args)
    start = time.perf_counter()
    # cwd: `python -m` puts the working folder first on sys.path, before PYTHONPATH
    r = subprocess.run([sys.executable, "-X", "importtime", "-m", "hico", *args], env=env, cwd=code,
                       capture_output=True, text=True)
    wall = time.perf_counter() - start
    if r.returncode != 0:
        return None
    top_us, loaded = 0, set()
    for line in r.stderr.splitlines():
        m = _LINE.match(line)
        if m:
            loaded.add(m.group(3))
            if len(m.group(2)) == 1:
                top_us += int(m.group(1))
    return {"import_ms": top_us / 1000, "wall_s": wall, "heavy": [h for h in HEAVY if h in loaded]}


def prepare(work: Path) -> dict[str, Path]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}

    def hico(*args: str) -> None:
        subprocess.run([sys.executable, "-m", "hico", *args], env=env, cwd=REPO, check=True, capture_output=True)

    data, enc, feats = work / "tiny", work / "random_init" / "encoder.pt", work / "frozen.npz"
    if not (data / "folds.csv").exists():
        hico("simulate", "--out", str(work), "--name", "tiny", "--n-patients", "9", "--frames", "3", "--size", "48")
        hico("folds", str(data), "--k", "3")
    if not enc.exists():
        hico("pretrain", "random_init", "--out", str(enc.parent))
    if not feats.exists():
        hico("features", "--encoder", str(enc), "--data", str(data), "--image-size", "32", "--max-frames", "2",
             "--device", "cpu", "--out", str(feats))
    metrics = work / "metrics"
    if not metrics.exists():
        hico("evaluate", "--encoder", str(enc), "--data", str(data), "--folds", str(data / "folds.csv"), "--fold",
             "0", "--protocol", "knn", "--image-size", "32", "--max-frames", "2", "--features", str(feats),
             "--args", '{"k": 3}', "--out", str(metrics / "tiny/knn/random_init/seed0/fold0/full/metrics.json"))
    return {"data": data, "encoder": enc, "features": feats, "metrics": metrics}


def invocations(p: dict[str, Path], work: Path) -> dict[str, list[str]]:
    data, enc, feats = str(p["data"]), str(p["encoder"]), str(p["features"])
    out = str(work / "out")
    evaluate = ["evaluate", "--encoder", enc, "--data", data, "--folds", f"{data}/folds.csv", "--fold", "0",
                "--protocol", "knn", "--image-size", "32", "--max-frames", "2", "--args", '{"k": 3}',
                "--out", f"{out}/m.json"]
    calls = {f"{c} --help": [c, "--help"] for c in ("simulate", "download", "prepare", "folds", "check-overlap",
                                                     "pretrain", "features", "evaluate", "aggregate", "plot")}
    calls.update({
        "folds (real)": ["folds", data, "--k", "3", "--out", f"{out}/folds.csv"],
        "methods (real)": ["methods"],
        "aggregate (real)": ["aggregate", "--metrics-dir", str(p["metrics"]), "--out-dir", f"{out}/tables"],
        "plot tsne (real, features)": ["plot", "--figures", "tsne", "--out-dir", f"{out}/fig", "--data", data,
                                       "--encoders", f"a={feats}"],
        "plot tsne (real, encoder)": ["plot", "--figures", "tsne", "--out-dir", f"{out}/fig", "--data", data,
                                      "--encoders", f"a={enc}", "--image-size", "32", "--max-frames", "2"],
        "features (real)": ["features", "--encoder", enc, "--data", data, "--image-size", "32", "--max-frames", "2",
                            "--device", "cpu", "--out", f"{out}/features.npz"],
        "pretrain simclr (real, 1 epoch)": ["pretrain", "simclr", "--data", data, "--out", f"{out}/simclr",
                                            "--set", "image_size=32", "--set", "batch_size=4", "--set", "epochs=1",
                                            "--set", "num_workers=0", "--set", "pretrained=false", "--device", "cpu"],
        "evaluate knn (real, features)": [*evaluate, "--features", feats],
        "evaluate knn (real, computed)": evaluate,
    })
    return calls


def _summary(runs: list[dict | None]) -> tuple[float, float, str] | None:
    if any(r is None for r in runs):
        return None
    return (statistics.median(r["import_ms"] for r in runs), statistics.median(r["wall_s"] for r in runs),
            ",".join(runs[0]["heavy"]) or "-")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", required=True, type=Path)
    ap.add_argument("--code", type=Path, default=REPO)
    ap.add_argument("--baseline", type=Path, help="an older checkout, measured interleaved with --code")
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args(argv)
    a.work = a.work.resolve()
    a.work.mkdir(parents=True, exist_ok=True)
    calls = invocations(prepare(a.work), a.work)
    codes = {"code": a.code.resolve(), **({"baseline": a.baseline.resolve()} if a.baseline else {})}
    print(f"median of {a.repeats}; " + "; ".join(f"{k}: {v}" for k, v in codes.items()))
    print(f"{'command':32s} " + " | ".join(f"{k + ' import ms':>20s} {'wall s':>6s} {'heavy':22s}" for k in codes))
    for name, args in calls.items():
        runs: dict[str, list] = {k: [] for k in codes}
        for _ in range(a.repeats):  # interleaved: a busy spell hits both checkouts
            for k, code in codes.items():
                runs[k].append(measure(code, args))
        cells = []
        for k in codes:
            got = _summary(runs[k])
            cells.append(f"{'n/a':>20s} {'':>6s} {'':22s}" if got is None else f"{got[0]:20.0f} {got[1]:6.2f} {got[2]:22s}")
        print(f"{name:32s} " + " | ".join(cells))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

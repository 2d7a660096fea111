"""Pretraining cost per method x pretraining data: parameters, step time, throughput, peak
memory and wall time from each run folder's ``train_log.csv``, ``config.json``, ``encoder.pt``
and ``last.pt``, and the Snakemake ``benchmark:`` TSV of the job when there is one."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hico import layout
from hico.report import AggregateError
from hico.report.columns import conform

_BENCH_COLUMNS = ("bench_wall_s", "bench_max_rss_mb", "bench_cpu_time_s")


def _param_count(state: dict[str, Any]) -> int:
    skip = ("running_mean", "running_var", "num_batches_tracked")
    return int(sum(v.numel() for k, v in state.items() if hasattr(v, "numel") and not k.endswith(skip)))


def _state_params(path: Path, key: str | None) -> int | None:
    import torch

    if not path.exists():
        return None
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # an unreadable checkpoint leaves the column blank, it does not stop the report
        return None
    state = blob.get(key) if key else blob
    if key == "model" and state is None:
        return None
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    return _param_count(state) if isinstance(state, dict) else None


def read_benchmark(path: Path) -> dict[str, float] | None:
    """A Snakemake ``benchmark:`` TSV (columns s, h:m:s, max_rss, ..., cpu_time); mean over repeats."""
    try:
        b = pd.read_csv(path, sep="\t")
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError):
        return None
    if "s" not in b.columns or "max_rss" not in b.columns:
        return None
    num = b.apply(pd.to_numeric, errors="coerce")
    return {"bench_wall_s": num["s"].mean(), "bench_max_rss_mb": num["max_rss"].max(),
            "bench_cpu_time_s": num["cpu_time"].mean() if "cpu_time" in num else np.nan}


def _train_log_summary(path: Path) -> dict[str, float]:
    """Epochs, steps, seconds per step, images/s, peak memory and wall time of a train_log.csv
    (rows with epoch > 0; a control's single epoch-0 row gives blanks)."""
    t = pd.read_csv(path)
    col = {c: pd.to_numeric(t[c], errors="coerce") for c in t.columns}
    empty = pd.Series(dtype=float)
    keep = col.get("epoch", empty) > 0
    get = {c: v[keep] for c, v in col.items()} if len(keep) else {}
    epoch_time, steps = get.get("epoch_time_s", empty), get.get("step", empty)
    total_steps = steps.max() if len(steps.dropna()) else np.nan
    wall = epoch_time.sum() if len(epoch_time.dropna()) else np.nan
    return {"epochs": get.get("epoch", empty).max() if len(get.get("epoch", empty)) else 0, "steps": total_steps,
            "step_time_s": wall / total_steps if total_steps and total_steps > 0 else np.nan,
            "images_per_s": get.get("images_per_s", empty).mean(), "peak_mem_mb": get.get("peak_mem_mb", empty).max(),
            "wall_time_s": wall}


def _benchmarks(bench_dirs: Iterable[str | Path]) -> dict[Path, dict[str, float]]:
    """Every readable benchmark TSV, by its path without ``.tsv`` relative to its folder."""
    benches: dict[Path, dict[str, float]] = {}
    for root in bench_dirs or ():
        root = Path(root)
        for tsv in sorted(root.rglob("*.tsv")) if root.is_dir() else []:
            b = read_benchmark(tsv)
            if b is not None:
                benches[tsv.relative_to(root).with_suffix("")] = b
    return benches


#: what every run folder's config.json says about the run (contract 1, written by hico.train)
RUN_IDENTITY = ("run_name", "seed", "datasets")


def read_run_config(run: Path) -> dict[str, Any]:
    """A run folder's config.json; an error naming it when it is missing, unreadable or lacks
    :data:`RUN_IDENTITY`."""
    path = run / layout.RUN_CONFIG
    try:
        cfg = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise AggregateError(f"{path}: cannot read the run's config.json ({e}); every run folder under "
                             "--compute-dir needs the one `python -m hico pretrain` writes") from e
    missing = [k for k in RUN_IDENTITY if k not in cfg] if isinstance(cfg, dict) else list(RUN_IDENTITY)
    if missing:
        raise AggregateError(f"{path}: config.json lacks {missing}; it was written by an older "
                             "`python -m hico pretrain`: re-run that pretraining job")
    return cfg


def pretrain_data(datasets: list[str]) -> str:
    """The pretraining pool as the tables name it: dataset folder names ``;``-joined, ``none``
    for a control (as ``pretrain_data`` of records.csv and transfer.csv)."""
    return ";".join(Path(d).name for d in datasets) or "none"


def _run_row(root: Path, log: Path, benches: dict[Path, dict[str, float]]) -> tuple[tuple, dict[str, Any]]:
    """((run name, pretraining data, seed), the cost row) of the run folder holding ``log``."""
    run = log.parent
    cfg = read_run_config(run)
    conf = cfg.get("config", {}) if isinstance(cfg.get("config"), dict) else {}
    method, pool = str(cfg["run_name"]), pretrain_data(cfg["datasets"])
    rel = run.relative_to(root)
    row = {"method": method, "pretrain_data": pool,
           "encoder_params": _state_params(run / layout.ENCODER, "state_dict"),
           "pretrain_state_params": _state_params(run / layout.RESUME_STATE, "model"),
           "batch_size": conf.get("batch_size"), "image_size": conf.get("image_size"),
           **_train_log_summary(log), "device": cfg.get("device", ""), "source": str(run)}
    for bench_rel, b in benches.items():
        if bench_rel == rel:
            row.update(b)
    if cfg.get("warm_start"):  # the benchmark measured the job process waiting on its forked child
        row.update({"bench_max_rss_mb": np.nan, "bench_cpu_time_s": np.nan})
    return (method, pool, int(cfg["seed"])), row


def _per_method(df: pd.DataFrame) -> pd.DataFrame:
    """Runs (seeds) of one method x pretraining data -> one row."""
    rows = []
    for (method, pool), g in df.groupby(["method", "pretrain_data"], sort=True):
        r = {"method": method, "pretrain_data": pool, "n_runs": len(g), "sources": ";".join(g["source"]),
             "device": ";".join(sorted({str(d) for d in g["device"] if d})), "peak_mem_mb": g["peak_mem_mb"].max(),
             "bench_max_rss_mb": g["bench_max_rss_mb"].max()}
        for c in ("encoder_params", "pretrain_state_params", "epochs", "steps", "batch_size", "image_size"):
            vals = pd.to_numeric(g[c], errors="coerce").dropna()
            r[c] = vals.iloc[0] if len(vals) else None
        for c in ("step_time_s", "images_per_s", "wall_time_s", "bench_wall_s", "bench_cpu_time_s"):
            r[c] = pd.to_numeric(g[c], errors="coerce").mean()
        rows.append(r)
    return pd.DataFrame(rows)


def compute_cost(compute_dirs: Iterable[str | Path], bench_dirs: Iterable[str | Path] = ()) -> pd.DataFrame:
    """Per (method, pretraining data): the cost of every run folder under ``compute_dirs``.

    A benchmark TSV matches the run whose folder path (relative to its --compute-dir) equals the
    TSV's path without ``.tsv`` (relative to its --bench-dir), the layout of the workflow
    (``runs/pretrain/<pool>/<method>/seed<k>/`` and ``benchmarks/pretrain/<pool>/<method>/seed<k>.tsv``).
    """
    benches = _benchmarks(bench_dirs)
    runs: dict[tuple, dict[str, Any]] = {}
    for root in compute_dirs or ():
        root = Path(root)
        if not root.is_dir():
            raise AggregateError(f"--compute-dir {root} is not a folder")
        for log in sorted(root.rglob(layout.TRAIN_LOG)):
            identity, row = _run_row(root, log, benches)
            runs[identity] = row
    if not runs:
        return conform(pd.DataFrame(), "compute_cost")
    df = pd.DataFrame(list(runs.values()))
    for c in _BENCH_COLUMNS:
        if c not in df:
            df[c] = np.nan
    return conform(_per_method(df), "compute_cost")

"""``python -m hico aggregate``: every ``metrics.json`` -> the tables of ``results/tables``
(defined in results/README.md).

``python -m hico aggregate --metrics-dir runs/eval --out-dir results/tables
[--metrics FILE ...] [--paper hico/reference/paper.csv] [--compute-dir runs/pretrain]
[--bench-dir runs/benchmarks/pretrain] [--reference hico] [--ssl-reference hico_ssl] [--alpha 0.05]
[--bootstrap 2000] [--bootstrap-seed 0]``

The jobs live in their own modules (:mod:`hico.report`); this one puts them together.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from hico import layout
from hico.io import atomic_write_json, atomic_write_text
from hico.report import AggregateError, bootstrap, stats, tables
from hico.report.claims import claims
from hico.report.columns import conform
from hico.report.compute_cost import compute_cost
from hico.report.paper import PAPER_CSV, load_paper
from hico.report.records import find_metrics, load_records, read_metrics_list

log = logging.getLogger(__name__)


def build_tables(records: pd.DataFrame, paper: pd.DataFrame | None = None, reference: str = "hico",
                 compute_dirs: Iterable[str | Path] = (), bench_dirs: Iterable[str | Path] = (),
                 alpha: float = stats.ALPHA, ssl_reference: str | None = "",
                 n_resamples: int = bootstrap.N_RESAMPLES,
                 bootstrap_seed: int = 0) -> tuple[dict[str, pd.DataFrame], list[dict[str, Any]]]:
    """Every table of :data:`hico.layout.TABLES` (by name) and the confusion-matrix entries."""
    paper = paper if paper is not None else load_paper(None)
    built = {
        "main_comparison": lambda: tables.main_comparison(records, paper, reference, n_resamples, bootstrap_seed),
        "ablation": lambda: tables.ablation(records, reference),
        "transfer": lambda: tables.transfer(records),
        "label_efficiency": lambda: tables.label_efficiency(records),
        "convergence": lambda: tables.convergence(records),
        "per_class": lambda: tables.per_class(records),
        "compute_cost": lambda: compute_cost(compute_dirs, bench_dirs),
        "claims": lambda: claims(records, reference, alpha, ssl_reference),
        "paper_comparison": lambda: tables.paper_comparison(records, paper),
        "records": lambda: conform(records, "records"),
    }
    return {name: built[name]() for name in layout.TABLES}, tables.confusion_entries(records)


def write_tables(built: dict[str, pd.DataFrame], cms: list[dict[str, Any]], out_dir: str | Path) -> list[Path]:
    out_dir = Path(out_dir)
    written = []
    for name, df in built.items():
        path = out_dir / f"{name}.csv"
        atomic_write_text(path, df.to_csv(index=False, float_format="%.6g", lineterminator="\n"))
        written.append(path)
    path = out_dir / layout.CONFUSION_MATRICES
    atomic_write_json(path, cms)
    written.append(path)
    return written


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hico aggregate", description="metrics.json files -> results/tables/*.csv")
    p.add_argument("--metrics-dir", nargs="+", action="extend", default=[],
                   help="folders searched recursively for metrics.json")
    p.add_argument("--metrics", nargs="+", action="extend", default=[], help="metrics.json files")
    p.add_argument("--metrics-list", help="a text file of metrics.json paths, one per line (the workflow's: "
                                          "only the evaluations of the current config)")
    p.add_argument("--out-dir", required=True, help="where the tables go (e.g. results/tables)")
    p.add_argument("--paper", default=str(PAPER_CSV), help="published numbers; '' to leave them out")
    p.add_argument("--compute-dir", nargs="+", action="extend", default=[],
                   help="pretraining run folders (train_log.csv, config.json, encoder.pt, last.pt); benchmark TSVs "
                        "inside them are read too")
    p.add_argument("--bench-dir", nargs="+", action="extend", default=[], help="Snakemake benchmark TSV folders")
    p.add_argument("--reference", default="hico", help="method the others are tested against (default hico)")
    p.add_argument("--ssl-reference", default="",
                   help="pure-SSL variant of the reference, also tested in claims.csv (default <reference>_ssl)")
    p.add_argument("--alpha", type=float, default=stats.ALPHA, help="significance level of the claims rule")
    p.add_argument("--bootstrap", type=int, default=bootstrap.N_RESAMPLES,
                   help="patient-bootstrap resamples of the main table's intervals")
    p.add_argument("--bootstrap-seed", type=int, default=0, help="seed of the bootstrap")
    return p


def main(argv: list[str] | None = None) -> int:
    a = _parser().parse_args(argv)
    paths = find_metrics(a.metrics_dir, a.metrics + (read_metrics_list(a.metrics_list) if a.metrics_list else []))
    if not paths:
        raise AggregateError(
            f"no metrics.json found (--metrics-dir {a.metrics_dir}, --metrics {a.metrics}); "
            "run `python -m hico evaluate` first or point --metrics-dir at its outputs")
    records = load_records(paths)
    if a.bootstrap < 1:
        raise AggregateError(f"--bootstrap {a.bootstrap}: give at least 1 resample (2000 for the tables)")
    built, cms = build_tables(records, load_paper(a.paper), a.reference, a.compute_dir,
                              list(a.bench_dir) + list(a.compute_dir), a.alpha, a.ssl_reference,
                              a.bootstrap, a.bootstrap_seed)
    written = write_tables(built, cms, a.out_dir)
    log.info(f"[aggregate] {len(paths)} metrics.json -> {len(records)} records -> {len(written)} files in {a.out_dir}")
    for name in ("main_comparison", "claims"):
        log.info(f"[aggregate] {name}: {len(built[name])} rows")
    return 0

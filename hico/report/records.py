"""``metrics.json`` files -> records: one row per file x selection x level.

A *selection* is ``selected`` (epoch / C chosen on the validation split), ``paper_protocol``
(fine-tuning: the best test-fold epoch, optimistic) or ``last``; a *level* is ``frame`` or
``video``. ``records.csv`` lists every record with its source file, so every number in every
table can be traced back.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hico.report import AggregateError
from hico.report.columns import LEVELS, METRICS, SCHEMAS, SELECTIONS

#: the metrics.json schemas written by ``python -m hico evaluate`` that the report reads
SCHEMA_VERSIONS = (2, 3)
#: keys every such file carries (encoder_epoch and pretrain_datasets may be null)
_REQUIRED = ("method", "dataset", "protocol", "protocol_id", "fold", "seed", "train_fraction", "encoder_epoch",
             "encoder_kind", "pretrain_datasets", "classes", "n_videos", "frame", "video")
#: columns of a record that are not written to records.csv: the confusion matrix as an array,
#: the per-class dict and the class list (for the pooled statistics), the videos of the fold
#: (training, test, and fitted on = training + validation: the paired test's size ratio) and
#: the per-video test outcomes (schema 3, ``selected`` records only: the bootstrap intervals)
PRIVATE = ["_cm", "_per_class", "_classes", "n_train_videos", "n_test_videos", "n_fit_videos", "_test_videos"]


def read_metrics_list(path: str | Path) -> list[Path]:
    """The metrics.json paths of a list file (one per line; the workflow's ``metrics_list``
    rule writes the files of the current config, so old runs left in the folder stay out)."""
    path = Path(path)
    if not path.is_file():
        raise AggregateError(f"--metrics-list {path} does not exist")
    return [Path(line.strip()) for line in path.read_text().splitlines() if line.strip()]


def find_metrics(dirs: Iterable[str | Path] = (), files: Iterable[str | Path] = ()) -> list[Path]:
    """Every metrics.json under ``dirs`` plus ``files``, resolved, and relative to the working
    directory when inside it: the tables then name ``runs/...`` files, the same in every clone,
    rather than this machine's absolute path."""
    here = Path.cwd().resolve()

    def from_here(path: Path) -> Path:
        path = path.resolve()
        return path.relative_to(here) if path.is_relative_to(here) else path

    found: set[Path] = set()
    for d in dirs or ():
        d = Path(d)
        if not d.is_dir():
            raise AggregateError(f"--metrics-dir {d} is not a folder")
        found.update(from_here(p) for p in d.rglob("metrics.json"))
    for f in files or ():
        f = Path(f)
        if not f.is_file():
            raise AggregateError(f"--metrics {f} does not exist")
        found.add(from_here(f))
    return sorted(found)


def _float(v: Any) -> float:
    try:
        return float(v) if v is not None else float("nan")
    except (TypeError, ValueError):
        return float("nan")


def read_metrics(path: Path) -> dict[str, Any]:
    try:
        m = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise AggregateError(f"{path}: unreadable metrics.json ({e}); re-run its evaluate job") from e
    if not isinstance(m, dict) or "schema_version" not in m:
        raise AggregateError(f"{path}: metrics.json lacks schema_version (expected one of {list(SCHEMA_VERSIONS)}); "
                             "it was not written by `python -m hico evaluate` or is older than schema 2: "
                             "re-run its evaluate job")
    if m["schema_version"] not in SCHEMA_VERSIONS:
        raise AggregateError(f"{path}: metrics.json schema_version {m['schema_version']!r} is not one of "
                             f"{list(SCHEMA_VERSIONS)}; re-run its evaluate job with this version of the suite")
    missing = [k for k in _REQUIRED if k not in m]
    if missing:
        raise AggregateError(f"{path}: metrics.json (schema_version {m['schema_version']}) lacks {missing}; "
                             "it was not written by `python -m hico evaluate`: re-run its evaluate job")
    return m


def _file_facts(m: dict[str, Any], path: Path) -> dict[str, Any]:
    """What one metrics.json says about every one of its records."""
    return {
        "method": str(m["method"]), "dataset": str(m["dataset"]), "protocol": str(m["protocol_id"]),
        "fold": int(m["fold"]), "seed": int(m["seed"]), "train_fraction": _float(m["train_fraction"]),
        "encoder_epoch": m["encoder_epoch"], "encoder_kind": str(m["encoder_kind"]),
        "pretrain_data": ("unknown" if m["pretrain_datasets"] is None else ";".join(m["pretrain_datasets"]) or "none"),
        "classes": json.dumps(m["classes"]),
        "git_sha": (m.get("provenance") or {}).get("git_sha", ""),
        "source": str(path),
        "pretrain_labelled_fraction": _float(m.get("pretrain_labelled_fraction")),  # schema 3
        "n_train_videos": m["n_videos"].get("train"),
        "n_test_videos": _float(m["n_videos"].get("test")),
        "n_fit_videos": _float(m["n_videos"].get("train", 0)) + _float(m["n_videos"].get("val", 0)),
    }


def _test_videos(m: dict[str, Any], path: Path) -> dict[str, list] | None:
    """metrics.json's ``test_videos`` (schema 3: one entry per test video of the selected
    predictions), checked for equal-length lists; None when absent (schema 2)."""
    tv = m.get("test_videos")
    if tv is None:
        return None
    cols = ("video_id", "patient_id", "label", "n_frames", "frame_correct", "video_pred")
    if not isinstance(tv, dict) or any(c not in tv for c in cols) or len({len(tv[c]) for c in cols}) != 1:
        raise AggregateError(f"{path}: test_videos must hold equal-length lists {list(cols)}; "
                             "re-run its evaluate job")
    return {c: list(tv[c]) for c in cols}


def _selection_blocks(m: dict[str, Any]):
    """(selection, block, chosen epoch, optimistic) for each selection the file holds."""
    for selection in SELECTIONS:
        block = m if selection == "selected" else m.get(selection)
        if not block:
            continue
        if selection == "selected":
            yield selection, block, (m.get("selection") or {}).get("epoch"), False
        else:
            yield selection, block, block.get("epoch"), bool(block.get("optimistic", selection == "paper_protocol"))


def _level_record(r: dict[str, Any], classes: list[str]) -> dict[str, Any]:
    cm = np.asarray(r.get("confusion_matrix", []), dtype=np.int64)
    return {**{k: _float(r.get(k)) for k in METRICS}, "n_test": int(r.get("n", cm.sum())),
            "confusion_matrix": json.dumps(cm.tolist()), "_cm": cm,
            "_per_class": r.get("per_class") or {}, "_classes": list(classes)}


def records_of(m: dict[str, Any], path: Path) -> list[dict[str, Any]]:
    """The records of one metrics.json (already read by :func:`read_metrics`)."""
    facts = _file_facts(m, path)
    videos = _test_videos(m, path)
    rows = []
    for selection, block, epoch, optimistic in _selection_blocks(m):
        for level in LEVELS:
            r = block.get(level)
            if r:
                rows.append({**facts, "selection": selection, "level": level, "epoch": epoch,
                             "optimistic": optimistic, **_level_record(r, m["classes"]),
                             "_test_videos": videos if selection == "selected" else None})
    return rows


def load_records(paths: Iterable[Path]) -> pd.DataFrame:
    """One row per metrics.json x selection x level; the :data:`PRIVATE` columns hold the
    confusion matrix (ndarray), the per-class dict and the class list for the pooled statistics."""
    rows = [r for path in paths for r in records_of(read_metrics(path), path)]
    df = pd.DataFrame(rows)
    if df.empty:
        df = pd.DataFrame(columns=[c for c, _ in SCHEMAS["records"]] + PRIVATE)
    df["encoder_epoch"] = pd.to_numeric(df["encoder_epoch"], errors="coerce")
    return df


def final_records(df: pd.DataFrame) -> pd.DataFrame:
    """Records of final encoders (not ``encoder_epoch<k>.pt``) on every training video
    (``train_fraction == 1``): what the main, per-class, ablation, transfer and claims tables use."""
    return df[(df["encoder_kind"] == "final") & np.isclose(df["train_fraction"].astype(float), 1.0)]

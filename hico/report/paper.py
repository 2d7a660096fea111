"""The published numbers (``hico/reference/paper.csv``, each with its source) and how a table
row finds its own."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from hico.report import AggregateError
from hico.report.columns import KEY

PAPER_CSV = Path(__file__).resolve().parent.parent / "reference" / "paper.csv"
COLUMNS = ["method", "dataset", "protocol", "selection", "level", "metric", "value", "unit", "primary", "source", "note"]
_UNIT_SCALE = {"percent": 0.01, "fraction": 1.0}


def load_paper(path: str | Path | None) -> pd.DataFrame:
    """paper.csv with ``value`` as a fraction and ``primary`` as bool; empty for ``None``/``''``."""
    if not path:
        return pd.DataFrame(columns=COLUMNS)
    path = Path(path)
    if not path.exists():
        raise AggregateError(f"--paper {path} does not exist (the default is {PAPER_CSV})")
    paper = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [c for c in COLUMNS if c not in paper.columns]
    if missing:
        raise AggregateError(f"{path}: missing columns {missing}; expected {COLUMNS}")
    value = pd.to_numeric(paper["value"].replace("", np.nan), errors="coerce")
    scale = paper["unit"].map(_UNIT_SCALE)
    if scale.isna().any():
        bad = paper.loc[scale.isna(), "unit"].unique().tolist()
        raise AggregateError(f"{path}: unit must be 'percent' or 'fraction', found {bad}")
    return paper.assign(value=value * scale, primary=paper["primary"].isin(["1", "true", "True", "yes"]))


def paper_for(paper: pd.DataFrame, row: pd.Series, metric: str) -> pd.Series | None:
    """The paper number for one table row: rows with a value first, then primary, then file order."""
    m = paper[(paper["metric"] == metric) & np.logical_and.reduce([paper[k] == row[k] for k in KEY])]
    if m.empty:
        return None
    m = m.assign(_has=m["value"].notna()).sort_values(["_has", "primary"], ascending=False, kind="stable")
    return m.iloc[0]

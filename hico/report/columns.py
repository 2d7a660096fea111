"""The columns of every table in ``results/tables``: names, order and dtype (results/README.md
defines each one).

A dtype is ``"str"`` (blank = not applicable), ``"int"`` (never blank), ``"Int64"`` (integer,
blank when unknown), ``"float"`` (blank = NaN) or ``"bool"``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "macro_auc")
LEVELS = ("frame", "video")
SELECTIONS = ("selected", "paper_protocol", "last")
#: the key every table groups records by (plus the table's own axis)
KEY = ["method", "dataset", "protocol", "selection", "level"]


def _stat_cols(prefix: str = "") -> list[tuple[str, str]]:
    return [(f"{prefix}{m}_{s}", "float") for m in METRICS for s in ("mean", "std")]


_COUNTS = [("n", "int"), ("n_folds", "int"), ("n_seeds", "int"), ("n_files", "int")]
#: the paired test against the reference (hico.report.stats.paired_test); ablation.csv from t_accuracy on
_TEST = [("n_pairs", "int"), ("reference_minus_method_accuracy", "float"), ("t_accuracy", "float"),
         ("test_train_ratio", "float"), ("p_accuracy", "float"), ("p_holm_accuracy", "float"),
         ("mde_accuracy", "float"), ("test_note", "str")]

SCHEMAS: dict[str, list[tuple[str, str]]] = {
    "records": [
        ("method", "str"), ("dataset", "str"), ("protocol", "str"), ("selection", "str"), ("level", "str"),
        ("fold", "int"), ("seed", "int"), ("train_fraction", "float"), ("encoder_epoch", "Int64"),
        ("encoder_kind", "str"), ("pretrain_data", "str"), ("pretrain_labelled_fraction", "float"),
        ("epoch", "Int64"), ("optimistic", "bool"),
        *[(m, "float") for m in METRICS], ("n_test", "int"), ("classes", "str"), ("confusion_matrix", "str"),
        ("git_sha", "str"), ("source", "str"),
    ],
    "main_comparison": [
        *[(k, "str") for k in KEY], ("pretrain_labelled_fraction", "float"), *_COUNTS, *_stat_cols(),
        ("accuracy_ci_low", "float"), ("accuracy_ci_high", "float"), ("n_patients", "int"), ("ci_note", "str"),
        ("pooled_accuracy", "float"), ("pooled_macro_f1", "float"), ("optimistic", "bool"),
        ("paper_accuracy", "float"), ("paper_source", "str"), ("paper_note", "str"), ("delta_accuracy", "float"),
        ("reference_method", "str"), *_TEST,
    ],
    "paper_comparison": [
        ("method", "str"), ("dataset", "str"), ("protocol", "str"), ("selection", "str"), ("level", "str"),
        ("metric", "str"), ("paper_value", "float"), ("primary", "bool"), ("paper_source", "str"),
        ("paper_note", "str"), ("ours_pooled", "float"), ("ours_mean", "float"), ("ours_std", "float"),
        ("n", "int"), ("delta", "float"),
    ],
    "ablation": [
        ("variant", "str"), ("reference_method", "str"), *[(k, "str") for k in KEY[1:]],
        ("n_pairs", "int"), ("variant_accuracy_mean", "float"), ("variant_accuracy_std", "float"),
        ("reference_accuracy_mean", "float"), ("reference_accuracy_std", "float"),
        ("variant_minus_reference_accuracy", "float"), ("variant_macro_f1_mean", "float"),
        ("reference_macro_f1_mean", "float"), *_TEST[2:], ("n_files", "int"),
    ],
    "transfer": [
        ("method", "str"), ("pretrain_data", "str"), ("pretrain_labelled_fraction", "float"),
        *[(k, "str") for k in KEY[1:]], ("in_domain", "bool"),
        *_COUNTS, *_stat_cols(),
    ],
    "label_efficiency": [
        *[(k, "str") for k in KEY], ("pretrain_labelled_fraction", "float"), ("train_fraction", "float"),
        ("train_percent", "float"),
        ("n_train_videos_mean", "float"), *_COUNTS, *_stat_cols(),
    ],
    "convergence": [
        *[(k, "str") for k in KEY], ("pretrain_labelled_fraction", "float"), ("encoder_epoch", "Int64"), ("includes_final", "bool"),
        *_COUNTS, *_stat_cols(),
    ],
    "per_class": [
        *[(k, "str") for k in KEY], ("class", "str"), ("n", "int"),
        *[(f"{m}_{s}", "float") for m in ("precision", "recall", "f1") for s in ("mean", "std")],
        ("support_total", "int"), ("pooled_precision", "float"), ("pooled_recall", "float"), ("pooled_f1", "float"),
    ],
    "compute_cost": [
        ("method", "str"), ("pretrain_data", "str"), ("n_runs", "int"), ("encoder_params", "Int64"),
        ("pretrain_state_params", "Int64"), ("epochs", "Int64"), ("steps", "Int64"), ("batch_size", "Int64"),
        ("image_size", "Int64"), ("step_time_s", "float"), ("images_per_s", "float"), ("peak_mem_mb", "float"),
        ("wall_time_s", "float"), ("bench_wall_s", "float"), ("bench_max_rss_mb", "float"),
        ("bench_cpu_time_s", "float"), ("device", "str"), ("sources", "str"),
    ],
    "claims": [
        ("claim_id", "str"), ("claim", "str"), ("paper_source", "str"), ("dataset", "str"), ("protocol", "str"),
        ("selection", "str"), ("level", "str"), ("metric", "str"), ("comparison", "str"),
        ("reference_labelled_fraction", "float"), ("other_labelled_fraction", "float"), ("encoder_epoch", "Int64"),
        ("n_pairs", "int"), ("n_seeds", "int"), ("reference_mean", "float"), ("other_mean", "float"),
        ("mean_diff", "float"), ("test_train_ratio", "float"), ("p", "float"), ("p_holm", "float"), ("mde", "float"),
        ("verdict", "str"), ("evidence", "str"), ("rule", "str"),
    ],
}


def _blank(v) -> bool:
    return v is None or (isinstance(v, float) and np.isnan(v))


def _as(s: pd.Series, kind: str) -> pd.Series:
    if kind == "str":
        return s.map(lambda v: "" if _blank(v) else str(v)).astype(object)
    if kind == "int":
        return pd.to_numeric(s, errors="coerce").fillna(0).astype("int64")
    if kind == "Int64":
        return pd.to_numeric(s, errors="coerce").round().astype("Int64")
    if kind == "float":
        return pd.to_numeric(s, errors="coerce").astype("float64")
    if kind == "bool":
        return s.map(lambda v: False if _blank(v) else bool(v)).astype(bool)
    raise ValueError(f"unknown column dtype {kind!r}")


def conform(df: pd.DataFrame, table: str) -> pd.DataFrame:
    """Exactly the columns of ``SCHEMAS[table]``, in order, with their dtypes."""
    out = pd.DataFrame(index=df.index)
    for col, kind in SCHEMAS[table]:
        s = df[col] if col in df.columns else pd.Series([None] * len(df), index=df.index, dtype=object)
        out[col] = _as(s, kind)
    return out.reset_index(drop=True)

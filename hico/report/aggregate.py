"""Every ``metrics.json`` -> the tidy tables of ``results/tables`` (defined in results/README.md).

``python -m hico aggregate --metrics-dir runs/eval --out-dir results/tables
[--metrics FILE ...] [--paper hico/reference/paper.csv] [--compute-dir runs/pretrain]
[--bench-dir runs/benchmarks/pretrain] [--reference hico] [--alpha 0.05]``

One *record* is one metrics.json x selection (``selected``, ``paper_protocol``, ``last``) x
level (``frame``, ``video``); ``records.csv`` lists them all with their source file, so every
number in every table can be traced back. Tables group records by
``method, dataset, protocol, selection, level`` (plus the table's own axis) and report mean and
sample standard deviation (ddof = 1) over folds x seeds, as DESIGN.md asks, and the pooled
(summed over folds) confusion matrix, as the released code and the paper report.

Which records enter which table:
  - main, per-class, ablation, transfer, claims: final encoders (not ``encoder_epoch<k>.pt``)
    on all training videos (``train_fraction == 1``);
  - label efficiency: final encoders, every ``train_fraction``;
  - convergence: every encoder (checkpoints and final) at ``train_fraction == 1``, by the
    encoder's pretraining epoch.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hico.errors import HicoError
from hico.io import atomic_write_json, atomic_write_text
from hico.report import stats

PAPER_CSV = Path(__file__).resolve().parent.parent / "reference" / "paper.csv"
METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "macro_auc")
LEVELS = ("frame", "video")
SELECTIONS = ("selected", "paper_protocol", "last")
KEY = ["method", "dataset", "protocol", "selection", "level"]

# --------------------------------------------------------------------------------------------
# Column schemas: every table is written with exactly these columns in this order and dtype
# ("str", "int" (never blank), "Int64" (integer, blank when unknown), "float", "bool").


def _stat_cols(prefix: str = "") -> list[tuple[str, str]]:
    return [(f"{prefix}{m}_{s}", "float") for m in METRICS for s in ("mean", "std")]


_COUNTS = [("n", "int"), ("n_folds", "int"), ("n_seeds", "int"), ("n_files", "int")]

SCHEMAS: dict[str, list[tuple[str, str]]] = {
    "records": [
        ("method", "str"), ("dataset", "str"), ("protocol", "str"), ("selection", "str"), ("level", "str"),
        ("fold", "int"), ("seed", "int"), ("train_fraction", "float"), ("encoder_epoch", "Int64"),
        ("encoder_kind", "str"), ("pretrain_data", "str"), ("epoch", "Int64"), ("optimistic", "bool"),
        *[(m, "float") for m in METRICS], ("n_test", "int"), ("classes", "str"), ("confusion_matrix", "str"),
        ("git_sha", "str"), ("source", "str"),
    ],
    "main_comparison": [
        *[(k, "str") for k in KEY], *_COUNTS, *_stat_cols(),
        ("pooled_accuracy", "float"), ("pooled_macro_f1", "float"), ("optimistic", "bool"),
        ("paper_accuracy", "float"), ("paper_source", "str"), ("paper_note", "str"), ("delta_accuracy", "float"),
        ("reference_method", "str"), ("n_pairs", "int"), ("reference_minus_method_accuracy", "float"),
        ("wilcoxon_p_accuracy", "float"), ("wilcoxon_note", "str"),
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
        ("reference_macro_f1_mean", "float"), ("wilcoxon_p_accuracy", "float"), ("wilcoxon_note", "str"),
        ("n_files", "int"),
    ],
    "transfer": [
        ("method", "str"), ("pretrain_data", "str"), *[(k, "str") for k in KEY[1:]], ("in_domain", "bool"),
        *_COUNTS, *_stat_cols(),
    ],
    "label_efficiency": [
        *[(k, "str") for k in KEY], ("train_fraction", "float"), ("train_percent", "float"),
        ("n_train_videos_mean", "float"), *_COUNTS, *_stat_cols(),
    ],
    "convergence": [
        *[(k, "str") for k in KEY], ("encoder_epoch", "Int64"), ("includes_final", "bool"),
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
        ("selection", "str"), ("level", "str"), ("metric", "str"), ("comparison", "str"), ("encoder_epoch", "Int64"),
        ("n_pairs", "int"), ("hico_mean", "float"), ("other_mean", "float"), ("mean_diff", "float"),
        ("wilcoxon_p", "float"), ("verdict", "str"), ("evidence", "str"), ("rule", "str"),
    ],
}
TABLES = ["main_comparison", "ablation", "transfer", "label_efficiency", "convergence", "per_class",
          "compute_cost", "claims", "paper_comparison", "records"]


class AggregateError(HicoError, ValueError):
    pass


def conform(df: pd.DataFrame, table: str) -> pd.DataFrame:
    """Exactly the columns of ``SCHEMAS[table]``, in order, with their dtypes."""
    out = pd.DataFrame(index=df.index)
    for col, kind in SCHEMAS[table]:
        s = df[col] if col in df.columns else pd.Series([None] * len(df), index=df.index, dtype=object)
        if kind == "str":
            s = s.map(lambda v: "" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v)).astype(object)
        elif kind == "int":
            s = pd.to_numeric(s, errors="coerce").fillna(0).astype("int64")
        elif kind == "Int64":
            s = pd.to_numeric(s, errors="coerce").round().astype("Int64")
        elif kind == "float":
            s = pd.to_numeric(s, errors="coerce").astype("float64")
        elif kind == "bool":
            s = s.map(lambda v: bool(v) if v is not None and not (isinstance(v, float) and np.isnan(v)) else False)
            s = s.astype(bool)
        out[col] = s
    return out.reset_index(drop=True)


# --------------------------------------------------------------------------------------------
# Loading


def find_metrics(dirs: Iterable[str | Path] = (), files: Iterable[str | Path] = ()) -> list[Path]:
    found: set[Path] = set()
    for d in dirs or ():
        d = Path(d)
        if not d.is_dir():
            raise AggregateError(f"--metrics-dir {d} is not a folder")
        found.update(p.resolve() for p in d.rglob("metrics.json"))
    for f in files or ():
        f = Path(f)
        if not f.is_file():
            raise AggregateError(f"--metrics {f} does not exist")
        found.add(f.resolve())
    return sorted(found)


def _float(v: Any) -> float:
    try:
        return float(v) if v is not None else float("nan")
    except (TypeError, ValueError):
        return float("nan")


def _protocol_id(m: dict[str, Any]) -> str:
    if m.get("protocol_id"):
        return str(m["protocol_id"])
    if m.get("protocol") == "finetune" and m.get("variant"):
        return f"finetune_{m['variant']}"
    return str(m["protocol"])


def load_records(paths: Iterable[Path]) -> pd.DataFrame:
    """One row per metrics.json x selection x level; ``_cm`` and ``_per_class`` hold the
    confusion matrix (ndarray) and per-class dict for the pooled statistics."""
    rows = []
    for path in paths:
        try:
            m = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise AggregateError(f"{path}: unreadable metrics.json ({e}); re-run its evaluate job") from e
        missing = [k for k in ("method", "dataset", "protocol", "fold", "seed", "classes", "frame", "video") if k not in m]
        if missing:
            raise AggregateError(f"{path}: metrics.json lacks {missing}; it was not written by `python -m hico evaluate`")
        facts = {
            "method": str(m["method"]), "dataset": str(m["dataset"]), "protocol": _protocol_id(m),
            "fold": int(m["fold"]), "seed": int(m["seed"]),
            "train_fraction": _float(m.get("train_fraction", 1.0)),
            "encoder_epoch": m.get("encoder_epoch", (m.get("encoder_meta") or {}).get("epoch")),
            "encoder_kind": m.get("encoder_kind") or (
                "checkpoint" if re.search(r"encoder_epoch\d+\.pt$", str(m.get("encoder", ""))) else "final"),
            "pretrain_data": ("unknown" if m.get("pretrain_datasets") is None
                              else ";".join(m["pretrain_datasets"]) or "none"),
            "classes": json.dumps(m["classes"]),
            "git_sha": (m.get("provenance") or {}).get("git_sha", ""),
            "source": str(path),
            "n_train_videos": (m.get("n_videos") or {}).get("train"),
        }
        for selection in SELECTIONS:
            block = m if selection == "selected" else m.get(selection)
            if not block:
                continue
            if selection == "selected":
                epoch, optimistic = (m.get("selection") or {}).get("epoch"), False
            else:
                epoch, optimistic = block.get("epoch"), bool(block.get("optimistic", selection == "paper_protocol"))
            for level in LEVELS:
                r = block.get(level)
                if not r:
                    continue
                cm = np.asarray(r.get("confusion_matrix", []), dtype=np.int64)
                rows.append({
                    **facts, "selection": selection, "level": level, "epoch": epoch, "optimistic": optimistic,
                    **{k: _float(r.get(k)) for k in METRICS}, "n_test": int(r.get("n", cm.sum())),
                    "confusion_matrix": json.dumps(cm.tolist()), "_cm": cm,
                    "_per_class": r.get("per_class") or {}, "_classes": list(m["classes"]),
                })
    df = pd.DataFrame(rows)
    if df.empty:
        df = pd.DataFrame(columns=[c for c, _ in SCHEMAS["records"]] + ["_cm", "_per_class", "_classes", "n_train_videos"])
    df["encoder_epoch"] = pd.to_numeric(df["encoder_epoch"], errors="coerce")
    return df


def main_records(df: pd.DataFrame) -> pd.DataFrame:
    return df[(df["encoder_kind"] == "final") & np.isclose(df["train_fraction"].astype(float), 1.0)]


# --------------------------------------------------------------------------------------------
# Summaries


def summarise(df: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Counts and mean/std (ddof = 1) of every metric per group."""
    if df.empty:
        return pd.DataFrame(columns=keys)
    agg: dict[str, tuple[str, str]] = {"n": ("fold", "size"), "n_folds": ("fold", "nunique"),
                                       "n_seeds": ("seed", "nunique"), "n_files": ("source", "nunique")}
    for m in METRICS:
        agg[f"{m}_mean"] = (m, "mean")
        agg[f"{m}_std"] = (m, "std")
    return df.groupby(keys, dropna=False, sort=True).agg(**agg).reset_index()


def _pooled(group: pd.DataFrame) -> tuple[np.ndarray, list[np.ndarray]]:
    """Sum of the confusion matrices over folds, per seed (list) and over everything."""
    per_seed = [np.sum(np.stack(list(g["_cm"])), axis=0) for _, g in group.groupby("seed")]
    return np.sum(np.stack(per_seed), axis=0), per_seed


def _cm_accuracy(cm: np.ndarray) -> float:
    return float(np.trace(cm) / cm.sum()) if cm.sum() else float("nan")


def _cm_prf(cm: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    tp = np.diag(cm).astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(cm.sum(0) > 0, tp / cm.sum(0), 0.0)
        recall = np.where(cm.sum(1) > 0, tp / cm.sum(1), 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    return precision, recall, f1


def pooled_confusion(df: pd.DataFrame) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """Per KEY group: pooled accuracy / macro-F1 (mean over seeds of the fold-summed matrix)
    and the JSON entries of confusion_matrices.json."""
    rows, entries = [], []
    for key, g in df.groupby(KEY, sort=True):
        total, per_seed = _pooled(g)
        rows.append({**dict(zip(KEY, key)),
                     "pooled_accuracy": float(np.mean([_cm_accuracy(c) for c in per_seed])),
                     "pooled_macro_f1": float(np.mean([_cm_prf(c)[2].mean() for c in per_seed]))})
        entries.append({**dict(zip(KEY, key)), "classes": g["_classes"].iloc[0],
                        "n_folds": int(g["fold"].nunique()), "n_seeds": int(g["seed"].nunique()),
                        "matrix": total.tolist(),
                        "per_seed": {str(s): c.tolist() for s, c in zip(sorted(g["seed"].unique()), per_seed)},
                        "sources": sorted(g["source"].unique())})
    return pd.DataFrame(rows, columns=KEY + ["pooled_accuracy", "pooled_macro_f1"]), entries


def load_paper(path: str | Path | None) -> pd.DataFrame:
    cols = ["method", "dataset", "protocol", "selection", "level", "metric", "value", "unit", "primary", "source", "note"]
    if not path:
        return pd.DataFrame(columns=cols)
    path = Path(path)
    if not path.exists():
        raise AggregateError(f"--paper {path} does not exist (the default is {PAPER_CSV})")
    paper = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [c for c in cols if c not in paper.columns]
    if missing:
        raise AggregateError(f"{path}: missing columns {missing}; expected {cols}")
    value = pd.to_numeric(paper["value"].replace("", np.nan), errors="coerce")
    scale = paper["unit"].map({"percent": 0.01, "fraction": 1.0})
    if scale.isna().any():
        bad = paper.loc[scale.isna(), "unit"].unique().tolist()
        raise AggregateError(f"{path}: unit must be 'percent' or 'fraction', found {bad}")
    paper = paper.assign(value=value * scale, primary=paper["primary"].isin(["1", "true", "True", "yes"]))
    return paper


def _paper_for(paper: pd.DataFrame, row: pd.Series, metric: str) -> pd.Series | None:
    """The paper number for one table row: rows with a value first, then primary, then file order."""
    m = paper[(paper["metric"] == metric) & np.logical_and.reduce([paper[k] == row[k] for k in KEY])]
    if m.empty:
        return None
    m = m.assign(_has=m["value"].notna()).sort_values(["_has", "primary"], ascending=False, kind="stable")
    return m.iloc[0]


def _pair_stats(df: pd.DataFrame, a: str, b: str, metric: str = "accuracy") -> tuple[int, float, float, str]:
    """n pairs, mean(a - b), Wilcoxon p, note over (fold, seed) cells."""
    xa, xb = stats.paired(df, metric, a, b)
    if len(xa) == 0:
        return 0, float("nan"), float("nan"), "no paired (fold, seed) results"
    p, note = stats.wilcoxon_p(xa, xb)
    return len(xa), float(np.mean(xa - xb)), p, note


def main_comparison(records: pd.DataFrame, paper: pd.DataFrame, reference: str) -> pd.DataFrame:
    main = main_records(records)
    table = summarise(main, KEY)
    if table.empty:
        return conform(table, "main_comparison")
    pooled, _ = pooled_confusion(main)
    table = table.merge(pooled, on=KEY, how="left")
    opt = main.groupby(KEY)["optimistic"].any().rename("optimistic").reset_index()
    table = table.merge(opt, on=KEY, how="left")
    extra = []
    for _, row in table.iterrows():
        e: dict[str, Any] = {"reference_method": reference}
        pr = _paper_for(paper, row, "accuracy")
        if pr is not None:
            e.update(paper_accuracy=pr["value"], paper_source=pr["source"], paper_note=pr["note"],
                     delta_accuracy=row["pooled_accuracy"] - pr["value"])
        cell = main[np.logical_and.reduce([main[k] == row[k] for k in KEY[1:]])]
        if row["method"] == reference:
            e.update(n_pairs=0, wilcoxon_note="reference method")
        elif not (cell["method"] == reference).any():
            e.update(n_pairs=0, wilcoxon_note=f"no {reference} results for this dataset/protocol/selection/level")
        else:
            n, diff, p, note = _pair_stats(cell, reference, row["method"])
            e.update(n_pairs=n, reference_minus_method_accuracy=diff, wilcoxon_p_accuracy=p, wilcoxon_note=note)
        extra.append(e)
    table = pd.concat([table, pd.DataFrame(extra, index=table.index)], axis=1)
    return conform(table, "main_comparison")


def paper_comparison(records: pd.DataFrame, paper: pd.DataFrame) -> pd.DataFrame:
    """Every paper number next to our matching measurement (pooled over folds, and mean/std)."""
    main = main_records(records)
    pooled, _ = pooled_confusion(main) if not main.empty else (pd.DataFrame(columns=KEY), [])
    rows = []
    for _, pr in paper.iterrows():
        sel = main[np.logical_and.reduce([main[k] == pr[k] for k in KEY])] if not main.empty else main
        r = {**{k: pr[k] for k in KEY}, "metric": pr["metric"], "paper_value": pr["value"], "primary": pr["primary"],
             "paper_source": pr["source"], "paper_note": pr["note"], "n": len(sel)}
        if len(sel) and pr["metric"] in METRICS:
            r["ours_mean"], r["ours_std"] = sel[pr["metric"]].mean(), sel[pr["metric"]].std()
            pm = pooled[np.logical_and.reduce([pooled[k] == pr[k] for k in KEY])]
            col = {"accuracy": "pooled_accuracy", "macro_f1": "pooled_macro_f1"}.get(pr["metric"])
            ours = pm[col].iloc[0] if col and len(pm) else r["ours_mean"]
            r["ours_pooled"] = ours if col else float("nan")
            r["delta"] = ours - pr["value"]
        rows.append(r)
    return conform(pd.DataFrame(rows), "paper_comparison")


def ablation(records: pd.DataFrame, reference: str) -> pd.DataFrame:
    main = main_records(records)
    rows = []
    variants = sorted(m for m in main["method"].unique() if m.startswith(f"{reference}_"))
    for variant in variants:
        for key, cell in main[main["method"].isin([variant, reference])].groupby(KEY[1:], sort=True):
            v, ref = cell[cell["method"] == variant], cell[cell["method"] == reference]
            if v.empty or ref.empty:
                continue
            n, diff, p, note = _pair_stats(cell, variant, reference)
            rows.append({"variant": variant, "reference_method": reference, **dict(zip(KEY[1:], key)),
                         "n_pairs": n, "variant_accuracy_mean": v["accuracy"].mean(),
                         "variant_accuracy_std": v["accuracy"].std(),
                         "reference_accuracy_mean": ref["accuracy"].mean(),
                         "reference_accuracy_std": ref["accuracy"].std(),
                         "variant_minus_reference_accuracy": diff,
                         "variant_macro_f1_mean": v["macro_f1"].mean(), "reference_macro_f1_mean": ref["macro_f1"].mean(),
                         "wilcoxon_p_accuracy": p, "wilcoxon_note": note, "n_files": cell["source"].nunique()})
    return conform(pd.DataFrame(rows), "ablation")


def transfer(records: pd.DataFrame) -> pd.DataFrame:
    main = main_records(records)
    keys = ["method", "pretrain_data"] + KEY[1:]
    table = summarise(main, keys)
    if not table.empty:
        table["in_domain"] = [d in str(p).split(";") for d, p in zip(table["dataset"], table["pretrain_data"])]
    return conform(table, "transfer")


def label_efficiency(records: pd.DataFrame) -> pd.DataFrame:
    df = records[records["encoder_kind"] == "final"]
    table = summarise(df, KEY + ["train_fraction"])
    if not table.empty:
        table["train_percent"] = table["train_fraction"] * 100
        nv = df.groupby(KEY + ["train_fraction"])["n_train_videos"].apply(lambda s: pd.to_numeric(s).mean())
        table = table.merge(nv.rename("n_train_videos_mean").reset_index(), on=KEY + ["train_fraction"], how="left")
    return conform(table, "label_efficiency")


def convergence(records: pd.DataFrame) -> pd.DataFrame:
    df = records[np.isclose(records["train_fraction"].astype(float), 1.0) & records["encoder_epoch"].notna()]
    table = summarise(df, KEY + ["encoder_epoch"])
    if not table.empty:
        fin = df.groupby(KEY + ["encoder_epoch"])["encoder_kind"].apply(lambda s: bool((s == "final").any()))
        table = table.merge(fin.rename("includes_final").reset_index(), on=KEY + ["encoder_epoch"], how="left")
    return conform(table, "convergence")


def per_class(records: pd.DataFrame) -> pd.DataFrame:
    main = main_records(records)
    rows = []
    for key, g in main.groupby(KEY, sort=True):
        total, _ = _pooled(g)
        pp, pr, pf = _cm_prf(total)
        classes = g["_classes"].iloc[0]
        for i, c in enumerate(classes):
            vals = {s: np.array([pc.get(c, {}).get(s, np.nan) for pc in g["_per_class"]], dtype=float)
                    for s in ("precision", "recall", "f1", "support")}
            rows.append({**dict(zip(KEY, key)), "class": c, "n": len(g),
                         **{f"{s}_mean": np.nanmean(v) if np.isfinite(v).any() else np.nan for s, v in vals.items() if s != "support"},
                         **{f"{s}_std": pd.Series(v).std() for s, v in vals.items() if s != "support"},
                         "support_total": int(np.nansum(vals["support"])),
                         "pooled_precision": pp[i], "pooled_recall": pr[i], "pooled_f1": pf[i]})
    return conform(pd.DataFrame(rows), "per_class")


# --------------------------------------------------------------------------------------------
# Compute cost


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


def _run_identity(rel: Path) -> tuple[str, str, int | None]:
    """(method, pretrain_data, seed) from a run path ``<pool>/<method>/seed<k>`` or ``<method>``."""
    parts = list(rel.parts)
    seed = None
    if parts and re.fullmatch(r"seed\d+", parts[-1]):
        seed = int(parts[-1][4:])
        parts = parts[:-1]
    method = parts[-1] if parts else ""
    pool = "/".join(parts[:-1]) if len(parts) > 1 else ""
    return method, pool, seed


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


def compute_cost(compute_dirs: Iterable[str | Path], bench_dirs: Iterable[str | Path] = ()) -> pd.DataFrame:
    """Per (method, pretraining data): parameters, step time, throughput, peak memory and wall
    time from ``train_log.csv`` of each run folder, and Snakemake benchmark TSVs when given.

    A benchmark TSV matches the run whose folder path (relative to its --compute-dir) equals the
    TSV's path without ``.tsv`` (relative to its --bench-dir), the layout of the workflow
    (``runs/pretrain/<pool>/<method>/seed<k>/`` and ``benchmarks/pretrain/<pool>/<method>/seed<k>.tsv``).
    """
    runs: dict[tuple[str, str, int | None], dict[str, Any]] = {}
    benches: dict[Path, dict[str, float]] = {}
    for root in bench_dirs or ():
        root = Path(root)
        for tsv in sorted(root.rglob("*.tsv")) if root.is_dir() else []:
            b = read_benchmark(tsv)
            if b is not None:
                benches[tsv.relative_to(root).with_suffix("")] = b
    for root in compute_dirs or ():
        root = Path(root)
        if not root.is_dir():
            raise AggregateError(f"--compute-dir {root} is not a folder")
        for log in sorted(root.rglob("train_log.csv")):
            run = log.parent
            rel = run.relative_to(root)
            method, pool, seed = _run_identity(rel)
            cfg: dict[str, Any] = {}
            if (run / "config.json").exists():
                try:
                    cfg = json.loads((run / "config.json").read_text())
                except json.JSONDecodeError:
                    cfg = {}
            conf = cfg.get("config", {}) if isinstance(cfg.get("config"), dict) else {}
            if not method:
                method = conf.get("name", run.name)
            if not pool:
                pool = ";".join(Path(d).name for d in cfg.get("datasets", [])) or "unknown"
            log_stats = _train_log_summary(log)
            row = {"method": method, "pretrain_data": pool, "encoder_params": _state_params(run / "encoder.pt", "state_dict"),
                   "pretrain_state_params": _state_params(run / "last.pt", "model"),
                   "batch_size": conf.get("batch_size"), "image_size": conf.get("image_size"),
                   **log_stats, "device": cfg.get("device", ""), "source": str(run)}
            for bench_rel, b in benches.items():
                if bench_rel == rel:
                    row.update(b)
            runs[(method, pool, seed)] = row
    if not runs:
        return conform(pd.DataFrame(), "compute_cost")
    df = pd.DataFrame(list(runs.values()))
    for c in ("bench_wall_s", "bench_max_rss_mb", "bench_cpu_time_s"):
        if c not in df:
            df[c] = np.nan
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
    return conform(pd.DataFrame(rows), "compute_cost")


# --------------------------------------------------------------------------------------------
# Claims

#: Ablation variants (method names ``hico_<...>``) that remove multi-level alignment or soft labels.
MULTI_LEVEL_TOKENS = ("peer_only", "cross_only", "global_only", "local_only", "no_peer", "no_cross",
                      "single_level", "no_hierarchy", "no_multilevel", "no_multi_level")
SOFT_LABEL_TOKENS = ("hard_label", "no_soft", "no_smooth", "hard_ce")
POCUS_BASELINES = ("uscl", "simclr", "moco_v2", "moco", "mocov2")

CLAIMS = [
    {"id": "faster_convergence", "kind": "convergence",
     "claim": "Peer- and cross-level alignment accelerate convergence: at an early pretraining epoch "
              "HiCo's encoder is already better downstream than a baseline's at the same epoch",
     "source": "HiCo abstract (arXiv 2210.04477): 'effectively accelerate the convergence speed'"},
    {"id": "multi_level_alignment_helps", "kind": "ablation", "tokens": MULTI_LEVEL_TOKENS,
     "claim": "Multi-level (peer + cross) alignment helps: HiCo beats its variants without it",
     "source": "HiCo abstract: 'peer-level semantic alignment and cross-level semantic alignment'"},
    {"id": "soft_labels_help", "kind": "ablation", "tokens": SOFT_LABEL_TOKENS,
     "claim": "The softened objective helps: HiCo beats its variant with hard labels",
     "source": "HiCo abstract: 'a softened objective function ... by smoothing the hard labels'"},
    {"id": "beats_baselines_on_pocus", "kind": "comparison", "dataset_re": r"pocus", "others": POCUS_BASELINES,
     "claim": "HiCo beats USCL, SimCLR and MoCo on POCUS",
     "source": "HiCo abstract: 'favorable results over state-of-the-art approaches' (POCUS is its main benchmark)"},
    {"id": "favorable_over_sota", "kind": "comparison", "dataset_re": r".*", "others": None,
     "claim": "HiCo is better than every other method on every downstream dataset",
     "source": "HiCo abstract: 'Experiments with HiCo on five datasets demonstrate its favorable results over "
               "state-of-the-art approaches'"},
]


def claims(records: pd.DataFrame, reference: str = "hico", alpha: float = stats.ALPHA) -> pd.DataFrame:
    """One row per claim x piece of evidence (dataset, protocol, comparison); verdicts by
    :func:`hico.report.stats.verdict`. Evidence: selection ``selected``, level ``frame``, accuracy."""
    rule = stats.VERDICT_RULE.replace(str(stats.ALPHA), str(alpha))
    base = records[(records["selection"] == "selected") & (records["level"] == "frame")]
    main = main_records(base)
    methods = sorted(main["method"].unique())
    rows = []

    def add(spec, dataset, protocol, a, b, epoch=None):
        # mean_diff = reference - other: > 0 supports every claim (for ablations: the removed part helps)
        other = b["method"].iloc[0]
        n, diff, p, note = _pair_stats(pd.concat([a, b]), reference, other)
        v = stats.verdict(n, diff, p, alpha)
        evidence = (f"{reference} {a['accuracy'].mean():.4f} vs {other} {b['accuracy'].mean():.4f} "
                    f"(mean paired diff {diff:+.4f}, n_pairs={n}, p={p:.3g})" if n else "no paired (fold, seed) results")
        if epoch is not None:
            evidence = f"pretraining epoch {epoch}: " + evidence
        if note:
            evidence += f"; {note}"
        rows.append({"claim_id": spec["id"], "claim": spec["claim"], "paper_source": spec["source"], "dataset": dataset,
                     "protocol": protocol, "selection": "selected", "level": "frame", "metric": "accuracy",
                     "comparison": f"{reference} vs {other}", "encoder_epoch": epoch, "n_pairs": n,
                     "hico_mean": a["accuracy"].mean(), "other_mean": b["accuracy"].mean(), "mean_diff": diff,
                     "wilcoxon_p": p, "verdict": v, "evidence": evidence, "rule": rule})

    for spec in CLAIMS:
        before = len(rows)
        if spec["kind"] == "comparison":
            pool = main[main["dataset"].str.contains(spec["dataset_re"], case=False, regex=True)]
            if spec["others"] is None:
                others = [m for m in methods if m != reference and not m.startswith(f"{reference}_")]
            else:
                others = [m for m in methods if m in spec["others"]]
            for (dataset, protocol), cell in pool.groupby(["dataset", "protocol"], sort=True):
                a = cell[cell["method"] == reference]
                if a.empty:
                    continue
                for other in others:
                    b = cell[cell["method"] == other]
                    if len(b):
                        add(spec, dataset, protocol, a, b)
        elif spec["kind"] == "ablation":
            variants = [m for m in methods if m.startswith(f"{reference}_") and any(t in m for t in spec["tokens"])]
            for (dataset, protocol), cell in main.groupby(["dataset", "protocol"], sort=True):
                a = cell[cell["method"] == reference]
                for other in variants:
                    b = cell[cell["method"] == other]
                    if len(a) and len(b):
                        add(spec, dataset, protocol, a, b)
        elif spec["kind"] == "convergence":
            conv = base[np.isclose(base["train_fraction"].astype(float), 1.0) & (base["encoder_kind"] == "checkpoint")]
            baselines = [m for m in conv["method"].unique() if m != reference and not m.startswith(f"{reference}_")]
            for (dataset, protocol), cell in conv.groupby(["dataset", "protocol"], sort=True):
                a_all = cell[cell["method"] == reference]
                for other in sorted(baselines):
                    b_all = cell[cell["method"] == other]
                    common = sorted(set(a_all["encoder_epoch"].dropna()) & set(b_all["encoder_epoch"].dropna()))
                    if not common:
                        continue
                    e = common[0]
                    add(spec, dataset, protocol, a_all[a_all["encoder_epoch"] == e],
                        b_all[b_all["encoder_epoch"] == e], epoch=int(e))
        if len(rows) == before:
            why = {"comparison": f"no {reference} and baseline results on a matching dataset",
                   "ablation": f"no {reference} variant named with any of {list(spec.get('tokens', ()))}",
                   "convergence": f"no encoder_epoch<k>.pt evaluations shared by {reference} and a baseline"}[spec["kind"]]
            rows.append({"claim_id": spec["id"], "claim": spec["claim"], "paper_source": spec["source"],
                         "selection": "selected", "level": "frame", "metric": "accuracy", "n_pairs": 0,
                         "verdict": stats.NO_EVIDENCE, "evidence": f"{stats.NO_EVIDENCE}: {why}", "rule": rule})
    return conform(pd.DataFrame(rows), "claims")


# --------------------------------------------------------------------------------------------
# Everything


def build_tables(records: pd.DataFrame, paper: pd.DataFrame | None = None, reference: str = "hico",
                 compute_dirs: Iterable[str | Path] = (), bench_dirs: Iterable[str | Path] = (),
                 alpha: float = stats.ALPHA) -> tuple[dict[str, pd.DataFrame], list[dict[str, Any]]]:
    paper = paper if paper is not None else load_paper(None)
    main = main_records(records)
    _, cms = pooled_confusion(main) if not main.empty else (None, [])
    tables = {
        "main_comparison": main_comparison(records, paper, reference),
        "ablation": ablation(records, reference),
        "transfer": transfer(records),
        "label_efficiency": label_efficiency(records),
        "convergence": convergence(records),
        "per_class": per_class(records),
        "compute_cost": compute_cost(compute_dirs, bench_dirs),
        "claims": claims(records, reference, alpha),
        "paper_comparison": paper_comparison(records, paper),
        "records": conform(records, "records"),
    }
    return tables, cms


def write_tables(tables: dict[str, pd.DataFrame], cms: list[dict[str, Any]], out_dir: str | Path) -> list[Path]:
    out_dir = Path(out_dir)
    written = []
    for name, df in tables.items():
        path = out_dir / f"{name}.csv"
        atomic_write_text(path, df.to_csv(index=False, float_format="%.6g", lineterminator="\n"))
        written.append(path)
    path = out_dir / "confusion_matrices.json"
    atomic_write_json(path, cms)
    written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="hico aggregate", description="metrics.json files -> results/tables/*.csv")
    p.add_argument("--metrics-dir", nargs="+", action="extend", default=[],
                   help="folders searched recursively for metrics.json")
    p.add_argument("--metrics", nargs="+", action="extend", default=[], help="metrics.json files")
    p.add_argument("--out-dir", required=True, help="where the tables go (e.g. results/tables)")
    p.add_argument("--paper", default=str(PAPER_CSV), help="published numbers; '' to leave them out")
    p.add_argument("--compute-dir", nargs="+", action="extend", default=[],
                   help="pretraining run folders (train_log.csv, config.json, encoder.pt, last.pt); benchmark TSVs "
                        "inside them are read too")
    p.add_argument("--bench-dir", nargs="+", action="extend", default=[], help="Snakemake benchmark TSV folders")
    p.add_argument("--reference", default="hico", help="method the others are tested against (default hico)")
    p.add_argument("--alpha", type=float, default=stats.ALPHA, help="significance level of the claims rule")
    a = p.parse_args(argv)
    try:
        paths = find_metrics(a.metrics_dir, a.metrics)
        if not paths:
            raise AggregateError(
                f"no metrics.json found (--metrics-dir {a.metrics_dir}, --metrics {a.metrics}); "
                "run `python -m hico evaluate` first or point --metrics-dir at its outputs")
        records = load_records(paths)
        tables, cms = build_tables(records, load_paper(a.paper), a.reference, a.compute_dir,
                                   list(a.bench_dir) + list(a.compute_dir), a.alpha)
        written = write_tables(tables, cms, a.out_dir)
    except AggregateError as e:
        print(f"[aggregate] error: {e}", file=sys.stderr)
        return 2
    print(f"[aggregate] {len(paths)} metrics.json -> {len(records)} records -> {len(written)} files in {a.out_dir}")
    for name in ("main_comparison", "claims"):
        print(f"[aggregate] {name}: {len(tables[name])} rows")
    return 0

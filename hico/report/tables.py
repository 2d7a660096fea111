"""Records -> the summary tables: main comparison, paper comparison, ablation, transfer, label
efficiency, convergence, per class, and the pooled confusion matrices.

Tables group records by :data:`~hico.report.columns.KEY` (plus the table's own axis) and report
mean and sample standard deviation (ddof = 1) over folds x seeds, as DESIGN.md asks, and the
pooled (summed over folds) confusion matrix, as the released code and the paper report.
Which records enter which table:

- main, per-class, ablation, transfer, paper comparison: :func:`~hico.report.records.final_records`;
- label efficiency: final encoders, every ``train_fraction``;
- convergence: every encoder (checkpoints and final) at ``train_fraction == 1``, by the
  encoder's pretraining epoch.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from hico.report import bootstrap, stats
from hico.report.columns import KEY, METRICS, conform
from hico.report.paper import paper_for
from hico.report.records import final_records


def summarise(df: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Counts and mean/std (ddof = 1) of every metric per group."""
    if df.empty:
        return pd.DataFrame(columns=keys)
    agg: dict[str, tuple[str, str]] = {"n": ("fold", "size"), "n_folds": ("fold", "nunique"),
                                       "n_seeds": ("seed", "nunique"), "n_files": ("source", "nunique")}
    for m in METRICS:
        agg[f"{m}_mean"] = (m, "mean")
        agg[f"{m}_std"] = (m, "std")
    if "pretrain_labelled_fraction" in df:
        agg["pretrain_labelled_fraction"] = ("pretrain_labelled_fraction", "mean")
    return df.groupby(keys, dropna=False, sort=True).agg(**agg).reset_index()


def _in_cell(df: pd.DataFrame, row: pd.Series, keys: list[str]) -> pd.Series:
    """Rows of ``df`` that agree with ``row`` on every one of ``keys``."""
    return np.logical_and.reduce([df[k] == row[k] for k in keys])


# --------------------------------------------------------------------------------------------
# Pooled confusion matrices


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


def confusion_entries(records: pd.DataFrame) -> list[dict[str, Any]]:
    """The entries of confusion_matrices.json (final encoders on every training video)."""
    final = final_records(records)
    return pooled_confusion(final)[1] if not final.empty else []


# --------------------------------------------------------------------------------------------
# Tables


def _test_columns(test: stats.PairedTest) -> dict[str, Any]:
    return {"n_pairs": test.n, "t_accuracy": test.t, "test_train_ratio": test.test_train_ratio,
            "p_accuracy": test.p, "mde_accuracy": test.mde, "test_note": test.note}


def _reference_test(cell: pd.DataFrame, method: str, reference: str) -> dict[str, Any]:
    """The main table's paired test of ``reference`` against ``method`` within one cell."""
    if method == reference:
        return {"n_pairs": 0, "test_note": "reference method"}
    if not (cell["method"] == reference).any():
        return {"n_pairs": 0, "test_note": f"no {reference} results for this dataset/protocol/selection/level"}
    test = stats.paired_test(cell, reference, method)
    return {**_test_columns(test), "reference_minus_method_accuracy": test.mean_diff}


def _interval_columns(records: pd.DataFrame, key: tuple, n_resamples: int, seed: int) -> dict[str, Any]:
    ci = bootstrap.row_interval(records, key, seed, n_resamples)
    return {"accuracy_ci_low": ci.low, "accuracy_ci_high": ci.high, "n_patients": ci.n_patients, "ci_note": ci.note}


def _paper_columns(paper: pd.DataFrame, row: pd.Series) -> dict[str, Any]:
    pr = paper_for(paper, row, "accuracy")
    if pr is None:
        return {}
    return {"paper_accuracy": pr["value"], "paper_source": pr["source"], "paper_note": pr["note"],
            "delta_accuracy": row["pooled_accuracy"] - pr["value"]}


def main_comparison(records: pd.DataFrame, paper: pd.DataFrame, reference: str,
                    n_resamples: int = bootstrap.N_RESAMPLES, seed: int = 0) -> pd.DataFrame:
    """One row per KEY: means, stds, the patient-bootstrap interval of the accuracy, pooled
    numbers, the published number, and the paired test against ``reference`` with Holm's
    correction over each dataset x protocol x selection x level (the reference against every
    other method)."""
    final = final_records(records)
    table = summarise(final, KEY)
    if table.empty:
        return conform(table, "main_comparison")
    pooled, _ = pooled_confusion(final)
    table = table.merge(pooled, on=KEY, how="left")
    opt = final.groupby(KEY)["optimistic"].any().rename("optimistic").reset_index()
    table = table.merge(opt, on=KEY, how="left")
    groups = dict(iter(final.groupby(KEY, sort=True)))
    extra = [{"reference_method": reference, **_paper_columns(paper, row),
              **_reference_test(final[_in_cell(final, row, KEY[1:])], row["method"], reference),
              **_interval_columns(groups[tuple(row[KEY])], tuple(row[KEY]), n_resamples, seed)}
             for _, row in table.iterrows()]
    table = pd.concat([table, pd.DataFrame(extra, index=table.index)], axis=1)
    table["p_holm_accuracy"] = stats.holm_within(table, KEY[1:], "p_accuracy")
    return conform(table, "main_comparison")


def paper_comparison(records: pd.DataFrame, paper: pd.DataFrame) -> pd.DataFrame:
    """Every paper number next to our matching measurement (pooled over folds, and mean/std)."""
    final = final_records(records)
    pooled, _ = pooled_confusion(final) if not final.empty else (pd.DataFrame(columns=KEY), [])
    rows = []
    for _, pr in paper.iterrows():
        sel = final[_in_cell(final, pr, KEY)] if not final.empty else final
        r = {**{k: pr[k] for k in KEY}, "metric": pr["metric"], "paper_value": pr["value"], "primary": pr["primary"],
             "paper_source": pr["source"], "paper_note": pr["note"], "n": len(sel)}
        if len(sel) and pr["metric"] in METRICS:
            r["ours_mean"], r["ours_std"] = sel[pr["metric"]].mean(), sel[pr["metric"]].std()
            pm = pooled[_in_cell(pooled, pr, KEY)]
            col = {"accuracy": "pooled_accuracy", "macro_f1": "pooled_macro_f1"}.get(pr["metric"])
            ours = pm[col].iloc[0] if col and len(pm) else r["ours_mean"]
            r["ours_pooled"] = ours if col else float("nan")
            r["delta"] = ours - pr["value"]
        rows.append(r)
    return conform(pd.DataFrame(rows), "paper_comparison")


def _ablation_row(variant: str, reference: str, key: tuple, cell: pd.DataFrame) -> dict[str, Any]:
    v, ref = cell[cell["method"] == variant], cell[cell["method"] == reference]
    test = stats.paired_test(cell, variant, reference)
    return {"variant": variant, "reference_method": reference, **dict(zip(KEY[1:], key)), **_test_columns(test),
            "variant_accuracy_mean": v["accuracy"].mean(), "variant_accuracy_std": v["accuracy"].std(),
            "reference_accuracy_mean": ref["accuracy"].mean(), "reference_accuracy_std": ref["accuracy"].std(),
            "variant_minus_reference_accuracy": test.mean_diff,
            "variant_macro_f1_mean": v["macro_f1"].mean(), "reference_macro_f1_mean": ref["macro_f1"].mean(),
            "n_files": cell["source"].nunique()}


def ablation(records: pd.DataFrame, reference: str) -> pd.DataFrame:
    """Every variant ``<reference>_<...>`` against the reference, paired over (fold, seed); Holm
    over the variants of each dataset x protocol x selection x level."""
    final = final_records(records)
    rows = []
    for variant in sorted(m for m in final["method"].unique() if m.startswith(f"{reference}_")):
        for key, cell in final[final["method"].isin([variant, reference])].groupby(KEY[1:], sort=True):
            if (cell["method"] == variant).any() and (cell["method"] == reference).any():
                rows.append(_ablation_row(variant, reference, key, cell))
    table = pd.DataFrame(rows)
    if not table.empty:
        table["p_holm_accuracy"] = stats.holm_within(table, KEY[1:], "p_accuracy")
    return conform(table, "ablation")


def transfer(records: pd.DataFrame) -> pd.DataFrame:
    final = final_records(records)
    table = summarise(final, ["method", "pretrain_data"] + KEY[1:])
    if not table.empty:
        table["in_domain"] = [d in str(p).split(";") for d, p in zip(table["dataset"], table["pretrain_data"])]
    return conform(table, "transfer")


def label_efficiency(records: pd.DataFrame) -> pd.DataFrame:
    df = records[records["encoder_kind"] == "final"]
    keys = KEY + ["train_fraction"]
    table = summarise(df, keys)
    if not table.empty:
        table["train_percent"] = table["train_fraction"] * 100
        nv = df.groupby(keys)["n_train_videos"].apply(lambda s: pd.to_numeric(s).mean())
        table = table.merge(nv.rename("n_train_videos_mean").reset_index(), on=keys, how="left")
    return conform(table, "label_efficiency")


def convergence(records: pd.DataFrame) -> pd.DataFrame:
    df = records[np.isclose(records["train_fraction"].astype(float), 1.0) & records["encoder_epoch"].notna()]
    keys = KEY + ["encoder_epoch"]
    table = summarise(df, keys)
    if not table.empty:
        fin = df.groupby(keys)["encoder_kind"].apply(lambda s: bool((s == "final").any()))
        table = table.merge(fin.rename("includes_final").reset_index(), on=keys, how="left")
    return conform(table, "convergence")


def _class_rows(key: tuple, g: pd.DataFrame) -> list[dict[str, Any]]:
    total, _ = _pooled(g)
    pp, pr, pf = _cm_prf(total)
    rows = []
    for i, c in enumerate(g["_classes"].iloc[0]):
        vals = {s: np.array([pc.get(c, {}).get(s, np.nan) for pc in g["_per_class"]], dtype=float)
                for s in ("precision", "recall", "f1", "support")}
        scores = {s: v for s, v in vals.items() if s != "support"}
        rows.append({**dict(zip(KEY, key)), "class": c, "n": len(g),
                     **{f"{s}_mean": np.nanmean(v) if np.isfinite(v).any() else np.nan for s, v in scores.items()},
                     **{f"{s}_std": pd.Series(v).std() for s, v in scores.items()},
                     "support_total": int(np.nansum(vals["support"])),
                     "pooled_precision": pp[i], "pooled_recall": pr[i], "pooled_f1": pf[i]})
    return rows


def per_class(records: pd.DataFrame) -> pd.DataFrame:
    rows = [r for key, g in final_records(records).groupby(KEY, sort=True) for r in _class_rows(key, g)]
    return conform(pd.DataFrame(rows), "per_class")

"""Figures of ``results/tables`` (headless; each figure as PNG and SVG).

``python -m hico plot --tables results/tables --out-dir results/figures [--metrics-dir runs/eval]
[--reference hico] [--encoders NAME=ENCODER.pt ... --data DATASET_DIR [--image-size 224] [--max-frames 8]]``

- ``main_comparison``: dot-and-interval plot (:mod:`hico.report.comparison_figure`): one panel per
  dataset x protocol x level, methods sorted by mean accuracy (epoch / C chosen on the validation
  split), the (fold, seed) cells as points, the 95 % patient-bootstrap CI, ``random_init`` and
  the majority-class rate as reference lines, the axis zoomed to the data;
- ``main_comparison_paper_protocol``: the optimistic released protocol (best test epoch,
  pooled over folds; one point per seed) with the published numbers as open diamonds;
- ``convergence``: downstream accuracy of encoders saved after k pretraining epochs;
- ``label_efficiency``: accuracy against the share of training videos (log axis);
- ``confusion_<dataset>_<protocol>``: confusion matrices summed over folds and seeds,
  row-normalised, with counts;
- ``finetune_curves`` (with ``--metrics-dir``): validation accuracy per fine-tuning epoch;
- ``tsne`` (with ``--encoders`` and ``--data``): t-SNE of frozen pooled features per method.

A method whose pretraining saw labels is named ``<method> [labels 100%]`` (its
``pretrain_labelled_fraction``) and drawn as a square in the comparison figures. Matplotlib
only: the intervals come from the tables (patient bootstrap), not from a plotting library's
estimator, so seaborn has nothing to add here.
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from hico import layout  # noqa: E402
from hico.report.comparison_figure import ALPHA, Panel, draw_figure  # noqa: E402
from hico.report.figure_style import (  # noqa: E402
    DEFAULT_STYLE,
    Style,
    label_suffix,
    majority_rate,
    off_axis_note,
    zoom_with_line,
)
from hico.report.figure_style import placeholder as _placeholder  # noqa: E402
from hico.report.figure_style import save_figure as _save  # noqa: E402
from hico.report.records import read_metrics, read_metrics_list  # noqa: E402

log = logging.getLogger(__name__)

__all__ = ["Style", "main"]


def _read(tables: Path, name: str) -> pd.DataFrame | None:
    if name not in layout.TABLES:
        raise ValueError(f"{name!r} is not a table of hico.layout.TABLES")
    path = tables / f"{name}.csv"
    if not path.exists():
        log.info(f"[plot] skipped {name}: {path} does not exist (run `python -m hico aggregate` first)")
        return None
    df = pd.read_csv(path, keep_default_na=True)
    if df.empty:
        log.info(f"[plot] skipped {name}: {path} has no rows")
        return None
    return df


def _num(df: pd.DataFrame, col: str) -> pd.Series:
    """A numeric column of a table, NaN where a table of an older report lacks it."""
    return pd.to_numeric(df[col], errors="coerce") if col in df else pd.Series(np.nan, index=df.index)


def _final_cells(records: pd.DataFrame | None, selection: str) -> pd.DataFrame:
    """The records.csv rows behind main_comparison's rows of one selection."""
    if records is None:
        return pd.DataFrame(columns=["method", "dataset", "protocol", "level", "seed", "accuracy",
                                     "confusion_matrix"])
    keep = (records["encoder_kind"] == "final") & np.isclose(records["train_fraction"].astype(float), 1.0)
    return records[keep & (records["selection"] == selection)]


def _in(cells: pd.DataFrame, dataset: str, protocol: str, level: str) -> pd.DataFrame:
    return cells[(cells["dataset"] == dataset) & (cells["protocol"] == protocol) & (cells["level"] == level)]


def _panel_title(rows: pd.DataFrame) -> str:
    dataset, protocol, level = rows.iloc[0][["dataset", "protocol", "level"]]
    folds, seeds = int(_num(rows, "n_folds").max()), int(_num(rows, "n_seeds").max())
    return f"{dataset} / {protocol} / {level} level ({folds} folds × {seeds} seeds)"


def _main_panel(rows: pd.DataFrame, cells: pd.DataFrame) -> Panel:
    """One dataset x protocol x level of the validation-selected main comparison."""
    r = rows.set_index("method")
    ci = _num(r, "accuracy_ci_low").notna() & _num(r, "accuracy_ci_high").notna()
    mean, std = _num(r, "accuracy_mean"), _num(r, "accuracy_std")
    table = pd.DataFrame({"value": mean, "ci": ci,
                          "low": _num(r, "accuracy_ci_low").where(ci, mean - std),
                          "high": _num(r, "accuracy_ci_high").where(ci, mean + std),
                          "labelled": _num(r, "pretrain_labelled_fraction"),
                          "significant": _num(r, "p_holm_accuracy") < ALPHA, "published": np.nan})
    points = {m: g["accuracy"].to_numpy(float) for m, g in cells.groupby("method")}
    return Panel(_panel_title(rows), table, points, majority_rate(cells))


def _paper_panel(rows: pd.DataFrame, cells: pd.DataFrame, entries: list[dict]) -> Panel:
    """The released protocol's pooled accuracy (points: each seed's fold-summed matrix)."""
    r = rows.set_index("method")
    table = pd.DataFrame({"value": _num(r, "pooled_accuracy"), "ci": False, "low": np.nan, "high": np.nan,
                          "labelled": _num(r, "pretrain_labelled_fraction"), "significant": False,
                          "published": _num(r, "paper_accuracy")})
    points = {e["method"]: np.array([np.trace(np.asarray(c)) / max(np.sum(c), 1) for c in e["per_seed"].values()])
              for e in entries}
    return Panel(_panel_title(rows), table, points, majority_rate(cells))


def _panel_grid(df: pd.DataFrame, make) -> list[list[Panel | None]]:
    """Rows: dataset x protocol; columns: levels; ``make(rows, dataset, protocol, level)``."""
    levels = [lv for lv in ("frame", "video") if lv in set(df["level"])]
    grid = []
    for dataset, protocol in sorted(set(zip(df["dataset"], df["protocol"]))):
        row = []
        for level in levels:
            sub = df[(df["dataset"] == dataset) & (df["protocol"] == protocol) & (df["level"] == level)]
            row.append(make(sub, dataset, protocol, level) if len(sub) else None)
        grid.append(row)
    return grid


def _confusion_entries(tables: Path, selection: str, level: str) -> list[dict]:
    path = tables / layout.CONFUSION_MATRICES
    if not path.exists():
        return []
    return [e for e in json.loads(path.read_text()) if e["selection"] == selection and e["level"] == level]


MAIN_PARTS = ("selected", "paper_protocol")


def plot_main_comparison(tables: Path, out_dir: Path, style: Style = DEFAULT_STYLE,
                         parts: tuple[str, ...] = MAIN_PARTS) -> list[Path]:
    """``main_comparison`` (part ``selected``) and ``main_comparison_paper_protocol`` (part
    ``paper_protocol``), or one of them."""
    df = _read(tables, "main_comparison")
    if df is None:
        return (_placeholder(out_dir, layout.FIG_MAIN, "no results yet: main_comparison.csv is missing or empty")
                if "selected" in parts else [])
    records = _read(tables, "records")
    out = []
    sel = df[df["selection"] == "selected"]
    if "selected" in parts and len(sel):
        cells = _final_cells(records, "selected")
        grid = _panel_grid(sel, lambda rows, d, p, lv: _main_panel(rows, _in(cells, d, p, lv)))
        out += draw_figure(grid, style, "Main comparison (epoch / C chosen on the validation split): mean over "
                           "folds × seeds, 95 % patient-bootstrap CI", out_dir, layout.FIG_MAIN)
    elif "selected" in parts:
        out += _placeholder(out_dir, layout.FIG_MAIN, "no validation-selected results in main_comparison.csv")
    pp = df[(df["selection"] == "paper_protocol") & (df["level"] == "frame")]
    if "paper_protocol" in parts and len(pp):
        cells = _final_cells(records, "paper_protocol")
        entries = _confusion_entries(tables, "paper_protocol", "frame")
        grid = _panel_grid(pp, lambda rows, d, p, lv: _paper_panel(
            rows, _in(cells, d, p, lv), [e for e in entries if (e["dataset"], e["protocol"]) == (d, p)]))
        out += draw_figure(grid, style, "Released protocol, OPTIMISTIC (epoch chosen on the test fold): accuracy of "
                           "the confusion matrix summed over folds\n(points: one per seed), next to published numbers",
                           out_dir, layout.FIG_MAIN_PAPER, points_label="seed (folds summed)", significance=False)
    return out


def _curves(ax, sub: pd.DataFrame, x: str, style: Style, colors: dict, legend: dict[str, Any]) -> list[float]:
    """One line (mean ± std band) per method of one panel; the y values drawn."""
    drawn: list[float] = []
    for method in style.order(sub["method"]):
        s = sub[sub["method"] == method].sort_values(x)
        xs, ys = s[x].to_numpy(float), s["accuracy_mean"].to_numpy(float)
        sd = s["accuracy_std"].fillna(0).to_numpy(float)
        label = method + (label_suffix(_num(s, "pretrain_labelled_fraction").iloc[0])
                          if "pretrain_labelled_fraction" in s else "")
        legend[label] = ax.plot(xs, ys, marker="o", color=colors[method], label=label,
                                linewidth=2.2 if method == style.reference else 1.4)[0]
        ax.fill_between(xs, ys - sd, ys + sd, color=colors[method], alpha=0.15)
        drawn += [*(ys - sd), *(ys + sd)]
    return drawn


def _lines(df: pd.DataFrame, x: str, out_dir: Path, name: str, title: str, xlabel: str, logx: bool = False,
           flat_at: float | None = None, style: Style = DEFAULT_STYLE,
           chance: dict[tuple[str, str], float | None] | None = None) -> list[Path]:
    """One panel per dataset/protocol, one line per method measured at two or more ``x`` values.

    A method measured only at ``x == flat_at`` (a control at pretraining epoch 0) is drawn as a
    dashed level across the panel; other single points (a method without the variants) are left out.
    ``chance`` (per dataset, protocol): the majority-class rate, dotted. The y axis is zoomed to the data.
    """
    df = df[(df["selection"] == "selected") & (df["level"] == "frame")]
    if df.empty:
        log.info(f"[plot] skipped {name}: no validation-selected frame-level rows")
        return []
    n_x = df.groupby(["dataset", "protocol", "method"])[x].transform("nunique")
    is_flat = (n_x == 1) & (df[x] == flat_at) if flat_at is not None else n_x < 0
    curves = df[n_x > 1]
    panels = sorted(set(zip(curves["dataset"], curves["protocol"])))
    if not panels:
        log.info(f"[plot] skipped {name}: no method has more than one {x} value")
        return []
    flats, colors = df[is_flat], style.colors(df["method"])
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels) + 1.6, 3.9), squeeze=False,
                             layout="constrained")
    legend: dict[str, Any] = {}
    for c, (dataset, protocol) in enumerate(panels):
        ax = axes[0][c]
        sub = curves[(curves["dataset"] == dataset) & (curves["protocol"] == protocol)]
        drawn = _curves(ax, sub, x, style, colors, legend)
        for _, row in flats[(flats["dataset"] == dataset) & (flats["protocol"] == protocol)].iterrows():
            legend[f"{row['method']} (no pretraining)"] = ax.axhline(
                row["accuracy_mean"], color=colors[row["method"]], linestyle="--", linewidth=1.2)
            drawn.append(row["accuracy_mean"])
        lo, hi, on_axis = zoom_with_line(drawn, rate := (chance or {}).get((dataset, protocol)))
        if on_axis:
            legend["majority class"] = ax.axhline(rate, color="0.15", linestyle=":", linewidth=1.2)
        elif rate is not None:
            off_axis_note(ax, rate, lo, axis="y")
        if logx:
            ax.set_xscale("log")
            ticks = sorted(set(sub[x]))
            ax.set_xticks(ticks)
            ax.set_xticklabels([f"{t:g}" for t in ticks])
            ax.minorticks_off()
        ax.set_ylim(lo, hi)
        ax.grid(alpha=0.3)
        ax.set_xlabel(xlabel)
        ax.set_title(f"{dataset} / {protocol}")
        if c == 0:
            ax.set_ylabel("accuracy (frame, mean ± std)")
    fig.legend(list(legend.values()), list(legend), loc="outside right center", frameon=False)
    fig.suptitle(title)
    return _save(fig, out_dir, name)


def _chance_by_panel(tables: Path) -> dict[tuple[str, str], float | None]:
    """The frame-level majority-class rate of every dataset x protocol (records.csv)."""
    cells = _final_cells(_read(tables, "records"), "selected")
    cells = cells[cells["level"] == "frame"]
    return {(d, p): majority_rate(g) for (d, p), g in cells.groupby(["dataset", "protocol"])}


def _curve_figure(tables: Path, out_dir: Path, table: str, x: str, figure: str, title: str, xlabel: str,
                  style: Style, **line_options) -> list[Path]:
    df = _read(tables, table)
    if df is None:
        return []
    return _lines(df, x, out_dir, figure, title, xlabel, style=style, chance=_chance_by_panel(tables), **line_options)


def plot_convergence(tables: Path, out_dir: Path, style: Style = DEFAULT_STYLE) -> list[Path]:
    return _curve_figure(tables, out_dir, "convergence", "encoder_epoch", layout.FIG_CONVERGENCE,
                         "Downstream accuracy of encoders saved after k pretraining epochs", "pretraining epoch",
                         style, flat_at=0)


def plot_label_efficiency(tables: Path, out_dir: Path, style: Style = DEFAULT_STYLE) -> list[Path]:
    return _curve_figure(tables, out_dir, "label_efficiency", "train_percent", layout.FIG_LABEL_EFFICIENCY,
                         "Label efficiency: accuracy vs share of the fold's training videos",
                         "training videos used (%)", style, logx=True)


def _pairs(entries: list[dict]) -> list[tuple[str, str]]:
    return sorted({(e["dataset"], e["protocol"]) for e in entries})


def confusion_pairs(tables: Path) -> list[tuple[str, str]]:
    """The (dataset, protocol id) pairs with a confusion figure: one per pair of the tables."""
    return _pairs(_confusion_entries(tables, "selected", "frame"))


def plot_confusion(tables: Path, out_dir: Path, style: Style = DEFAULT_STYLE,
                   pairs: list[tuple[str, str]] | None = None) -> list[Path]:
    """A confusion figure per (dataset, protocol id) of ``pairs`` (default: every pair)."""
    path = tables / layout.CONFUSION_MATRICES
    if not path.exists():
        log.info(f"[plot] skipped confusion matrices: {path} does not exist")
        return []
    entries = _confusion_entries(tables, "selected", "frame")
    out = []
    for dataset, protocol in (_pairs(entries) if pairs is None else pairs):
        by_method = {e["method"]: e for e in entries if e["dataset"] == dataset and e["protocol"] == protocol}
        group = [by_method[m] for m in style.order(by_method)]
        k = len(group[0]["classes"])
        ncols = min(4, len(group))
        nrows = int(np.ceil(len(group) / ncols))
        size = max(2.6, 0.55 * k + 1.4)
        fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols + 0.6, (size + 0.6) * nrows + 0.4), squeeze=False,
                                 layout="constrained")
        for ax in axes.ravel()[len(group):]:
            ax.axis("off")
        for ax, e in zip(axes.ravel(), group):
            cm = np.asarray(e["matrix"], dtype=float)
            norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
            ax.imshow(norm, vmin=0, vmax=1, cmap="Blues")
            if k <= 12:
                for i in range(k):
                    for j in range(k):
                        ax.text(j, i, f"{int(cm[i, j])}", ha="center", va="center", fontsize=8,
                                color="white" if norm[i, j] > 0.6 else "black")
            ax.set_xticks(range(k))
            ax.set_yticks(range(k))
            ax.set_xticklabels(e["classes"], rotation=45, ha="right", fontsize=8)
            ax.set_yticklabels(e["classes"], fontsize=8)
            ax.set_xlabel("predicted")
            ax.set_ylabel("true")
            acc = np.trace(cm) / max(cm.sum(), 1)
            ax.set_title(f"{e['method']}\npooled acc {acc:.3f} ({e['n_folds']} folds × {e['n_seeds']} seeds)", fontsize=9)
        fig.suptitle(f"{dataset} / {protocol}: confusion matrices summed over folds\n"
                     "(colour: share of the true class; numbers: counts)", fontsize=10)
        out += _save(fig, out_dir, layout.confusion_figure(dataset, protocol))
    return out


def plot_finetune_curves(metrics: Path | list[Path], out_dir: Path, style: Style = DEFAULT_STYLE) -> list[Path]:
    """Validation accuracy per fine-tuning epoch, from a folder of metrics.json or a list of them."""
    metrics_dir = metrics
    paths = sorted(Path(metrics).rglob("metrics.json")) if isinstance(metrics, (str, Path)) else sorted(metrics)
    rows = []
    for path in paths:
        m = read_metrics(path)
        hist = (m.get("selection") or {}).get("history")
        if not hist or m["encoder_kind"] != "final" or float(m["train_fraction"]) != 1.0:
            continue
        for h in hist:
            rows.append({"method": m["method"], "dataset": m["dataset"], "protocol": m["protocol_id"],
                         "epoch": h["epoch"], "val_accuracy": h["val_accuracy"], "train_loss": h["train_loss"]})
    if not rows:
        log.info(f"[plot] skipped finetune_curves: no fine-tuning histories under {metrics_dir}")
        return []
    df = pd.DataFrame(rows).groupby(["method", "dataset", "protocol", "epoch"]).mean().reset_index()
    panels = sorted({(d, p) for d, p in zip(df["dataset"], df["protocol"])})
    colors = style.colors(df["method"])
    fig, axes = plt.subplots(2, len(panels), figsize=(4.6 * len(panels) + 1.6, 6.4), squeeze=False, sharex="col",
                             layout="constrained")
    for c, (dataset, protocol) in enumerate(panels):
        sub = df[(df["dataset"] == dataset) & (df["protocol"] == protocol)]
        for method in style.order(sub["method"]):
            s = sub[sub["method"] == method]
            axes[0][c].plot(s["epoch"], s["val_accuracy"], color=colors[method], label=method)
            axes[1][c].plot(s["epoch"], s["train_loss"], color=colors[method], label=method)
        axes[0][c].set_title(f"{dataset} / {protocol}")
        axes[0][c].set_ylabel("validation accuracy")
        axes[1][c].set_ylabel("training loss")
        axes[1][c].set_xlabel("fine-tuning epoch")
        for ax in axes[:, c]:
            ax.grid(alpha=0.3)
    legend = {}
    for ax in axes[0]:
        legend.update(zip(*reversed(ax.get_legend_handles_labels())))
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    order = style.order(legend)
    fig.legend([legend[m] for m in order], order, loc="outside right center", frameon=False)
    fig.suptitle("Fine-tuning: mean over folds × seeds per epoch (the epoch is selected on validation accuracy)")
    return _save(fig, out_dir, layout.FIG_FINETUNE_CURVES)


def plot_tsne(encoders: dict[str, str], data: str, out_dir: Path, image_size: int, max_frames: int,
              max_points: int = 1500, seed: int = 0) -> list[Path]:
    """t-SNE of frozen pooled c5 features of every video of ``data``, one panel per method.

    Each value of ``encoders`` is a feature file of ``hico features`` (``.npz``, BN mode frozen:
    read as it is, no torch; its own image size holds) or an encoder (``.pt``: its features are
    computed here at ``image_size``). Up to ``max_frames`` evenly spaced frames per video.
    """
    from sklearn.manifold import TSNE

    from hico.data.standard import load_dataset

    ds = load_dataset(data)
    ids = ds.manifest["video_id"].tolist()
    n = len(encoders)
    ncols = min(3, n)
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols + 1.4, 4.0 * nrows + 0.4), squeeze=False,
                             layout="constrained")
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    class_colors = plt.get_cmap("tab10")
    for ax, (name, path) in zip(axes.ravel(), encoders.items()):
        f = _tsne_features(path, ds, ids, image_size, max_frames, seed)
        x, y = f.features, f.labels
        if len(x) > max_points:
            keep = np.random.default_rng(seed).choice(len(x), max_points, replace=False)
            x, y = x[keep], y[keep]
        x = (x - x.mean(0)) / (x.std(0) + 1e-6)
        perplexity = float(max(2.0, min(30.0, (len(x) - 1) / 3)))
        emb = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(x)
        for k, cname in enumerate(ds.classes):
            sel = y == k
            ax.scatter(emb[sel, 0], emb[sel, 1], s=10, alpha=0.75, color=class_colors(k % 10), label=cname)
        ax.set_title(f"{name} ({len(x)} frames)")
        ax.set_xticks([])
        ax.set_yticks([])
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right center", frameon=False, title="class")
    fig.suptitle(f"t-SNE of frozen pooled features on {ds.name}")
    return _save(fig, out_dir, layout.FIG_TSNE)


def _tsne_features(path: str, ds, ids: list[str], image_size: int, max_frames: int, seed: int):
    """The frozen features of ``ids`` (manifest order), up to ``max_frames`` per video: from a
    feature file checked against ``ds`` (never one of another dataset), or from an encoder."""
    from hico.evaluation.features import FeatureFileError, block_name, dataset_sha256, read_features
    from hico.evaluation.splits import select_videos

    if not str(path).endswith(".pt"):
        features = read_features(path)
        if features.meta["key"].get("bn") != "frozen" or features.meta["key"].get("dataset_sha256") != dataset_sha256(ds):
            raise FeatureFileError(f"{path} does not hold the frozen features of {ds.root} (its dataset or BN mode "
                                   "differ); recompute it with `python -m hico features`")
        return _evenly_per_video(select_videos(features.block(block_name("frozen")), ids), max_frames)
    import torch

    from hico.evaluation.extract import extract_features
    from hico.models.backbone import load_encoder

    torch.manual_seed(seed)
    return extract_features(load_encoder(path), ds, ids, image_size, max_frames)


def _evenly_per_video(f, max_frames: int):
    """At most ``max_frames`` evenly spaced rows of each video (the frame rule of the extraction)."""
    from hico.evaluation.splits import FrameFeatures, frame_indices

    rows = np.arange(len(f.video_ids))
    keep = np.concatenate([rows[f.video_ids == v][frame_indices(int((f.video_ids == v).sum()), max_frames)]
                           for v in dict.fromkeys(f.video_ids.tolist())] or [rows[:0]])
    return FrameFeatures(f.features[keep], f.labels[keep], f.video_ids[keep])


def _parse_encoders(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise SystemExit(f"--encoders expects NAME=PATH, got {pair!r}")
        name, path = pair.split("=", 1)
        if not Path(path).exists():
            raise SystemExit(f"--encoders {name}: {path} does not exist")
        out[name] = path
    return out


def _run_methods(tables: Path | None) -> tuple[str, ...]:
    """Every method of main_comparison.csv: the methods whose colours every figure shares."""
    path = tables / "main_comparison.csv" if tables is not None else None
    if path is None or not path.exists():
        return ()
    return tuple(pd.read_csv(path, usecols=["method"])["method"].astype(str))


def _figure_tasks(wanted: set[str], tables: Path | None, out_dir: Path, style: Style,
                  a: argparse.Namespace) -> list[Callable[[], list[Path]]]:
    """The figures of ``wanted`` as independent drawing tasks (a task per figure where a group
    has several), in the order they were always drawn."""
    tasks: list[Callable[[], list[Path]]] = []
    if layout.FIG_MAIN in wanted:
        tasks += [partial(plot_main_comparison, tables, out_dir, style, parts=(part,)) for part in MAIN_PARTS]
    for name, plot in ((layout.FIG_CONVERGENCE, plot_convergence), (layout.FIG_LABEL_EFFICIENCY, plot_label_efficiency)):
        if name in wanted:
            tasks.append(partial(plot, tables, out_dir, style))
    if "confusion" in wanted:
        pairs = confusion_pairs(tables)
        tasks += ([partial(plot_confusion, tables, out_dir, style, pairs=[pair]) for pair in pairs]
                  or [partial(plot_confusion, tables, out_dir, style)])  # it says why there is none
    if a.metrics_list and layout.FIG_FINETUNE_CURVES in wanted:
        tasks.append(partial(plot_finetune_curves, read_metrics_list(a.metrics_list), out_dir, style))
    elif a.metrics_dir and layout.FIG_FINETUNE_CURVES in wanted:
        if Path(a.metrics_dir).is_dir():
            tasks.append(partial(plot_finetune_curves, Path(a.metrics_dir), out_dir, style))
        else:
            log.info(f"[plot] skipped finetune_curves: {a.metrics_dir} is not a folder")
    encoders = _parse_encoders(a.encoders)
    if layout.FIG_TSNE in wanted and encoders and a.data:
        tasks.append(partial(plot_tsne, encoders, a.data, out_dir, a.image_size, a.max_frames))
    elif layout.FIG_TSNE in wanted:
        log.info("[plot] skipped tsne: give --encoders NAME=PATH ... and --data DATASET_DIR to draw it")
    return tasks


def _run(task: Callable[[], list[Path]]) -> list[Path]:
    return task()


def draw(tasks: list[Callable[[], list[Path]]], jobs: int = 1) -> list[Path]:
    """Run the drawing tasks (picklable partials), ``jobs`` at a time in forked processes (each
    figure is drawn from the tables alone, so the files are the same whatever ``jobs`` is); the
    files they wrote, in task order. Where fork is unavailable (Windows) they run one after the
    other."""
    if jobs <= 1 or len(tasks) <= 1 or "fork" not in multiprocessing.get_all_start_methods():
        return [path for task in tasks for path in task()]
    with multiprocessing.get_context("fork").Pool(min(jobs, len(tasks))) as pool:
        done = pool.map(_run, tasks, chunksize=1)
    return [path for paths in done for path in paths]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="hico plot", description="results/tables -> results/figures (PNG + SVG)")
    p.add_argument("--tables", help="folder written by `python -m hico aggregate` (needed but for tsne)")
    p.add_argument("--out-dir", required=True)
    p.add_argument("--metrics-dir", help="metrics.json folder, for fine-tuning curves")
    p.add_argument("--metrics-list", help="a text file of metrics.json paths (the workflow's), instead of --metrics-dir")
    p.add_argument("--encoders", "--features", nargs="+", default=[],
                   help="NAME=FEATURES.npz (of `hico features`, no torch needed) or NAME=ENCODER.pt pairs for the t-SNE")
    p.add_argument("--data", help="standard dataset folder for the t-SNE")
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--max-frames", type=int, default=8, help="frames per video in the t-SNE")
    p.add_argument("--reference", default="hico", help="method drawn first and bold (default hico)")
    p.add_argument("--figures", nargs="+", choices=layout.FIGURE_GROUPS, default=list(layout.FIGURE_GROUPS),
                   help="draw only these (the workflow runs tsne as its own job, beside the evaluations)")
    p.add_argument("--jobs", type=int, default=1,
                   help="figures drawn by this many processes at once (default 1; the same files for any number)")
    p.add_argument("--expect", nargs="+", default=[],
                   help="figure names a workflow declared: any left undrawn get a placeholder saying so")
    a = p.parse_args(argv)
    tables, out_dir, wanted = Path(a.tables) if a.tables else None, Path(a.out_dir), set(a.figures)
    if wanted - {layout.FIG_TSNE} and tables is None:
        p.error("--tables is required for every figure but tsne")
    style = Style(a.reference, _run_methods(tables))
    tasks = _figure_tasks(wanted, tables, out_dir, style, a)
    written = draw(tasks, a.jobs)
    drawn = {path.stem for path in written}
    for name in a.expect:
        if name not in drawn:
            written += _placeholder(out_dir, name, f"nothing to draw for {name}: no matching rows in {tables}")
    log.info(f"[plot] {len(written)} files in {out_dir}")
    return 0

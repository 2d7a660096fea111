"""Figures of ``results/tables`` (headless; each figure as PNG and SVG).

``python -m hico plot --tables results/tables --out-dir results/figures [--metrics-dir runs/eval]
[--encoders NAME=ENCODER.pt ... --data DATASET_DIR [--image-size 224] [--max-frames 8]]``

- ``main_comparison``: mean +- std (folds x seeds) accuracy and macro-F1 per method, one panel
  per dataset x protocol, epoch/C chosen on the validation split (``selection = selected``);
- ``main_comparison_paper_protocol``: the optimistic released protocol (best test epoch,
  pooled over folds) with the published numbers as black diamonds;
- ``convergence``: downstream accuracy of encoders saved after k pretraining epochs;
- ``label_efficiency``: accuracy against the share of training videos (log axis);
- ``confusion_<dataset>_<protocol>``: confusion matrices summed over folds and seeds,
  row-normalised, with counts;
- ``finetune_curves`` (with ``--metrics-dir``): validation accuracy per fine-tuning epoch;
- ``tsne`` (with ``--encoders`` and ``--data``): t-SNE of frozen pooled features per method.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

plt.rcParams.update({"font.size": 10, "axes.titlesize": 10, "axes.labelsize": 10, "legend.fontsize": 9,
                     "svg.fonttype": "none", "figure.dpi": 100})


def _save(fig, out_dir: Path, name: str) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for ext in ("png", "svg"):
        path = out_dir / f"{name}.{ext}"
        tmp = out_dir / f".{name}.tmp.{ext}"
        fig.savefig(tmp, dpi=150, bbox_inches="tight")
        tmp.replace(path)
        paths.append(path)
    plt.close(fig)
    print(f"[plot] wrote {paths[0]} (+ .svg)")
    return paths


#: every method of the run (set by :func:`main` from main_comparison.csv) so colours agree across figures
ALL_METHODS: set[str] = set()


def _colors(methods: list[str]) -> dict[str, tuple]:
    """A stable colour per method; the reference method (hico) always gets the first colour."""
    ordered = sorted(set(methods) | ALL_METHODS, key=lambda m: (not m.startswith("hico"), m))
    cmap = plt.get_cmap("tab10" if len(ordered) <= 10 else "tab20")
    return {m: cmap(i % cmap.N) for i, m in enumerate(ordered)}


def _read(tables: Path, name: str) -> pd.DataFrame | None:
    path = tables / f"{name}.csv"
    if not path.exists():
        print(f"[plot] skipped {name}: {path} does not exist (run `python -m hico aggregate` first)")
        return None
    df = pd.read_csv(path, keep_default_na=True)
    if df.empty:
        print(f"[plot] skipped {name}: {path} has no rows")
        return None
    return df


def _method_order(methods) -> list[str]:
    return sorted(set(methods), key=lambda m: (not m.startswith("hico"), m))


def _placeholder(out_dir: Path, name: str, message: str) -> list[Path]:
    fig, ax = plt.subplots(figsize=(6, 2))
    ax.axis("off")
    ax.text(0.5, 0.5, message, ha="center", va="center", wrap=True)
    return _save(fig, out_dir, name)


def _bars(df: pd.DataFrame, out_dir: Path, name: str, value: str, title: str, paper: bool = False) -> list[Path]:
    """Grouped bars: one row per dataset x protocol, one column per level (frame, video), bars =
    methods, two metrics side by side."""
    panels = sorted({(d, p) for d, p in zip(df["dataset"], df["protocol"])})
    levels = [lv for lv in ("frame", "video") if lv in set(df["level"])]
    methods = _method_order(df["method"])
    colors = _colors(methods)
    width_per = max(2.8, 0.55 * len(methods) + 1.2)
    fig, grid = plt.subplots(len(panels), len(levels), figsize=(max(7.0, width_per * len(levels)),
                                                                3.6 * len(panels) + 0.8),
                             squeeze=False, sharey=True, layout="constrained")
    axes = grid.T  # axes[level][panel]
    metrics = ([(value, "accuracy"), ("macro_f1_mean", "macro-F1")] if value == "accuracy_mean"
               else [(value, "accuracy (pooled over folds)")])
    bar_w = 0.8 / len(metrics)
    for r, level in enumerate(levels):
        for c, (dataset, protocol) in enumerate(panels):
            ax = axes[r][c]
            sub = df[(df["dataset"] == dataset) & (df["protocol"] == protocol) & (df["level"] == level)]
            sub = sub.set_index("method").reindex([m for m in methods if m in set(sub["method"])])
            x = np.arange(len(sub))
            for j, (col, _label) in enumerate(metrics):
                std_col = col.replace("_mean", "_std")
                err = sub[std_col].fillna(0).to_numpy() if std_col in sub and std_col != col else None
                xs, vals = x + (j - (len(metrics) - 1) / 2) * bar_w, sub[col].to_numpy(float)
                ax.bar(xs, vals, bar_w * 0.95, yerr=err, capsize=3, color=[colors[m] for m in sub.index],
                       alpha=1.0 if j == 0 else 0.45, edgecolor="black", linewidth=0.5)
                for xi, v in zip(xs, vals):
                    if np.isfinite(v) and v > 0.12:
                        ax.text(xi, 0.03, f"{v:.3f}", rotation=90, ha="center", va="bottom", fontsize=7,
                                color="white" if j == 0 else "black")
            if paper and "paper_accuracy" in sub:
                has = sub["paper_accuracy"].notna().to_numpy()
                if has.any():
                    ax.scatter(x[has], sub["paper_accuracy"].to_numpy()[has], marker="D", color="black", zorder=5)
            ax.set_xticks(x)
            ax.set_xticklabels(sub.index, rotation=35, ha="right")
            ax.set_ylim(0, 1.05)
            ax.grid(axis="y", alpha=0.3)
            n = int(sub["n"].max()) if "n" in sub and len(sub) else 0
            ax.set_title(f"{dataset} / {protocol}\n{level} level (n={n} folds x seeds)")
            if r == 0:
                ax.set_ylabel("score")
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles = [Patch(facecolor="0.35", edgecolor="black", label=metrics[0][1])]
    if len(metrics) > 1:
        handles.append(Patch(facecolor="0.35", alpha=0.45, edgecolor="black", label=metrics[1][1]))
    if value.endswith("_mean"):
        handles.append(Line2D([], [], color="black", marker="_", markersize=10, linestyle="none", label="± std"))
    if paper:
        handles.append(Line2D([], [], color="black", marker="D", linestyle="none", label="published"))
    fig.suptitle(title)
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), frameon=False)
    return _save(fig, out_dir, name)


def plot_main_comparison(tables: Path, out_dir: Path) -> list[Path]:
    df = _read(tables, "main_comparison")
    if df is None:
        return _placeholder(out_dir, "main_comparison", "no results yet: main_comparison.csv is missing or empty")
    out = []
    sel = df[df["selection"] == "selected"]
    if len(sel):
        out += _bars(sel, out_dir, "main_comparison", "accuracy_mean",
                     "Main comparison: mean ± std over folds × seeds (epoch / C chosen on the validation split)")
    else:
        out += _placeholder(out_dir, "main_comparison", "no validation-selected results in main_comparison.csv")
    pp = df[(df["selection"] == "paper_protocol") & (df["level"] == "frame")]
    if len(pp):
        out += _bars(pp, out_dir, "main_comparison_paper_protocol", "pooled_accuracy",
                     "Released protocol, OPTIMISTIC (epoch chosen on the test fold):\n"
                     "accuracy of the confusion matrix summed over folds, next to published numbers", paper=True)
    return out


def _lines(df: pd.DataFrame, x: str, out_dir: Path, name: str, title: str, xlabel: str, logx: bool = False,
           flat_at: float | None = None) -> list[Path]:
    """One panel per dataset/protocol, one line per method measured at two or more ``x`` values.

    A method measured only at ``x == flat_at`` (a control at pretraining epoch 0) is drawn as a
    dashed level across the panel; other single points (a method without the variants) are left out.
    """
    df = df[(df["selection"] == "selected") & (df["level"] == "frame")]
    if df.empty:
        print(f"[plot] skipped {name}: no validation-selected frame-level rows")
        return []
    n_x = df.groupby(["dataset", "protocol", "method"])[x].transform("nunique")
    is_flat = (n_x == 1) & (df[x] == flat_at) if flat_at is not None else n_x < 0
    curves = df[n_x > 1]
    panels = sorted(set(zip(curves["dataset"], curves["protocol"])))
    if not panels:
        print(f"[plot] skipped {name}: no method has more than one {x} value")
        return []
    flats = df[is_flat]
    colors = _colors(list(df["method"]))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels) + 1.6, 3.9), squeeze=False,
                             layout="constrained")
    legend: dict[str, Any] = {}
    for c, (dataset, protocol) in enumerate(panels):
        ax = axes[0][c]
        sub = curves[(curves["dataset"] == dataset) & (curves["protocol"] == protocol)]
        for method in _method_order(sub["method"]):
            s = sub[sub["method"] == method].sort_values(x)
            xs, ys = s[x].to_numpy(float), s["accuracy_mean"].to_numpy(float)
            sd = s["accuracy_std"].fillna(0).to_numpy(float)
            legend[method] = ax.plot(xs, ys, marker="o", color=colors[method], label=method,
                                     linewidth=2.2 if method == "hico" else 1.4)[0]
            ax.fill_between(xs, ys - sd, ys + sd, color=colors[method], alpha=0.15)
        for _, row in flats[(flats["dataset"] == dataset) & (flats["protocol"] == protocol)].iterrows():
            legend[f"{row['method']} (no pretraining)"] = ax.axhline(
                row["accuracy_mean"], color=colors[row["method"]], linestyle="--", linewidth=1.2)
        if logx:
            ax.set_xscale("log")
            ticks = sorted(set(sub[x]))
            ax.set_xticks(ticks)
            ax.set_xticklabels([f"{t:g}" for t in ticks])
            ax.minorticks_off()
        ax.set_ylim(0, 1.05)
        ax.grid(alpha=0.3)
        ax.set_xlabel(xlabel)
        ax.set_title(f"{dataset} / {protocol}")
        if c == 0:
            ax.set_ylabel("accuracy (frame, mean ± std)")
    fig.legend(list(legend.values()), list(legend), loc="outside right center", frameon=False)
    fig.suptitle(title)
    return _save(fig, out_dir, name)


def plot_convergence(tables: Path, out_dir: Path) -> list[Path]:
    df = _read(tables, "convergence")
    if df is None:
        return []
    return _lines(df, "encoder_epoch", out_dir, "convergence",
                  "Downstream accuracy of encoders saved after k pretraining epochs", "pretraining epoch",
                  flat_at=0)


def plot_label_efficiency(tables: Path, out_dir: Path) -> list[Path]:
    df = _read(tables, "label_efficiency")
    if df is None:
        return []
    return _lines(df, "train_percent", out_dir, "label_efficiency",
                  "Label efficiency: accuracy vs share of the fold's training videos", "training videos used (%)",
                  logx=True)


def plot_confusion(tables: Path, out_dir: Path) -> list[Path]:
    path = tables / "confusion_matrices.json"
    if not path.exists():
        print(f"[plot] skipped confusion matrices: {path} does not exist")
        return []
    entries = [e for e in json.loads(path.read_text()) if e["selection"] == "selected" and e["level"] == "frame"]
    out = []
    for dataset, protocol in sorted({(e["dataset"], e["protocol"]) for e in entries}):
        group = sorted((e for e in entries if e["dataset"] == dataset and e["protocol"] == protocol),
                       key=lambda e: (not e["method"].startswith("hico"), e["method"]))
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
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", f"confusion_{dataset}_{protocol}")
        out += _save(fig, out_dir, safe)
    return out


def plot_finetune_curves(metrics_dir: Path, out_dir: Path) -> list[Path]:
    rows = []
    for path in sorted(Path(metrics_dir).rglob("metrics.json")):
        m = json.loads(path.read_text())
        hist = (m.get("selection") or {}).get("history")
        if not hist or m.get("encoder_kind", "final") != "final" or float(m.get("train_fraction", 1.0)) != 1.0:
            continue
        for h in hist:
            rows.append({"method": m["method"], "dataset": m["dataset"], "protocol": m.get("protocol_id", m["protocol"]),
                         "epoch": h["epoch"], "val_accuracy": h["val_accuracy"], "train_loss": h["train_loss"]})
    if not rows:
        print(f"[plot] skipped finetune_curves: no fine-tuning histories under {metrics_dir}")
        return []
    df = pd.DataFrame(rows).groupby(["method", "dataset", "protocol", "epoch"]).mean().reset_index()
    panels = sorted({(d, p) for d, p in zip(df["dataset"], df["protocol"])})
    colors = _colors(list(df["method"]))
    fig, axes = plt.subplots(2, len(panels), figsize=(4.6 * len(panels) + 1.6, 6.4), squeeze=False, sharex="col",
                             layout="constrained")
    for c, (dataset, protocol) in enumerate(panels):
        sub = df[(df["dataset"] == dataset) & (df["protocol"] == protocol)]
        for method in _method_order(sub["method"]):
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
    order = _method_order(legend)
    fig.legend([legend[m] for m in order], order, loc="outside right center", frameon=False)
    fig.suptitle("Fine-tuning: mean over folds × seeds per epoch (the epoch is selected on validation accuracy)")
    return _save(fig, out_dir, "finetune_curves")


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
    return _save(fig, out_dir, "tsne")


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


FIGURE_GROUPS = ("main_comparison", "convergence", "label_efficiency", "confusion", "finetune_curves", "tsne")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="hico plot", description="results/tables -> results/figures (PNG + SVG)")
    p.add_argument("--tables", help="folder written by `python -m hico aggregate` (needed but for tsne)")
    p.add_argument("--out-dir", required=True)
    p.add_argument("--metrics-dir", help="metrics.json folder, for fine-tuning curves")
    p.add_argument("--encoders", "--features", nargs="+", default=[],
                   help="NAME=FEATURES.npz (of `hico features`, no torch needed) or NAME=ENCODER.pt pairs for the t-SNE")
    p.add_argument("--data", help="standard dataset folder for the t-SNE")
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--max-frames", type=int, default=8, help="frames per video in the t-SNE")
    p.add_argument("--figures", nargs="+", choices=FIGURE_GROUPS, default=list(FIGURE_GROUPS),
                   help="draw only these (the workflow runs tsne as its own job, beside the evaluations)")
    p.add_argument("--expect", nargs="+", default=[],
                   help="figure names a workflow declared: any left undrawn get a placeholder saying so")
    a = p.parse_args(argv)
    tables, out_dir, wanted = Path(a.tables) if a.tables else None, Path(a.out_dir), set(a.figures)
    if wanted - {"tsne"} and tables is None:
        p.error("--tables is required for every figure but tsne")
    if tables is not None and (tables / "main_comparison.csv").exists():
        ALL_METHODS.update(pd.read_csv(tables / "main_comparison.csv", usecols=["method"])["method"].astype(str))
    written = []
    for name, draw in (("main_comparison", plot_main_comparison), ("convergence", plot_convergence),
                       ("label_efficiency", plot_label_efficiency), ("confusion", plot_confusion)):
        if name in wanted:
            written += draw(tables, out_dir)
    if a.metrics_dir and "finetune_curves" in wanted:
        if Path(a.metrics_dir).is_dir():
            written += plot_finetune_curves(Path(a.metrics_dir), out_dir)
        else:
            print(f"[plot] skipped finetune_curves: {a.metrics_dir} is not a folder")
    encoders = _parse_encoders(a.encoders)
    if "tsne" in wanted and encoders and a.data:
        written += plot_tsne(encoders, a.data, out_dir, a.image_size, a.max_frames)
    elif "tsne" in wanted:
        print("[plot] skipped tsne: give --encoders NAME=PATH ... and --data DATASET_DIR to draw it")
    drawn = {path.stem for path in written}
    for name in a.expect:
        if name not in drawn:
            written += _placeholder(out_dir, name, f"nothing to draw for {name}: no matching rows in {tables}")
    print(f"[plot] {len(written)} files in {out_dir}")
    return 0

"""Evaluation protocols of a pretrained encoder on one fold of a downstream dataset.

Every protocol sees only the training part of the fold for fitting and its inner validation
part (patient-grouped, :func:`hico.data.folds.split_fold`) for model selection; the test fold
is touched once, for the reported numbers.

- ``linear_probe``: frozen encoder, pooled c5 features of every stored frame, standardised,
  scikit-learn logistic regression; C chosen by validation accuracy, then refit on train+val.
- ``knn``: cosine k-NN (k = 20) on the same frozen features, neighbours voted by similarity.

Metrics are computed at frame level and at video level (a video's probabilities are the mean
of its frames', DESIGN.md).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
    roc_auc_score,
)
from sklearn.preprocessing import StandardScaler

from hico.data.folds import read_folds, split_fold
from hico.data.standard import StandardDataset, atomic_write_json, load_dataset
from hico.data.transforms import normalize, resize_square
from hico.models.backbone import Backbone, load_encoder
from hico.provenance import provenance

PROTOCOLS: dict[str, Callable[..., dict[str, Any]]] = {}


def register_protocol(name: str):
    def decorate(fn):
        PROTOCOLS[name] = fn
        return fn

    return decorate


@dataclass
class FrameFeatures:
    features: np.ndarray  # [N, D] float32
    labels: np.ndarray  # [N] int
    video_ids: np.ndarray  # [N] str, one per frame


def frames_of(ds: StandardDataset, video_ids: list[str], max_frames: int | None) -> tuple[list[np.ndarray], list[str], list[int]]:
    label_of = dict(zip(ds.manifest["video_id"], ds.manifest["label"]))
    frames, vids, labels = [], [], []
    for vid in video_ids:
        arr = ds.frames(vid)
        idx = np.arange(arr.shape[0])
        if max_frames and len(idx) > max_frames:
            idx = np.linspace(0, len(idx) - 1, max_frames).round().astype(int)
        for i in idx:
            frames.append(np.array(arr[i]))
            vids.append(vid)
            labels.append(int(label_of[vid]))
    return frames, vids, labels


@torch.no_grad()
def extract_features(
    encoder: Backbone,
    ds: StandardDataset,
    video_ids: list[str],
    image_size: int,
    max_frames: int | None = None,
    batch_size: int = 64,
    mean: float = 0.5,
    std: float = 0.25,
    device: str | torch.device = "cpu",
) -> FrameFeatures:
    """Pooled c5 features of the (up to ``max_frames`` evenly spaced) frames of each video."""
    encoder = encoder.to(device).eval()
    frames, vids, labels = frames_of(ds, video_ids, max_frames)
    feats = []
    for start in range(0, len(frames), batch_size):
        chunk = [resize_square(torch.from_numpy(f), image_size) for f in frames[start : start + batch_size]]
        x = normalize(torch.stack(chunk).to(device), mean, std)
        feats.append(encoder(x).float().cpu().numpy())
    dim = encoder.num_features
    return FrameFeatures(
        np.concatenate(feats) if feats else np.zeros((0, dim), np.float32),
        np.asarray(labels, dtype=int),
        np.asarray(vids),
    )


def classification_metrics(y_true: np.ndarray, proba: np.ndarray, classes: list[str]) -> dict[str, Any]:
    """Accuracy, balanced accuracy, macro-F1, macro AUC (one-vs-rest, over classes present),
    per-class precision/recall/F1/support and the confusion matrix (rows = true)."""
    k = len(classes)
    y_pred = proba.argmax(axis=1)
    labels = list(range(k))
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    present = sorted(set(y_true.tolist()))
    auc = float("nan")
    if len(present) >= 2:
        try:
            if k == 2:
                auc = float(roc_auc_score(y_true, proba[:, 1]))
            else:
                aucs = [roc_auc_score(y_true == c, proba[:, c]) for c in present]
                auc = float(np.mean(aucs))
        except ValueError:
            auc = float("nan")
    return {
        "n": int(len(y_true)),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "balanced_accuracy": float(balanced_accuracy_score(y_true, y_pred)) if len(y_true) else float("nan"),
        "macro_f1": float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
        "macro_auc": auc,
        "per_class": {
            c: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
            for i, c in enumerate(classes)
        },
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
    }


def video_level(video_ids: np.ndarray, y: np.ndarray, proba: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean of each video's frame probabilities (video label = its frames' label)."""
    order = {v: i for i, v in enumerate(dict.fromkeys(video_ids.tolist()))}
    idx = np.array([order[v] for v in video_ids])
    sums = np.zeros((len(order), proba.shape[1]))
    np.add.at(sums, idx, proba)
    counts = np.bincount(idx, minlength=len(order))[:, None]
    yv = np.zeros(len(order), dtype=int)
    yv[idx] = y
    return yv, sums / counts


def _full_proba(model_classes: np.ndarray, proba: np.ndarray, k: int) -> np.ndarray:
    out = np.zeros((proba.shape[0], k))
    out[:, model_classes] = proba
    return out


@register_protocol("linear_probe")
def linear_probe(train: FrameFeatures, val: FrameFeatures, test: FrameFeatures, n_classes: int, seed: int = 0,
                 c_grid: tuple[float, ...] = (1e-3, 1e-2, 1e-1, 1.0, 10.0), max_iter: int = 2000) -> dict[str, Any]:
    """Logistic regression on standardised frozen features; returns test probabilities."""
    scaler = StandardScaler().fit(train.features)
    xt, xv = scaler.transform(train.features), scaler.transform(val.features)
    scores = {}
    for c in c_grid:
        clf = LogisticRegression(C=c, max_iter=max_iter, random_state=seed)
        clf.fit(xt, train.labels)
        scores[c] = accuracy_score(val.labels, clf.predict(xv)) if len(val.labels) else 0.0
    best_c = max(c_grid, key=lambda c: (scores[c], -abs(np.log10(c))))
    x_all = np.concatenate([train.features, val.features])
    y_all = np.concatenate([train.labels, val.labels])
    scaler = StandardScaler().fit(x_all)
    clf = LogisticRegression(C=best_c, max_iter=max_iter, random_state=seed).fit(scaler.transform(x_all), y_all)
    proba = _full_proba(clf.classes_, clf.predict_proba(scaler.transform(test.features)), n_classes)
    return {"proba": proba, "selection": {"C": best_c, "val_accuracy_by_C": {str(k): v for k, v in scores.items()}}}


@register_protocol("knn")
def knn(train: FrameFeatures, val: FrameFeatures, test: FrameFeatures, n_classes: int, seed: int = 0,
        k: int = 20, temperature: float = 0.07) -> dict[str, Any]:
    """Cosine k-NN on frozen features (neighbours from train+val), similarity-weighted votes."""
    bank = np.concatenate([train.features, val.features])
    bank_y = np.concatenate([train.labels, val.labels])
    bank = bank / (np.linalg.norm(bank, axis=1, keepdims=True) + 1e-12)
    q = test.features / (np.linalg.norm(test.features, axis=1, keepdims=True) + 1e-12)
    sim = q @ bank.T
    kk = min(k, len(bank))
    nn_idx = np.argpartition(-sim, kk - 1, axis=1)[:, :kk]
    w = np.exp(np.take_along_axis(sim, nn_idx, axis=1) / temperature)
    votes = np.zeros((len(q), n_classes))
    np.add.at(votes, (np.repeat(np.arange(len(q)), kk), bank_y[nn_idx].ravel()), w.ravel())
    return {"proba": votes / votes.sum(axis=1, keepdims=True), "selection": {"k": kk}}


def evaluate(
    encoder_path: str | Path,
    dataset_dir: str | Path,
    folds_path: str | Path,
    fold: int,
    protocol: str = "linear_probe",
    seed: int = 0,
    image_size: int = 224,
    max_frames: int | None = 30,
    val_fraction: float = 0.2,
    out_path: str | Path | None = None,
    method: str | None = None,
    device: str | None = None,
    **protocol_args: Any,
) -> dict[str, Any]:
    """Run one protocol on one fold and write ``metrics.json`` (when ``out_path`` is given)."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; available: {sorted(PROTOCOLS)}")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    ds = load_dataset(dataset_dir)
    folds = read_folds(folds_path, ds.manifest)
    train_ids, val_ids, test_ids = split_fold(ds.manifest, folds, fold, val_fraction, seed)
    torch.manual_seed(seed)
    encoder = load_encoder(encoder_path)
    feats = {
        name: extract_features(encoder, ds, ids, image_size, max_frames, device=device)
        for name, ids in (("train", train_ids), ("val", val_ids), ("test", test_ids))
    }
    result = PROTOCOLS[protocol](feats["train"], feats["val"], feats["test"], len(ds.classes), seed=seed, **protocol_args)
    proba = result["proba"]
    test = feats["test"]
    yv, pv = video_level(test.video_ids, test.labels, proba)
    metrics = {
        "method": method or encoder.meta.get("method", Path(encoder_path).parent.name),
        "dataset": ds.name,
        "protocol": protocol,
        "fold": int(fold),
        "seed": int(seed),
        "encoder": str(encoder_path),
        "encoder_meta": encoder.meta,
        "classes": ds.classes,
        "n_videos": {"train": len(train_ids), "val": len(val_ids), "test": len(test_ids)},
        "split_video_ids": {"train": sorted(train_ids), "val": sorted(val_ids), "test": sorted(test_ids)},
        "selection": result.get("selection", {}),
        "frame": classification_metrics(test.labels, proba, ds.classes),
        "video": classification_metrics(yv, pv, ds.classes),
        "provenance": provenance({"protocol": protocol, "args": protocol_args, "image_size": image_size,
                                  "max_frames": max_frames, "val_fraction": val_fraction}, seed, device),
    }
    if out_path is not None:
        atomic_write_json(Path(out_path), metrics)
    return metrics


def load_metrics(path: str | Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text())

"""Classification metrics of test predictions, at frame level and at video level.

A video's probabilities are the mean of its frames' (DESIGN.md, "Metrics per fold").
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
    roc_auc_score,
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


def frame_and_video_metrics(video_ids: np.ndarray, y: np.ndarray, proba: np.ndarray, classes: list[str]) -> dict[str, Any]:
    yv, pv = video_level(video_ids, y, proba)
    return {"frame": classification_metrics(y, proba, classes), "video": classification_metrics(yv, pv, classes)}


def full_proba(model_classes: np.ndarray, proba: np.ndarray, k: int) -> np.ndarray:
    """Probabilities over all ``k`` classes from a model that saw only ``model_classes``."""
    out = np.zeros((proba.shape[0], k))
    out[:, model_classes] = proba
    return out

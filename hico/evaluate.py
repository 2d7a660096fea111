"""Evaluation protocols of a pretrained encoder on one fold of a downstream dataset.

Every protocol sees only the training part of the fold for fitting and its inner validation
part (patient-grouped, :func:`hico.data.folds.split_fold`) for model selection; the test fold
is touched for the reported numbers only.

- ``linear_probe``: frozen encoder, pooled c5 features of every stored frame, standardised,
  scikit-learn logistic regression; C chosen by validation accuracy, then refit on train+val.
- ``knn``: cosine k-NN (k = 20) on the same frozen features, neighbours voted by similarity.
- ``linear_probe_adabn``, ``knn_adabn``: the same on features of the encoder whose BatchNorm
  statistics are re-estimated on the fold's training and validation frames first (AdaBN, Li et
  al., "Revisiting Batch Normalization for Practical Domain Adaptation", 2016); no label and no
  test frame is used. A randomly initialised encoder carries placeholder statistics (mean 0,
  variance 1: its features are un-normalised filter energies) and a pretrained one the
  statistics of augmented pretraining views; this probe compares encoders with BatchNorm
  matched to the downstream frames instead.
- ``finetune`` (variants ``released`` and ``full``; also registered as ``finetune_released``
  and ``finetune_full``): a new linear head on pooled c5, trained end to end with the released
  HiCo/USCL recipe (eval_pretrained_model.py: Adam 0.01, weight decay 1e-4, cosine over 100
  epochs, batch 32, Resize -> RandomResizedCrop(0.8-1, 0.8-1.25) -> flip -> Normalize(0.5,
  0.25)). ``released`` trains the last block of the last stage (``layer4.1`` of a ResNet-18)
  and the head; ``full`` trains every layer at lr 1e-4. The epoch reported as ``frame``/
  ``video`` is chosen on the inner validation split; the released code's choice, the epoch
  with the best *test-fold* accuracy, is kept separately as ``paper_protocol`` (optimistic),
  and the last epoch as ``last``.

``train_fraction`` (label efficiency, every protocol) keeps a seeded, class-stratified subset
of the fold's *training videos* (at least one per class); validation and test are unchanged.

Metrics are computed at frame level and at video level (a video's probabilities are the mean
of its frames', DESIGN.md).
"""

from __future__ import annotations

import copy
import functools
import json
import re
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
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
from torch import nn

from hico.data.folds import read_folds, split_fold
from hico.data.standard import StandardDataset, load_dataset
from hico.data.transforms import AugmentConfig, FrameAugment, normalize, resize_square
from hico.device import resolve_device
from hico.io import atomic_write_json
from hico.models.backbone import Backbone, load_encoder
from hico.precision import bf16_autocast_enabled
from hico.provenance import provenance

METRICS_SCHEMA_VERSION = 2

PROTOCOLS: dict[str, Callable[..., dict[str, Any]]] = {}


def register_protocol(name: str, inputs: str = "features"):
    """Register ``fn`` as protocol ``name``.

    ``inputs="features"``: ``fn(train, val, test, n_classes, seed, **args)`` receives
    :class:`FrameFeatures` of the frozen encoder. ``inputs="frames"``: it receives
    :class:`FrameSet` (uint8 frames) and the keyword arguments ``encoder`` and ``device``.
    Either returns ``{"proba": [N_test, K], "selection": {...}}`` and, optionally, extra
    test-set records ``{"records": {"paper_protocol": {"proba", ...}, "last": {...}}}``.
    """
    if inputs not in ("features", "frames"):
        raise ValueError(f"protocol {name}: inputs must be 'features' or 'frames', got {inputs!r}")

    def decorate(fn):
        fn.inputs = inputs
        PROTOCOLS[name] = fn
        return fn

    return decorate


@dataclass
class FrameFeatures:
    features: np.ndarray  # [N, D] float32
    labels: np.ndarray  # [N] int
    video_ids: np.ndarray  # [N] str, one per frame


@dataclass
class FrameSet:
    """Frames of a set of videos, squashed to ``[N, S, S]`` uint8 (the released Resize((S, S)))."""

    frames: torch.Tensor  # [N, S, S] uint8
    labels: np.ndarray  # [N] int
    video_ids: np.ndarray  # [N] str, one per frame

    def __len__(self) -> int:
        return int(self.frames.shape[0])


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


def load_frames(ds: StandardDataset, video_ids: list[str], image_size: int, max_frames: int | None = None) -> FrameSet:
    """The (up to ``max_frames`` evenly spaced) frames of each video, resized to a square."""
    frames, vids, labels = frames_of(ds, video_ids, max_frames)
    if frames:
        x = torch.stack([resize_square(torch.from_numpy(f), image_size) for f in frames])
    else:
        x = torch.zeros((0, image_size, image_size), dtype=torch.uint8)
    return FrameSet(x, np.asarray(labels, dtype=int), np.asarray(vids))


def _normalized_batches(frames: list[np.ndarray], image_size: int, batch_size: int, mean: float, std: float,
                        device) -> Iterator[torch.Tensor]:
    """``frames`` resized to squares, normalised, ``batch_size`` at a time, on ``device``."""
    for start in range(0, len(frames), batch_size):
        chunk = [resize_square(torch.from_numpy(f), image_size) for f in frames[start : start + batch_size]]
        yield normalize(torch.stack(chunk).to(device), mean, std)


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
    feats = [encoder(x).float().cpu().numpy()
             for x in _normalized_batches(frames, image_size, batch_size, mean, std, device)]
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


def frame_and_video_metrics(video_ids: np.ndarray, y: np.ndarray, proba: np.ndarray, classes: list[str]) -> dict[str, Any]:
    yv, pv = video_level(video_ids, y, proba)
    return {"frame": classification_metrics(y, proba, classes), "video": classification_metrics(yv, pv, classes)}


def _full_proba(model_classes: np.ndarray, proba: np.ndarray, k: int) -> np.ndarray:
    out = np.zeros((proba.shape[0], k))
    out[:, model_classes] = proba
    return out


# --------------------------------------------------------------------------------------------
# Label efficiency


def subsample_train_videos(manifest: pd.DataFrame, train_ids: list[str], fraction: float, seed: int = 0) -> list[str]:
    """A seeded, class-stratified ``fraction`` of ``train_ids`` (videos), >= 1 video per class.

    Each class keeps ``max(1, round(fraction * n_class))`` videos, the first ones of a per-class
    permutation seeded by ``seed`` alone, so smaller fractions are subsets of larger ones.
    """
    fraction = float(fraction)
    if not 0 < fraction <= 1:
        raise ValueError(
            f"train_fraction must be in (0, 1] (a fraction of the fold's training videos), got {fraction}; "
            "for 10 % pass 0.1"
        )
    if fraction == 1:
        return list(train_ids)
    label_of = dict(zip(manifest["video_id"], manifest["label"]))
    keep: set[str] = set()
    for label in sorted({int(label_of[v]) for v in train_ids}):
        ids = sorted(v for v in train_ids if int(label_of[v]) == label)
        rng = np.random.default_rng([int(seed), 7919, label])
        order = rng.permutation(len(ids))
        n = max(1, int(round(fraction * len(ids))))
        keep.update(ids[i] for i in order[:n])
    return [v for v in train_ids if v in keep]


# --------------------------------------------------------------------------------------------
# Protocols on frozen features


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
    return {"proba": proba, "selection": {"rule": "validation accuracy over C, then refit on train+val",
                                          "C": best_c, "val_accuracy_by_C": {str(k): v for k, v in scores.items()}}}


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
    return {"proba": votes / votes.sum(axis=1, keepdims=True), "selection": {"rule": "fixed k", "k": kk}}


def _adabn(name: str, fn: Callable[..., dict[str, Any]]) -> None:
    """Register ``name`` as ``fn`` on features of the encoder with BatchNorm adapted per fold."""

    @functools.wraps(fn)
    def adapted(*args, **kwargs):
        return fn(*args, **kwargs)

    adapted.adapt_bn = True
    register_protocol(name)(adapted)


_adabn("linear_probe_adabn", linear_probe)
_adabn("knn_adabn", knn)


@torch.no_grad()
def adapt_batchnorm(encoder: Backbone, ds: StandardDataset, video_ids: list[str], image_size: int,
                    max_frames: int | None = None, batch_size: int = 64, mean: float = 0.5, std: float = 0.25,
                    device: str | torch.device = "cpu") -> Backbone:
    """A copy of ``encoder`` whose BatchNorm running statistics are the average over batches of
    the frames of ``video_ids`` (every BN layer reset, cumulative average, no gradient)."""
    adapted = copy.deepcopy(encoder).to(device)
    norms = [m for m in adapted.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:  # a ViT normalises each token with LayerNorm: nothing to adapt
        warnings.warn(f"AdaBN: backbone {encoder.name} has no BatchNorm layer, so adaptation is a no-op "
                      "and the *_adabn protocols equal their plain versions", stacklevel=3)
        return adapted.eval()
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average: every batch counts the same
    adapted.train()
    frames, _, _ = frames_of(ds, video_ids, max_frames)
    for x in _normalized_batches(frames, image_size, batch_size, mean, std, device):
        if len(x) > 1:  # a BN batch of one frame has no variance
            adapted(x)
    return adapted.eval()


# --------------------------------------------------------------------------------------------
# Fine-tuning

#: Released HiCo/USCL fine-tuning (eval_pretrained_model.py); ``full`` differs in what trains and lr.
FINETUNE_VARIANTS: dict[str, dict[str, Any]] = {
    "released": {"trainable": "last_block", "epochs": 100, "batch_size": 32, "lr": 0.01, "weight_decay": 1e-4},
    "full": {"trainable": "all", "epochs": 100, "batch_size": 32, "lr": 1e-4, "weight_decay": 1e-4},
}


def last_block(backbone: Backbone) -> nn.Module:
    """The block the released fine-tune trains: :meth:`Backbone.last_block` (``layer4.1`` of a
    timm ResNet-18; the last transformer block of a ViT)."""
    return backbone.last_block()


class FinetuneModel(nn.Module):
    """Encoder + a new linear head on pooled c5 (USCL's ``linear``; HiCo's head concatenates
    random frozen FPN projections, which an encoder-only checkpoint does not carry)."""

    def __init__(self, encoder: Backbone, n_classes: int):
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(encoder.num_features, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x))


def _predict(model: FinetuneModel, data: FrameSet, mean: float, std: float, device, batch_size: int = 128,
             amp: bool = False) -> tuple[np.ndarray, float]:
    """Softmax probabilities ``[N, K]`` and mean cross-entropy (test-time transform: Resize + Normalize)."""
    model.eval()
    probs, loss_sum = [], 0.0
    with torch.no_grad():
        for start in range(0, len(data), batch_size):
            x = normalize(data.frames[start : start + batch_size].to(device), mean, std)
            y = torch.as_tensor(data.labels[start : start + batch_size], device=device)
            with torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=amp):
                logits = model(x)
            logits = logits.float()
            loss_sum += float(F.cross_entropy(logits, y, reduction="sum"))
            probs.append(logits.softmax(dim=1).cpu().numpy())
    k = model.head.out_features
    proba = np.concatenate(probs) if probs else np.zeros((0, k))
    return proba.astype(np.float64), loss_sum / max(1, len(data))


def train_epoch(model: FinetuneModel, data: FrameSet, optimizer: torch.optim.Optimizer, augment: FrameAugment,
                batch_size: int, order_gen: torch.Generator, aug_gen: torch.Generator, device, amp: bool = False) -> float:
    """One pass over ``data`` (shuffled) with the training augmentation; returns the mean loss.

    The whole network stays in train mode, as released (BatchNorm statistics of the frozen
    layers keep updating). A last batch of a single frame is skipped: BatchNorm cannot
    normalise one sample at a 1x1 c5.
    """
    model.train()
    order = torch.randperm(len(data), generator=order_gen)
    total, n = 0.0, 0
    for start in range(0, len(data), batch_size):
        idx = order[start : start + batch_size]
        if len(idx) < 2 and len(data) > 1:
            continue
        x = augment(data.frames[idx.to(data.frames.device)].to(device), generator=aug_gen)
        y = torch.as_tensor(data.labels[idx.numpy()], device=device)
        with torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=amp):
            logits = model(x)
        loss = F.cross_entropy(logits.float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += float(loss.detach()) * len(idx)
        n += len(idx)
    return total / max(1, n)


def select_epoch(history: list[dict[str, float]]) -> int:
    """Index of the epoch with the best validation accuracy; ties -> lower validation loss,
    then the earlier epoch. Reads only ``val_*`` entries."""
    best = min(range(len(history)), key=lambda i: (-history[i]["val_accuracy"], history[i]["val_loss"], i))
    return best


@register_protocol("finetune", inputs="frames")
def finetune(train: FrameSet, val: FrameSet, test: FrameSet, n_classes: int, seed: int = 0, *,
             encoder: Backbone, device: str | torch.device = "cpu", variant: str = "released",
             epochs: int | None = None, batch_size: int | None = None, lr: float | None = None,
             weight_decay: float | None = None, trainable: str | None = None,
             mean: float = 0.5, std: float = 0.25) -> dict[str, Any]:
    """Fine-tune ``encoder`` + a new linear head on ``train``; pick the epoch on ``val``.

    Recipe (released HiCo/USCL eval_pretrained_model.py): Adam(lr, weight_decay),
    CosineAnnealingLR(T_max=epochs, eta_min=0) stepped per epoch, cross-entropy, training
    transform RandomResizedCrop(scale 0.8-1, ratio 0.8-1.25) + horizontal flip on the
    Resize((S, S))d frame, Normalize(0.5, 0.25); test transform Resize + Normalize.
    ``trainable``: ``last_block`` (released: last block of the last stage + head) or ``all``.
    """
    if variant not in FINETUNE_VARIANTS:
        raise ValueError(f"finetune variant must be one of {sorted(FINETUNE_VARIANTS)}, got {variant!r}")
    hp = dict(FINETUNE_VARIANTS[variant])
    for key, value in (("epochs", epochs), ("batch_size", batch_size), ("lr", lr),
                       ("weight_decay", weight_decay), ("trainable", trainable)):
        if value is not None:
            hp[key] = value
    hp["epochs"], hp["batch_size"] = int(hp["epochs"]), int(hp["batch_size"])
    hp["lr"], hp["weight_decay"] = float(hp["lr"]), float(hp["weight_decay"])
    if hp["epochs"] < 1 or hp["batch_size"] < 1 or hp["lr"] <= 0:
        raise ValueError(f"finetune: epochs, batch_size and lr must be positive, got {hp}")
    if hp["trainable"] not in ("last_block", "all"):
        raise ValueError(f"finetune: trainable must be 'last_block' or 'all', got {hp['trainable']!r}")
    if len(train) == 0 or len(val) == 0:
        raise ValueError(f"finetune: empty training ({len(train)}) or validation ({len(val)}) set")
    device = torch.device(device)
    amp = bf16_autocast_enabled(device)
    image_size = int(train.frames.shape[-1])

    if device.type == "cuda":  # uint8 frames live on the GPU once (POCUS at 224 px: ~0.1 GB)
        train, val, test = (FrameSet(d.frames.to(device), d.labels, d.video_ids) for d in (train, val, test))
    torch.manual_seed(seed)
    model = FinetuneModel(copy.deepcopy(encoder), n_classes).to(device)
    if hp["trainable"] == "all":
        model.requires_grad_(True)
        trainable_names = ["all"]
    else:
        model.encoder.requires_grad_(False)
        block = last_block(model.encoder)
        block.requires_grad_(True)
        trainable_names = [n for n, m in model.encoder.named_modules() if m is block]
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=hp["lr"], weight_decay=hp["weight_decay"])
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=hp["epochs"], eta_min=0.0)
    augment = FrameAugment(AugmentConfig(image_size=image_size, brightness=0.0, contrast=0.0, jitter_p=0.0,
                                         mean=mean, std=std))
    order_gen = torch.Generator().manual_seed(seed)
    aug_gen = torch.Generator(device=device).manual_seed(seed + 1)

    history: list[dict[str, float]] = []
    test_probas: list[np.ndarray] = []
    for epoch in range(hp["epochs"]):
        train_loss = train_epoch(model, train, optimizer, augment, hp["batch_size"], order_gen, aug_gen, device, amp)
        scheduler.step()
        val_proba, val_loss = _predict(model, val, mean, std, device, amp=amp)
        test_proba, _ = _predict(model, test, mean, std, device, amp=amp)
        test_probas.append(test_proba)
        history.append({
            "epoch": epoch + 1,
            "train_loss": train_loss,
            "val_loss": val_loss,
            "val_accuracy": float((val_proba.argmax(1) == val.labels).mean()),
            # for the paper_protocol record and curves only; never read by select_epoch
            "test_accuracy": float((test_proba.argmax(1) == test.labels).mean()) if len(test) else float("nan"),
        })
    selected = select_epoch([{k: v for k, v in h.items() if not k.startswith("test")} for h in history])
    test_acc = [h["test_accuracy"] for h in history]
    best_test = int(np.argmax(test_acc))  # first maximum, as the released `if acc > best`
    last = len(history) - 1
    n_trainable = sum(p.numel() for p in params)
    return {
        "proba": test_probas[selected],
        "protocol_id": f"finetune_{variant}",
        "variant": variant,
        "hyperparameters": {**hp, "n_trainable_params": int(n_trainable), "trainable_modules": trainable_names},
        "selection": {"rule": "max validation frame accuracy; ties -> lower validation loss, earlier epoch",
                      "epoch": selected + 1, "history": history},
        "records": {
            "paper_protocol": {"proba": test_probas[best_test], "epoch": best_test + 1, "optimistic": True,
                               "rule": "max test-fold frame accuracy over epochs (released code); optimistic"},
            "last": {"proba": test_probas[last], "epoch": last + 1, "optimistic": False, "rule": "last epoch"},
        },
    }


for _variant in FINETUNE_VARIANTS:
    register_protocol(f"finetune_{_variant}", inputs="frames")(
        functools.update_wrapper(functools.partial(finetune, variant=_variant), finetune)
    )


# --------------------------------------------------------------------------------------------
# One fold, one protocol -> metrics.json

_CHECKPOINT_RE = re.compile(r"encoder_epoch(\d+)\.pt$")


def _encoder_facts(encoder_path: Path, meta: dict[str, Any]) -> dict[str, Any]:
    """Epoch, kind (``final`` or ``checkpoint``) and pretraining datasets of an encoder file
    (from the run's ``config.json``: ``[]`` for a control, ``None`` when unknown)."""
    m = _CHECKPOINT_RE.search(encoder_path.name)
    epoch = meta.get("epoch")
    if epoch is None and m:
        epoch = int(m.group(1))
    datasets = None
    cfg_path = encoder_path.parent / "config.json"
    if cfg_path.exists():
        try:
            run = json.loads(cfg_path.read_text())
            datasets = [Path(d).name for d in run.get("datasets", [])] or None
            if datasets is None and (run.get("config") or {}).get("requires_pretraining") is False:
                datasets = []  # a control (random_init, imagenet): no pretraining data at all
        except (json.JSONDecodeError, AttributeError):
            datasets = None
    return {"encoder_epoch": int(epoch) if epoch is not None else None,
            "encoder_kind": "checkpoint" if m else "final",
            "pretrain_datasets": datasets}


def select_videos(data: FrameFeatures | FrameSet, video_ids: list[str]) -> FrameFeatures | FrameSet:
    """The frames of ``video_ids`` (in that order) out of a set computed for more videos."""
    rows_of: dict[str, list[int]] = {}
    for i, v in enumerate(data.video_ids.tolist()):
        rows_of.setdefault(v, []).append(i)
    idx = np.asarray([i for v in video_ids for i in rows_of.get(v, [])], dtype=int)
    if isinstance(data, FrameSet):
        return FrameSet(data.frames[torch.from_numpy(idx)], data.labels[idx], data.video_ids[idx])
    return FrameFeatures(data.features[idx], data.labels[idx], data.video_ids[idx])


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
    train_fraction: float = 1.0,
    **protocol_args: Any,
) -> dict[str, Any]:
    """Run one protocol on one fold and write ``metrics.json`` (when ``out_path`` is given)."""
    return evaluate_folds(encoder_path, dataset_dir, folds_path, [fold], protocol, seed, image_size, max_frames,
                          val_fraction, [out_path], method, device, train_fraction, **protocol_args)[0]


def evaluate_folds(
    encoder_path: str | Path,
    dataset_dir: str | Path,
    folds_path: str | Path,
    folds: list[int],
    protocol: str = "linear_probe",
    seed: int = 0,
    image_size: int = 224,
    max_frames: int | None = 30,
    val_fraction: float = 0.2,
    out_paths: list[str | Path | None] | None = None,
    method: str | None = None,
    device: str | None = None,
    train_fraction: float = 1.0,
    **protocol_args: Any,
) -> list[dict[str, Any]]:
    """Run one protocol on several folds of one dataset; one ``metrics.json`` per fold.

    Frozen-feature protocols extract each frame's features once for all folds (the encoder is
    frozen, so they are the same in every fold); fine-tuning reloads the encoder for each fold.
    ``train_fraction`` in (0, 1] keeps that share of the fold's training videos
    (:func:`subsample_train_videos`); ``device`` ``None``/``"auto"`` picks CUDA when present.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; available: {sorted(PROTOCOLS)}")
    out_paths = list(out_paths) if out_paths is not None else [None] * len(folds)
    if len(out_paths) != len(folds):
        raise ValueError(f"{len(folds)} folds but {len(out_paths)} output paths")
    fn = PROTOCOLS[protocol]
    device = resolve_device(device)
    ds = load_dataset(dataset_dir)
    fold_table = read_folds(folds_path, ds.manifest)
    splits_of = {}
    for fold in folds:
        train_all, val_ids, test_ids = split_fold(ds.manifest, fold_table, fold, val_fraction, seed)
        splits_of[fold] = (train_all, subsample_train_videos(ds.manifest, train_all, train_fraction, seed),
                           val_ids, test_ids)
    used = sorted({v for (_, train, val, test) in splits_of.values() for v in (*train, *val, *test)})
    torch.manual_seed(seed)
    encoder = load_encoder(encoder_path)
    facts = _encoder_facts(Path(encoder_path), getattr(encoder, "meta", {}) or {})
    adapt_bn = getattr(fn, "adapt_bn", False)
    if fn.inputs == "features" and not adapt_bn:
        everything = extract_features(encoder, ds, used, image_size, max_frames, device=device)
    elif fn.inputs == "frames":
        everything = load_frames(ds, used, image_size, max_frames)
    results = []
    for fold, out_path in zip(folds, out_paths):
        train_all, train_ids, val_ids, test_ids = splits_of[fold]
        if adapt_bn:  # no labels: all of the fold's training + validation frames, never its test
            fitted = sorted({*train_all, *val_ids})
            adapted = adapt_batchnorm(encoder, ds, fitted, image_size, max_frames, device=device)
            everything = extract_features(adapted, ds, fitted + sorted(test_ids), image_size, max_frames,
                                          device=device)
        data = {name: select_videos(everything, ids)
                for name, ids in (("train", train_ids), ("val", val_ids), ("test", test_ids))}
        torch.manual_seed(seed)
        if fn.inputs == "features":
            result = fn(data["train"], data["val"], data["test"], len(ds.classes), seed=seed, **protocol_args)
        else:
            fresh = load_encoder(encoder_path)  # fine-tuning changes the encoder: start each fold anew
            result = fn(data["train"], data["val"], data["test"], len(ds.classes), seed=seed,
                        encoder=fresh, device=device, **protocol_args)
        test = data["test"]
        metrics: dict[str, Any] = {
            "schema_version": METRICS_SCHEMA_VERSION,
            "method": method or encoder.meta.get("method", Path(encoder_path).parent.name),
            "dataset": ds.name,
            "protocol": protocol,
            "protocol_id": result.get("protocol_id", protocol),
            "variant": result.get("variant"),
            "fold": int(fold),
            "seed": int(seed),
            "train_fraction": float(train_fraction),
            "encoder": str(encoder_path),
            "encoder_meta": encoder.meta,
            **facts,
            "classes": ds.classes,
            "n_videos": {"train": len(train_ids), "val": len(val_ids), "test": len(test_ids),
                         "train_before_subsampling": len(train_all)},
            "n_frames": {name: int(len(d.labels)) for name, d in data.items()},
            "split_video_ids": {"train": sorted(train_ids), "val": sorted(val_ids), "test": sorted(test_ids)},
            "hyperparameters": result.get("hyperparameters", {**protocol_args, **({"adapt_bn": True} if adapt_bn else {})}),
            "selection": result.get("selection", {}),
            **frame_and_video_metrics(test.video_ids, test.labels, result["proba"], ds.classes),
        }
        for name, rec in (result.get("records") or {}).items():
            metrics[name] = {k: v for k, v in rec.items() if k != "proba"}
            metrics[name].update(frame_and_video_metrics(test.video_ids, test.labels, rec["proba"], ds.classes))
        metrics["provenance"] = provenance({"protocol": protocol, "args": protocol_args, "image_size": image_size,
                                            "max_frames": max_frames, "val_fraction": val_fraction,
                                            "train_fraction": train_fraction}, seed, device)
        if out_path is not None:
            atomic_write_json(Path(out_path), metrics)
        results.append(metrics)
    return results


def load_metrics(path: str | Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text())

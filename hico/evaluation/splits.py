"""The videos and frames of one fold: split records, label-efficiency subsets, row selection.

``train_fraction`` (label efficiency, every protocol) keeps a seeded, class-stratified subset
of the fold's *training videos* (at least one per class); validation and test are unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from hico.data.folds import split_fold
from hico.evaluation.protocols import EvaluationError

if TYPE_CHECKING:
    import torch


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


@dataclass(frozen=True)
class FoldSplit:
    """The video ids of one fold: ``train`` is ``train_all`` after label subsampling."""

    fold: int
    train_all: list[str]
    train: list[str]
    val: list[str]
    test: list[str]


def frame_indices(n_frames: int, max_frames: int | None) -> np.ndarray:
    """Which stored frames of a video of ``n_frames`` are read: all, or ``max_frames`` evenly spaced."""
    idx = np.arange(n_frames)
    if max_frames and len(idx) > max_frames:
        idx = np.linspace(0, len(idx) - 1, max_frames).round().astype(int)
    return idx


def subsample_train_videos(manifest: pd.DataFrame, train_ids: list[str], fraction: float, seed: int = 0) -> list[str]:
    """A seeded, class-stratified ``fraction`` of ``train_ids`` (videos), >= 1 video per class.

    Each class keeps ``max(1, round(fraction * n_class))`` videos, the first ones of a per-class
    permutation seeded by ``seed`` alone, so smaller fractions are subsets of larger ones.
    """
    fraction = float(fraction)
    if not 0 < fraction <= 1:
        raise EvaluationError(
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


def fold_splits(manifest: pd.DataFrame, fold_table: pd.DataFrame, folds: list[int], *, val_fraction: float,
                seed: int, train_fraction: float) -> list[FoldSplit]:
    """Train (subsampled), validation and test videos of each of ``folds``."""
    out = []
    for fold in folds:
        train_all, val, test = split_fold(manifest, fold_table, fold, val_fraction, seed)
        train = subsample_train_videos(manifest, train_all, train_fraction, seed)
        out.append(FoldSplit(int(fold), train_all, train, val, test))
    return out


def select_videos(data: FrameFeatures | FrameSet, video_ids: list[str]) -> FrameFeatures | FrameSet:
    """The frames of ``video_ids`` (in that order) out of a set computed for more videos."""
    rows_of: dict[str, list[int]] = {}
    for i, v in enumerate(data.video_ids.tolist()):
        rows_of.setdefault(v, []).append(i)
    idx = np.asarray([i for v in video_ids for i in rows_of.get(v, [])], dtype=int)
    if isinstance(data, FrameSet):
        import torch

        return FrameSet(data.frames[torch.from_numpy(idx)], data.labels[idx], data.video_ids[idx])
    return FrameFeatures(data.features[idx], data.labels[idx], data.video_ids[idx])

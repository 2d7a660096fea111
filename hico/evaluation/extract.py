"""Frames and frozen features of an encoder, and AdaBN.

Every protocol reads the (up to ``max_frames`` evenly spaced) stored frames of each video,
squashed to ``image_size`` squares (the released ``Resize((S, S))``) and normalised with the
released mean 0.5 and std 0.25. ``adapt_batchnorm`` re-estimates BatchNorm statistics on
given frames (AdaBN, Li et al., "Revisiting Batch Normalization for Practical Domain
Adaptation", 2016): a randomly initialised encoder carries placeholder statistics (mean 0,
variance 1: its features are un-normalised filter energies) and a pretrained one those of
augmented pretraining views; the AdaBN protocols compare encoders with BatchNorm matched to
the downstream frames instead.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Iterator

import numpy as np
import torch
from torch import nn

from hico.data.standard import StandardDataset
from hico.data.transforms import normalize, resize_square
from hico.evaluation.splits import FrameFeatures, FrameSet, frame_indices
from hico.models.backbone import Backbone
from hico.progress import progress


def frames_of(ds: StandardDataset, video_ids: list[str], max_frames: int | None) -> tuple[list[np.ndarray], list[str], list[int]]:
    label_of = dict(zip(ds.manifest["video_id"], ds.manifest["label"]))
    frames, vids, labels = [], [], []
    for vid in video_ids:
        arr = ds.frames(vid)
        for i in frame_indices(arr.shape[0], max_frames):
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
                        device, desc: str) -> Iterator[torch.Tensor]:
    """``frames`` resized to squares, normalised, ``batch_size`` at a time, on ``device``, with
    a progress bar named ``desc``."""
    for start in progress(range(0, len(frames), batch_size), desc=desc, unit="batch"):
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
    desc: str | None = None,
) -> FrameFeatures:
    """Pooled c5 features of the (up to ``max_frames`` evenly spaced) frames of each video
    (``desc``: the progress bar's name, default ``features <dataset>``)."""
    encoder = encoder.to(device).eval()
    frames, vids, labels = frames_of(ds, video_ids, max_frames)
    desc = desc or f"features {ds.name}"
    feats = [encoder(x).float().cpu().numpy()
             for x in _normalized_batches(frames, image_size, batch_size, mean, std, device, desc)]
    dim = encoder.num_features
    return FrameFeatures(
        np.concatenate(feats) if feats else np.zeros((0, dim), np.float32),
        np.asarray(labels, dtype=int),
        np.asarray(vids),
    )


@torch.no_grad()
def adapt_batchnorm(encoder: Backbone, ds: StandardDataset, video_ids: list[str], image_size: int,
                    max_frames: int | None = None, batch_size: int = 64, mean: float = 0.5, std: float = 0.25,
                    device: str | torch.device = "cpu", desc: str | None = None) -> Backbone:
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
    for x in _normalized_batches(frames, image_size, batch_size, mean, std, device, desc or f"AdaBN {ds.name}"):
        if len(x) > 1:  # a BN batch of one frame has no variance
            adapted(x)
    return adapted.eval()


def adabn_features(encoder: Backbone, ds: StandardDataset, fitted: list[str], test: list[str], image_size: int,
                   max_frames: int | None, device: str | torch.device = "cpu", desc: str | None = None) -> FrameFeatures:
    """Features of ``fitted + test`` videos from ``encoder`` with BatchNorm adapted on ``fitted``
    only (a fold's training and validation videos, no label; never its test videos). ``desc``
    names the progress bars (with ``AdaBN`` and ``features`` before it)."""
    desc = desc or ds.name
    adapted = adapt_batchnorm(encoder, ds, fitted, image_size, max_frames, device=device, desc=f"AdaBN {desc}")
    return extract_features(adapted, ds, fitted + test, image_size, max_frames, device=device,
                            desc=f"features {desc}")

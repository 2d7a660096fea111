"""View samplers: which frames of a video form a sample, and how they become views.

A sampler works in two halves so that decoding stays on the CPU and augmentation runs on the
training device:
  - ``choose(n_frames, rng) -> (frame_indices, extras)`` in the data loader (numpy RNG);
  - ``make_views(frames, extras, augment, generator) -> (views, weights)`` on the device, where
    ``frames`` is uint8 ``[B, k, S, S]`` (k = ``n_frames`` of the sampler) and ``extras`` holds
    per-sample floats (e.g. the mixup coefficient) collated to ``[B]`` tensors.

Recipes name a sampler in their YAML (``sampler: {name: three_frame_mixup}``); a baseline adds
its own sampler with ``@register_sampler`` in its module. Lookup does not depend on what was
imported before: a name not registered yet makes :func:`build_sampler` import every method
module (:func:`hico.registry.import_method_modules`) and look again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

_SAMPLERS: dict[str, type] = {}

Augment = Callable[[torch.Tensor, torch.Generator | None], torch.Tensor]


def register_sampler(name: str):
    def decorate(cls: type) -> type:
        _SAMPLERS[name] = cls
        cls.sampler_name = name
        return cls

    return decorate


def build_sampler(spec: str | dict[str, Any] | None) -> ViewSampler:
    """``"same_frame"`` or ``{"name": "three_frame_mixup", "beta": 0.5}`` -> sampler."""
    if spec is None:
        spec = "same_frame"
    if isinstance(spec, str):
        spec = {"name": spec}
    spec = dict(spec)
    name = spec.pop("name", None)
    if name not in _SAMPLERS:
        from hico.registry import import_method_modules

        import_method_modules()  # a method's module may define the sampler (baselines/ucl.py)
    if name not in _SAMPLERS:
        raise ValueError(f"unknown view sampler {name!r}; registered: {sorted(_SAMPLERS)}")
    try:
        return _SAMPLERS[name](**spec)
    except TypeError as e:
        raise ValueError(f"view sampler {name!r}: bad arguments {spec} ({e})") from e


class ViewSampler:
    n_frames: int = 1
    sampler_name = "?"

    def choose(self, n_frames: int, rng: np.random.Generator) -> tuple[list[int], dict[str, float]]:
        raise NotImplementedError

    def make_views(
        self,
        frames: torch.Tensor,
        extras: dict[str, torch.Tensor],
        augment: Augment,
        generator: torch.Generator | None = None,
    ) -> tuple[list[torch.Tensor], torch.Tensor | None]:
        raise NotImplementedError

    def make_val_views(self, frames, extras, augment, generator=None):
        return self.make_views(frames, extras, augment, generator)


@register_sampler("same_frame")
@dataclass
class SameFrame(ViewSampler):
    """One random frame per video, augmented twice (SimCLR/MoCo/BYOL on video, as USCL's
    ``USDataset_image`` baseline does)."""

    n_views: int = 2
    n_frames = 1

    def choose(self, n_frames, rng):
        return [int(rng.integers(n_frames))], {}

    def make_views(self, frames, extras, augment, generator=None):
        f = frames[:, 0]
        return [augment(f, generator) for _ in range(self.n_views)], None


@register_sampler("two_frames")
@dataclass
class TwoFrames(ViewSampler):
    """Two distinct random frames of one video (one for a 1-frame video), each augmented."""

    n_frames = 2

    def choose(self, n_frames, rng):
        if n_frames == 1:
            return [0, 0], {}
        i, j = rng.choice(n_frames, size=2, replace=False)
        return [int(i), int(j)], {}

    def make_views(self, frames, extras, augment, generator=None):
        return [augment(frames[:, 0], generator), augment(frames[:, 1], generator)], None


@register_sampler("three_frame_mixup")
@dataclass
class ThreeFrameMixup(ViewSampler):
    """USCL/HiCo sample-pair generation (train_HiCo/data_aug/dataset_wrapper_Ultrasound_Video_Mixup.py).

    Three distinct frames f1, f2, f3 drawn uniformly; each augmented on its own (a1, a2, a3);
    one lam ~ Beta(beta, beta) per video; view_i = lam*a1 + (1-lam)*a2, view_j = lam*a3 + (1-lam)*a2
    (f2 the shared anchor; mixing after normalisation, as released). A 2-frame video gives
    (a1, a2) unmixed, a 1-frame video two augmentations of its frame: both are lam = 1 with the
    frame indices arranged so. Validation uses the unmixed (a1, a2), as released.
    ``mixup: false`` is the no-mixup ablation (lam = 1 always).
    """

    beta: float = 0.5
    mixup: bool = True
    n_frames = 3

    def __post_init__(self):
        if self.beta <= 0:
            raise ValueError(f"beta must be > 0, got {self.beta}")

    def choose(self, n_frames, rng):
        if n_frames >= 3:
            idx = [int(i) for i in rng.choice(n_frames, size=3, replace=False)]
            lam = float(rng.beta(self.beta, self.beta)) if self.mixup else 1.0
        elif n_frames == 2:
            first = int(rng.integers(2))
            idx = [first, 1 - first, 1 - first]
            lam = 1.0
        else:
            idx, lam = [0, 0, 0], 1.0
        return idx, {"lam": lam}

    def _augmented(self, frames, augment, generator):
        return [augment(frames[:, k], generator) for k in range(3)]

    def make_views(self, frames, extras, augment, generator=None):
        a1, a2, a3 = self._augmented(frames, augment, generator)
        lam = extras["lam"].to(a1.dtype).view(-1, 1, 1, 1)
        return [lam * a1 + (1 - lam) * a2, lam * a3 + (1 - lam) * a2], None

    def make_val_views(self, frames, extras, augment, generator=None):
        a1 = augment(frames[:, 0], generator)
        a2 = augment(frames[:, 1], generator)
        return [a1, a2], None


@register_sampler("near_frames")
@dataclass
class NearFrames(ViewSampler):
    """IVPP intra-video positive pairs (VanBerlo et al. 2024, bvanberl/IVPP): i1 uniform,
    i2 uniform within +-delta frames of i1 (may equal i1), pair weight
    w = (delta - |i2 - i1| + 1) / (delta + 1) (``weighted: false`` gives w = 1)."""

    delta: int = 3
    weighted: bool = True
    n_frames = 2

    def __post_init__(self):
        if self.delta < 0:
            raise ValueError(f"delta must be >= 0 frames, got {self.delta}")

    def choose(self, n_frames, rng):
        i1 = int(rng.integers(n_frames))
        lo, hi = max(0, i1 - self.delta), min(n_frames - 1, i1 + self.delta)
        i2 = int(rng.integers(lo, hi + 1))
        w = (self.delta - abs(i2 - i1) + 1) / (self.delta + 1) if self.weighted else 1.0
        return [i1, i2], {"weight": w}

    def make_views(self, frames, extras, augment, generator=None):
        views = [augment(frames[:, 0], generator), augment(frames[:, 1], generator)]
        return views, extras["weight"].to(views[0].dtype)

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
module (:func:`hico.registry.import_method_modules`) and look again. Here: ``same_frame``,
``first_frame`` (Meta-USCL's clean meta pairs), ``two_frames``, ``three_frame_mixup`` (USCL/HiCo), ``near_frames`` (IVPP), ``multi_crop`` (DINO:
views of several sizes, each kind with its own augmentation derived from the recipe's) and
``ppi_mixup`` (Meta-USCL's positive pair interpolator, with clean pairs for its meta step).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
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


@register_sampler("first_frame")
@dataclass
class FirstFrame(SameFrame):
    """A video's first frame, augmented ``n_views`` times: Meta-USCL's clean pairs for its meta
    step (the released ``USDataset_video(samples=1)`` over the held-out videos)."""

    def choose(self, n_frames, rng):
        return [0], {}


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


def _derived(augment: Augment, sampler: str, **changes: Any) -> Augment:
    """A copy of the recipe's :class:`~hico.data.transforms.FrameAugment` with ``changes`` to its
    config (crop size, scale, blur, solarisation of one kind of view)."""
    from hico.data.transforms import FrameAugment

    if not isinstance(augment, FrameAugment):
        raise TypeError(f"view sampler {sampler!r} derives its per-view augmentations from the recipe's "
                        f"FrameAugment, got {type(augment).__name__}")
    return FrameAugment(replace(augment.cfg, **changes))


def _per_view(values, n: int, what: str) -> tuple[float, ...]:
    values = tuple(float(v) for v in values)
    if len(values) != n:
        raise ValueError(f"{what}: one value per global view ({n}) expected, got {list(values)}")
    return values


@register_sampler("multi_crop")
@dataclass
class MultiCrop(ViewSampler):
    """DINO multi-crop (Caron et al., ICCV 2021, ``main_dino.py`` ``DataAugmentationDINO``) on one
    random frame per video: ``n_global`` crops at the run's image size with the recipe's
    ``crop_scale`` (DINO 0.4-1), then ``n_local`` crops of scale ``local_scale`` (0.05-0.4) at
    ``local_size = round(image_size * local_size_ratio)`` rounded to a multiple of
    ``size_multiple`` (DINO 224 -> 96; 64 px -> 32, so ViT patches of 16 or 8 tile every crop).

    Every view gets the recipe's flip and jitter; blur (p 1.0 and 0.1 on the globals, 0.5 on the
    locals, sigma 0.1-2 px of a 224 px global / 96 px local crop scaled to the crop size) and
    solarisation (p 0 and 0.2 on the globals) follow DINO per view. Returns
    ``[global_1, ..., global_G, local_1, ..., local_L]``: ``G`` tensors ``[B, 3, S, S]`` then
    ``L`` tensors ``[B, 3, s, s]``.
    """

    n_global: int = 2
    n_local: int = 8
    local_scale: tuple[float, float] = (0.05, 0.4)
    local_size_ratio: float = 96 / 224
    size_multiple: int = 16
    global_blur_p: tuple[float, ...] = (1.0, 0.1)
    global_solarize_p: tuple[float, ...] = (0.0, 0.2)
    local_blur_p: float = 0.5
    n_frames = 1

    def __post_init__(self):
        if self.n_global < 1 or self.n_local < 0:
            raise ValueError(f"multi_crop: n_global >= 1 and n_local >= 0 expected, got {self.n_global}, {self.n_local}")
        self.local_scale = tuple(float(v) for v in self.local_scale)
        if not 0 < self.local_scale[0] <= self.local_scale[1] <= 1:
            raise ValueError(f"multi_crop: local_scale must satisfy 0 < lo <= hi <= 1, got {self.local_scale}")
        if not 0 < self.local_size_ratio <= 1 or self.size_multiple < 1:
            raise ValueError("multi_crop: local_size_ratio must be in (0, 1] and size_multiple >= 1")
        self.global_blur_p = _per_view(self.global_blur_p, self.n_global, "multi_crop global_blur_p")
        self.global_solarize_p = _per_view(self.global_solarize_p, self.n_global, "multi_crop global_solarize_p")

    def local_size(self, image_size: int) -> int:
        m = self.size_multiple
        return max(m, int(round(image_size * self.local_size_ratio / m)) * m)

    def choose(self, n_frames, rng):
        return [int(rng.integers(n_frames))], {}

    def make_views(self, frames, extras, augment, generator=None):
        f = frames[:, 0]  # [B, S, S] uint8
        size = int(f.shape[-1])
        name = self.sampler_name
        views = [_derived(augment, name, blur_p=b, solarize_p=s)(f, generator)
                 for b, s in zip(self.global_blur_p, self.global_solarize_p)]
        if self.n_local:
            small = self.local_size(size)
            ref = augment.cfg.blur_reference_size * self.local_size_ratio  # DINO: 96 px local crops
            local = _derived(augment, name, image_size=small, crop_scale=self.local_scale,
                             blur_p=self.local_blur_p, solarize_p=0.0, blur_reference_size=max(1, round(ref)))
            views += [local(f, generator) for _ in range(self.n_local)]
        return views, None


@register_sampler("ppi_mixup")
@dataclass
class PositivePairInterpolator(ViewSampler):
    """Meta-USCL's positive pair interpolator (Schuture/Meta-USCL ``dataloader.py``
    ``USDataset_video.__getitem__``, ``mixup='standard'``, ``aug_first=False``).

    Three frames in temporal order i0 < i1 = i0 + d1 < i2 = i0 + d2: two distinct gaps drawn from
    ``1..min(T - 1, max_dist)`` and sorted, i0 uniform so that i2 fits. alpha, beta ~ Beta(3, 5)
    each; mixed on the raw pixels *before* augmentation and truncated to uint8 as released::

        left = uint8((1 - alpha) f0 + alpha f1),   right = uint8(beta f1 + (1 - beta) f2)

    (f1, the middle frame, is in both), then each view is augmented. A 2-frame video gives two
    frames ``d`` apart, unmixed (d uniform in ``1..min(T - 1, max_dist)``); a 1-frame video two
    augmentations of its frame. ``clean_pairs`` adds two augmentations of the video's *first*
    frame (the release's meta pairs, ``samples=1``) as views 3 and 4. Validation: the mixed pair.
    """

    alpha: float = 3.0
    beta: float = 5.0
    max_dist: int = 999
    clean_pairs: bool = True

    def __post_init__(self):
        if self.alpha <= 0 or self.beta <= 0:
            raise ValueError(f"ppi_mixup: Beta parameters must be > 0, got {self.alpha}, {self.beta}")
        if self.max_dist < 1:
            raise ValueError(f"ppi_mixup: max_dist must be >= 1 frame, got {self.max_dist}")
        self.n_frames = 4 if self.clean_pairs else 3

    def choose(self, n_frames, rng):
        reach = min(n_frames - 1, self.max_dist)
        if n_frames >= 3 and reach >= 2:
            d1, d2 = sorted(int(d) for d in rng.choice(np.arange(1, reach + 1), size=2, replace=False))
            i0 = int(rng.integers(n_frames - d2))
            idx = [i0, i0 + d1, i0 + d2]
            a, b = float(rng.beta(self.alpha, self.beta)), float(rng.beta(self.alpha, self.beta))
        elif n_frames >= 2:
            d = int(rng.integers(1, reach + 1))
            i0 = int(rng.integers(n_frames - d))
            idx, a, b = [i0, i0 + d, i0 + d], 0.0, 1.0  # left = f_i0, right = f_(i0 + d)
        else:
            idx, a, b = [0, 0, 0], 0.0, 1.0
        return idx + ([0] if self.clean_pairs else []), {"alpha": a, "beta": b}

    def _mixed(self, frames, extras):
        f = frames[:, :3].double()  # [B, 3 frames, S, S]; float64 as the numpy mix
        a = extras["alpha"].to(f.dtype).view(-1, 1, 1)
        b = extras["beta"].to(f.dtype).view(-1, 1, 1)
        left = ((1 - a) * f[:, 0] + a * f[:, 1]).floor_().clamp_(0, 255).to(torch.uint8)
        right = (b * f[:, 1] + (1 - b) * f[:, 2]).floor_().clamp_(0, 255).to(torch.uint8)
        return left, right

    def make_views(self, frames, extras, augment, generator=None):
        left, right = self._mixed(frames, extras)
        views = [augment(left, generator), augment(right, generator)]
        if self.clean_pairs:
            views += [augment(frames[:, 3], generator), augment(frames[:, 3], generator)]
        return views, None

    def make_val_views(self, frames, extras, augment, generator=None):
        left, right = self._mixed(frames, extras)
        return [augment(left, generator), augment(right, generator)], None

"""Ultrasound augmentations on uint8 frame batches, run on whatever device the batch is on.

The released HiCo/USCL pipeline (train_HiCo/data_aug/dataset_wrapper_Ultrasound_Video_Mixup.py)
is, per frame: Resize((224, 224)) -> RandomResizedCrop(224, scale=(0.8, 1), ratio=(0.8, 1.25))
-> RandomHorizontalFlip -> ColorJitter(0.8, 0.8, 0.8, 0.2) always -> Normalize(0.5, 0.25).
:class:`FrameAugment` does the same on a whole batch at once: the crop + flip is one affine
``grid_sample`` per batch (each sample with its own box), the jitter is per-sample arithmetic.
Frames are grayscale, so saturation and hue jitter are identities and are not modelled;
brightness is applied before contrast (torchvision picks a random order).
Generic-method recipes add grayscale-irrelevant blur via ``blur_p``, and DINO's second global
view solarisation via ``solarize_p`` (PIL ``ImageOps.solarize``: pixels >= 128/255 inverted).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F

SOLARIZE_THRESHOLD = 128 / 255  # PIL ImageOps.solarize(threshold=128) on uint8


@dataclass
class AugmentConfig:
    """Defaults are the released HiCo/USCL augmentation."""

    image_size: int = 224
    crop_scale: tuple[float, float] = (0.8, 1.0)
    crop_ratio: tuple[float, float] = (0.8, 1.25)
    hflip_p: float = 0.5
    brightness: float = 0.8
    contrast: float = 0.8
    jitter_p: float = 1.0
    blur_p: float = 0.0
    # sigma in pixels of a `blur_reference_size` image (SimCLR: 0.1-2.0 at 224 px, kernel ~10 % of
    # the image), scaled to `image_size`, so a 64 px demo is blurred as much as a 224 px run
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    blur_reference_size: int = 224
    solarize_p: float = 0.0
    mean: float = 0.5
    std: float = 0.25

    @classmethod
    def from_dict(cls, d: dict | None, image_size: int | None = None) -> AugmentConfig:
        d = dict(d or {})
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown augmentation keys {unknown}; valid keys: {sorted(names)}")
        if image_size is not None:
            d["image_size"] = image_size
        for k in ("crop_scale", "crop_ratio", "blur_sigma"):
            if k in d:
                d[k] = tuple(float(v) for v in d[k])
        cfg = cls(**d)
        if not (0 < cfg.crop_scale[0] <= cfg.crop_scale[1] <= 1):
            raise ValueError(f"crop_scale must satisfy 0 < lo <= hi <= 1, got {cfg.crop_scale}")
        if cfg.std <= 0:
            raise ValueError(f"std must be > 0, got {cfg.std}")
        if not 0 <= cfg.solarize_p <= 1:
            raise ValueError(f"solarize_p must be in [0, 1], got {cfg.solarize_p}")
        if cfg.blur_reference_size <= 0 or not 0 < cfg.blur_sigma[0] <= cfg.blur_sigma[1]:
            raise ValueError(f"blur_sigma must satisfy 0 < lo <= hi and blur_reference_size > 0, got "
                             f"{cfg.blur_sigma} at {cfg.blur_reference_size} px")
        return cfg


def normalize(frames_u8: torch.Tensor, mean: float, std: float) -> torch.Tensor:
    """uint8 ``[B, H, W]`` -> float ``[B, 3, H, W]`` normalised (3 channels for ImageNet stems)."""
    x = frames_u8.float().div_(255.0).sub_(mean).div_(std)
    return x.unsqueeze(1).expand(-1, 3, -1, -1).contiguous()


def resize_square(frames_u8: torch.Tensor, size: int) -> torch.Tensor:
    """``[..., H, W]`` uint8 -> ``[..., size, size]`` uint8 (the released Resize((s, s)) squash)."""
    if frames_u8.shape[-2:] == (size, size):
        return frames_u8
    lead = frames_u8.shape[:-2]
    x = frames_u8.reshape(-1, 1, *frames_u8.shape[-2:]).float()
    y = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return y.round_().clamp_(0, 255).to(torch.uint8).reshape(*lead, size, size)


class FrameAugment:
    """Batched random-resized-crop, flip, brightness/contrast jitter, optional blur, normalise."""

    def __init__(self, config: AugmentConfig):
        self.cfg = config

    def _crop_boxes(self, n: int, gen: torch.Generator | None, device) -> torch.Tensor:
        lo, hi = self.cfg.crop_scale
        area = torch.empty(n, device=device).uniform_(lo, hi, generator=gen)
        log_r = torch.empty(n, device=device).uniform_(
            math.log(self.cfg.crop_ratio[0]), math.log(self.cfg.crop_ratio[1]), generator=gen
        )
        ratio = log_r.exp()
        w = (area * ratio).sqrt().clamp(max=1.0)
        h = (area / ratio).sqrt().clamp(max=1.0)
        cx = (torch.rand(n, device=device, generator=gen) * 2 - 1) * (1 - w)
        cy = (torch.rand(n, device=device, generator=gen) * 2 - 1) * (1 - h)
        return torch.stack([w, h, cx, cy], dim=1)

    def __call__(self, frames_u8: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """uint8 ``[B, H, W]`` -> float ``[B, 3, S, S]``."""
        cfg = self.cfg
        b = frames_u8.shape[0]
        dev = frames_u8.device
        x = frames_u8.float().div_(255.0).unsqueeze(1)
        box = self._crop_boxes(b, generator, dev)
        flip = torch.where(torch.rand(b, device=dev, generator=generator) < cfg.hflip_p, -1.0, 1.0)
        theta = torch.zeros(b, 2, 3, device=dev)
        theta[:, 0, 0] = box[:, 0] * flip
        theta[:, 0, 2] = box[:, 2]
        theta[:, 1, 1] = box[:, 1]
        theta[:, 1, 2] = box[:, 3]
        grid = F.affine_grid(theta, [b, 1, cfg.image_size, cfg.image_size], align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)

        jitter = (torch.rand(b, device=dev, generator=generator) < cfg.jitter_p).float().view(b, 1, 1, 1)
        if cfg.brightness > 0:
            f = torch.empty(b, device=dev).uniform_(max(0.0, 1 - cfg.brightness), 1 + cfg.brightness, generator=generator)
            f = 1 + (f.view(b, 1, 1, 1) - 1) * jitter
            x = (x * f).clamp_(0, 1)
        if cfg.contrast > 0:
            c = torch.empty(b, device=dev).uniform_(max(0.0, 1 - cfg.contrast), 1 + cfg.contrast, generator=generator)
            c = 1 + (c.view(b, 1, 1, 1) - 1) * jitter
            m = x.mean(dim=(1, 2, 3), keepdim=True)
            x = ((x - m) * c + m).clamp_(0, 1)
        if cfg.blur_p > 0:
            x = self._blur(x, generator)
        if cfg.solarize_p > 0:  # no draw when off: the other recipes' random streams are unchanged
            apply = (torch.rand(b, device=dev, generator=generator) < cfg.solarize_p).view(b, 1, 1, 1)
            x = torch.where(apply & (x >= SOLARIZE_THRESHOLD), 1.0 - x, x)
        x = (x - cfg.mean) / cfg.std
        return x.expand(-1, 3, -1, -1).contiguous()

    def _blur(self, x: torch.Tensor, gen) -> torch.Tensor:
        b, _, h, w = x.shape
        dev = x.device
        scale = self.cfg.image_size / self.cfg.blur_reference_size
        lo, hi = (s * scale for s in self.cfg.blur_sigma)
        sigma = torch.empty(b, device=dev).uniform_(lo, hi, generator=gen)
        apply = torch.rand(b, device=dev, generator=gen) < self.cfg.blur_p
        radius = max(1, int(math.ceil(3 * hi)))
        radius = min(radius, (min(h, w) - 1) // 2)
        t = torch.arange(-radius, radius + 1, device=dev, dtype=x.dtype)
        k = torch.exp(-(t.view(1, -1) ** 2) / (2 * sigma.view(-1, 1) ** 2))
        k = k / k.sum(dim=1, keepdim=True)  # [B, K], separable
        xs = x.view(1, b, h, w)
        xs = F.conv2d(F.pad(xs, (radius, radius, 0, 0), mode="reflect"), k.view(b, 1, 1, -1), groups=b)
        xs = F.conv2d(F.pad(xs, (0, 0, radius, radius), mode="reflect"), k.view(b, 1, -1, 1), groups=b)
        blurred = xs.view(b, 1, h, w)
        return torch.where(apply.view(b, 1, 1, 1), blurred, x)

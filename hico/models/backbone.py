"""Any timm CNN as a multi-scale encoder: stages at strides 4, 8, 16, 32 (c2..c5).

``timm.create_model(name, features_only=True)`` gives every stage; we keep the last stage at
each of the strides 4/8/16/32, which is what a feature pyramid (HiCo's FPN, after Lin et al.
2017) is built on. The pooled c5 is the representation every evaluation protocol reads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from hico.errors import HicoError

PYRAMID_STRIDES = (4, 8, 16, 32)


class WeightsUnavailableError(HicoError, RuntimeError):
    """ImageNet weights asked for but neither timm's download nor a local file could give them."""


class Backbone(nn.Module):
    """A timm CNN returning ``[c2, c3, c4, c5]`` from :meth:`forward_pyramid` and pooled c5 from
    :meth:`forward`.

    Args:
        name: any timm model that supports ``features_only`` (resnet18, resnet50,
            efficientnet_b0, convnext_tiny, mobilenetv3_large_100, ...).
        pretrained: load ImageNet weights (timm's hub, or ``weights`` when given).
        weights: a local checkpoint of the timm model (``.pth``/``.safetensors``), used offline.
    """

    def __init__(self, name: str = "resnet18", pretrained: bool = False, weights: str | None = None):
        super().__init__()
        self.name = name
        import timm  # here, not at module level: importing timm costs ~1.5 s of every command's start

        kwargs = {"features_only": True}
        if weights:
            path = Path(weights).expanduser()
            if not path.exists():
                raise WeightsUnavailableError(
                    f"backbone {name}: weights file {path} does not exist. Download the timm "
                    f"ImageNet checkpoint of {name} and give its path as `weights:`, or set "
                    "`pretrained: false`."
                )
            kwargs["pretrained_cfg_overlay"] = {"file": str(path)}
            pretrained = True
        try:
            self.body = _create(name, pretrained, kwargs)
        except Exception as e:  # timm raises several types for unknown names / offline hubs
            if not timm.is_model(name):
                raise ValueError(
                    f"unknown timm backbone {name!r}; see timm.list_models() for valid names"
                ) from e
            if pretrained:
                raise WeightsUnavailableError(
                    f"backbone {name}: ImageNet weights could not be loaded ({type(e).__name__}: "
                    f"{str(e)[:300]}). Without internet, download them once elsewhere and set "
                    f"`weights: /path/to/{name}.safetensors`, or use `pretrained: false`."
                ) from e
            raise
        reductions = self.body.feature_info.reduction()
        self.stage_indices = []
        for stride in PYRAMID_STRIDES:
            matches = [i for i, r in enumerate(reductions) if r == stride]
            if not matches:
                raise ValueError(f"backbone {name} has no stage at stride {stride} (has {reductions})")
            self.stage_indices.append(matches[-1])
        channels = self.body.feature_info.channels()
        self.channels = [channels[i] for i in self.stage_indices]
        self.num_features = self.channels[-1]

    def forward_pyramid(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = self.body(x)
        return [feats[i] for i in self.stage_indices]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_pyramid(x)[-1].mean(dim=(2, 3))


def _create(name: str, pretrained: bool, kwargs: dict) -> nn.Module:
    import timm

    # timm zero-initialises the last BN of each residual block; torchvision (which the released
    # HiCo/USCL code uses) does not, and from scratch that silences the residual branches on the
    # first steps. Keep torchvision's init where the architecture has the switch.
    if not pretrained:
        try:
            return timm.create_model(name, pretrained=False, zero_init_last=False, **kwargs)
        except TypeError:
            pass
    return timm.create_model(name, pretrained=pretrained, **kwargs)


def save_encoder(backbone: Backbone, path: str | Path, meta: dict | None = None) -> None:
    """Export the encoder's weights (no pickled objects: loadable with weights_only=True)."""
    from hico.io import atomic_torch_save

    atomic_torch_save(
        {"backbone": backbone.name, "state_dict": backbone.state_dict(), "meta": dict(meta or {})},
        path,
    )


def _read_encoder_file(path: str | Path, map_location="cpu", mmap: bool = False) -> dict[str, Any]:
    blob = torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    if not isinstance(blob, dict) or "backbone" not in blob or "state_dict" not in blob:
        raise ValueError(f"{path}: not an encoder file written by hico (expected keys backbone, state_dict)")
    return blob


def read_encoder_meta(path: str | Path) -> dict[str, Any]:
    """The ``meta`` of :func:`save_encoder`'s file, without building the model (no timm)."""
    return dict(_read_encoder_file(path, mmap=True).get("meta", {}))


def load_encoder(path: str | Path, map_location="cpu") -> Backbone:
    """Rebuild a :class:`Backbone` from :func:`save_encoder`'s file."""
    blob = _read_encoder_file(path, map_location)
    backbone = Backbone(blob["backbone"], pretrained=False)
    backbone.load_state_dict(blob["state_dict"])
    backbone.meta = blob.get("meta", {})
    return backbone

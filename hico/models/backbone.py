"""Any timm CNN as a multi-scale encoder, or a timm Vision Transformer as a token encoder.

CNNs: ``timm.create_model(name, features_only=True)`` gives every stage; we keep the last stage
at each of the strides 4/8/16/32 (c2..c5), which is what a feature pyramid (HiCo's FPN, after
Lin et al. 2017) is built on. The pooled c5 is the representation every evaluation protocol reads.

ViTs (timm's ``VisionTransformer``: ``vit_tiny_patch16_224``, ``vit_small_patch16_224``,
``vit_small_patch8_224``, ``deit3_*``, ...): built for the run's ``image_size`` (any size the patch
size divides: ``vit_tiny_patch16_224`` at 64 px has 4 x 4 patches) with ``dynamic_img_size`` so
another evaluation size resamples the position embeddings. The pooled feature is the model's own
``global_pool``: the CLS token after the last LayerNorm for every ``vit_*`` (what DINO's k-NN and
linear evaluation and MAE's linear probe read). A ViT has no pyramid (one stride), so
:meth:`Backbone.forward_pyramid` is an error there.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from hico.errors import HicoError

PYRAMID_STRIDES = (4, 8, 16, 32)
#: timm modules whose models are ``VisionTransformer`` (or a subclass): the token-encoder kind
VIT_MODULES = ("timm.models.vision_transformer", "timm.models.deit")
BACKBONE_KINDS = ("cnn", "vit")
DEFAULT_VIT_SIZE = 224  # timm's size for the vit_*_224 names; any size the patch size divides works


class WeightsUnavailableError(HicoError, RuntimeError):
    """ImageNet weights asked for but neither timm's download nor a local file could give them."""


class BackboneError(HicoError, ValueError):
    """A backbone that cannot do what was asked of it (a pyramid from a ViT, a size its patches
    do not divide)."""


def backbone_kind(name: str) -> str:
    """``"vit"`` for timm Vision Transformers, ``"cnn"`` for everything else (no model is built)."""
    import timm  # here, not at module level: importing timm costs ~1.5 s of every command's start

    arch = timm.models.get_arch_name(name)
    try:
        module = timm.models.model_entrypoint(arch).__module__
    except (RuntimeError, KeyError):
        return "cnn"  # unknown names fail with their own message when the model is created
    return "vit" if module in VIT_MODULES else "cnn"


class Backbone(nn.Module):
    """A timm encoder: pooled features from :meth:`forward`; for CNNs also ``[c2, c3, c4, c5]``
    from :meth:`forward_pyramid`; for ViTs the token pieces MAE needs (:meth:`embed_tokens`,
    :meth:`encode_tokens`).

    Args:
        name: any timm CNN that supports ``features_only`` (resnet18, resnet50, efficientnet_b0,
            convnext_tiny, mobilenetv3_large_100, ...) or a timm ViT (``vit_tiny_patch16_224``, ...).
        pretrained: load ImageNet weights (timm's hub, or ``weights`` when given).
        weights: a local checkpoint of the timm model (``.pth``/``.safetensors``), used offline.
        image_size: input size of a ViT (its position-embedding grid is ``image_size / patch``);
            ignored by CNNs, which take any size.
    """

    def __init__(self, name: str = "resnet18", pretrained: bool = False, weights: str | None = None,
                 image_size: int | None = None):
        super().__init__()
        self.name = name
        self.kind = backbone_kind(name)
        kwargs = {"features_only": True} if self.kind == "cnn" else _vit_kwargs(name, image_size)
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
            import timm

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
        if self.kind == "vit":
            self._init_vit()
            return
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

    def _init_vit(self) -> None:
        from timm.models.vision_transformer import VisionTransformer

        if not isinstance(self.body, VisionTransformer):
            raise BackboneError(f"backbone {self.name}: expected a timm VisionTransformer, got "
                                f"{type(self.body).__name__}")
        self.patch_size = int(self.body.patch_embed.patch_size[0])
        self.image_size = int(self.body.patch_embed.img_size[0])
        self.num_prefix_tokens = int(self.body.num_prefix_tokens)
        self.num_features = int(self.body.num_features)
        self.channels = [self.num_features]
        self.stage_indices = []
        self.check_size((self.image_size, self.image_size))

    @property
    def is_vit(self) -> bool:
        return self.kind == "vit"

    def forward_pyramid(self, x: torch.Tensor) -> list[torch.Tensor]:
        if self.is_vit:
            raise BackboneError(
                f"backbone {self.name} is a Vision Transformer: one token map at stride "
                f"{self.patch_size}, no c2..c5 pyramid. Use a hierarchical (CNN) backbone such as "
                "resnet18 for methods built on a feature pyramid (hico)."
            )
        feats = self.body(x)
        return [feats[i] for i in self.stage_indices]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.is_vit:
            self.check_size(x.shape[-2:])
            return self.body(x)  # [B, D]: CLS token after the last norm (timm global_pool "token")
        return self.forward_pyramid(x)[-1].mean(dim=(2, 3))

    def last_block(self) -> nn.Module:
        """The block a "last block" fine-tune trains: the last child block of the last stage for
        a CNN (``layer4.1`` of a timm ResNet-18, the released HiCo/USCL choice), the last
        transformer block (``blocks.11``) for a ViT.

        CNN: from the module that produces c5, follow the last child down through plain
        containers (``nn.Sequential``/``nn.ModuleList``) and stop at the first real block.
        """
        if self.is_vit:
            return self.body.blocks[-1]
        name = self.body.feature_info.module_name()[self.stage_indices[-1]]
        module = None
        for candidate in (name, name.replace(".", "_")):
            try:
                module = self.body.get_submodule(candidate)
                break
            except AttributeError:
                continue
        if module is None:
            raise ValueError(f"backbone {self.name}: cannot find its last stage module {name!r}")
        while True:
            children = list(module.children())
            if not children:
                return module
            module = children[-1]
            if not isinstance(module, nn.Sequential | nn.ModuleList):
                return module

    # ------------------------------------------------------------------ ViT token pieces (MAE)

    def check_size(self, hw) -> None:
        h, w = (int(v) for v in hw)
        if h % self.patch_size or w % self.patch_size:
            raise BackboneError(
                f"backbone {self.name}: input {h}x{w} is not a multiple of its patch size "
                f"{self.patch_size}; use an image_size divisible by {self.patch_size}"
            )

    def embed_tokens(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x`` [B, 3, H, W] -> (prefix tokens [B, P, D], patch tokens [B, N, D]), each with its
        position embedding added (timm ``_pos_embed`` split in two so patches can be masked
        before the prefix is joined, as MAE's ``forward_encoder``). N = (H/p)(W/p), row-major."""
        vit = self.body
        self.check_size(x.shape[-2:])
        patches = vit.patch_embed(x)  # [B, H/p, W/p, D] (dynamic_img_size: NHWC)
        b, gh, gw, d = patches.shape
        patches = patches.reshape(b, gh * gw, d)
        prefix = [t.expand(b, -1, -1) for t in (vit.cls_token, vit.reg_token) if t is not None]
        prefix = torch.cat(prefix, dim=1) if prefix else patches.new_zeros(b, 0, d)
        if vit.pos_embed is not None:
            from timm.layers import resample_abs_pos_embed

            n_pos_prefix = 0 if vit.no_embed_class else self.num_prefix_tokens
            pos = resample_abs_pos_embed(vit.pos_embed, new_size=(gh, gw), old_size=vit.patch_embed.grid_size,
                                         num_prefix_tokens=n_pos_prefix)
            patches = patches + pos[:, n_pos_prefix:]
            if n_pos_prefix:
                prefix = prefix + pos[:, :n_pos_prefix]
        return prefix, patches

    def encode_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """Tokens [B, P + n, D] (prefix first) -> the transformer's normalised output [B, P + n, D]
        (timm ``forward_features`` after the position embedding)."""
        vit = self.body
        x = vit.norm_pre(vit.patch_drop(vit.pos_drop(tokens)))
        return vit.norm(vit.blocks(x))


def _vit_kwargs(name: str, image_size: int | None) -> dict:
    # num_classes=0: no classifier, forward() returns the pooled pre-logits features
    return {"num_classes": 0, "img_size": int(image_size or DEFAULT_VIT_SIZE), "dynamic_img_size": True}


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

    blob = {"backbone": backbone.name, "state_dict": backbone.state_dict(), "meta": dict(meta or {})}
    if backbone.is_vit:  # the position-embedding grid is part of the weights' shape
        blob["image_size"] = backbone.image_size
    atomic_torch_save(blob, path)


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
    backbone = Backbone(blob["backbone"], pretrained=False, image_size=blob.get("image_size"))
    backbone.load_state_dict(blob["state_dict"])
    backbone.meta = blob.get("meta", {})
    return backbone

"""``PretrainMethod``: what every pretraining method is, and how the shared loop drives it.

A method owns its backbone (timm, via :class:`~hico.models.backbone.Backbone`), its heads and
its loss. The shared loop (:mod:`hico.train`) owns data, augmentation, optimisation, AMP,
DDP, checkpoints and logs (the split of solo-learn's ``BaseMethod``).

A batch is a dict:
  - ``views``: list of float tensors ``[B, 3, S, S]``, already augmented and normalised on the
    device by the recipe's view sampler (:mod:`hico.data.pairs`);
  - ``video_idx``: ``[B]`` int64, index of the source video;
  - ``labels``: ``[B]`` int64 class of the video, ``-1`` when unlabelled;
  - ``weights``: ``[B]`` float pair weights (1 unless the sampler weights pairs, e.g. IVPP);
  - ``meta_views`` (only for a method whose :meth:`PretrainMethod.meta_sampler` names a sampler):
    that sampler's views ``[M, 3, S, S]`` of one batch of held-out videos, drawn every step.

``training_step`` returns ``{"loss": scalar, <part>: scalar, ...}``; parts are logged.
``after_step`` runs after each optimiser step (momentum encoders, queues).

Backbones: ``backbone_kinds`` says which kinds of :class:`~hico.models.backbone.Backbone` a
method is defined on (``"cnn"``, ``"vit"``); building it on another kind is an
:class:`UnsupportedBackboneError` that says why (``backbone_requirement``) and what to use.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import nn

from hico.errors import HicoError
from hico.models.backbone import BACKBONE_KINDS, Backbone, backbone_kind

BASE_ARGS = ("backbone", "pretrained", "weights", "num_classes", "image_size")


class UnsupportedBackboneError(HicoError, ValueError):
    """A method built on a kind of backbone it is not defined for (HiCo on a ViT, MAE on a CNN)."""


class PretrainMethod(nn.Module):
    """Base class; subclasses add heads and ``training_step`` and register with
    ``@register_method("name")``.

    Subclass constructors take the base arguments plus their own ``params`` as keyword
    arguments with the paper's defaults, and raise ``ValueError`` on bad values.
    """

    method_name: str = "?"
    #: kinds of backbone the method is defined on (subset of ``BACKBONE_KINDS``)
    backbone_kinds: tuple[str, ...] = BACKBONE_KINDS
    #: why the other kinds are not supported, and what to use instead (part of the error)
    backbone_requirement: str = ""

    def __init__(
        self,
        backbone: str = "resnet18",
        pretrained: bool = False,
        weights: str | None = None,
        num_classes: int = 0,
        image_size: int = 224,
    ):
        super().__init__()
        kind = backbone_kind(backbone)
        if kind not in self.backbone_kinds:
            raise UnsupportedBackboneError(
                f"method {self.method_name} does not support the {kind} backbone {backbone!r} "
                f"(it runs on: {', '.join(self.backbone_kinds)}). {self.backbone_requirement}".rstrip()
            )
        self.backbone = Backbone(backbone, pretrained=pretrained, weights=weights, image_size=image_size)
        self.num_classes = int(num_classes)
        self.image_size = int(image_size)

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        # DDP synchronises gradients of what runs inside forward(), so the step is the forward.
        return self.training_step(batch)

    def training_step(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    @torch.no_grad()
    def validation_step(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Loss on held-out videos (checkpoint selection); by default the training loss."""
        return self.training_step(batch)

    def after_step(self, progress: float) -> None:
        """Called after every optimiser step with ``progress`` = step / total steps in [0, 1]."""

    def fit_to_data(self, n_train_videos: int, batch_size: int) -> None:
        """Adapt data-size-dependent state before training or resuming (e.g. MoCo's queue
        must not outgrow the videos drawn per epoch). Called by the loop before a checkpoint
        is loaded."""

    def meta_sampler(self) -> str | dict[str, Any] | None:
        """A view-sampler spec (as a recipe's ``sampler``) for a meta step on held-out videos, or
        None (the default: no meta batches). With a spec the loop splits the held-out videos by
        patient into meta videos (never trained on, never validated on) and validation videos,
        and passes one batch of the meta videos' views as ``batch["meta_views"]`` every step."""
        return None

    def sees_labels(self) -> bool:
        """Whether ``training_step`` uses the batch's ``labels`` (the run records the share of
        labelled videos as ``labelled_fraction``; 0 for a method that never reads them)."""
        return False

    def encoder(self) -> Backbone:
        return self.backbone

    def param_groups(self) -> list[dict[str, Any]]:
        return [{"params": [p for p in self.parameters() if p.requires_grad]}]


def method_params(cls: type) -> dict[str, Any]:
    """The ``params`` a method class accepts (its own keyword arguments) with defaults."""
    params: dict[str, Any] = {}
    for klass in cls.__mro__:
        if klass is PretrainMethod or not issubclass(klass, PretrainMethod):
            continue
        for name, p in inspect.signature(klass.__init__).parameters.items():
            if name in ("self", *BASE_ARGS) or p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
                continue
            params.setdefault(name, None if p.default is inspect.Parameter.empty else p.default)
    return params


def build_method(name: str, params: dict[str, Any] | None = None, **base: Any) -> PretrainMethod:
    """Instantiate registered method ``name`` with recipe ``params`` and base arguments.

    Unknown ``params`` keys are errors that name the method's accepted keys.
    """
    from hico.registry import get_method, method_yaml_path

    cls = get_method(name)
    params = dict(params or {})
    accepted = method_params(cls)
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise ValueError(
            f"method {name}: unknown params {unknown} in {method_yaml_path(name)} (or its overrides). "
            f"{cls.__name__} accepts: {sorted(accepted)}"
        )
    return cls(**base, **params)

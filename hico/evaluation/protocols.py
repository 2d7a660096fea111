"""The protocol registry: one small record per protocol, the one place protocols are named.

A record says what a protocol reads (``features`` of the frozen encoder, or ``frames`` with the
encoder to train), whether the encoder's BatchNorm statistics are re-estimated on the fold
first (AdaBN), and where its function lives (``"module:function"``, imported when the protocol
runs, so reading the registry needs neither torch nor scikit-learn: the workflow reads it at
DAG time). ``fixed`` arguments are bound by the protocol itself (the fine-tune variants).

Standard-library only.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hico.errors import HicoError

FEATURES = "features"
FRAMES = "frames"


class ProtocolError(HicoError, ValueError):
    """An unknown protocol, or arguments a protocol does not take."""


@dataclass(frozen=True)
class Protocol:
    """One evaluation protocol.

    ``run`` is the function or its ``"module:function"`` path. A ``features`` protocol is called
    ``run(train, val, test, n_classes, seed=..., **args)`` with :class:`FrameFeatures`; a
    ``frames`` protocol also gets ``encoder=`` and ``device=``, with :class:`FrameSet`. Either
    returns ``{"proba": [N_test, K], "selection": {...}}`` and optionally ``hyperparameters``,
    ``variant`` and extra test-set ``records`` (``{"paper_protocol": {"proba", ...}, ...}``).
    """

    name: str
    inputs: str
    adapt_bn: bool
    run: str | Callable[..., dict[str, Any]]
    fixed: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.inputs not in (FEATURES, FRAMES):
            raise ValueError(f"protocol {self.name}: inputs must be {FEATURES!r} or {FRAMES!r}, got {self.inputs!r}")
        if self.adapt_bn and self.inputs != FEATURES:
            raise ValueError(f"protocol {self.name}: BatchNorm adaptation applies to frozen features only")

    @property
    def bn_mode(self) -> str:
        """``adabn`` (statistics re-estimated per fold) or ``frozen`` (the encoder's own)."""
        return "adabn" if self.adapt_bn else "frozen"

    def function(self) -> Callable[..., dict[str, Any]]:
        if callable(self.run):
            return self.run
        module, _, attr = self.run.partition(":")
        return getattr(importlib.import_module(module), attr)


PROTOCOLS: dict[str, Protocol] = {}


def register_protocol(protocol: Protocol) -> Protocol:
    """Add ``protocol`` to the registry (the one registration path; tests use it for spies)."""
    PROTOCOLS[protocol.name] = protocol
    return protocol


def get_protocol(name: str) -> Protocol:
    try:
        return PROTOCOLS[name]
    except KeyError:
        raise ProtocolError(f"unknown protocol {name!r}; available: {', '.join(sorted(PROTOCOLS))}") from None


_FROZEN = "hico.evaluation.frozen"
_FINETUNE = "hico.evaluation.finetune:finetune"
for _record in (
    Protocol("linear_probe", FEATURES, False, f"{_FROZEN}:linear_probe"),
    Protocol("knn", FEATURES, False, f"{_FROZEN}:knn"),
    Protocol("linear_probe_adabn", FEATURES, True, f"{_FROZEN}:linear_probe"),
    Protocol("knn_adabn", FEATURES, True, f"{_FROZEN}:knn"),
    Protocol("finetune", FRAMES, False, _FINETUNE),
    Protocol("finetune_released", FRAMES, False, _FINETUNE, {"variant": "released"}),
    Protocol("finetune_full", FRAMES, False, _FINETUNE, {"variant": "full"}),
):
    register_protocol(_record)

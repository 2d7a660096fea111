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
import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hico.errors import HicoError

FEATURES = "features"
FRAMES = "frames"


class EvaluationError(HicoError, ValueError):
    """Evaluation settings that cannot be right (the message says which and what is expected)."""


class ProtocolError(EvaluationError):
    """An unknown protocol, or arguments a protocol does not take."""


#: what the evaluation itself passes to every protocol function (never a user argument)
SUPPLIED = ("train", "val", "test", "n_classes", "seed", "encoder", "device")


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
    #: ``check(**args)`` raises :class:`ProtocolError` for a nonsensical value (``k: 0``)
    check: str | Callable[..., Any] | None = None

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
        return _resolve(self.run)

    def accepted_args(self) -> list[str]:
        """The arguments a user may give (``--args``, the workflow's protocol settings)."""
        params = inspect.signature(self.function()).parameters.values()
        return [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
                and p.name not in SUPPLIED and p.name not in self.fixed]

    def check_args(self, args: dict[str, Any]) -> None:
        """Refuse, before anything is computed, arguments the protocol does not take or values
        that cannot be meant."""
        fixed = sorted(set(args) & set(self.fixed))
        if fixed:
            raise ProtocolError(f"protocol {self.name} fixes {', '.join(f'{k}={self.fixed[k]!r}' for k in fixed)}; "
                                f"drop {fixed} from its arguments (or use the generic protocol with that argument)")
        accepted = self.accepted_args()
        unknown = sorted(set(args) - set(accepted))
        takes_any = any(p.kind is p.VAR_KEYWORD for p in inspect.signature(self.function()).parameters.values())
        if unknown and not takes_any:
            raise ProtocolError(f"protocol {self.name}: unknown argument(s) {unknown}; it takes "
                                f"{', '.join(accepted) or 'no arguments'}")
        if self.check is not None:
            _resolve(self.check)(**{**self.fixed, **args})


def _resolve(target: str | Callable[..., Any]) -> Callable[..., Any]:
    if callable(target):
        return target
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def positive_int(protocol: str, name: str, value: Any) -> int:
    """``value`` as an int >= 1 (an integral float is accepted), else a :class:`ProtocolError`."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not float(value).is_integer() or value < 1:
        raise ProtocolError(f"protocol {protocol}: {name} must be an integer >= 1, got {value!r}")
    return int(value)


def positive_number(protocol: str, name: str, value: Any, allow_zero: bool = False) -> float:
    """``value`` as a finite float > 0 (>= 0 with ``allow_zero``), else a :class:`ProtocolError`."""
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ProtocolError(f"protocol {protocol}: {name} must be a finite number {bound}, got {value!r}")
    return float(value)


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
_FINETUNE = "hico.evaluation.finetune"
for _record in (
    Protocol("linear_probe", FEATURES, False, f"{_FROZEN}:linear_probe", check=f"{_FROZEN}:linear_probe_arguments"),
    Protocol("knn", FEATURES, False, f"{_FROZEN}:knn", check=f"{_FROZEN}:knn_arguments"),
    Protocol("linear_probe_adabn", FEATURES, True, f"{_FROZEN}:linear_probe", check=f"{_FROZEN}:linear_probe_arguments"),
    Protocol("knn_adabn", FEATURES, True, f"{_FROZEN}:knn", check=f"{_FROZEN}:knn_arguments"),
    Protocol("finetune", FRAMES, False, f"{_FINETUNE}:finetune", check=f"{_FINETUNE}:finetune_hyperparameters"),
    Protocol("finetune_released", FRAMES, False, f"{_FINETUNE}:finetune", {"variant": "released"},
             check=f"{_FINETUNE}:finetune_hyperparameters"),
    Protocol("finetune_full", FRAMES, False, f"{_FINETUNE}:finetune", {"variant": "full"},
             check=f"{_FINETUNE}:finetune_hyperparameters"),
):
    register_protocol(_record)

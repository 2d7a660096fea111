"""Typed run configuration: a method's YAML recipe merged with run overrides.

Unknown keys are errors (a misspelt ``learning_rate`` must not silently train with the
default). Precedence, low to high: dataclass defaults < ``<method>.yaml`` < the workflow
config's ``pretrain.overrides`` < its ``methods.<name>`` overrides.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from hico.errors import HicoError
from hico.registry import load_method_config
from hico.trackers import tracker_names


class ConfigError(HicoError, ValueError):
    pass


@dataclass
class OptimizerConfig:
    name: str = "adam"  # adam (coupled L2, as released), adamw or sgd
    lr: float = 3e-4
    weight_decay: float = 1e-4
    momentum: float = 0.9
    betas: tuple[float, float] = (0.9, 0.999)
    scale_lr_with_batch: bool = False  # lr * batch / 256 (SimSiam/BYOL/IVPP)


@dataclass
class ScheduleConfig:
    name: str = "cosine"  # cosine | constant
    # Lengths are shares of `epochs`, so overriding `epochs` rescales the whole schedule.
    hold_fraction: float = 0.0  # LR held constant for round(hold_fraction * epochs) epochs (released: 10/300)
    warmup_fraction: float = 0.0  # linear warm-up over warmup_fraction * epochs
    t_max_fraction: float | None = None  # cosine period; None: the epochs after hold/warm-up (LR ends at min_lr)
    min_lr: float = 0.0


@dataclass
class PretrainConfig:
    name: str
    requires_pretraining: bool = True
    citation: str = ""
    reference_code: str = ""
    backbone: str = "resnet18"
    pretrained: bool = False
    weights: str | None = None
    image_size: int = 224
    batch_size: int = 32
    epochs: int = 300
    sampler: Any = "same_frame"
    augment: dict[str, Any] = field(default_factory=dict)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    params: dict[str, Any] = field(default_factory=dict)
    label_rate: float = 0.0  # share of pretraining videos whose label the method may see
    val_fraction: float = 0.2  # held-out videos for the validation loss (released: 0.2)
    export: str = "best"  # best (lowest validation loss, released) | last
    checkpoint_epochs: list[int] = field(default_factory=list)  # also keep encoder_epoch<k>.pt (convergence)
    amp: bool = True  # bf16 autocast on CUDA
    # bf16 autocast + channels_last on CPUs whose oneDNN runs bf16 natively (AVX512-BF16/AMX), as on
    # CUDA; other CPUs stay in fp32 (emulated bf16 would be slower). `false`: fp32 everywhere on CPU.
    cpu_amp: bool = True
    channels_last: bool = True
    num_workers: int = 2
    # experiment trackers: csv | tensorboard | mlflow, or a list (hico.trackers); train_log.csv is always written
    logger: Any = field(default_factory=lambda: ["csv"])
    seed: int = 0
    deviations: list[Any] = field(default_factory=list)
    notes: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _typed(cls, data: dict[str, Any], where: str):
    names = {f.name: f for f in fields(cls)}
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ConfigError(f"{where}: unknown keys {unknown}; valid keys: {sorted(names)}")
    out = {}
    for k, v in data.items():
        if k == "optimizer":
            v = v if isinstance(v, OptimizerConfig) else _typed(OptimizerConfig, v or {}, f"{where}.optimizer")
        elif k == "schedule":
            v = v if isinstance(v, ScheduleConfig) else _typed(ScheduleConfig, v or {}, f"{where}.schedule")
        elif k == "betas":
            v = tuple(float(x) for x in v)
        elif k in ("lr", "weight_decay", "momentum", "min_lr", "label_rate", "val_fraction", "hold_fraction",
                   "warmup_fraction", "t_max_fraction") and v is not None:
            v = float(v)
        out[k] = v
    return cls(**out)


def deep_merge(base: dict[str, Any], override: dict[str, Any] | None) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in (override or {}).items():
        # a sampler override replaces the recipe's: another sampler does not take its arguments
        if isinstance(v, dict) and isinstance(out.get(k), dict) and k != "sampler":
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def resolve_pretrain_config(name: str, *overrides: dict[str, Any] | None) -> PretrainConfig:
    """Recipe of method ``name`` with each override dict merged on top, typed and checked."""
    recipe = load_method_config(name)
    where = recipe.pop("_path")
    merged = recipe
    for o in overrides:
        merged = deep_merge(merged, o)
    cfg = _typed(PretrainConfig, merged, where)
    if cfg.export not in ("best", "last"):
        raise ConfigError(f"{where}: export must be 'best' or 'last', got {cfg.export!r}")
    if not 0 <= cfg.label_rate <= 1:
        raise ConfigError(f"{where}: label_rate must be in [0, 1], got {cfg.label_rate}")
    bad = [e for e in cfg.checkpoint_epochs if not 1 <= int(e) <= cfg.epochs]
    if bad:
        raise ConfigError(f"{where}: checkpoint_epochs {bad} outside 1..epochs ({cfg.epochs})")
    s = cfg.schedule
    shares = {"hold_fraction": s.hold_fraction, "warmup_fraction": s.warmup_fraction}
    bad = {k: v for k, v in shares.items() if not 0 <= v < 1}
    if bad or (s.t_max_fraction is not None and not s.t_max_fraction > 0) or (s.hold_fraction and s.warmup_fraction):
        raise ConfigError(f"{where}: schedule shares of epochs must satisfy 0 <= hold_fraction, warmup_fraction < 1 "
                          f"(not both), t_max_fraction > 0; got {s}")
    if cfg.image_size % 32:
        raise ConfigError(f"{where}: image_size must be divisible by 32, got {cfg.image_size}")
    try:
        cfg.logger = tracker_names(cfg.logger, f"{where}: logger")
    except ValueError as e:
        raise ConfigError(str(e)) from None
    return cfg

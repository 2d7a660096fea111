"""Evaluation protocols of a pretrained encoder on one fold of a downstream dataset.

The code lives in :mod:`hico.evaluation` (one module per job); this module keeps the names
``from hico.evaluate import ...`` has always given, imported when first asked for, so that
``import hico.evaluate`` costs nothing until a name is used.

- ``linear_probe``, ``knn`` (:mod:`hico.evaluation.frozen`): on frozen pooled c5 features;
- ``linear_probe_adabn``, ``knn_adabn``: the same with BatchNorm statistics re-estimated on the
  fold's training and validation frames (:func:`~hico.evaluation.extract.adapt_batchnorm`);
- ``finetune`` (variants ``released`` and ``full``; also registered as ``finetune_released``
  and ``finetune_full``, :mod:`hico.evaluation.finetune`): the released fine-tuning recipe;
- the registry of these records: :mod:`hico.evaluation.protocols`.

Metrics are computed at frame level and at video level (:mod:`hico.evaluation.metrics`).
"""

from __future__ import annotations

import importlib
from typing import Any

_HOME = {
    "hico.evaluation.protocols": ("PROTOCOLS", "Protocol", "ProtocolError", "EvaluationError", "get_protocol", "register_protocol"),
    "hico.evaluation.metrics": ("classification_metrics", "video_level", "frame_and_video_metrics", "full_proba"),
    "hico.evaluation.splits": ("FrameFeatures", "FrameSet", "FoldSplit", "frame_indices", "subsample_train_videos",
                               "fold_splits", "select_videos"),
    "hico.evaluation.frozen": ("linear_probe", "knn"),
    "hico.evaluation.extract": ("frames_of", "load_frames", "extract_features", "adapt_batchnorm",
                                "adabn_features"),
    "hico.evaluation.finetune": ("FINETUNE_VARIANTS", "last_block", "FinetuneModel", "train_epoch", "select_epoch",
                                 "finetune", "finetune_hyperparameters"),
    "hico.evaluation.features": ("FeatureFile", "FeatureFileError", "read_features", "write_features",
                                 "checked_features", "dataset_sha256", "file_sha256"),
    "hico.evaluation.run": ("METRICS_SCHEMA_VERSION", "evaluate", "evaluate_folds", "metrics_record", "video_outcomes"),
    "hico.models.backbone": ("load_encoder",),
    "hico.data.transforms": ("normalize", "resize_square"),
}
_MODULE_OF = {name: module for module, names in _HOME.items() for name in names}

__all__ = sorted(_MODULE_OF)


def __getattr__(name: str) -> Any:
    if name not in _MODULE_OF:
        raise AttributeError(f"module 'hico.evaluate' has no attribute {name!r}")
    return getattr(importlib.import_module(_MODULE_OF[name]), name)


def __dir__() -> list[str]:
    return __all__

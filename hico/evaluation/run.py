"""One protocol on folds of a dataset -> one ``metrics.json`` per fold.

Every protocol sees only the training part of the fold for fitting and its inner validation
part (patient-grouped, :func:`hico.data.folds.split_fold`) for model selection; the test fold
is touched for the reported numbers only. :func:`evaluate_folds` orchestrates: it builds the
splits, gets the protocol's inputs, calls the protocol and assembles and writes the record.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hico import layout
from hico.data.folds import read_folds
from hico.data.standard import StandardDataset, load_dataset
from hico.evaluation.features import (
    FeatureFile,
    block_name,
    checked_features,
    compute_block,
    feature_key,
)
from hico.evaluation.metrics import frame_and_video_metrics, video_level
from hico.evaluation.protocols import FEATURES, FRAMES, EvaluationError, Protocol, get_protocol
from hico.evaluation.splits import FoldSplit, FrameFeatures, FrameSet, fold_splits, select_videos
from hico.io import atomic_write_json
from hico.trackers import log_evaluation

# torch, timm and the extraction code are imported where the encoder runs: an evaluation that
# reads a feature file needs none of them.

METRICS_SCHEMA_VERSION = 3

FoldData = dict[str, FrameFeatures | FrameSet]  # "train", "val", "test"


@dataclass
class EvaluationRun:
    """What every fold's record shares: the protocol, its arguments, the encoder, the dataset."""

    protocol: Protocol
    asked_as: str  # the protocol name as given (``finetune`` or ``finetune_released``, ...)
    protocol_args: dict[str, Any]
    dataset: StandardDataset
    fold_table: Any  # pandas.DataFrame of the folds file
    encoder_path: Path
    method: str | None
    seed: int
    image_size: int
    max_frames: int | None
    val_fraction: float
    train_fraction: float
    device: str | None
    encoder_meta: dict[str, Any] = field(default_factory=dict)
    features: FeatureFile | None = None  # the feature file the inputs come from, if any


def evaluate(encoder_path: str | Path, dataset_dir: str | Path, folds_path: str | Path, fold: int,
             protocol: str = "linear_probe", *, out_path: str | Path | None = None, **options: Any) -> dict[str, Any]:
    """Run one protocol on one fold and write ``metrics.json`` (when ``out_path`` is given);
    ``options`` as :func:`evaluate_folds`."""
    return evaluate_folds(encoder_path, dataset_dir, folds_path, [fold], protocol, out_paths=[out_path],
                          **options)[0]


def evaluate_folds(
    encoder_path: str | Path,
    dataset_dir: str | Path,
    folds_path: str | Path,
    folds: list[int],
    protocol: str = "linear_probe",
    *,
    seed: int = 0,
    image_size: int = 224,
    max_frames: int | None = 30,
    val_fraction: float = 0.2,
    out_paths: list[str | Path | None] | None = None,
    method: str | None = None,
    device: str | None = None,
    train_fraction: float = 1.0,
    features: str | Path | None = None,
    **protocol_args: Any,
) -> list[dict[str, Any]]:
    """Run one protocol on several folds of one dataset; one ``metrics.json`` per fold.

    Frozen-feature protocols read ``features`` (a file of ``hico features`` for exactly these
    encoder, dataset, sizes, BN mode and folds; anything else is refused) or compute the same
    blocks once for all folds (AdaBN: once per fold); fine-tuning reloads the encoder for each
    fold. ``train_fraction`` in (0, 1] keeps that share of the fold's training videos
    (:func:`~hico.evaluation.splits.subsample_train_videos`); ``device`` ``None``/``"auto"``
    picks CUDA when present.
    """
    spec = get_protocol(protocol)
    spec.check_args(protocol_args)
    _check_frames(image_size, max_frames)
    if features is not None and spec.inputs != FEATURES:
        raise EvaluationError(f"protocol {protocol} trains on frames; a feature file (--features) is for the "
                              "frozen-feature protocols only")
    out_paths = _output_paths(folds, out_paths)
    ds = load_dataset(dataset_dir)
    fold_table = read_folds(folds_path, ds.manifest)
    splits = fold_splits(ds.manifest, fold_table, folds, val_fraction=val_fraction, seed=seed,
                         train_fraction=train_fraction)
    run = EvaluationRun(protocol=spec, asked_as=protocol, protocol_args=protocol_args, dataset=ds,
                        fold_table=fold_table, encoder_path=Path(encoder_path), method=method, seed=seed,
                        image_size=image_size, max_frames=max_frames, val_fraction=val_fraction,
                        train_fraction=train_fraction, device=device)
    if features is not None:
        key = feature_key(encoder_path, ds, image_size=image_size, max_frames=max_frames, bn=spec.bn_mode,
                          folds_path=folds_path if spec.adapt_bn else None)
        run.features = checked_features(features, key)
        run.encoder_meta = run.features.meta["encoder"]["meta"]
        run.device = "cpu"  # the protocol fits on the CPU; the extraction's device is in the file
    inputs_of = _fold_inputs(run, splits)
    results = []
    for split, out_path in zip(splits, out_paths):
        data = inputs_of(split)
        result = _call_protocol(run, data)
        metrics = metrics_record(run, split, data, result)
        if out_path is not None:
            atomic_write_json(Path(out_path), metrics)
            log_evaluation(run.encoder_path, metrics)  # to the pretraining run's trackers, if it has any
        results.append(metrics)
    return results


def _output_paths(folds: list[int], out_paths: list[str | Path | None] | None) -> list[str | Path | None]:
    if not folds:
        raise EvaluationError("no fold to evaluate; give one or more folds of the folds file")
    out_paths = list(out_paths) if out_paths is not None else [None] * len(folds)
    if len(out_paths) != len(folds):
        raise EvaluationError(f"{len(folds)} folds but {len(out_paths)} output paths; give one output per fold")
    return out_paths


def _check_frames(image_size: int, max_frames: int | None) -> None:
    """An image size >= 1 and ``max_frames`` >= 1 per video (None or 0: every stored frame)."""
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
        raise EvaluationError(f"image_size must be an integer >= 1 (pixels), got {image_size!r}")
    if max_frames is not None and (isinstance(max_frames, bool) or not isinstance(max_frames, int) or max_frames < 0):
        raise EvaluationError(f"max_frames must be an integer >= 1 (0 or None: every stored frame), got {max_frames!r}")


def _resolve_device(device: str | None) -> str:
    from hico.device import resolve_device  # imports torch: only when features are computed

    return str(resolve_device(device))


def _fold_inputs(run: EvaluationRun, splits: list[FoldSplit]) -> Callable[[FoldSplit], FoldData]:
    """A function giving a fold's train/val/test inputs of the protocol's kind: frames (loaded
    once for every video any fold uses), or a block of frozen features (:mod:`features`): read
    from the feature file, or computed when first needed (the frozen block once for all folds,
    AdaBN blocks per fold)."""
    if run.protocol.inputs == FRAMES:
        block_of = _loaded_frames(run, splits)
    elif run.features is not None:
        def block_of(split: FoldSplit) -> FrameFeatures:
            return run.features.block(block_name(run.protocol.bn_mode, split.fold))
    else:
        block_of = _computed_blocks(run)

    def inputs_of(split: FoldSplit) -> FoldData:
        data = block_of(split)
        return {name: select_videos(data, ids) for name, ids in (("train", split.train), ("val", split.val),
                                                                  ("test", split.test))}

    return inputs_of


def _loaded_frames(run: EvaluationRun, splits: list[FoldSplit]) -> Callable[[FoldSplit], FrameSet]:
    from hico.evaluation.extract import load_frames
    from hico.models.backbone import read_encoder_meta

    run.encoder_meta = read_encoder_meta(run.encoder_path)
    run.device = _resolve_device(run.device)
    used = sorted({v for s in splits for v in (*s.train, *s.val, *s.test)})
    frames = load_frames(run.dataset, used, run.image_size, run.max_frames)
    return lambda split: frames


def _computed_blocks(run: EvaluationRun) -> Callable[[FoldSplit], FrameFeatures]:
    """Feature blocks computed from the encoder, each once (what ``hico features`` would write)."""
    import torch

    from hico.models.backbone import load_encoder

    run.device = _resolve_device(run.device)
    torch.manual_seed(run.seed)
    encoder = load_encoder(run.encoder_path)
    run.encoder_meta = encoder.meta
    fold_of = dict(zip(run.fold_table["video_id"], run.fold_table["fold"]))
    done: dict[str, FrameFeatures] = {}

    def block_of(split: FoldSplit) -> FrameFeatures:
        name = block_name(run.protocol.bn_mode, split.fold)
        if name not in done:
            done[name] = compute_block(encoder, run.dataset, image_size=run.image_size, max_frames=run.max_frames,
                                       bn=run.protocol.bn_mode, fold=split.fold, fold_of=fold_of, device=run.device)
        return done[name]

    return block_of


def _call_protocol(run: EvaluationRun, data: FoldData) -> dict[str, Any]:
    fn = run.protocol.function()
    args = {**run.protocol.fixed, **run.protocol_args}
    n_classes = len(run.dataset.classes)
    if run.protocol.inputs == FEATURES:
        return fn(data["train"], data["val"], data["test"], n_classes, seed=run.seed, **args)
    import torch

    from hico.models.backbone import load_encoder

    torch.manual_seed(run.seed)
    fresh = load_encoder(run.encoder_path)  # fine-tuning changes the encoder: start each fold anew
    return fn(data["train"], data["val"], data["test"], n_classes, seed=run.seed, encoder=fresh, device=run.device,
              **args)


def _run_config(encoder_path: Path) -> dict[str, Any] | None:
    """The pretraining run's ``config.json`` beside the encoder (None when absent or unreadable)."""
    path = encoder_path.parent / layout.RUN_CONFIG
    if not path.exists():
        return None
    try:
        run = json.loads(path.read_text())
    except json.JSONDecodeError:
        return None
    return run if isinstance(run, dict) else None


def _encoder_facts(encoder_path: Path, meta: dict[str, Any]) -> dict[str, Any]:
    """Epoch, kind (``final`` or ``checkpoint``), pretraining datasets (``[]`` for a control,
    ``None`` when unknown) and the share of labelled pretraining videos of an encoder file.

    Read from the run's ``config.json`` (contract 1), else the encoder meta. A control's
    labelled fraction is 0.0 even where an older ``config.json`` does not say so.
    """
    checkpoint = layout.checkpoint_epoch(encoder_path)
    epoch = meta.get("epoch")
    if epoch is None:
        epoch = checkpoint
    run = _run_config(encoder_path) or {}
    datasets = [Path(d).name for d in run.get("datasets") or []] or None
    control = (run.get("config") or {}).get("requires_pretraining") is False
    if datasets is None and control:
        datasets = []  # a control (random_init, imagenet): no pretraining data at all
    labelled = run.get("labelled_fraction", meta.get("labelled_fraction"))
    if labelled is None and control:
        labelled = 0.0
    return {"encoder_epoch": int(epoch) if epoch is not None else None,
            "encoder_kind": "checkpoint" if checkpoint is not None else "final",
            "pretrain_datasets": datasets,
            "pretrain_labelled_fraction": float(labelled) if labelled is not None else None}


def video_outcomes(ds: StandardDataset, test: FrameFeatures | FrameSet, proba: np.ndarray) -> dict[str, list]:
    """Per test video (in order of first frame): its patient, label, number of test frames, how
    many of them were predicted right, and the video prediction (argmax of the mean frame
    probability). Enough for a patient-level bootstrap of frame and video accuracy."""
    video_ids = list(dict.fromkeys(test.video_ids.tolist()))
    row = {v: i for i, v in enumerate(video_ids)}
    idx = np.array([row[v] for v in test.video_ids.tolist()], dtype=int)
    correct = (proba.argmax(axis=1) == test.labels).astype(int)
    _, video_proba = video_level(test.video_ids, test.labels, proba)
    patient_of = dict(zip(ds.manifest["video_id"], ds.manifest["patient_id"]))
    label_of = dict(zip(ds.manifest["video_id"], ds.manifest["label"]))
    return {
        "video_id": video_ids,
        "patient_id": [str(patient_of[v]) for v in video_ids],
        "label": [int(label_of[v]) for v in video_ids],
        "n_frames": np.bincount(idx, minlength=len(video_ids)).astype(int).tolist(),
        "frame_correct": np.bincount(idx, weights=correct, minlength=len(video_ids)).astype(int).tolist(),
        "video_pred": video_proba.argmax(axis=1).astype(int).tolist() if len(video_ids) else [],
    }


def metrics_record(run: EvaluationRun, split: FoldSplit, data: FoldData, result: dict[str, Any]) -> dict[str, Any]:
    """The ``metrics.json`` of one fold: what ran, on which videos, and the test metrics."""
    ds, test = run.dataset, data["test"]
    protocol_args = run.protocol_args
    adapt = {"adapt_bn": True} if run.protocol.adapt_bn else {}
    metrics: dict[str, Any] = {
        "schema_version": METRICS_SCHEMA_VERSION,
        "method": run.method or run.encoder_meta.get("method", run.encoder_path.parent.name),
        "dataset": ds.name,
        "protocol": run.asked_as,
        "protocol_id": layout.protocol_id(run.asked_as, {**run.protocol.fixed, **protocol_args}),
        "variant": result.get("variant"),
        "fold": int(split.fold),
        "seed": int(run.seed),
        "train_fraction": float(run.train_fraction),
        "encoder": str(run.encoder_path),
        "encoder_meta": run.encoder_meta,
        **_encoder_facts(run.encoder_path, run.encoder_meta or {}),
        "classes": ds.classes,
        "n_videos": {"train": len(split.train), "val": len(split.val), "test": len(split.test),
                     "train_before_subsampling": len(split.train_all)},
        "n_frames": {name: int(len(d.labels)) for name, d in data.items()},
        "split_video_ids": {"train": sorted(split.train), "val": sorted(split.val), "test": sorted(split.test)},
        "hyperparameters": result.get("hyperparameters", {**protocol_args, **adapt}),
        "selection": result.get("selection", {}),
        **frame_and_video_metrics(test.video_ids, test.labels, result["proba"], ds.classes),
        "test_videos": video_outcomes(ds, test, result["proba"]),
    }
    for name, rec in (result.get("records") or {}).items():
        metrics[name] = {k: v for k, v in rec.items() if k != "proba"}
        metrics[name].update(frame_and_video_metrics(test.video_ids, test.labels, rec["proba"], ds.classes))
    metrics["provenance"] = _provenance(run)
    return metrics


def _provenance(run: EvaluationRun) -> dict[str, Any]:
    from hico.provenance import provenance

    out = provenance({"protocol": run.asked_as, "args": run.protocol_args, "image_size": run.image_size,
                      "max_frames": run.max_frames, "val_fraction": run.val_fraction,
                      "train_fraction": run.train_fraction}, run.seed, run.device)
    if run.features is not None:
        out["features"] = {"path": str(run.features.path), "key": run.features.meta["key"],
                           "extraction": run.features.meta.get("provenance")}
    return out

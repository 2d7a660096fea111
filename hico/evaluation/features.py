"""Feature files: the frozen features of one encoder on one dataset, computed once.

The linear probe, the k-NN (and their AdaBN forms) and the t-SNE read the pooled c5 features of
the same frames of the same encoder; ``python -m hico features`` computes them once and writes
them as one ``.npz`` (numpy arrays only, read with ``allow_pickle=False``), atomically.

A file holds *blocks* of :class:`FrameFeatures`, three arrays each
(``<block>.features`` float32 ``[N, D]``, ``<block>.video_ids``, ``<block>.labels``):

- BN mode ``frozen``: one block ``all``, every video of the dataset (sorted by id), with the
  encoder's own BatchNorm statistics;
- BN mode ``adabn``: one block ``fold<k>`` per fold of the folds file: the encoder with
  BatchNorm re-estimated on the fold's training + validation frames (every video outside test
  fold ``k``; no label), then the features of those videos followed by the fold's test videos.

The array ``meta`` (a JSON string) records the **key** the file was computed for (format
version, sha256 of the encoder file, content hash of the dataset, image size, max frames, BN
mode, extraction constants and, for AdaBN, the sha256 of the folds file) plus the encoder's
meta and the provenance of the extraction. A reader compares the key with its own inputs: a
file whose key differs is recomputed (``hico features``) or refused (``hico evaluate``),
never used. Content hashes, not file times, decide.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hico import layout
from hico.data.standard import StandardDataset, load_dataset
from hico.evaluation.protocols import EvaluationError
from hico.evaluation.splits import FrameFeatures
from hico.io import atomic_write

FORMAT = "hico-features"
#: bump when the extraction changes what a feature means (frames read, transform, pooling)
FORMAT_VERSION = 1
BN_MODES = layout.BN_MODES
#: the extraction constants every protocol uses (released Normalize(0.5, 0.25), batches of 64)
EXTRACTION = {"batch_size": 64, "mean": 0.5, "std": 0.25}


class FeatureFileError(EvaluationError):
    """A feature file that is missing, unreadable, or computed for other inputs."""


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def dataset_sha256(ds: StandardDataset, chunk: int = 1 << 20) -> str:
    """Content hash of what the features depend on: ``manifest.csv``, ``classes.json`` and the
    bytes of every video's frames file (in manifest order)."""
    digest = hashlib.sha256()
    for name in (layout.MANIFEST, layout.CLASSES):
        digest.update(name.encode() + b"\0" + (ds.root / name).read_bytes() + b"\0")
    for vid in ds.manifest["video_id"]:
        digest.update(str(vid).encode() + b"\0")
        with open(ds.frames_path(vid), "rb") as fh:
            while block := fh.read(chunk):
                digest.update(block)
    return digest.hexdigest()


def feature_key(encoder_path: str | Path, ds: StandardDataset, *, image_size: int, max_frames: int | None,
                bn: str, folds_path: str | Path | None = None) -> dict[str, Any]:
    """What a feature file must have been computed for to stand for these inputs."""
    if bn not in BN_MODES:
        raise FeatureFileError(f"BN mode must be one of {list(BN_MODES)}, got {bn!r}")
    if (bn == "adabn") != (folds_path is not None):
        raise FeatureFileError("AdaBN features are computed per fold: give the folds file with bn=adabn, "
                               "and only then")
    key = {"format": FORMAT, "version": FORMAT_VERSION, "bn": bn,
           "encoder_sha256": file_sha256(encoder_path), "dataset_sha256": dataset_sha256(ds),
           "image_size": int(image_size), "max_frames": int(max_frames or 0), **EXTRACTION}
    if folds_path is not None:
        key["folds_sha256"] = file_sha256(folds_path)
    return key


@dataclass
class FeatureFile:
    path: Path
    meta: dict[str, Any]
    blocks: dict[str, FrameFeatures]

    def block(self, name: str) -> FrameFeatures:
        if name not in self.blocks:
            raise FeatureFileError(f"{self.path} has no block {name!r} (has {sorted(self.blocks)}); the folds "
                                   "asked for are not those it was computed for: recompute it with `hico features`")
        return self.blocks[name]


def block_name(bn: str, fold: int | None = None) -> str:
    return "all" if bn == "frozen" else f"fold{int(fold)}"


def read_features(path: str | Path) -> FeatureFile:
    path = Path(path)
    if not path.exists():
        raise FeatureFileError(f"feature file {path} does not exist; compute it with `python -m hico features`")
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            names = meta["blocks"]
            blocks = {b: FrameFeatures(z[f"{b}.features"], z[f"{b}.labels"], z[f"{b}.video_ids"]) for b in names}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
        raise FeatureFileError(f"{path} is not a readable feature file ({type(e).__name__}: {e}); delete it and "
                               "recompute it with `python -m hico features`") from e
    return FeatureFile(path, meta, blocks)


def key_mismatch(meta: dict[str, Any], key: dict[str, Any]) -> list[str]:
    """The entries of ``key`` a file's meta disagrees with, each as ``name: file X, inputs Y``."""
    found = meta.get("key") or {}
    return [f"{k}: file {found.get(k)!r}, inputs {v!r}" for k, v in key.items() if found.get(k) != v]


def checked_features(path: str | Path, key: dict[str, Any]) -> FeatureFile:
    """The feature file at ``path``, refused unless it was computed for ``key``."""
    features = read_features(path)
    differ = key_mismatch(features.meta, key)
    if differ:
        raise FeatureFileError(f"{path} was computed for other inputs ({'; '.join(differ)}); recompute it with "
                               "`python -m hico features` for these inputs (the workflow does so itself)")
    return features


def compute_block(encoder: Any, ds: StandardDataset, *, image_size: int, max_frames: int | None, bn: str,
                  fold: int | None = None, fold_of: dict[str, int] | None = None, device: str = "cpu") -> FrameFeatures:
    """One block of a feature file (``fold_of``: video id -> test fold, for AdaBN): the same
    computation whether the block is written to a file or used at once."""
    from hico.evaluation.extract import adabn_features, extract_features

    ids = sorted(ds.manifest["video_id"])
    if bn == "frozen":
        return extract_features(encoder, ds, ids, image_size, max_frames, device=device, **EXTRACTION)
    test = [v for v in ids if fold_of.get(v) == fold]
    fitted = [v for v in ids if fold_of.get(v) != fold]  # no label, never a test frame of the fold
    return adabn_features(encoder, ds, fitted, test, image_size, max_frames, device=device,
                          desc=f"{ds.name} fold {fold}")


def write_features(out: str | Path, encoder_path: str | Path, dataset_dir: str | Path, *, image_size: int,
                   max_frames: int | None, bn: str = "frozen", folds_path: str | Path | None = None,
                   device: str | None = None) -> tuple[Path, bool]:
    """Compute the feature file ``out`` unless it already holds these inputs' features.

    Returns ``(out, computed)``. A file computed for other inputs (another encoder, changed
    frames, another size or folds file) is replaced.
    """
    from hico.data.folds import read_folds
    from hico.device import resolve_device
    from hico.models.backbone import load_encoder
    from hico.provenance import provenance

    out = Path(out)
    ds = load_dataset(dataset_dir)
    key = feature_key(encoder_path, ds, image_size=image_size, max_frames=max_frames, bn=bn, folds_path=folds_path)
    if out.exists():
        try:
            if not key_mismatch(read_features(out).meta, key):
                return out, False
        except FeatureFileError:
            pass  # unreadable: recompute it
    fold_of = {}
    if folds_path is not None:
        table = read_folds(folds_path, ds.manifest)
        fold_of = dict(zip(table["video_id"], table["fold"].astype(int).tolist()))
    device = str(resolve_device(device))
    encoder = load_encoder(encoder_path)
    folds = sorted(set(fold_of.values())) if bn == "adabn" else [None]
    blocks = {block_name(bn, fold): compute_block(encoder, ds, image_size=image_size, max_frames=max_frames, bn=bn,
                                                  fold=fold, fold_of=fold_of, device=device) for fold in folds}
    meta = {"key": key, "blocks": list(blocks), "encoder": {"path": str(encoder_path), "meta": encoder.meta},
            "dataset": {"path": str(dataset_dir), "name": ds.name, "classes": ds.classes},
            "folds": str(folds_path) if folds_path is not None else None,
            "provenance": provenance({"features": key}, None, device)}
    arrays = {"meta": np.array(json.dumps(meta, default=str))}
    for name, f in blocks.items():
        arrays.update({f"{name}.features": f.features.astype(np.float32, copy=False),
                       f"{name}.labels": f.labels.astype(np.int64), f"{name}.video_ids": f.video_ids.astype(str)})

    def write(tmp: str) -> None:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)

    atomic_write(out, write)
    return out, True

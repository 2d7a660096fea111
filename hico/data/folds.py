"""Patient-grouped, class-stratified, seeded folds and the inner validation split.

No patient (or video, when a source has no patient id) is ever on both sides of a split:
``folds.csv`` assigns every video one test fold; the training part of a fold is split once
more, again by patient, into train/validation for model selection (C of the probe, epoch of
fine-tuning). The test fold never reaches training or selection.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from hico.errors import HicoError


class FoldError(HicoError, ValueError):
    pass


def _grouped_splits(manifest: pd.DataFrame, k: int, seed: int):
    """StratifiedGroupKFold splits; its warning about rare classes is expected on small sets."""
    # sklearn costs a second or more of start-up: imported here, not by every job reading folds.
    from sklearn.model_selection import StratifiedGroupKFold

    splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
        return list(
            splitter.split(np.zeros(len(manifest)), manifest["label"].to_numpy(), manifest["patient_id"].to_numpy())
        )


def make_folds(manifest: pd.DataFrame, k: int = 5, seed: int = 0) -> pd.DataFrame:
    """``video_id, fold`` with folds 0..k-1, grouped by ``patient_id``, stratified by ``label``."""
    n_groups = manifest["patient_id"].nunique()
    if k < 2:
        raise FoldError(f"k must be >= 2, got {k}")
    if n_groups < k:
        raise FoldError(
            f"cannot make {k} patient-grouped folds from {n_groups} patients; lower `folds` in the config"
        )
    fold = np.full(len(manifest), -1, dtype=int)
    for f, (_, test_idx) in enumerate(_grouped_splits(manifest, k, seed)):
        fold[test_idx] = f
    return pd.DataFrame({"video_id": manifest["video_id"].to_numpy(), "fold": fold})


def write_folds(manifest: pd.DataFrame, path: str | Path, k: int = 5, seed: int = 0) -> pd.DataFrame:
    from hico.io import atomic_write_text

    folds = make_folds(manifest, k, seed)
    atomic_write_text(Path(path), folds.to_csv(index=False))
    return folds


def read_folds(path: str | Path, manifest: pd.DataFrame | None = None) -> pd.DataFrame:
    path = Path(path)
    if not path.exists():
        raise FoldError(f"{path} does not exist; create it with `python -m hico folds`")
    folds = pd.read_csv(path, dtype={"video_id": str, "fold": str}, keep_default_na=False)
    if list(folds.columns[:2]) != ["video_id", "fold"]:
        raise FoldError(f"{path}: expected columns video_id,fold; got {list(folds.columns)}")
    fold = pd.to_numeric(folds["fold"], errors="coerce")
    bad = fold.isna() | (fold != fold.round())
    if bad.any():
        i = int(bad.to_numpy().nonzero()[0][0])
        raw = folds["fold"].iloc[i].strip()
        raise FoldError(
            f"{path.name} row {i + 2} (video_id={folds['video_id'].iloc[i]!r}): fold is "
            f"{repr(raw) if raw else 'empty'}, not an integer ({path}); re-run `python -m hico folds`"
        )
    folds["fold"] = fold.astype(int)
    if manifest is not None:
        missing = set(manifest["video_id"]) - set(folds["video_id"])
        if missing:
            raise FoldError(
                f"{path} has no fold for {len(missing)} videos of the manifest (e.g. {sorted(missing)[:3]}); "
                "the dataset changed since the folds were made: re-run `python -m hico folds`"
            )
    return folds


def split_fold(
    manifest: pd.DataFrame, folds: pd.DataFrame, fold: int, val_fraction: float = 0.2, seed: int = 0
) -> tuple[list[str], list[str], list[str]]:
    """(train, val, test) video ids for one fold; val is a patient-grouped part of the training
    fold, stratified when every class has enough patients."""
    fold_of = dict(zip(folds["video_id"], folds["fold"]))
    if fold not in set(fold_of.values()):
        raise FoldError(f"fold {fold} is not in folds.csv (folds: {sorted(set(fold_of.values()))})")
    m = manifest.assign(fold=manifest["video_id"].map(fold_of))
    test = m[m["fold"] == fold]
    rest = m[m["fold"] != fold]
    val_ids = inner_validation(rest, val_fraction, seed)
    train = rest[~rest["video_id"].isin(val_ids)]
    return train["video_id"].tolist(), sorted(val_ids), test["video_id"].tolist()


def inner_validation(manifest: pd.DataFrame, val_fraction: float = 0.2, seed: int = 0) -> list[str]:
    """Video ids of a patient-grouped validation subset of ``manifest`` (~val_fraction)."""
    if not 0 < val_fraction < 1:
        raise FoldError(f"val_fraction must be in (0, 1), got {val_fraction}")
    n_groups = manifest["patient_id"].nunique()
    if n_groups < 2:
        raise FoldError(f"{n_groups} patient(s) cannot be split into train and validation")
    n_splits = min(max(2, round(1 / val_fraction)), n_groups)
    largest_class = int(manifest["label"].value_counts().max())
    if largest_class >= n_splits:
        _, val_idx = _grouped_splits(manifest, n_splits, seed)[0]
        return manifest["video_id"].iloc[val_idx].tolist()
    # Too few videos per class to stratify: draw whole patients at random instead.
    rng = np.random.default_rng(seed)
    groups = manifest["patient_id"].unique()
    n_val = max(1, round(len(groups) * val_fraction))
    val_groups = set(rng.permutation(groups)[:n_val])
    return manifest["video_id"][manifest["patient_id"].isin(val_groups)].tolist()

"""Patient-level bootstrap intervals of the headline numbers (``main_comparison.csv``).

A table row's number is the mean over its records (folds x seeds) of each record's accuracy.
One bootstrap replicate draws the test patients with replacement (as many as there are) and
recomputes every record's accuracy on the drawn patients, each counted as often as drawn, then
the mean over the records; the interval is the percentile interval of that mean over the
replicates. Frame accuracy counts every test frame of a drawn patient's videos, video accuracy
every video.

The draw is shared by the seeds of a row: every seed tests the same patients (one partition), so
drawing them anew for each seed would treat one patient's luck as three independent ones and
narrow the interval. The interval holds the pretrained encoders fixed: it measures how much the
number depends on which patients were tested, not on the pretraining seed (the std and the
per-seed points of the figures show that).
"""

from __future__ import annotations

import warnings
import zlib
from dataclasses import dataclass

import numpy as np
import pandas as pd

N_RESAMPLES = 2000
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Interval:
    low: float
    high: float
    n_patients: int
    note: str = ""


def _per_patient(videos: list[dict[str, list]], level: str) -> tuple[np.ndarray, np.ndarray, int]:
    """(right, total) per patient x record: frames (``frame``) or videos (``video``) predicted
    right and scored, and the number of patients."""
    patients = sorted({str(p) for v in videos for p in v["patient_id"]})
    index = {p: i for i, p in enumerate(patients)}
    right = np.zeros((len(patients), len(videos)))
    total = np.zeros((len(patients), len(videos)))
    for r, v in enumerate(videos):
        rows = np.array([index[str(p)] for p in v["patient_id"]], dtype=int)
        if level == "frame":
            hit, n = np.asarray(v["frame_correct"], float), np.asarray(v["n_frames"], float)
        else:
            hit = (np.asarray(v["video_pred"]) == np.asarray(v["label"])).astype(float)
            n = np.ones(len(rows))
        np.add.at(right[:, r], rows, hit)
        np.add.at(total[:, r], rows, n)
    return right, total, len(patients)


def row_seed(seed: int, key: tuple) -> np.random.Generator:
    """The generator of one table row: the user's seed and the row's key, so a row's interval
    does not depend on which other rows the table has."""
    return np.random.default_rng([int(seed), zlib.crc32(repr(tuple(str(k) for k in key)).encode())])


def patient_bootstrap(videos: list[dict[str, list] | None], level: str, rng: np.random.Generator,
                      n_resamples: int = N_RESAMPLES, confidence: float = CONFIDENCE) -> Interval:
    """The percentile interval of the mean over records of accuracy at ``level``, resampling
    patients (module docstring); ``videos`` holds each record's ``test_videos``."""
    missing = sum(v is None for v in videos)
    if not videos or missing:
        return Interval(np.nan, np.nan, 0, f"no test_videos in {missing} of {len(videos)} metrics.json (schema < 3)")
    right, total, n_patients = _per_patient(videos, level)
    counts = rng.multinomial(n_patients, np.full(n_patients, 1 / n_patients), size=n_resamples)
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a replicate that drew none of a fold's patients
        accuracy = (counts @ right) / (counts @ total)
        means = np.nanmean(accuracy, axis=1)
    tail = 100 * (1 - confidence) / 2
    low, high = np.nanpercentile(means, [tail, 100 - tail])
    return Interval(float(low), float(high), n_patients)


def point_estimate(videos: list[dict[str, list]], level: str) -> float:
    """The mean over records of accuracy recomputed from ``test_videos`` (equals the row's
    ``accuracy_mean`` when the metrics are consistent)."""
    right, total, _ = _per_patient(videos, level)
    return float(np.mean(right.sum(0) / total.sum(0)))


def _disagreement(records: pd.DataFrame, level: str) -> str:
    """A note naming the first record whose test_videos do not give its own accuracy ('' if all do)."""
    for videos, accuracy, source in zip(records["_test_videos"], records["accuracy"], records["source"]):
        if videos is not None:
            again = point_estimate([videos], level)
            if not np.isclose(again, accuracy, rtol=0, atol=1e-6):
                return (f"test_videos give {level} accuracy {again:.6f}, the metrics {accuracy:.6f} "
                        f"({source}): no interval")
    return ""


def row_interval(records: pd.DataFrame, key: tuple, seed: int, n_resamples: int = N_RESAMPLES) -> Interval:
    """The interval of one main_comparison row (records of one key); only ``selected`` records
    carry test_videos, and they must reproduce each record's accuracy."""
    if records["selection"].iloc[0] != "selected":
        return Interval(np.nan, np.nan, 0, "test_videos holds the validation-selected predictions only")
    level = records["level"].iloc[0]
    disagreement = _disagreement(records, level)
    if disagreement:
        return Interval(np.nan, np.nan, 0, disagreement)
    return patient_bootstrap(list(records["_test_videos"]), level, row_seed(seed, key), n_resamples)

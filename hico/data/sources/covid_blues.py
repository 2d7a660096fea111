"""COVID-BLUES (BLUS): 362 bluepoint lung ultrasound videos of 63 COVID-19 suspects.

Source
    GitHub ``NinaWie/COVID-BLUES`` at commit ``1857a6fba9b8d00614f133fe8ffb7bc1f1a14f78``
    (options ``repo``, ``ref``): ``lus_videos/patient_<id>_<zone>[_2].mp4`` (Philips Lumify,
    convex probe, 350x350, 25 fps, 59-100 frames), ``clinical_variables.csv`` (one row per
    patient), ``severity.csv`` (one row per video), ``LICENSE``. The file list and git blob
    SHA-1 of every file are read once from the GitHub API at that commit and recorded in
    ``locks/covid_blues.json``; every download is checked against them.
Licence
    Creative Commons Attribution-NonCommercial-NoDerivatives 4.0 (CC BY-NC-ND 4.0, the
    repository's LICENSE file): copies may be shared unmodified, with attribution, for
    non-commercial use only; the derived frame arrays must stay local.
Citation
    Wiedemann N., de Korte-de Boer D., Richter M., et al. COVID-BLUeS -- A Prospective Study
    on the Value of AI in Lung Ultrasound Analysis. arXiv:2509.10556, 2025.
Label map (option ``label``: ``pcr`` | ``b_lines`` | ``severity``; default ``pcr``)
    ``pcr``: per patient, ``cov_test`` of ``clinical_variables.csv`` (PCR result):
    0 -> pcr_negative (0), 1 -> pcr_positive (1).
    ``b_lines``: per video, column ``B-lines`` of ``severity.csv``: no -> b_lines_absent (0),
    yes -> b_lines_present (1).
    ``severity``: per video, ``Severity Score`` of ``severity.csv`` (Soldati score 0-3):
    severity_0 .. severity_3 (0..3).
    A video without the value its label needs (no PCR result for its patient, no row or an
    empty cell in ``severity.csv``) is skipped and listed in ``prepare_report.json``.
    Extra columns per video, whatever the label: ``pcr`` (0/1, empty when unknown),
    ``severity`` (0-3; empty when unrated), ``a_lines`` and ``b_lines`` (yes/no), ``zone`` (L1..R3).
Sampling
    ``fps`` (3 Hz) up to ``max_frames`` (30) per video.
Grouping
    ``patient_id`` = ``patient_<id>``: the six zones (and repeats) of one patient share a fold.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hico.data.download import RemoteFile
from hico.data.sources._common import (
    DataNotFoundError,
    Item,
    Listing,
    Source,
    SourceError,
    file_item,
    github_remote_files,
)

#: the classes of each ``label`` option, in label order
LABEL_CLASSES: dict[str, list[str]] = {
    "pcr": ["pcr_negative", "pcr_positive"],
    "b_lines": ["b_lines_absent", "b_lines_present"],
    "severity": ["severity_0", "severity_1", "severity_2", "severity_3"],
}
VIDEO_DIR = "lus_videos/"
CLINICAL = "clinical_variables.csv"
SEVERITY = "severity.csv"
LICENSE_FILE = "LICENSE"
_VIDEO_RE = re.compile(r"^patient_(\d+)_([LR]\d)(?:_(\d+))?$")


def _find(raw: Path, name: str) -> Path | None:
    for p in (raw / name, *raw.glob(f"*/{name}")):
        if p.exists():
            return p
    return None


def _read_pcr(path: Path) -> dict[str, int]:
    """``{patient id: cov_test}`` from ``clinical_variables.csv`` (rows without a result left out)."""
    with open(path, newline="") as fh:
        pcr = {}
        for r in csv.DictReader(fh):
            try:
                pcr[str(int(float(r["patient_id"])))] = int(float(r["cov_test"]))
            except (KeyError, ValueError):
                continue
    return pcr


def _read_severity(path: Path | None) -> dict[str, dict[str, Any]]:
    """``{video stem: {"severity": 0-3 | None, "a_lines": yes/no, "b_lines": yes/no}}``."""
    severity: dict[str, dict[str, Any]] = {}
    if path is None:
        return severity
    with open(path, newline="") as fh:
        for r in csv.DictReader(fh):
            score = (r.get("Severity Score") or "").strip()
            severity[(r.get("video_file") or "").strip()] = {
                "severity": int(float(score)) if score else None,
                "a_lines": (r.get("A-lines") or "").strip().lower(),
                "b_lines": (r.get("B-lines") or "").strip().lower(),
            }
    return severity


def _label_of(label: str, pcr: int | None, sev: Mapping[str, Any]) -> tuple[str | None, str]:
    """``(class name, "")`` of one video under the ``label`` option, or ``(None, why not)``."""
    if label == "pcr":
        if pcr not in (0, 1):
            return None, f"its patient has no cov_test (0/1) in {CLINICAL}"
        return LABEL_CLASSES["pcr"][pcr], ""
    if label == "b_lines":
        value = sev.get("b_lines", "")
        if value not in ("yes", "no"):
            return None, f"B-lines is {value!r} in {SEVERITY}, not yes/no"
        return LABEL_CLASSES["b_lines"][value == "yes"], ""
    score = sev.get("severity")
    if score not in (0, 1, 2, 3):
        return None, f"Severity Score is {score!r} in {SEVERITY}, not 0-3"
    return LABEL_CLASSES["severity"][score], ""


class CovidBlues(Source):
    name = "covid_blues"
    classes = LABEL_CLASSES["pcr"]  # the default label option
    enabled_by_default = True
    license = "CC BY-NC-ND 4.0 (Creative Commons Attribution-NonCommercial-NoDerivatives 4.0)"
    citation = (
        "Wiedemann N. et al. COVID-BLUeS -- A Prospective Study on the Value of AI in Lung "
        "Ultrasound Analysis. arXiv:2509.10556, 2025."
    )
    homepage = "https://github.com/NinaWie/COVID-BLUES"
    options = {
        "repo": "NinaWie/COVID-BLUES",
        "ref": "1857a6fba9b8d00614f133fe8ffb7bc1f1a14f78",
        "api_url": None,
        "workers": 4,
        "label": "pcr",
    }
    parallel_download = True

    def remote_files(self, config: Mapping[str, Any] | None = None) -> list[RemoteFile]:
        cfg = self.config(config)
        files = github_remote_files(self.name, cfg, [VIDEO_DIR, CLINICAL, SEVERITY, LICENSE_FILE])
        return [r for r in files if not r.path.endswith(".gif")]

    def collect(self, raw: Path, cfg: dict[str, Any]) -> Listing:
        label = cfg["label"]
        if label not in LABEL_CLASSES:
            raise SourceError(f"source 'covid_blues': option label={label!r} must be one of {sorted(LABEL_CLASSES)}")
        clinical = _find(raw, CLINICAL)
        videos_dir = _find(raw, VIDEO_DIR.rstrip("/"))
        sev_path = _find(raw, SEVERITY)
        if clinical is None or videos_dir is None or (label != "pcr" and sev_path is None):
            raise DataNotFoundError(
                f"dataset 'covid_blues': expected {CLINICAL}, {VIDEO_DIR}"
                + (f" and {SEVERITY} (label={label})" if label != "pcr" else "") + f" under {raw}. "
                f"Run `python -m hico download covid_blues --raw {raw}`, or point --raw at a clone of "
                "https://github.com/NinaWie/COVID-BLUES."
            )
        pcr = _read_pcr(clinical)
        severity = _read_severity(sev_path)
        items: list[Item] = []
        skipped: list[dict[str, str]] = []
        for path in sorted(videos_dir.glob("*.mp4")):
            rel = path.relative_to(raw).as_posix()
            m = _VIDEO_RE.match(path.stem)
            if not m:
                skipped.append({"source_file": rel, "reason": "name is not patient_<id>_<zone>[_n].mp4"})
                continue
            pid, zone = m.group(1), m.group(2)
            sev = severity.get(path.stem, {"severity": None, "a_lines": "", "b_lines": ""})
            class_name, why = _label_of(label, pcr.get(pid), sev)
            if class_name is None:
                skipped.append({"source_file": rel, "reason": f"label={label}: {why}"})
                continue
            items.append(
                file_item(
                    path.stem, class_name, path, raw, cfg, patient_id=f"patient_{pid}", license=self.license,
                    extra={"zone": zone, "pcr": pcr.get(pid), **sev},
                )
            )
        info = {"version": f"{cfg['repo']}@{cfg['ref']}", "label": label}
        expected = {"videos": 362, "patients": 63, "pcr_positive_patients": 33}
        return Listing(items, classes=LABEL_CLASSES[label], info=info, skipped=skipped, expected=expected)


SOURCE = CovidBlues()

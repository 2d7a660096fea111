"""COVID-BLUES (BLUS): 362 bluepoint lung ultrasound videos of 63 COVID-19 suspects.

Source
    GitHub ``NinaWie/COVID-BLUES`` at commit ``1857a6fba9b8d00614f133fe8ffb7bc1f1a14f78``
    (options ``repo``, ``ref``): ``lus_videos/patient_<id>_<zone>[_2].mp4`` (Philips Lumify,
    convex probe, 350x350, 25 fps, 59-100 frames), ``clinical_variables.csv`` (one row per
    patient), ``severity.csv`` (one row per video), ``LICENSE``. The file list and git blob
    SHA-1 of every file are read once from the GitHub API at that commit and recorded in
    ``locks/covid_blues.json``; every download is checked against them.
Licence
    Creative Commons Attribution-NoDerivatives 4.0 (the repository's LICENSE file): copies
    may be shared unmodified with attribution; the derived frame arrays must stay local.
Citation
    Wiedemann N., de Korte-de Boer D., Richter M., et al. COVID-BLUeS -- A Prospective Study
    on the Value of AI in Lung Ultrasound Analysis. arXiv:2509.10556, 2025.
Label map
    Per patient, ``cov_test`` of ``clinical_variables.csv`` (PCR result): 0 -> pcr_negative (0),
    1 -> pcr_positive (1). Videos of patients without a result are skipped (reported).
    Extra columns per video from ``severity.csv``: ``severity`` (0-3, Soldati score; empty when
    unrated), ``a_lines`` and ``b_lines`` (yes/no), and ``zone`` (L1..R3).
Sampling
    ``fps`` (3 Hz) up to ``max_frames`` (30) per video.
Grouping
    ``patient_id`` = ``patient_<id>``: the six zones (and repeats) of one patient share a fold.
"""

from __future__ import annotations

import csv
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hico.data.download import RemoteFile
from hico.data.sources._common import (
    DataNotFoundError,
    Item,
    fetch_remote_files,
    file_item,
    github_remote_files,
    resolve_config,
    write_dataset,
)

NAME = "covid_blues"
CLASSES = ["pcr_negative", "pcr_positive"]
ACCESS = "public"
ENABLED_BY_DEFAULT = True
LICENSE = "CC BY-ND 4.0 (Creative Commons Attribution-NoDerivatives 4.0)"
CITATION = (
    "Wiedemann N. et al. COVID-BLUeS -- A Prospective Study on the Value of AI in Lung "
    "Ultrasound Analysis. arXiv:2509.10556, 2025."
)
HOMEPAGE = "https://github.com/NinaWie/COVID-BLUES"
OPTIONS: dict[str, Any] = {
    "repo": "NinaWie/COVID-BLUES",
    "ref": "1857a6fba9b8d00614f133fe8ffb7bc1f1a14f78",
    "api_url": None,
    "workers": 4,
}

VIDEO_DIR = "lus_videos/"
CLINICAL = "clinical_variables.csv"
SEVERITY = "severity.csv"
LICENSE_FILE = "LICENSE"
_VIDEO_RE = re.compile(r"^patient_(\d+)_([LR]\d)(?:_(\d+))?$")


def _self():
    return sys.modules[__name__]


def remote_files(config: Mapping[str, Any] | None = None) -> list[RemoteFile]:
    cfg = resolve_config(_self(), config)
    files = github_remote_files(NAME, cfg, [VIDEO_DIR, CLINICAL, SEVERITY, LICENSE_FILE])
    return [r for r in files if not r.path.endswith(".gif")]


def download(raw_dir: str | Path, config: Mapping[str, Any] | None = None) -> Path:
    return fetch_remote_files(_self(), raw_dir, config, parallel=True)


def _find(raw: Path, name: str) -> Path | None:
    for p in (raw / name, *raw.glob(f"*/{name}")):
        if p.exists():
            return p
    return None


def prepare(
    raw_dir: str | Path, out_root: str | Path, config: Mapping[str, Any] | None = None, name: str | None = None
) -> Path:
    cfg = resolve_config(_self(), config)
    raw = Path(raw_dir)
    clinical = _find(raw, CLINICAL)
    videos_dir = _find(raw, VIDEO_DIR.rstrip("/"))
    if clinical is None or videos_dir is None:
        raise DataNotFoundError(
            f"dataset 'covid_blues': expected {CLINICAL} and {VIDEO_DIR} under {raw}. "
            f"Run `python -m hico download covid_blues --raw {raw}`, or point --raw at a clone of "
            "https://github.com/NinaWie/COVID-BLUES."
        )
    with open(clinical, newline="") as fh:
        pcr = {}
        for r in csv.DictReader(fh):
            try:
                pcr[str(int(float(r["patient_id"])))] = int(float(r["cov_test"]))
            except (KeyError, ValueError):
                continue
    severity: dict[str, dict[str, Any]] = {}
    sev_path = _find(raw, SEVERITY)
    if sev_path is not None:
        with open(sev_path, newline="") as fh:
            for r in csv.DictReader(fh):
                score = (r.get("Severity Score") or "").strip()
                severity[(r.get("video_file") or "").strip()] = {
                    "severity": int(float(score)) if score else None,
                    "a_lines": (r.get("A-lines") or "").strip().lower(),
                    "b_lines": (r.get("B-lines") or "").strip().lower(),
                }
    license_text = LICENSE
    items: list[Item] = []
    skipped: list[dict[str, str]] = []
    for path in sorted(videos_dir.glob("*.mp4")):
        rel = path.relative_to(raw).as_posix()
        m = _VIDEO_RE.match(path.stem)
        if not m:
            skipped.append({"source_file": rel, "reason": "name is not patient_<id>_<zone>[_n].mp4"})
            continue
        pid, zone = m.group(1), m.group(2)
        if pid not in pcr:
            skipped.append({"source_file": rel, "reason": f"patient {pid} has no cov_test in {CLINICAL}"})
            continue
        sev = severity.get(path.stem, {"severity": None, "a_lines": "", "b_lines": ""})
        items.append(
            file_item(
                path.stem, CLASSES[pcr[pid]], path, raw, cfg,
                patient_id=f"patient_{pid}", license=license_text, extra={"zone": zone, **sev},
            )
        )
    info = {"version": f"{cfg['repo']}@{cfg['ref']}"}
    expected = {"videos": 362, "patients": 63, "pcr_positive_patients": 33}
    return write_dataset(_self(), items, out_root, cfg, info=info, skipped=skipped, name=name, expected=expected)

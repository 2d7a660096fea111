"""Butterfly (USCL): the 22 lung ultrasound videos, 1,533 frames, that USCL and HiCo pretrain on.

Source
    The Google Drive file linked from the USCL and HiCo READMEs (id
    ``1zefZInevopumI-VdX6r7Bj-6pj_WILrr``; Baidu pan ``1tQtDzoditkTft3LMeDfGqw``, code
    ``butt``), fetched with gdown into ``butterfly_uscl.download`` and extracted (zip or tar,
    detected from the content) into ``extracted/``. No checksum is published: the sha256 of the
    first download is recorded in ``locks/butterfly_uscl.json`` and checked ever after.
    ``prepare`` also reads an already-extracted folder.
    Layout: one folder per video, ``<Cls>-<name>_<ext>/<Cls>-<name>_<ext>_frame<N>.jpg``.
Licence
    None stated. The frames come from the Butterfly Network COVID-19 ultrasound gallery
    (offline since 2023), which POCUS lists with licence "None" and does not redistribute.
    Use for research only and do not redistribute the frames.
Citation
    Chen Y., Zhang C., Liu L., et al. USCL: Pretraining Deep Ultrasound Image Diagnosis Model
    through Video Contrastive Representation Learning. MICCAI 2021, LNCS 12908, pp. 627-637.
Label map (USCL)
    First 3 characters of the video folder name: ``Reg`` -> regular (0), ``Cov`` -> covid (1).
    Folders with another prefix are skipped (reported).
Sampling
    The frames are already sampled by USCL: all are kept (``max_frames`` None); with
    ``source_fps`` set, ``fps`` resampling applies as for videos.
Grouping
    ``patient_id`` = the video folder (no patient ids are published).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hico.data.download import RemoteFile, archive_kind, fetch_all, macos_junk, safe_extract
from hico.data.sources._common import (
    DataNotFoundError,
    Item,
    find_frame_folders,
    lock_for,
    resolve_config,
    unique_ids,
    url_join,
    write_dataset,
)
from hico.data.video import read_frame_folder

NAME = "butterfly_uscl"
CLASSES = ["regular", "covid"]
ACCESS = "public"
ENABLED_BY_DEFAULT = True
LICENSE = "none stated (Butterfly Network gallery material; research use, no redistribution)"
CITATION = (
    "Chen Y. et al. USCL: Pretraining Deep Ultrasound Image Diagnosis Model through Video "
    "Contrastive Representation Learning. MICCAI 2021."
)
HOMEPAGE = "https://github.com/983632847/USCL"
OPTIONS: dict[str, Any] = {"max_frames": None, "source_fps": None}

GDRIVE_ID = "1zefZInevopumI-VdX6r7Bj-6pj_WILrr"
ARCHIVE = "butterfly_uscl.download"
EXTRACTED = "extracted"
PREFIXES = {"Reg": "regular", "Cov": "covid"}


def _self():
    return sys.modules[__name__]


def remote_files(config: Mapping[str, Any] | None = None) -> list[RemoteFile]:
    cfg = resolve_config(_self(), config)
    if cfg["base_url"]:
        return [RemoteFile(url=url_join(cfg["base_url"], ARCHIVE), path=ARCHIVE, checksum="lock")]
    return [
        RemoteFile(
            url=f"https://drive.google.com/uc?id={GDRIVE_ID}", path=ARCHIVE, checksum="lock", gdrive_id=GDRIVE_ID
        )
    ]


def download(raw_dir: str | Path, config: Mapping[str, Any] | None = None) -> Path:
    cfg = resolve_config(_self(), config)
    fetch_all(remote_files(cfg), raw_dir, lock_for(NAME, cfg), cfg["retries"], cfg["progress"], cfg["timeout"])
    return Path(raw_dir)


def _extract(raw: Path) -> None:
    archive = raw / ARCHIVE
    if not archive.exists():
        return
    if archive_kind(archive) is None:
        raise DataNotFoundError(
            f"dataset 'butterfly_uscl': {archive} is neither zip nor tar (rar?). Extract it by hand "
            f"into {raw / EXTRACTED}/ (one folder per video) and run prepare again."
        )
    safe_extract(archive, raw / EXTRACTED, skip=macos_junk)


def prepare(
    raw_dir: str | Path, out_root: str | Path, config: Mapping[str, Any] | None = None, name: str | None = None
) -> Path:
    cfg = resolve_config(_self(), config)
    raw = Path(raw_dir)
    if not raw.exists():
        raise DataNotFoundError(
            f"dataset 'butterfly_uscl': {raw} does not exist. Run `python -m hico download "
            f"butterfly_uscl --raw {raw}` (Google Drive file {GDRIVE_ID} of the USCL README)."
        )
    _extract(raw)
    folders = find_frame_folders(raw)
    keep, skipped = [], []
    for f in folders:
        label = PREFIXES.get(f.name[:3])
        rel = f.relative_to(raw).as_posix()
        if label is None:
            skipped.append({"source_file": rel, "reason": f"folder prefix {f.name[:3]!r} is not Reg/Cov"})
        else:
            keep.append((f, label))
    fps, max_frames, size, src_fps = cfg["fps"], cfg["max_frames"], cfg["store_size"], cfg["source_fps"]
    items = [
        Item(
            video_id=vid,
            patient_id=vid,
            label_name=label,
            load=(lambda f=f: read_frame_folder(f, fps, max_frames, src_fps, size).frames),
            source_file=f.relative_to(raw).as_posix(),
            source=f,
            license=LICENSE,
        )
        for vid, (f, label) in zip(unique_ids(f.name for f, _ in keep), keep)
    ]
    return write_dataset(
        _self(), items, out_root, cfg, info={"version": f"gdrive:{GDRIVE_ID}"}, skipped=skipped, name=name,
        expected={"videos": 22, "frames": 1533},
    )

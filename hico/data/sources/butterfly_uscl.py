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

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hico.data.download import RemoteFile, archive_kind, macos_junk
from hico.data.sources._common import (
    DataNotFoundError,
    Listing,
    Source,
    extract,
    file_item,
    find_frame_folders,
    mirror_url,
    unique_ids,
)

GDRIVE_ID = "1zefZInevopumI-VdX6r7Bj-6pj_WILrr"
ARCHIVE = "butterfly_uscl.download"
EXTRACTED = "extracted"
PREFIXES = {"Reg": "regular", "Cov": "covid"}


def _extract(raw: Path, cfg: dict[str, Any]) -> None:
    archive = raw / ARCHIVE
    if not archive.exists():
        return
    if archive_kind(archive) is None:
        raise DataNotFoundError(
            f"dataset 'butterfly_uscl': {archive} is neither zip nor tar (rar?). Extract it by hand "
            f"into {raw / EXTRACTED}/ (one folder per video) and run prepare again."
        )
    extract(archive, raw / EXTRACTED, cfg, skip=macos_junk)


class ButterflyUSCL(Source):
    name = "butterfly_uscl"
    classes = ["regular", "covid"]
    enabled_by_default = True
    license = "none stated (Butterfly Network gallery material; research use, no redistribution)"
    citation = (
        "Chen Y. et al. USCL: Pretraining Deep Ultrasound Image Diagnosis Model through Video "
        "Contrastive Representation Learning. MICCAI 2021."
    )
    homepage = "https://github.com/983632847/USCL"
    options = {"max_frames": None, "source_fps": None}

    def remote_files(self, config: Mapping[str, Any] | None = None) -> list[RemoteFile]:
        cfg = self.config(config)
        url = mirror_url(cfg, ARCHIVE, f"https://drive.google.com/uc?id={GDRIVE_ID}")
        gdrive_id = None if cfg["base_url"] else GDRIVE_ID  # a mirror is plain HTTP
        archives = ("zip", "tar", "gzip", "bz2", "xz", "rar", "7z")  # the Drive file's format is not published
        return [RemoteFile(url=url, path=ARCHIVE, checksum="lock", gdrive_id=gdrive_id, content=archives)]

    def collect(self, raw: Path, cfg: dict[str, Any]) -> Listing:
        if not raw.exists():
            raise DataNotFoundError(
                f"dataset 'butterfly_uscl': {raw} does not exist. Run `python -m hico download "
                f"butterfly_uscl --raw {raw}` (Google Drive file {GDRIVE_ID} of the USCL README)."
            )
        _extract(raw, cfg)
        folders = find_frame_folders(raw)
        keep, skipped = [], []
        for f in folders:
            label = PREFIXES.get(f.name[:3])
            rel = f.relative_to(raw).as_posix()
            if label is None:
                skipped.append({"source_file": rel, "reason": f"folder prefix {f.name[:3]!r} is not Reg/Cov"})
            else:
                keep.append((f, label))
        ids = unique_ids(f.name for f, _ in keep)
        items = [file_item(vid, label, f, raw, cfg, license=self.license) for vid, (f, label) in zip(ids, keep)]
        return Listing(
            items, info={"version": f"gdrive:{GDRIVE_ID}"}, skipped=skipped, expected={"videos": 22, "frames": 1533},
        )


SOURCE = ButterflyUSCL()

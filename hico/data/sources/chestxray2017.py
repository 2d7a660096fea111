"""Chest X-Ray 2017 (Kermany et al.): paediatric chest radiographs, normal vs pneumonia. Optional.

Not ultrasound: HiCo uses it as an out-of-domain downstream task. Off by default
(``ENABLED_BY_DEFAULT = False``) because the archive is about 1.2 GB.

Source
    Mendeley Data ``rscbjbr9sj`` version 2, ``ChestXRay2017.zip``; only the folders named by the
    ``splits`` option (default ``["test"]``, the 624 images HiCo's
    ``get_5_fold_ChestXRay2017_dataset.py`` reads) are extracted, safely. No checksum is
    published: the sha256 of the first download is recorded in ``locks/chestxray2017.json``.
    Layout: ``chest_xray/{train,test}/{NORMAL,PNEUMONIA}/*.jpeg``; an extracted copy (also
    Kaggle's, with its extra ``val/``) works as ``--raw``.
Licence
    Creative Commons Attribution 4.0 International.
Citation
    Kermany D., Zhang K., Goldbaum M. Labeled Optical Coherence Tomography (OCT) and Chest X-Ray
    Images for Classification. Mendeley Data V2, 2018. doi:10.17632/rscbjbr9sj.2 ; and Kermany
    D. et al. Cell 172(5):1122-1131, 2018.
Label map (HiCo)
    Folder: NORMAL -> normal (0), PNEUMONIA -> pneumonia (1); extra columns ``split`` and
    ``subtype`` (bacteria / virus, from the file name).
Sampling
    One image = one video of T = 1.
Grouping
    ``patient_id`` from the file name: ``person<N>_...`` -> ``person<N>``; ``IM-<N>-...`` and
    ``NORMAL2-IM-<N>-...`` -> that prefix; several images of one child share a fold.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath
from typing import Any

from hico.data.download import macos_junk
from hico.data.sources._common import ArchiveSource, Listing, file_item, unique_ids

ARCHIVE = "ChestXRay2017.zip"
URL = (
    "https://data.mendeley.com/public-files/datasets/rscbjbr9sj/files/"
    "f12eaf6d-6023-432f-acc9-80c9d7393433/file_downloaded"
)
EXTRACTED = "ChestXRay2017"
_PATIENT = [re.compile(r"^(person\d+)_"), re.compile(r"^((?:NORMAL2-)?IM-\d+)-")]


def patient_of(filename: str) -> str:
    for rx in _PATIENT:
        m = rx.match(filename)
        if m:
            return m.group(1)
    return Path(filename).stem


class ChestXRay2017(ArchiveSource):
    name = "chestxray2017"
    classes = ["normal", "pneumonia"]
    license = "CC BY 4.0"
    citation = (
        "Kermany D., Zhang K., Goldbaum M. Labeled Optical Coherence Tomography (OCT) and Chest X-Ray "
        "Images for Classification. Mendeley Data V2, 2018. doi:10.17632/rscbjbr9sj.2"
    )
    homepage = "https://data.mendeley.com/datasets/rscbjbr9sj/2"
    options = {"splits": ["test"]}
    list_options = ("splits",)
    url = URL
    archive = ARCHIVE
    extracted = EXTRACTED

    def collect(self, raw: Path, cfg: dict[str, Any]) -> Listing:
        splits = [s.lower() for s in cfg["splits"]]

        def skip(member: str) -> bool:
            parts = [p.lower() for p in PurePosixPath(member).parts]
            return macos_junk(member) or not any(s in parts for s in splits)

        def keep(p: Path) -> bool:
            parts = [x.lower() for x in p.relative_to(raw).parts]
            return len(parts) >= 3 and parts[-2] in self.classes and parts[-3] in splits

        images = self.archive_images(
            raw, cfg, {".jpeg", ".jpg", ".png"}, keep,
            f"dataset 'chestxray2017': no chest_xray/<split>/<NORMAL|PNEUMONIA>/*.jpeg for splits "
            f"{splits} under {raw}. Run `python -m hico download chestxray2017 --raw {raw}` "
            f"(about 1.2 GB from {self.homepage}).",
            skip=skip,
        )
        ids = unique_ids(f"{p.parent.parent.name.lower()}_{p.stem}" for p in images)
        items = []
        for vid, p in zip(ids, images):
            low = p.name.lower()
            subtype = "bacteria" if "bacteria" in low else "virus" if "virus" in low else ""
            extra = {"split": p.parent.parent.name.lower(), "subtype": subtype}
            label = p.parent.name.lower()
            items.append(file_item(vid, label, p, raw, cfg, patient_id=patient_of(p.name), license=self.license, extra=extra))
        return Listing(items, info={"version": "mendeley:rscbjbr9sj.2"})


SOURCE = ChestXRay2017()

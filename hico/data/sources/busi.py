"""BUSI: 780 breast ultrasound images (benign 437, malignant 210, normal 133) of 600 women.

Source
    The MathWorks mirror ``https://ssd.mathworks.com/supportfiles/image/data/Dataset_BUSI.zip``
    (the official ``scholar.cu.edu.eg/Dataset_BUSI.zip`` is often unreachable), extracted safely
    into ``Dataset_BUSI/``. No checksum is published: the sha256 of the first download is
    recorded in ``locks/busi.json`` and checked ever after. ``prepare`` also reads an extracted
    copy (e.g. Kaggle's): ``Dataset_BUSI_with_GT/{benign,malignant,normal}/<class> (N).png``.
Licence
    None stated with the data; the data article is open access (CC BY 4.0) and Kaggle lists
    CC0. Cite the article.
Citation
    Al-Dhabyani W., Gomaa M., Khaled H., Fahmy A. Dataset of breast ultrasound images.
    Data in Brief 28:104863, 2020. doi:10.1016/j.dib.2019.104863
Label map (HiCo ``BUSI_BUI`` order)
    Folder name: benign (0), malignant (1), normal (2). Masks (``*_mask*.png``) are ignored.
Sampling
    One image = one video of T = 1 (grayscale, short side ``store_size``).
Grouping
    ``patient_id`` = the image: BUSI publishes no patient ids. Known issues: about 155-235
    near-duplicate images and some axilla images (Pawlowska et al. 2023), so image-level folds
    can leak; prefer it as an evaluation set only with that caveat.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from hico.data.sources._common import ArchiveSource, Listing, file_item, unique_ids

URL = "https://ssd.mathworks.com/supportfiles/image/data/Dataset_BUSI.zip"
ARCHIVE = "Dataset_BUSI.zip"
EXTRACTED = "Dataset_BUSI"


def _video_id(path: Path) -> str:
    m = re.search(r"\((\d+)\)", path.stem)
    return f"{path.parent.name.lower()}_{m.group(1)}" if m else f"{path.parent.name.lower()}_{path.stem}"


class Busi(ArchiveSource):
    name = "busi"
    classes = ["benign", "malignant", "normal"]
    enabled_by_default = True
    license = "none stated (data article CC BY 4.0; Kaggle lists CC0)"
    citation = (
        "Al-Dhabyani W., Gomaa M., Khaled H., Fahmy A. Dataset of breast ultrasound images. "
        "Data in Brief 28:104863, 2020. doi:10.1016/j.dib.2019.104863"
    )
    homepage = "https://scholar.cu.edu.eg/?q=afahmy/pages/dataset"
    options = {}
    url = URL
    archive = ARCHIVE
    extracted = EXTRACTED

    def collect(self, raw: Path, cfg: dict[str, Any]) -> Listing:
        images = self.archive_images(
            raw, cfg, {".png", ".jpg", ".jpeg", ".bmp"},
            lambda p: p.parent.name.lower() in self.classes and "_mask" not in p.stem.lower(),
            f"dataset 'busi': no images in benign/ malignant/ normal/ folders under {raw}. "
            f"Run `python -m hico download busi --raw {raw}`, or put the extracted "
            "Dataset_BUSI_with_GT/ there.",
        )
        ids = unique_ids(_video_id(p) for p in images)
        items = [file_item(vid, p.parent.name.lower(), p, raw, cfg, license=self.license) for vid, p in zip(ids, images)]
        return Listing(
            items, info={"version": URL}, expected={"class_counts": {"benign": 437, "malignant": 210, "normal": 133}},
        )


SOURCE = Busi()

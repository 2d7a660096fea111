"""UDIAT Dataset B: 163 breast ultrasound images (benign / malignant), one per woman.

Source (restricted)
    Apply with an institutional e-mail and a signed licence agreement at
    https://helward.mmu.ac.uk/STAFF/m.yap/dataset.php (Manchester Metropolitan University;
    approval takes up to about 10 working days). Point ``--raw`` at the released folder:
    ``original/*.png`` (the images; ``GT/*.png`` lesion masks are ignored) and the label sheet
    shipped with it (a ``.xlsx``; reading it needs ``openpyxl``) -- or any CSV with an image
    column and a benign/malignant column (option ``labels``).
Licence
    The UDIAT licence agreement: research use, no redistribution.
Citation
    Yap M.H., Pons G., Marti J., et al. Automated Breast Ultrasound Lesions Detection Using
    Convolutional Neural Networks. IEEE Journal of Biomedical and Health Informatics
    22(4):1218-1226, 2018. doi:10.1109/JBHI.2017.2731873
Label map
    benign (0), malignant (1), from the label sheet: the column whose values read as
    benign/malignant (``B``/``M``, ``CANCER`` counts as malignant), matched to image names by
    the column whose values are the image file names or numbers.
Sampling
    One image = one video of T = 1.
Grouping
    ``patient_id`` = the image (one image per woman).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from hico.data.sources._common import (
    DataNotFoundError,
    Listing,
    RestrictedSource,
    SourceError,
    file_item,
    unique_ids,
)
from hico.data.video import is_image


def _norm_label(value: Any) -> str | None:
    s = str(value).strip().lower()
    if s in ("b", "benign") or s.startswith("benign"):
        return "benign"
    if s in ("m", "malignant", "cancer") or s.startswith("malig") or "cancer" in s:
        return "malignant"
    return None


def _key(value: Any) -> str:
    s = Path(str(value).strip()).stem.lower()
    return str(int(s)) if s.isdigit() else s


def _read_sheet(path: Path) -> pd.DataFrame:
    if path.suffix.lower() in (".xlsx", ".xls"):
        try:
            return pd.read_excel(path, dtype=str)
        except ImportError as e:
            raise DataNotFoundError(
                f"dataset 'udiat_b': reading {path} needs openpyxl (`pip install openpyxl`), or save "
                "the sheet as CSV and pass it with the labels option"
            ) from e
    return pd.read_csv(path, dtype=str)


def read_labels(sheet: Path, image_keys: set[str]) -> dict[str, str]:
    """``{image key: benign|malignant}`` from a label sheet, finding the two columns by content."""
    df = _read_sheet(sheet).dropna(how="all")
    key_col = label_col = None
    best = 0.0
    for c in df.columns:
        vals = df[c].dropna()
        if vals.empty:
            continue
        lab_share = vals.map(_norm_label).notna().mean()
        key_share = vals.map(_key).isin(image_keys).mean()
        if lab_share >= 0.9 and label_col is None:
            label_col = c
        elif key_share > best:
            key_col, best = c, key_share
    if label_col is None or key_col is None or best < 0.5:
        raise SourceError(
            f"{sheet}: could not find an image-name column and a benign/malignant column "
            f"(columns: {list(df.columns)}). Pass a CSV with columns image,label via the labels option."
        )
    return {_key(k): _norm_label(v) for k, v in zip(df[key_col], df[label_col]) if _norm_label(v) and pd.notna(k)}


class UdiatB(RestrictedSource):
    name = "udiat_b"
    classes = ["benign", "malignant"]
    enabled_by_default = False
    license = "UDIAT Dataset B licence agreement (research use, no redistribution)"
    citation = (
        "Yap M.H. et al. Automated Breast Ultrasound Lesions Detection Using Convolutional Neural "
        "Networks. IEEE J Biomed Health Inform 22(4):1218-1226, 2018. doi:10.1109/JBHI.2017.2731873"
    )
    homepage = "https://helward.mmu.ac.uk/STAFF/m.yap/dataset.php"
    options = {"labels": None}
    how_to_get = (
        "apply at https://helward.mmu.ac.uk/STAFF/m.yap/dataset.php (institutional e-mail, signed "
        "licence agreement; no redistribution)"
    )
    expect = "original/*.png plus the label sheet (.xlsx or a CSV with image and benign/malignant columns)"

    def collect(self, raw: Path, cfg: dict[str, Any]) -> Listing:
        self.user_folder(raw)
        img_dir = next((d for d in (raw / "original", raw / "Original", raw) if d.is_dir()), raw)
        images = sorted(p for p in img_dir.iterdir() if p.is_file() and is_image(p))
        if not images:
            raise DataNotFoundError(f"dataset 'udiat_b': no images in {img_dir}. Expected {self.expect}.")
        if cfg["labels"]:
            sheet = Path(cfg["labels"]) if Path(cfg["labels"]).is_absolute() else raw / cfg["labels"]
        else:
            sheets = sorted([*raw.glob("*.xlsx"), *raw.glob("*.xls"), *raw.glob("*.csv")])
            if not sheets:
                raise DataNotFoundError(f"dataset 'udiat_b': no label sheet (.xlsx/.csv) in {raw}. Expected {self.expect}.")
            sheet = sheets[0]
        labels = read_labels(sheet, {_key(p.name) for p in images})
        keep, skipped = [], []
        for p in images:
            lab = labels.get(_key(p.name))
            if lab is None:
                skipped.append({"source_file": p.relative_to(raw).as_posix(), "reason": f"no label in {sheet.name}"})
            else:
                keep.append((p, lab))
        ids = unique_ids(f"udiat_{p.stem}" for p, _ in keep)
        items = [file_item(vid, lab, p, raw, cfg, license=self.license) for vid, (p, lab) in zip(ids, keep)]
        return Listing(
            items, skipped=skipped, info={"version": f"local folder {raw}", "labels": sheet.name},
            expected={"images": 163},
        )


SOURCE = UdiatB()

"""Your own data without code: class folders of videos/images/frame folders, or a CSV.

Source (restricted: the user's folder, ``--raw``)
    Either class folders::

        <raw>/<class>/<video>.mp4|.avi|.mpeg|.mov|.gif   one video
        <raw>/<class>/<image>.png|.jpg                    one image (T = 1)
        <raw>/<class>/<video>/<frame>.png|.jpg            one video as a folder of frames

    or a CSV (option ``csv``, or ``<raw>/labels.csv``, or ``--raw`` naming the CSV itself)
    with columns ``path,label[,patient]``; ``path`` is a video, image or frame folder,
    relative to the CSV's folder.
Licence
    Yours to state (option ``license``, copied to every manifest row).
Citation
    Yours (option ``citation``).
Label map
    Class names in the order of option ``classes`` (default: sorted).
Sampling
    Videos at ``fps`` up to ``max_frames``; frame folders keep every frame (up to
    ``max_frames``) unless ``source_fps`` gives their rate.
Grouping
    The CSV's ``patient`` column; otherwise each video is its own group.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from hico.data.sources._common import (
    DataNotFoundError,
    Listing,
    RestrictedSource,
    file_item,
    unique_ids,
)
from hico.data.video import frame_files, is_image, is_video


def _entries_from_csv(csv_path: Path) -> list[tuple[Path, str, str | None]]:
    df = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    cols = {c.strip().lower(): c for c in df.columns}
    if "path" not in cols or "label" not in cols:
        raise ValueError(f"{csv_path}: needs columns path,label[,patient]; found {list(df.columns)}")
    base = csv_path.parent
    out = []
    for _, r in df.iterrows():
        p = Path(r[cols["path"]].strip())
        patient = r[cols["patient"]].strip() if "patient" in cols and r[cols["patient"]].strip() else None
        out.append((p if p.is_absolute() else base / p, r[cols["label"]].strip(), patient))
    return out


def _entries_from_folders(raw: Path) -> list[tuple[Path, str, str | None]]:
    out = []
    for class_dir in sorted(d for d in raw.iterdir() if d.is_dir() and not d.name.startswith(".")):
        for entry in sorted(class_dir.iterdir()):
            if entry.name.startswith("."):
                continue
            if (entry.is_file() and (is_video(entry) or is_image(entry))) or (entry.is_dir() and frame_files(entry)):
                out.append((entry, class_dir.name, None))
    return out


class VideoFolder(RestrictedSource):
    name = "video_folder"
    classes = []  # from the data
    enabled_by_default = False
    license = "as stated by the user (option license)"
    citation = ""
    homepage = ""
    options = {"csv": None, "classes": None, "source_fps": None, "license": "", "citation": ""}
    how_to_get = "your own data"
    expect = (
        "class folders <raw>/<class>/<video file | image | folder of frames>, or a CSV with columns "
        "path,label[,patient] (option csv, or <raw>/labels.csv)"
    )

    def collect(self, raw: Path, cfg: dict[str, Any]) -> Listing:
        self.user_folder(raw)
        if cfg["csv"]:
            csv_path = Path(cfg["csv"])
            if not csv_path.is_absolute() and not csv_path.exists():
                csv_path = raw / csv_path
            if not csv_path.is_file():
                raise DataNotFoundError(f"dataset {self.name!r}: the csv option names {csv_path}, which does not exist")
        else:
            csv_path = raw if raw.is_file() else raw / "labels.csv"
        if csv_path.is_file():
            entries = _entries_from_csv(csv_path)
            root = csv_path.parent
        else:
            entries = _entries_from_folders(raw)
            root = raw
        if not entries:
            raise DataNotFoundError(f"dataset {self.name!r}: nothing usable under {raw}. Expected {self.expect}.")
        labels = sorted({lab for _, lab, _ in entries})
        classes = list(cfg["classes"]) if cfg["classes"] else labels
        unknown = sorted(set(labels) - set(classes))
        if unknown:
            raise ValueError(f"dataset {self.name!r}: labels {unknown} are not in the classes option {classes}")
        ids = unique_ids(p.stem if p.is_file() else p.name for p, _, _ in entries)
        items = [
            file_item(vid, label, p, root, cfg, patient_id=patient or vid, license=cfg["license"])
            for vid, (p, label, patient) in zip(ids, entries)
        ]
        return Listing(
            items, classes=classes,
            info={"version": f"local folder {raw}", "citation": cfg["citation"], "license": cfg["license"]},
        )


SOURCE = VideoFolder()

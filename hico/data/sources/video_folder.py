"""Your own data without code: class folders of videos/images/frame folders, or a CSV.

Source (restricted: the user's folder, ``--raw``)
    Either class folders::

        <raw>/<class>/<video>.mp4|.avi|.mpeg|.mov|.gif   one video
        <raw>/<class>/<image>.png|.jpg                    one image (T = 1)
        <raw>/<class>/<video>/<frame>.png|.jpg            one video as a folder of frames

    or a CSV (option ``csv``, or ``<raw>/labels.csv``, or ``--raw`` naming the CSV itself)
    with columns ``path,label[,patient]``; ``path`` is a video, image or frame folder,
    relative to the CSV's folder. Only paths inside the CSV's folder are read; others, files
    of other types, empty class folders and loose files are left out and listed in
    ``prepare_report.json`` (hidden files are ignored).
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

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from hico.data.sources._common import (
    DataNotFoundError,
    Listing,
    RestrictedSource,
    SourceError,
    file_item,
    text_name,
    unique_ids,
)
from hico.data.video import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, frame_files, is_image, is_video


@dataclass
class Entry:
    """One input to read: a file or frame folder, its label, its patient (None: its own), and
    where it was named (``CSV row n`` or the class folder) for error messages."""

    path: Path
    label: str
    patient: str | None
    where: str


def _inside(path: Path, root: Path) -> bool:
    """Whether ``path`` lies inside ``root``, by its spelling (``..`` resolved, links not)."""
    return Path(os.path.normpath(path)).is_relative_to(Path(os.path.normpath(root)))


def _read_csv(csv_path: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    except (UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        raise SourceError(
            f"{csv_path}: not a readable CSV ({type(e).__name__}: {e}); save it as UTF-8 text with "
            "columns path,label[,patient]"
        ) from e


def _entries_from_csv(csv_path: Path) -> tuple[list[Entry], list[dict[str, str]]]:
    """The CSV's rows; a path outside the CSV's folder is refused (listed in ``skipped``)."""
    df = _read_csv(csv_path)
    cols = {c.strip().lower(): c for c in df.columns}
    if "path" not in cols or "label" not in cols:
        raise SourceError(f"{csv_path}: needs columns path,label[,patient]; found {list(df.columns)}")
    base = csv_path.parent
    out, skipped = [], []
    for i, r in enumerate(df.to_dict("records")):
        row = f"{csv_path.name} row {i + 2}"  # line 1 is the header
        rel, label = r[cols["path"]].strip(), r[cols["label"]].strip()
        if not label:
            raise SourceError(
                f"{csv_path}: row {i + 2} ({rel or 'no path'}) has an empty label; give every row one of "
                "the class names, or delete the row"
            )
        path = Path(rel) if Path(rel).is_absolute() else base / rel
        if not rel or not _inside(path, base):
            skipped.append({"source_file": rel, "reason": f"{row}: outside the dataset folder {base}; only paths "
                            "inside it are read (copy or link the file there)" if rel else f"{row}: empty path"})
            continue
        patient = r[cols["patient"]].strip() if "patient" in cols else ""
        out.append(Entry(path, label, patient or None, row))
    return out, skipped


def _class_folder_entries(class_dir: Path, rel: str) -> tuple[list[Entry], list[dict[str, str]]]:
    out, skipped = [], []
    label = text_name(class_dir.name)
    for entry in sorted(class_dir.iterdir()):
        if entry.name.startswith("."):  # hidden files (.DS_Store, ._*) are not inputs
            continue
        name = f"{rel}/{text_name(entry.name)}"
        if entry.is_file() and (is_video(entry) or is_image(entry)):
            out.append(Entry(entry, label, None, name))
        elif entry.is_dir() and frame_files(entry):
            out.append(Entry(entry, label, None, name))
        elif entry.is_dir():
            skipped.append({"source_file": name, "reason": "folder holds no image frames (png/jpg)"})
        else:
            skipped.append({"source_file": name, "reason": f"unsupported file type {entry.suffix.lower()!r} "
                            f"(videos: {', '.join(sorted(VIDEO_EXTENSIONS))}; images: {', '.join(sorted(IMAGE_EXTENSIONS))})"})
    if not out:
        skipped.append({"source_file": rel, "reason": "empty class folder: no video, image or frame folder in it"})
    return out, skipped


def _entries_from_folders(raw: Path) -> tuple[list[Entry], list[dict[str, str]]]:
    out, skipped = [], []
    for top in sorted(raw.iterdir()):
        if top.name.startswith("."):
            continue
        if top.is_dir():
            found, left = _class_folder_entries(top, text_name(top.name))
            out += found
            skipped += left
        else:
            skipped.append({"source_file": text_name(top.name), "reason": "not inside a class folder <raw>/<class>/"})
    return out, skipped


class VideoFolder(RestrictedSource):
    name = "video_folder"
    classes = []  # from the data
    enabled_by_default = False
    license = "as stated by the user (option license)"
    citation = ""
    homepage = ""
    options = {"csv": None, "classes": None, "source_fps": None, "license": "", "citation": ""}
    list_options = ("classes",)
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
            entries, skipped = _entries_from_csv(csv_path)
            root = csv_path.parent
        else:
            entries, skipped = _entries_from_folders(raw)
            root = raw
        if not entries:
            raise DataNotFoundError(
                f"dataset {self.name!r}: nothing usable under {raw}"
                + (f" ({len(skipped)} input(s) left out, e.g. {skipped[0]})" if skipped else "")
                + f". Expected {self.expect}."
            )
        labels = sorted({e.label for e in entries})
        classes = list(cfg["classes"]) if cfg["classes"] else labels
        unknown = [e for e in entries if e.label not in classes]
        if unknown:
            raise SourceError(
                f"dataset {self.name!r}: {unknown[0].where} has label {unknown[0].label!r}, not in the classes "
                f"option {classes} ({len(unknown)} such input(s)); add the class or fix the label"
            )
        ids = unique_ids(e.path.stem if e.path.is_file() else e.path.name for e in entries)
        items = [
            file_item(vid, e.label, e.path, root, cfg, patient_id=e.patient or vid, license=cfg["license"])
            for vid, e in zip(ids, entries)
        ]
        return Listing(
            items, skipped=skipped, classes=classes,
            info={"version": f"local folder {raw}", "citation": cfg["citation"], "license": cfg["license"]},
        )


SOURCE = VideoFolder()

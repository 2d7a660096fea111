"""The standard on-disk dataset format: one format for every source (see DESIGN.md).

``<data_root>/<dataset>/``
  - ``frames/<video_id>.npy``: uint8 ``[T, H, W]`` grayscale, short side resized to ``store_size``;
  - ``manifest.csv``: one row per video (:data:`MANIFEST_COLUMNS`, optional extra columns after);
  - ``classes.json``: the label order (``label`` is an index into it);
  - ``dataset.json``: source, version, spec, store size, checksum of inputs.

Decoding happens once, in a source's ``prepare()``; training reads arrays, never video files.
A dataset is written into a temporary sibling folder and renamed into place when complete,
so an interrupted ``prepare`` never leaves a folder that looks finished.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hico.errors import HicoError
from hico.io import atomic_write_json

MANIFEST_COLUMNS = [
    "video_id",
    "patient_id",
    "label",
    "label_name",
    "n_frames",
    "source_file",
    "source_sha256",
    "license",
]
FORMAT_VERSION = 1


class DatasetError(HicoError, ValueError):
    """A dataset folder that does not follow the standard format."""


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def is_plain_id(video_id: str) -> bool:
    """Whether ``video_id`` names a file directly inside ``frames/`` (no path, no hidden name)."""
    return bool(video_id) and not any(c in video_id for c in "/\\\0") and not video_id.startswith(".")


def resize_short_side(frames: np.ndarray, size: int | None) -> np.ndarray:
    """Resize ``[T, H, W]`` uint8 frames so that min(H, W) == size (area/bilinear)."""
    if size is None or min(frames.shape[1:]) == size:
        return np.ascontiguousarray(frames, dtype=np.uint8)
    import torch
    import torch.nn.functional as F

    t, h, w = frames.shape
    scale = size / min(h, w)
    new_hw = (max(1, round(h * scale)), max(1, round(w * scale)))
    frames = np.ascontiguousarray(frames)
    if not frames.flags.writeable:  # e.g. a view of a decoded image; torch wants its own
        frames = frames.copy()
    x = torch.from_numpy(frames).float().unsqueeze(1)
    mode = "area" if scale < 1 else "bilinear"
    kwargs = {} if mode == "area" else {"align_corners": False}
    y = F.interpolate(x, size=new_hw, mode=mode, **kwargs)
    return y.round().clamp(0, 255).to(torch.uint8).squeeze(1).numpy()


def _replaceable(folder: Path) -> bool:
    """Whether ``folder`` may be replaced by a new dataset: an empty folder, or a dataset."""
    if not folder.is_dir() or folder.is_symlink():
        return False
    return not any(folder.iterdir()) or ((folder / "dataset.json").is_file() and (folder / "manifest.csv").is_file())


class DatasetWriter:
    """Write one dataset in the standard format, atomically.

    An existing dataset folder of the same name is replaced when the new one is complete; any
    other existing folder (the user's files) is refused before anything is written.

    >>> with DatasetWriter(root, "pocus", classes=["covid", "pneumonia", "regular"]) as w:
    ...     w.add_video("Cov-1", patient_id="Cov-1", label_name="covid", frames=arr)
    """

    def __init__(
        self,
        root: str | Path,
        name: str,
        classes: list[str],
        store_size: int | None = 256,
        info: dict[str, Any] | None = None,
        overwrite: bool = True,
    ):
        self.final_dir = Path(root) / name
        self.name = name
        self.classes = list(classes)
        if len(set(self.classes)) != len(self.classes):
            raise DatasetError(f"dataset {name}: duplicate class names in {self.classes}")
        self.store_size = store_size
        self.info = dict(info or {})
        self.overwrite = overwrite
        self.rows: list[dict[str, Any]] = []
        self._ids: set[str] = set()
        if self.final_dir.exists() and not _replaceable(self.final_dir):
            raise DatasetError(
                f"{self.final_dir} exists and is not a dataset folder (it lacks dataset.json and "
                "manifest.csv), so it is not replaced: nothing was changed. Move it away or choose "
                "another dataset name (--name)."
            )
        self.final_dir.parent.mkdir(parents=True, exist_ok=True)
        self.tmp_dir = Path(tempfile.mkdtemp(dir=self.final_dir.parent, prefix=f".{name}.partial-"))
        os.chmod(self.tmp_dir, 0o777 & ~_umask())  # mkdtemp's 0700 would lock out the group
        (self.tmp_dir / "frames").mkdir()

    def add_video(
        self,
        video_id: str,
        patient_id: str,
        label_name: str,
        frames: np.ndarray,
        source_file: str = "",
        source_sha256: str = "",
        license: str = "",
        **extra: Any,
    ) -> None:
        if video_id in self._ids:
            raise DatasetError(f"dataset {self.name}: video_id {video_id!r} added twice")
        if not is_plain_id(video_id):
            raise DatasetError(f"dataset {self.name}: video_id {video_id!r} must be a plain file name")
        if label_name not in self.classes:
            raise DatasetError(
                f"dataset {self.name}: video {video_id!r} has label {label_name!r}, "
                f"not one of the classes {self.classes}"
            )
        frames = np.asarray(frames)
        if frames.ndim == 2:
            frames = frames[None]
        if frames.ndim != 3 or frames.shape[0] == 0:
            raise DatasetError(
                f"dataset {self.name}: video {video_id!r} frames have shape {frames.shape}; "
                "expected [T>0, H, W] grayscale"
            )
        if frames.dtype != np.uint8:
            raise DatasetError(f"dataset {self.name}: video {video_id!r} frames are {frames.dtype}, expected uint8")
        frames = resize_short_side(frames, self.store_size)
        np.save(self.tmp_dir / "frames" / f"{video_id}.npy", frames)
        self._ids.add(video_id)
        self.rows.append(
            {
                "video_id": video_id,
                "patient_id": str(patient_id),
                "label": self.classes.index(label_name),
                "label_name": label_name,
                "n_frames": int(frames.shape[0]),
                "source_file": source_file,
                "source_sha256": source_sha256,
                "license": license,
                **extra,
            }
        )

    def finish(self) -> Path:
        if not self.rows:
            self.abort()
            raise DatasetError(f"dataset {self.name}: no video was added; nothing to write")
        manifest = pd.DataFrame(self.rows)
        extra_cols = [c for c in manifest.columns if c not in MANIFEST_COLUMNS]
        manifest = manifest[MANIFEST_COLUMNS + extra_cols]
        manifest.to_csv(self.tmp_dir / "manifest.csv", index=False)
        atomic_write_json(self.tmp_dir / "classes.json", self.classes)
        info = {
            "name": self.name,
            "format_version": FORMAT_VERSION,
            "store_size": self.store_size,
            "n_videos": len(manifest),
            "n_frames": int(manifest["n_frames"].sum()),
            "class_counts": {c: int((manifest["label_name"] == c).sum()) for c in self.classes},
            **self.info,
        }
        atomic_write_json(self.tmp_dir / "dataset.json", info)
        if self.final_dir.exists():
            if not self.overwrite:
                self.abort()
                raise DatasetError(f"{self.final_dir} exists; remove it or pass overwrite=True")
            trash = self.final_dir.with_name(f".{self.name}.old-{os.getpid()}")
            os.replace(self.final_dir, trash)
            os.replace(self.tmp_dir, self.final_dir)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(self.tmp_dir, self.final_dir)
        return self.final_dir

    def abort(self) -> None:
        shutil.rmtree(self.tmp_dir, ignore_errors=True)

    def __enter__(self) -> DatasetWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.finish()
        else:
            self.abort()


@dataclass(frozen=True)
class FramesHeader:
    """Where a ``frames/<video_id>.npy`` keeps its uint8 ``[T, H, W]`` array: byte offset and shape."""

    offset: int
    shape: tuple[int, int, int]

    @property
    def frame_bytes(self) -> int:
        return self.shape[1] * self.shape[2]


def _read_frames_header(path: Path) -> FramesHeader:
    """Parse the ``.npy`` header of ``path`` (no data read) and check the file holds the whole
    uint8 ``[T, H, W]`` C-order array it announces; ValueError/OSError otherwise."""
    from numpy.lib import format as npy

    with open(path, "rb") as f:
        version = npy.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = npy.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, fortran, dtype = npy.read_array_header_2_0(f)
        else:
            raise ValueError(f".npy format version {version} (expected 1.0 or 2.0, as np.save writes)")
        offset = f.tell()
        size = os.fstat(f.fileno()).st_size
    if dtype != np.uint8 or len(shape) != 3 or fortran:
        raise ValueError(f"holds {dtype} {tuple(shape)}{' in Fortran order' if fortran else ''}, expected "
                         "uint8 [T, H, W] in C order")
    if size < offset + int(np.prod(shape)):
        raise ValueError(f"the file is {size} bytes, its header announces {offset + int(np.prod(shape))}")
    return FramesHeader(offset, (int(shape[0]), int(shape[1]), int(shape[2])))


@dataclass
class StandardDataset:
    """A validated dataset folder; frames are memory-mapped (:meth:`frames`) or read by index
    (:meth:`read_frames`) on access."""

    root: Path
    manifest: pd.DataFrame
    classes: list[str]
    info: dict[str, Any] = field(default_factory=dict)
    # video_id -> FramesHeader, filled by load_dataset's check (so forked loader workers inherit it)
    # or on first read
    headers: dict[str, FramesHeader] = field(default_factory=dict, repr=False)

    @property
    def name(self) -> str:
        return self.info.get("name", self.root.name)

    def __len__(self) -> int:
        return len(self.manifest)

    def frames_path(self, video_id: str) -> Path:
        """``frames/<video_id>.npy``; a video_id that is not a plain file name is refused."""
        if not is_plain_id(str(video_id)):
            raise DatasetError(
                f"dataset {self.root}: video_id {video_id!r} is not a plain file name; frames are read "
                "only from the dataset's own frames/ folder"
            )
        return self.root / "frames" / f"{video_id}.npy"

    def _damaged(self, path: Path, video_id: str, e: Exception) -> DatasetError:
        return DatasetError(
            f"{path}: cannot read the frames of video {video_id!r} ({type(e).__name__}: {e}); the "
            "file is damaged or truncated, or was not written by `hico prepare`. Re-create the dataset "
            "with `python -m hico prepare`."
        )

    def frames(self, video_id: str, mmap: bool = True) -> np.ndarray:
        path = self.frames_path(video_id)
        try:
            return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
        except (ValueError, OSError, EOFError) as e:
            raise self._damaged(path, video_id, e) from e

    def frames_header(self, video_id: str) -> FramesHeader:
        """Offset and shape of the video's frames (parsed once per video and process)."""
        header = self.headers.get(video_id)
        if header is None:
            path = self.frames_path(video_id)
            try:
                header = _read_frames_header(path)
            except (ValueError, OSError, EOFError) as e:
                raise self._damaged(path, video_id, e) from e
            self.headers[video_id] = header
        return header

    def read_frames(self, video_id: str, indices: list[int] | np.ndarray) -> np.ndarray:
        """uint8 ``[len(indices), H, W]``: frames ``indices`` of the video, read straight from its file.

        Equal to ``np.stack([frames(video_id)[i] for i in indices])``, for a fraction of the
        cost: no header parse (cached) and no memory map per call, one ``readinto`` per frame;
        what a loader worker needs per sample.
        """
        header = self.frames_header(video_id)
        n, h, w = header.shape
        idx = [int(i) for i in indices]
        bad = [i for i in idx if not 0 <= i < n]
        if bad:
            raise IndexError(f"video {video_id!r} of dataset {self.root} has {n} frames; asked for frames {bad}")
        out = np.empty((len(idx), h, w), dtype=np.uint8)
        path = self.frames_path(video_id)
        with open(path, "rb", buffering=0) as f:
            for k, i in enumerate(idx):
                f.seek(header.offset + i * header.frame_bytes)
                if f.readinto(memoryview(out[k]).cast("B")) != header.frame_bytes:
                    raise self._damaged(path, video_id, EOFError(f"frame {i} ends before its {h}x{w} bytes"))
        return out


def _fail(root: Path, what: str, fix: str) -> DatasetError:
    return DatasetError(f"dataset {root}: {what}. {fix}")


def _integer_column(root: Path, manifest: pd.DataFrame, column: str) -> pd.Series:
    """``manifest[column]`` as integers; the first value that is not one is named with its row."""
    values = pd.to_numeric(manifest[column], errors="coerce")
    bad = values.isna() | (values != values.round())
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raw = manifest[column].iloc[i]
        shown = "empty" if pd.isna(raw) or str(raw).strip() == "" else repr(str(raw))
        raise _fail(
            root,
            f"manifest.csv row {i + 2} (video_id={manifest['video_id'].iloc[i]!r}): {column} is {shown}, "
            f"not an integer" + (" class index (classes.json)" if column == "label" else ""),
            "Fix that row or re-create the dataset with `python -m hico prepare`.",
        )
    return values.astype(int)


def _check_rows(root: Path, manifest: pd.DataFrame, classes: list[str], regen: str) -> None:
    """The manifest's rows: integer labels and counts, plain unique ids, labels in classes.json
    (converts ``label`` and ``n_frames`` to int in place); the first bad row is named."""
    for column in ("label", "n_frames"):
        manifest[column] = _integer_column(root, manifest, column)
    bad_ids = [(i, v) for i, v in enumerate(manifest["video_id"]) if not is_plain_id(v)]
    if bad_ids:
        i, v = bad_ids[0]
        raise _fail(
            root,
            f"manifest.csv row {i + 2} has video_id {v!r}, which must be a plain file name (no '/' or "
            "'\\', no leading '.'): frames are read only from the dataset's frames/ folder",
            "Fix the video_id (and the name of its frames/<video_id>.npy).",
        )
    dup = manifest["video_id"][manifest["video_id"].duplicated()].tolist()
    if dup:
        raise _fail(root, f"manifest.csv repeats video_id {dup[:5]}", regen)

    def refuse_first(rows: pd.DataFrame, problem, fix: str) -> None:
        if len(rows):
            row = rows.iloc[0]
            raise _fail(root, f"manifest.csv row video_id={row['video_id']!r}{problem(row)}", fix)

    refuse_first(manifest[(manifest["label"] < 0) | (manifest["label"] >= len(classes))],
                 lambda row: f" has label {row['label']} outside classes.json ({len(classes)} classes: {classes})",
                 "Fix the label or add the class to classes.json.")
    refuse_first(manifest[[classes[int(i)] != n for i, n in zip(manifest["label"], manifest["label_name"])]],
                 lambda row: (f": label {row['label']} is {classes[int(row['label'])]!r} in classes.json but "
                              f"label_name says {row['label_name']!r}"),
                 "Make label and label_name agree.")


def load_dataset(root: str | Path, check_frames: bool = True) -> StandardDataset:
    """Read and validate a standard dataset folder; errors say which file and how to fix it."""
    root = Path(root)
    regen = f"Re-create it with `python -m hico prepare` (or `python -m hico simulate`) into {root}."
    if not root.is_dir():
        raise _fail(root, "folder does not exist", regen)
    for fname in ("manifest.csv", "classes.json", "dataset.json"):
        if not (root / fname).exists():
            raise _fail(root, f"missing {fname}", regen)
    try:
        classes = json.loads((root / "classes.json").read_text())
        info = json.loads((root / "dataset.json").read_text())
    except json.JSONDecodeError as e:
        raise _fail(root, f"unreadable JSON ({e})", regen) from e
    if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes) or not classes:
        raise _fail(root, "classes.json must be a non-empty JSON list of class names", regen)
    text_columns = {c: str for c in ("video_id", "patient_id", "label_name", "source_file", "source_sha256", "license")}
    manifest = pd.read_csv(root / "manifest.csv", dtype=text_columns)
    for column in set(text_columns) & set(manifest.columns):
        manifest[column] = manifest[column].fillna("")
    missing = [c for c in MANIFEST_COLUMNS if c not in manifest.columns]
    if missing:
        raise _fail(root, f"manifest.csv lacks columns {missing} (expected {MANIFEST_COLUMNS})", regen)
    if manifest.empty:
        raise _fail(root, "manifest.csv has no rows", regen)
    _check_rows(root, manifest, classes, regen)
    ds = StandardDataset(root, manifest, classes, info)
    if check_frames:
        for vid, n in zip(manifest["video_id"], manifest["n_frames"]):
            path = ds.frames_path(vid)
            if not path.exists():
                raise _fail(root, f"frames file {path} is missing (video {vid!r} is in manifest.csv)", regen)
            try:
                header = _read_frames_header(path)
            except (ValueError, OSError, EOFError) as e:
                raise ds._damaged(path, vid, e) from e
            if header.shape[0] != n:
                raise _fail(
                    root,
                    f"{path} holds uint8 {header.shape}; expected uint8 [{n}, H, W] (n_frames from manifest.csv)",
                    regen,
                )
            ds.headers[vid] = header
    return ds

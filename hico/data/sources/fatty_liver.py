"""Fatty liver (Byra et al. 2018): 55 patients x 10 consecutive B-mode liver frames.

Source
    Zenodo record 1009146 (doi:10.5281/zenodo.1009146), one MATLAB file
    ``dataset_liver_bmodes_steatosis_assessment_IJCARS.mat`` holding a 1x55 struct ``data`` with
    fields ``id``, ``class`` (0 normal, 1 fatty), ``fat`` (percent fat in the biopsy) and
    ``images`` (10 x 434 x 636 uint8 per patient). Checksum: md5 ``c87da28a...`` as published
    by Zenodo (``locks/fatty_liver.json``). Both MATLAB v5 (scipy) and v7.3 / HDF5 (h5py) files
    are read; nothing is unpickled.
Licence
    Creative Commons Attribution 4.0 International (Zenodo record).
Citation
    Byra M., Styczynski G., Szmigielski C., et al. Transfer learning with deep convolutional
    neural network for liver steatosis assessment in ultrasound images. International Journal of
    Computer Assisted Radiology and Surgery 13:1895-1903, 2018. doi:10.1007/s11548-018-1843-2
Label map
    ``class``: 0 -> normal (0), 1 -> fatty (1) (fatty = more than 5 % steatosis); ``fat`` is
    kept as an extra column.
Sampling
    The 10 frames are consecutive with no published frame rate: all are kept (up to
    ``max_frames``); ``fps`` does not apply.
Grouping
    ``patient_id`` = ``patient_<id>`` (one video per patient). ``source_sha256`` is the sha256
    of that patient's frame array as stored in the file (the file is shared by all patients).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from hico.data.download import RemoteFile
from hico.data.sources._common import (
    DataNotFoundError,
    Item,
    Listing,
    Source,
    SourceError,
    array_sha256,
    lock_for,
    mirror_url,
)
from hico.data.standard import resize_short_side

MAT = "dataset_liver_bmodes_steatosis_assessment_IJCARS.mat"
URL = f"https://zenodo.org/records/1009146/files/{MAT}?download=1"
MD5 = "c87da28a498eae0f0874408c7ac92524"


def _scalar(x: Any) -> float:
    return float(np.asarray(x).ravel()[0])


def _frames_first(arr: np.ndarray) -> np.ndarray:
    """``[T, H, W]`` from a MATLAB-order 3-D array whose shortest axis is the frame axis."""
    arr = np.asarray(arr)
    if arr.ndim == 2:
        return arr[None]
    if arr.ndim != 3:
        raise ValueError(f"images have shape {arr.shape}; expected 10 x H x W")
    return np.moveaxis(arr, int(np.argmin(arr.shape)), 0)


def _to_uint8(arr: np.ndarray) -> np.ndarray:
    if arr.dtype == np.uint8:
        return np.ascontiguousarray(arr)
    a = arr.astype(np.float64)
    if a.min() >= 0 and a.max() <= 255:
        return np.rint(a).astype(np.uint8)
    lo, hi = float(a.min()), float(a.max())
    return np.rint((a - lo) / max(hi - lo, 1e-12) * 255).astype(np.uint8)


def _read_v5(path: Path) -> list[dict[str, Any]]:
    from scipy.io import loadmat

    data = loadmat(str(path), struct_as_record=True, squeeze_me=False)["data"].ravel()
    return [
        {"id": int(_scalar(r["id"])), "class": int(_scalar(r["class"])), "fat": _scalar(r["fat"]),
         "images": _frames_first(r["images"])}
        for r in data
    ]


def _read_v73(path: Path) -> list[dict[str, Any]]:
    """MATLAB v7.3: ``data`` is an HDF5 group; each field a dataset of object references (a
    struct array) or the value itself (a 1x1 struct). HDF5 stores MATLAB arrays transposed."""
    import h5py

    with h5py.File(path, "r") as f:
        g = f["data"]

        def column(field: str) -> list[np.ndarray]:
            ds = g[field]
            if ds.dtype == h5py.ref_dtype:
                return [np.asarray(f[ref]).T for ref in ds[()].ravel()]
            return [np.asarray(ds).T]

        ids, classes, fats, images = column("id"), column("class"), column("fat"), column("images")
        return [
            {"id": int(_scalar(i)), "class": int(_scalar(c)), "fat": _scalar(ft), "images": _frames_first(im)}
            for i, c, ft, im in zip(ids, classes, fats, images)
        ]


def read_mat(path: str | Path) -> list[dict[str, Any]]:
    """The patients of the .mat file: ``[{"id", "class", "fat", "images": uint8-able [T,H,W]}]``."""
    path = Path(path)
    try:
        return _read_v5(path)
    except (NotImplementedError, ValueError) as e:
        import h5py

        if not h5py.is_hdf5(str(path)):
            raise SourceError(f"{path}: neither a MATLAB v5 nor a v7.3 (HDF5) file ({e})") from e
        return _read_v73(path)


class FattyLiver(Source):
    name = "fatty_liver"
    classes = ["normal", "fatty"]
    enabled_by_default = True
    license = "CC BY 4.0"
    citation = (
        "Byra M. et al. Transfer learning with deep convolutional neural network for liver steatosis "
        "assessment in ultrasound images. Int J CARS 13:1895-1903, 2018. doi:10.1007/s11548-018-1843-2"
    )
    homepage = "https://zenodo.org/records/1009146"
    options = {}

    def remote_files(self, config: Mapping[str, Any] | None = None) -> list[RemoteFile]:
        cfg = self.config(config)
        md5 = (lock_for(self.name, cfg).entry(MAT) or {}).get("md5", MD5)
        return [RemoteFile(url=mirror_url(cfg, MAT, URL), path=MAT, checksum=f"md5:{md5}", content=("mat",))]

    def collect(self, raw: Path, cfg: dict[str, Any]) -> Listing:
        mat = raw / MAT
        if not mat.exists():
            found = sorted(raw.glob("*.mat")) if raw.is_dir() else []
            if len(found) != 1:
                raise DataNotFoundError(
                    f"dataset 'fatty_liver': {mat} not found. Run `python -m hico download fatty_liver "
                    f"--raw {raw}` or put {MAT} from https://zenodo.org/records/1009146 there."
                )
            mat = found[0]
        patients = read_mat(mat)
        size, max_frames = cfg["store_size"], cfg["max_frames"]
        items = []
        skipped = []
        for i, p in enumerate(patients):
            if p["class"] not in (0, 1):
                skipped.append({"source_file": f"{mat.name}#data({i + 1})", "reason": f"class {p['class']} is not 0/1"})
                continue
            vid = f"patient_{p['id']:02d}"

            def load(p=p):
                frames = _to_uint8(p["images"])
                return resize_short_side(frames[:max_frames] if max_frames else frames, size)

            items.append(
                Item(
                    video_id=vid,
                    patient_id=vid,
                    label_name=self.classes[p["class"]],
                    load=load,
                    source_file=f"{mat.relative_to(raw).as_posix()}#data({i + 1})",
                    sha256=array_sha256(p["images"]),
                    license=self.license,
                    extra={"fat": p["fat"]},
                )
            )
        return Listing(
            items, skipped=skipped, info={"version": "zenodo:1009146"},
            expected={"patients": 55, "class_counts": {"fatty": 38, "normal": 17}, "frames_per_patient": 10},
        )


SOURCE = FattyLiver()

"""POCUS: convex-probe lung ultrasound videos and still images (COVID-19, pneumonia, healthy).

Source
    GitHub ``jannisborn/covid19_ultrasound`` (option ``repo``, ``ref``; default ``master``), one raw
    file at a time from ``data/pocus_videos/convex/`` (124 videos), ``data/pocus_images/convex/``
    (still images; option ``include_images``) and ``data/dataset_metadata.csv`` (per-file licence).
    Checksums: git blob SHA-1 of every file. The 124 videos are pinned in
    ``locks/pocus.json`` (from the upstream tree of 2023-10-12); the images and the metadata
    sheet are listed once through the GitHub API and recorded there at first download.
    A mirror with the same blobs works too (e.g. ``repo=abdulahadabro/Covid19-Ultra-Sound``,
    ``ref=0cc8f8606dff4279a329202a6914025e6891251e``).
    ``prepare`` also reads a local copy: a checkout of the repository, or a folder with
    ``videos/`` (and ``images/``) plus ``manifest.tsv`` (file, label, license, sha256), as in
    ``../shared/data/pocus/``, whose sha256 column is then checked.
Licence
    Per file, column ``License`` of ``dataset_metadata.csv`` (CC BY 4.0, CC BY-NC 4.0,
    CC BY-NC-SA 3.0/4.0, CC BY 2.0; eight ``Cov_denault_*`` clips carry a "COVID-19 emergency
    license"); stored per video in the manifest's ``license`` column. Option ``licenses``
    (a list) keeps only those licences. Code of the repository: MIT.
Citation
    Born J., Wiedemann N., Cossio M., et al. Accelerating Detection of Lung Pathologies with
    Explainable Ultrasound Image Analysis. Applied Sciences 11(2):672, 2021.
    doi:10.3390/app11020672
Label map (USCL / HiCo order)
    From the file-name prefix, case-insensitive: ``Cov`` -> covid (0), ``Pne``/``Pneu`` ->
    pneumonia (1), ``Reg`` -> regular (2); ``Vir`` -> viral (3) only with ``include_viral``.
    Other names are skipped and listed in ``prepare_report.json``.
Sampling
    Videos at ``fps`` (3 Hz) up to ``max_frames`` (30) frames, the pocovidnet reference
    processing (``build_image_dataset.py``); still images are videos of T = 1.
Grouping
    ``patient_id`` = the source file: POCUS has no patient ids, so folds are grouped by video
    (clips such as ``Reg_pat1Image_*`` that share a patient can land in different folds).
"""

from __future__ import annotations

import csv
import re
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hico.data.download import RemoteFile, file_sha256
from hico.data.sources._common import (
    DataNotFoundError,
    Listing,
    Source,
    file_item,
    github_remote_files,
    unique_ids,
)
from hico.data.video import is_image, is_video, read_image, read_video

VIDEO_DIR = "data/pocus_videos/convex/"
IMAGE_DIR = "data/pocus_images/convex/"
METADATA = "data/dataset_metadata.csv"
PREFIX_LABELS = (("cov", "covid"), ("pne", "pneumonia"), ("reg", "regular"), ("vir", "viral"))
MANIFEST_LABELS = {
    "COVID-19": "covid",
    "Bacterial pneumonia": "pneumonia",
    "regular": "regular",
    "Viral pneumonia": "viral",
}


def label_of(filename: str) -> str | None:
    low = filename.lower()
    for prefix, label in PREFIX_LABELS:
        if low.startswith(prefix):
            return label
    return None


def _norm_license(s: str) -> str:
    return re.sub(r"\s*-\s*", "-", " ".join(str(s).split()))


def _read_manifest(raw: Path) -> dict[str, dict[str, str]]:
    """``{file name: row}`` of a local ``manifest.tsv`` (the ../shared/data/pocus layout)."""
    path = raw / "manifest.tsv"
    if not path.exists():
        return {}
    with open(path, newline="") as fh:
        return {Path(r["file"]).name: r for r in csv.DictReader(fh, delimiter="\t")}


def _read_metadata_licenses(raw: Path) -> dict[str, str]:
    for path in (raw / METADATA, raw / "dataset_metadata.csv"):
        if path.exists():
            with open(path, newline="", encoding="utf-8", errors="replace") as fh:
                return {
                    (r.get("Filename") or "").strip(): (r.get("License") or "").strip()
                    for r in csv.DictReader(fh)
                }
    return {}


def _media_files(raw: Path, include_images: bool) -> list[tuple[Path, bool]]:
    """``[(file, is_still_image)]`` from the first layout found under ``raw``."""
    video_dirs = [raw / VIDEO_DIR, raw / "videos", raw / "pocus_videos" / "convex"]
    image_dirs = [raw / IMAGE_DIR, raw / "images", raw / "pocus_images" / "convex"]
    out: list[tuple[Path, bool]] = []
    for d in video_dirs:
        if d.is_dir():
            out += [(p, False) for p in sorted(d.iterdir()) if p.is_file() and is_video(p)]
            break
    if include_images:
        for d in image_dirs:
            if d.is_dir():
                out += [(p, True) for p in sorted(d.iterdir()) if p.is_file() and is_image(p)]
                break
    return out


def _manifest_class_counts(manifest: dict[str, dict[str, str]]) -> dict[str, int]:
    """Files per class as manifest.tsv lists them (its labels mapped to the suite's names)."""
    labels = (r.get("label", "") for r in manifest.values())
    return dict(Counter(MANIFEST_LABELS.get(label, label) for label in labels))


class Pocus(Source):
    name = "pocus"
    classes = ["covid", "pneumonia", "regular"]
    enabled_by_default = True
    license = "per file (CC BY / CC BY-NC / CC BY-NC-SA; see the manifest's license column)"
    citation = (
        "Born J. et al. Accelerating Detection of Lung Pathologies with Explainable Ultrasound "
        "Image Analysis. Applied Sciences 11(2):672, 2021. doi:10.3390/app11020672"
    )
    homepage = "https://github.com/jannisborn/covid19_ultrasound"
    options = {
        "repo": "jannisborn/covid19_ultrasound",
        "ref": "master",
        "api_url": None,
        "include_images": True,
        "include_viral": False,
        "licenses": None,
    }
    list_options = ("licenses",)
    parallel_download = True  # every POCUS convex file, upstream paths kept

    def remote_files(self, config: Mapping[str, Any] | None = None) -> list[RemoteFile]:
        cfg = self.config(config)
        prefixes = [VIDEO_DIR, METADATA] + ([IMAGE_DIR] if cfg["include_images"] else [])
        return github_remote_files(self.name, cfg, prefixes)

    def collect(self, raw: Path, cfg: dict[str, Any]) -> Listing:
        """Write ``<out_root>/pocus/`` from a download (:meth:`download`) or a local copy."""
        media = _media_files(raw, cfg["include_images"])
        if not media:
            raise DataNotFoundError(
                f"dataset 'pocus': no videos under {raw} (looked for {VIDEO_DIR}, videos/). "
                f"Run `python -m hico download pocus --raw {raw}` first, or point --raw at a checkout "
                "of jannisborn/covid19_ultrasound or at a folder with videos/ and manifest.tsv."
            )
        classes = self.classes + (["viral"] if cfg["include_viral"] else [])
        manifest = _read_manifest(raw)
        licenses = _read_metadata_licenses(raw)
        allowed = None if cfg["licenses"] is None else {_norm_license(x) for x in cfg["licenses"]}
        keep: list[tuple[Path, bool, str, str]] = []
        skipped: list[dict[str, str]] = []
        for path, still in media:
            rel = path.relative_to(raw).as_posix()
            label = label_of(path.name)
            if label is None or label not in classes:
                why = "no Cov/Pne/Reg prefix" if label is None else f"class {label!r} not enabled (include_viral)"
                skipped.append({"source_file": rel, "reason": why})
                continue
            row = manifest.get(path.name, {})
            lic = row.get("license") or licenses.get(path.stem, "")
            if allowed is not None and _norm_license(lic) not in allowed:
                skipped.append({"source_file": rel, "reason": f"licence {lic!r} not in the licenses option"})
                continue
            keep.append((path, still, label, lic))

        fps, max_frames, size, max_pixels = cfg["fps"], cfg["max_frames"], cfg["store_size"], cfg["max_pixels"]

        def loader(path: Path, still: bool, expected_sha: str | None):
            def load():
                if expected_sha:
                    actual = file_sha256(path)
                    if actual != expected_sha:
                        raise ValueError(f"sha256 {actual} differs from manifest.tsv ({expected_sha})")
                if still:
                    return read_image(path, size, max_pixels)
                return read_video(path, fps, max_frames, size, max_pixels)

            return load

        ids = unique_ids(p.stem for p, _, _, _ in keep)
        items = []
        for vid, (path, still, label, lic) in zip(ids, keep):
            sha = manifest.get(path.name, {}).get("sha256")
            items.append(
                file_item(
                    vid, label, path, raw, cfg, load=loader(path, still, sha),
                    sha256=sha or None, license=lic, extra={"kind": "image" if still else "video"},
                )
            )
        expected = {"class_counts_manifest": _manifest_class_counts(manifest)} if manifest else None
        info = {"version": f"{cfg['repo']}@{cfg['ref']}" if not manifest else f"local copy {raw}"}
        return Listing(items, classes=classes, info=info, skipped=skipped, expected=expected)


SOURCE = Pocus()

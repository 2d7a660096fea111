"""What every source shares: the :class:`Source` base, config, lock files, downloads, and the
prepare loop.

A source module defines one :class:`Source` subclass (its name, classes, licence, options,
``remote_files`` and ``prepare``) and an instance of it, ``SOURCE``. The subclass describes
*what* to read (its files, labels, groups); the base class fetches :meth:`Source.remote_files`
(public), :class:`RestrictedSource` checks the user's folder instead, and
:class:`ArchiveSource` is a public set of one archive with no published checksum.
:func:`file_item` turns a file or frame folder into an :class:`Item`, and
:meth:`Source.write_dataset` does the rest the same way for all of them: decode each item in a
thread pool, quarantine the ones that fail, refuse when more than ``max_failure_share`` fail,
and write the standard format (:class:`hico.data.standard.DatasetWriter`) with
``prepare_report.json`` inside.
"""

from __future__ import annotations

import hashlib
import importlib
import logging
import os
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import quote

import numpy as np

from hico.data.download import (
    DEFAULT_MAX_ARCHIVE_BYTES,
    DEFAULT_MAX_ARCHIVE_RATIO,
    LockFile,
    RemoteFile,
    fetch_all,
    file_sha256,
    github_tree,
    iter_files,
    macos_junk,
    safe_extract,
    utc_timestamp,
)
from hico.data.standard import DatasetWriter
from hico.data.video import DEFAULT_MAX_PIXELS, Video, decode, frame_files, is_image
from hico.errors import HicoError
from hico.io import atomic_write_json

log = logging.getLogger(__name__)

LOCK_DIR = Path(__file__).parent / "locks"

#: Options every source accepts (a source's ``OPTIONS`` adds its own and may change defaults).
COMMON_OPTIONS: dict[str, Any] = {
    "base_url": None,  # replaces the source's download URL prefix (mirrors, tests)
    "fps": 3.0,  # frame sampling rate in Hz (None: every frame)
    "max_frames": 30,  # frames kept per video (None: no limit)
    "store_size": 256,  # short side of stored frames (None: as decoded)
    "max_failure_share": 0.05,  # above this share of undecodable inputs, prepare fails
    "retries": 3,  # download retries (pooch back-off: 1 s, 2 s, 3 s, ...)
    "timeout": 60.0,  # seconds without data before a download attempt fails
    "progress": True,  # progress bars
    "workers": 2,  # decode threads (and download threads for many-file sources)
    "lock_dir": None,  # where lock files live (default: hico/data/sources/locks/)
    # budgets against decompression bombs (None: no limit)
    "max_pixels": DEFAULT_MAX_PIXELS,  # pixels of one decoded frame, checked before decoding
    "max_archive_bytes": DEFAULT_MAX_ARCHIVE_BYTES,  # total uncompressed bytes of an archive
    "max_archive_ratio": DEFAULT_MAX_ARCHIVE_RATIO,  # uncompressed bytes / archive bytes
}


class DataNotFoundError(HicoError, FileNotFoundError):
    """The raw data is not where it should be; the message says where to get it and put it."""


class PrepareError(HicoError, RuntimeError):
    """Too many inputs failed to decode; the message lists them."""


class SourceError(HicoError, ValueError):
    """A bad source option or an unreadable label sheet; the message names the file, row or option."""


def resolve_config(source: Source, config: Mapping[str, Any] | None) -> dict[str, Any]:
    """COMMON_OPTIONS, then the source's ``options``, then ``config``; unknown keys are errors."""
    cfg = {**COMMON_OPTIONS, **source.options}
    unknown = sorted(set(config or {}) - set(cfg))
    if unknown:
        raise SourceError(
            f"source {source.name!r}: unknown option(s) {unknown}; valid options are {sorted(cfg)}"
        )
    cfg.update(config or {})
    for key in source.list_options:  # `--set classes=a,b` is a list, not the letters of a string
        if isinstance(cfg[key], str):
            cfg[key] = [x.strip() for x in cfg[key].split(",") if x.strip()]
    for key in ("fps", "max_frames", "store_size", "max_pixels", "max_archive_bytes", "max_archive_ratio"):
        v = cfg[key]
        if v is not None and (not isinstance(v, int | float) or v <= 0):
            raise SourceError(f"source {source.name!r}: option {key}={v!r} must be a positive number or None")
    if not 0 <= float(cfg["max_failure_share"]) <= 1:
        raise SourceError(f"source {source.name!r}: max_failure_share must lie in [0, 1], got {cfg['max_failure_share']}")
    return cfg


def lock_for(name: str, cfg: Mapping[str, Any]) -> LockFile:
    return LockFile(Path(cfg.get("lock_dir") or LOCK_DIR) / f"{name}.json", source=name)


def url_join(base: str, rel: str) -> str:
    return base.rstrip("/") + "/" + quote(rel, safe="/")


def mirror_url(cfg: Mapping[str, Any], rel: str, url: str) -> str:
    """``url``, or ``rel`` under the ``base_url`` option when that is set (mirrors, tests)."""
    return url_join(cfg["base_url"], rel) if cfg["base_url"] else url


def github_files(
    name: str,
    cfg: Mapping[str, Any],
    repo: str,
    ref: str,
    prefixes: Sequence[str],
    lock: LockFile,
) -> dict[str, dict[str, Any]]:
    """``{path: lock entry}`` for every file of ``repo`` under ``prefixes`` (a path ending in
    ``/`` is a folder, otherwise one file).

    Folders already listed in the lock (``github.resolved``) are taken from it; the others are
    listed once through the GitHub API at ``ref`` and recorded with their git blob SHA-1, so the
    file list and checksums are fixed from the first download on.
    """
    gh = lock.data.setdefault("github", {"repo": repo, "ref": ref, "resolved": []})
    if (gh.get("repo"), gh.get("ref")) != (repo, ref):
        log.warning(
            "%s: %s pins files of %s@%s, but %s@%s was asked for; blobs that differ will fail their "
            "checksum (use another lock_dir for another ref)", name, lock.path, gh.get("repo"), gh.get("ref"), repo, ref
        )
    missing = [p for p in prefixes if p not in gh.get("resolved", [])]
    if missing:
        tree = github_tree(repo, ref, cfg.get("api_url") or "https://api.github.com", cfg["timeout"])
        for p in missing:
            found = {k: v for k, v in tree.items() if (k.startswith(p) if p.endswith("/") else k == p)}
            if not found:
                raise SourceError(
                    f"source {name!r}: {repo}@{ref} has no file under {p!r}; check the options repo/ref"
                )
            for path, entry in found.items():
                lock.files.setdefault(path, {}).update(entry)
        gh["resolved"] = sorted(set(gh.get("resolved", [])) | set(missing))
        gh.setdefault("repo", repo)
        gh.setdefault("ref", ref)
        lock.save()
        log.warning("%s: file list of %s@%s recorded in %s -- commit that file", name, repo, ref, lock.path)
    out = {}
    for path, entry in lock.files.items():
        if any(path.startswith(p) if p.endswith("/") else path == p for p in prefixes):
            out[path] = entry
    return out


def github_remote(path: str, entry: Mapping[str, Any], base_url: str) -> RemoteFile:
    checksum = f"gitsha1:{entry['git_blob_sha1']}" if entry.get("git_blob_sha1") else "lock"
    return RemoteFile(url=url_join(base_url, path), path=path, checksum=checksum, size=entry.get("size"))


def github_remote_files(name: str, cfg: Mapping[str, Any], prefixes: Sequence[str]) -> list[RemoteFile]:
    """The files under ``prefixes`` of the ``repo`` option at ``ref`` (:func:`github_files`),
    sorted by path, fetched from ``base_url`` or raw.githubusercontent.com."""
    base = cfg["base_url"] or f"https://raw.githubusercontent.com/{cfg['repo']}/{cfg['ref']}"
    entries = github_files(name, cfg, cfg["repo"], cfg["ref"], prefixes, lock_for(name, cfg))
    return [github_remote(path, entries[path], base) for path in sorted(entries)]


def extract(archive: Path, dest: Path, cfg: Mapping[str, Any], skip: Callable[[str], bool] | None = None) -> Path:
    """:func:`~hico.data.download.safe_extract` within the options' archive budgets."""
    return safe_extract(archive, dest, skip, max_bytes=cfg["max_archive_bytes"], max_ratio=cfg["max_archive_ratio"])


def require_data(path: str | Path, name: str, how_to_get: str, expect: str) -> Path:
    """``path`` if it exists and is not empty; else :class:`DataNotFoundError` with directions."""
    p = Path(path)
    if not p.exists() or (p.is_dir() and not any(p.iterdir())):
        raise DataNotFoundError(
            f"dataset {name!r}: no data at {p}.\n"
            f"Where to get it: {how_to_get}\n"
            f"Where to put it: {expect}\n"
            f"Then run `python -m hico prepare {name} --raw {p} --out <data_root>`."
        )
    return p


class OverlapError(HicoError, ValueError):
    """A dataset folder that would be, contain or lie inside one of its inputs."""


def refuse_overlap(raw: Path, final: Path, name: str) -> None:
    """Raise :class:`OverlapError` unless the dataset folder ``final`` and the raw folder ``raw``
    (a file stands for its folder) are apart: neither is, contains or lies inside the other.

    ``prepare`` replaces ``final`` as a whole, so an overlap would delete the user's input.
    Paths are compared resolved (``..`` and symbolic links followed); nothing is touched.
    """
    raw_dir = raw.parent if raw.is_file() else raw
    a, b = raw_dir.resolve(), final.resolve()
    if a == b or a.is_relative_to(b) or b.is_relative_to(a):
        where = "is" if a == b else "would lie inside" if b.is_relative_to(a) else "would contain"
        raise OverlapError(
            f"dataset {name!r}: the output folder {final} {where} the input folder {raw_dir} "
            "(outputs must not overlap inputs: prepare replaces its output folder as a whole). "
            f"Nothing was changed. Write elsewhere, e.g. --out {raw_dir.parent / 'prepared'}, "
            "or choose another --name."
        )


@dataclass
class Listing:
    """What a source found in its raw folder: the items to decode, and the inputs it left out
    on purpose (``skipped``: ``{"source_file", "reason"}``), for ``prepare_report.json``."""

    items: list[Item]
    skipped: list[dict[str, str]] = field(default_factory=list)
    classes: Sequence[str] | None = None  # default: the source's classes
    info: dict[str, Any] = field(default_factory=dict)  # added to dataset.json
    expected: dict[str, Any] | None = None  # e.g. published class counts; reported, never enforced


class Source:
    """One dataset source; a subclass per module of :mod:`hico.data.sources`, whose docstring is
    the source's spec (:attr:`spec`).

    Class attributes: ``name`` (= the module name), ``classes`` (label order), ``access``
    (``"public"`` or ``"restricted"``), ``enabled_by_default`` (used by the default
    configuration), ``license``, ``citation``, ``homepage``, ``options`` (the source's own
    options and changed defaults; the common ones are :data:`COMMON_OPTIONS`), ``list_options``
    (those of its options that hold lists: a string is read as comma-separated) and
    ``parallel_download`` (fetch ``workers`` files at a time: sources of many small files).
    """

    name: ClassVar[str]
    classes: ClassVar[list[str]] = []
    access: ClassVar[str] = "public"
    enabled_by_default: ClassVar[bool] = False
    license: ClassVar[str] = ""
    citation: ClassVar[str] = ""
    homepage: ClassVar[str] = ""
    options: ClassVar[dict[str, Any]] = {}
    list_options: ClassVar[tuple[str, ...]] = ()  # options that are lists (a string: comma-separated)
    parallel_download: ClassVar[bool] = False

    @property
    def spec(self) -> str:
        """The docstring of the source's module: source, licence, citation, label map, sampling, grouping."""
        return importlib.import_module(type(self).__module__).__doc__ or ""

    def config(self, config: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """:func:`resolve_config` for this source."""
        return resolve_config(self, config)

    def remote_files(self, config: Mapping[str, Any] | None = None) -> list[RemoteFile]:
        """The files to fetch, each with its checksum (empty for a restricted set)."""
        raise NotImplementedError(f"source {self.name!r} defines no remote_files")

    def download(self, raw_dir: str | Path, config: Mapping[str, Any] | None = None) -> Path:
        """Fetch :meth:`remote_files` into ``raw_dir``, each checked against the source's lock
        file (``workers`` at a time when ``parallel_download``; a single file keeps its own
        progress bar)."""
        cfg = self.config(config)
        workers = cfg["workers"] if self.parallel_download else 1
        fetch_all(
            self.remote_files(cfg), raw_dir, lock_for(self.name, cfg), cfg["retries"], cfg["progress"],
            cfg["timeout"], workers=workers,
        )
        return Path(raw_dir)

    def prepare(
        self, raw_dir: str | Path, out_root: str | Path, config: Mapping[str, Any] | None = None, name: str | None = None
    ) -> Path:
        """Write ``<out_root>/<name or self.name>/`` in the standard format from ``raw_dir``:
        the options, then the guard that the output never overlaps the input
        (:func:`refuse_overlap`), then :meth:`collect`, then :func:`write_dataset`."""
        cfg = self.config(config)
        raw, out_root, name = Path(raw_dir), Path(out_root), name or self.name
        refuse_overlap(raw, out_root / name, name)
        return write_dataset(self, self.collect(raw, cfg), out_root, cfg, name)

    def collect(self, raw: Path, cfg: dict[str, Any]) -> Listing:
        """The items to decode from the raw folder ``raw`` and what was left out, and why."""
        raise NotImplementedError(f"source {self.name!r} defines no collect")

    def __repr__(self) -> str:
        return f"<source {self.name!r} ({self.access})>"


class RestrictedSource(Source):
    """A set the user supplies: nothing to fetch; ``download`` only checks that the user's folder
    is there, and says where to get the data (``how_to_get``) and put it (``expect``) if not."""

    access: ClassVar[str] = "restricted"
    how_to_get: ClassVar[str] = ""
    expect: ClassVar[str] = ""

    def remote_files(self, config: Mapping[str, Any] | None = None) -> list[RemoteFile]:
        return []

    def download(self, raw_dir: str | Path, config: Mapping[str, Any] | None = None) -> Path:
        """Nothing to fetch: check the options and that the user's folder is there."""
        self.config(config)
        return self.user_folder(raw_dir)

    def user_folder(self, raw_dir: str | Path) -> Path:
        """``raw_dir`` if it holds something; else :class:`DataNotFoundError` with directions."""
        return require_data(raw_dir, self.name, self.how_to_get, self.expect)


class ArchiveSource(Source):
    """A public set of one file (``archive`` fetched from ``url``) with no published checksum:
    its sha256 is recorded in the lock at first download and checked ever after."""

    url: ClassVar[str]
    archive: ClassVar[str]
    extracted: ClassVar[str]  # the folder under raw/ that the archive unpacks into
    content: ClassVar[tuple[str, ...]] = ("zip",)  # what the first download must be (download.MAGIC)

    def remote_files(self, config: Mapping[str, Any] | None = None) -> list[RemoteFile]:
        cfg = self.config(config)
        url = mirror_url(cfg, self.archive, self.url)
        return [RemoteFile(url=url, path=self.archive, checksum="lock", content=self.content)]

    def archive_images(self, raw: Path, cfg: Mapping[str, Any], suffixes: set[str], keep: Callable[[Path], bool],
                       missing: str, skip: Callable[[str], bool] = macos_junk) -> list[Path]:
        """The archive unpacked into ``raw/<extracted>`` (when it was downloaded; ``skip``: members
        left packed), then every image under ``raw`` that ``keep`` accepts; none is a
        :class:`DataNotFoundError` saying ``missing``."""
        if (raw / self.archive).exists():
            extract(raw / self.archive, raw / self.extracted, cfg, skip=skip)
        images = [p for p in iter_files(raw, suffixes) if keep(p)]
        if not images:
            raise DataNotFoundError(missing)
        return images


# --------------------------------------------------------------------------------------------
# ids and hashes


_ID_BAD = re.compile(r"[^A-Za-z0-9._+()\-]+")


def clean_id(name: str) -> str:
    """A plain file name for a video id: odd characters become ``_``; no leading dot."""
    s = _ID_BAD.sub("_", name.strip()).strip("_")
    return s.lstrip(".") or "video"


def unique_ids(names: Iterable[str]) -> list[str]:
    """:func:`clean_id` of each name, with ``_2``, ``_3``... added to repeats, in order."""
    seen: Counter[str] = Counter()
    out = []
    for n in names:
        base = clean_id(n)
        seen[base] += 1
        out.append(base if seen[base] == 1 else f"{base}_{seen[base]}")
    return out


def source_sha256(path: str | Path) -> str:
    """sha256 of a file; for a folder of frames, sha256 of its sorted ``name sha256`` lines."""
    path = Path(path)
    if path.is_dir():
        lines = "".join(f"{f.name} {file_sha256(f)}\n" for f in frame_files(path))
        return hashlib.sha256(lines.encode()).hexdigest()
    return file_sha256(path)


def array_sha256(arr: np.ndarray) -> str:
    arr = np.ascontiguousarray(arr)
    h = hashlib.sha256(f"{arr.dtype.str}{arr.shape}".encode())
    h.update(arr.tobytes())
    return h.hexdigest()


def find_frame_folders(root: str | Path) -> list[Path]:
    """Folders under ``root`` that directly hold image frames (each one video), sorted."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d != "__MACOSX")
        if any(is_image(f) and not f.startswith(".") for f in filenames):
            out.append(Path(dirpath))
    return sorted(out)


# --------------------------------------------------------------------------------------------
# the prepare loop


@dataclass
class Item:
    """One future video of a dataset: its labels and how to get its frames."""

    video_id: str
    patient_id: str
    label_name: str
    load: Callable[[], np.ndarray | Video]  # uint8 [T, H, W] (or a Video); raise to quarantine
    source_file: str  # path relative to the raw folder (or ``file#entry``)
    source: Path | None = None  # file/folder hashed for source_sha256 when sha256 is None
    sha256: str | None = None
    license: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    odd_name: str | None = None  # repr of a file name that is not valid UTF-8 (reported)


def text_name(name: str) -> str:
    """``name`` as valid text: the bytes of a non-UTF-8 file name (which Python decodes to lone
    surrogates) become ``\\xNN`` escapes, so manifests and reports stay valid UTF-8."""
    try:
        name.encode("utf-8")
        return name
    except UnicodeEncodeError:
        return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _raw_relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def relative_name(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` in POSIX form (the full path when it lies elsewhere), as
    valid text (:func:`text_name`)."""
    return text_name(_raw_relative(path, root))


def file_item(
    video_id: str,
    label_name: str,
    path: Path,
    root: Path,
    cfg: Mapping[str, Any],
    load: Callable[[], np.ndarray | Video] | None = None,
    **fields: Any,
) -> Item:
    """The :class:`Item` of a video file, image (T = 1) or frame folder ``path``.

    Decoded by :func:`~hico.data.video.decode` at the ``cfg`` sampling (``fps``,
    ``max_frames``, ``store_size``, ``source_fps``) unless ``load`` is given; ``source_file`` is
    relative to ``root``; ``patient_id`` is the video id unless given in ``fields``.
    """
    fps, max_frames, size, src_fps = cfg["fps"], cfg["max_frames"], cfg["store_size"], cfg.get("source_fps")
    max_pixels = cfg["max_pixels"]
    fields.setdefault("patient_id", video_id)
    raw_name = _raw_relative(path, root)
    return Item(
        video_id=video_id,
        label_name=label_name,
        load=load or (lambda: decode(path, fps, max_frames, size, src_fps, max_pixels)),
        source_file=text_name(raw_name),
        source=path if path.exists() else None,
        odd_name=repr(raw_name) if text_name(raw_name) != raw_name else None,
        **fields,
    )


@dataclass
class _Decoded:
    """One item's outcome: its frames and source sha256, or why it was quarantined."""

    frames: np.ndarray | None = None
    sha256: str = ""
    error: str | None = None
    truncated: str | None = None
    expected_frames: int | None = None


def _load_one(item: Item) -> _Decoded:
    try:
        out = item.load()
        video = out if isinstance(out, Video) else None
        frames = np.asarray(out.frames if video is not None else out)
        if frames.ndim == 2:
            frames = frames[None]
        if frames.dtype != np.uint8 or frames.ndim != 3 or frames.shape[0] == 0 or 0 in frames.shape:
            raise ValueError(f"decoded to {frames.dtype} {frames.shape}, expected uint8 [T>0, H, W]")
        sha = item.sha256 or (source_sha256(item.source) if item.source is not None else "")
        if video is None:
            return _Decoded(frames, sha)
        return _Decoded(frames, sha, truncated=video.truncated, expected_frames=video.expected_frames)
    except Exception as e:  # any decoder error quarantines the input, never the whole run
        return _Decoded(error=f"{type(e).__name__}: {e}")


def _merged_patient(ids: Sequence[str]) -> str:
    ids = sorted(ids)
    return "+".join(ids) if len(ids) <= 3 else f"{ids[0]}+{len(ids) - 1}_more"


def group_duplicates(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Merge the patients of manifest ``rows`` that share a ``source_sha256`` (the same file
    listed twice, byte-identical copies), so that the copies land in one fold; in place.

    Patients are merged transitively (a patient holding a copy of another patient's file
    becomes one group with it), named by their ids joined with ``+``. Returns one report entry
    per group of identical inputs.
    """
    by_sha: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        if r["source_sha256"]:
            by_sha.setdefault(r["source_sha256"], []).append(r)
    groups = {sha: g for sha, g in by_sha.items() if len(g) > 1}
    parent: dict[str, str] = {}

    def root(p: str) -> str:
        while parent.setdefault(p, p) != p:
            p = parent[p]
        return p

    for g in groups.values():
        for r in g[1:]:
            parent[root(r["patient_id"])] = root(g[0]["patient_id"])
    members: dict[str, list[str]] = {}
    for p in list(parent):
        members.setdefault(root(p), []).append(p)
    renamed = {p: _merged_patient(ps) for ps in members.values() if len(ps) > 1 for p in ps}
    for r in rows:
        r["patient_id"] = renamed.get(r["patient_id"], r["patient_id"])
    return [
        {"source_sha256": sha, "video_ids": [r["video_id"] for r in g], "source_files": [r["source_file"] for r in g],
         "labels": sorted({r["label_name"] for r in g}), "patient_id": g[0]["patient_id"]}
        for sha, g in sorted(groups.items(), key=lambda kv: kv[1][0]["video_id"])
    ]


def _decode_into(writer: DatasetWriter, items: Sequence[Item], cfg: Mapping[str, Any]) -> tuple[list[dict], list[dict]]:
    """Decode ``items`` (``workers`` threads) into ``writer``; the quarantined ones, with why,
    and the ones that look cut short (kept, and named)."""
    quarantined: list[dict[str, Any]] = []
    truncated: list[dict[str, Any]] = []
    with ThreadPoolExecutor(max(1, int(cfg["workers"] or 1))) as pool:
        for item, d in zip(items, pool.map(_load_one, items)):
            if d.error is not None:
                log.warning("%s: quarantined %s (%s)", writer.name, item.source_file, d.error)
                quarantined.append({"video_id": item.video_id, "source_file": item.source_file, "reason": text_name(d.error)})
                continue
            if d.truncated:
                log.warning("%s: %s looks cut short (%s)", writer.name, item.source_file, d.truncated)
                truncated.append({"video_id": item.video_id, "source_file": item.source_file, "reason": text_name(d.truncated),
                                  "kept_frames": int(d.frames.shape[0]), "expected_frames": d.expected_frames})
            writer.add_video(
                item.video_id, item.patient_id, item.label_name, d.frames,
                source_file=item.source_file, source_sha256=d.sha256, license=item.license, **item.extra,
            )
    return quarantined, truncated


def _refuse_items(name: str, listing: Listing, final: Path) -> None:
    """Errors before anything is decoded: no item, repeated ids, an input inside the output."""
    items, skipped = listing.items, listing.skipped
    if not items:
        raise PrepareError(
            f"dataset {name!r}: found nothing to prepare"
            + (f" ({len(skipped)} input(s) skipped, e.g. {skipped[0]})" if skipped else "")
            + ". Check --raw points at the downloaded or supplied data."
        )
    dup = sorted(i for i, c in Counter(it.video_id for it in items).items() if c > 1)
    if dup:
        raise ValueError(f"dataset {name!r}: the source module produced repeated video ids {dup[:5]}")
    out = final.resolve()
    for item in items:
        if item.source is not None and (item.source.resolve().is_relative_to(out) or out.is_relative_to(item.source.resolve())):
            raise OverlapError(
                f"dataset {name!r}: input {item.source} lies inside the output folder {final} "
                "(outputs must not overlap inputs). Nothing was changed; write elsewhere."
            )


def _refuse_failures(name: str, report: dict[str, Any], out_root: Path, cfg: Mapping[str, Any]) -> None:
    quarantined, n, share = report["quarantined"], report["n_candidates"], report["failure_share"]
    listing = "\n".join(f"  {q['source_file']}: {q['reason']}" for q in quarantined[:50])
    more = f"\n  ... and {len(quarantined) - 50} more" if len(quarantined) > 50 else ""
    raise PrepareError(
        f"dataset {name!r}: {len(quarantined)} of {n} inputs failed to decode "
        f"({share:.1%} > max_failure_share={cfg['max_failure_share']}):\n{listing}{more}\n"
        f"Report: {out_root / f'{name}.prepare_report.json'}. Re-download the files "
        "(delete them first), or raise max_failure_share to accept the loss."
    )


def _report(
    source: Source, listing: Listing, name: str, cfg: Mapping[str, Any], classes: list[str],
    rows: list[dict[str, Any]], quarantined: list[dict], truncated: list[dict], duplicates: list[dict],
) -> dict[str, Any]:
    """``prepare_report.json``: what was written, and every input left out, cut short or merged."""
    n = len(listing.items)
    counts = Counter(r["label_name"] for r in rows)
    return {
        "dataset": name,
        "source": source.name,
        "prepared": utc_timestamp(),
        "elapsed_s": None,
        "n_candidates": n,
        "n_videos": len(rows),
        "n_frames": int(sum(r["n_frames"] for r in rows)),
        "class_counts": {c: int(counts.get(c, 0)) for c in classes},
        "n_quarantined": len(quarantined),
        "failure_share": round(len(quarantined) / n, 4),
        "max_failure_share": cfg["max_failure_share"],
        "quarantined": quarantined,
        "n_skipped": len(listing.skipped),
        "skipped": [{k: text_name(str(v)) for k, v in d.items()} for d in listing.skipped],
        "n_truncated": len(truncated),
        "truncated": truncated,
        "non_utf8_names": [
            {"video_id": it.video_id, "source_file": it.source_file, "name": it.odd_name}
            for it in listing.items if it.odd_name
        ],
        "n_duplicate_groups": len(duplicates),
        "duplicates": duplicates,
        "sampling": {"fps": cfg["fps"], "max_frames": cfg["max_frames"], "store_size": cfg["store_size"]},
        **({"expected": dict(listing.expected)} if listing.expected else {}),
    }


def write_dataset(
    source: Source, listing: Listing, out_root: str | Path, cfg: Mapping[str, Any], name: str
) -> Path:
    """Decode the items of ``listing`` and write ``<out_root>/<name>/`` in the standard format.

    Failures are quarantined (left out, listed in ``prepare_report.json`` with the reason);
    when their share exceeds ``cfg["max_failure_share"]`` nothing is written except
    ``<out_root>/<name>.prepare_report.json`` and :class:`PrepareError` lists them.
    ``listing.skipped`` lists inputs left out on purpose (unknown label, licence filter...).
    ``listing.expected`` (e.g. published class counts) is compared in the report, never enforced.
    Identical inputs are grouped into one patient (:func:`group_duplicates`) and reported.
    No item may lie inside the dataset folder (the raw folder was checked by :func:`refuse_overlap`).
    """
    out_root = Path(out_root)
    classes = list(listing.classes or source.classes)
    _refuse_items(name, listing, out_root / name)
    t0 = time.time()
    writer = DatasetWriter(out_root, name, classes, store_size=cfg["store_size"], info={})
    try:
        quarantined, truncated = _decode_into(writer, listing.items, cfg)
        duplicates = group_duplicates(writer.rows)
        for d in duplicates:
            log.warning("%s: identical inputs %s are now one patient, %s", name, d["source_files"], d["patient_id"])
        n, rows = len(listing.items), writer.rows
        report = _report(source, listing, name, cfg, classes, rows, quarantined, truncated, duplicates)
        report["elapsed_s"] = round(time.time() - t0, 2)
        if len(quarantined) / n > float(cfg["max_failure_share"]) or not rows:
            writer.abort()
            atomic_write_json(out_root / f"{name}.prepare_report.json", report)
            _refuse_failures(name, report, out_root, cfg)
        digests = sorted(f"{r['source_file']}\t{r['source_sha256']}" for r in rows)
        writer.info.update(
            {
                "source": source.name,
                "spec": source.spec.strip(),
                "citation": source.citation,
                "license": source.license,
                "homepage": source.homepage,
                **listing.info,
                "sampling": report["sampling"],
                "inputs_sha256": hashlib.sha256("\n".join(digests).encode()).hexdigest(),
                "n_quarantined": len(quarantined),
            }
        )
        atomic_write_json(writer.tmp_dir / "prepare_report.json", report)
        final = writer.finish()
        (out_root / f"{name}.prepare_report.json").unlink(missing_ok=True)  # a stale failure report
        log.info("%s: wrote %d videos (%d frames) to %s", name, report["n_videos"], report["n_frames"], final)
        return final
    except BaseException:
        writer.abort()
        raise

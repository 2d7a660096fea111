"""Fetch remote files with retries, resume and a checksum for every file; extract archives safely.

Every :class:`RemoteFile` carries one checksum:

- ``sha256:<hex>`` or ``md5:<hex>`` where the publisher states one;
- ``gitsha1:<hex>`` for files served from a git repository: the git blob SHA-1,
  ``sha1(b"blob %d\\0" % len(data) + data)`` (what ``git ls-tree`` prints);
- ``lock``: nothing is published, so the sha256 of the first download is recorded in a tracked
  lock file (``hico/data/sources/locks/<source>.json``) and every later download and every
  existing copy is checked against it.

Before any file is trusted (above all a first download, which nothing else checks) its content
is checked (:func:`check_content`): an HTML page (an error or login page served with status
200) is refused, so is a file whose magic bytes are not of the kinds the source serves
(``RemoteFile.content``, e.g. ``("zip",)``; a zip cut short lacks its central directory), and
a transfer must deliver the whole length its server declared (Content-Length / Content-Range).

:func:`fetch` drives :mod:`pooch` (retries with back-off, download into a temporary file that is
moved into place only once complete) with a downloader that resumes an interrupted transfer from
``<file>.part`` by an HTTP ``Range`` request, or through :mod:`gdown` for Google Drive. A partial
file is never used: it becomes the target only after its checksum matches; a complete download
with a wrong checksum is deleted. An existing target is re-verified before it is trusted.

:func:`safe_extract` unpacks zip/tar archives into a fresh folder, refusing any member that
would land outside it (absolute paths, ``..``, links, devices) and any archive that would expand
beyond its budget (total bytes, expansion ratio). No function here unpickles.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import stat
import tarfile
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any

from hico.errors import HicoError
from hico.io import atomic_write_json

log = logging.getLogger(__name__)

CHUNK = 1 << 20
NET_CHUNK = 1 << 16  # small reads: a broken connection loses at most this much
CHECKSUM_KINDS = ("sha256", "md5", "gitsha1")


class DownloadError(HicoError, RuntimeError):
    """A file could not be fetched after all retries."""


class ChecksumError(HicoError, ValueError):
    """A file's content does not match its expected checksum (pooch retries on ValueError)."""


class UnexpectedContentError(ChecksumError):
    """A download that is not the file asked for: an HTML page, other magic bytes, a cut-short archive."""


class UnsafeArchiveError(HicoError, ValueError):
    """An archive member would be written outside the extraction folder, or is a link/device."""


@dataclass(frozen=True)
class RemoteFile:
    """One file to fetch: where from, where to (relative to the raw folder), how to verify it.

    ``checksum`` is ``"sha256:<hex>"``, ``"md5:<hex>"``, ``"gitsha1:<hex>"`` or ``"lock"``.
    ``gdrive_id`` makes :func:`fetch` use gdown (Google Drive's confirm page, cookies) unless
    ``url`` was redirected elsewhere (tests, mirrors). ``content``: the kinds of file the
    source serves (:data:`CONTENT_KINDS`; empty: any but HTML).
    """

    url: str
    path: str
    checksum: str = "lock"
    size: int | None = None
    gdrive_id: str | None = None
    content: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        p = PurePosixPath(self.path)
        if p.is_absolute() or ".." in p.parts or not self.path:
            raise ValueError(f"RemoteFile.path must be relative without '..', got {self.path!r}")
        if self.checksum != "lock":
            kind, _, value = self.checksum.partition(":")
            if kind not in CHECKSUM_KINDS or not value:
                raise ValueError(
                    f"RemoteFile {self.path}: checksum {self.checksum!r} is not "
                    f"'<kind>:<hex>' with kind in {CHECKSUM_KINDS}, nor 'lock'"
                )
        unknown = set(self.content) - set(CONTENT_KINDS)
        if unknown:
            raise ValueError(f"RemoteFile {self.path}: content kinds {sorted(unknown)} not in {CONTENT_KINDS}")


# --------------------------------------------------------------------------------------------
# checksums


def _hash_file(path: Path, h: Any) -> str:
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def file_sha256(path: str | Path) -> str:
    return _hash_file(Path(path), hashlib.sha256())


def git_blob_sha1(path: str | Path) -> str:
    """The git blob id of a file: ``sha1(b"blob <size>\\0" + content)``."""
    path = Path(path)
    h = hashlib.sha1()
    h.update(b"blob %d\0" % path.stat().st_size)
    return _hash_file(path, h)


def file_checksum(path: str | Path, kind: str) -> str:
    if kind == "sha256":
        return file_sha256(path)
    if kind == "md5":
        return _hash_file(Path(path), hashlib.md5())
    if kind == "gitsha1":
        return git_blob_sha1(path)
    raise ValueError(f"unknown checksum kind {kind!r}; expected one of {CHECKSUM_KINDS}")


def verify_file(path: str | Path, checksum: str, size: int | None = None) -> str | None:
    """None if ``path`` matches ``checksum`` (``kind:hex``) and ``size``; else why not."""
    path = Path(path)
    if not path.is_file():
        return f"{path} does not exist"
    actual_size = path.stat().st_size
    if size is not None and actual_size != size:
        return f"{path} has {actual_size} bytes, expected {size}"
    kind, _, expected = checksum.partition(":")
    actual = file_checksum(path, kind)
    if actual.lower() != expected.lower():
        return f"{path} has {kind} {actual}, expected {expected}"
    return None


# --------------------------------------------------------------------------------------------
# content: what a file is, from its bytes

#: magic bytes of the kinds of file sources serve: ``(offset, bytes)`` alternatives
MAGIC: dict[str, tuple[tuple[int, bytes], ...]] = {
    "zip": ((0, b"PK\x03\x04"), (0, b"PK\x05\x06")),
    "gzip": ((0, b"\x1f\x8b"),),
    "bz2": ((0, b"BZh"),),
    "xz": ((0, b"\xfd7zXZ\x00"),),
    "tar": ((257, b"ustar"),),
    "rar": ((0, b"Rar!\x1a\x07"),),
    "7z": ((0, b"7z\xbc\xaf\x27\x1c"),),
    "mat": ((0, b"MATLAB 5.0 MAT-file"), (0, b"MATLAB 7.3 MAT-file")),
}
CONTENT_KINDS = tuple(MAGIC)
HTML_TYPES = ("text/html", "application/xhtml+xml")


def content_kind(path: str | Path) -> str | None:
    """The kind of ``path`` from its first bytes (a key of :data:`MAGIC`, ``"html"``, or None)."""
    with open(path, "rb") as fh:
        head = fh.read(1024)
    for kind, signatures in MAGIC.items():
        if any(head[off:off + len(sig)] == sig for off, sig in signatures):
            return kind
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if text.startswith((b"<!doctype html", b"<html", b"<head", b"<body")):
        return "html"
    return None


def check_content(path: str | Path, kinds: Sequence[str] = (), content_type: str | None = None, what: str = "") -> None:
    """Raise :class:`UnexpectedContentError` if ``path`` is an HTML page (by its bytes or the
    server's ``content_type``), not one of ``kinds`` (empty: any), or a zip without its end."""
    path = Path(path)
    what = what or str(path)
    kind = content_kind(path)
    media = (content_type or "").split(";")[0].strip().lower()
    if kind == "html" or media in HTML_TYPES:
        raise UnexpectedContentError(
            f"{what}: the server sent an HTML page ({media or 'by its bytes'}), not the file: an error, "
            "login or quota page. Nothing was recorded; try again later, or fetch the file by hand."
        )
    if kinds and kind not in kinds:
        head = path.read_bytes()[:16]
        raise UnexpectedContentError(
            f"{what}: expected {' or '.join(kinds)} content, got {kind or 'other bytes'} (starts {head!r}). "
            "Nothing was recorded; check the URL or fetch the file by hand."
        )
    if kind == "zip" and not zipfile.is_zipfile(path):
        raise UnexpectedContentError(
            f"{what}: a zip archive without its central directory ({path.stat().st_size} bytes): the "
            "transfer was cut short. Nothing was recorded; download it again."
        )


# --------------------------------------------------------------------------------------------
# lock file: checksums recorded at first download, checked ever after


class LockFile:
    """A tracked JSON file holding, per relative path, the checksums recorded at first download.

    ``{"source": ..., "files": {"<path>": {"sha256": ..., "size": ..., "url": ..., "recorded": ...}}}``
    plus whatever a source keeps there (e.g. the git ref a file list was resolved at).
    Entries may carry ``sha256``, ``md5`` and/or ``git_blob_sha1``; all present are checked.
    """

    def __init__(self, path: str | Path, source: str = ""):
        self.path = Path(path)
        self.source = source
        self._mutex = threading.Lock()
        if self.path.exists():
            try:
                self.data: dict[str, Any] = json.loads(self.path.read_text())
            except json.JSONDecodeError as e:
                raise ChecksumError(f"lock file {self.path} is not valid JSON ({e}); fix or delete it") from e
        else:
            self.data = {"source": source, "files": {}}
        self.data.setdefault("files", {})

    @property
    def files(self) -> dict[str, dict[str, Any]]:
        return self.data["files"]

    def entry(self, rel: str) -> dict[str, Any] | None:
        return self.files.get(rel)

    def checksums(self, rel: str) -> list[tuple[str, str]]:
        """``[(kind, hex)]`` recorded for ``rel`` (kind in sha256/md5/gitsha1)."""
        e = self.entry(rel) or {}
        out = []
        for key, kind in (("sha256", "sha256"), ("md5", "md5"), ("git_blob_sha1", "gitsha1")):
            if e.get(key):
                out.append((kind, str(e[key])))
        return out

    def update(self, rel: str, **fields: Any) -> None:
        with self._mutex:
            self.files.setdefault(rel, {}).update({k: v for k, v in fields.items() if v is not None})
            self.save()

    def save(self) -> None:
        self.data["files"] = dict(sorted(self.files.items()))
        atomic_write_json(self.path, self.data)


# --------------------------------------------------------------------------------------------
# downloaders (pooch's Downloader protocol: downloader(url, output_file, pooch))


def utc_timestamp() -> str:
    """Now, in UTC, to the second, ISO 8601 (the ``recorded`` / ``prepared`` time stamps)."""
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


def _progress_bar(enabled: bool, total: int | None, initial: int, desc: str):
    from hico.progress import progress

    return progress(total=total, initial=initial, unit="B", unit_scale=True, unit_divisor=1024,
                    desc=desc[-40:], enabled=enabled)


class ResumableHTTPDownloader:
    """Stream ``url`` into ``part``, resuming from its current size with ``Range: bytes=N-``.

    A 206 answer is appended; a 200 answer (no range support) restarts the file; a 416 answer
    (the part is already as long as, or longer than, the file) discards the part. The bytes are
    asked for as stored (``Accept-Encoding: identity``), so offsets and lengths count file
    bytes. A part shorter than the length the server declared (Content-Length, or the total of
    Content-Range) raises (requests' ChunkedEncodingError), leaving ``part`` to resume from on
    the next try. Once complete, ``verify(part, content_type)`` runs; the verified file is then
    moved to pooch's temporary output, which pooch moves into place.
    """

    def __init__(
        self,
        part: Path,
        verify: Callable[[Path, str | None], None],
        progress: bool = True,
        timeout: float = 60.0,
        headers: dict[str, str] | None = None,
    ):
        self.part = part
        self.verify = verify
        self.progress = progress
        self.timeout = timeout
        self.headers = dict(headers or {})

    def __call__(self, url: str, output_file: str, pooch: Any = None, check_only: bool = False) -> Any:
        import requests

        if check_only:
            r = requests.head(url, timeout=self.timeout, allow_redirects=True)
            return r.status_code == 200
        self.part.parent.mkdir(parents=True, exist_ok=True)
        offset = self.part.stat().st_size if self.part.exists() else 0
        headers = {"Accept-Encoding": "identity", **self.headers}
        if offset:
            headers["Range"] = f"bytes={offset}-"
        with requests.get(url, headers=headers, stream=True, timeout=self.timeout) as r:
            if r.status_code == 416:  # our part is complete or corrupt; start over next try
                self.part.unlink(missing_ok=True)
                raise ChecksumError(f"{url}: server refused range {offset}-; partial file discarded")
            r.raise_for_status()
            if offset and r.status_code == 206 and _range_start(r) == offset:
                mode = "ab"
            else:
                mode, offset = "wb", 0
            total = _declared_total(r, offset)
            with open(self.part, mode) as fh, _progress_bar(self.progress, total, offset, Path(self.part.name).stem) as bar:
                for block in r.iter_content(NET_CHUNK):
                    fh.write(block)
                    bar.update(len(block))
            size = self.part.stat().st_size
            if total is not None and size != total:
                if size > total:  # more than declared: not a resumable state
                    self.part.unlink(missing_ok=True)
                raise requests.exceptions.ChunkedEncodingError(f"{url}: got {size} of {total} bytes; will resume")
            content_type = r.headers.get("Content-Type")
        self.verify(self.part, content_type)
        os.replace(self.part, output_file)


def _range_start(r: Any) -> int | None:
    """The first byte of a 206 answer (``Content-Range: bytes <start>-<end>/<total>``)."""
    spec = r.headers.get("Content-Range", "")
    try:
        return int(spec.split()[1].split("-")[0])
    except (IndexError, ValueError):
        return None


def _declared_total(r: Any, offset: int) -> int | None:
    """The whole file's length as the server declared it (None: not declared)."""
    if r.status_code == 206:
        total = r.headers.get("Content-Range", "").rpartition("/")[2]
        if total.isdigit():
            return int(total)
    length = r.headers.get("Content-Length")
    return offset + int(length) if length and length.isdigit() else None


class GDriveDownloader:
    """Google Drive through gdown (confirm page for large files, resume from its own .part)."""

    def __init__(self, file_id: str, staging: Path, verify: Callable[[Path, str | None], None], progress: bool = True, timeout: float = 60.0):
        self.file_id = file_id
        self.staging = staging
        self.verify = verify
        self.progress = progress
        self.timeout = timeout

    def __call__(self, url: str, output_file: str, pooch: Any = None, check_only: bool = False) -> Any:
        import gdown
        import requests

        self.staging.parent.mkdir(parents=True, exist_ok=True)
        try:
            gdown.download(
                id=self.file_id, output=str(self.staging), quiet=not self.progress,
                resume=True, timeout=self.timeout,
            )
        except Exception as e:  # gdown raises its own errors; make pooch retry them
            raise requests.exceptions.RequestException(f"Google Drive file {self.file_id}: {e}") from e
        try:
            self.verify(self.staging, None)
        except ChecksumError:
            self.staging.unlink(missing_ok=True)
            raise
        os.replace(self.staging, output_file)


# --------------------------------------------------------------------------------------------
# fetch


def _expected(remote: RemoteFile, lock: LockFile | None) -> list[tuple[str, str]]:
    if remote.checksum != "lock":
        kind, _, value = remote.checksum.partition(":")
        return [(kind, value)]
    if lock is None:
        raise ValueError(
            f"{remote.path}: checksum 'lock' needs a lock file (pass lock=LockFile(...))"
        )
    return lock.checksums(remote.path)


def _check(path: Path, expected: list[tuple[str, str]], size: int | None, what: str) -> None:
    for kind, value in expected:
        why = verify_file(path, f"{kind}:{value}", size)
        if why:
            path.unlink(missing_ok=True)
            raise ChecksumError(f"{what}: {why}. The file was deleted.")
    if not expected and size is not None and path.stat().st_size != size:
        n = path.stat().st_size
        path.unlink(missing_ok=True)
        raise ChecksumError(f"{what}: {n} bytes, expected {size}. The file was deleted.")


def fetch(
    remote: RemoteFile,
    raw_dir: str | Path,
    lock: LockFile | None = None,
    retries: int = 3,
    progress: bool = True,
    timeout: float = 60.0,
) -> Path:
    """Download ``remote`` to ``raw_dir / remote.path`` (or verify the copy already there).

    Retries ``retries`` times with pooch's back-off (1 s, 2 s, ... up to 10 s), resuming a
    broken transfer. Raises :class:`ChecksumError` if the final download does not match, and
    :class:`DownloadError` when the server never delivers.
    """
    raw_dir = Path(raw_dir)
    target = raw_dir / remote.path
    expected = _expected(remote, lock)
    size = remote.size if remote.size is not None else _recorded_size(remote, lock)
    first_time = remote.checksum == "lock" and not expected
    what = f"{remote.path} (from {remote.url})"
    if target.exists() and _existing_copy_ok(target, remote, expected, size, lock, what):
        return target

    def verify(p: Path, content_type: str | None) -> None:
        try:
            _check(p, expected, size, what)
            if first_time:  # no checksum vouches for it: at least it must look like the file
                check_content(p, remote.content, content_type, what)
        except ChecksumError as e:
            p.unlink(missing_ok=True)
            if remote.checksum == "lock" and not first_time:
                raise type(e)(
                    f"{e} Its sha256 was recorded in {lock.path if lock else 'the lock file'} at "
                    "first download; if the publisher really changed the file, delete that entry "
                    "and download again."
                ) from None
            raise

    _download(remote, raw_dir, target, verify, retries, progress, timeout)
    if first_time and lock is not None:
        _record(lock, remote, target)
        log.warning(
            "%s: no published checksum; recorded its sha256 in %s -- commit that file", remote.path, lock.path
        )
    return target


def _download(
    remote: RemoteFile, raw_dir: Path, target: Path, verify: Callable[[Path, str | None], None],
    retries: int, progress: bool, timeout: float,
) -> None:
    """One fetch through pooch (retries with back-off) with our resuming or Drive downloader."""
    import pooch
    import requests

    target.parent.mkdir(parents=True, exist_ok=True)  # here, not in pooch: threads race on makedirs
    part = target.with_name(target.name + ".part")
    if remote.gdrive_id and "drive.google.com" in remote.url:
        downloader: Any = GDriveDownloader(remote.gdrive_id, target.with_name(target.name + ".gdown"), verify, progress, timeout)
    else:
        downloader = ResumableHTTPDownloader(part, verify, progress, timeout)
    registry = pooch.create(
        path=raw_dir, base_url="", registry={remote.path: None},
        urls={remote.path: remote.url}, retry_if_failed=retries,
    )
    pooch_log = pooch.get_logger()
    old_level = pooch_log.level
    pooch_log.setLevel(logging.WARNING)
    try:
        registry.fetch(remote.path, downloader=downloader)
    except ChecksumError:
        part.unlink(missing_ok=True)
        raise
    except requests.exceptions.RequestException as e:
        raise DownloadError(
            f"could not download {remote.url} after {retries + 1} attempts ({type(e).__name__}: {e}). "
            f"Check the network, or fetch it by hand into {target}."
        ) from e
    finally:
        pooch_log.setLevel(old_level)


def _recorded_size(remote: RemoteFile, lock: LockFile | None) -> int | None:
    if remote.checksum != "lock" or lock is None:
        return None
    size = (lock.entry(remote.path) or {}).get("size")
    return int(size) if size is not None else None


def _record(lock: LockFile, remote: RemoteFile, target: Path) -> None:
    lock.update(remote.path, sha256=file_sha256(target), size=target.stat().st_size, url=remote.url, recorded=utc_timestamp())


def _existing_copy_ok(
    target: Path, remote: RemoteFile, expected: list[tuple[str, str]], size: int | None, lock: LockFile | None, what: str
) -> bool:
    """Whether the copy already at ``target`` is the file (recording it if it is the first);
    a copy that is not is deleted, to be downloaded again."""
    why = None
    for kind, value in expected:
        why = why or verify_file(target, f"{kind}:{value}", size)
    if not expected:
        if size is not None and target.stat().st_size != size:
            why = f"{target} has {target.stat().st_size} bytes, expected {size}"
        try:
            check_content(target, remote.content, what=str(target))
        except UnexpectedContentError as e:
            why = why or str(e)
    if why is None:
        if remote.checksum == "lock" and not expected and lock is not None:
            log.warning("%s: recording sha256 of the existing copy in %s", target, lock.path)
            _record(lock, remote, target)
        return True
    log.warning("%s does not match its checksum (%s); downloading it again", target, why)
    target.unlink()
    return False


def fetch_all(
    remotes: Sequence[RemoteFile],
    raw_dir: str | Path,
    lock: LockFile | None = None,
    retries: int = 3,
    progress: bool = True,
    timeout: float = 60.0,
    workers: int = 1,
) -> list[Path]:
    """:func:`fetch` every file (``workers`` at a time); one failure stops the rest and is raised."""
    from hico.progress import progress as progress_bar

    if workers <= 1:
        return [
            fetch(r, raw_dir, lock, retries, progress, timeout)
            for r in progress_bar(remotes, desc="files", unit="file", enabled=progress and len(remotes) >= 2)
        ]
    with ThreadPoolExecutor(workers) as pool, \
            progress_bar(total=len(remotes), desc="files", unit="file", enabled=progress) as bar:
        futures = [pool.submit(fetch, r, raw_dir, lock, retries, False, timeout) for r in remotes]
        out = []
        for f in futures:
            out.append(f.result())
            bar.update(1)
    return out


def github_tree(repo: str, ref: str, api_url: str = "https://api.github.com", timeout: float = 60.0) -> dict[str, dict[str, Any]]:
    """``{path: {"git_blob_sha1", "size"}}`` of every file of ``repo`` at ``ref`` (one API call)."""
    import requests

    url = f"{api_url.rstrip('/')}/repos/{repo}/git/trees/{ref}?recursive=1"
    headers = {"Accept": "application/vnd.github+json"}
    if os.environ.get("GITHUB_TOKEN"):
        headers["Authorization"] = f"Bearer {os.environ['GITHUB_TOKEN']}"
    last: Exception | None = None
    for attempt in range(3):
        try:
            r = requests.get(url, headers=headers, timeout=timeout)
            r.raise_for_status()
            body = r.json()
            break
        except (requests.exceptions.RequestException, ValueError) as e:
            last = e
            time.sleep(min(attempt + 1, 10))
    else:
        raise DownloadError(
            f"could not list {repo}@{ref} from {url} ({last}). GitHub allows 60 anonymous API calls "
            "an hour; set GITHUB_TOKEN, or retry later."
        )
    if body.get("truncated"):
        raise DownloadError(f"{url}: GitHub truncated the tree listing; cannot list every file")
    return {
        e["path"]: {"git_blob_sha1": e["sha"], "size": e.get("size")}
        for e in body.get("tree", [])
        if e.get("type") == "blob"
    }


# --------------------------------------------------------------------------------------------
# safe extraction


def _member_target(dest: Path, name: str) -> Path:
    norm = name.replace("\\", "/")
    p = PurePosixPath(norm)
    if p.is_absolute() or (len(norm) > 1 and norm[1] == ":") or ".." in p.parts:
        raise UnsafeArchiveError(f"archive member {name!r} would be written outside {dest}")
    target = (dest / Path(*[part for part in p.parts if part not in ("", ".")])).resolve()
    if not target.is_relative_to(dest.resolve()):
        raise UnsafeArchiveError(f"archive member {name!r} resolves outside {dest}")
    return target


def _check_zip(zf: zipfile.ZipFile, dest: Path) -> None:
    for info in zf.infolist():
        _member_target(dest, info.filename)
        mode = info.external_attr >> 16
        if mode and stat.S_ISLNK(mode):
            raise UnsafeArchiveError(f"archive member {info.filename!r} is a symbolic link; refused")


def _check_tar(tf: tarfile.TarFile, dest: Path) -> None:
    for m in tf.getmembers():
        _member_target(dest, m.name)
        if m.issym() or m.islnk():
            raise UnsafeArchiveError(f"archive member {m.name!r} is a link ({m.linkname!r}); refused")
        if not (m.isfile() or m.isdir()):
            raise UnsafeArchiveError(f"archive member {m.name!r} is a device or fifo; refused")


def archive_kind(path: str | Path) -> str | None:
    """``"zip"``, ``"tar"`` or None, from the file's content (not its name)."""
    path = Path(path)
    if zipfile.is_zipfile(path):
        return "zip"
    try:
        if tarfile.is_tarfile(path):
            return "tar"
    except OSError:
        pass
    return None


#: default extraction budgets: total uncompressed bytes, and uncompressed / archive bytes
#: (images and video barely compress; a ratio of 100 is text at best, 1000 a bomb)
DEFAULT_MAX_ARCHIVE_BYTES = 32 * 2**30
DEFAULT_MAX_ARCHIVE_RATIO = 100.0


class ArchiveBudgetError(UnsafeArchiveError):
    """An archive that would expand beyond the extraction budget (a decompression bomb)."""


def _check_budget(archive: Path, total: int, max_bytes: int | None, max_ratio: float | None) -> None:
    size = max(archive.stat().st_size, 1)
    over_bytes = max_bytes is not None and total > max_bytes
    over_ratio = max_ratio is not None and total / size > max_ratio
    if over_bytes or over_ratio:
        raise ArchiveBudgetError(
            f"{archive}: {size:,} bytes would expand to {total:,} bytes (ratio {total / size:,.0f}), beyond "
            f"the extraction budget (max_archive_bytes={max_bytes}, max_archive_ratio={max_ratio}); "
            "nothing was extracted. Raise those source options if the archive is genuine."
        )


def _extract_zip(zf: zipfile.ZipFile, tmp: Path, skip: Callable[[str], bool] | None, max_bytes: int | None) -> None:
    written = 0
    for info in zf.infolist():
        if skip and skip(info.filename):
            continue
        target = _member_target(tmp, info.filename)
        if info.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        with zf.open(info) as src, open(target, "wb") as dst:
            for block in iter(lambda: src.read(CHUNK), b""):
                written += len(block)
                if max_bytes is not None and written > max_bytes:  # declared sizes can lie
                    raise ArchiveBudgetError(f"{zf.filename}: expands beyond max_archive_bytes={max_bytes}")
                dst.write(block)


def safe_extract(
    archive: str | Path,
    dest: str | Path,
    skip: Callable[[str], bool] | None = None,
    max_bytes: int | None = DEFAULT_MAX_ARCHIVE_BYTES,
    max_ratio: float | None = DEFAULT_MAX_ARCHIVE_RATIO,
) -> Path:
    """Extract a zip or tar archive into ``dest`` (created; replaced if from another archive).

    Every member is checked first; one unsafe member refuses the whole archive with
    :class:`UnsafeArchiveError` and nothing is written, and so does a total uncompressed size
    above ``max_bytes`` or above ``max_ratio`` times the archive's size
    (:class:`ArchiveBudgetError`; None: no limit). Extraction goes to a temporary sibling
    folder renamed into place, with ``.extracted.json`` naming the archive's sha256, so a
    finished ``dest`` from the same archive is reused as is. ``skip(name)`` drops members
    (e.g. ``__MACOSX/``).
    """
    archive, dest = Path(archive), Path(dest)
    digest = file_sha256(archive)
    marker = dest / ".extracted.json"
    if marker.exists():
        try:
            if json.loads(marker.read_text()).get("sha256") == digest:
                return dest
        except json.JSONDecodeError:
            pass
    kind = archive_kind(archive)
    if kind is None:
        raise UnsafeArchiveError(f"{archive} is neither a zip nor a tar archive; cannot extract it")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.partial-"))
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(tmp, 0o777 & ~mask)  # mkdtemp's 0700 would lock out the group of a shared data root
    try:
        if kind == "zip":
            with zipfile.ZipFile(archive) as zf:
                _check_zip(zf, tmp)
                sizes = [i.file_size for i in zf.infolist() if not (skip and skip(i.filename))]
                _check_budget(archive, sum(sizes), max_bytes, max_ratio)
                _extract_zip(zf, tmp, skip, max_bytes)
        else:
            with tarfile.open(archive) as tf:
                _check_tar(tf, tmp)
                members = [m for m in tf.getmembers() if not (skip and skip(m.name))]
                _check_budget(archive, sum(m.size for m in members if m.isfile()), max_bytes, max_ratio)
                kwargs = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
                tf.extractall(tmp, members=members, **kwargs)
        atomic_write_json(tmp / ".extracted.json", {"archive": archive.name, "sha256": digest, "extracted": utc_timestamp()})
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def macos_junk(name: str) -> bool:
    """Archive members that are Finder metadata, not data."""
    parts = PurePosixPath(name.replace("\\", "/")).parts
    return any(p == "__MACOSX" or p.startswith("._") or p == ".DS_Store" for p in parts)


def iter_files(root: str | Path, suffixes: Iterable[str] | None = None) -> list[Path]:
    """Files under ``root`` (sorted), skipping hidden entries and download leftovers."""
    root = Path(root)
    sufs = {s.lower() for s in suffixes} if suffixes else None
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d != "__MACOSX")
        for f in sorted(filenames):
            if f.startswith(".") or f.endswith((".part", ".gdown")):
                continue
            p = Path(dirpath) / f
            if sufs is None or p.suffix.lower() in sufs:
                out.append(p)
    return out

"""Downloads against a local HTTP server: checksums, resume, retries, lock files, safe extraction."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import tarfile
import zipfile
from pathlib import Path

import pytest

from hico.data.download import (
    ChecksumError,
    DownloadError,
    LockFile,
    RemoteFile,
    UnsafeArchiveError,
    fetch,
    fetch_all,
    git_blob_sha1,
    github_tree,
    safe_extract,
    verify_file,
)

try:
    from fixtures_http import git_sha, http_server, md5, sha256, zip_bytes  # noqa: F401
except ImportError:  # tests/ imported as a package
    from tests.fixtures_http import git_sha, http_server, md5, sha256, zip_bytes  # noqa: F401

DATA = bytes(range(256)) * 4096  # 1 MiB, not compressible by accident
FAST = {"retries": 2, "progress": False, "timeout": 10}


@pytest.fixture(autouse=True)
def sleeps(monkeypatch):
    """Record pooch's back-off waits instead of sleeping through them."""
    import types

    import pooch.core

    waited: list[float] = []
    monkeypatch.setattr(pooch.core, "time", types.SimpleNamespace(sleep=waited.append))
    return waited


# ---------------------------------------------------------------------------- checksums


def test_git_blob_sha1_matches_git(tmp_path):
    p = tmp_path / "hello.txt"
    p.write_bytes(b"hello\n")
    assert git_blob_sha1(p) == "ce013625030ba8dba906f756967f9e9ca394464a"  # `git hash-object`
    if shutil.which("git"):
        q = tmp_path / "data.bin"
        q.write_bytes(DATA)
        out = subprocess.run(["git", "hash-object", str(q)], capture_output=True, text=True, check=True)
        assert git_blob_sha1(q) == out.stdout.strip()


def test_verify_file_reports_size_and_hash(tmp_path):
    p = tmp_path / "f"
    p.write_bytes(b"abc")
    assert verify_file(p, f"sha256:{sha256(b'abc')}", 3) is None
    assert verify_file(p, f"md5:{md5(b'abc')}") is None
    assert "bytes" in verify_file(p, f"sha256:{sha256(b'abc')}", 4)
    assert "expected" in verify_file(p, "gitsha1:" + "0" * 40)


def test_remote_file_rejects_bad_paths_and_checksums():
    with pytest.raises(ValueError):
        RemoteFile("http://x/a", "../a", "lock")
    with pytest.raises(ValueError):
        RemoteFile("http://x/a", "/abs", "lock")
    with pytest.raises(ValueError):
        RemoteFile("http://x/a", "a", "crc32:123")


# ---------------------------------------------------------------------------- fetch


@pytest.mark.parametrize("kind", ["sha256", "md5", "gitsha1"])
def test_fetch_verifies_and_reuses(http_server, tmp_path, kind):
    url = http_server.add("d/file.bin", DATA)
    value = {"sha256": sha256, "md5": md5, "gitsha1": git_sha}[kind](DATA)
    rf = RemoteFile(url, "sub/file.bin", f"{kind}:{value}", size=len(DATA))
    path = fetch(rf, tmp_path, **FAST)
    assert path.read_bytes() == DATA
    n = len(http_server.requests)
    assert fetch(rf, tmp_path, **FAST) == path  # verified copy: no new request
    assert len(http_server.requests) == n
    assert not list(tmp_path.rglob("*.part"))


def test_truncated_response_resumes_with_range(http_server, tmp_path):
    url = http_server.add("big.bin", DATA)
    http_server.break_next("big.bin", at=300_000)
    rf = RemoteFile(url, "big.bin", f"gitsha1:{git_sha(DATA)}")
    path = fetch(rf, tmp_path, **FAST)
    assert path.read_bytes() == DATA
    reqs = http_server.requests_for("big.bin")
    assert len(reqs) == 2 and reqs[0]["truncated"]
    start = int(reqs[1]["range"].split("=")[1].rstrip("-"))
    assert 200_000 < start <= 300_000  # resumed where the broken answer stopped, not restarted
    assert not (tmp_path / "big.bin.part").exists()


def test_resume_from_a_leftover_part_file(http_server, tmp_path):
    url = http_server.add("f.bin", DATA)
    (tmp_path / "f.bin.part").write_bytes(DATA[:1000])
    fetch(RemoteFile(url, "f.bin", f"sha256:{sha256(DATA)}"), tmp_path, **FAST)
    assert http_server.requests_for("f.bin")[0]["range"] == "bytes=1000-"
    assert (tmp_path / "f.bin").read_bytes() == DATA


def test_corrupt_part_file_is_discarded_never_used(http_server, tmp_path):
    url = http_server.add("f.bin", DATA)
    (tmp_path / "f.bin.part").write_bytes(b"\xff" * 5000)  # wrong bytes: resuming gives a bad file
    path = fetch(RemoteFile(url, "f.bin", f"sha256:{sha256(DATA)}"), tmp_path, **FAST)
    assert path.read_bytes() == DATA
    reqs = http_server.requests_for("f.bin")
    assert reqs[0]["range"] == "bytes=5000-" and reqs[-1]["range"] is None  # then started over


def test_server_without_range_support_restarts(http_server, tmp_path):
    url = http_server.add("f.bin", DATA)
    http_server.ignore_range = True
    http_server.break_next("f.bin", at=1234)
    path = fetch(RemoteFile(url, "f.bin", f"sha256:{sha256(DATA)}"), tmp_path, **FAST)
    assert path.read_bytes() == DATA


def test_part_longer_than_file_gets_416_and_restarts(http_server, tmp_path):
    url = http_server.add("f.bin", DATA[:100])
    (tmp_path / "f.bin.part").write_bytes(b"x" * 500)
    path = fetch(RemoteFile(url, "f.bin", f"sha256:{sha256(DATA[:100])}"), tmp_path, **FAST)
    assert path.read_bytes() == DATA[:100]


def test_wrong_checksum_fails_after_retries_with_backoff(http_server, tmp_path, sleeps):
    url = http_server.add("f.bin", DATA)
    rf = RemoteFile(url, "f.bin", "sha256:" + "0" * 64)
    with pytest.raises(ChecksumError, match="f.bin"):
        fetch(rf, tmp_path, retries=3, progress=False, timeout=10)
    assert not (tmp_path / "f.bin").exists()
    assert not (tmp_path / "f.bin.part").exists()
    assert len(http_server.requests_for("f.bin")) == 4  # retried 3 times, full download each time
    assert sleeps == [1, 2, 3]  # growing back-off between attempts


def test_existing_copy_with_wrong_checksum_is_downloaded_again(http_server, tmp_path):
    url = http_server.add("f.bin", DATA)
    (tmp_path / "f.bin").write_bytes(b"stale")
    path = fetch(RemoteFile(url, "f.bin", f"gitsha1:{git_sha(DATA)}"), tmp_path, **FAST)
    assert path.read_bytes() == DATA


def test_missing_file_raises_download_error(http_server, tmp_path):
    with pytest.raises(DownloadError, match="404|not found|Not Found"):
        fetch(RemoteFile(http_server.url("nope"), "nope", "lock"), tmp_path, LockFile(tmp_path / "l.json"), retries=0, progress=False)


def test_google_drive_goes_through_gdown(tmp_path, monkeypatch):
    import gdown

    calls = []

    def fake_download(id=None, output=None, quiet=False, resume=False, timeout=None, **kw):
        calls.append({"id": id, "resume": resume})
        Path(output).write_bytes(DATA)
        return output

    monkeypatch.setattr(gdown, "download", fake_download)
    rf = RemoteFile("https://drive.google.com/uc?id=abc", "drive.zip", f"sha256:{sha256(DATA)}", gdrive_id="abc")
    assert fetch(rf, tmp_path, **FAST).read_bytes() == DATA
    assert calls == [{"id": "abc", "resume": True}]
    assert not list(tmp_path.glob("*.gdown"))


# ---------------------------------------------------------------------------- lock files


def test_lock_records_first_download_and_checks_ever_after(http_server, tmp_path):
    url = http_server.add("a.zip", DATA)
    lock_path = tmp_path / "locks" / "src.json"
    raw = tmp_path / "raw"
    rf = RemoteFile(url, "a.zip", "lock")
    fetch(rf, raw, LockFile(lock_path, "src"), **FAST)
    entry = json.loads(lock_path.read_text())["files"]["a.zip"]
    assert entry["sha256"] == sha256(DATA) and entry["size"] == len(DATA) and entry["url"] == url

    # the publisher's file changes: a fresh download is refused
    http_server.add("a.zip", DATA[::-1])
    (raw / "a.zip").unlink()
    with pytest.raises(ChecksumError, match="recorded"):
        fetch(rf, raw, LockFile(lock_path, "src"), retries=0, progress=False)
    assert not (raw / "a.zip").exists()

    # a local copy that was tampered with is replaced from the (good) server
    http_server.add("a.zip", DATA)
    (raw / "a.zip").write_bytes(b"tampered")
    assert fetch(rf, raw, LockFile(lock_path, "src"), **FAST).read_bytes() == DATA


def test_fetch_all_parallel(http_server, tmp_path):
    files = [RemoteFile(http_server.add(f"v/{i}.bin", DATA[i:]), f"v/{i}.bin", f"sha256:{sha256(DATA[i:])}") for i in range(6)]
    paths = fetch_all(files, tmp_path, retries=1, progress=False, workers=3)
    assert [p.read_bytes() for p in paths] == [DATA[i:] for i in range(6)]


def test_github_tree_lists_blobs(http_server, tmp_path):
    (tmp_path / "repo" / "d").mkdir(parents=True)
    (tmp_path / "repo" / "d" / "x.mp4").write_bytes(b"xx")
    http_server.add_github("o/r", "abc", tmp_path / "repo")
    tree = github_tree("o/r", "abc", api_url=http_server.url("api"))
    assert tree == {"d/x.mp4": {"git_blob_sha1": git_sha(b"xx"), "size": 2}}
    http_server.add_json("api/repos/o/r/git/trees/big", {"tree": [], "truncated": True})
    with pytest.raises(DownloadError, match="truncated"):
        github_tree("o/r", "big", api_url=http_server.url("api"))


# ---------------------------------------------------------------------------- first downloads (issue 11 item 3)

HTML_ERROR = b"<!DOCTYPE html>\n<html><head><title>Service Unavailable</title></head><body>try later</body></html>\n"


def _zip_payload() -> bytes:
    return zip_bytes({f"Dataset_BUSI_with_GT/benign/benign ({i}).png": bytes(range(256)) * 40 for i in range(8)})


def _busi(tmp_path, http_server):
    from hico.data.sources import get_source

    opts = {"lock_dir": str(tmp_path / "locks"), "progress": False, "retries": 1, "base_url": http_server.url("raw")}
    return get_source("busi"), opts, tmp_path / "locks" / "busi.json"


def _recorded(lock_path: Path) -> dict:
    return json.loads(lock_path.read_text())["files"] if lock_path.exists() else {}


@pytest.mark.parametrize("content_type", ["text/html; charset=utf-8", "application/octet-stream"])
def test_first_download_of_an_html_error_page_is_refused_and_not_recorded(http_server, tmp_path, content_type):
    """A source without a published checksum recorded the sha256 of whatever came first."""
    busi, opts, lock_path = _busi(tmp_path, http_server)
    http_server.add("raw/Dataset_BUSI.zip", HTML_ERROR, content_type=content_type)
    with pytest.raises(ChecksumError, match="HTML"):
        busi.download(tmp_path / "raw", opts)
    assert "Dataset_BUSI.zip" not in _recorded(lock_path)
    assert not list((tmp_path / "raw").glob("Dataset_BUSI.zip*"))
    good = _zip_payload()
    http_server.add("raw/Dataset_BUSI.zip", good)  # the server recovers: the genuine file is taken
    assert (busi.download(tmp_path / "raw", opts) / "Dataset_BUSI.zip").read_bytes() == good
    assert _recorded(lock_path)["Dataset_BUSI.zip"]["sha256"] == sha256(good)


def test_first_download_cut_short_is_refused_and_not_recorded(http_server, tmp_path):
    """A body that ends early (here with a Content-Length that says so) is not the archive."""
    busi, opts, lock_path = _busi(tmp_path, http_server)
    good = _zip_payload()
    http_server.add("raw/Dataset_BUSI.zip", good[: len(good) // 2])
    with pytest.raises(ChecksumError, match="zip"):
        busi.download(tmp_path / "raw", opts)
    assert "Dataset_BUSI.zip" not in _recorded(lock_path)
    http_server.add("raw/Dataset_BUSI.zip", good)
    http_server.break_next("raw/Dataset_BUSI.zip", at=len(good) // 3, times=5)  # and short of its Content-Length
    with pytest.raises(DownloadError):
        busi.download(tmp_path / "raw", opts)
    assert "Dataset_BUSI.zip" not in _recorded(lock_path)
    http_server.truncate.clear()
    assert (busi.download(tmp_path / "raw", opts) / "Dataset_BUSI.zip").read_bytes() == good
    assert _recorded(lock_path)["Dataset_BUSI.zip"] == {**_recorded(lock_path)["Dataset_BUSI.zip"], "sha256": sha256(good), "size": len(good)}


def test_an_existing_html_copy_is_not_recorded_as_the_first_download(http_server, tmp_path):
    busi, opts, lock_path = _busi(tmp_path, http_server)
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "Dataset_BUSI.zip").write_bytes(HTML_ERROR)  # e.g. a browser's "download"
    good = _zip_payload()
    http_server.add("raw/Dataset_BUSI.zip", good)
    assert (busi.download(tmp_path / "raw", opts) / "Dataset_BUSI.zip").read_bytes() == good
    assert _recorded(lock_path)["Dataset_BUSI.zip"]["sha256"] == sha256(good)


def test_downloads_ask_for_the_bytes_as_stored(http_server, tmp_path):
    """Range offsets and Content-Length count stored bytes, so no transfer encoding is accepted."""
    url = http_server.add("f.bin", DATA)
    fetch(RemoteFile(url, "f.bin", f"sha256:{sha256(DATA)}"), tmp_path, **FAST)
    assert http_server.requests_for("f.bin")[0]["accept_encoding"] == "identity"


def test_a_recorded_size_is_checked_with_the_recorded_hash(http_server, tmp_path):
    url = http_server.add("a.bin", DATA)
    lock = LockFile(tmp_path / "l.json", "src")
    lock.update("a.bin", size=len(DATA) + 1)  # only a size is known
    with pytest.raises(ChecksumError, match="bytes"):
        fetch(RemoteFile(url, "a.bin", "lock"), tmp_path / "raw", lock, retries=0, progress=False)


# ---------------------------------------------------------------------------- safe extraction


def _tar_bytes(members: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for info, data in members:
            tf.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def test_safe_extract_zip_and_reuse(tmp_path):
    arc = tmp_path / "ok.zip"
    arc.write_bytes(zip_bytes({"top/a.txt": b"a", "top/sub/b.txt": b"b", "__MACOSX/._a.txt": b"junk"}))
    from hico.data.download import macos_junk

    out = safe_extract(arc, tmp_path / "out", skip=macos_junk)
    assert (out / "top" / "sub" / "b.txt").read_bytes() == b"b"
    assert not (out / "__MACOSX").exists()
    mtime = (out / ".extracted.json").stat().st_mtime_ns
    safe_extract(arc, tmp_path / "out")  # same archive: reused, not extracted again
    assert (out / ".extracted.json").stat().st_mtime_ns == mtime


@pytest.mark.parametrize("evil", ["../evil.txt", "a/../../evil.txt", "/tmp/evil_abs.txt", "..\\evil.txt", "C:/evil.txt"])
def test_safe_extract_refuses_zip_path_escape(tmp_path, evil):
    arc = tmp_path / "bad.zip"
    arc.write_bytes(zip_bytes({"fine.txt": b"ok", evil: b"pwned"}))
    dest = tmp_path / "deep" / "out"
    with pytest.raises(UnsafeArchiveError):
        safe_extract(arc, dest)
    assert not dest.exists()
    assert not (tmp_path / "deep" / "evil.txt").exists() and not (tmp_path / "evil.txt").exists()
    assert not Path("/tmp/evil_abs.txt").exists()
    assert not [p for p in (tmp_path / "deep").iterdir()]  # the temporary folder is gone too


def test_safe_extract_refuses_zip_symlink(tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        info = zipfile.ZipInfo("link")
        info.external_attr = (0o120777 << 16)
        zf.writestr(info, "/etc/passwd")
    arc = tmp_path / "link.zip"
    arc.write_bytes(buf.getvalue())
    with pytest.raises(UnsafeArchiveError, match="link"):
        safe_extract(arc, tmp_path / "out")


def test_safe_extract_tar(tmp_path):
    good = tarfile.TarInfo("d/f.txt")
    good.size = 2
    arc = tmp_path / "ok.tar.gz"
    arc.write_bytes(_tar_bytes([(good, b"hi")]))
    assert (safe_extract(arc, tmp_path / "o") / "d" / "f.txt").read_bytes() == b"hi"

    up = tarfile.TarInfo("../up.txt")
    up.size = 2
    sym = tarfile.TarInfo("d/link")
    sym.type, sym.linkname = tarfile.SYMTYPE, "../../etc/passwd"
    for members in ([(up, b"hi")], [(good, b"hi"), (sym, None)]):
        arc.write_bytes(_tar_bytes(members))
        with pytest.raises(UnsafeArchiveError):
            safe_extract(arc, tmp_path / "o2")
        assert not (tmp_path / "o2").exists() and not (tmp_path / "up.txt").exists()


def test_safe_extract_refuses_non_archives(tmp_path):
    p = tmp_path / "x.zip"
    p.write_bytes(b"not an archive")
    with pytest.raises(UnsafeArchiveError, match="neither"):
        safe_extract(p, tmp_path / "o")


# ---------------------------------------------------------------------------- extraction budgets (issue 11 item 4)


class _Zeros(io.RawIOBase):
    """``n`` zero bytes, read in chunks (a bomb's payload without holding it in memory)."""

    def __init__(self, n: int):
        self.left = n

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        k = min(len(b), self.left)
        b[:k] = bytes(k)
        self.left -= k
        return k


def _zip_bomb(path: Path, n: int) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf, zf.open("zeros.bin", "w") as fh:
        shutil.copyfileobj(_Zeros(n), fh, 1 << 20)
    return path


def _tar_bomb(path: Path, n: int) -> Path:
    info = tarfile.TarInfo("zeros.bin")
    info.size = n
    with tarfile.open(path, "w:gz", compresslevel=9) as tf:
        tf.addfile(info, io.BufferedReader(_Zeros(n)))
    return path


@pytest.mark.parametrize("make, name", [(_zip_bomb, "bomb.zip"), (_tar_bomb, "bomb.tar.gz")])
def test_archive_bombs_are_refused_before_extraction(tmp_path, make, name):
    """A 204 KB zip or tar.gz expanded to 200 MB with no size or ratio limit."""
    arc = make(tmp_path / name, 200 * 2**20)
    assert arc.stat().st_size < 400_000
    with pytest.raises(UnsafeArchiveError, match="budget"):
        safe_extract(arc, tmp_path / "out")
    assert not (tmp_path / "out").exists() and sorted(p.name for p in tmp_path.iterdir()) == [name]
    with pytest.raises(UnsafeArchiveError, match="max_archive_bytes"):  # a bytes budget alone
        safe_extract(arc, tmp_path / "out", max_bytes=2**20, max_ratio=None)


def test_archive_budgets_let_genuine_archives_through(tmp_path):
    small = _zip_bomb(tmp_path / "small.zip", 50_000)  # ratio ~ 50000 / 200: over the default ratio
    with pytest.raises(UnsafeArchiveError, match="ratio"):
        safe_extract(small, tmp_path / "a")
    out = safe_extract(small, tmp_path / "a", max_ratio=None)  # the option lifts it
    assert (out / "zeros.bin").stat().st_size == 50_000
    assert (safe_extract(_tar_bomb(tmp_path / "t.tar.gz", 1000), tmp_path / "t", max_ratio=1000) / "zeros.bin").read_bytes() == bytes(1000)


def test_source_options_carry_the_extraction_budget(tmp_path):
    from hico.data.sources import get_source

    raw = tmp_path / "raw"
    raw.mkdir()
    _zip_bomb(raw / "Dataset_BUSI.zip", 20 * 2**20)
    with pytest.raises(UnsafeArchiveError, match="max_archive_ratio=100"):
        get_source("busi").prepare(raw, tmp_path / "data", {"progress": False})
    with pytest.raises(UnsafeArchiveError, match="max_archive_bytes=1000"):
        get_source("busi").prepare(raw, tmp_path / "data", {"progress": False, "max_archive_bytes": 1000, "max_archive_ratio": None})
    assert not (raw / "Dataset_BUSI").exists() and not (tmp_path / "data").exists()


# ---------------------------------------------------------------------------- no unpickling anywhere


def test_no_pickle_loading_in_data_code():
    root = Path(__file__).resolve().parents[1] / "hico" / "data"
    files = [root / "download.py", root / "video.py", *sorted((root / "sources").glob("*.py"))]
    for f in files:
        text = f.read_text()
        for bad in ("import pickle", "pickle.load", "allow_pickle=True", "torch.load", "joblib", "pd.read_pickle", "dill"):
            assert bad not in text, f"{f.name} uses {bad}: downloaded pickles must never be unpickled"
    assert os.path.exists(root / "sources" / "locks")

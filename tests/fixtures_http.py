"""Offline test helpers: a local HTTP file server and builders of small media files.

:class:`FileServer` is a threaded ``http.server`` on 127.0.0.1, port 0, serving in-memory files
with ``Range`` support (206 / 416), and on demand a truncated body (full Content-Length, part of
the bytes, then the connection closes), a changed file, a given Content-Type (an HTML error
page), or servers that ignore ranges. Every
request is logged so tests can assert that a download resumed.

Builders write videos whose frame ``i`` is a flat gray of value ``level(i)``, so a test can tell
which source frames a resampler kept even after lossy compression. :func:`tree_digest` fingerprints
a folder tree, to show that a command left its input untouched.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np
import pytest

# --------------------------------------------------------------------------------------------
# HTTP


class FileServer:
    """In-memory files at ``http://127.0.0.1:<port>/<path>``."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.truncate: dict[str, list[int]] = {}  # path -> byte counts of the next broken answers
        self.content_types: dict[str, str] = {}  # path -> Content-Type (default application/octet-stream)
        self.ignore_range = False
        self.requests: list[dict] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def do_HEAD(self):
                self._serve(body=False)

            def do_GET(self):
                self._serve(body=True)

            def _serve(self, body: bool) -> None:
                path = unquote(urlparse(self.path).path).lstrip("/")
                rng = self.headers.get("Range")
                with server._lock:
                    data = server.files.get(path)
                    cut = server.truncate[path].pop(0) if server.truncate.get(path) else None
                    server.requests.append({"path": path, "range": rng, "truncated": cut is not None,
                                            "accept_encoding": self.headers.get("Accept-Encoding")})
                if data is None:
                    self.send_error(404, "not found")
                    return
                start, status = 0, 200
                if rng and not server.ignore_range:
                    spec = rng.split("=", 1)[1]
                    start = int(spec.split("-", 1)[0])
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    status = 206
                payload = data[start:]
                self.send_response(status)
                self.send_header("Content-Type", server.content_types.get(path, "application/octet-stream"))
                self.send_header("Content-Length", str(len(payload)))
                if status == 206:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.send_header("Accept-Ranges", "bytes")
                self.end_headers()
                if not body:
                    return
                if cut is not None:
                    self.wfile.write(payload[:cut])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(payload)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def url(self, path: str) -> str:
        return f"{self.base_url}/{path}"

    def add(self, path: str, data: bytes, content_type: str | None = None) -> str:
        self.files[path] = data
        if content_type:
            self.content_types[path] = content_type
        else:
            self.content_types.pop(path, None)
        return self.url(path)

    def add_json(self, path: str, obj) -> str:
        return self.add(path, json.dumps(obj).encode())

    def add_tree(self, prefix: str, root: Path) -> None:
        """Serve every file under ``root`` at ``<prefix>/<relative path>``."""
        for p in sorted(root.rglob("*")):
            if p.is_file():
                self.add(f"{prefix}/{p.relative_to(root).as_posix()}".lstrip("/"), p.read_bytes())

    def add_github(self, repo: str, ref: str, root: Path) -> None:
        """Serve ``root`` as ``repo@ref``: raw files under ``raw/`` and the git trees API under ``api/``."""
        tree = []
        for p in sorted(root.rglob("*")):
            if p.is_file():
                rel = p.relative_to(root).as_posix()
                data = p.read_bytes()
                self.add(f"raw/{rel}", data)
                tree.append({"path": rel, "mode": "100644", "type": "blob", "sha": git_sha(data), "size": len(data)})
        self.add_json(f"api/repos/{repo}/git/trees/{ref}", {"sha": "0" * 40, "tree": tree, "truncated": False})

    def break_next(self, path: str, at: int, times: int = 1) -> None:
        """The next ``times`` answers for ``path`` stop after ``at`` bytes of the body."""
        self.truncate.setdefault(path, []).extend([at] * times)

    def requests_for(self, path: str) -> list[dict]:
        return [r for r in self.requests if r["path"] == path]

    def start(self) -> FileServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def http_server():
    srv = FileServer().start()
    try:
        yield srv
    finally:
        srv.stop()


def git_sha(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


# --------------------------------------------------------------------------------------------
# media builders


def level(i: int) -> int:
    """Gray value of frame ``i`` in every builder (distinct, well apart, under 256)."""
    return (20 + 7 * i) % 240


CONTAINERS = {  # suffix -> (container format, codec, pixel format)
    ".mp4": ("mp4", "libx264", "yuv420p"),
    ".avi": ("avi", "mjpeg", "yuvj420p"),
    ".mpeg": ("mpeg", "mpeg1video", "yuv420p"),
    ".mov": ("mov", "mpeg4", "yuv420p"),
}


def make_video(path: Path, n_frames: int = 30, fps: int = 25, size: tuple[int, int] = (48, 64)) -> Path:
    """A small video (mp4/avi/mpeg/mov from the suffix, gif through Pillow), frame i = level(i)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = size
    if path.suffix == ".gif":
        return make_gif(path, [1000 // fps] * n_frames, size)
    import av

    fmt, codec, pix = CONTAINERS[path.suffix.lower()]
    with av.open(str(path), "w", format=fmt) as out:
        stream = out.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, pix
        if codec == "libx264":
            stream.options = {"crf": "10", "preset": "ultrafast"}
        else:
            stream.bit_rate = 4_000_000  # near-lossless for these tiny frames
        for i in range(n_frames):
            rgb = np.full((h, w, 3), level(i), np.uint8)
            rgb[: h // 4, : w // 4] = 255 - level(i)  # some structure, not only a flat frame
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def make_gif(path: Path, durations_ms: list[int], size: tuple[int, int] = (48, 64)) -> Path:
    from PIL import Image

    h, w = size
    frames = []
    for i in range(len(durations_ms)):
        a = np.full((h, w), level(i), np.uint8)
        a[: h // 4, : w // 4] = 255 - level(i)
        frames.append(Image.fromarray(a).convert("P"))
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=durations_ms, loop=0, disposal=1)
    return path


def make_image(path: Path, value: int = 100, size: tuple[int, int] = (40, 60), mode: str = "L") -> Path:
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = size
    a = np.full((h, w), value, np.uint8)
    img = Image.fromarray(a)
    if mode == "RGB":
        img = img.convert("RGB")
    elif mode == "RGBA":
        img = img.convert("RGBA")
    elif mode == "I;16":
        img = Image.fromarray(a.astype(np.uint16) * 257)
    img.save(path)
    return path


def make_frame_folder(folder: Path, n: int, prefix: str | None = None, ext: str = ".jpg", size=(40, 60)) -> Path:
    """``<folder>/<prefix>_frame<i>.jpg`` for i in 0..n-1 (USCL layout), frame i = level(i)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    prefix = prefix or folder.name
    for i in range(n):
        make_image(folder / f"{prefix}_frame{i}{ext}", level(i), size)
    return folder


def zip_bytes(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return buf.getvalue()


def zip_tree(root: Path, arc_prefix: str = "") -> bytes:
    entries = {}
    for p in sorted(root.rglob("*")):
        if p.is_file():
            entries[f"{arc_prefix}{p.relative_to(root).as_posix()}"] = p.read_bytes()
    return zip_bytes(entries)


def tree_digest(root: str | os.PathLike) -> str:
    """sha256 of every name (as bytes), file mode and file content under ``root``."""
    h = hashlib.sha256()
    root_b = os.fsencode(root)
    for dirpath, dirnames, filenames in os.walk(root_b):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            h.update(os.path.relpath(p, root_b) + b"\0" + str(st.st_mode).encode())
            if os.path.isfile(p) and not os.path.islink(p):
                with open(p, "rb") as fh:
                    h.update(hashlib.sha256(fh.read()).digest())
    return h.hexdigest()

"""Decode ultrasound videos, images and frame folders to grayscale uint8 ``[T, H, W]`` arrays.

Containers: mp4 / avi / mpeg / mov / m4v through PyAV (FFmpeg); gif through Pillow (per-frame
durations honoured); still images (png / jpg / bmp / tif) through Pillow; folders of frames
(``<video>/<video>_frame<N>.jpg``, the USCL/HiCo layout) in natural order of their file names.

Frame-rate resampling (:func:`select_times`) keeps, for every target time ``t0 + k / fps``, the
source frame nearest to it, never the same frame twice, up to ``max_frames`` -- the POCUS
reference processing at 3 Hz / 30 frames (pocovidnet ``build_image_dataset.py``), which steps
``int(fps / 3)`` frames instead (3.1 Hz at 25 fps; we use the exact rate so variable-rate gifs
work too). Grayscale is ITU-R 601 luma everywhere: FFmpeg's ``gray`` conversion (resized in the
same pass, area filter) for PyAV, Pillow's ``convert("L")`` for gifs and images, so an mp4 and a
gif of the same clip give the same pixels. Undecodable or empty inputs raise
:class:`VideoDecodeError`; the caller quarantines them.

Decode budget: a frame (a gif's canvas, an image, a video stream) larger than ``max_pixels``
is refused from its declared size, before anything is decoded, and every kept frame is shrunk
to ``short_side`` as it is decoded, so memory never holds more than a couple of full-size frames
(a few bytes of gif can declare a 10000 x 10000 canvas for every frame).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hico.data.standard import resize_short_side
from hico.errors import HicoError

VIDEO_EXTENSIONS = frozenset({".mp4", ".avi", ".mpeg", ".mpg", ".mov", ".m4v", ".gif", ".wmv", ".mkv"})
IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"})
GIF_DEFAULT_FRAME_S = 0.1  # browsers show a gif frame with no (or ~0) duration for 100 ms
#: default decode budget: pixels of one frame (4096 x 4096; ultrasound frames are ~1 MP, X-rays ~8)
DEFAULT_MAX_PIXELS = 4096 * 4096


class VideoDecodeError(HicoError, RuntimeError):
    """A file that is empty, unreadable, or holds no decodable frame."""


@dataclass
class Video:
    """Decoded frames and what was learnt about the source while decoding."""

    frames: np.ndarray  # uint8 [T, H, W]
    source_fps: float | None  # nominal rate of the source (None: unknown, e.g. frame folders)
    n_decoded: int  # source frames decoded (decoding stops once max_frames are chosen)
    times: list[float]  # seconds from the first frame, one per kept frame
    truncated: str | None = None  # why the source looks cut short (None: it does not)
    expected_frames: int | None = None  # frames a whole file would have given (None: unknown)


def _truncation(
    n_decoded: int, declared: int, nominal: float | None, fps: float | None, max_frames: int | None,
    n_kept: int, damage: str | None,
) -> tuple[str | None, int | None]:
    """``(why, expected kept frames)`` when a decoded stream looks cut short, else ``(None, None)``.

    Cut short: the decoder hit a damaged frame after some good ones, or decoding reached the end
    of the stream with fewer frames than the container declares (``declared``; 0: unknown), by
    more than 2 % (at least one frame: a few encoders declare one more than they write).
    """
    expected = None
    if declared:
        times = [i / nominal for i in range(declared)] if nominal else [float(i) for i in range(declared)]
        expected = sum(1 for _ in select_times(times, fps if nominal else None, max_frames))
    if damage:
        return f"decoding stopped at a damaged frame after {n_decoded} frames ({damage})", expected
    reached_end = max_frames is None or n_kept < max_frames
    if declared and reached_end and n_decoded < declared - max(1, declared // 50):
        return f"only {n_decoded} of the {declared} frames the file declares decode", expected
    return None, None


def is_video(path: str | Path) -> bool:
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def is_image(path: str | Path) -> bool:
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def natural_key(name: str) -> list[Any]:
    """Sort key that puts ``frame2`` before ``frame10``."""
    return [int(tok) if tok.isdigit() else tok.lower() for tok in re.split(r"(\d+)", name)]


def select_times(
    times: Iterable[float], fps: float | None, max_frames: int | None
) -> Iterator[int]:
    """Indices of the frames to keep from a stream of timestamps (seconds, non-decreasing).

    For each target time ``t0 + k / fps`` the nearest source frame is kept; a frame is never
    kept twice, so a source slower than ``fps`` keeps all of its frames. ``fps=None`` keeps
    every frame. Stops after ``max_frames`` (None: no limit). Works on a stream so a caller
    can stop decoding as soon as enough frames are chosen.
    """
    if fps is not None and fps <= 0:
        raise ValueError(f"fps must be > 0 or None, got {fps}")
    if max_frames is not None and max_frames < 1:
        raise ValueError(f"max_frames must be >= 1 or None, got {max_frames}")
    step = None if fps is None else 1.0 / fps
    eps = 1e-6
    n_kept = 0
    last_kept = -1
    target: float | None = None
    prev: tuple[int, float] | None = None
    for idx, t in enumerate(times):
        if step is None:
            yield idx
            n_kept += 1
            if max_frames is not None and n_kept >= max_frames:
                return
            continue
        if target is None:
            target = t
        while t >= target - eps:
            chosen = idx
            if prev is not None and prev[0] > last_kept and (target - prev[1]) < (t - target):
                chosen = prev[0]
            if chosen > last_kept:
                yield chosen
                last_kept = chosen
                n_kept += 1
                if max_frames is not None and n_kept >= max_frames:
                    return
            target += step
        prev = (idx, t)
    # the stream ended between two targets: the last frame is the nearest one to the next target
    if step is not None and prev is not None and target is not None and prev[0] > last_kept:
        if target - prev[1] < step / 2 - eps:
            yield prev[0]


def _target_wh(w: int, h: int, short_side: int | None) -> tuple[int, int]:
    """Output (W, H) so that min(W, H) == short_side (rounding as in ``resize_short_side``)."""
    if short_side is None or min(w, h) == short_side:
        return w, h
    scale = short_side / min(w, h)
    return max(1, round(w * scale)), max(1, round(h * scale))


def _check_file(path: Path) -> None:
    if not path.is_file():
        raise VideoDecodeError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise VideoDecodeError(f"{path}: empty file (0 bytes)")


def check_pixels(path: Path, width: int, height: int, max_pixels: int | None) -> None:
    """Refuse a frame whose declared size exceeds the decode budget, before decoding it."""
    if max_pixels is not None and width * height > max_pixels:
        raise VideoDecodeError(
            f"{path}: frames of {width} x {height} = {width * height:,} pixels exceed the decode budget "
            f"max_pixels={max_pixels:,}; refused before decoding (raise the option max_pixels if the "
            "file is genuine)"
        )


class _Shrinker:
    """Each kept frame, shrunk to ``short_side`` as it arrives (one frame in float at a time).

    A few files change resolution mid-stream: such a frame is first brought to the first
    frame's size (bilinear), as the whole stack used to be.
    """

    def __init__(self, short_side: int | None):
        self.short_side = short_side
        self.first: tuple[int, int] | None = None
        self.frames: list[np.ndarray] = []

    def add(self, frame: np.ndarray) -> None:
        if self.first is None:
            self.first = frame.shape
        elif frame.shape != self.first:
            from PIL import Image

            h, w = self.first
            frame = np.asarray(Image.fromarray(frame).resize((w, h), Image.BILINEAR))
        self.frames.append(resize_short_side(frame[None], self.short_side)[0])


def _finish(path: Path, frames: list[np.ndarray]) -> np.ndarray:
    if not frames:
        raise VideoDecodeError(f"{path}: no decodable frame")
    return np.stack(frames)


def _read_av(
    path: Path, fps: float | None, max_frames: int | None, short_side: int | None, max_pixels: int | None
) -> Video:
    import av

    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as e:
        raise VideoDecodeError(f"{path}: cannot open container ({type(e).__name__}: {e})") from e
    with container:
        if not container.streams.video:
            raise VideoDecodeError(f"{path}: no video stream")
        stream = container.streams.video[0]
        check_pixels(path, stream.codec_context.width or 0, stream.codec_context.height or 0, max_pixels)
        stream.thread_type = "AUTO"
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        nominal = float(rate) if rate else None
        decoded: list[Any] = []  # the av.VideoFrame of every decoded index that may be chosen
        times: list[float] = []
        t0: float | None = None
        damage: str | None = None

        def stream_times() -> Iterator[float]:
            nonlocal t0, damage
            try:
                for i, frame in enumerate(container.decode(stream)):
                    t = frame.time
                    if t is None:  # broken pts (some avi): fall back to the nominal rate
                        t = i / nominal if nominal else float(i)
                    if t0 is None:
                        t0 = t
                    t = t - t0
                    if times and t < times[-1]:  # non-monotonic pts: keep order, nudge forward
                        t = times[-1] + 1e-6
                    times.append(t)
                    decoded.append(frame)
                    if len(decoded) > 2:  # only the last two frames can still be chosen
                        decoded[-3] = None
                    yield t
            except av.error.FFmpegError as e:
                if not times:
                    raise VideoDecodeError(f"{path}: {type(e).__name__}: {e}") from e
                damage = f"{type(e).__name__}: {e}"  # a truncated tail: frames before the damage are valid

        kept: list[np.ndarray] = []
        kept_t: list[float] = []
        size: tuple[int, int] | None = None  # (W, H) of the output, from the first kept frame
        for idx in select_times(stream_times(), fps, max_frames):
            frame = decoded[idx]
            if size is None:
                check_pixels(path, frame.width, frame.height, max_pixels)  # the stream may not declare it
                size = _target_wh(frame.width, frame.height, short_side)
            # swscale does luma and resizing in one C pass (area filter when shrinking); its gray
            # equals the ITU-R 601 luma of the RGB frame
            interp = "AREA" if size[0] <= frame.width else "BILINEAR"
            kept.append(frame.reformat(width=size[0], height=size[1], format="gray", interpolation=interp).to_ndarray())
            kept_t.append(times[idx])
        why, expected = _truncation(len(times), stream.frames or 0, nominal, fps, max_frames, len(kept), damage)
        return Video(_finish(path, kept), nominal, len(times), kept_t, why, expected)


def _open_image(path: Path) -> Any:
    """``PIL.Image.open``, with Pillow's own bomb guard left to :func:`check_pixels` (our budget)."""
    import warnings

    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            return Image.open(path)
        except Image.DecompressionBombError as e:
            raise VideoDecodeError(f"{path}: {e}; refused before decoding (max_pixels)") from e


def _read_gif(
    path: Path, fps: float | None, max_frames: int | None, short_side: int | None, max_pixels: int | None
) -> Video:
    from PIL import ImageSequence, UnidentifiedImageError

    try:
        img = _open_image(path)
    except (UnidentifiedImageError, OSError) as e:
        raise VideoDecodeError(f"{path}: not a readable gif ({e})") from e
    with img:
        check_pixels(path, *img.size, max_pixels)  # every frame is composited onto this canvas
        frames_l: list[np.ndarray | None] = []
        times: list[float] = []
        durations: list[float] = []
        damage: str | None = None

        def stream_times() -> Iterator[float]:
            nonlocal damage
            t = 0.0
            try:
                for frame in ImageSequence.Iterator(img):
                    d = (frame.info.get("duration") or 0) / 1000.0
                    d = d if d > 0.01 else GIF_DEFAULT_FRAME_S
                    durations.append(d)
                    times.append(t)
                    frames_l.append(np.asarray(frame.convert("L")))
                    if len(frames_l) > 2:
                        frames_l[-3] = None
                    yield t
                    t += d
            except (OSError, EOFError) as e:
                if not times:
                    raise VideoDecodeError(f"{path}: {e}") from e
                damage = f"{type(e).__name__}: {e}"  # a gif declares no frame count: damage is all we see

        kept = _Shrinker(short_side)
        kept_t: list[float] = []
        for idx in select_times(stream_times(), fps, max_frames):
            kept.add(frames_l[idx])
            kept_t.append(times[idx])
    nominal = 1.0 / float(np.median(durations)) if durations else None
    why, expected = _truncation(len(times), 0, nominal, fps, max_frames, len(kept.frames), damage)
    return Video(_finish(path, kept.frames), nominal, len(times), kept_t, why, expected)


def read_video(
    path: str | Path,
    fps: float | None = 3.0,
    max_frames: int | None = 30,
    short_side: int | None = None,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
) -> Video:
    """Decode a video file to grayscale uint8 ``[T, H, W]``, resampled to ``fps``.

    ``short_side`` resizes so that min(H, W) equals it (None keeps the decoded size).
    Raises :class:`VideoDecodeError` for empty, unreadable or frameless files, and for frames
    of more than ``max_pixels`` (None: no budget).
    """
    path = Path(path)
    _check_file(path)
    if path.suffix.lower() == ".gif":
        return _read_gif(path, fps, max_frames, short_side, max_pixels)
    return _read_av(path, fps, max_frames, short_side, max_pixels)


def read_image(path: str | Path, short_side: int | None = None, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """A still image as grayscale uint8 ``[1, H, W]`` (16-bit and float images are rescaled)."""
    from PIL import UnidentifiedImageError

    path = Path(path)
    _check_file(path)
    try:
        with _open_image(path) as img:
            check_pixels(path, *img.size, max_pixels)
            img.load()
            if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
                arr = np.asarray(img, dtype=np.float64)
                lo, hi = float(arr.min()), float(arr.max())
                arr = np.zeros_like(arr) if hi <= lo else (arr - lo) / (hi - lo) * 255.0
                gray = np.rint(arr).astype(np.uint8)
            elif img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
                gray = np.asarray(img.convert("RGBA").convert("L"))  # alpha dropped, as in a viewer on black
            else:
                gray = np.asarray(img.convert("L"))
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise VideoDecodeError(f"{path}: not a readable image ({e})") from e
    if gray.ndim != 2 or gray.size == 0:
        raise VideoDecodeError(f"{path}: image has shape {gray.shape}, expected a 2-D picture")
    return resize_short_side(gray[None], short_side)


def frame_files(folder: str | Path) -> list[Path]:
    """Image files directly inside ``folder``, in natural order (``frame2`` before ``frame10``)."""
    folder = Path(folder)
    files = [p for p in folder.iterdir() if p.is_file() and is_image(p) and not p.name.startswith(".")]
    return sorted(files, key=lambda p: natural_key(p.name))


def read_frame_folder(
    folder: str | Path,
    fps: float | None = None,
    max_frames: int | None = None,
    source_fps: float | None = None,
    short_side: int | None = None,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
) -> Video:
    """A folder of frame images as one video. Resampled only when ``source_fps`` is known."""
    folder = Path(folder)
    files = frame_files(folder) if folder.is_dir() else []
    if not files:
        raise VideoDecodeError(f"{folder}: no image frames (png/jpg) in this folder")
    if source_fps is None:
        fps = None
    times = [i / source_fps for i in range(len(files))] if source_fps else [float(i) for i in range(len(files))]
    chosen = list(select_times(times, fps, max_frames))
    frames = _Shrinker(short_side)
    for i in chosen:
        frames.add(read_image(files[i], max_pixels=max_pixels)[0])
    return Video(_finish(folder, frames.frames), source_fps, len(files), [times[i] for i in chosen])


def decode(
    path: str | Path,
    fps: float | None = 3.0,
    max_frames: int | None = 30,
    short_side: int | None = None,
    source_fps: float | None = None,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
) -> Video:
    """A video file, an image file (T = 1) or a frame folder, as a :class:`Video`."""
    path = Path(path)
    if path.is_dir():
        return read_frame_folder(path, fps, max_frames, source_fps, short_side, max_pixels)
    if is_image(path):
        return Video(read_image(path, short_side, max_pixels), None, 1, [0.0])
    if is_video(path):
        return read_video(path, fps, max_frames, short_side, max_pixels)
    raise VideoDecodeError(
        f"{path}: unknown file type {path.suffix!r}; expected a video "
        f"({', '.join(sorted(VIDEO_EXTENSIONS))}), an image ({', '.join(sorted(IMAGE_EXTENSIONS))}) "
        "or a folder of frames"
    )


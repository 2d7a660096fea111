"""Video decoding: every container, frame-rate resampling, grayscale, resizing, broken inputs."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from hico.data.video import (
    VideoDecodeError,
    decode,
    natural_key,
    read_frame_folder,
    read_image,
    read_video,
    select_times,
)

try:
    from fixtures_http import level, make_frame_folder, make_gif, make_image, make_video
except ImportError:  # tests/ imported as a package
    from tests.fixtures_http import level, make_frame_folder, make_gif, make_image, make_video

SHARED_POCUS = Path(__file__).resolve().parents[2] / "shared" / "data" / "pocus"


def _levels(frames: np.ndarray) -> list[int]:
    """The gray level of each frame, read away from the bright corner block."""
    return [int(f[-5:, -5:].mean().round()) for f in frames]


# ---------------------------------------------------------------------------- select_times


def reference_nearest(times: list[float], fps: float, max_frames: int | None) -> list[int]:
    """Plain reference: for each target time, the nearest frame; drop repeats."""
    step, out = 1.0 / fps, []
    k = 0
    while times[0] + k * step <= times[-1] + step / 2 - 1e-9:
        t = times[0] + k * step
        i = min(range(len(times)), key=lambda j: (abs(times[j] - t), -j if times[j] >= t else j))
        if not out or i > out[-1]:
            out.append(i)
        k += 1
    return out[:max_frames] if max_frames else out


@pytest.mark.parametrize("src_fps", [10, 22, 25, 29.97, 30, 50])
@pytest.mark.parametrize("n", [1, 7, 60, 300])
def test_select_times_matches_nearest_frame_reference(src_fps, n):
    times = [i / src_fps for i in range(n)]
    got = list(select_times(times, 3.0, None))
    assert got == reference_nearest(times, 3.0, None)
    assert got == sorted(set(got))


def test_select_times_pocovidnet_rate_and_cap():
    times = [i / 25 for i in range(1000)]
    got = list(select_times(times, 3.0, 30))
    assert len(got) == 30
    assert got[:5] == [0, 8, 17, 25, 33]  # nearest frames to 0, 1/3, 2/3, 1, 4/3 s
    assert all(b - a in (8, 9) for a, b in zip(got, got[1:]))


def test_select_times_keeps_all_frames_when_source_is_slower_or_fps_none():
    times = [i / 2 for i in range(10)]  # a 2 Hz source sampled at 3 Hz: every frame once
    assert list(select_times(times, 3.0, None)) == list(range(10))
    assert list(select_times(times, None, 4)) == [0, 1, 2, 3]


def test_select_times_variable_frame_durations():
    # gif-like: frame i shown for 0.5 s, then a burst of 0.05 s frames
    times = [0.0, 0.5, 1.0, 1.05, 1.10, 1.15, 1.20, 1.25, 1.30, 1.35]
    got = list(select_times(times, 3.0, None))
    assert got == reference_nearest(times, 3.0, None)


@pytest.mark.parametrize("bad", [{"fps": 0}, {"fps": -1}, {"max_frames": 0}])
def test_select_times_rejects_bad_arguments(bad):
    kwargs = {"fps": 3.0, "max_frames": 30, **bad}
    with pytest.raises(ValueError):
        list(select_times([0.0, 0.1], **kwargs))


# ---------------------------------------------------------------------------- containers


@pytest.mark.parametrize("suffix", [".mp4", ".avi", ".mpeg", ".mov", ".gif"])
def test_every_container_decodes_resamples_and_is_gray(tmp_path, suffix):
    fps = 10 if suffix == ".gif" else 25
    path = make_video(tmp_path / f"clip{suffix}", n_frames=40, fps=fps)
    v = read_video(path, fps=3.0, max_frames=30)
    assert v.frames.dtype == np.uint8 and v.frames.ndim == 3
    assert v.frames.shape[1:] == (48, 64)
    assert v.source_fps == pytest.approx(fps, rel=0.01)
    expected_idx = list(select_times([i / fps for i in range(40)], 3.0, 30))
    assert len(v.frames) == len(expected_idx)
    assert np.allclose(_levels(v.frames), [level(i) for i in expected_idx], atol=3)


def test_max_frames_stops_decoding_early(tmp_path):
    path = make_video(tmp_path / "long.mp4", n_frames=250, fps=25)
    v = read_video(path, fps=3.0, max_frames=5)
    assert len(v.frames) == 5
    assert v.n_decoded < 60  # 5 frames at 3 Hz need ~1.4 s of a 10 s clip


def test_fps_none_keeps_every_frame(tmp_path):
    path = make_video(tmp_path / "all.avi", n_frames=12, fps=25)
    v = read_video(path, fps=None, max_frames=None)
    assert np.allclose(_levels(v.frames), [level(i) for i in range(12)], atol=3)


def test_gif_honours_per_frame_durations(tmp_path):
    # 3 frames of 1 s then 10 frames of 0.1 s: at 3 Hz we keep 0, 1, 2 and then ~every third
    path = make_gif(tmp_path / "var.gif", [1000, 1000, 1000] + [100] * 10)
    v = read_video(path, fps=3.0, max_frames=None)
    times = [0.0, 1.0, 2.0] + [3.0 + 0.1 * i for i in range(10)]
    idx = list(select_times(times, 3.0, None))
    assert np.allclose(_levels(v.frames), [level(i) for i in idx], atol=3)
    assert v.times == pytest.approx([times[i] for i in idx])


def test_short_side_resize(tmp_path):
    path = make_video(tmp_path / "r.mp4", n_frames=5, fps=25, size=(64, 96))
    v = read_video(path, fps=None, max_frames=None, short_side=32)
    assert v.frames.shape == (5, 32, 48)


# ---------------------------------------------------------------------------- broken inputs


def test_empty_file_raises(tmp_path):
    p = tmp_path / "empty.mp4"
    p.write_bytes(b"")
    with pytest.raises(VideoDecodeError, match="empty"):
        read_video(p)


@pytest.mark.parametrize("suffix", [".mp4", ".avi", ".gif", ".mov"])
def test_garbage_raises_decode_error(tmp_path, suffix):
    p = tmp_path / f"junk{suffix}"
    p.write_bytes(b"this is not a video" * 100)
    with pytest.raises(VideoDecodeError):
        read_video(p)


def test_truncated_video_keeps_frames_before_the_damage_or_raises(tmp_path):
    path = make_video(tmp_path / "cut.avi", n_frames=40, fps=25)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    try:
        v = read_video(path, fps=None, max_frames=None)
    except VideoDecodeError:
        return
    assert 0 < len(v.frames) < 40
    assert np.allclose(_levels(v.frames), [level(i) for i in range(len(v.frames))], atol=3)


def test_missing_file_raises(tmp_path):
    with pytest.raises(VideoDecodeError):
        read_video(tmp_path / "nope.mp4")


# ---------------------------------------------------------------------------- images and frame folders


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "I;16"])
def test_read_image_modes(tmp_path, mode):
    p = make_image(tmp_path / f"im_{mode.replace(';', '')}.png", value=100, mode=mode)
    arr = read_image(p)
    assert arr.dtype == np.uint8 and arr.shape == (1, 40, 60)
    if mode != "I;16":  # 16-bit is min-max scaled; a flat image becomes 0
        assert int(arr.mean()) == 100


def test_jpeg_grayscale(tmp_path):
    p = make_image(tmp_path / "x.jpg", value=80, mode="RGB")
    assert abs(int(read_image(p, short_side=20).mean()) - 80) <= 2
    assert read_image(p, short_side=20).shape == (1, 20, 30)


def test_frame_folder_natural_order_and_sampling(tmp_path):
    folder = make_frame_folder(tmp_path / "Reg-x_mp4", 12)
    assert [p.name for p in sorted(folder.iterdir(), key=lambda p: natural_key(p.name))][2] == "Reg-x_mp4_frame2.jpg"
    v = read_frame_folder(folder)
    assert np.allclose(_levels(v.frames), [level(i) for i in range(12)], atol=3)
    v = read_frame_folder(folder, fps=3.0, max_frames=None, source_fps=6.0)
    assert np.allclose(_levels(v.frames), [level(i) for i in range(0, 12, 2)], atol=3)
    assert len(read_frame_folder(folder, max_frames=5).frames) == 5


def test_decode_dispatch(tmp_path):
    assert decode(make_image(tmp_path / "a.png")).frames.shape[0] == 1
    assert decode(make_video(tmp_path / "b.mp4", 10, 25), fps=None).frames.shape[0] == 10
    assert decode(make_frame_folder(tmp_path / "c", 3)).frames.shape[0] == 3
    with pytest.raises(VideoDecodeError, match="unknown file type"):
        (tmp_path / "d.txt").write_text("x")
        decode(tmp_path / "d.txt")
    with pytest.raises(VideoDecodeError, match="no image frames"):
        (tmp_path / "e").mkdir()
        decode(tmp_path / "e")


# ---------------------------------------------------------------------------- the real POCUS containers


@pytest.mark.shared
@pytest.mark.skipif(not SHARED_POCUS.exists(), reason="needs ../shared/data/pocus")
def test_one_real_pocus_file_per_container_decodes():
    with open(SHARED_POCUS / "manifest.tsv", newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    seen: dict[str, dict] = {}
    for r in rows:
        seen.setdefault(Path(r["file"]).suffix.lower(), r)
    assert set(seen) == {".mp4", ".avi", ".mpeg", ".mov", ".gif"}
    for suffix, r in seen.items():
        v = read_video(SHARED_POCUS / r["file"], 3.0, 30, short_side=64)
        fps = float(r["framerate"])
        assert v.source_fps == pytest.approx(fps, rel=0.05), suffix
        n_src = int(r["frames"])
        expected = len(list(select_times([i / fps for i in range(n_src)], 3.0, 30)))
        assert abs(len(v.frames) - expected) <= 1, (suffix, len(v.frames), expected)
        assert v.frames.dtype == np.uint8 and min(v.frames.shape[1:]) == 64


# ---------------------------------------------------------------------------- decode budgets (issue 11 item 4)


def gif_canvas_bomb(width: int = 10000, height: int = 10000) -> bytes:
    """A valid 85-byte GIF: a ``width`` x ``height`` canvas holding one 1 x 1 frame (a decoder
    that composites frames onto the canvas gets a full canvas per frame)."""
    import struct

    screen = b"GIF89a" + struct.pack("<HHBBB", width, height, 0x80, 0, 0) + b"\x00\x00\x00\xff\xff\xff"
    control = b"\x21\xf9\x04\x00\x0a\x00\x00\x00"  # 100 ms
    text = b"a tiny file that declares a huge canvas"[:38]
    comment = b"\x21\xfe" + bytes([len(text)]) + text + b"\x00"
    image = b"\x2c" + struct.pack("<HHHHB", 0, 0, 1, 1, 0) + b"\x02\x02\x44\x01\x00"  # LZW: clear, 0, end
    data = screen + control + comment + image + b"\x3b"
    assert len(data) == 85
    return data


def test_gif_canvas_bomb_is_refused_before_decoding(tmp_path):
    """85 bytes declaring 10000 x 10000 took 2 GB: the declared size is checked first."""
    import resource
    import time

    path = tmp_path / "bomb.gif"
    path.write_bytes(gif_canvas_bomb())
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    t0 = time.perf_counter()
    with pytest.raises(VideoDecodeError, match=r"10000 x 10000.*max_pixels"):
        read_video(path)
    assert time.perf_counter() - t0 < 2.0
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0 < 200_000  # < 200 MB more at peak
    with pytest.raises(VideoDecodeError, match="max_pixels"):
        decode(path)


@pytest.mark.parametrize("kind", ["gif", "mp4", "png", "frames"])
def test_max_pixels_budget_applies_to_every_input(tmp_path, kind):
    path = {
        "gif": lambda: make_video(tmp_path / "a.gif", 6, 10),
        "mp4": lambda: make_video(tmp_path / "a.mp4", 6, 25),
        "png": lambda: make_image(tmp_path / "a.png", 90, size=(48, 64)),
        "frames": lambda: make_frame_folder(tmp_path / "seq", 3, size=(48, 64)),
    }[kind]()
    assert decode(path, max_pixels=48 * 64).frames.shape[1:] == (48, 64)  # at the budget: decoded
    with pytest.raises(VideoDecodeError, match="max_pixels"):
        decode(path, max_pixels=48 * 64 - 1)


@pytest.mark.parametrize("kind", ["gif", "frames"])
def test_frames_are_shrunk_one_at_a_time(tmp_path, monkeypatch, kind):
    """The gif decoder kept every full canvas, then resized the float32 stack of all of them."""
    import hico.data.video as video

    seen: list[tuple[int, ...]] = []
    real = video.resize_short_side

    def spy(frames, size):
        seen.append(tuple(frames.shape))
        return real(frames, size)

    monkeypatch.setattr(video, "resize_short_side", spy)
    if kind == "gif":
        frames = read_video(make_gif(tmp_path / "a.gif", [100] * 12, size=(96, 128)), fps=None, short_side=24).frames
    else:
        frames = read_frame_folder(make_frame_folder(tmp_path / "seq", 12, size=(96, 128)), short_side=24).frames
    assert frames.shape == (12, 24, 32)
    assert seen and all(s[0] == 1 for s in seen)  # never a stack of full-size frames
    assert _levels(frames) == [level(i) for i in range(12)]

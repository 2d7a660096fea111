"""The standard dataset format: writer, reader, validator, atomicity."""

from __future__ import annotations

import json
import os
import stat

import numpy as np
import pandas as pd
import pytest

from hico.data.standard import DatasetError, DatasetWriter, load_dataset, resize_short_side


def test_round_trip_and_resize(tmp_path):
    frames = np.random.default_rng(0).integers(0, 255, (3, 100, 150), dtype=np.uint8)
    with DatasetWriter(tmp_path, "ds", ["x", "y"], store_size=50) as w:
        w.add_video("v1", "p1", "y", frames, source_file="a.mp4", source_sha256="abc", license="CC BY", fps=3.0)
    ds = load_dataset(tmp_path / "ds")
    assert ds.classes == ["x", "y"]
    row = ds.manifest.iloc[0]
    assert (row["video_id"], row["patient_id"], row["label"], row["label_name"], row["n_frames"]) == ("v1", "p1", 1, "y", 3)
    assert row["fps"] == 3.0
    arr = ds.frames("v1")
    assert arr.dtype == np.uint8 and arr.shape == (3, 50, 75)
    info = json.loads((tmp_path / "ds" / "dataset.json").read_text())
    assert info["n_frames"] == 3 and info["class_counts"] == {"x": 0, "y": 1}


def test_resize_short_side_keeps_aspect():
    out = resize_short_side(np.zeros((2, 64, 128), np.uint8), 32)
    assert out.shape == (2, 32, 64)


def test_writer_rejects_bad_input(tmp_path):
    w = DatasetWriter(tmp_path, "bad", ["x"])
    with pytest.raises(DatasetError, match="not one of the classes"):
        w.add_video("v", "p", "nope", np.zeros((1, 8, 8), np.uint8))
    with pytest.raises(DatasetError, match="expected uint8"):
        w.add_video("v", "p", "x", np.zeros((1, 8, 8), np.float32))
    w.add_video("v", "p", "x", np.zeros((1, 8, 8), np.uint8))
    with pytest.raises(DatasetError, match="added twice"):
        w.add_video("v", "p", "x", np.zeros((1, 8, 8), np.uint8))
    w.abort()
    assert not (tmp_path / "bad").exists()


def test_interrupted_write_leaves_nothing_that_looks_finished(tmp_path):
    with pytest.raises(RuntimeError):
        with DatasetWriter(tmp_path, "ds", ["x"]) as w:
            w.add_video("v", "p", "x", np.zeros((1, 8, 8), np.uint8))
            raise RuntimeError("killed")
    assert not (tmp_path / "ds").exists()
    assert not list(tmp_path.iterdir())


def test_missing_frames_file_is_named(toy_dataset):
    victim = next((toy_dataset / "frames").glob("*.npy"))
    victim.unlink()
    with pytest.raises(DatasetError, match=f"frames file .*{victim.name} is missing"):
        load_dataset(toy_dataset)


@pytest.mark.parametrize("row,column,value,message", [
    (2, "label", 7, r"label 7 outside classes.json \(3 classes"),
    (0, "n_frames", 99, r"expected uint8 \[99, H, W\]"),
])
def test_corrupt_manifest_row_is_named(toy_dataset, row, column, value, message):
    m = pd.read_csv(toy_dataset / "manifest.csv")
    m.loc[row, column] = value
    m.to_csv(toy_dataset / "manifest.csv", index=False)
    with pytest.raises(DatasetError, match=message):
        load_dataset(toy_dataset)


def test_missing_column_and_folder(toy_dataset, tmp_path):
    m = pd.read_csv(toy_dataset / "manifest.csv").drop(columns=["patient_id"])
    m.to_csv(toy_dataset / "manifest.csv", index=False)
    with pytest.raises(DatasetError, match=r"lacks columns \['patient_id'\]"):
        load_dataset(toy_dataset)
    with pytest.raises(DatasetError, match="does not exist"):
        load_dataset(tmp_path / "nowhere")


def test_video_id_escaping_the_dataset_is_refused(toy_dataset, tmp_path):
    """A video_id with ../ loaded an .npy from outside the dataset."""
    np.save(tmp_path / "outside.npy", np.zeros((4, 40, 40), np.uint8))
    manifest = pd.read_csv(toy_dataset / "manifest.csv", dtype=str)
    manifest.loc[0, "video_id"] = "../../outside"
    manifest.to_csv(toy_dataset / "manifest.csv", index=False)
    with pytest.raises(DatasetError, match=r"manifest.csv row 2.*'\.\./\.\./outside'.*plain file name"):
        load_dataset(toy_dataset)
    from hico.data.standard import StandardDataset  # the reader refuses it too

    ds = StandardDataset(toy_dataset, manifest, ["a", "b", "c"])
    with pytest.raises(DatasetError, match="plain file name"):
        ds.frames("../../outside")


def test_truncated_frames_file_is_named(toy_dataset):
    """A truncated .npy gave "mmap length is greater than file size", with no path."""
    path = toy_dataset / "frames" / "toy-p0-v0.npy"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DatasetError, match=r"toy-p0-v0\.npy.*(damaged|truncated)"):
        load_dataset(toy_dataset)
    ds = load_dataset(toy_dataset, check_frames=False)
    with pytest.raises(DatasetError, match=r"toy-p0-v0\.npy"):
        ds.frames("toy-p0-v0")


@pytest.mark.parametrize("value, shown", [("two", "'two'"), ("", "empty"), ("1.5", "'1.5'")])
def test_label_that_is_not_a_class_index_is_named(toy_dataset, value, shown):
    """A label `two` or an empty label gave a bare TypeError."""
    m = pd.read_csv(toy_dataset / "manifest.csv", dtype=str, keep_default_na=False)
    m.loc[3, "label"] = value
    m.to_csv(toy_dataset / "manifest.csv", index=False)
    with pytest.raises(DatasetError, match=rf"manifest.csv row 5 \(video_id='toy-p1-v1'\): label is {shown}"):
        load_dataset(toy_dataset)


def test_writer_folders_get_the_umask_permissions(tmp_path):
    """mkdtemp made the dataset folder 0700, unreadable to the group of a shared data root."""
    old = os.umask(0o002)
    try:
        with DatasetWriter(tmp_path, "ds", ["x"]) as w:
            w.add_video("v", "p", "x", np.zeros((1, 8, 8), np.uint8))
    finally:
        os.umask(old)
    for p in (tmp_path / "ds", tmp_path / "ds" / "frames"):
        assert stat.S_IMODE(p.stat().st_mode) == 0o775, p
    assert stat.S_IMODE((tmp_path / "ds" / "frames" / "v.npy").stat().st_mode) == 0o664


def test_read_frames_equals_the_memory_mapped_frames(tmp_path):
    """read_frames (the loader's per-sample read) returns exactly the frames np.load maps."""
    rng = np.random.default_rng(3)
    arrays = {"v0": rng.integers(0, 256, (7, 12, 17), dtype=np.uint8), "v1": rng.integers(0, 256, (1, 9, 5), dtype=np.uint8)}
    with DatasetWriter(tmp_path, "rf", ["a"], store_size=None) as w:
        for vid, arr in arrays.items():
            w.add_video(vid, vid, "a", arr)
    ds = load_dataset(tmp_path / "rf")
    assert set(ds.headers) == {"v0", "v1"}  # filled by the check, so forked loader workers inherit it
    assert ds.headers["v0"].shape == (7, 12, 17)
    for idx in ([0], [6, 0, 3], [2, 2, 2], np.array([5, 1])):
        got = ds.read_frames("v0", idx)
        assert got.dtype == np.uint8 and got.shape == (len(idx), 12, 17)
        np.testing.assert_array_equal(got, np.stack([ds.frames("v0")[i] for i in idx]))
        np.testing.assert_array_equal(got, arrays["v0"][list(idx)])
    np.testing.assert_array_equal(ds.read_frames("v1", [0, 0]), arrays["v1"][[0, 0]])
    with pytest.raises(IndexError, match=r"'v0'.*7 frames.*\[7, -1\]"):
        ds.read_frames("v0", [1, 7, -1])
    fresh = load_dataset(tmp_path / "rf", check_frames=False)
    assert fresh.headers == {}
    np.testing.assert_array_equal(fresh.read_frames("v0", [4]), arrays["v0"][[4]])
    assert fresh.headers["v0"] == ds.headers["v0"]


def test_read_frames_of_a_damaged_file_names_it(toy_dataset):
    path = toy_dataset / "frames" / "toy-p0-v0.npy"
    ds = load_dataset(toy_dataset)  # header cached while the file was whole
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DatasetError, match=r"toy-p0-v0\.npy.*frame 3 ends before"):
        ds.read_frames("toy-p0-v0", [0, 3])
    with pytest.raises(DatasetError, match=r"toy-p0-v0\.npy.*(damaged|truncated)"):
        load_dataset(toy_dataset, check_frames=False).read_frames("toy-p0-v0", [0])
    np.save(path, np.zeros((4, 40, 40), dtype=np.float32))
    with pytest.raises(DatasetError, match=r"toy-p0-v0\.npy.*float32.*expected uint8"):
        load_dataset(toy_dataset)

"""Issue 11, data side: prepare never loses or overwrites its input, and every input it leaves
out, truncates or merges is named in ``prepare_report.json``. Exact inputs from the issue."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from hico.cli import main as hico_main
from hico.data.sources import get_source
from hico.data.standard import load_dataset
from hico.errors import HicoError

try:
    import fixtures_http as fx
except ImportError:  # tests/ imported as a package
    from tests import fixtures_http as fx

OPTS = {"progress": False, "workers": 1}


tree_digest = fx.tree_digest


def _clips(root: Path) -> Path:
    fx.make_video(root / "sick" / "v1.mp4", 10, 25)
    fx.make_video(root / "healthy" / "v2.mp4", 12, 25)
    return root


def _report(ds: Path) -> dict:
    return json.loads((ds / "prepare_report.json").read_text())


# ---------------------------------------------------------------------------- item 1


def test_issue_command_prepare_into_its_own_input_is_refused(tmp_path, monkeypatch, capsys):
    """`prepare video_folder --raw data/clips --out data --name clips` replaced the raw videos."""
    monkeypatch.chdir(tmp_path)
    _clips(Path("data/clips"))
    before = tree_digest("data/clips")
    rc = hico_main(["prepare", "video_folder", "--raw", "data/clips", "--out", "data", "--name", "clips",
                    "--set", "progress=false"])
    err = capsys.readouterr().err
    assert rc != 0 and "data/clips" in err and "overlap" in err
    assert tree_digest("data/clips") == before
    assert sorted(p.name for p in Path("data").iterdir()) == ["clips"]  # no temp folder, no report left


def test_pocus_prepared_over_its_raw_folder_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    fx.make_video(Path("data/pocus/data/pocus_videos/convex/Cov_a.mp4"), 10, 25)
    fx.make_video(Path("data/pocus/data/pocus_videos/convex/Reg_b.mp4"), 10, 25)
    before = tree_digest("data/pocus")
    with pytest.raises(HicoError, match="overlap"):
        get_source("pocus").prepare("data/pocus", "data", OPTS)  # name defaults to pocus
    assert tree_digest("data/pocus") == before


@pytest.mark.parametrize("raw, out, name", [
    ("data", "data", "clips"),  # the output would land inside the raw folder
    ("data/clips/raw", "data", "clips"),  # the raw folder lies inside the output
    ("data/clips/raw", "data/clips/raw/..", "raw"),  # the same folder, spelled differently
])
def test_outputs_never_overlap_inputs(tmp_path, monkeypatch, raw, out, name):
    monkeypatch.chdir(tmp_path)
    _clips(Path(raw))
    before = tree_digest("data")
    with pytest.raises(HicoError, match="overlap"):
        get_source("video_folder").prepare(raw, out, OPTS, name=name)
    assert tree_digest("data") == before


def test_a_folder_that_is_not_a_prepared_dataset_is_never_replaced(tmp_path):
    raw = _clips(tmp_path / "raw")
    mine = tmp_path / "data" / "clips"
    (mine / "notes").mkdir(parents=True)
    (mine / "notes" / "keep.txt").write_text("my notes")
    with pytest.raises(HicoError, match="not a dataset"):
        get_source("video_folder").prepare(raw, tmp_path / "data", OPTS, name="clips")
    assert (mine / "notes" / "keep.txt").read_text() == "my notes"
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["clips"]


def test_a_prepared_dataset_is_replaced_by_a_new_prepare(tmp_path):
    raw = _clips(tmp_path / "raw")
    first = get_source("video_folder").prepare(raw, tmp_path / "data", OPTS, name="clips")
    fx.make_video(raw / "sick" / "v3.mp4", 8, 25)
    again = get_source("video_folder").prepare(raw, tmp_path / "data", OPTS, name="clips")
    assert again == first and len(load_dataset(again)) == 3
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["clips"]


# ---------------------------------------------------------------------------- item 7


def test_byte_identical_copies_are_reported_and_share_a_patient(tmp_path):
    from hico.data.folds import make_folds

    raw = tmp_path / "clips"
    for i in range(6):
        fx.make_video(raw / ("sick" if i % 2 else "healthy") / f"v{i}.mp4", 6 + i, 25)
    (raw / "sick" / "v1 copy.mp4").write_bytes((raw / "sick" / "v1.mp4").read_bytes())
    (raw / "healthy" / "v1 again.mp4").write_bytes((raw / "sick" / "v1.mp4").read_bytes())  # and mislabelled
    out = get_source("video_folder").prepare(raw, tmp_path / "data", OPTS, name="clips")
    m = load_dataset(out).manifest.set_index("video_id")
    copies = ["v1", "v1_copy", "v1_again"]
    assert m.loc[copies, "patient_id"].nunique() == 1 and m.loc["v1", "patient_id"] != "v1"
    assert m.drop(copies)["patient_id"].tolist() == m.drop(copies).index.tolist()  # the rest untouched
    (dup,) = _report(out)["duplicates"]
    assert sorted(dup["video_ids"]) == sorted(copies) and dup["labels"] == ["healthy", "sick"]
    assert dup["patient_id"] == m.loc["v1", "patient_id"]
    for seed in range(3):
        folds = make_folds(m.reset_index(), 3, seed).set_index("video_id")["fold"]
        assert folds[copies].nunique() == 1


def test_the_same_file_listed_twice_in_a_csv_is_one_patient(tmp_path):
    root = tmp_path / "csvdata"
    fx.make_video(root / "v" / "a.mp4", 10, 25)
    fx.make_video(root / "v" / "b.mp4", 12, 25)
    (root / "labels.csv").write_text("path,label,patient\nv/a.mp4,x,p1\nv/b.mp4,y,p2\nv/a.mp4,x,p3\n")
    out = get_source("video_folder").prepare(root, tmp_path / "data", OPTS)
    m = load_dataset(out).manifest.set_index("video_id")
    assert m.loc["a", "patient_id"] == m.loc["a_2", "patient_id"] == "p1+p3" and m.loc["b", "patient_id"] == "p2"
    assert [sorted(d["video_ids"]) for d in _report(out)["duplicates"]] == [["a", "a_2"]]


# ---------------------------------------------------------------------------- item 10


def _cut(path: Path, share: float) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * share)])
    return path


def test_truncated_videos_are_listed_with_kept_and_expected_frames(tmp_path):
    """Truncated videos kept 13 of 30 frames with nothing in the report."""
    raw = tmp_path / "clips"
    fx.make_video(raw / "a" / "long.avi", 250, 25)  # 10 s: 30 frames at 3 Hz
    _cut(fx.make_video(raw / "a" / "cut.avi", 250, 25), 0.45)
    _cut(fx.make_video(raw / "b" / "short.gif", 40, 10), 0.5)  # 4 s: 13 frames at 3 Hz
    fx.make_video(raw / "b" / "fine.gif", 40, 10)
    out = get_source("video_folder").prepare(raw, tmp_path / "data", OPTS, name="clips")
    m = load_dataset(out).manifest.set_index("video_id")
    rep = _report(out)
    truncated = {t["video_id"]: t for t in rep["truncated"]}
    assert sorted(truncated) == ["cut", "short"] and rep["n_truncated"] == 2
    assert m.loc["long", "n_frames"] == 30 and m.loc["fine", "n_frames"] == 13
    assert truncated["cut"]["expected_frames"] == 30 and truncated["cut"]["kept_frames"] == m.loc["cut", "n_frames"] < 30
    assert truncated["short"]["kept_frames"] == m.loc["short", "n_frames"] < 13
    assert truncated["short"]["expected_frames"] is None and "damaged" in truncated["short"]["reason"]  # a gif declares no count
    assert truncated["cut"]["source_file"] == "a/cut.avi" and truncated["cut"]["reason"]


def test_empty_class_folders_and_unsupported_files_are_listed(tmp_path):
    """Empty class folders and .webm/.dcm/.part files were skipped with skipped: []."""
    raw = tmp_path / "clips"
    fx.make_video(raw / "a" / "v1.mp4", 10, 25)
    fx.make_video(raw / "b" / "v2.mp4", 10, 25)
    (raw / "empty").mkdir()
    for name in ("clip.webm", "scan.dcm", "v3.mp4.part"):
        (raw / "b" / name).write_bytes(b"\x00" * 64)
    (raw / "b" / "no_frames").mkdir()
    (raw / "loose.mp4").write_bytes((raw / "a" / "v1.mp4").read_bytes())
    (raw / "a" / ".DS_Store").write_bytes(b"finder")  # hidden: not an input
    out = get_source("video_folder").prepare(raw, tmp_path / "data", OPTS, name="clips")
    skipped = {s["source_file"]: s["reason"] for s in _report(out)["skipped"]}
    assert sorted(skipped) == ["b/clip.webm", "b/no_frames", "b/scan.dcm", "b/v3.mp4.part", "empty", "loose.mp4"]
    assert "empty" in skipped["empty"] and "'.webm'" in skipped["b/clip.webm"] and "class folder" in skipped["loose.mp4"]
    assert _report(out)["n_skipped"] == 6 and len(load_dataset(out)) == 2


def test_csv_paths_outside_the_dataset_folder_are_refused(tmp_path):
    """A CSV path like ../outside/x.mp4 was read from outside the dataset folder."""
    root = tmp_path / "ds"
    fx.make_video(root / "v" / "a.mp4", 10, 25)
    fx.make_video(root / "v" / "b.mp4", 12, 25)
    fx.make_video(tmp_path / "outside" / "x.mp4", 14, 25)
    (root / "labels.csv").write_text(
        f"path,label\nv/a.mp4,p\nv/b.mp4,q\n../outside/x.mp4,p\nv/../../outside/x.mp4,q\n{tmp_path / 'outside' / 'x.mp4'},p\n"
    )
    out = get_source("video_folder").prepare(root, tmp_path / "data", OPTS)
    assert sorted(load_dataset(out).manifest["video_id"]) == ["a", "b"]
    skipped = _report(out)["skipped"]
    assert len(skipped) == 3 and all("outside the dataset folder" in s["reason"] for s in skipped)
    assert skipped[0]["source_file"] == "../outside/x.mp4"


def test_non_utf8_file_name_does_not_abort_prepare(tmp_path):
    """One non-UTF-8 file name aborted the whole prepare without naming the file."""
    raw = tmp_path / "clips"
    fx.make_video(raw / "a" / "v1.mp4", 10, 25)
    fx.make_video(raw / "b" / "tmp.mp4", 12, 25)
    os.rename(raw / "b" / "tmp.mp4", os.fsencode(raw / "b") + b"/caf\xe9.mp4")
    out = get_source("video_folder").prepare(raw, tmp_path / "data", OPTS, name="clips")
    m = load_dataset(out).manifest.set_index("video_id")
    assert sorted(m.index) == ["caf", "v1"] and m.loc["caf", "source_file"] == "b/caf\\xe9.mp4"
    (odd,) = _report(out)["non_utf8_names"]
    assert odd["source_file"] == "b/caf\\xe9.mp4" and odd["name"] == repr(os.fsdecode(b"b/caf\xe9.mp4"))
    manifest_bytes = (out / "manifest.csv").read_bytes()
    manifest_bytes.decode("utf-8")  # the manifest stays valid UTF-8


# ---------------------------------------------------------------------------- item 11 (data)


def test_set_classes_is_a_list_not_letters(tmp_path, capsys):
    """`--set classes=covid,regular` was split into letters."""
    raw = tmp_path / "clips"
    fx.make_video(raw / "regular" / "v1.mp4", 10, 25)
    fx.make_video(raw / "covid" / "v2.mp4", 12, 25)
    rc = hico_main(["prepare", "video_folder", "--raw", str(raw), "--out", str(tmp_path / "data"), "--name", "c",
                    "--set", "classes=regular,covid", "--set", "progress=false"])
    assert rc == 0, capsys.readouterr().err
    assert load_dataset(tmp_path / "data" / "c").classes == ["regular", "covid"]
    pocus = get_source("pocus").config({"licenses": "CC BY 4.0, CC BY-NC 4.0"})
    assert pocus["licenses"] == ["CC BY 4.0", "CC BY-NC 4.0"]
    assert get_source("chestxray2017").config({"splits": "test,val"})["splits"] == ["test", "val"]


@pytest.mark.parametrize("label, message", [
    ("", r"labels.csv: row 3 \(v/b.mp4\) has an empty label"),
    ("two", r"labels.csv row 3 has label 'two', not in the classes option \['one', 'three'\]"),
])
def test_bad_csv_label_names_file_and_row(tmp_path, label, message):
    root = tmp_path / "ds"
    fx.make_video(root / "v" / "a.mp4", 10, 25)
    fx.make_video(root / "v" / "b.mp4", 12, 25)
    (root / "labels.csv").write_text(f"path,label\nv/a.mp4,one\nv/b.mp4,{label}\n")
    with pytest.raises(HicoError, match=message):
        get_source("video_folder").prepare(root, tmp_path / "data", {**OPTS, "classes": ["one", "three"]})


def test_source_errors_are_the_suites_errors(tmp_path):
    with pytest.raises(HicoError, match="unknown option"):
        get_source("pocus").config({"fsp": 3})
    with pytest.raises(HicoError, match="unknown dataset source"):
        get_source("pokus")
    with pytest.raises(HicoError, match="label='covid'"):
        get_source("covid_blues").prepare(tmp_path / "raw", tmp_path / "out", {"label": "covid"})
    with pytest.raises(HicoError, match="max_frames"):
        get_source("video_folder").config({"max_frames": -1})

"""Issue 11, data side: prepare never loses or overwrites its input, and every input it leaves
out, truncates or merges is named in ``prepare_report.json``. Exact inputs from the issue."""

from __future__ import annotations

import hashlib
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

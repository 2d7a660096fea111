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

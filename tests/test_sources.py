"""Every dataset source, offline: fixture files in each source's real layout served over a local
HTTP server (GitHub raw + trees API, Zenodo, MathWorks, Drive stand-ins), then ``prepare`` into
the standard format; restricted sets from fixture folders; the real POCUS videos when
``../shared`` is there."""

from __future__ import annotations

import csv
import importlib
import json
import shutil
import time
import types
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from hico.data.download import ChecksumError, UnsafeArchiveError
from hico.data.sources import fatty_liver as fatty_liver_module
from hico.data.sources import get_source, list_sources, main_prepare
from hico.data.sources import pocus as pocus_module
from hico.data.sources._common import LOCK_DIR, DataNotFoundError, PrepareError
from hico.data.standard import load_dataset
from hico.data.video import select_times

try:
    from conftest import shared_path
except ImportError:  # tests/ imported as a package
    from tests.conftest import shared_path

try:
    import fixtures_http as fx
except ImportError:  # tests/ imported as a package
    from tests import fixtures_http as fx

http_server = fx.http_server  # a fixture: pytest finds it by its name in this module
git_sha, level, md5, sha256, zip_bytes, zip_tree = fx.git_sha, fx.level, fx.md5, fx.sha256, fx.zip_bytes, fx.zip_tree
make_frame_folder, make_image, make_video = fx.make_frame_folder, fx.make_image, fx.make_video

SHARED_POCUS = Path(__file__).resolve().parents[2] / "shared" / "data" / "pocus"
SECTIONS = ("Source", "Licence", "Citation", "Label map", "Sampling", "Grouping")


@pytest.fixture(autouse=True)
def no_backoff_sleep(monkeypatch):
    import pooch.core

    monkeypatch.setattr(pooch.core, "time", types.SimpleNamespace(sleep=lambda s: None))


def _opts(tmp_path: Path, server=None, api: bool = False, **kw) -> dict:
    o = {"lock_dir": str(tmp_path / "locks"), "progress": False, "retries": 1, "workers": 2}
    if server is not None:
        o["base_url"] = server.url("raw")
        if api:
            o["api_url"] = server.url("api")
    o.update(kw)
    return o


def _report(ds_dir: Path) -> dict:
    return json.loads((ds_dir / "prepare_report.json").read_text())


# ---------------------------------------------------------------------------- registry


def test_registry_lists_every_source():
    names = list_sources()
    assert {"pocus", "covid_blues", "butterfly_uscl", "busi", "fatty_liver", "chestxray2017",
            "us4", "udiat_b", "clust", "video_folder"} <= set(names)
    assert set(list_sources("public", default_only=True)) == {"pocus", "covid_blues", "butterfly_uscl", "busi", "fatty_liver"}
    assert "chestxray2017" in list_sources("public") and "chestxray2017" not in list_sources(default_only=True)
    assert set(list_sources("restricted")) >= {"us4", "udiat_b", "clust", "video_folder"}
    with pytest.raises(ValueError, match="unknown dataset source"):
        get_source("nope")


@pytest.mark.parametrize("name", list_sources())
def test_every_source_module_is_its_own_spec(name):
    mod = get_source(name)
    doc = mod.spec
    assert doc == importlib.import_module(f"hico.data.sources.{name}").__doc__
    for section in SECTIONS:
        assert any(line.strip().startswith(section) for line in doc.splitlines()), f"{name}: docstring lacks {section!r}"
    assert mod.name == name and mod.access in ("public", "restricted")
    assert isinstance(mod.options, dict)
    with pytest.raises(ValueError, match="unknown option"):
        mod.prepare("/nonexistent", "/tmp/never", {"no_such_option": 1})
    if mod.access == "restricted":
        assert mod.remote_files({}) == []


@pytest.mark.parametrize("name", ["us4", "udiat_b", "clust", "video_folder"])
def test_restricted_missing_path_says_where_to_get_and_put_the_data(tmp_path, name):
    with pytest.raises(DataNotFoundError) as e:
        get_source(name).prepare(tmp_path / "absent", tmp_path / "out", {})
    msg = str(e.value)
    assert "Where to get it" in msg and "Where to put it" in msg and str(tmp_path / "absent") in msg
    with pytest.raises(DataNotFoundError):
        get_source(name).download(tmp_path / "absent", {})


def test_shipped_pocus_lock_pins_the_upstream_tree():
    lock = json.loads((LOCK_DIR / "pocus.json").read_text())
    videos = {k: v for k, v in lock["files"].items() if k.startswith("data/pocus_videos/convex/")}
    assert len(videos) == 124 and all(len(v["git_blob_sha1"]) == 40 for v in videos.values())
    tsv = SHARED_POCUS / "upstream_convex_tree.tsv"
    if tsv.exists():
        with open(tsv, newline="") as fh:
            rows = {r["file"]: r["git_blob_sha1"] for r in csv.DictReader(fh, delimiter="\t")}
        assert {k.rsplit("/", 1)[1]: v["git_blob_sha1"] for k, v in videos.items()} == rows
        from hico.data.download import git_blob_sha1

        for p in sorted((SHARED_POCUS / "videos").iterdir()):  # the local copies match the pins
            assert git_blob_sha1(p) == videos[f"data/pocus_videos/convex/{p.name}"]["git_blob_sha1"], p.name


# ---------------------------------------------------------------------------- pocus


def _pocus_repo(root: Path) -> Path:
    v = root / "data" / "pocus_videos" / "convex"
    make_video(v / "Cov_test1.mp4", 40, 25)
    make_video(v / "Pneu_test2.avi", 30, 22)
    make_video(v / "Reg_test3.mpeg", 30, 25)
    make_video(v / "Reg-Atlas-test4.gif", 20, 10)
    make_video(v / "Vir_test5.mov", 30, 30)
    make_video(v / "Other_clip.mp4", 10, 25)
    (v / "Cov_broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 50)
    i = root / "data" / "pocus_images" / "convex"
    make_image(i / "Pneu_img1.png", 90)
    make_image(i / "Reg_img2.jpg", 150, mode="RGB")
    meta = root / "data" / "dataset_metadata.csv"
    meta.write_text(
        "Current location,Filename,Label,License\n"
        "pocus_videos/convex,Cov_test1,COVID-19,CC BY 4.0\n"
        "pocus_videos/convex,Pneu_test2,Bacterial pneumonia,CC BY-NC 4.0\n"
        "pocus_videos/convex,Reg_test3,regular,CC BY-NC -SA 4.0\n"
        "pocus_images/convex,Pneu_img1,Bacterial pneumonia,CC BY 4.0\n"
    )
    return root


def _pocus_lock(lock_dir: Path, repo: Path, wrong: str | None = None) -> None:
    """Like the shipped lock: the video folder pinned by git blob SHA-1, the rest left to the API."""
    files = {}
    for p in sorted((repo / "data" / "pocus_videos" / "convex").iterdir()):
        sha = git_sha(p.read_bytes()) if p.name != wrong else "0" * 40
        files[f"data/pocus_videos/convex/{p.name}"] = {"git_blob_sha1": sha, "size": p.stat().st_size}
    lock_dir.mkdir(parents=True, exist_ok=True)
    (lock_dir / "pocus.json").write_text(json.dumps({
        "source": "pocus",
        "github": {"repo": "jannisborn/covid19_ultrasound", "ref": "master", "resolved": ["data/pocus_videos/convex/"]},
        "files": files,
    }))


def test_pocus_download_and_prepare_end_to_end(http_server, tmp_path):
    repo = _pocus_repo(tmp_path / "repo")
    http_server.add_github("jannisborn/covid19_ultrasound", "master", repo)
    _pocus_lock(tmp_path / "locks", repo)
    http_server.break_next("raw/data/pocus_videos/convex/Cov_test1.mp4", at=2000)  # a broken answer
    opts = _opts(tmp_path, http_server, api=True)
    pocus = get_source("pocus")
    raw = pocus.download(tmp_path / "raw", opts)

    reqs = http_server.requests_for("raw/data/pocus_videos/convex/Cov_test1.mp4")
    assert reqs[0]["truncated"] and len(reqs) == 2  # the broken answer was retried, never used
    for p in repo.rglob("*"):
        if p.is_file():
            assert (raw / p.relative_to(repo)).read_bytes() == p.read_bytes()
    lock = json.loads((tmp_path / "locks" / "pocus.json").read_text())
    assert lock["files"]["data/pocus_images/convex/Pneu_img1.png"]["git_blob_sha1"] == git_sha((repo / "data/pocus_images/convex/Pneu_img1.png").read_bytes())
    assert set(lock["github"]["resolved"]) == {"data/pocus_videos/convex/", "data/dataset_metadata.csv", "data/pocus_images/convex/"}

    n_api = len(http_server.requests_for("api/repos/jannisborn/covid19_ultrasound/git/trees/master"))
    pocus.download(raw, opts)  # everything verified in place; the file list comes from the lock
    assert len(http_server.requests_for("api/repos/jannisborn/covid19_ultrasound/git/trees/master")) == n_api

    out = pocus.prepare(raw, tmp_path / "data", {**opts, "include_viral": True, "max_failure_share": 0.2})
    ds = load_dataset(out)
    m = ds.manifest.set_index("video_id")
    assert ds.classes == ["covid", "pneumonia", "regular", "viral"]
    assert sorted(m.index) == sorted(["Cov_test1", "Pneu_test2", "Reg_test3", "Reg-Atlas-test4", "Vir_test5", "Pneu_img1", "Reg_img2"])
    assert m.loc["Pneu_test2", "label_name"] == "pneumonia" and m.loc["Reg-Atlas-test4", "label_name"] == "regular"
    assert (m["patient_id"] == m.index).all()  # grouped by source file
    assert m.loc["Cov_test1", "n_frames"] == len(list(select_times([i / 25 for i in range(40)], 3.0, 30)))
    assert m.loc["Pneu_img1", "n_frames"] == 1 and m.loc["Pneu_img1", "kind"] == "image"
    assert m.loc["Cov_test1", "license"] == "CC BY 4.0"
    assert m.loc["Cov_test1", "source_sha256"] == sha256((repo / "data/pocus_videos/convex/Cov_test1.mp4").read_bytes())
    frames = ds.frames("Reg_test3")
    assert frames.dtype == np.uint8 and min(frames.shape[1:]) == 256
    rep = _report(out)
    assert [q["source_file"] for q in rep["quarantined"]] == ["data/pocus_videos/convex/Cov_broken.mp4"]
    assert [s["source_file"] for s in rep["skipped"]] == ["data/pocus_videos/convex/Other_clip.mp4"]
    assert rep["n_videos"] == 7 and rep["class_counts"]["viral"] == 1
    info = json.loads((out / "dataset.json").read_text())
    assert info["source"] == "pocus" and "Label map" in info["spec"] and info["sampling"]["fps"] == 3.0

    # default: no viral class; licence filter
    out2 = pocus.prepare(raw, tmp_path / "data", {**opts, "max_failure_share": 0.2, "licenses": ["CC BY-NC-SA 4.0", "CC BY 4.0"]}, name="pocus_by")
    m2 = load_dataset(out2).manifest
    assert set(m2["video_id"]) == {"Cov_test1", "Reg_test3", "Pneu_img1"}

    # above the failure share: nothing written, the report names the file
    with pytest.raises(PrepareError, match="Cov_broken"):
        pocus.prepare(raw, tmp_path / "strict", {**opts, "max_failure_share": 0.05})
    assert not (tmp_path / "strict" / "pocus").exists()
    assert json.loads((tmp_path / "strict" / "pocus.prepare_report.json").read_text())["n_quarantined"] == 1


def test_pocus_wrong_checksum_is_refused(http_server, tmp_path):
    repo = _pocus_repo(tmp_path / "repo")
    http_server.add_github("jannisborn/covid19_ultrasound", "master", repo)
    _pocus_lock(tmp_path / "locks", repo, wrong="Reg_test3.mpeg")
    with pytest.raises(ChecksumError, match="Reg_test3.mpeg"):
        get_source("pocus").download(tmp_path / "raw", _opts(tmp_path, http_server, api=True, include_images=False))
    assert not (tmp_path / "raw" / "data/pocus_videos/convex/Reg_test3.mpeg").exists()


def test_pocus_local_copy_with_manifest(tmp_path):
    """The ../shared/data/pocus layout: videos/ + manifest.tsv, whose sha256 is checked."""
    raw = tmp_path / "copy"
    rows = []
    for name, label, lic in [("Cov_a.mp4", "COVID-19", "CC BY 4.0"), ("pneu-b.avi", "Bacterial pneumonia", "CC BY-NC 4.0"),
                             ("Reg_c.gif", "regular", "CC BY-NC 4.0"), ("Reg_d.mp4", "regular", "CC BY 4.0")]:
        p = make_video(raw / "videos" / name, 12, 10 if name.endswith(".gif") else 25)
        digest = sha256(p.read_bytes()) if name != "Reg_d.mp4" else "f" * 64  # one copy is corrupt
        rows.append(f"videos/{name}\t{label}\t{lic}\tsrc\t25\t64x48\t12\t{p.stat().st_size}\t{digest}\tx")
    (raw / "manifest.tsv").write_text(
        "file\tlabel\tlicense\tsource_url\tframerate\tresolution\tframes\tbytes\tsha256\tgit_blob_sha1\n" + "\n".join(rows) + "\n"
    )
    out = get_source("pocus").prepare(raw, tmp_path / "data", _opts(tmp_path, max_failure_share=0.3))
    m = load_dataset(out).manifest.set_index("video_id")
    assert dict(m["label_name"]) == {"Cov_a": "covid", "pneu-b": "pneumonia", "Reg_c": "regular"}
    rep = _report(out)
    assert rep["quarantined"][0]["source_file"] == "videos/Reg_d.mp4" and "manifest" in rep["quarantined"][0]["reason"]
    assert rep["expected"]["class_counts_manifest"] == {"covid": 1, "pneumonia": 1, "regular": 2}


# ---------------------------------------------------------------------------- covid_blues


def _blues_repo(root: Path) -> Path:
    for i, stem in enumerate(["patient_1_L1", "patient_1_R1", "patient_2_L1", "patient_2_L1_2", "patient_3_R2"]):
        make_video(root / "lus_videos" / f"{stem}.mp4", 20 + i, 25, size=(40, 40))  # distinct files
    (root / "clinical_variables.csv").write_text("patient_id,cov_test,number_video_files,pat_age\n1,1,2.0,70\n2,0,2.0,55\n")
    (root / "severity.csv").write_text(
        "video_file,Severity Score,A-lines,B-lines,comments\n"
        "patient_1_L1,2.0,yes,yes ,\"broken pleura line, B-lines\"\n"
        "patient_1_R1,0.0,no,no,\n"
        "patient_2_L1,1.0,yes,no,\n"
    )
    (root / "LICENSE").write_text("Attribution-NoDerivatives 4.0 International\n")
    (root / ".github" / "images").mkdir(parents=True)
    (root / ".github" / "images" / "sample_video.gif").write_bytes(b"GIF89a")
    return root


def test_covid_blues_end_to_end(http_server, tmp_path):
    mod = get_source("covid_blues")
    repo = _blues_repo(tmp_path / "repo")
    http_server.add_github("NinaWie/COVID-BLUES", mod.options["ref"], repo)
    opts = _opts(tmp_path, http_server, api=True)
    names = sorted(r.path for r in mod.remote_files(opts))
    assert "LICENSE" in names and "lus_videos/patient_2_L1_2.mp4" in names and not any(".github" in n for n in names)
    raw = mod.download(tmp_path / "raw", opts)
    lock = json.loads((tmp_path / "locks" / "covid_blues.json").read_text())
    assert lock["files"]["severity.csv"]["git_blob_sha1"] == git_sha((repo / "severity.csv").read_bytes())
    out = mod.prepare(raw, tmp_path / "data", opts)
    ds = load_dataset(out)
    m = ds.manifest.set_index("video_id")
    assert ds.classes == ["pcr_negative", "pcr_positive"]
    assert dict(m["label_name"]) == {"patient_1_L1": "pcr_positive", "patient_1_R1": "pcr_positive",
                                     "patient_2_L1": "pcr_negative", "patient_2_L1_2": "pcr_negative"}
    assert dict(m["patient_id"]) == {"patient_1_L1": "patient_1", "patient_1_R1": "patient_1",
                                     "patient_2_L1": "patient_2", "patient_2_L1_2": "patient_2"}
    assert m.loc["patient_1_L1", "severity"] == 2 and m.loc["patient_1_L1", "b_lines"] == "yes"
    assert np.isnan(m.loc["patient_2_L1_2", "severity"])
    assert m.loc["patient_2_L1", "zone"] == "L1"
    assert _report(out)["skipped"][0]["source_file"] == "lus_videos/patient_3_R2.mp4"


@pytest.mark.parametrize("label, classes, expected, skipped", [
    ("pcr", ["pcr_negative", "pcr_positive"],
     {"patient_1_L1": "pcr_positive", "patient_1_R1": "pcr_positive", "patient_2_L1": "pcr_negative",
      "patient_2_L1_2": "pcr_negative"}, ["patient_3_R2"]),
    ("b_lines", ["b_lines_absent", "b_lines_present"],
     {"patient_1_L1": "b_lines_present", "patient_1_R1": "b_lines_absent", "patient_2_L1": "b_lines_absent"},
     ["patient_2_L1_2", "patient_3_R2"]),
    ("severity", ["severity_0", "severity_1", "severity_2", "severity_3"],
     {"patient_1_L1": "severity_2", "patient_1_R1": "severity_0", "patient_2_L1": "severity_1"},
     ["patient_2_L1_2", "patient_3_R2"]),
])
def test_covid_blues_label_option(tmp_path, label, classes, expected, skipped):
    raw = _blues_repo(tmp_path / "repo")
    with open(raw / "severity.csv", "a") as fh:  # patient 3 has no PCR result but a severity row
        fh.write("patient_3_R2,,yes,,\n")
    out = get_source("covid_blues").prepare(raw, tmp_path / "data", _opts(tmp_path, label=label), name=f"blues_{label}")
    ds = load_dataset(out)
    m = ds.manifest.set_index("video_id")
    assert ds.classes == classes
    assert dict(m["label_name"]) == expected
    assert all(m.loc[v, "patient_id"] == "patient_" + v.split("_")[1] for v in m.index)
    assert list(m["label"]) == [classes.index(n) for n in m["label_name"]]
    rep = _report(out)
    assert sorted(Path(s["source_file"]).stem for s in rep["skipped"]) == skipped
    assert all(s["reason"].startswith(f"label={label}:") for s in rep["skipped"])
    assert json.loads((out / "dataset.json").read_text())["label"] == label
    assert "CC BY-NC-ND 4.0" in json.loads((out / "dataset.json").read_text())["license"]


def test_covid_blues_unknown_label_option_is_refused(tmp_path):
    with pytest.raises(ValueError, match="pcr"):
        get_source("covid_blues").prepare(_blues_repo(tmp_path / "repo"), tmp_path / "data", _opts(tmp_path, label="covid"))


def test_covid_blues_licence_is_non_commercial():
    mod = get_source("covid_blues")
    assert mod.license.startswith("CC BY-NC-ND 4.0") and "NonCommercial" in mod.spec
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    row = next(line for line in readme.splitlines() if line.startswith("| `covid_blues`"))
    assert "CC BY-NC-ND 4.0" in row and "CC BY-ND 4.0" not in row


@pytest.mark.shared
def test_real_covid_blues_labels_match_severity_csv(tmp_path):
    """All 362 real videos, one 32-px frame each: the class counts of every label option are
    those of severity.csv / clinical_variables.csv, and each patient's videos share a fold."""
    from hico.data.folds import make_folds

    raw = shared_path("data", "covid_blues")
    with open(raw / "severity.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    severity = Counter(f"severity_{int(float(r['Severity Score']))}" for r in rows)
    b_lines = Counter("b_lines_present" if r["B-lines"].strip() == "yes" else "b_lines_absent" for r in rows)
    assert severity == {"severity_0": 120, "severity_1": 111, "severity_2": 83, "severity_3": 48}  # README there
    opts = _opts(tmp_path, max_frames=1, store_size=32, fps=None)
    for label, want in [("b_lines", b_lines), ("severity", severity)]:
        out = get_source("covid_blues").prepare(raw, tmp_path / "data", {**opts, "label": label}, name=label)
        ds = load_dataset(out)
        rep = _report(out)
        assert rep["class_counts"] == dict(want) and rep["n_skipped"] == 0 and rep["n_quarantined"] == 0
        assert rep["duplicates"] == []  # the 362 files are distinct (manifest.tsv sha256)
        m = ds.manifest
        assert len(m) == 362 and m["patient_id"].nunique() == 63
        assert (m["patient_id"] == ["patient_" + v.split("_")[1] for v in m["video_id"]]).all()
        folds = make_folds(m, 5, 0).set_index("video_id")["fold"]
        assert (m.assign(fold=m["video_id"].map(folds)).groupby("patient_id")["fold"].nunique() == 1).all()
    pcr = load_dataset(get_source("covid_blues").prepare(raw, tmp_path / "data", opts, name="pcr")).manifest
    per_patient = pcr.groupby("patient_id")["label_name"].agg(set)
    assert (per_patient.map(len) == 1).all()
    assert Counter(next(iter(s)) for s in per_patient) == {"pcr_positive": 33, "pcr_negative": 30}


# ---------------------------------------------------------------------------- butterfly_uscl


def test_butterfly_uscl_archive_of_frame_folders(http_server, tmp_path):
    src = tmp_path / "Butterfly"
    make_frame_folder(src / "Reg-Normal_Lung_mp4", 12)
    make_frame_folder(src / "Cov-Confluent_B_lines_mp4", 35)
    make_frame_folder(src / "Xyz-unlabelled_mp4", 3)
    archive = zip_tree(src, "Butterfly/")
    http_server.add("raw/butterfly_uscl.download", archive)
    mod = get_source("butterfly_uscl")
    opts = _opts(tmp_path, http_server)
    raw = mod.download(tmp_path / "raw", opts)
    lock = json.loads((tmp_path / "locks" / "butterfly_uscl.json").read_text())
    assert lock["files"]["butterfly_uscl.download"]["sha256"] == sha256(archive)  # recorded at first download

    out = mod.prepare(raw, tmp_path / "data", opts)
    ds = load_dataset(out)
    m = ds.manifest.set_index("video_id")
    assert ds.classes == ["regular", "covid"]
    assert dict(m["n_frames"]) == {"Reg-Normal_Lung_mp4": 12, "Cov-Confluent_B_lines_mp4": 35}  # all frames kept
    levels = [int(f[-5:, -5:].mean().round()) for f in ds.frames("Reg-Normal_Lung_mp4")]
    assert np.allclose(levels, [level(i) for i in range(12)], atol=3)  # frame10 after frame9
    assert "Xyz" in _report(out)["skipped"][0]["source_file"]

    # the Drive file changes: the lock refuses it
    http_server.add("raw/butterfly_uscl.download", zip_tree(src, "Other/"))
    (raw / "butterfly_uscl.download").unlink()
    with pytest.raises(ChecksumError, match="recorded"):
        mod.download(raw, opts)


def test_butterfly_uscl_default_remote_is_google_drive():
    (rf,) = get_source("butterfly_uscl").remote_files({})
    assert rf.gdrive_id == "1zefZInevopumI-VdX6r7Bj-6pj_WILrr" and "drive.google.com" in rf.url and rf.checksum == "lock"


# ---------------------------------------------------------------------------- busi


def _busi_zip(tmp_path: Path, evil: bool = False) -> bytes:
    root = tmp_path / "busi_src" / "Dataset_BUSI_with_GT"
    make_image(root / "benign" / "benign (1).png", 50)
    make_image(root / "benign" / "benign (1)_mask.png", 255)
    make_image(root / "benign" / "benign (2).png", 60, mode="RGB")
    make_image(root / "malignant" / "malignant (1).png", 70)
    make_image(root / "malignant" / "malignant (1)_mask_1.png", 255)
    make_image(root / "normal" / "normal (1).png", 80)
    entries = {f"Dataset_BUSI_with_GT/{p.relative_to(root).as_posix()}": p.read_bytes() for p in root.rglob("*.png")}
    if evil:
        entries["Dataset_BUSI_with_GT/../../../evil.png"] = b"x"
    return zip_bytes(entries)


def test_busi_zip_images_are_single_frame_videos(http_server, tmp_path):
    http_server.add("raw/Dataset_BUSI.zip", _busi_zip(tmp_path))
    mod = get_source("busi")
    opts = _opts(tmp_path, http_server)
    out = mod.prepare(mod.download(tmp_path / "raw", opts), tmp_path / "data", opts)
    ds = load_dataset(out)
    m = ds.manifest.set_index("video_id")
    assert dict(m["label_name"]) == {"benign_1": "benign", "benign_2": "benign", "malignant_1": "malignant", "normal_1": "normal"}
    assert (m["n_frames"] == 1).all()
    assert ds.frames("normal_1").shape == (1, 256, 384)
    assert _report(out)["expected"]["class_counts"] == {"benign": 437, "malignant": 210, "normal": 133}


def test_busi_zip_with_path_escape_is_refused(http_server, tmp_path):
    http_server.add("raw/Dataset_BUSI.zip", _busi_zip(tmp_path, evil=True))
    mod = get_source("busi")
    opts = _opts(tmp_path, http_server)
    raw = mod.download(tmp_path / "raw", opts)
    with pytest.raises(UnsafeArchiveError, match="outside"):
        mod.prepare(raw, tmp_path / "data", opts)
    assert not list(tmp_path.rglob("evil.png")) and not (tmp_path / "data" / "busi").exists()


# ---------------------------------------------------------------------------- fatty_liver


def _liver_patients(n: int = 4) -> list[dict]:
    rng = np.random.default_rng(0)
    return [
        {"id": i + 1, "class": int(i % 2 == 0), "fat": float(10 * i + 2.5),
         "images": rng.integers(0, 256, (10, 24, 36), dtype=np.uint8)}
        for i in range(n)
    ]


def _write_mat_v5(path: Path, patients: list[dict]) -> None:
    from scipy.io import savemat

    arr = np.zeros((1, len(patients)), dtype=[("id", "O"), ("class", "O"), ("fat", "O"), ("images", "O")])
    for j, p in enumerate(patients):
        arr[0, j] = (np.array([[float(p["id"])]]), np.array([[float(p["class"])]]), np.array([[p["fat"]]]), p["images"])
    savemat(str(path), {"data": arr})


def _write_mat_v73(path: Path, patients: list[dict]) -> None:
    """MATLAB's v7.3 layout: HDF5 with a 512-byte MATLAB header; a struct array is a group whose
    fields are datasets of object references; arrays are stored transposed (column-major)."""
    import h5py

    with h5py.File(path, "w", userblock_size=512) as f:
        refs = f.create_group("#refs#")
        g = f.create_group("data")
        g.attrs["MATLAB_class"] = np.bytes_("struct")
        for field in ("id", "class", "fat", "images"):
            col = []
            for j, p in enumerate(patients):
                value = p[field] if field == "images" else np.array([[float(p[field])]])
                ds = refs.create_dataset(f"{field}{j}", data=np.asarray(value).T)
                col.append(ds.ref)
            g.create_dataset(field, data=np.array(col, dtype=h5py.ref_dtype).reshape(len(patients), 1))
    header = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5 schema 1.00 ."
    with open(path, "r+b") as fh:
        fh.write(header.ljust(116, b" ") + b"\x00" * 8 + b"\x00\x02" + b"IM")


@pytest.mark.parametrize("version", ["v5", "v7.3"])
def test_fatty_liver_reads_both_mat_versions(http_server, tmp_path, version):
    mod = get_source("fatty_liver")
    patients = _liver_patients()
    mat = tmp_path / "src" / fatty_liver_module.MAT
    mat.parent.mkdir()
    (_write_mat_v5 if version == "v5" else _write_mat_v73)(mat, patients)
    data = mat.read_bytes()
    http_server.add(f"raw/{fatty_liver_module.MAT}", data)
    opts = _opts(tmp_path, http_server)
    (tmp_path / "locks").mkdir()
    (tmp_path / "locks" / "fatty_liver.json").write_text(json.dumps({"files": {fatty_liver_module.MAT: {"md5": md5(data)}}}))
    out = mod.prepare(mod.download(tmp_path / "raw", opts), tmp_path / "data", {**opts, "store_size": None})
    ds = load_dataset(out)
    m = ds.manifest.set_index("video_id")
    assert list(m.index) == ["patient_01", "patient_02", "patient_03", "patient_04"]
    assert dict(m["label_name"]) == {"patient_01": "fatty", "patient_02": "normal", "patient_03": "fatty", "patient_04": "normal"}
    assert m.loc["patient_02", "fat"] == pytest.approx(12.5)
    for j, p in enumerate(patients):
        np.testing.assert_array_equal(ds.frames(f"patient_{j + 1:02d}"), p["images"])
    assert m.loc["patient_01", "source_file"].endswith("#data(1)")


def test_fatty_liver_published_md5_mismatch_is_refused(http_server, tmp_path):
    mod = get_source("fatty_liver")
    http_server.add(f"raw/{fatty_liver_module.MAT}", b"not the zenodo file")
    with pytest.raises(ChecksumError, match="md5"):
        mod.download(tmp_path / "raw", _opts(tmp_path, http_server, retries=0))
    assert mod.remote_files({})[0].checksum == f"md5:{fatty_liver_module.MD5}"


# ---------------------------------------------------------------------------- chestxray2017 (optional)


def test_chestxray2017_test_split_only(http_server, tmp_path):
    src = tmp_path / "cx"
    for rel, v in [("chest_xray/test/NORMAL/IM-0001-0001.jpeg", 30), ("chest_xray/test/NORMAL/NORMAL2-IM-0002-0001.jpeg", 40),
                   ("chest_xray/test/PNEUMONIA/person1_bacteria_1.jpeg", 50), ("chest_xray/test/PNEUMONIA/person1_virus_6.jpeg", 60),
                   ("chest_xray/train/NORMAL/IM-0003-0001.jpeg", 70)]:
        make_image(src / rel, v, mode="RGB")
    http_server.add("raw/ChestXRay2017.zip", zip_tree(src) + b"")
    mod = get_source("chestxray2017")
    opts = _opts(tmp_path, http_server)
    raw = mod.download(tmp_path / "raw", opts)
    out = mod.prepare(raw, tmp_path / "data", opts)
    m = load_dataset(out).manifest.set_index("video_id")
    assert len(m) == 4 and set(m["split"]) == {"test"}
    assert m.loc["test_person1_virus_6", "patient_id"] == "person1" and m.loc["test_person1_virus_6", "subtype"] == "virus"
    assert m.loc["test_NORMAL2-IM-0002-0001", "patient_id"] == "NORMAL2-IM-0002"
    assert not (raw / "ChestXRay2017" / "chest_xray" / "train").exists()  # only the asked splits are extracted


# ---------------------------------------------------------------------------- restricted sets


def test_us4_released_layout_and_label_maps(tmp_path):
    root = tmp_path / "US-4"
    make_frame_folder(root / "Liver" / "F2_case1", 5)
    make_frame_folder(root / "CLUST" / "Rb3-seq7", 4)
    make_frame_folder(root / "Butte" / "Reg-Normal_mp4", 3)
    make_frame_folder(root / "Butte" / "Cov-Lesion_mp4", 2)
    make_frame_folder(root / "COVID" / "Bli-z", 6)
    make_frame_folder(root / "misc" / "Xyz-w", 2)
    mod = get_source("us4")
    assert mod.download(root, {}) == root
    out = mod.prepare(root, tmp_path / "data", _opts(tmp_path))
    ds = load_dataset(out)
    m = ds.manifest.set_index("video_id")
    assert len(ds.classes) == 12
    assert dict(m["label_name"]) == {"F2_case1": "F2", "Rb3-seq7": "Rb3", "Reg-Normal_mp4": "lung_regular",
                                     "Cov-Lesion_mp4": "lung_abnormal", "Bli-z": "lung_abnormal"}
    assert dict(m["label"])["Rb3-seq7"] == 2 and dict(m["label"])["F2_case1"] == 7  # as released: Rb3 -> 2, F2_ -> 7
    assert m.loc["Bli-z", "n_frames"] == 6 and m.loc["Bli-z", "prefix"] == "Bli"
    out2 = mod.prepare(root, tmp_path / "data", _opts(tmp_path, label_map="covid19_lusms"), name="lusms")
    m2 = load_dataset(out2).manifest
    assert list(m2["label_name"]) == ["B-lines"]


def test_clust_sequences(tmp_path):
    root = tmp_path / "CLUST2D"
    make_frame_folder(root / "ETH-01-1" / "Data", 40, prefix="img", ext=".png")
    make_frame_folder(root / "ETH-01-2" / "Data", 5, prefix="img", ext=".png")
    make_frame_folder(root / "CIL-02", 3, prefix="f", ext=".png")
    (root / "ETH-01-1" / "Annotation").mkdir()
    (root / "ETH-01-1" / "Annotation" / "a.txt").write_text("1 2")
    out = get_source("clust").prepare(root, tmp_path / "data", _opts(tmp_path))
    m = load_dataset(out).manifest.set_index("video_id")
    assert dict(m["label_name"]) == {"ETH-01-1": "ETH", "ETH-01-2": "ETH", "CIL-02": "CIL"}
    assert dict(m["patient_id"]) == {"ETH-01-1": "ETH-01", "ETH-01-2": "ETH-01", "CIL-02": "CIL-02"}
    assert m.loc["ETH-01-1", "n_frames"] == 30  # max_frames


def test_udiat_b_with_csv_labels(tmp_path):
    root = tmp_path / "UDIAT"
    for i in range(1, 5):
        make_image(root / "original" / f"{i:06d}.png", 40 * i)
        make_image(root / "GT" / f"{i:06d}.png", 255)
    (root / "labels.csv").write_text("Image,Type,Size\n000001,Benign,3\n2,Malignant,4\n000003.png,CANCER,5\n")
    out = get_source("udiat_b").prepare(root, tmp_path / "data", _opts(tmp_path))
    m = load_dataset(out).manifest.set_index("video_id")
    assert dict(m["label_name"]) == {"udiat_000001": "benign", "udiat_000002": "malignant", "udiat_000003": "malignant"}
    assert _report(out)["skipped"][0]["source_file"] == "original/000004.png"


def test_video_folder_class_folders(tmp_path):
    root = tmp_path / "mine"
    make_video(root / "sick" / "clip one.mp4", 30, 25)
    make_image(root / "sick" / "still.png", 90)
    make_frame_folder(root / "healthy" / "seq1", 4)
    make_video(root / "healthy" / "anim.gif", 12, 10)
    (root / "healthy" / "notes.txt").write_text("ignored")
    out = get_source("video_folder").prepare(root, tmp_path / "data", _opts(tmp_path, classes=["healthy", "sick"]), name="mine")
    ds = load_dataset(out)
    assert ds.name == "mine" and ds.classes == ["healthy", "sick"]
    m = ds.manifest.set_index("video_id")
    assert dict(m["label_name"]) == {"seq1": "healthy", "anim": "healthy", "clip_one": "sick", "still": "sick"}
    assert m.loc["seq1", "n_frames"] == 4 and m.loc["still", "n_frames"] == 1


def test_video_folder_csv_with_patients_and_a_missing_file(tmp_path):
    root = tmp_path / "csvdata"
    make_video(root / "v" / "a.mp4", 10, 25)
    make_video(root / "v" / "b.avi", 10, 25)
    make_frame_folder(root / "v" / "c", 2)
    (root / "labels.csv").write_text("path,label,patient\nv/a.mp4,x,p1\nv/b.avi,y,p1\nv/c,y,p2\nv/missing.mp4,x,p3\n")
    out = get_source("video_folder").prepare(root, tmp_path / "data", _opts(tmp_path, max_failure_share=0.5))
    m = load_dataset(out).manifest.set_index("video_id")
    assert dict(m["patient_id"]) == {"a": "p1", "b": "p1", "c": "p2"}
    assert _report(out)["quarantined"][0]["source_file"] == "v/missing.mp4"


# ---------------------------------------------------------------------------- CLI and leakage guard


def test_cli_prepare_and_download(tmp_path, capsys):
    root = tmp_path / "mine"
    make_frame_folder(root / "a" / "s1", 3)
    make_frame_folder(root / "b" / "s2", 3)
    rc = main_prepare(["video_folder", "--raw", str(root), "--out", str(tmp_path / "data"), "--name", "cli_set",
                       "--options", json.dumps({"lock_dir": str(tmp_path / "locks"), "progress": False}), "--set", "store_size=32"])
    assert rc == 0 and load_dataset(tmp_path / "data" / "cli_set").frames("s1").shape[1] == 32
    from hico.cli import main

    capsys.readouterr()  # the prepare's status lines (stderr, once a CLI call configured logging) are not the error's
    assert main(["download", "us4", "--raw", str(tmp_path / "nowhere")]) == 2  # a user error: one line, exit 2
    err = capsys.readouterr().err
    assert err.startswith("hico download: error: ") and len(err.strip().splitlines()) == 1
    assert "Where to get it" in err


def test_leakage_guard_on_prepared_sources(tmp_path):
    leakage = pytest.importorskip("hico.data.leakage")
    root = tmp_path / "mine"
    make_video(root / "a" / "v1.mp4", 10, 25)
    make_video(root / "b" / "v2.mp4", 12, 25)
    opts = _opts(tmp_path)
    vf = get_source("video_folder")
    pre = vf.prepare(root, tmp_path / "data", opts, name="pool")
    ev = vf.prepare(root, tmp_path / "data", opts, name="eval")
    shutil.rmtree(root / "b")
    make_video(root / "b" / "v3.mp4", 14, 25)
    partly = vf.prepare(root, tmp_path / "data", opts, name="partly")  # v1 again, v3 new
    shutil.rmtree(root / "a")
    make_video(root / "a" / "v4.mp4", 16, 25)
    fresh = vf.prepare(root, tmp_path / "data", opts, name="fresh")  # v3, v4: none in eval
    with pytest.raises(leakage.LeakageError):
        leakage.check_overlap([pre], ev)
    with pytest.raises(leakage.LeakageError):
        leakage.check_overlap([fresh, partly], ev)
    assert leakage.check_overlap([pre], ev, allow_overlap=True)["n_overlaps"] == 2
    assert leakage.check_overlap([partly], ev, allow_overlap=True)["n_overlaps"] == 1
    assert leakage.check_overlap([fresh], ev)["n_overlaps"] == 0


# ---------------------------------------------------------------------------- the real POCUS videos


@pytest.mark.shared  # ~15-30 s on 2 busy cores; mark slow if it grows past that
@pytest.mark.skipif(not (SHARED_POCUS / "videos").exists(), reason="needs ../shared/data/pocus")
def test_real_pocus_videos_end_to_end(tmp_path):
    with open(SHARED_POCUS / "manifest.tsv", newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    pocus = get_source("pocus")
    expected: dict[str, int] = {}
    for r in rows:
        lab = pocus_module.MANIFEST_LABELS[r["label"]]
        expected[lab] = expected.get(lab, 0) + 1
    t0 = time.time()
    out = pocus.prepare(SHARED_POCUS, tmp_path / "data", {"include_viral": True, "progress": False, "lock_dir": str(tmp_path)})
    elapsed = time.time() - t0
    ds = load_dataset(out)
    rep = _report(out)
    assert len(ds) == len(rows) == 114
    assert rep["n_quarantined"] == 0 and rep["n_skipped"] == 0
    assert rep["class_counts"] == expected == {"covid": 20, "pneumonia": 36, "regular": 56, "viral": 2}
    # duplicate check (issue 11 item 7): the shared copy holds no byte-identical files, and none is reported
    assert len({r["sha256"] for r in rows}) == len(rows) and rep["duplicates"] == []
    assert (ds.manifest["n_frames"] >= 1).all() and (ds.manifest["n_frames"] <= 30).all()
    by_file = {Path(r["file"]).name: r for r in rows}
    for _, row in ds.manifest.iterrows():
        src = by_file[Path(row["source_file"]).name]
        assert row["source_sha256"] == src["sha256"] and row["license"] == src["license"]
        if not (src["framerate"] and src["frames"]):
            continue
        fps, n = float(src["framerate"]), int(src["frames"])
        want = len(list(select_times([i / fps for i in range(n)], 3.0, 30)))
        assert abs(row["n_frames"] - want) <= 2, (row["video_id"], row["n_frames"], want)
    print(f"\n[real POCUS] {len(ds)} videos, {int(ds.manifest['n_frames'].sum())} frames, "
          f"{rep['class_counts']}, {elapsed:.1f} s")

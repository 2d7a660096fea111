"""Feature files (issue 15 item 1): frozen features computed once per encoder x dataset x BN
mode, the same metrics with or without them, invalidated by content hash, never used for other
inputs, and the t-SNE drawn from them without torch."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from test_evaluate import IMAGE, write_tiny_dataset, write_tiny_encoder

import hico.evaluate as ev
from hico.data.folds import write_folds
from hico.data.standard import load_dataset
from hico.errors import HicoError
from hico.evaluation import features as ft

MAX_FRAMES = 2


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("featdata")
    data = write_tiny_dataset(root, per_class=6, frames=3)
    enc = write_tiny_encoder(root / "run" / "encoder.pt")
    files = {}
    for bn in ft.BN_MODES:
        files[bn], computed = ft.write_features(root / f"{bn}.npz", enc, data, image_size=IMAGE, max_frames=MAX_FRAMES,
                                                bn=bn, folds_path=data / "folds.csv" if bn == "adabn" else None,
                                                device="cpu")
        assert computed
    return {"root": root, "data": data, "folds": data / "folds.csv", "encoder": enc, **files}


def _without_provenance(path):
    m = json.loads(path.read_text())
    m.pop("provenance")
    return m


@pytest.mark.parametrize("protocol,args", [
    ("linear_probe", {}), ("knn", {"k": 5}), ("linear_probe_adabn", {}), ("knn_adabn", {"k": 3}),
    ("linear_probe", {"train_fraction": 0.5}),
])
def test_metrics_with_and_without_the_feature_file_are_identical(tiny, tmp_path, protocol, args):
    bn = ev.PROTOCOLS[protocol].bn_mode
    outs = {}
    for how, features in (("computed", None), ("cached", tiny[bn])):
        outs[how] = [tmp_path / how / f"fold{f}.json" for f in range(3)]
        ev.evaluate_folds(tiny["encoder"], tiny["data"], tiny["folds"], [0, 1, 2], protocol, image_size=IMAGE,
                          max_frames=MAX_FRAMES, out_paths=outs[how], features=features, **args)
    for computed, cached in zip(outs["computed"], outs["cached"]):
        assert _without_provenance(computed) == _without_provenance(cached)
        assert json.loads(cached.read_text())["provenance"]["features"]["key"]["bn"] == bn
    assert len({json.dumps(_without_provenance(p)["test_videos"]) for p in outs["cached"]}) == 3  # three real folds


def test_file_layout_and_no_pickle(tiny):
    ds = load_dataset(tiny["data"])
    with np.load(tiny["frozen"], allow_pickle=False) as z:
        assert sorted(z.files) == ["all.features", "all.labels", "all.video_ids", "meta"]
        assert z["all.features"].dtype == np.float32 and z["all.features"].shape == (len(ds) * MAX_FRAMES, 512)
        assert z["all.video_ids"].tolist() == [v for v in sorted(ds.manifest["video_id"]) for _ in range(MAX_FRAMES)]
    f = ft.read_features(tiny["adabn"])
    assert sorted(f.blocks) == ["fold0", "fold1", "fold2"]
    assert f.meta["key"]["encoder_sha256"] == ft.file_sha256(tiny["encoder"])
    assert f.meta["key"]["dataset_sha256"] == ft.dataset_sha256(ds)
    assert f.meta["key"]["folds_sha256"] == ft.file_sha256(tiny["folds"])
    fold0 = f.block("fold0")
    assert len(fold0.video_ids) == len(ds) * MAX_FRAMES  # the fold's train+val (adapted on) then its test videos
    assert not list(tiny["root"].glob(".*.tmp"))


def test_adabn_blocks_differ_by_fold_and_from_frozen_features(tiny):
    frozen = ft.read_features(tiny["frozen"]).block("all")
    adabn = ft.read_features(tiny["adabn"])
    vid = frozen.video_ids[0]
    rows = [b.features[b.video_ids == vid] for b in adabn.blocks.values()]
    assert not np.allclose(rows[0], frozen.features[frozen.video_ids == vid])
    assert not np.allclose(rows[0], rows[1])


def test_an_unchanged_file_is_kept_whatever_its_time_a_changed_input_recomputes_it(tiny, tmp_path):
    out = tmp_path / "f.npz"
    shutil.copy(tiny["frozen"], out)
    os.utime(out, (0, 0))  # older than every input: a time rule would recompute it
    kwargs = dict(image_size=IMAGE, max_frames=MAX_FRAMES, device="cpu")
    assert ft.write_features(out, tiny["encoder"], tiny["data"], **kwargs) == (out, False)
    other = write_tiny_encoder(tmp_path / "other" / "encoder.pt", seed=5)
    before = out.stat().st_mtime
    assert ft.write_features(out, other, tiny["data"], **kwargs) == (out, True)
    assert ft.read_features(out).meta["key"]["encoder_sha256"] == ft.file_sha256(other)
    assert out.stat().st_mtime > before


def _copy_dataset(tiny, tmp_path):
    data = tmp_path / "copy"
    shutil.copytree(tiny["data"], data)
    return data


def test_a_file_for_other_inputs_is_refused(tiny, tmp_path):
    def evaluate(protocol="knn", encoder=tiny["encoder"], data=tiny["data"], folds=tiny["folds"], features=None,
                 **kw):
        return ev.evaluate(encoder, data, folds, 0, protocol, image_size=kw.pop("image_size", IMAGE),
                           max_frames=MAX_FRAMES, features=features or tiny["frozen"], **kw)

    other = write_tiny_encoder(tmp_path / "other" / "encoder.pt", seed=3)
    with pytest.raises(ft.FeatureFileError, match="encoder_sha256: file '[0-9a-f]{64}', inputs '[0-9a-f]{64}'"):
        evaluate(encoder=other)
    changed = _copy_dataset(tiny, tmp_path)
    ds = load_dataset(changed)
    frames_file = ds.frames_path(ds.manifest["video_id"][0])
    arr = np.load(frames_file)
    arr[0, 0, 0] ^= 1  # one pixel of one frame
    np.save(frames_file, arr)
    with pytest.raises(ft.FeatureFileError, match="dataset_sha256"):
        evaluate(data=changed, folds=changed / "folds.csv")
    with pytest.raises(ft.FeatureFileError, match="image_size: file 32, inputs 64"):
        evaluate(image_size=64)
    with pytest.raises(ft.FeatureFileError, match="bn: file 'frozen', inputs 'adabn'"):
        evaluate("knn_adabn")
    refolded = _copy_dataset(tiny, tmp_path / "refold")
    write_folds(load_dataset(refolded).manifest, refolded / "folds.csv", k=3, seed=11)
    with pytest.raises(ft.FeatureFileError, match="folds_sha256"):
        evaluate("knn_adabn", data=refolded, folds=refolded / "folds.csv", features=tiny["adabn"])
    with pytest.raises(HicoError, match="trains on frames"):
        evaluate("finetune", epochs=1)
    with pytest.raises(ft.FeatureFileError, match="does not exist; compute it with `python -m hico features`"):
        evaluate(features=tmp_path / "none.npz")
    broken = tmp_path / "broken.npz"
    broken.write_bytes(b"PK\x03\x04 not a zip")
    with pytest.raises(ft.FeatureFileError, match="not a readable feature file"):
        evaluate(features=broken)


def test_cli_features_then_evaluate_and_a_mismatch_is_one_line(tiny, tmp_path):
    out = tmp_path / "f.npz"
    base = [sys.executable, "-m", "hico"]
    common = ["--encoder", str(tiny["encoder"]), "--data", str(tiny["data"]), "--image-size", str(IMAGE),
              "--max-frames", str(MAX_FRAMES)]
    r = subprocess.run([*base, "features", *common, "--device", "cpu", "--out", str(out)], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr
    again = subprocess.run([*base, "features", *common, "--out", str(out)], capture_output=True, text=True)
    assert "up to date, kept" in again.stderr  # a status line: logged on stderr, stdout stays for results
    with np.load(out, allow_pickle=False) as a, np.load(tiny["frozen"], allow_pickle=False) as b:
        np.testing.assert_array_equal(a["all.features"], b["all.features"])
    evaluate = [*base, "evaluate", *common, "--folds", str(tiny["folds"]), "--fold", "1", "--protocol", "knn",
                "--out", str(tmp_path / "m.json")]
    r = subprocess.run([*evaluate, "--features", str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "m.json").read_text())["provenance"]["features"]["path"] == str(out)
    r = subprocess.run([*evaluate, "--features", str(tiny["adabn"])], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.startswith("hico evaluate: error: ")
    assert "was computed for other inputs (bn: file 'adabn', inputs 'frozen'" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    r = subprocess.run([*base, "features", *common, "--bn", "adabn", "--out", str(out)], capture_output=True, text=True)
    assert r.returncode == 2 and "--folds goes with --bn adabn" in r.stderr


def test_tsne_reads_feature_files_without_torch(tiny, tmp_path):
    code = ("import sys; from hico.report import plots; "
            f"plots.main(['--figures', 'tsne', '--out-dir', {str(tmp_path)!r}, '--data', {str(tiny['data'])!r}, "
            f"'--features', 'a={tiny['frozen']}', 'b={tiny['frozen']}']); "
            "print('heavy:' + ','.join(m for m in ('torch', 'timm') if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "heavy:"
    assert (tmp_path / "tsne.png").stat().st_size > 2000


def test_tsne_refuses_features_of_another_dataset(tiny, tmp_path):
    from hico.report import plots

    other = write_tiny_dataset(tmp_path, name="other", per_class=6, frames=3, seed=4)
    with pytest.raises(ft.FeatureFileError, match="does not hold the frozen features of"):
        plots.main(["--figures", "tsne", "--out-dir", str(tmp_path), "--data", str(other),
                    "--features", f"a={tiny['frozen']}"])


def test_tsne_takes_evenly_spaced_frames_of_each_video():
    from hico.report.plots import _evenly_per_video

    f = ev.FrameFeatures(np.arange(10.0)[:, None], np.zeros(10, int), np.array(["a"] * 7 + ["b"] * 3))
    kept = _evenly_per_video(f, 3)
    assert kept.features[:, 0].tolist() == [0, 3, 6, 7, 8, 9]

"""Evaluation protocols: metrics equal scikit-learn's, video-level aggregation by hand, label
subsampling, no test-fold video in training or model selection, and a tiny fine-tune."""

from __future__ import annotations

import dataclasses
import functools
import json
import subprocess
import sys

import numpy as np
import pytest
import sklearn.metrics as skm
import torch

import hico.evaluate as ev
from hico import layout
from hico.data.folds import read_folds, split_fold, write_folds
from hico.data.standard import DatasetWriter, load_dataset
from hico.errors import HicoError
from hico.evaluation import extract
from hico.models.backbone import Backbone, save_encoder

CLASSES = ["covid", "pneumonia", "regular"]
IMAGE = 32


def write_tiny_dataset(root, name="tiny", per_class=8, frames=3, size=40, seed=0):
    """3 classes x ``per_class`` patients (one video each); a bright band whose position is the class."""
    rng = np.random.default_rng(seed)
    with DatasetWriter(root, name, CLASSES, store_size=None) as w:
        for c, cname in enumerate(CLASSES):
            for p in range(per_class):
                x = rng.integers(0, 80, (frames, size, size)).astype(np.uint8)
                if c == 0:
                    x[:, : size // 2] += 150
                elif c == 1:
                    x[:, :, : size // 2] += 150
                else:
                    x[:, size // 4 : 3 * size // 4, size // 4 : 3 * size // 4] += 150
                w.add_video(f"{cname[:3]}{p}", patient_id=f"{cname[:3]}-p{p}", label_name=cname, frames=x)
    ds = load_dataset(root / name)
    write_folds(ds.manifest, root / name / "folds.csv", k=3, seed=0)
    return root / name


def write_tiny_encoder(path, method="hico", epoch=7, seed=0):
    torch.manual_seed(seed)
    save_encoder(Backbone("resnet18"), path, {"method": method, "epoch": epoch})
    return path


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("evaldata")
    data = write_tiny_dataset(root)
    enc = write_tiny_encoder(root / "run" / "encoder.pt")
    return {"root": root, "data": data, "folds": data / "folds.csv", "encoder": enc}


# --------------------------------------------------------------------------------------------
# Metrics


def _fixed_predictions(seed=0, n=90, k=3):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % k
    logits = rng.normal(size=(n, k)) + 1.5 * np.eye(k)[y]
    proba = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return y, proba


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_classification_metrics_equal_sklearn(seed):
    y, proba = _fixed_predictions(seed)
    pred = proba.argmax(1)
    m = ev.classification_metrics(y, proba, CLASSES)
    assert m["n"] == len(y)
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert m["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y, pred))
    assert m["macro_f1"] == pytest.approx(skm.f1_score(y, pred, average="macro"))
    assert m["macro_auc"] == pytest.approx(skm.roc_auc_score(y, proba, multi_class="ovr", average="macro"))
    assert m["confusion_matrix"] == skm.confusion_matrix(y, pred).tolist()
    p, r, f, s = skm.precision_recall_fscore_support(y, pred)
    for i, c in enumerate(CLASSES):
        assert m["per_class"][c] == pytest.approx({"precision": p[i], "recall": r[i], "f1": f[i], "support": s[i]})


def test_binary_auc_uses_positive_column():
    y = np.array([0, 0, 1, 1, 1])
    proba = np.array([[0.9, 0.1], [0.4, 0.6], [0.3, 0.7], [0.8, 0.2], [0.1, 0.9]])
    m = ev.classification_metrics(y, proba, ["neg", "pos"])
    assert m["macro_auc"] == pytest.approx(skm.roc_auc_score(y, proba[:, 1]))


def test_video_level_by_hand():
    vids = np.array(["a", "a", "b", "c", "c", "c"])
    y = np.array([0, 0, 1, 2, 2, 2])
    proba = np.array([[0.6, 0.4, 0.0], [0.2, 0.8, 0.0], [0.1, 0.9, 0.0],
                      [0.45, 0.0, 0.55], [0.2, 0.0, 0.8], [0.45, 0.0, 0.55]])
    yv, pv = ev.video_level(vids, y, proba)
    assert yv.tolist() == [0, 1, 2]
    np.testing.assert_allclose(pv, [[0.4, 0.6, 0.0], [0.1, 0.9, 0.0], [1.1 / 3, 0.0, 1.9 / 3]])
    m = ev.frame_and_video_metrics(vids, y, proba, CLASSES)
    assert m["frame"]["accuracy"] == pytest.approx(5 / 6)  # only the second frame is wrong
    assert m["video"]["accuracy"] == pytest.approx(2 / 3)  # ... but it flips video a once averaged


# --------------------------------------------------------------------------------------------
# Label efficiency


@pytest.mark.parametrize("fraction", [0.01, 0.05, 0.1, 0.25, 0.5, 1.0])
def test_subsample_keeps_classes_and_is_subset(tiny, fraction):
    ds = load_dataset(tiny["data"])
    folds = read_folds(tiny["folds"], ds.manifest)
    train, _, _ = split_fold(ds.manifest, folds, 0, 0.2, 0)
    sub = ev.subsample_train_videos(ds.manifest, train, fraction, seed=3)
    label = dict(zip(ds.manifest["video_id"], ds.manifest["label"]))
    assert set(sub) <= set(train)
    assert {label[v] for v in sub} == {label[v] for v in train}
    assert sub == ev.subsample_train_videos(ds.manifest, train, fraction, seed=3)  # seeded
    if fraction == 1.0:
        assert sub == train
    for c in {label[v] for v in train}:
        n_c = sum(label[v] == c for v in train)
        assert sum(label[v] == c for v in sub) == max(1, round(fraction * n_c))


def test_subsample_is_nested_and_rejects_percent(tiny):
    ds = load_dataset(tiny["data"])
    ids = ds.manifest["video_id"].tolist()
    small = ev.subsample_train_videos(ds.manifest, ids, 0.25, seed=1)
    large = ev.subsample_train_videos(ds.manifest, ids, 0.5, seed=1)
    assert set(small) <= set(large)
    assert set(ev.subsample_train_videos(ds.manifest, ids, 0.5, seed=2)) != set(large)
    with pytest.raises(ValueError, match="for 10 % pass 0.1"):
        ev.subsample_train_videos(ds.manifest, ids, 10, seed=1)


# --------------------------------------------------------------------------------------------
# Leakage: no test-fold video reaches training or model selection


def _spy(monkeypatch, name):
    seen = {}
    original = ev.PROTOCOLS[name]
    run = original.function()

    @functools.wraps(run)  # the registry reads the accepted arguments from the signature
    def spy(train, val, test, n_classes, seed=0, **kw):
        seen.update(train=set(train.video_ids), val=set(val.video_ids), test=set(test.video_ids))
        return run(train, val, test, n_classes, seed=seed, **kw)

    monkeypatch.setitem(ev.PROTOCOLS, name, dataclasses.replace(original, run=spy))
    adapt = extract.adapt_batchnorm

    def adapt_spy(encoder, ds, video_ids, *args, **kw):  # BatchNorm statistics: fold's train + val only
        seen.setdefault("bn", set()).update(video_ids)
        return adapt(encoder, ds, video_ids, *args, **kw)

    monkeypatch.setattr(extract, "adapt_batchnorm", adapt_spy)
    return seen


@pytest.mark.parametrize("protocol,args", [
    ("linear_probe", {"train_fraction": 0.5}),
    ("linear_probe_adabn", {"train_fraction": 0.5}),
    ("finetune", {"epochs": 2, "batch_size": 16}),
])
def test_test_fold_never_reaches_training_or_selection(tiny, monkeypatch, tmp_path, protocol, args):
    seen = _spy(monkeypatch, protocol)
    out = tmp_path / "metrics.json"
    m = ev.evaluate(tiny["encoder"], tiny["data"], tiny["folds"], 1, protocol, image_size=IMAGE, max_frames=2,
                    out_path=out, device="auto", **args)
    folds = read_folds(tiny["folds"])
    fold_test = set(folds.loc[folds["fold"] == 1, "video_id"])
    assert seen["test"] == fold_test
    assert not seen["train"] & fold_test and not seen["val"] & fold_test and not seen["train"] & seen["val"]
    assert set(m["split_video_ids"]["test"]) == fold_test
    assert set(m["split_video_ids"]["train"]) == seen["train"]
    if protocol.endswith("_adabn"):  # unlabelled: the whole training part of the fold, never its test part
        assert seen["bn"] and not seen["bn"] & fold_test
        assert seen["bn"] == set(folds.loc[folds["fold"] != 1, "video_id"])
        assert written_adapt_bn(out)
    else:
        assert "bn" not in seen
    written = json.loads(out.read_text())
    for key in ("schema_version", "protocol_id", "train_fraction", "encoder_epoch", "encoder_kind",
                "pretrain_datasets", "n_frames", "hyperparameters", "frame", "video"):
        assert key in written
    assert written["encoder_epoch"] == 7 and written["encoder_kind"] == "final"
    assert written["train_fraction"] == args.get("train_fraction", 1.0)
    if protocol == "finetune":
        assert written["protocol_id"] == "finetune_released"
        assert written["paper_protocol"]["optimistic"] is True
        for block in ("paper_protocol", "last"):
            assert {"epoch", "frame", "video"} <= set(written[block])
            assert "confusion_matrix" in written[block]["frame"]
        assert written["last"]["epoch"] == 2
    else:
        assert written["n_videos"]["train"] < written["n_videos"]["train_before_subsampling"]


def written_adapt_bn(path) -> bool:
    return json.loads(path.read_text())["hyperparameters"].get("adapt_bn") is True


def test_adapt_batchnorm_sets_statistics_of_the_given_frames(tiny):
    ds = load_dataset(tiny["data"])
    encoder = ev.load_encoder(tiny["encoder"])
    ids = list(ds.manifest["video_id"][:6])
    adapted = ev.adapt_batchnorm(encoder, ds, ids, IMAGE, max_frames=2, batch_size=64)
    frames, _, _ = ev.frames_of(ds, ids, 2)
    x = ev.normalize(torch.stack([ev.resize_square(torch.from_numpy(f), IMAGE) for f in frames]), 0.5, 0.25)
    conv1, bn1 = adapted.body.conv1, adapted.body.bn1
    with torch.no_grad():
        y = conv1(x)
    torch.testing.assert_close(bn1.running_mean, y.mean(dim=(0, 2, 3)), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(bn1.running_var, y.var(dim=(0, 2, 3), unbiased=True), rtol=1e-3, atol=1e-5)
    assert not adapted.training and bn1.num_batches_tracked == 1
    # the loaded encoder is untouched (placeholder statistics of a random network)
    assert float(encoder.body.bn1.running_mean.abs().max()) == 0.0


def _frameset(ds, ids, max_frames=2):
    return ev.load_frames(ds, ids, IMAGE, max_frames)


@pytest.fixture(scope="module")
def frames(tiny):
    ds = load_dataset(tiny["data"])
    folds = read_folds(tiny["folds"], ds.manifest)
    train, val, test = split_fold(ds.manifest, folds, 0, 0.2, 0)
    return {"train": _frameset(ds, train), "val": _frameset(ds, val), "test": _frameset(ds, test)}


def test_finetune_selects_on_validation_only(tiny, frames):
    enc = ev.load_encoder(tiny["encoder"])
    kw = dict(encoder=enc, device="cpu", epochs=3, batch_size=8, seed=0)
    a = ev.finetune(frames["train"], frames["val"], frames["test"], 3, **kw)
    hist = a["selection"]["history"]
    assert [h["epoch"] for h in hist] == [1, 2, 3]
    val_only = [{k: v for k, v in h.items() if not k.startswith("test")} for h in hist]
    assert a["selection"]["epoch"] == ev.select_epoch(val_only) + 1
    test_acc = [h["test_accuracy"] for h in hist]
    assert a["records"]["paper_protocol"]["epoch"] == int(np.argmax(test_acc)) + 1
    assert a["records"]["last"]["epoch"] == 3
    # Scrambled test labels: training and selection must not move.
    t = frames["test"]
    scrambled = ev.FrameSet(t.frames, (t.labels + 1) % 3, t.video_ids)
    b = ev.finetune(frames["train"], frames["val"], scrambled, 3, **kw)
    assert b["selection"]["epoch"] == a["selection"]["epoch"]
    assert [h["val_accuracy"] for h in b["selection"]["history"]] == [h["val_accuracy"] for h in hist]
    np.testing.assert_allclose(b["proba"], a["proba"], atol=1e-6)


def test_finetune_released_trains_last_block_and_head_only(tiny, frames):
    enc = ev.load_encoder(tiny["encoder"])
    block = ev.last_block(enc)
    assert block is enc.body.layer4[1]
    r = ev.finetune(frames["train"], frames["val"], frames["test"], 3, encoder=enc, epochs=1, batch_size=16)
    expected = sum(p.numel() for p in block.parameters()) + enc.num_features * 3 + 3
    assert r["hyperparameters"]["n_trainable_params"] == expected
    assert r["hyperparameters"]["trainable_modules"] == ["body.layer4.1"]
    assert r["hyperparameters"]["lr"] == 0.01 and r["hyperparameters"]["batch_size"] == 16
    full = ev.finetune(frames["train"], frames["val"], frames["test"], 3, encoder=enc, epochs=1, variant="full")
    assert full["hyperparameters"]["lr"] == 1e-4
    assert full["hyperparameters"]["n_trainable_params"] == sum(p.numel() for p in enc.parameters()) + 3 * enc.num_features + 3
    with pytest.raises(ValueError, match="variant"):
        ev.finetune(frames["train"], frames["val"], frames["test"], 3, encoder=enc, variant="nope")


def test_registered_protocols():
    assert {"linear_probe", "knn", "finetune", "finetune_released", "finetune_full", "linear_probe_adabn",
            "knn_adabn"} <= set(ev.PROTOCOLS)
    assert ev.PROTOCOLS["knn_adabn"].adapt_bn and not ev.PROTOCOLS["knn"].adapt_bn
    assert ev.PROTOCOLS["finetune_full"].inputs == "frames" and ev.PROTOCOLS["knn"].inputs == "features"
    assert ev.PROTOCOLS["knn_adabn"].function() is ev.knn and ev.PROTOCOLS["finetune_full"].fixed == {"variant": "full"}


def test_protocol_registry_equals_layout_protocol_ids():
    """Contract 3: the workflow validates config protocols against layout.PROTOCOL_IDS."""
    assert sorted(ev.PROTOCOLS) == sorted(layout.PROTOCOL_IDS)
    assert all(name == record.name for name, record in ev.PROTOCOLS.items())


def test_protocol_registry_reads_without_torch_or_sklearn():
    code = ("import sys; from hico.evaluation.protocols import PROTOCOLS; "
            "print(','.join(m for m in ('torch', 'sklearn', 'timm', 'numpy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


@pytest.mark.parametrize("protocol,args", [("linear_probe", {}), ("finetune", {"epochs": 1, "batch_size": 16})])
def test_several_folds_in_one_call_equal_separate_calls(tiny, tmp_path, protocol, args):
    """Features are extracted once for all folds; fine-tuning restarts from the file each fold."""
    together = ev.evaluate_folds(tiny["encoder"], tiny["data"], tiny["folds"], [0, 1], protocol, image_size=IMAGE,
                                 max_frames=2, out_paths=[tmp_path / "a.json", tmp_path / "b.json"], **args)
    for fold, joint in zip([0, 1], together):
        alone = ev.evaluate(tiny["encoder"], tiny["data"], tiny["folds"], fold, protocol, image_size=IMAGE,
                            max_frames=2, **args)
        assert joint["fold"] == fold and joint["split_video_ids"] == alone["split_video_ids"]
        assert joint["frame"]["confusion_matrix"] == alone["frame"]["confusion_matrix"]
        assert joint["frame"]["accuracy"] == pytest.approx(alone["frame"]["accuracy"])
    assert json.loads((tmp_path / "b.json").read_text())["fold"] == 1


# --------------------------------------------------------------------------------------------
# metrics.json schema 3 (contract 2): labelled pretraining share, per-video test outcomes


@pytest.mark.parametrize("protocol,args", [("knn", {"k": 3}), ("finetune_released", {"epochs": 1, "batch_size": 16})])
def test_test_videos_reproduce_frame_and_video_accuracy(tiny, protocol, args):
    m = ev.evaluate(tiny["encoder"], tiny["data"], tiny["folds"], 2, protocol, image_size=IMAGE, max_frames=2, **args)
    assert m["schema_version"] == 3
    tv = m["test_videos"]
    assert set(tv) == {"video_id", "patient_id", "label", "n_frames", "frame_correct", "video_pred"}
    assert len({len(v) for v in tv.values()}) == 1
    assert sorted(tv["video_id"]) == m["split_video_ids"]["test"]
    manifest = load_dataset(tiny["data"]).manifest.set_index("video_id")
    assert tv["patient_id"] == [manifest.loc[v, "patient_id"] for v in tv["video_id"]]
    assert tv["label"] == [int(manifest.loc[v, "label"]) for v in tv["video_id"]]
    assert tv["n_frames"] == [2] * len(tv["video_id"]) and sum(tv["n_frames"]) == m["frame"]["n"]
    assert all(0 <= c <= n for c, n in zip(tv["frame_correct"], tv["n_frames"]))
    assert sum(tv["frame_correct"]) / sum(tv["n_frames"]) == pytest.approx(m["frame"]["accuracy"])
    video_acc = np.mean([p == y for p, y in zip(tv["video_pred"], tv["label"])])
    assert video_acc == pytest.approx(m["video"]["accuracy"])
    cm = np.zeros((3, 3), int)
    for y, p in zip(tv["label"], tv["video_pred"]):
        cm[y, p] += 1
    assert cm.tolist() == m["video"]["confusion_matrix"]


def test_video_outcomes_by_hand(tiny):
    ds = load_dataset(tiny["data"])
    vids = ds.manifest["video_id"].tolist()
    a, b = vids[0], vids[-1]  # labels 0 and 2
    test = ev.FrameFeatures(np.zeros((5, 1)), np.array([0, 0, 0, 2, 2]), np.array([a, a, a, b, b]))
    proba = np.array([[0.9, 0.1, 0], [0.2, 0.8, 0], [0.3, 0.7, 0], [0.1, 0, 0.9], [0.2, 0, 0.8]])
    tv = ev.video_outcomes(ds, test, proba)
    assert tv == {"video_id": [a, b], "patient_id": ["cov-p0", "reg-p7"], "label": [0, 2], "n_frames": [3, 2],
                  "frame_correct": [1, 2], "video_pred": [1, 2]}


def _encoder_in_run(root, name, run_config=None, meta=None):
    run = root / name
    run.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    save_encoder(Backbone("resnet18"), run / layout.ENCODER, {"method": name, **(meta or {})})
    if run_config is not None:
        (run / layout.RUN_CONFIG).write_text(json.dumps(run_config))
    return run / layout.ENCODER


@pytest.mark.parametrize("run_config,meta,expected", [
    ({"datasets": ["data/pool"], "labelled_fraction": 0.25, "config": {}}, {"labelled_fraction": 1.0}, 0.25),
    (None, {"labelled_fraction": 1.0}, 1.0),  # no config.json: the encoder meta
    ({"datasets": ["data/pool"], "config": {}}, {"labelled_fraction": 0.5}, 0.5),
    ({"datasets": [], "config": {"requires_pretraining": False}}, {}, 0.0),  # a control sees no label
    (None, {}, None),  # unknown
])
def test_pretrain_labelled_fraction_from_run_config_then_meta(tiny, tmp_path, run_config, meta, expected):
    enc = _encoder_in_run(tmp_path, "m", run_config, meta)
    m = ev.evaluate(enc, tiny["data"], tiny["folds"], 0, "knn", image_size=IMAGE, max_frames=1, k=3)
    assert m["pretrain_labelled_fraction"] == expected


# --------------------------------------------------------------------------------------------
# Nonsensical protocol arguments are refused before anything is computed (issue 11 item 11)


@pytest.fixture
def no_compute(monkeypatch):
    """Fail loudly if an evaluation gets as far as reading frames or running the encoder."""
    def refuse(*args, **kwargs):
        raise AssertionError("computed inputs before checking the arguments")

    monkeypatch.setattr("hico.evaluation.run.compute_block", refuse)
    for name in ("extract_features", "adabn_features", "load_frames"):
        monkeypatch.setattr(f"hico.evaluation.extract.{name}", refuse)


@pytest.mark.parametrize("protocol,args,message", [
    ("knn", {"k": 0}, "protocol knn: k must be an integer >= 1, got 0"),
    ("knn", {"k": -3}, "k must be an integer >= 1, got -3"),
    ("knn_adabn", {"k": 2.5}, "k must be an integer >= 1, got 2.5"),
    ("knn", {"k": "5"}, "k must be an integer >= 1, got '5'"),
    ("knn", {"temperature": 0}, "temperature must be a finite number > 0"),
    ("linear_probe", {"c_grid": []}, "c_grid is empty"),
    ("linear_probe", {"c_grid": [1.0, -1]}, "every c_grid value must be a finite number > 0, got -1"),
    ("linear_probe_adabn", {"max_iter": 0}, "max_iter must be an integer >= 1"),
    ("finetune", {"epochs": 0}, "epochs must be an integer >= 1, got 0"),
    ("finetune", {"epochs": 2.5}, "epochs must be an integer >= 1, got 2.5"),
    ("finetune_full", {"lr": -0.1}, "lr must be a finite number > 0"),
    ("finetune", {"variant": "half"}, "finetune variant must be one of"),
    ("finetune_released", {"variant": "full"}, "protocol finetune_released fixes variant='released'"),
    ("knn", {"kk": 5}, "protocol knn: unknown argument(s) ['kk']; it takes k, temperature"),
    ("linear_probe", {"C": 1.0}, "unknown argument(s) ['C']; it takes c_grid, max_iter"),
    ("finetune_released", {"epoch": 3}, "it takes epochs, batch_size, lr, weight_decay, trainable, mean, std"),
])
def test_nonsensical_protocol_arguments_are_refused_first(tiny, no_compute, protocol, args, message):
    with pytest.raises(ev.ProtocolError) as e:
        ev.evaluate(tiny["encoder"], tiny["data"], tiny["folds"], 0, protocol, image_size=IMAGE, max_frames=2, **args)
    assert message in str(e.value)
    assert isinstance(e.value, HicoError)


@pytest.mark.parametrize("options,message", [
    ({"max_frames": -1}, "max_frames must be an integer >= 1 (0 or None: every stored frame), got -1"),
    ({"image_size": 0}, "image_size must be an integer >= 1"),
    ({"train_fraction": 0}, "train_fraction must be in (0, 1]"),
])
def test_nonsensical_evaluation_options_are_refused(tiny, no_compute, options, message):
    with pytest.raises(HicoError) as e:
        ev.evaluate(tiny["encoder"], tiny["data"], tiny["folds"], 0, "knn", **{"image_size": IMAGE, **options})
    assert message in str(e.value)


def test_knn_arguments_check_direct_calls_too():
    feats = ev.FrameFeatures(np.eye(3), np.arange(3), np.array(["a", "b", "c"]))
    with pytest.raises(ev.ProtocolError, match="k must be an integer >= 1, got 0"):
        ev.knn(feats, feats, feats, 3, k=0)
    assert ev.knn(feats, feats, feats, 3, k=1)["proba"].argmax(1).tolist() == [0, 1, 2]


def test_cli_prints_a_bad_protocol_argument_as_one_line(tiny, tmp_path):
    cmd = [sys.executable, "-m", "hico", "evaluate", "--encoder", str(tiny["encoder"]), "--data", str(tiny["data"]),
           "--folds", str(tiny["folds"]), "--fold", "0", "--protocol", "knn", "--image-size", "32",
           "--out", str(tmp_path / "m.json")]
    r = subprocess.run([*cmd, "--args", '{"k": 0}'], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.startswith("hico evaluate: error: protocol knn: k must be an integer >= 1")
    assert "Traceback" not in r.stderr and not (tmp_path / "m.json").exists()
    r = subprocess.run([*cmd, "--args", "{k: 0}"], capture_output=True, text=True)
    assert r.returncode == 2 and "--args '{k: 0}' is not JSON" in r.stderr

"""Experiment trackers (issue 16 item 2): ``logger: csv | tensorboard | mlflow``. The event file and
the MLflow store are read back and must hold train_log.csv's rows; a resumed run logs every epoch
once; evaluation metrics reach the run's trackers through hico.trackers.log_evaluation."""

from __future__ import annotations

import json
import math
import sys

import pandas as pd
import pytest

from hico.config import ConfigError, resolve_pretrain_config
from hico.run_folder import run_binding
from hico.trackers import TrackerMissingError, log_evaluation
from hico.train import pretrain

pytest.importorskip("tensorboard")
pytest.importorskip("mlflow")

TINY = {"image_size": 32, "batch_size": 4, "num_workers": 0, "pretrained": False, "val_fraction": 0.25}
ALL = ["csv", "tensorboard", "mlflow"]


@pytest.fixture(autouse=True)
def _local_mlflow(monkeypatch):
    """Each run's own store: a user's MLFLOW_TRACKING_URI must not receive test runs."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)


def tensorboard_scalars(run_dir) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def mlflow_run(run_dir):
    from mlflow.tracking import MlflowClient

    state = json.loads((run_dir / "trackers.json").read_text())["mlflow"]
    assert state["tracking_uri"] == f"sqlite:///{(run_dir / 'mlflow.db').resolve()}"  # the local default
    client = MlflowClient(tracking_uri=state["tracking_uri"])
    return client, client.get_run(state["run_id"])


def mlflow_history(client, run_id, key) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))


def csv_columns(run_dir) -> dict[str, list[tuple[int, float]]]:
    """train_log.csv as {column: [(epoch, value)]}, finite values only (what the trackers get)."""
    log = pd.read_csv(run_dir / "train_log.csv")
    return {c: [(int(e), float(v)) for e, v in zip(log["epoch"], log[c]) if math.isfinite(v)]
            for c in log.columns if c != "epoch"}


def test_tensorboard_and_mlflow_hold_the_rows_of_train_log_csv(toy_dataset, tmp_path):
    out = tmp_path / "run"
    pretrain("simclr", [toy_dataset], out, [TINY, {"epochs": 2, "logger": ALL}], device="cpu", progress=False,
             run_name="simclr_tracked")
    expected = {k: v for k, v in csv_columns(out).items() if v}
    assert {"loss", "lr", "val_loss", "images_per_s", "epoch_time_s", "step"} <= set(expected)
    assert csv_columns(out)["peak_mem_mb"] == []  # NaN on a CPU: left out of the trackers
    board = tensorboard_scalars(out)
    assert set(board) == set(expected)
    for key, rows in expected.items():  # TensorBoard keeps float32
        assert [s for s, _ in board[key]] == [e for e, _ in rows] == [1, 2]
        assert [v for _, v in board[key]] == pytest.approx([v for _, v in rows], rel=1e-6), key
    client, run = mlflow_run(out)
    assert set(run.data.metrics) == set(expected)
    for key, rows in expected.items():  # MLflow keeps float64: the CSV's values exactly
        assert mlflow_history(client, run.info.run_id, key) == rows, key
    assert run.info.status == "FINISHED" and run.info.run_name == "simclr_tracked"
    assert run.data.tags["method"] == "simclr" and run.data.tags["seed"] == "0"
    binding = json.loads((out / "config.json").read_text())["binding"]
    assert run.data.params["optimizer.lr"] == json.dumps(binding["optimizer.lr"]) and "logger" not in binding
    assert run.data.tags["binding_hash"] == json.loads((out / "config.json").read_text())["binding_hash"]


def test_a_resumed_run_logs_every_epoch_once_and_catches_up_a_new_tracker(toy_dataset, tmp_path, monkeypatch):
    """Killed after epoch 2 with MLflow only, resumed with TensorBoard added (logger is not
    bound): the same MLflow run holds epochs 1-3 once each; TensorBoard gets all three."""
    from test_train import Killed, stop_after

    out = tmp_path / "run"
    base = [TINY, {"epochs": 3}]
    with monkeypatch.context() as m:
        stop_after(m, 2)
        with pytest.raises(Killed):
            pretrain("simclr", [toy_dataset], out, base + [{"logger": ["mlflow"]}], device="cpu", progress=False)
    client, killed = mlflow_run(out)
    assert killed.info.status == "FAILED" and [s for s, _ in mlflow_history(client, killed.info.run_id, "loss")] == [1, 2]
    pretrain("simclr", [toy_dataset], out, base + [{"logger": ALL}], device="cpu", progress=False)
    client, run = mlflow_run(out)
    assert run.info.run_id == killed.info.run_id and run.info.status == "FINISHED"
    expected = csv_columns(out)
    assert mlflow_history(client, run.info.run_id, "loss") == expected["loss"]
    assert [e for e, _ in expected["loss"]] == [1, 2, 3]
    board = tensorboard_scalars(out)
    assert [s for s, _ in board["loss"]] == [1, 2, 3]
    assert [v for _, v in board["loss"]] == pytest.approx([v for _, v in expected["loss"]], rel=1e-6)
    # and once more, resumed after the end: nothing is logged twice
    pretrain("simclr", [toy_dataset], out, base + [{"logger": ALL}], device="cpu", progress=False)
    assert [s for s, _ in tensorboard_scalars(out)["loss"]] == [1, 2, 3]
    assert [s for s, _ in mlflow_history(client, run.info.run_id, "loss")] == [1, 2, 3]


def test_evaluation_metrics_reach_the_runs_trackers(toy_dataset, tmp_path):
    out = tmp_path / "run"
    enc = pretrain("simclr", [toy_dataset], out, [TINY, {"epochs": 1, "logger": ALL}], device="cpu", progress=False)
    metrics = {"dataset": "toy", "protocol": "linear_probe", "protocol_id": "linear_probe", "fold": 3,
               "train_fraction": 1.0, "encoder_meta": {"epoch": 1},
               "frame": {"accuracy": 0.75, "balanced_accuracy": 0.5, "macro_f1": 0.625, "macro_auc": float("nan")},
               "video": {"accuracy": 1.0, "balanced_accuracy": 1.0, "macro_f1": 1.0, "macro_auc": 0.875}}
    assert log_evaluation(enc, metrics) == ["tensorboard", "mlflow"]
    prefix = "eval/toy/linear_probe/fold3"
    expected = {f"{prefix}/frame_accuracy": 0.75, f"{prefix}/frame_balanced_accuracy": 0.5,
                f"{prefix}/frame_macro_f1": 0.625, f"{prefix}/video_accuracy": 1.0,
                f"{prefix}/video_balanced_accuracy": 1.0, f"{prefix}/video_macro_f1": 1.0,
                f"{prefix}/video_macro_auc": 0.875}  # the NaN AUC is left out
    board = tensorboard_scalars(out)
    assert {k: v for k, v in board.items() if k.startswith("eval/")} == {k: [(1, v)] for k, v in expected.items()}
    client, run = mlflow_run(out)
    assert {k: v for k, v in run.data.metrics.items() if k.startswith("eval/")} == expected
    assert mlflow_history(client, run.info.run_id, f"{prefix}/video_macro_auc") == [(1, 0.875)]
    # a run without trackers, or an encoder outside a run folder: nothing to log to
    plain = pretrain("simclr", [toy_dataset], tmp_path / "plain", [TINY, {"epochs": 1}], device="cpu", progress=False)
    assert log_evaluation(plain, metrics) == [] and not (tmp_path / "plain" / "trackers.json").exists()
    assert not (tmp_path / "plain" / "tensorboard").exists() and not (tmp_path / "plain" / "mlflow.db").exists()


def test_a_missing_tracker_package_is_a_clear_error_before_training(toy_dataset, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # import tensorboard raises ImportError
    with pytest.raises(TrackerMissingError, match=r"logger: tensorboard needs the tensorboard package.*"
                                                  r"pip install 'hico-bench\[trackers\]'"):
        pretrain("simclr", [toy_dataset], tmp_path / "x", [TINY, {"epochs": 1, "logger": ["csv", "tensorboard"]}],
                 device="cpu", progress=False)
    assert not (tmp_path / "x" / "last.pt").exists() and not (tmp_path / "x" / "config.json").exists()


def test_logger_setting_is_checked_and_not_bound():
    assert resolve_pretrain_config("simclr").logger == ["csv"]
    assert resolve_pretrain_config("simclr", {"logger": "tensorboard"}).logger == ["tensorboard"]
    assert resolve_pretrain_config("simclr", {"logger": ["csv", "mlflow", "csv"]}).logger == ["csv", "mlflow"]
    with pytest.raises(ConfigError, match=r"logger: unknown tracker 'wandb'; use csv, tensorboard, mlflow"):
        resolve_pretrain_config("simclr", {"logger": ["csv", "wandb"]})
    a = run_binding(resolve_pretrain_config("simclr").to_dict(), [], 1)
    b = run_binding(resolve_pretrain_config("simclr", {"logger": ALL}).to_dict(), [], 1)
    assert a == b and not any(k.startswith("logger") for k in a)


def test_hico_evaluate_logs_its_metrics_to_the_runs_tracker(toy_dataset, tmp_path):
    """`hico evaluate` writes metrics.json and hands the same numbers to the pretraining run's
    trackers (here TensorBoard), one scalar per fold and metric."""
    from hico.data.folds import write_folds
    from hico.data.standard import load_dataset
    from hico.evaluation.run import evaluate_folds

    enc = pretrain("simclr", [toy_dataset], tmp_path / "run", [TINY, {"epochs": 1, "logger": ["csv", "tensorboard"]}],
                   device="cpu", progress=False)
    folds = write_folds(load_dataset(toy_dataset).manifest, tmp_path / "folds.csv", 3, 0)
    assert len(folds)
    results = evaluate_folds(enc, toy_dataset, tmp_path / "folds.csv", [0, 1], "knn", image_size=32, max_frames=2,
                             out_paths=[tmp_path / "m0.json", tmp_path / "m1.json"], device="cpu")
    board = tensorboard_scalars(tmp_path / "run")
    for m in results:
        key = f"eval/{m['dataset']}/knn/fold{m['fold']}/frame_accuracy"
        assert board[key] == [(1, pytest.approx(m["frame"]["accuracy"], rel=1e-6))]

"""Experiment trackers of a pretraining run: the run config's ``logger: csv | tensorboard | mlflow``
(one name or a list; default ``[csv]``).

- ``csv`` is ``train_log.csv``, which every run writes whatever ``logger`` says (it is a workflow
  output and what a resume rebuilds); naming it changes nothing.
- ``tensorboard``: event files under ``<run>/tensorboard/`` (``torch.utils.tensorboard``; needs
  the ``tensorboard`` package). ``tensorboard --logdir <runs>`` shows every run.
- ``mlflow``: one MLflow run per pretraining run, in ``MLFLOW_TRACKING_URI`` when it is set, else
  in a local SQLite store in the run folder, ``<run>/mlflow.db`` (MLflow 3 keeps its plain-file
  store in maintenance mode and refuses it unless told otherwise; SQLite is its local store).
  The experiment is ``MLFLOW_EXPERIMENT_NAME`` or ``hico-pretrain``; the run's params are its
  binding (:func:`hico.run_folder.run_binding`), its tags the run name, method, seed and code version.
  ``mlflow ui --backend-store-uri sqlite:///<run>/mlflow.db`` shows it. MLflow's usage telemetry
  is off unless ``MLFLOW_DISABLE_TELEMETRY=false`` is set (runs on patient data should not call out).

Both are optional: ``pip install 'hico-bench[trackers]'``; a tracker whose package is missing is a
:class:`TrackerMissingError` before anything trains. The setting is not bound to the run folder
(it does not change the weights): a run may resume with other trackers.

Logged every epoch, at step = epoch (1-based): each numeric column of the epoch's
``train_log.csv`` row under its own name (``loss`` and the method's loss parts, ``lr``,
``val_loss``, ``images_per_s``, ``epoch_time_s``, ``step``, ``peak_mem_mb``); values that are not
finite (``val_loss`` without held-out videos, ``peak_mem_mb`` on a CPU) are left out. Rows are
logged after the epoch's resume state is written, so a tracker never holds an epoch the run may
redo; a resumed run logs what its trackers miss: TensorBoard purges the earlier events
(``purge_step``) and gets every row again, MLflow continues its run (id in ``<run>/trackers.json``)
from the last epoch it holds. Evaluation runs in other processes; :func:`log_evaluation` adds its
metrics to the trackers of the encoder's run.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from hico import layout
from hico.errors import HicoError

TRACKERS = ("csv", "tensorboard", "mlflow")
DEFAULT_EXPERIMENT = "hico-pretrain"
#: the package each tracker imports, and what to install for it
_NEEDS = {"tensorboard": ("tensorboard", "tensorboard"), "mlflow": ("mlflow", "mlflow")}
_INSTALL = "pip install 'hico-bench[trackers]'"


class TrackerMissingError(HicoError, ImportError):
    """A tracker named in ``logger`` whose package is not installed."""


def tracker_names(value: Any, where: str = "logger") -> list[str]:
    """``logger`` as a list of known tracker names (``"tensorboard"`` -> ``["tensorboard"]``);
    ValueError naming the bad entry otherwise."""
    names = [value] if isinstance(value, str) else list(value or [])
    bad = [n for n in names if n not in TRACKERS]
    if bad or not all(isinstance(n, str) for n in names):
        raise ValueError(f"{where}: unknown tracker {bad[0] if bad else names!r}; use {', '.join(TRACKERS)} "
                         "or a list of them, e.g. logger: [csv, tensorboard]")
    return list(dict.fromkeys(names))


def _before_mlflow() -> None:
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # the module docstring says why


def check_available(names: Iterable[str]) -> None:
    """:class:`TrackerMissingError` for the first tracker in ``names`` whose package is missing."""
    import importlib

    for name in names:
        if name not in _NEEDS:
            continue
        if name == "mlflow":
            _before_mlflow()
        module, package = _NEEDS[name]
        try:
            importlib.import_module(module)
        except ImportError as e:
            raise TrackerMissingError(
                f"logger: {name} needs the {package} package, which is not installed ({e}); install it with "
                f"{_INSTALL} (or pip install {package}), or drop {name} from logger") from None


def _finite_scalars(row: Mapping[str, Any], skip: tuple[str, ...] = ("epoch",)) -> dict[str, float]:
    out = {}
    for k, v in row.items():
        if k in skip or isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        if math.isfinite(float(v)):
            out[k] = float(v)
    return out


def _metric_name(name: str) -> str:
    """MLflow's key alphabet (letters, digits, ``_ - . / space``) for TensorBoard and MLflow alike."""
    return re.sub(r"[^\w\-./ ]", "_", name)


class _TensorBoard:
    def __init__(self, run_dir: Path, purge: bool):
        from torch.utils.tensorboard import SummaryWriter

        # purge_step=1: TensorBoard hides every earlier epoch event; the rows are logged again
        self.writer = SummaryWriter(str(run_dir / layout.TENSORBOARD_DIR), purge_step=1 if purge else None)

    def state(self) -> dict[str, Any]:
        return {"log_dir": layout.TENSORBOARD_DIR}

    def log(self, scalars: Mapping[str, float], step: int) -> None:
        for k, v in scalars.items():
            self.writer.add_scalar(_metric_name(k), v, global_step=step)
        self.writer.flush()

    def logged_epochs(self) -> int:
        return 0  # after the purge it holds none

    def close(self, status: str) -> None:
        self.writer.close()


class _MLflow:
    def __init__(self, run_dir: Path, run_info: Mapping[str, Any], previous: Mapping[str, Any] | None):
        _before_mlflow()
        from mlflow.tracking import MlflowClient

        self.uri = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{(run_dir / layout.MLFLOW_DB).resolve()}"
        self.client = MlflowClient(tracking_uri=self.uri)
        if previous and previous.get("tracking_uri") == self.uri and self._reopen(previous["run_id"]):
            self.run_id = previous["run_id"]
            return
        name = os.environ.get("MLFLOW_EXPERIMENT_NAME", DEFAULT_EXPERIMENT)
        experiment = self.client.get_experiment_by_name(name)
        if experiment is not None:
            experiment_id = experiment.experiment_id
        else:  # our own store: artifacts beside it, not under the working directory
            local = "MLFLOW_TRACKING_URI" not in os.environ
            experiment_id = self.client.create_experiment(
                name, artifact_location=(run_dir / "mlartifacts").resolve().as_uri() if local else None)
        tags = {k: str(run_info[k]) for k in ("run_name", "method", "seed", "git_sha", "binding_hash") if k in run_info}
        self.run_id = self.client.create_run(experiment_id, run_name=str(run_info.get("run_name")), tags=tags).info.run_id
        self._log_params(run_info.get("binding", {}))

    def _reopen(self, run_id: str) -> bool:
        try:
            run = self.client.get_run(run_id)
        except Exception:  # the store was replaced or the run deleted: start another MLflow run
            return False
        if run.info.lifecycle_stage != "active":
            return False
        self.client.update_run(run_id, status="RUNNING")
        return True

    def _log_params(self, binding: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        params = [Param(_metric_name(k)[:250], v if isinstance(v, str) else json.dumps(v))
                  for k, v in sorted(binding.items())]
        for i in range(0, len(params), 100):  # MLflow's batch limit
            self.client.log_batch(self.run_id, params=params[i:i + 100])

    def state(self) -> dict[str, Any]:
        return {"tracking_uri": self.uri, "run_id": self.run_id}

    def log(self, scalars: Mapping[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(_metric_name(k), v, now, step) for k, v in scalars.items()]
        for i in range(0, len(metrics), 1000):
            self.client.log_batch(self.run_id, metrics=metrics[i:i + 1000])

    def logged_epochs(self) -> int:
        """The last epoch this MLflow run holds (``step`` is in every row)."""
        return max((m.step for m in self.client.get_metric_history(self.run_id, "step")), default=0)

    def close(self, status: str) -> None:
        self.client.set_terminated(self.run_id, status=status)


class RunTrackers:
    """The trackers of one pretraining run (rank 0): :meth:`log_epoch` per epoch, :meth:`close`."""

    def __init__(self, run_dir: Path, trackers: dict[str, Any], epochs: int):
        self.run_dir, self.trackers, self.epochs = run_dir, trackers, epochs

    def log_epoch(self, row: Mapping[str, Any]) -> None:
        scalars, step = _finite_scalars(row), int(row["epoch"])
        for tracker in self.trackers.values():
            tracker.log(scalars, step)

    def catch_up(self, rows: list[Mapping[str, Any]]) -> None:
        """Log the rows of earlier epochs a tracker does not hold (a resumed run)."""
        for tracker in self.trackers.values():
            done = tracker.logged_epochs()
            for row in rows:
                if int(row["epoch"]) > done:
                    tracker.log(_finite_scalars(row), int(row["epoch"]))

    def close(self, failed: bool = False) -> None:
        for tracker in self.trackers.values():
            tracker.close("FAILED" if failed else "FINISHED")
        self.trackers = {}


def _read_state(run_dir: Path) -> dict[str, Any]:
    try:
        return json.loads((run_dir / layout.TRACKERS_STATE).read_text())
    except (OSError, ValueError):
        return {}


def open_run_trackers(names: Iterable[str], run_dir: str | Path, run_info: Mapping[str, Any], epochs: int,
                      rows: list[Mapping[str, Any]]) -> RunTrackers:
    """Start (or, for a resumed run, continue) the trackers in ``names`` and log ``rows``, the
    epochs done so far, where they are missing; record them in ``<run>/trackers.json``."""
    from hico.io import atomic_write_json

    run_dir = Path(run_dir)
    names = [n for n in tracker_names(list(names)) if n != "csv"]
    check_available(names)
    previous = _read_state(run_dir)
    if previous.get("binding_hash") != run_info.get("binding_hash") or not rows:
        previous = {}  # another run, or a fresh start: no tracker run of it is continued
    run = RunTrackers(run_dir, {}, epochs)
    try:
        if "tensorboard" in names:
            run.trackers["tensorboard"] = _TensorBoard(run_dir, purge=True)
        if "mlflow" in names:
            run.trackers["mlflow"] = _MLflow(run_dir, run_info, previous.get("mlflow"))
        state = {"binding_hash": run_info.get("binding_hash"), "epochs": int(epochs),
                 **{name: t.state() for name, t in run.trackers.items()}}
        atomic_write_json(run_dir / layout.TRACKERS_STATE, state)
        run.catch_up(rows)
    except BaseException:
        run.close(failed=True)
        raise
    return run


def evaluation_scalars(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The headline numbers of one ``metrics.json`` as ``eval/<dataset>/<protocol_id>/fold<k>/
    <frame|video>_<metric>`` (accuracy, balanced accuracy, macro-F1, macro AUC; finite only)."""
    prefix = f"eval/{metrics.get('dataset')}/{metrics.get('protocol_id', metrics.get('protocol'))}"
    if metrics.get("train_fraction", 1.0) not in (1, 1.0, None):
        prefix += f"_tf{metrics['train_fraction']:g}"
    prefix += f"/fold{metrics.get('fold')}"
    out = {}
    for level in ("frame", "video"):
        block = metrics.get(level) or {}
        for key in ("accuracy", "balanced_accuracy", "macro_f1", "macro_auc"):
            v = block.get(key)
            if isinstance(v, (int, float)) and math.isfinite(float(v)):
                out[_metric_name(f"{prefix}/{level}_{key}")] = float(v)
    return out


def log_evaluation(encoder_path: str | Path, metrics: Mapping[str, Any]) -> list[str]:
    """Log one evaluation's ``metrics.json`` (:func:`evaluation_scalars`) to the trackers of the
    run that made ``encoder_path`` (its folder's ``trackers.json``), at the encoder's epoch;
    returns the trackers written. A run without trackers, or an encoder outside a run folder, is
    a no-op; a tracker that fails warns (the evaluation's own result is metrics.json)."""
    run_dir = Path(encoder_path).parent
    state = _read_state(run_dir)
    meta = metrics.get("encoder_meta") or {}
    step = int(meta.get("epoch") or state.get("epochs") or 0)
    scalars = evaluation_scalars(metrics)
    written = []
    for name in ("tensorboard", "mlflow"):
        if name not in state or not scalars:
            continue
        try:
            if name == "tensorboard":
                from torch.utils.tensorboard import SummaryWriter

                with SummaryWriter(str(run_dir / state["tensorboard"]["log_dir"])) as writer:
                    for k, v in scalars.items():
                        writer.add_scalar(k, v, global_step=step)
            else:
                _before_mlflow()
                from mlflow.entities import Metric
                from mlflow.tracking import MlflowClient

                now = int(time.time() * 1000)
                MlflowClient(tracking_uri=state["mlflow"]["tracking_uri"]).log_batch(
                    state["mlflow"]["run_id"], metrics=[Metric(k, v, now, step) for k, v in scalars.items()])
            written.append(name)
        except Exception as e:  # a tracker's trouble must not lose the evaluation
            warnings.warn(f"{run_dir}: could not log the evaluation to {name} ({type(e).__name__}: {e})", stacklevel=2)
    return written

"""A pretraining run folder: bound to what made it, and held by one process at a time.

**Binding.** A run is bound to its *binding*: the resolved config (dotted keys, e.g.
``optimizer.lr``), the number of DDP processes and the content hashes of the pool's datasets
(``manifest.csv``, ``classes.json``, ``dataset.json`` of each, in pool order; the frames are not
read: they are derived from the sources whose sha256 the manifest lists and from the
preparation spec in ``dataset.json``). ``last.pt`` records the binding it was trained under.
A rerun in the same folder resumes only when the bindings are equal; otherwise it is a
:class:`RunMismatchError` naming the keys and inputs that differ, or, with
``restart_on_mismatch`` (the workflow's ``--restart-on-mismatch``), a fresh start that first
clears every output of the old run (:data:`RUN_OUTPUTS`, the epoch checkpoints).

Left out of the binding, because they do not change the weights a run trains (see
:data:`UNBOUND_KEYS`): the loader's worker count, the documentation keys of a recipe, ``export``
(which encoder becomes ``encoder.pt``; every run applies it again at its end), ``logger`` (the
experiment trackers the log rows also go to; a resumed run catches them up) and
``checkpoint_epochs`` (which extra encoders are kept; a resumed run that has passed a requested
epoch without keeping it is a mismatch of its own). Not config keys at all, so not bound
either: the device (a run may resume on another GPU or on the CPU), the progress bar, the run
name (``--name``, a label) and the datasets' paths (their content is bound). Not bound: the
code version (``git_sha`` is recorded in ``config.json`` and in every encoder's meta).
``epochs`` is bound: the cosine schedule depends on it, so a longer run is another run.

**Lock.** :func:`hold_run_folder` takes a POSIX record lock (``fcntl.lockf``) on
``layout.RUN_LOCK`` and writes the holder's pid and host into it. A second process fails at
once with :class:`RunFolderBusyError`; the lock of a process that died is released by the
kernel, so the next run takes it over. ``lockf`` rather than ``flock``: an ``flock`` is shared
with forked children (the data loader's workers), which could keep a dead run's lock alive;
a POSIX lock belongs to the process alone.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hico import layout
from hico.errors import HicoError

#: config keys that do not change the trained weights, with the reason (module docstring)
UNBOUND_KEYS = {
    "num_workers": "loader processes only: each sample is a function of (seed, epoch, video)",
    "citation": "documentation",
    "reference_code": "documentation",
    "deviations": "documentation",
    "notes": "documentation",
    "export": "which encoder becomes encoder.pt; applied again at the end of every run",
    "checkpoint_epochs": "which extra encoders are kept (a passed, missing one is checked apart)",
    "logger": "experiment trackers the log rows also go to; the weights do not depend on them",
}
#: the files of a run that a fresh start removes (with every ``encoder_epoch<k>.pt``)
RUN_OUTPUTS = (layout.RESUME_STATE, layout.ENCODER, layout.BEST_ENCODER, layout.TRAIN_LOG, layout.RUN_CONFIG)
DATASET_FILES = (layout.MANIFEST, layout.CLASSES, layout.DATASET_INFO)
HOW_TO_PROCEED = ("use another --out, delete the folder, or pass --restart-on-mismatch to start "
                  "afresh there (this removes the old run's encoders and checkpoints)")


class RunMismatchError(HicoError):
    """The run folder holds a run of another config or other data."""


class RunFolderBusyError(HicoError):
    """Another process is training in the run folder."""


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def run_binding(config: dict[str, Any], dataset_dirs: list[str | Path], world_size: int) -> dict[str, Any]:
    """The flat ``{dotted key: value}`` a run is bound to (JSON values only)."""
    bound = {k: v for k, v in config.items() if k not in UNBOUND_KEYS}
    binding = _flatten(json.loads(json.dumps(bound, default=str)))
    binding["world_size"] = int(world_size)
    for i, d in enumerate(dataset_dirs):
        for name in DATASET_FILES:
            path = Path(d) / name
            binding[f"data[{i}].{name}"] = _sha256(path) if path.exists() else None
    return binding


def binding_hash(binding: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(binding, sort_keys=True).encode()).hexdigest()[:16]


def binding_differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """One phrase per differing key, config keys first, e.g. ``optimizer.lr (0.0003 -> 0.1)``."""
    out = []
    for key in sorted(set(old) | set(new), key=lambda k: (k.startswith("data["), k)):
        if key not in old or key not in new:
            out.append(f"{key} ({'absent before' if key not in old else 'absent now'})")
        elif old[key] != new[key]:
            out.append(f"{key} (content changed)" if key.startswith("data[") else f"{key} ({old[key]!r} -> {new[key]!r})")
    return out


def mismatch_message(out_dir: Path, differences: list[str]) -> str:
    shown = differences[:8] + ([f"and {len(differences) - 8} more"] if len(differences) > 8 else [])
    return (f"{out_dir}: the folder holds a run of another config or other data; resuming it would "
            f"mix the two. Differs: {'; '.join(shown)}. To proceed: {HOW_TO_PROCEED}")


def old_run_files(out_dir: Path) -> list[Path]:
    """The outputs of an earlier run present in ``out_dir`` (checkpoints included)."""
    found = [out_dir / name for name in RUN_OUTPUTS if (out_dir / name).exists()]
    return found + sorted(p for p in out_dir.glob(layout.checkpoint_name("*")) if layout.checkpoint_epoch(p) is not None)


def _binding_in_config(out_dir: Path) -> dict[str, Any] | None:
    try:
        return json.loads((out_dir / layout.RUN_CONFIG).read_text()).get("binding")
    except (OSError, ValueError, AttributeError):
        return None


def folder_differences(out_dir: Path, binding: dict[str, Any], checkpoint_epochs: list[int]) -> list[str]:
    """What keeps a run of ``binding`` from resuming the run in ``out_dir`` ([] = nothing: the
    folder holds the same run, or nothing a run could reuse or lose)."""
    import torch

    state_path = out_dir / layout.RESUME_STATE
    if state_path.exists():  # mmap: the binding and the epoch without reading the weights
        state = torch.load(state_path, map_location="cpu", weights_only=True, mmap=True)
        recorded, done, source = state.get("binding"), int(state["epoch"]) + 1, layout.RESUME_STATE
    elif any(p.name != layout.RUN_CONFIG for p in old_run_files(out_dir)):
        recorded, done, source = _binding_in_config(out_dir), 0, layout.RUN_CONFIG
    else:
        return []
    if recorded is None:
        return [f"{source} records no binding (a run of an older version, or files put there by hand)"]
    differences = binding_differences(recorded, binding)
    passed = [layout.checkpoint_name(k) for k in checkpoint_epochs
              if int(k) <= done and not (out_dir / layout.checkpoint_name(k)).exists()]
    if passed:
        differences.append(f"checkpoint_epochs asks for {', '.join(passed)}, which this run passed "
                           f"({done} epochs done) without keeping")
    return differences


def clear_run(out_dir: Path) -> list[Path]:
    """Remove an old run's outputs, its tracker state and TensorBoard events, and the temporary
    files of interrupted writes (the lock stays; so does an MLflow store, which keeps every run)."""
    trackers = [out_dir / layout.TRACKERS_STATE] if (out_dir / layout.TRACKERS_STATE).exists() else []
    events = sorted((out_dir / layout.TENSORBOARD_DIR).glob("events.out.tfevents.*"))
    removed = old_run_files(out_dir) + trackers + events + sorted(out_dir.glob(".*.tmp"))
    for path in removed:
        path.unlink(missing_ok=True)
    return removed


# --------------------------------------------------------------------------------------------
# The lock

_HELD: set[Path] = set()  # folders this process holds (POSIX locks do not exclude the own process)


def _holder(path: Path) -> str:
    try:
        text = path.read_text().strip()
    except OSError:
        return "unknown holder"
    return text or "unknown holder"


@contextmanager
def hold_run_folder(out_dir: str | Path) -> Iterator[Path]:
    """Hold ``out_dir``'s lock for the ``with`` block; :class:`RunFolderBusyError` if held."""
    out_dir = Path(out_dir)
    key = out_dir.resolve()
    path = out_dir / layout.RUN_LOCK
    if key in _HELD:
        raise RunFolderBusyError(f"{out_dir}: this process already trains in this folder; use another --out")
    fh = open(path, "a+")
    try:
        fcntl.lockf(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        fh.close()  # our descriptor only: we hold no lock to lose
        raise RunFolderBusyError(
            f"{out_dir}: another pretraining run holds this folder ({_holder(path)}; lock {path}); "
            "wait for it to finish, stop it, or use another --out") from None
    fh.seek(0)
    stale = fh.read().strip()
    if stale:
        print(f"[pretrain] {out_dir}: taking over the lock left by a run that is gone ({stale})", flush=True)
    fh.seek(0)
    fh.truncate()
    fh.write(f"pid {os.getpid()} on host {socket.gethostname()}, since {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
    fh.flush()
    _HELD.add(key)
    try:
        yield path
    finally:
        _HELD.discard(key)
        fh.seek(0)
        fh.truncate()  # an empty lock file: released in order
        fh.flush()
        fcntl.lockf(fh, fcntl.LOCK_UN)
        fh.close()

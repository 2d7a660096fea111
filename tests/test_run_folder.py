"""Run folders: bound to their config and data (issue 11 item 2), held by one process (item 6),
never exporting a diverged model (item 5), keeping their log across a resume (item 9)."""

from __future__ import annotations

import json
import logging

import pandas as pd
import pytest
import torch
from conftest import write_pattern_dataset

from hico.models.backbone import load_encoder
from hico.run_folder import RunMismatchError
from hico.train import pretrain

TINY = {"image_size": 32, "batch_size": 4, "num_workers": 0, "pretrained": False, "val_fraction": 0.25}
BASE = [TINY, {"epochs": 2, "checkpoint_epochs": [1]}]


def _snapshot(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def _weights(path):
    return load_encoder(path).state_dict()


@pytest.fixture
def finished_run(toy_dataset, tmp_path):
    out = tmp_path / "run"
    pretrain("simclr", [toy_dataset], out, BASE, device="cpu")
    return out


@pytest.mark.parametrize("change, named", [
    ({"optimizer": {"lr": 0.1}}, "optimizer.lr (0.0003 -> 0.1)"),
    ({"params": {"temperature": 0.2}}, "params.temperature (0.5 -> 0.2)"),
    ({"epochs": 3}, "epochs (2 -> 3)"),
])
def test_a_changed_config_is_not_resumed(finished_run, toy_dataset, change, named):
    """Issue 11 item 2: another lr, temperature or epoch count in the same folder used to print
    'resuming at epoch 2', train nothing and keep the old encoder."""
    before = _snapshot(finished_run)
    with pytest.raises(RunMismatchError) as e:
        pretrain("simclr", [toy_dataset], finished_run, BASE + [change], device="cpu")
    message = str(e.value)
    assert str(finished_run) in message and named in message
    assert "another --out" in message and "delete the folder" in message and "--restart-on-mismatch" in message
    assert _snapshot(finished_run) == before, "a refused run must leave the folder as it was"


def test_settings_that_do_not_change_the_weights_resume(finished_run, toy_dataset, caplog):
    """num_workers, export, fewer checkpoints and the run name are not bound: the run resumes
    (here: finished, so nothing is retrained) and exports under the new settings."""
    caplog.set_level(logging.INFO, logger="hico")
    unbound = {"num_workers": 1, "export": "last", "checkpoint_epochs": []}
    pretrain("simclr", [toy_dataset], finished_run, BASE + [unbound], device="cpu", run_name="renamed")
    assert "resuming from" in caplog.text
    meta = load_encoder(finished_run / "encoder.pt").meta
    assert (meta["export"], meta["run_name"], meta["epoch"]) == ("last", "renamed", 2)
    assert list(pd.read_csv(finished_run / "train_log.csv")["epoch"]) == [1, 2]


def test_changed_data_and_a_passed_checkpoint_are_mismatches(finished_run, toy_dataset, tmp_path):
    other = write_pattern_dataset(tmp_path / "other", seed=1)  # same name and shape, other videos
    with pytest.raises(RunMismatchError, match=r"data\[0\]\.manifest\.csv \(content changed\)"):
        pretrain("simclr", [other], finished_run, BASE, device="cpu")
    with pytest.raises(RunMismatchError, match=r"data\[1\]\.manifest\.csv \(absent before\)"):
        pretrain("simclr", [toy_dataset, other], finished_run, BASE, device="cpu")
    # the same data elsewhere (a moved folder) is the same input: only content is bound
    moved = write_pattern_dataset(tmp_path / "moved")
    pretrain("simclr", [moved], finished_run, BASE, device="cpu")
    (finished_run / "encoder_epoch1.pt").unlink()
    with pytest.raises(RunMismatchError, match=r"checkpoint_epochs asks for encoder_epoch1\.pt, which this run "
                                               r"passed \(2 epochs done\) without keeping"):
        pretrain("simclr", [toy_dataset], finished_run, BASE, device="cpu")


def test_a_resume_state_without_binding_is_a_mismatch(finished_run, toy_dataset):
    state = torch.load(finished_run / "last.pt", weights_only=True)
    del state["binding"]  # as written before runs were bound
    torch.save(state, finished_run / "last.pt")
    with pytest.raises(RunMismatchError, match=r"last\.pt records no binding"):
        pretrain("simclr", [toy_dataset], finished_run, BASE, device="cpu")


def test_restart_on_mismatch_starts_afresh(finished_run, toy_dataset, tmp_path, caplog):
    """With the flag the old run is removed, best_val and encoder_best.pt included: the folder
    ends as a fresh run of the new config in an empty folder does."""
    new = [TINY, {"epochs": 2, "optimizer": {"lr": 0.01}}]
    fresh = pretrain("simclr", [toy_dataset], tmp_path / "fresh", new, device="cpu")
    caplog.set_level(logging.INFO, logger="hico")
    caplog.clear()
    restarted = pretrain("simclr", [toy_dataset], finished_run, new, device="cpu", restart_on_mismatch=True)
    out = caplog.text
    assert "resuming" not in out and "starting afresh" in out and "optimizer.lr (0.0003 -> 0.01)" in out
    for name in ("encoder.pt", "encoder_best.pt"):
        a, b = _weights(tmp_path / "fresh" / name), _weights(finished_run / name)
        assert all(torch.equal(a[k], b[k]) for k in a), f"{name} differs from a fresh run's"
    assert _weights(fresh).keys() == _weights(restarted).keys()
    state, fresh_state = (torch.load(d / "last.pt", weights_only=True) for d in (finished_run, tmp_path / "fresh"))
    assert state["best_val"] == fresh_state["best_val"] and state["binding"] == fresh_state["binding"]
    assert not (finished_run / "encoder_epoch1.pt").exists(), "the old run's checkpoint was left behind"
    timing = ["epoch_time_s", "images_per_s", "peak_mem_mb"]
    pd.testing.assert_frame_equal(pd.read_csv(finished_run / "train_log.csv").drop(columns=timing),
                                  pd.read_csv(tmp_path / "fresh" / "train_log.csv").drop(columns=timing))
    info = json.loads((finished_run / "config.json").read_text())
    assert info["config"]["optimizer"]["lr"] == 0.01 and info["binding"]["optimizer.lr"] == 0.01


@pytest.mark.slow
def test_workflow_retrains_when_a_method_override_changes(tmp_path):
    """Issue 11 item 2 in the workflow: after a method override changed, Snakemake reran the
    job, which resumed the old run; with the same epochs it then stopped in a
    MissingOutputException (no epoch left to write train_log.csv), with more epochs the tables
    came from the old encoder. The rule passes --restart-on-mismatch: a fresh start."""
    import yaml
    from test_workflow import snakemake, tiny_config

    run = tmp_path / "runs" / "pretrain" / "tiny_pretrain" / "simclr" / "seed0"
    job_log = tmp_path / "runs" / "logs" / "pretrain" / "tiny_pretrain" / "simclr" / "seed0.log"
    target = str(run / "encoder.pt")

    def build(methods):
        cfg = tiny_config(tmp_path, methods=methods)
        r = snakemake("--cores", "1", target, "--configfile", str(cfg), timeout=600)
        assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
        state = torch.load(run / "last.pt", weights_only=True)
        return _weights(run / "encoder.pt"), pd.read_csv(run / "train_log.csv"), state, job_log.read_text()

    first, log1, state1, _ = build({"simclr": {}})
    assert list(log1["epoch"]) == [1, 2]
    second, log2, state2, text = build({"simclr": {"optimizer": {"lr": 0.01}}})  # same epochs
    assert state1["binding"]["optimizer.lr"] == 0.0003
    assert "resuming" not in text and "starting afresh" in text
    assert list(log2["epoch"]) == [1, 2] and state2["binding"]["optimizer.lr"] == 0.01
    assert not all(torch.equal(first[k], second[k]) for k in first), "encoder.pt was not retrained"
    _, log3, state3, text = build({"simclr": {"optimizer": {"lr": 0.01}, "epochs": 3}})  # more epochs
    assert "resuming" not in text and "epochs (2 -> 3)" in text
    assert list(log3["epoch"]) == [1, 2, 3] and state3["binding"]["epochs"] == 3
    assert yaml.safe_load((run / "config.json").read_text())["config"]["epochs"] == 3


# ---------------------------------------------------------------- one process per folder


def _start(cmd: list[str], ready, timeout: float = 240):
    """Start ``cmd`` in its own session and wait until ``ready()``; returns the process."""
    import subprocess
    import time

    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.time() + timeout
    while not ready() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert proc.poll() is None and ready(), proc.stdout.read().decode()[-2000:]
    return proc


def _kill(proc) -> None:
    import os
    import signal

    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def test_lock_names_its_holder_and_a_dead_holders_lock_is_taken_over(tmp_path, caplog):
    import os
    import socket
    import sys

    from hico.run_folder import RunFolderBusyError, hold_run_folder

    folder = tmp_path / "run"
    folder.mkdir()
    code = ("import sys, time; from hico.run_folder import hold_run_folder\n"
            "with hold_run_folder(sys.argv[1]):\n    print('held', flush=True); time.sleep(120)")
    holder = _start([sys.executable, "-c", code, str(folder)], lambda: (folder / ".lock").exists()
                    and "pid" in (folder / ".lock").read_text())
    try:
        with pytest.raises(RunFolderBusyError) as e, hold_run_folder(folder):
            pass
        assert str(folder) in str(e.value) and f"pid {holder.pid} on host {socket.gethostname()}" in str(e.value)
    finally:
        _kill(holder)  # dies holding the lock: the kernel releases it, the file still names it
    assert f"pid {holder.pid}" in (folder / ".lock").read_text()
    caplog.set_level(logging.INFO, logger="hico")
    with hold_run_folder(folder) as lock:
        assert f"taking over the lock left by a run that is gone (pid {holder.pid}" in caplog.text
        assert f"pid {os.getpid()} " in lock.read_text()
        with pytest.raises(RunFolderBusyError, match="this process already trains in this folder"), \
                hold_run_folder(folder):
            pass
    assert (folder / ".lock").read_text() == ""  # released in order: nothing to take over


@pytest.mark.slow
def test_a_second_run_in_a_busy_folder_fails_at_once_and_deletes_nothing(toy_dataset, tmp_path):
    """Issue 11 item 6: two runs in one folder both exited 0, and the second one's start-up
    cleanup of .*.tmp deleted the first one's in-flight checkpoint."""
    import socket
    import sys

    from hico.run_folder import RunFolderBusyError

    out = tmp_path / "busy"
    cmd = [sys.executable, "-m", "hico", "pretrain", "simclr", "--data", str(toy_dataset), "--out", str(out),
           "--set", "epochs=1000", "--set", "image_size=32", "--set", "batch_size=4", "--set", "num_workers=0",
           "--set", "val_fraction=0.25", "--device", "cpu"]
    first = _start(cmd, lambda: (out / "last.pt").exists())
    try:
        in_flight = out / ".last.pt.abc123.tmp"  # stands for the first run's checkpoint being written
        in_flight.write_bytes(b"half a checkpoint")
        with pytest.raises(RunFolderBusyError) as e:
            pretrain("simclr", [toy_dataset], out, [TINY, {"epochs": 1}], device="cpu", restart_on_mismatch=True)
        assert str(out) in str(e.value) and f"pid {first.pid} on host {socket.gethostname()}" in str(e.value)
        assert in_flight.exists(), "the second run deleted the first one's in-flight write"
        assert first.poll() is None, "the first run was disturbed"
    finally:
        _kill(first)
    # its holder gone, the folder is free again (restarted: epochs 1 is another run than 1000)
    pretrain("simclr", [toy_dataset], out, [TINY, {"epochs": 1}], device="cpu", restart_on_mismatch=True)
    assert list(pd.read_csv(out / "train_log.csv")["epoch"]) == [1] and not in_flight.exists()


# ---------------------------------------------------------------- nothing diverged is exported


def test_a_diverged_run_exports_nothing(toy_dataset, tmp_path, capsys):
    """Issue 11 item 5: with --set optimizer.lr=1e9 SimCLR exited 0, its encoder holding
    non-finite BatchNorm running_var (the loss stayed finite: batch statistics normalise)."""
    from hico.cli import main

    out = tmp_path / "diverged"
    argv = ["pretrain", "simclr", "--data", str(toy_dataset), "--out", str(out), "--device", "cpu",
            "--set", "optimizer.lr=1e9", "--set", "epochs=1", "--set", "checkpoint_epochs=[1]",
            "--set", "image_size=64", "--set", "batch_size=2", "--set", "num_workers=0",
            "--set", "val_fraction=0.25", "--set", "pretrained=false"]
    assert main(argv) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("hico pretrain: error:")]
    assert len(errors) == 1, errors  # (the rest of stderr is the progress bar)
    err = errors[0]
    assert err.startswith("hico pretrain: error: simclr diverged at the end of epoch 1: ")
    assert "running_var (" in err and "nothing was exported" in err and "lower optimizer.lr (now 1e+09)" in err
    left = sorted(p.name for p in out.iterdir())
    assert not [n for n in left if n.endswith(".pt")], f"exported despite divergence: {left}"


# ---------------------------------------------------------------- the log survives a resume


def test_the_training_log_survives_its_deletion_between_kill_and_resume(toy_dataset, tmp_path, monkeypatch):
    """Issue 11 item 9: after Snakemake removed the incomplete train_log.csv of a killed run, the
    resumed run started a new one, and compute_cost.csv understated the time."""
    from test_train import Killed, stop_after

    out, overrides = tmp_path / "run", [TINY, {"epochs": 3}]
    with monkeypatch.context() as m:
        stop_after(m, 2)
        with pytest.raises(Killed):
            pretrain("simclr", [toy_dataset], out, overrides, device="cpu")
    before = pd.read_csv(out / "train_log.csv")
    (out / "train_log.csv").unlink()
    pretrain("simclr", [toy_dataset], out, overrides, device="cpu")
    log = pd.read_csv(out / "train_log.csv")
    assert list(log["epoch"]) == [1, 2, 3]
    pd.testing.assert_frame_equal(log.iloc[:2], before)  # the killed run's rows, its timings included
    # a finished run whose log was removed: rerunning it writes the log again (it used to be missing)
    (out / "train_log.csv").unlink()
    pretrain("simclr", [toy_dataset], out, overrides, device="cpu")
    pd.testing.assert_frame_equal(pd.read_csv(out / "train_log.csv"), log)

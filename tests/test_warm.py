"""Warm start (hico/warm.py): a forked job computes what a cold one does, keeps the job's
descriptors, exit status and signals, and leaves no process behind."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import write_pattern_dataset

from hico import layout, warm
from hico.report.compute_cost import compute_cost

REPO = Path(__file__).resolve().parents[1]
HICO = f"{sys.executable} -m hico"


def _env(**extra) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != warm.DIR_ENV}
    return {**env, "PYTHONPATH": str(REPO), **extra}


def under_warm(script: str, cwd: Path, timeout: int = 300, **env) -> subprocess.CompletedProcess:
    """`python -m hico.warm -- sh -c script`: the jobs of the script may fork from a server."""
    return subprocess.run([sys.executable, "-m", "hico.warm", "--", "sh", "-c", script], cwd=cwd, env=_env(**env),
                          capture_output=True, text=True, timeout=timeout)


def summary(r: subprocess.CompletedProcess) -> tuple[int, int]:
    """(jobs forked, servers) from the wrapper's last line."""
    line = r.stderr.strip().splitlines()[-1]
    words = line.split()
    assert line.startswith("[warm]") and "forked by" in line, r.stderr[-2000:]
    return int(words[1]), int(words[5])


def members(npz: Path) -> dict:
    """The bytes of each array of a feature file (its zip's timestamps are the time it was written)
    and its meta, less the provenance's ``warm_start``."""
    with zipfile.ZipFile(npz) as z:
        out = {name: z.read(name) for name in z.namelist() if name != "meta.npy"}
    meta = json.loads(str(np.load(npz)["meta"]))
    meta["provenance"].pop("warm_start")
    return {**out, "meta": meta}


@pytest.fixture(scope="module")
def encoder_and_data(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("warm")
    data = write_pattern_dataset(root / "data", n_patients=6, frames=3, size=32)
    out = root / "encoder"
    subprocess.run([sys.executable, "-m", "hico", "pretrain", "random_init", "--out", str(out),
                    "--set", "image_size=32"], cwd=root, env=_env(), check=True, capture_output=True)
    return out / layout.ENCODER, data


def test_forked_feature_jobs_write_the_cold_jobs_bytes_to_their_redirected_logs(encoder_and_data, tmp_path):
    encoder, data = encoder_and_data
    cmd = f"{HICO} features --encoder {encoder} --data {data} --image-size 32 --max-frames 2 --device cpu"
    subprocess.run(f"{cmd} --out cold.npz > cold.log 2>&1", shell=True, cwd=tmp_path, env=_env(), check=True)
    # the first job starts the server and waits for it; the second comes when it is ready
    r = under_warm(f"{cmd} --out w1.npz > w1.log 2>&1 && {cmd} --out w2.npz > w2.log 2>&1; echo $HICO_WARM_DIR",
                   tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert summary(r) == (2, 1)
    cold = members(tmp_path / "cold.npz")
    assert len(cold) >= 3 and members(tmp_path / "w1.npz") == cold and members(tmp_path / "w2.npz") == cold
    assert [json.loads(str(np.load(tmp_path / f)["meta"]))["provenance"]["warm_start"]
            for f in ("cold.npz", "w1.npz", "w2.npz")] == [False, True, True]
    for log in ("w1.log", "w2.log"):  # the job's `> log 2>&1` holds in the child
        assert f"-> {log[:2]}.npz" in (tmp_path / log).read_text()
    assert not Path(r.stdout.strip()).exists()  # the wrapper removed its folder


def test_a_forked_pretraining_run_trains_the_same_weights_and_says_it_was_forked(encoder_and_data, tmp_path):
    _, data = encoder_and_data
    cmd = (f"{HICO} pretrain simclr --data {data} --set epochs=1 --set batch_size=4 --set image_size=32 "
           "--set num_workers=0 --set pretrained=false")
    subprocess.run(f"{cmd} --out cold > cold.log 2>&1", shell=True, cwd=tmp_path, env=_env(), check=True)
    r = under_warm(f"{cmd} --out warm > warm.log 2>&1", tmp_path)
    assert r.returncode == 0 and summary(r) == (1, 1), r.stderr[-3000:]
    states = [torch.load(tmp_path / run / layout.ENCODER, weights_only=True) for run in ("cold", "warm")]
    assert states[0]["state_dict"].keys() == states[1]["state_dict"].keys()
    for k, v in states[0]["state_dict"].items():
        assert torch.equal(v, states[1]["state_dict"][k]), k
    configs = [json.loads((tmp_path / run / layout.RUN_CONFIG).read_text()) for run in ("cold", "warm")]
    assert [c["warm_start"] for c in configs] == [False, True]
    logs = [(tmp_path / run / layout.TRAIN_LOG).read_text().splitlines()[1].split(",")[:4] for run in ("cold", "warm")]
    assert logs[0] == logs[1]  # epoch, step, loss, val_loss


def test_compute_cost_leaves_a_forked_runs_benchmark_cpu_and_memory_empty(tmp_path):
    for name, forked in (("cold", False), ("forked", True)):
        run = tmp_path / "runs" / "pool" / name / "seed0"
        run.mkdir(parents=True)
        (run / layout.RUN_CONFIG).write_text(json.dumps({
            "run_name": name, "method": "simclr", "seed": 0, "datasets": ["data/pool"], "warm_start": forked,
            "config": {"batch_size": 4, "image_size": 32}}))
        (run / layout.TRAIN_LOG).write_text("epoch,step,loss,val_loss,step_time_s,images_per_s,wall_time_s\n"
                                            "1,4,3.0,3.1,0.5,8.0,2.0\n")
        bench = tmp_path / "bench" / "pool" / name
        bench.mkdir(parents=True)
        (bench / "seed0.tsv").write_text("s\th:m:s\tmax_rss\tcpu_time\n9.5\t0:00:09\t1500.0\t11.0\n")
    cost = compute_cost([tmp_path / "runs"], [tmp_path / "bench"]).set_index("method")
    assert cost.loc["cold", "bench_max_rss_mb"] == 1500.0 and cost.loc["cold", "bench_cpu_time_s"] == 11.0
    assert np.isnan(cost.loc["forked", "bench_max_rss_mb"]) and np.isnan(cost.loc["forked", "bench_cpu_time_s"])
    assert cost.loc["forked", "bench_wall_s"] == 9.5  # the job's wall time is still the job's


def test_exit_status_and_usage_errors_come_back_and_other_environments_get_their_own_server(tmp_path):
    r = under_warm(f"{HICO} methods > m1.txt; {HICO} methods > m2.txt; {HICO} folds 2> err.txt; echo folds=$?; "
                   f"OMP_NUM_THREADS=3 {HICO} methods > m3.txt", tmp_path, **{warm.PRELOAD_ENV: "hico.cli"})
    assert r.returncode == 0, r.stderr[-3000:]
    assert "folds=2" in r.stdout  # a usage error is exit 2, as cold
    assert "the following arguments are required: dataset" in (tmp_path / "err.txt").read_text()
    listing = (tmp_path / "m1.txt").read_text()
    assert "simclr" in listing and (tmp_path / "m2.txt").read_text() == listing == (tmp_path / "m3.txt").read_text()
    assert summary(r) == (4, 2)  # OMP_NUM_THREADS=3 is another environment: another server


def test_hico_main_checks_the_variable_the_wrapper_sets():
    assert f'os.environ.get("{warm.DIR_ENV}")' in (REPO / "hico" / "__main__.py").read_text()


def test_the_wrappers_exit_status_is_its_commands(tmp_path):
    r = under_warm("exit 7", tmp_path)
    assert r.returncode == 7 and summary(r) == (0, 0)


def _server_children(root: Path) -> list[int]:
    servers = set(warm._server_pids(root))
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) in servers and fields[0] != "Z":
            children.append(int(stat.parent.name))
    return children


def _wait_for(predicate, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("timed out")


@pytest.mark.parametrize("kill", [signal.SIGTERM, signal.SIGKILL])
def test_a_killed_job_takes_its_forked_child_with_it(encoder_and_data, tmp_path, kill):
    """SIGTERM is passed on to the child; after SIGKILL (nothing to pass it on) the server ends
    the child of a job that is gone. Either way no pretraining goes on behind Snakemake's back."""
    _, data = encoder_and_data
    root = Path(tempfile.mkdtemp(prefix="hico-warm-test-", dir="/tmp"))  # a Unix socket's path is short
    env = _env(**{warm.DIR_ENV: str(root), warm.PRELOAD_ENV: "hico.cli"})
    job = [sys.executable, "-m", "hico", "pretrain", "simclr", "--data", str(data), "--out", str(tmp_path / "run"),
           "--set", "epochs=500", "--set", "batch_size=4", "--set", "image_size=32", "--set", "num_workers=0"]
    proc = subprocess.Popen(job, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        child = _wait_for(lambda: _server_children(root))[0]
        _wait_for(lambda: (tmp_path / "run").exists())  # it is training
        proc.send_signal(kill)
        assert proc.wait(timeout=30) == -kill
        _wait_for(lambda: not Path(f"/proc/{child}").exists() or child not in _server_children(root), timeout=15)
    finally:
        proc.kill()
        for pid in warm._server_pids(root):
            os.kill(pid, signal.SIGKILL)
        shutil.rmtree(root, ignore_errors=True)


def test_servers_end_when_their_wrapper_is_killed(tmp_path):
    wrapper = subprocess.Popen([sys.executable, "-m", "hico.warm", "--", "sh", "-c",
                                f"echo $HICO_WARM_DIR > dir.txt; {HICO} methods > /dev/null; sleep 60"],
                               cwd=tmp_path, env=_env(**{warm.PRELOAD_ENV: "hico.cli"}), start_new_session=True)
    folder = None
    try:
        folder = Path(_wait_for(lambda: (tmp_path / "dir.txt").exists() and (tmp_path / "dir.txt").read_text().strip()))
        servers = _wait_for(lambda: warm._server_pids(folder))
        wrapper.kill()  # no chance to stop its servers
        wrapper.wait()
        _wait_for(lambda: not any(Path(f"/proc/{s}").exists() and not warm._zombie(s) for s in servers), timeout=10)
    finally:
        os.killpg(wrapper.pid, signal.SIGKILL)
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)


def test_a_job_cancelled_while_it_waits_for_the_server_costs_the_server_nothing(tmp_path):
    """A job killed in the server's backlog (the server still importing) gets a child that is
    ended at once; the server goes on serving the next job."""
    (tmp_path / "slow_import.py").write_text("import time\ntime.sleep(3)\n")
    script = (f"{HICO} methods > a.txt & a=$!; sleep 1; kill -9 $a; wait $a; "
              f"{HICO} methods > b.txt; echo b=$?")
    r = under_warm(script, tmp_path, PYTHONPATH=f"{REPO}{os.pathsep}{tmp_path}",
                   **{warm.PRELOAD_ENV: "slow_import,hico.cli"})
    assert "b=0" in r.stdout and "simclr" in (tmp_path / "b.txt").read_text(), r.stderr[-2000:]
    assert summary(r) == (2, 1)  # the cancelled job's child and the next job's, by one server

"""Past one machine: the SLURM and Kubernetes profiles, the software the jobs get, and the tiny
workflow run for real on a single-node SLURM cluster (tests/cluster/start_slurm.sh; .ci/run starts it)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import yaml
from packaging.version import Version

import hico

try:
    from test_dependencies import all_pins
    from test_workflow import REPO, TINY, planned_jobs, snakemake
except ImportError:  # imported as a package (pytest --import-mode=importlib)
    from tests.test_dependencies import all_pins
    from tests.test_workflow import REPO, TINY, planned_jobs, snakemake

ENVS = REPO / "workflows" / "envs"
PROFILES = REPO / "workflows" / "profiles"
LOCK = all_pins()  # distribution names normalised (pyyaml, huggingface-hub)
SCHEMA = yaml.safe_load((REPO / "workflows" / "schemas" / "config.schema.yaml").read_text())
BUILDS = SCHEMA["properties"]["torch_build"]["enum"]
DEFAULT_BUILD = SCHEMA["properties"]["torch_build"]["default"]


def image(build: str) -> str:
    return f"docker://ghcr.io/hico-bench/hico-bench:{hico.__version__}-{build}"


def pip_pins(env_file: Path) -> tuple[dict[str, str], list[str]]:
    """(name -> version) of an env file's pip section, and its pip option lines."""
    deps = yaml.safe_load(env_file.read_text())["dependencies"]
    pip = next(d["pip"] for d in deps if isinstance(d, dict))
    pins = dict(p.split("==") for p in pip if "==" in p)
    return pins, [p for p in pip if p.startswith("-")]


# --------------------------------------------------------------------------------------------
# Software


@pytest.mark.parametrize("env_file", sorted(ENVS.glob("*.yaml")), ids=lambda p: p.name)
def test_env_files_pin_the_lock_install_no_code_and_name_the_image(env_file):
    pins, options = pip_pins(env_file)  # their versions are the lock's: test_dependencies
    assert pins
    assert not [o for o in options if o.startswith("-e")], "the suite reaches jobs on PYTHONPATH, not -e"
    build = env_file.stem.removeprefix("torch-") if env_file.stem.startswith("torch-") else "cpu"
    assert Version(pins["torch"]).local == Version(pins["torchvision"]).local == build
    assert options == [f"--extra-index-url https://download.pytorch.org/whl/{build}"]
    named = image(build if env_file.stem.startswith("torch-") else DEFAULT_BUILD).removeprefix("docker://")
    assert named in env_file.read_text()


def test_the_whole_suite_env_installs_the_clone_it_sits_in():
    _, options = pip_pins(REPO / "environment.yml")  # its pins are the lock's: test_dependencies
    assert options == ["-e ."]


def test_every_torch_build_of_the_knob_has_an_env_and_the_image_builds_the_default():
    assert sorted(p.stem for p in ENVS.glob("torch-*.yaml")) == sorted(f"torch-{b}" for b in BUILDS)
    dockerfile = (REPO / "Dockerfile").read_text()
    assert f"ARG TORCH_CUDA={DEFAULT_BUILD}" in dockerfile
    assert f'"torch=={LOCK["torch"]}+${{TORCH_CUDA}}"' in dockerfile
    assert f'"torchvision=={LOCK["torchvision"]}+${{TORCH_CUDA}}"' in dockerfile
    assert "pip install -r requirements-extras.lock" in dockerfile and "snakemake" in LOCK
    assert "COPY requirements.lock requirements-extras.lock " in dockerfile  # the -r include is there
    assert f'org.opencontainers.image.version="{hico.__version__}"' in dockerfile
    kube = yaml.safe_load((PROFILES / "kubernetes" / "config.yaml").read_text())
    assert "docker://" + kube["container-image"] == image(DEFAULT_BUILD)


def test_apptainer_jobs_run_the_image_of_the_torch_build(tmp_path, monkeypatch):
    """`--sdm apptainer` pulls the workflow's `container:` (a stand-in apptainer answers the
    version check; a dry run pulls nothing)."""
    fake = tmp_path / "bin" / "apptainer"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho 'apptainer version 1.3.4'\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}:{os.environ['PATH']}")
    cfg = yaml.safe_load(TINY.read_text())
    cfg.update(data_root=str(tmp_path / "d"), runs_root=str(tmp_path / "r"), results_root=str(tmp_path / "x"),
               torch_build="cu126")
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    r = snakemake("-n", "--sdm", "apptainer", "--configfile", str(path))
    assert r.returncode == 0, (r.stdout + r.stderr)[-2000:]
    assert f"Singularity image {image('cu126')} will be pulled" in r.stdout + r.stderr
    r = snakemake("-n", "--sdm", "apptainer", "--configfile", str(path), "--config", "container=docker://me/hb:1")
    assert "Singularity image docker://me/hb:1 will be pulled" in r.stdout + r.stderr


# --------------------------------------------------------------------------------------------
# Profiles, checked in dry runs (no cluster needed)


LOCAL_RULES = ("all", "download", "prefetch_weights", "aggregate", "metrics_list", "plot")


def test_downloads_weights_and_the_report_are_local_rules():
    """Compute nodes are often offline, and the report rules are seconds of work."""
    localrules = re.search(r"\nlocalrules:\n((?:    .*\n)+)", (REPO / "Snakefile").read_text()).group(1)
    assert sorted(r.strip(" ,") for r in localrules.splitlines()) == sorted(LOCAL_RULES)


def gpu_config(tmp_path) -> Path:
    """The tiny config as a GPU run: pretraining and fine-tuning on GPUs, probes on CPUs."""
    cfg = yaml.safe_load(TINY.read_text())
    cfg.update(data_root=str(tmp_path / "d"), runs_root=str(tmp_path / "r"), results_root=str(tmp_path / "x"))
    cfg["pretrain"].update(gpus=1, threads=8, mem_mb=32000, runtime_min=720)
    cfg["evaluation"].update(threads=4, mem_mb=16000, resources={"frozen": {"gpus": 0, "runtime_min": 60},
                                                                 "finetune": {"gpus": 1, "runtime_min": 240}})
    cfg["evaluation"]["protocols"]["finetune_released"] = {"epochs": 1}
    path = tmp_path / "gpu.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_slurm_profile_sends_each_family_to_its_partition_with_gpus_only_where_needed(tmp_path):
    r = snakemake("-n", "--profile", str(PROFILES / "slurm"), "--configfile", str(gpu_config(tmp_path)))
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-3000:]
    jobs = planned_jobs(out)
    by_rule = {}
    for j in jobs:
        by_rule.setdefault(j["rule"], []).append(j)
    assert {"simulate", "pretrain_tracked", "export_control", "evaluate", "evaluate_finetune"} <= set(by_rule)
    for rule, jobs_of in by_rule.items():
        for j in jobs_of:
            res = j["resources"]
            if rule in LOCAL_RULES:  # never submitted (the real SLURM run checks it)
                continue
            gpu_family = rule in ("pretrain", "pretrain_tracked", "evaluate_finetune")
            assert res.get("slurm_partition") == ("gpu" if gpu_family else "cpu"), (rule, res)
            assert ("gpu" in res) == gpu_family, (rule, res)  # the plugin turns gpu=1 into --gpus=1
    assert by_rule["pretrain_tracked"][0]["resources"]["runtime"] == "720"
    assert by_rule["evaluate"][0]["resources"]["runtime"] == "60"  # a probe is not a 4-hour GPU job
    assert by_rule["evaluate_finetune"][0]["resources"]["runtime"] == "240"
    assert "Group job probes_tiny_eval_simclr_seed0" in out

    # the plugin's own submit command for the planned GPU job: the GPU asked for once, with --gpus
    from snakemake_executor_plugin_slurm.submit_string import get_submit_command
    from snakemake_executor_plugin_slurm.utils import set_gres_string

    class Resources(dict):
        __getattr__ = dict.__getitem__

    planned = by_rule["pretrain_tracked"][0]["resources"]
    res = Resources({k: int(v) if v.isdigit() else v for k, v in planned.items() if "TBD" not in v})
    job = SimpleNamespace(resources=res, threads=8)
    params = {"run_uuid": "u", "slurm_logfile": "l", "comment_str": "rule_pretrain_tracked", "account": "",
              "partition": f" -p {res.slurm_partition}", "workdir": "."}
    call = get_submit_command(job, params) + set_gres_string(job)
    assert "-p gpu" in call and "--mem 32000" in call and "-t 720" in call and "--cpus-per-task=8" in call
    assert call.count("--gpus=1") == 1 and "--gres" not in call


def test_kubernetes_profile_is_accepted_and_every_gpu_job_names_its_manufacturer(tmp_path):
    plugin_module = pytest.importorskip("snakemake_executor_plugin_kubernetes")
    from snakemake_interface_executor_plugins.registry import ExecutorPluginRegistry

    # the plugin's own settings, from the profile's kubernetes-* keys
    profile = yaml.safe_load((PROFILES / "kubernetes" / "config.yaml").read_text())
    plugin = ExecutorPluginRegistry().get_plugin("kubernetes")
    settings = {k.removeprefix("kubernetes-").replace("-", "_"): v for k, v in profile.items()
                if k.startswith("kubernetes-")}
    assert settings and set(settings) <= set(plugin.settings_cls.__dataclass_fields__), settings
    plugin.validate_settings(plugin_module.ExecutorSettings(**settings))
    assert profile["executor"] == "kubernetes"
    # every other key is a Snakemake option: a dry run with the profile (executor `local`: the
    # Kubernetes executor also wants a storage plugin for its pods, absent here)
    r = snakemake("-n", "--profile", str(PROFILES / "kubernetes"), "--executor", "local",
                  "--configfile", str(gpu_config(tmp_path)))
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-3000:]
    jobs = [j for j in planned_jobs(out) if j["rule"] not in LOCAL_RULES]
    gpu_jobs = [j for j in jobs if "gpu" in j["resources"]]
    assert {j["rule"] for j in gpu_jobs} == {"pretrain_tracked", "evaluate_finetune"}
    # the plugin raises for a `gpu` resource without gpu_manufacturer, and takes any gpu key (0
    # too) as a GPU request: only GPU jobs carry one, each with its manufacturer
    assert all(j["resources"].get("gpu_manufacturer") == "nvidia" for j in gpu_jobs)
    assert all(j["resources"]["gpu"] == "1" for j in gpu_jobs)


@pytest.mark.slow
def test_the_paper_config_asks_for_gpus_only_for_pretraining_and_fine_tuning():
    """The README's GPU-hours: every GPU job of the paper config times its wall-time limit."""
    r = snakemake("-n", "--profile", str(PROFILES / "slurm"), "--forceall", timeout=900)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-3000:]
    jobs = [j for j in planned_jobs(out) if j["rule"] not in LOCAL_RULES]
    gpu_hours = sum(int(j["resources"].get("gpu", 0)) * int(j["resources"]["runtime"]) for j in jobs) / 60
    counts = pd.Series([j["rule"] for j in jobs]).value_counts()
    assert counts["evaluate"] + counts["evaluate_finetune"] == 3585
    assert not [j for j in jobs if j["rule"] == "evaluate" and "gpu" in j["resources"]]
    assert gpu_hours == counts["pretrain_tracked"] * 12 + counts["evaluate_finetune"] * 4 == 4620
    before = counts["pretrain_tracked"] * 12 + (counts["evaluate"] + counts["evaluate_finetune"]) * 4
    # the probes of one run and their features jobs form one group; a component is one features
    # job with the probes reading it, and --group-components puts up to 4 in one submission
    runs = set(re.findall(r"Group job (probes_\S+) ", out))
    submissions = out.count("Group job probes_")  # one header per submitted group job
    assert len(runs) == counts["pretrain_tracked"] + counts["export_control"]
    assert counts["features"] / 4 <= submissions < counts["features"] / 3
    readme = (REPO / "README.md").read_text()
    assert "4,620 GPU-hours" in readme and f"{before:,} GPU-hours" in readme
    grouped = counts["evaluate"] + counts["features"]
    assert f"{submissions} submissions instead of {grouped:,}" in readme


# --------------------------------------------------------------------------------------------
# SLURM for real, on one node


def _slurm_is_up() -> str | None:
    """None when the single-node test cluster answers, else why the test is skipped."""
    if shutil.which("sinfo") is None or shutil.which("sbatch") is None:
        return "SLURM is not installed here (tests/cluster/start_slurm.sh installs and starts it; .ci/run does)"
    try:
        states = subprocess.run(["sinfo", "-h", "-o", "%P %T"], capture_output=True, text=True, timeout=10)
    except subprocess.TimeoutExpired:
        return "sinfo did not answer within 10 s"
    if states.returncode != 0 or not re.search(r"^cpu\*? (idle|mixed|allocated)", states.stdout, re.M):
        return f"no idle SLURM partition `cpu` (sinfo: {(states.stdout + states.stderr).strip()[:200]!r}); run tests/cluster/start_slurm.sh"
    if not re.search(r"^gpu (idle|mixed|allocated)", states.stdout, re.M):
        return "the SLURM cluster has no partition `gpu`; tests/cluster/start_slurm.sh makes both"
    return None


def slurm_config(tmp_path) -> Path:
    """The tiny workflow, small enough for a 2-core node: both pretraining families, grouped
    probes, one fine-tuning, t-SNE and the report; sizes chosen so each family's flags differ."""
    cfg = yaml.safe_load(TINY.read_text())
    cfg.update(data_root=str(tmp_path / "data"), runs_root=str(tmp_path / "runs"),
               results_root=str(tmp_path / "results"))
    cfg["pretrain"].update(threads=1, mem_mb=1500, runtime_min=20)
    cfg["pretrain"]["overrides"]["epochs"] = 1
    cfg["evaluation"].update(threads=1, mem_mb=700, runtime_min=10, convergence_epochs=[1],
                             resources={"finetune": {"mem_mb": 1200, "runtime_min": 25}})
    cfg["evaluation"]["protocols"]["finetune_released"] = {"epochs": 1, "methods": ["simclr"]}
    path = tmp_path / "slurm.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _sbatch_calls(log: str) -> dict[str, list[dict]]:
    """Rule (or group) -> the flags of each recorded `sbatch call:` (Snakemake --verbose)."""
    calls: dict[str, list[dict]] = {}
    for call in re.findall(r"sbatch call: (sbatch .*?) --wrap=", log):
        comment = re.search(r"--comment '?(rule|group)_(\w+?)(?:_wildcards_|'|\s)", call)
        flags = {
            "partition": re.search(r" -p '?(\w+)", call).group(1),
            "mem_mb": int(re.search(r" --mem (\d+)", call).group(1)),
            "runtime": int(re.search(r" -t '?(\d+)", call).group(1)),
            "cpus": int(re.search(r"--cpus-per-task=(\d+)", call).group(1)),
            "gpus": re.search(r"--gpus=(\S+)", call).group(1) if "--gpus" in call else None,
            "call": call,
        }
        calls.setdefault(comment.group(2), []).append(flags)
    return calls


@pytest.mark.slow
def test_the_tiny_workflow_runs_through_the_suite_slurm_profile(tmp_path):
    reason = _slurm_is_up()
    if reason:
        pytest.skip(reason)
    cfg = slurm_config(tmp_path)
    start = time.monotonic()
    r = snakemake("-s", str(REPO / "Snakefile"), "--directory", str(tmp_path), "--profile", str(PROFILES / "slurm"),
                  "--configfile", str(cfg), "--slurm-no-account", "--slurm-status-command", "squeue",
                  "--slurm-init-seconds-before-status-checks", "2", "--latency-wait", "5", "--jobs", "4",
                  "--verbose", timeout=1500)
    wall = time.monotonic() - start
    log = r.stdout + r.stderr
    (tmp_path / "snakemake.log").write_text(log)
    assert r.returncode == 0, log[-5000:]
    assert "main_comparison" in set(p.stem for p in (tmp_path / "results" / "tables").glob("*.csv"))
    main = pd.read_csv(tmp_path / "results" / "tables" / "main_comparison.csv")
    assert {"simclr", "random_init"} <= set(main["method"])
    assert (tmp_path / "results" / "figures" / "tsne.png").stat().st_size > 1000

    calls = _sbatch_calls(log)
    print(f"\n[slurm] wall time {wall:.0f} s; sbatch calls per rule:")
    for rule, flags in sorted(calls.items()):
        print(f"  {rule}: {flags[0]['call']}")
    # the submit host ran download/aggregate/plot (localrules): they were never submitted
    assert not {"aggregate", "plot", "all"} & set(calls)
    expected = {  # (partition, memory MB, minutes, CPUs) per rule family
        "simulate": ("cpu", 2000, 15, 1),
        "folds": ("cpu", 2000, 10, 1),
        "check_leakage": ("cpu", 2000, 15, 1),
        "export_control": ("cpu", 4000, 15, 1),
        "pretrain_tracked": ("gpu", 1500, 20, 1),
        "evaluate_finetune": ("gpu", 1200, 25, 1),
        "tsne": ("cpu", 8000, 60, 1),
    }
    for rule, (partition, mem, minutes, cpus) in expected.items():
        got = [(f["partition"], f["mem_mb"], f["runtime"], f["cpus"]) for f in calls[rule]]
        assert got and set(got) == {(partition, mem, minutes, cpus)}, (rule, got)
    assert all(f["gpus"] is None for flags in calls.values() for f in flags)  # gpus: 0 in this config
    # the probes of one pretraining run went out together with the features job they read:
    # simclr's full, frac50 and epoch1 evaluations side by side in one job (3 x 700 MB, 3 CPUs),
    # its time limit the features job's 10 minutes plus the longest probe's 10
    # (a group job's comment is the group id and its rules)
    probes = calls["probes_tiny_eval_simclr_seed0_evaluate_features"]
    assert [(f["partition"], f["mem_mb"], f["runtime"], f["cpus"]) for f in probes] == [("cpu", 2100, 20, 3)]
    random_init = calls["probes_tiny_eval_random_init_seed0_evaluate_features"]  # full and frac50
    assert [(f["partition"], f["mem_mb"], f["runtime"], f["cpus"]) for f in random_init] == [("cpu", 1400, 20, 2)]
    assert "evaluate" not in calls and "features" not in calls  # no probe or features job went out alone
    assert sum(len(f) for f in calls.values()) == 10  # 5 probe jobs in 2 submissions

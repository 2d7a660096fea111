"""The Snakemake workflow: lint, dry runs, config validation, and one tiny end-to-end run."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from hico import layout

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "tests" / "config" / "tiny.yaml"


def snakemake(*args: str, cwd: Path = REPO, timeout: int = 900, warm: bool = False) -> subprocess.CompletedProcess:
    """`python -m snakemake args`; `warm`: under `python -m hico.warm` and with `run:` blocks in
    Snakemake's process, as `make demo` runs it."""
    # The rules run `python`: the interpreter of this test run, whether or not its venv is activated.
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    wrapper = [sys.executable, "-m", "hico.warm", "--"] if warm else []
    demo_flags = ["--force-use-threads"] if warm else []
    return subprocess.run([*wrapper, sys.executable, "-m", "snakemake", *demo_flags, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=env)


def planned_jobs(out: str) -> list[dict]:
    """Every planned job of a `snakemake -n` printout: its rule, wildcards, resources and
    priority (Snakemake prints a priority only when it is not 0)."""
    jobs = []
    for block in re.split(r"\n(?=\s*(?:local)?rule \w+:)", out):
        m = re.match(r"\s*(local)?rule (\w+):", block)
        if m:
            fields = {key: re.search(rf"\n\s*{key}: (.*)", block) for key in ("wildcards", "resources", "priority")}
            pairs = {key: dict(kv.split("=", 1) for kv in f.group(1).split(", ")) if f else {}
                     for key, f in fields.items() if key != "priority"}
            priority = int(fields["priority"].group(1)) if fields["priority"] else 0
            jobs.append({"rule": m.group(2), **pairs, "priority": priority})
    return jobs


def tiny_config(tmp_path: Path, **changes) -> Path:
    cfg = yaml.safe_load(TINY.read_text())
    cfg.update(data_root=str(tmp_path / "data"), runs_root=str(tmp_path / "runs"),
               results_root=str(tmp_path / "results"))
    cfg.update(changes)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.mark.parametrize("config", ["workflows/config/demo.yaml", "tests/config/tiny.yaml"])
def test_lint(config):
    r = snakemake("--lint", "--configfile", config)
    assert r.returncode == 0, r.stdout + r.stderr


def test_demo_dry_run_lists_every_step():
    # --forceall: the whole DAG, also in a clone where `make demo` has already run
    r = snakemake("-n", "--forceall", "--quiet", "rules", "--configfile", "workflows/config/demo.yaml",
                  "--directory", str(REPO))
    assert r.returncode == 0, r.stderr
    for rule in ("simulate", "folds", "check_leakage", "pretrain", "export_control", "evaluate", "aggregate", "plot",
                 "tsne"):
        assert rule in r.stdout, f"rule {rule} missing from the demo DAG:\n{r.stdout}"


def test_make_demo_reruns_the_committed_results_in_a_fresh_clone(tmp_path):
    """results/ is committed: until the demo has run here, `make demo` forces the report rules
    (and so every job upstream of them) instead of letting Snakemake keep the committed tables."""
    for name in ("Makefile", "pyproject.toml", "requirements.lock", "requirements-extras.lock"):
        (tmp_path / name).write_bytes((REPO / name).read_bytes())
    plan = subprocess.run(["make", "-n", "demo"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert plan.returncode == 0, plan.stderr
    assert "--forcerun aggregate tsne" in plan.stdout
    (tmp_path / "runs" / "demo" / "eval").mkdir(parents=True)
    again = subprocess.run(["make", "-n", "demo"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert "--forcerun" not in again.stdout and "snakemake --cores all" in again.stdout


def test_unknown_config_key_is_rejected(tmp_path):
    cfg = tiny_config(tmp_path, epochs_typo=3)
    r = snakemake("-n", "--configfile", str(cfg))
    assert r.returncode != 0
    out = r.stdout + r.stderr
    assert "Additional properties are not allowed ('epochs_typo' was unexpected)" in out


def test_unknown_method_is_rejected(tmp_path):
    cfg = yaml.safe_load(TINY.read_text())
    cfg["methods"]["no_such_method"] = {}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    r = snakemake("-n", "--configfile", str(path))
    assert r.returncode != 0 and "config methods.no_such_method: no recipe no_such_method.yaml" in r.stdout + r.stderr


def _planned(out: str, rule: str) -> list[str]:
    """The output lines of every planned job of ``rule`` in a `snakemake -n` printout (the jobs of
    a group job are printed indented)."""
    jobs = ["rule " + j for j in re.split(r"\n\s*rule ", out)[1:]]
    return [line.strip() for j in jobs if j.startswith(f"rule {rule}:")
            for line in j.splitlines() if line.strip().startswith("output:")]


def test_protocol_and_variant_method_restrictions(tmp_path):
    evaluation = yaml.safe_load(TINY.read_text())["evaluation"]
    evaluation["protocols"] = {"linear_probe": {}, "knn": {"k": 5, "methods": ["simclr"]}}
    evaluation["variant_methods"] = ["simclr"]
    cfg = tiny_config(tmp_path, evaluation=evaluation)
    r = snakemake("-n", "--forceall", "--configfile", str(cfg))
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-3000:]
    planned = sorted(line.split("/eval/tiny_eval/")[1].split("/fold0/")[0] + "/" + line.split("/fold0/")[1].split("/")[0]
                     for line in _planned(out, "evaluate"))
    # random_init: the full linear probe only; simclr: its variants (frac50, epoch1) and knn
    assert planned == ["knn/simclr/seed0/full", "linear_probe/random_init/seed0/full",
                       "linear_probe/simclr/seed0/epoch1", "linear_probe/simclr/seed0/frac50",
                       "linear_probe/simclr/seed0/full"]
    figures = " ".join(_planned(out, "plot"))
    assert "confusion_tiny_eval_knn.png" in figures and "label_efficiency.png" in figures


def test_protocol_dataset_and_variant_seed_and_dataset_restrictions(tmp_path):
    """`datasets:` on a protocol, `variant_seeds` and `variant_datasets` (lung_cpu uses all three):
    only the named cells are planned, the protocol's arguments keep no reserved key, and a
    restricted protocol declares confusion figures only for its datasets."""
    cfg = yaml.safe_load(TINY.read_text())
    cfg["datasets"]["tiny_eval2"] = {**cfg["datasets"]["tiny_eval"], "params": {**cfg["datasets"]["tiny_eval"]["params"], "seed": 5}}
    cfg["evaluation"].update(seeds=[0, 1], label_fractions=[], variant_seeds=[1], variant_datasets=["tiny_eval2"],
                             protocols={"linear_probe": {}, "knn": {"k": 3, "datasets": ["tiny_eval"]}})
    cfg.update(data_root=str(tmp_path / "data"), runs_root=str(tmp_path / "runs"), results_root=str(tmp_path / "results"))
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    r = snakemake("-n", "--forceall", "--printshellcmds", "--configfile", str(path))
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-3000:]
    planned = sorted(line.split("/eval/")[1].split("/fold0/")[0] + "/" + line.split("/fold0/")[1].split("/")[0]
                     for line in _planned(out, "evaluate"))
    full = [f"{d}/linear_probe/{m}/seed{s}/full" for d in ("tiny_eval", "tiny_eval2") for m in ("random_init", "simclr")
            for s in (0, 1)]
    knn = [f"tiny_eval/knn/{m}/seed{s}/full" for m in ("random_init", "simclr") for s in (0, 1)]
    assert planned == sorted(full + knn + ["tiny_eval2/linear_probe/simclr/seed1/epoch1"])
    assert not [c for c in out.splitlines() if "--protocol knn" in c and "datasets" in c]  # not an argument
    figures = " ".join(_planned(out, "plot"))
    assert "confusion_tiny_eval_knn.png" in figures and "confusion_tiny_eval2_knn.png" not in figures
    cfg["evaluation"]["variant_datasets"] = ["nowhere"]
    path.write_text(yaml.safe_dump(cfg))
    r = snakemake("-n", "--configfile", str(path))
    assert r.returncode != 0 and "evaluation.variant_datasets: ['nowhere'] are not in datasets" in r.stdout + r.stderr


def test_only_variant_methods_keep_checkpoints_and_tsne_draws_the_chosen_methods(tmp_path):
    """A method outside `variant_methods` may train fewer epochs than the last convergence
    checkpoint: it is planned without checkpoints and told to keep none."""
    cfg = yaml.safe_load(TINY.read_text())
    cfg["methods"] = {"random_init": {}, "simclr": {"epochs": 3}, "simclr_short": {"method": "simclr", "epochs": 1}}
    cfg["evaluation"].update(convergence_epochs=[2, 3], variant_methods=["simclr"],
                             tsne_methods=["random_init", "simclr_short"])
    cfg.update(data_root=str(tmp_path / "data"), runs_root=str(tmp_path / "runs"),
               results_root=str(tmp_path / "results"))
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    r = snakemake("-n", "--forceall", "--printshellcmds", "--configfile", str(path))
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-3000:]
    tracked, plain = _planned(out, "pretrain_tracked"), _planned(out, "pretrain")
    assert len(tracked) == 1 and "/simclr/seed0/encoder_epoch2.pt" in tracked[0] and "epoch3.pt" in tracked[0]
    assert len(plain) == 1 and "/simclr_short/" in plain[0] and "encoder_epoch" not in plain[0]
    commands = [line for line in out.splitlines() if "python -m hico pretrain simclr" in line]
    short = next(c for c in commands if "--name simclr_short" in c)
    assert '"checkpoint_epochs": []' in short and '"epochs": 1' in short
    assert '"checkpoint_epochs": [2, 3]' in next(c for c in commands if "--name simclr " in c)
    tsne = next(j for j in ("rule " + j for j in re.split(r"\n\s*rule ", out)[1:]) if j.startswith("rule tsne:"))
    # the t-SNE reads the frozen feature files of the chosen methods' encoders
    assert "random_init/seed0/full/frozen.npz" in tsne and "simclr_short/seed0/full/frozen.npz" in tsne
    assert "/simclr/seed0/" not in tsne


def test_restriction_to_an_unknown_method_is_rejected(tmp_path):
    evaluation = yaml.safe_load(TINY.read_text())["evaluation"]
    evaluation["variant_methods"] = ["simclr", "simclr_typo"]
    r = snakemake("-n", "--configfile", str(tiny_config(tmp_path, evaluation=evaluation)))
    assert r.returncode != 0
    assert "evaluation.variant_methods: ['simclr_typo'] are not in methods" in r.stdout + r.stderr
    evaluation.update(variant_methods=["simclr"], tsne_methods=["hico"])
    r = snakemake("-n", "--configfile", str(tiny_config(tmp_path, evaluation=evaluation)))
    assert r.returncode != 0
    assert "evaluation.tsne_methods: ['hico'] are not in methods" in r.stdout + r.stderr


def test_longer_pretraining_runs_are_scheduled_first(tmp_path):
    """pretrain_priority (common.smk): a pretraining job's priority is its epochs as the config
    sets them (the global override, then the method's), so on few cores the longest run starts
    first instead of last; data jobs and the short jobs that gate many (folds, the leakage check, a
    control's export) go before all of them; long evaluation jobs before short ones."""
    cfg = tiny_config(tmp_path, methods={"random_init": {}, "simclr": {"epochs": 5}, "byol": {}})
    r = snakemake("-n", "--configfile", str(cfg))
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-3000:]
    jobs = planned_jobs(out)
    priorities = {j["wildcards"]["method"]: (j["rule"] == "export_control", j["priority"]) for j in jobs
                  if j["rule"] in ("pretrain", "pretrain_tracked", "export_control")}
    # the control's export is short and gates a chain of evaluations: before every pretraining
    assert priorities == {"simclr": (False, 6), "byol": (False, 3), "random_init": (True, 7)}
    # the data every job waits on comes first (common.smk DATA_PRIORITY), then the short jobs that
    # gate many (GATE_PRIORITY)
    assert {j["wildcards"]["dataset"]: j["priority"] for j in jobs if j["rule"] == "simulate"} == {
        "tiny_pretrain": 8, "tiny_eval": 8}
    assert {j["rule"]: j["priority"] for j in jobs if j["rule"] in ("folds", "check_leakage")} == {
        "folds": 7, "check_leakage": 7}
    # the long evaluation jobs and the t-SNE's feature files before the one-second probes; the
    # t-SNE as soon as its feature files exist, not beside the report tail (which it held up)
    assert {j["priority"] for j in jobs if j["rule"] in ("tsne", "evaluate_finetune")} == {1}
    assert {j["priority"] for j in jobs if j["rule"] == "evaluate"} == {0}
    features = {(j["wildcards"]["method"], j["wildcards"]["variant"], j["wildcards"]["bn"]): j["priority"]
                for j in jobs if j["rule"] == "features"}
    tsne_inputs = {key for key, priority in features.items() if priority == 1}
    assert tsne_inputs == {(m, "full", "frozen") for m in ("random_init", "simclr", "byol")}, features
    assert features[("simclr", "epoch1", "frozen")] == 0  # a convergence checkpoint's, not the t-SNE's


@pytest.mark.slow
def test_tiny_end_to_end_then_nothing_to_do(tmp_path):
    """Run as `make demo` runs it, under hico.warm (the real-data run in test_lung runs cold)."""
    cfg = tiny_config(tmp_path)
    r = snakemake("--cores", "2", "--configfile", str(cfg), "--verbose", warm=True)  # verbose: says "spawned job"
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    forked = r.stderr.strip().splitlines()[-1]
    jobs = len(list((tmp_path / "runs" / "benchmarks").rglob("*.tsv")))
    assert jobs == 17 and forked == f"[warm] {jobs} jobs forked by 1 warm-start server", forked  # every job
    # the metrics list, a `run:` block, ran in Snakemake's process (--force-use-threads), not spawned
    assert "spawned job" not in r.stderr and "metrics.json files of this config" in (
        tmp_path / "runs" / "logs" / "report" / "metrics_list.log").read_text()
    assert re.search(r"rule plot:\n(?:\s+\w+: .*\n)*?\s+threads: 2\n", r.stderr), "plot draws on both cores"
    tables = tmp_path / "results" / "tables"
    main = pd.read_csv(tables / "main_comparison.csv")
    assert {"simclr", "random_init"} <= set(main["method"])
    for figure in ("main_comparison", "tsne", "convergence", "label_efficiency", "confusion_tiny_eval_linear_probe"):
        assert (tmp_path / "results" / "figures" / f"{figure}.png").stat().st_size > 1000, figure
    metrics = list((tmp_path / "runs" / "eval").rglob("metrics.json"))
    assert len(metrics) == 10  # 2 methods x 2 folds x {full, frac50} + simclr x 2 folds x epoch1
    assert any(json.loads(m.read_text())["provenance"]["warm_start"] for m in metrics)
    again = snakemake("-n", "--configfile", str(cfg))
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr
    report = snakemake("--configfile", str(cfg), "--report", str(tmp_path / "report.html"))
    assert report.returncode == 0, report.stdout[-2000:]
    assert "main_comparison.png" in (report.stdout + report.stderr) and (tmp_path / "report.html").stat().st_size > 10_000
    html = (tmp_path / "report.html").read_text()
    # the main table itself is in the report (an output of aggregate flagged report()), captioned
    assert base64.b64encode((tables / "main_comparison.csv").read_bytes()).decode() in html
    assert '"labels": {"table": "main_comparison"}' in html and "Main results table (" in html
    # each figure kind has its own caption, not one shared by all
    for caption in ("Main comparison: frame- and video-level accuracy", "Convergence: probe accuracy against",
                    "Confusion matrices of one downstream dataset", "t-SNE of the frozen, globally pooled"):
        assert caption in html, caption
    assert "Evaluated on: tiny_eval." in html  # workflow.rst, templated from the run's config


FIGURE_KINDS = sorted({layout.figure_kind(f) for f in layout.declared_figures(
    [("d", "linear_probe"), ("d", "finetune_released")], convergence=True, label_fractions=True)} | {layout.FIG_TSNE})


@pytest.mark.parametrize("caption", [f"tables/{t}.rst" for t in layout.TABLES] +
                         [f"figures/{kind}.rst" for kind in FIGURE_KINDS])
def test_every_table_and_figure_kind_has_a_report_caption(caption):
    """The report rules name one caption per table and per figure kind (common.smk); a missing
    file would only fail at `snakemake --report`, after the whole run."""
    text = (REPO / "workflows" / "report" / caption).read_text()
    assert len(text.split()) >= 15, f"{caption} is not a caption"


def test_paper_config_plans_downloads_folds_and_leave_one_out_pools():
    """`snakemake -n` on the paper config: download -> prepare -> folds for the five public sets,
    and pretraining on the public lung+liver pool with the evaluation set held out of it."""
    cfg = yaml.safe_load((REPO / "workflows/config/config.yaml").read_text())
    five = ["pocus", "covid_blues", "butterfly_uscl", "busi", "fatty_liver"]
    assert set(five) <= set(cfg["datasets"])
    runs = cfg["runs_root"]
    targets = [f"data/{d}/folds.csv" for d in five] + [
        f"{runs}/pretrain/public_lung_liver-without-pocus/hico/seed0/encoder.pt",
        f"{runs}/checks/public_lung_liver-without-pocus__pocus.ok",
        f"{runs}/pretrain/public_lung_liver/simclr/seed0/encoder.pt",
        f"{runs}/checks/public_lung_liver__busi.ok",
    ]
    # `--config key=value` alone applies to the default config (was: the default skipped, then a
    # schema error)
    r = snakemake(*targets, "-n", "-p", "--config", "allow_overlap=True")
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-3000:]
    assert "extended by additional config specified via the command line" in out
    command = next(line for line in out.splitlines() if "check-overlap" in line and "--eval data/pocus" in line)
    assert "--eval data/pocus --allow-overlap" in command
    for d in five:
        for step in (f"data/raw/{d}/.complete", f"data/{d}/manifest.csv", f"data/{d}/folds.csv"):
            assert step in out, f"{step} missing from the paper plan"
    jobs = ["rule " + j for j in re.split(r"\n\s*rule ", out)[1:]]
    pretrain_jobs = [j for j in jobs if j.startswith(("rule pretrain:", "rule pretrain_tracked:"))]
    hico_job = next(j for j in pretrain_jobs if "without-pocus/hico" in j)
    inputs = next(line for line in hico_job.splitlines() if line.strip().startswith("input:"))
    assert "data/pocus/manifest.csv" not in inputs
    assert all(f"data/{d}/manifest.csv" in inputs for d in ("covid_blues", "butterfly_uscl", "fatty_liver"))
    busi_pool = next(j for j in pretrain_jobs if "public_lung_liver/simclr" in j)
    assert "data/pocus/manifest.csv" in busi_pool


def test_the_workflow_runs_as_a_module_of_another_workflow(tmp_path):
    """A host Snakefile elsewhere loads the suite as a `module` with its own config: recipes,
    schema, envs and the suite's code are found from the module's folder (workflow.current_basedir)."""
    cfg = yaml.safe_load(TINY.read_text())
    cfg["methods"]["hico"] = {"params": {"heads": "pooled"}}  # a recipe in hico/methods, one in baselines
    (tmp_path / "hico.yaml").write_text(yaml.safe_dump(cfg))
    (tmp_path / "Snakefile").write_text(
        'configfile: "hico.yaml"\n\n'
        f'module hico_bench:\n    snakefile: "{REPO / "Snakefile"}"\n    config: config\n\n'
        "use rule * from hico_bench as hico_bench_*\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # the module finds its own code
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    r = subprocess.run([sys.executable, "-m", "snakemake", "-n", "-p", "hico_bench_all"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=300, env=env)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-3000:]
    counts = dict(re.findall(r"^(hico_bench_\w+)\s+(\d+)$", out, re.M))
    assert counts == {"hico_bench_simulate": "2", "hico_bench_folds": "1", "hico_bench_check_leakage": "1",
                      "hico_bench_export_control": "1", "hico_bench_pretrain_tracked": "2",
                      "hico_bench_evaluate": "8", "hico_bench_features": "5", "hico_bench_tsne": "1",
                      "hico_bench_aggregate": "1", "hico_bench_metrics_list": "1",
                      "hico_bench_plot": "1", "hico_bench_all": "1"}, out[-3000:]
    # the jobs run this checkout's code, whatever the host's working directory
    assert f"PYTHONPATH={REPO}" in out and "python -m hico pretrain hico --name hico" in out



def test_per_seed_partitions_give_each_seed_its_own_folds(tmp_path):
    """`partitions: per_seed`: seed k is evaluated on folds_seed<k>.csv, written with fold seed
    fold_seed + k; the default shares one folds.csv."""
    evaluation = yaml.safe_load(TINY.read_text())["evaluation"]
    evaluation.update(seeds=[0, 3], partitions="per_seed", fold_seed=10)
    r = snakemake("-n", "--forceall", "--printshellcmds", "--configfile", str(tiny_config(tmp_path, evaluation=evaluation)))
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-3000:]
    folds_jobs = [line for line in out.splitlines() if "python -m hico folds" in line]
    assert len(folds_jobs) == 2
    assert any("--seed 10 " in j and "folds_seed0.csv" in j for j in folds_jobs)
    assert any("--seed 13 " in j and "folds_seed3.csv" in j for j in folds_jobs)
    evaluations = [line for line in out.splitlines() if "python -m hico evaluate" in line]
    assert evaluations and all(("seed 3 " in e) == ("folds_seed3.csv" in e) for e in evaluations)

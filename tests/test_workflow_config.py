"""The workflow's config as hostile or careless input: names the schema refuses, values that
reach the shell as one argument, and mistakes caught at DAG time (a dry run) rather than in a job."""

from __future__ import annotations

import json
import re

import pytest
import yaml

try:
    from test_workflow import REPO, TINY, snakemake, tiny_config
except ImportError:  # imported as a package (pytest --import-mode=importlib)
    from tests.test_workflow import REPO, TINY, snakemake, tiny_config


def _dry_run(tmp_path, cfg: dict):
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    r = snakemake("-n", "--configfile", str(path))
    return r.returncode, r.stdout + r.stderr


def _tiny(tmp_path) -> dict:
    cfg = yaml.safe_load(TINY.read_text())
    cfg.update(data_root=str(tmp_path / "data"), runs_root=str(tmp_path / "runs"),
               results_root=str(tmp_path / "results"))
    return cfg


def test_a_quote_in_a_config_value_runs_no_shell_command(tmp_path):
    """Issue 11 item 8: `--overrides '{params.overrides}'` let a value with a `'` end the quoted
    JSON, and the shell ran the text after it (`touch` here). Quoted, the value reaches the run
    intact."""
    marker = tmp_path / "INJECTED"
    note = f"' || touch {marker} || '"
    cfg = tiny_config(tmp_path, methods={"random_init": {"notes": note}, "simclr": {}})
    run = tmp_path / "runs" / "pretrain" / "tiny_pretrain" / "random_init" / "seed0"
    r = snakemake(str(run / "encoder.pt"), "--cores", "1", "--configfile", str(cfg))
    assert not marker.exists(), "a config value ran a shell command"
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    assert json.loads((run / "config.json").read_text())["config"]["notes"] == note


def _rename_dataset(cfg: dict, old: str, new: str) -> dict:
    cfg["datasets"][new] = cfg["datasets"].pop(old)
    for pool, members in cfg["pretrain"]["pools"].items():
        cfg["pretrain"]["pools"][pool] = [new if m == old else m for m in members]
    return cfg


@pytest.mark.parametrize("where,name", [("datasets", "eval set"), ("methods", "sub/x"), ("methods", "../x"),
                                        ("pools", "../x")])
def test_names_that_are_not_plain_folder_names_are_refused_by_the_schema(tmp_path, where, name):
    """Names become folder names and command arguments: `eval set` wrote a stray log, `sub/x`
    and `../x` crashed or wrote outside the run folders (issue 11 item 8)."""
    cfg = _tiny(tmp_path)
    if where == "datasets":
        _rename_dataset(cfg, "tiny_eval", name)
    elif where == "methods":
        cfg["methods"][name] = {"method": "simclr"}
    else:
        cfg["pretrain"]["pools"][name] = cfg["pretrain"]["pools"].pop("tiny_pretrain")
        cfg["datasets"]["tiny_eval"]["pool"] = name
    code, out = _dry_run(tmp_path, cfg)
    assert code != 0
    assert f"'{name}' does not match '^[A-Za-z0-9][A-Za-z0-9_.-]*$'" in out, out[-3000:]
    assert "letters, digits" in out  # the schema's description says what a name may be


def test_every_shell_placeholder_is_quoted():
    """Each `{...}` in a rule's shell command is shell-quoted (`:q`), whatever the config holds;
    only `{threads}`, an integer Snakemake sets, is left bare."""
    unquoted = []
    commands = 0
    for smk in sorted((REPO / "workflows" / "rules").glob("*.smk")):
        # every rule's command is built by hico("...") or prefetch("...") (common.smk)
        for block in re.findall(r"\b(?:hico|prefetch)\(((?:\s*\"[^\"]*\")+)", smk.read_text()):
            commands += 1
            for name, spec in re.findall(r"(?<!\{)\{([A-Za-z_][\w.\[\]]*)(:[^{}]*)?\}(?!\})", block):
                if spec != ":q" and name != "threads":
                    unquoted.append(f"{smk.name}: {{{name}{spec}}}")
    assert not unquoted, unquoted
    assert commands == 14  # simulate, download, prefetch_weights, prepare, folds, check_leakage,
    # pretrain, export_control, features, evaluate (both families: EVAL_COMMAND), aggregate, plot, tsne,
    # export_encoder
    shells = [re.findall(r"\n    shell:\n        (\w+)", smk.read_text()) for smk in (REPO / "workflows" / "rules").glob("*.smk")]
    assert sorted({s for found in shells for s in found}) == ["EVAL_COMMAND", "hico", "prefetch"]
    assert (REPO / "workflows" / "rules" / "pretrain.smk").read_text().count("{params.overrides:q}") == 2


def _set_pool(cfg):
    cfg["datasets"]["tiny_eval"]["pool"] = "nopool"


def _default_pool(cfg):
    del cfg["datasets"]["tiny_eval"]["pool"]
    cfg["pretrain"]["default_pool"] = "nopool"


def _override_key(cfg):
    cfg["methods"]["simclr"] = {"lrr": 0.1}


def _nested_override_key(cfg):
    cfg["pretrain"]["overrides"]["optimizer"] = {"lrr": 0.1}


def _checkpoint_after_the_last_epoch(cfg):
    cfg["evaluation"]["convergence_epochs"] = [5]  # tiny.yaml trains 2 epochs


def _protocol(cfg):
    cfg["evaluation"]["protocols"]["linear_prob"] = {}


def _variant_protocol(cfg):
    cfg["evaluation"]["variant_protocols"] = ["knn"]


def _source(cfg):
    cfg["datasets"]["tiny_pretrain"]["source"] = "pocuss"


def _evaluate_on(cfg):
    cfg["methods"]["simclr"] = {"evaluate_on": ["tiny_evl"]}


CONFIG_MISTAKES = [
    (_set_pool, "datasets.tiny_eval.pool: 'nopool' is not a pool of pretrain.pools (known pools: tiny_pretrain)"),
    (_default_pool, "pretrain.default_pool: 'nopool' is not a pool of pretrain.pools (known pools: tiny_pretrain)"),
    (_override_key, "config methods.simclr: unknown keys ['lrr']; valid keys: ['amp', 'augment', 'backbone',"),
    (_nested_override_key, "config pretrain.overrides.optimizer: unknown keys ['lrr']; valid keys: ['betas',"),
    (_checkpoint_after_the_last_epoch, "config methods.simclr (over pretrain.overrides and its recipe): "),
    (_protocol, "evaluation.protocols: ['linear_prob'] are not protocols (known: linear_probe, knn,"),
    (_variant_protocol, "evaluation.variant_protocols: ['knn'] are not in evaluation.protocols (linear_probe)"),
    (_source, "datasets.tiny_pretrain.source: 'pocuss' is not a dataset source (known: synthetic, busi,"),
    (_evaluate_on, "methods.simclr.evaluate_on: ['tiny_evl'] are not in datasets"),
]


@pytest.mark.parametrize("mistake,message", CONFIG_MISTAKES, ids=[m.__name__[1:] for m, _ in CONFIG_MISTAKES])
def test_config_mistakes_fail_the_dry_run_with_a_message_naming_the_key(tmp_path, mistake, message):
    """Issue 11 item 11: `pool: nopool` was a bare KeyError; unknown override keys, protocols and
    sources passed the dry run and failed only in the job (hours later, on a cluster)."""
    cfg = _tiny(tmp_path)
    mistake(cfg)
    code, out = _dry_run(tmp_path, cfg)
    assert code != 0
    assert message in " ".join(out.split()), out[-3000:]
    assert "KeyError" not in out
    if mistake is _checkpoint_after_the_last_epoch:  # the run config's own check, made at DAG time
        assert "checkpoint_epochs [5]" in out


def test_the_dag_time_lists_of_sources_and_protocols_are_the_registries():
    """The dry run checks names against hico.layout, read without importing the package's
    dependencies; those lists must be the registries the jobs use."""
    from hico import layout
    from hico.data.sources import list_sources
    from hico.evaluate import PROTOCOLS

    assert layout.source_names() == list_sources()
    assert sorted(layout.PROTOCOL_IDS) == sorted(PROTOCOLS)

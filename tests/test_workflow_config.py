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
    for smk in sorted((REPO / "workflows" / "rules").glob("*.smk")):
        for block in re.findall(r"\n    shell:\n((?:        .*\n?)+)", smk.read_text()):
            for name, spec in re.findall(r"(?<!\{)\{([A-Za-z_][\w.\[\]]*)(:[^{}]*)?\}(?!\})", block):
                if spec != ":q" and name != "threads":
                    unquoted.append(f"{smk.name}: {{{name}{spec}}}")
    assert not unquoted, unquoted
    assert (REPO / "workflows" / "rules" / "pretrain.smk").read_text().count("{params.overrides:q}") == 2

"""The CLI's surface: ``--version``, a description and examples in every command's ``--help``,
and a user error of every command (bad path, unknown option or value) as one line and exit 2."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import hico
from hico.cli import COMMANDS, main

REPO = Path(__file__).resolve().parents[1]


def test_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"hico-bench {hico.__version__}"


def test_the_package_version_is_hicos():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "hico.__version__"}
    assert re.fullmatch(r"\d+\.\d+\.\d+", hico.__version__)


def test_top_level_help_lists_every_command(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name, command in COMMANDS.items():
        assert re.search(rf"^  {re.escape(name)} +{re.escape(command.description)}$", out, re.MULTILINE)


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_command_has_a_description_and_examples(name, capsys):
    try:
        code = main([name, "--help"])
    except SystemExit as e:  # argparse's own exit after printing the help
        code = e.code
    assert code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: hico {name}")
    first_paragraph = out.split("\n\n")[1]
    assert len(first_paragraph.split()) >= 3  # a description, not an empty line
    examples = out.split("\nexamples:\n", 1)[1].splitlines()
    assert examples and all(e.startswith(f"  python -m hico {name}") for e in examples)


# One user error per case: (argv with {tmp} for a scratch folder). Each must print one line
# `hico <command>: error: ...` on stderr and exit 2, with no traceback and no usage block.
USER_ERRORS = {
    "simulate": [["simulate", "--n-patients", "abc"]],
    "download": [["download", "nosuchsource", "--raw", "{tmp}/raw"]],
    "prepare": [["prepare", "pocus", "--raw", "{tmp}/missing", "--out", "{tmp}/out"],
                ["prepare", "pocus", "--raw", "{tmp}"]],
    "folds": [["folds", "{tmp}/missing"], ["folds", "{tmp}", "--k", "five"]],
    "check-overlap": [["check-overlap", "--pretrain", "{tmp}/a", "--eval", "{tmp}/b"]],
    "pretrain": [["pretrain", "nosuchmethod", "--out", "{tmp}/run"],
                 ["pretrain", "simclr", "--out", "{tmp}/run"],
                 ["pretrain", "simclr", "--data", "{tmp}/missing", "--out", "{tmp}/run"],
                 ["pretrain", "simclr", "--data", "{tmp}", "--out", "{tmp}/run", "--overrides", "{not json"],
                 ["pretrain", "simclr", "--bogus"]],
    "evaluate": [["evaluate", "--encoder", "{tmp}/e.pt", "--data", "{tmp}/missing", "--folds", "{tmp}/f.csv",
                  "--fold", "0", "--out", "{tmp}/m.json"],
                 ["evaluate", "--encoder", "{tmp}/e.pt", "--data", "{tmp}", "--folds", "{tmp}/f.csv",
                  "--fold", "0", "1", "--out", "{tmp}/m.json"],
                 ["evaluate", "--encoder", "{tmp}/e.pt", "--data", "{tmp}/missing", "--folds",
                  "{tmp}/f.csv", "--fold", "0", "--out", "{tmp}/m.json", "--protocol", "bogus"]],
    "features": [["features", "--encoder", "{tmp}/e.pt", "--data", "{tmp}/missing", "--out", "{tmp}/f.npz"],
                 ["features", "--encoder", "{tmp}/e.pt", "--data", "{tmp}", "--bn", "adabn", "--out", "{tmp}/f.npz"]],
    "aggregate": [["aggregate", "--out-dir", "{tmp}/t", "--alpha", "abc"],
                  ["aggregate", "--metrics-dir", "{tmp}/missing", "--out-dir", "{tmp}/t"]],
    "plot": [["plot", "--out-dir", "{tmp}/f", "--figures", "bogus"]],
    "export": [["export", "{tmp}/missing.pt", "--out", "{tmp}/x"], ["export", "{tmp}/missing.pt"]],
    "methods": [["methods", "--bogus"]],
}
CASES = [pytest.param(*c.values, marks=c.marks, id=f"{c.values[0][0]}-{i}") if hasattr(c, "values")
         else pytest.param(c, id=f"{c[0]}-{i}") for cases in USER_ERRORS.values() for i, c in enumerate(cases)]


def test_every_command_has_a_user_error_case():
    assert set(USER_ERRORS) == set(COMMANDS)


@pytest.mark.parametrize("argv", CASES)
def test_user_error_is_one_line_and_exit_2(argv, tmp_path, capsys):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert main(argv) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith(f"hico {argv[0]}: error: ")
    assert "Traceback" not in err and "usage:" not in captured.err + captured.out


def test_unknown_command_is_one_line(capsys):
    assert main(["nosuchcommand"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("hico: error: unknown command 'nosuchcommand'")


def test_debug_keeps_the_traceback_of_a_usage_error(tmp_path):
    from hico.cli import UsageError

    with pytest.raises(UsageError, match="unrecognized arguments"):
        main(["--debug", "methods", "--bogus"])


def test_argparse_is_left_as_it_was():
    import argparse

    before = argparse.ArgumentParser.error
    main(["methods", "--bogus"])
    assert argparse.ArgumentParser.error is before

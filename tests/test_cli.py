"""The CLI: a user error is one line on stderr and exit code 2; --debug keeps the traceback."""

from __future__ import annotations

import pytest

from hico.cli import main
from hico.data.standard import DatasetError


def test_user_error_is_one_line_and_exit_2(tmp_path, capsys):
    missing = tmp_path / "nothere"
    assert main(["folds", str(missing)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err.startswith("hico folds: error: ") and str(missing) in err
    assert "Traceback" not in err


def test_debug_shows_the_traceback(tmp_path):
    with pytest.raises(DatasetError):
        main(["--debug", "folds", str(tmp_path / "nothere")])


def test_unknown_command_exits_2(capsys):
    assert main(["nosuchcommand"]) == 2

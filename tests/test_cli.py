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


@pytest.fixture
def restore_logging():
    """main() configures the suite's loggers for the process; put them back for the next test."""
    import logging

    from hico.log_config import LIBRARY_LOGGERS

    saved = {name: (logging.getLogger(name).level, list(logging.getLogger(name).handlers)) for name in LIBRARY_LOGGERS}
    yield
    for name, (level, handlers) in saved.items():
        logger = logging.getLogger(name)
        logger.setLevel(level)
        logger.handlers[:] = handlers


def _simulate(out, *flags: str) -> int:
    return main([*flags, "simulate", "--out", str(out), "--n-patients", "3", "--videos-per-patient", "1",
                 "--frames", "2", "--size", "32"])


def test_a_library_info_line_shows_by_default_on_stderr(tmp_path, capsys, restore_logging):
    assert _simulate(tmp_path) == 0
    captured = capsys.readouterr()
    # logged by hico.data.synthetic, not printed: stdout is left to results
    assert captured.out == ""
    assert captured.err.startswith(f"wrote {tmp_path / 'synthetic_lus'} (3 videos) in ")


def test_quiet_silences_info_lines_and_verbose_names_their_logger(tmp_path, capsys, restore_logging):
    assert _simulate(tmp_path / "q", "-q") == 0
    assert capsys.readouterr().err == ""
    assert _simulate(tmp_path / "q2", "--quiet") == 0
    assert capsys.readouterr().err == "" and (tmp_path / "q2" / "synthetic_lus" / "manifest.csv").exists()
    assert _simulate(tmp_path / "v", "--verbose") == 0
    assert "INFO hico.data.synthetic: wrote " in capsys.readouterr().err


def test_verbose_and_quiet_together_are_a_user_error(capsys, restore_logging):
    assert main(["-v", "-q", "methods"]) == 2
    assert capsys.readouterr().err.strip() == ("hico: error: -v/--verbose and -q/--quiet contradict each other; "
                                              "give one of them")


def test_the_methods_listing_stays_on_stdout_when_quiet(capsys, restore_logging):
    assert main(["-q", "methods"]) == 0
    out = capsys.readouterr().out
    assert any(line.startswith("simclr ") for line in out.splitlines())

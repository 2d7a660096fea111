"""hico.progress: tqdm on a terminal, a bounded number of plain lines elsewhere."""

from __future__ import annotations

import io
import logging

import pytest

from hico.progress import LineProgress, progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_log_file_gets_one_plain_line_per_ten_percent():
    stream = io.StringIO()
    items = list(progress(range(1000), desc="extract", unit="batch", stream=stream))
    assert items == list(range(1000))
    text = stream.getvalue()
    assert "\r" not in text and text.endswith("\n")
    lines = text.splitlines()
    assert len(lines) == 10
    assert lines[0].startswith("extract:  10% (100/1000 batch,") and lines[-1].startswith("extract: 100% (1000/1000")


@pytest.mark.parametrize("total", [1, 3, 7, 250])
def test_the_number_of_lines_is_bounded_whatever_the_total(total):
    stream = io.StringIO()
    for _ in progress(range(total), stream=stream, step_percent=25):
        pass
    lines = stream.getvalue().splitlines()
    assert 1 <= len(lines) <= 100 // 25 + 1
    assert lines[-1].startswith(f": 100% ({total}/{total} it")


def test_a_terminal_gets_a_tqdm_bar():
    stream = Terminal()
    for _ in progress(range(50), desc="finetune", stream=stream, mininterval=0):
        pass
    assert "\r" in stream.getvalue() and "finetune" in stream.getvalue()


def test_manual_updates_without_total_and_postfix_report_at_close():
    stream = io.StringIO()
    with progress(desc="download", unit="B", unit_scale=True, stream=stream) as bar:
        for _ in range(5):
            bar.update(2048)
        bar.set_postfix(loss="0.5000")
    assert stream.getvalue() == stream.getvalue().splitlines()[0] + "\n"
    assert stream.getvalue().startswith("download: (10.0kB,") and stream.getvalue().endswith("loss=0.5000\n")


def test_a_loop_that_stops_early_reports_where_it_stopped():
    stream = io.StringIO()
    bar = progress(range(100), stream=stream)
    for i in bar:
        if i == 14:
            break
    bar.close()
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith(":  10% (10/100 it") and lines[-1].startswith(":  14% (14/100 it")


def test_a_resumed_bar_reports_only_progress_beyond_its_start():
    stream = io.StringIO()
    with progress(total=100, initial=95, stream=stream) as bar:
        bar.update(5)
    assert stream.getvalue().splitlines() == [stream.getvalue().splitlines()[0]]
    assert stream.getvalue().startswith(": 100% (100/100")


@pytest.mark.parametrize("tty", [False, True])
def test_disabled_and_quiet_bars_write_nothing(tty):
    stream = Terminal() if tty else io.StringIO()
    for _ in progress(range(20), stream=stream, enabled=False):
        pass
    hico_logger = logging.getLogger("hico")
    old = hico_logger.level
    hico_logger.setLevel(logging.WARNING)  # what `python -m hico -q` does
    try:
        for _ in progress(range(20), stream=stream):
            pass
    finally:
        hico_logger.setLevel(old)
    assert stream.getvalue() == ""


def test_step_percent_is_checked():
    with pytest.raises(ValueError, match="step_percent"):
        LineProgress(range(3), step_percent=0)


def test_evaluation_loops_report_plain_lines_on_a_captured_stderr(capsys):
    """pytest's stderr is no terminal, like a workflow log: the probe and k-NN report lines."""
    import numpy as np

    from hico.evaluation.frozen import knn, linear_probe
    from hico.evaluation.splits import FrameFeatures

    rng = np.random.default_rng(0)

    def split(n):
        return FrameFeatures(rng.normal(size=(n, 4)), np.arange(n) % 2, np.array([f"v{i}" for i in range(n)]))

    train, val, test = split(20), split(6), split(6)
    knn(train, val, test, n_classes=2, k=3)
    linear_probe(train, val, test, n_classes=2, c_grid=(0.1, 1.0))
    err = capsys.readouterr().err
    assert "\r" not in err
    assert any(line.startswith("k-NN: test frames: 100% (1/1 block") for line in err.splitlines())
    assert any(line.startswith("linear probe: C grid: 100% (2/2 C") for line in err.splitlines())

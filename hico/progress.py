"""Progress of long loops: a tqdm bar on a terminal, plain lines in a log file.

A tqdm bar redraws itself with ``\\r``; in a workflow log (``> {log} 2>&1``) every redraw stays
in the file. When the stream is not a terminal, :func:`progress` returns a
:class:`LineProgress` instead: one newline-terminated line each time another ``step_percent``
of the total is done (at most ``100 / step_percent + 1`` lines per loop), so a log shows how far
a job got without the noise.

``python -m hico -q`` sets the ``hico`` logger to WARNING; a bar counts as an info message, so
it is hidden then too.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, TextIO

DEFAULT_STEP_PERCENT = 10


def quiet() -> bool:
    """Whether info messages were switched off (``-q``). An unset level (library use, tests) is
    not quiet: the bars show as they did before logging was configured by the CLI."""
    level = logging.getLogger("hico").level
    return level != logging.NOTSET and level > logging.INFO


def is_terminal(stream: Any) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


def progress(iterable: Iterable | None = None, *, total: int | None = None, desc: str = "", unit: str = "it",
             enabled: bool = True, stream: TextIO | None = None, step_percent: int = DEFAULT_STEP_PERCENT,
             initial: int = 0, unit_scale: bool = False, leave: bool = False, **tqdm_options: Any):
    """A progress bar over ``iterable`` (or updated by hand with ``update(n)``), written to
    ``stream`` (default: the current ``sys.stderr``).

    On a terminal: ``tqdm.auto.tqdm`` with these arguments. Elsewhere: :class:`LineProgress`,
    which offers the part of tqdm's interface the suite uses (iteration, ``update``,
    ``set_postfix``, ``close``, ``with``). ``enabled=False`` or ``-q``: a silent bar.
    """
    from tqdm.auto import tqdm

    stream = sys.stderr if stream is None else stream
    if total is None and iterable is not None and hasattr(iterable, "__len__"):
        total = len(iterable)
    if not enabled or quiet():
        return tqdm(iterable, total=total, disable=True)
    if is_terminal(stream):
        return tqdm(iterable, total=total, desc=desc, unit=unit, file=stream, initial=initial,
                    unit_scale=unit_scale, leave=leave, **tqdm_options)
    return LineProgress(iterable, total=total, desc=desc, unit=unit, stream=stream, step_percent=step_percent,
                        initial=initial, unit_scale=unit_scale)


class LineProgress:
    """Progress as plain lines: ``desc: 40% (4/10 it, 3s) loss=0.71``.

    A line is written when the done fraction passes the next multiple of ``step_percent``, and
    once at ``close`` if the count moved since the last line (a loop without a known total, or
    one that stopped early), so the last line always holds the final count.
    """

    def __init__(self, iterable: Iterable | None = None, *, total: int | None = None, desc: str = "",
                 unit: str = "it", stream: TextIO | None = None, step_percent: int = DEFAULT_STEP_PERCENT,
                 initial: int = 0, unit_scale: bool = False):
        if not 0 < step_percent <= 100:
            raise ValueError(f"step_percent must be in (0, 100], got {step_percent}")
        self.iterable, self.total, self.desc, self.unit = iterable, total, desc, unit
        self.stream = sys.stderr if stream is None else stream
        self.step_percent, self.unit_scale = step_percent, unit_scale
        self.n = self.reported_n = initial
        # a resumed download starts at its part's size: only progress beyond it is reported
        self.reported_step = self._step()
        self.postfix = ""
        self.start = time.monotonic()
        self.closed = False

    def __iter__(self) -> Iterator:
        try:
            for item in self.iterable:
                yield item
                self.update(1)
        finally:
            self.close()

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _step(self) -> int:
        if not self.total:
            return 0
        return int(min(self.n, self.total) * 100 / self.total) // self.step_percent

    def update(self, n: int = 1) -> None:
        self.n += n
        step = self._step()
        if step > self.reported_step:
            self.reported_step = step
            self._write()

    def set_postfix(self, ordered_dict: dict | None = None, refresh: bool = True, **values: Any) -> None:
        """Shown on the next line (``refresh`` is tqdm's; lines are only written at steps)."""
        values = {**(ordered_dict or {}), **values}
        self.postfix = ", ".join(f"{k}={v}" for k, v in values.items())

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.n != self.reported_n:
            self._write()

    def _count(self, n: float) -> str:
        if self.unit_scale:
            from tqdm import tqdm

            return tqdm.format_sizeof(n, divisor=1024)
        return str(int(n))

    def _write(self) -> None:
        self.reported_n = self.n
        done = f"{self._count(self.n)}/{self._count(self.total)}" if self.total else self._count(self.n)
        percent = f"{int(min(self.n, self.total) * 100 / self.total):3d}% " if self.total else ""
        elapsed = time.monotonic() - self.start
        unit = self.unit if self.unit_scale else f" {self.unit}"  # 10.0kB, as tqdm writes it; 4/10 batch
        line = f"{self.desc}: {percent}({done}{unit}, {elapsed:.0f}s)"
        self.stream.write(line + (f" {self.postfix}" if self.postfix else "") + "\n")
        self.stream.flush()

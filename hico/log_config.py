"""Logging of ``python -m hico``, configured once by the CLI (:func:`hico.cli.main`).

Library modules log with ``logging.getLogger(__name__)`` and never print; the CLI decides what
shows. Only the suite's loggers (``hico``, ``baselines``) are configured, so third-party info
messages stay hidden and their warnings reach Python's last-resort handler as before.
"""

from __future__ import annotations

import logging
import sys

LIBRARY_LOGGERS = ("hico", "baselines")
#: info and warning lines look as the suite's print() lines did; debug adds where they come from
PLAIN_FORMAT = "%(message)s"
DEBUG_FORMAT = "%(levelname)s %(name)s: %(message)s"


class CurrentStderrHandler(logging.StreamHandler):
    """Writes to ``sys.stderr`` as it is at each message (a test's capture, a redirect), not as
    it was when logging was configured."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # StreamHandler.__init__ and setStream assign it
        pass


def verbosity_level(verbose: bool, quiet: bool) -> int:
    """``-v`` -> DEBUG, ``-q`` -> WARNING, neither -> INFO (the default shows what print() did)."""
    if verbose and quiet:
        raise ValueError("-v/--verbose and -q/--quiet contradict each other; give one of them")
    return logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO


def configure_logging(level: int) -> None:
    """Send the suite's log records at ``level`` and above to stderr. Calling it again (each
    in-process ``main()`` call) replaces the handler it added instead of adding another."""
    formatter = logging.Formatter(DEBUG_FORMAT if level <= logging.DEBUG else PLAIN_FORMAT)
    for name in LIBRARY_LOGGERS:
        logger = logging.getLogger(name)
        for old in [h for h in logger.handlers if isinstance(h, CurrentStderrHandler)]:
            logger.removeHandler(old)
        handler = CurrentStderrHandler()
        handler.setFormatter(formatter)
        logger.addHandler(handler)
        logger.setLevel(level)

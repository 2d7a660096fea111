"""The suite's own errors: what a user can fix, said in one line.

Every error the suite raises on purpose (bad config, bad data, a missing file, a refused
download) derives from :class:`HicoError`. The CLI prints such an error as one line
``hico <command>: error: <message>`` and exits 2; ``--debug`` shows the traceback. Anything
else is a bug and keeps its traceback.

A message names the file (or setting), what was expected and how to fix it.
"""

from __future__ import annotations

#: the exit code of a user error (argparse uses the same)
USER_ERROR_EXIT = 2


class HicoError(Exception):
    """Base of every error the suite raises for input a user can fix."""

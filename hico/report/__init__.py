"""The report: every ``metrics.json`` -> ``results/tables`` -> ``results/figures``.

One module per job: :mod:`records` (loading metrics.json), :mod:`columns` (the column schema
of every table), :mod:`tables` (summaries and pooled confusion matrices), :mod:`paper` (the
published numbers), :mod:`stats` (paired tests and the verdict rule), :mod:`claims` (the
paper's claims, one function per kind of evidence), :mod:`compute_cost` (pretraining cost of
each run folder), :mod:`aggregate` (the ``hico aggregate`` command) and :mod:`plots` (the
``hico plot`` command).
"""

from __future__ import annotations

from hico.errors import HicoError


class AggregateError(HicoError, ValueError):
    """Input of the report (metrics.json, paper.csv, run folders) that a user can fix."""

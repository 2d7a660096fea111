"""``--set key=value`` on the command line: the one parser of every command that takes it.

``python -m hico pretrain ... --set optimizer.lr=0.1 --set epochs=2`` and
``python -m hico prepare ... --set fps=3`` both go through :func:`parse_set`: each value is
read as YAML (``0.1`` a float, ``true`` a bool, ``[a, b]`` a list, ``null`` None, anything else a
string), and a dotted key makes nested dicts.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def parse_set(pairs: Iterable[str] | None) -> dict[str, Any]:
    """``["optimizer.lr=0.1", "epochs=2"]`` -> ``{"optimizer": {"lr": 0.1}, "epochs": 2}``."""
    import yaml

    out: dict[str, Any] = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise SystemExit(f"--set expects key=value, got {pair!r}")
        key, value = pair.split("=", 1)
        node = out
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = yaml.safe_load(value)
    return out

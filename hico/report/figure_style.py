"""What the figures of one ``hico plot`` call share: the headless backend, fonts, the method
colours and order, reference lines, axis limits and the atomic PNG + SVG writer."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

log = logging.getLogger(__name__)

# svg.hashsalt: the SVG's element ids are hashes salted at random unless fixed; with it (and no
# Date metadata) a rerun writes byte-identical figures, as it writes identical tables.
plt.rcParams.update({"font.size": 10, "axes.titlesize": 10, "axes.labelsize": 10, "legend.fontsize": 9,
                     "svg.fonttype": "none", "svg.hashsalt": "hico-bench", "figure.dpi": 100})

#: the control drawn as a reference line in every comparison panel
RANDOM_INIT = "random_init"


def save_figure(fig, out_dir: Path, name: str) -> list[Path]:
    """``<name>.png`` and ``<name>.svg`` in ``out_dir``, each written to a temporary file first."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for ext in ("png", "svg"):
        path = out_dir / f"{name}.{ext}"
        tmp = out_dir / f".{name}.tmp.{ext}"
        fig.savefig(tmp, dpi=150, bbox_inches="tight", metadata={"Date": None} if ext == "svg" else None)
        tmp.replace(path)
        paths.append(path)
    plt.close(fig)
    log.info(f"[plot] wrote {paths[0]} (+ .svg)")
    return paths


@dataclass(frozen=True)
class Style:
    """The reference method (drawn first, bold) and every method of the run, so that a method
    has the same colour in every figure of the run."""

    reference: str = "hico"
    methods: tuple[str, ...] = ()

    def order(self, methods: Iterable[str]) -> list[str]:
        """The reference and its variants (``<reference>_...``) first, then alphabetical."""
        ref = self.reference
        return sorted(set(methods), key=lambda m: (not (m == ref or m.startswith(f"{ref}_")), m))

    def colors(self, methods: Iterable[str]) -> dict[str, tuple]:
        """A stable colour per method; the reference method always gets the first colour."""
        ordered = self.order(set(methods) | set(self.methods))
        cmap = plt.get_cmap("tab10" if len(ordered) <= 10 else "tab20")
        return {m: cmap(i % cmap.N) for i, m in enumerate(ordered)}


#: the style of a figure drawn on its own (hico plot builds one from the run's methods)
DEFAULT_STYLE = Style()


def label_suffix(fraction: float | None) -> str:
    """How a method's name shows the labelled pretraining videos it saw (``pretrain_labelled_fraction``)."""
    if fraction is None or not np.isfinite(fraction):
        return " [labels ?]"
    return f" [labels {fraction:.0%}]" if fraction > 0 else ""


def majority_rate(records: pd.DataFrame) -> float | None:
    """Accuracy of always predicting the most frequent true class of these records' test sets
    (from their confusion matrices: rows are true classes); None without records."""
    support = None
    for cm in records.get("confusion_matrix", pd.Series(dtype=object)):
        rows = np.asarray(json.loads(cm), dtype=float).sum(axis=1)
        support = rows if support is None else support + rows
    if support is None or support.sum() == 0:
        return None
    return float(support.max() / support.sum())


def zoom(values: Iterable[float], pad: float = 0.06, floor: float = 0.02) -> tuple[float, float]:
    """Axis limits around the finite ``values`` with a margin, inside [0, 1]."""
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], dtype=float)
    if len(v) == 0:
        return 0.0, 1.0
    lo, hi = float(v.min()), float(v.max())
    margin = max(floor, pad * (hi - lo))
    return max(0.0, lo - margin), min(1.0, hi + margin)


def zoom_with_line(values: Iterable[float], line: float | None) -> tuple[float, float, bool]:
    """:func:`zoom` of ``values``, widened to a reference ``line`` (the majority-class rate) only
    when it lies within half the data's range of them; (low, high, whether the line is on the axis).
    A line far below the data would squash the differences the figure is for."""
    lo, hi = zoom(values)
    if line is None:
        return lo, hi, False
    if lo - (hi - lo) / 2 <= line <= hi + (hi - lo) / 2:
        lo, hi = zoom([lo, hi, line], pad=0.0, floor=0.01)
    return lo, hi, lo <= line <= hi


#: where :func:`off_axis_note` writes, by (axis, line below the data): (x, y, ha, va, text)
_NOTE_AT = {("x", True): (0.01, 0.01, "left", "bottom", "◀ {}"), ("x", False): (0.99, 0.01, "right", "bottom", "{} ▶"),
            ("y", True): (0.01, 0.01, "left", "bottom", "{} ▼"), ("y", False): (0.01, 0.99, "left", "top", "{} ▲")}


def off_axis_note(ax, line: float, low: float, axis: str = "x", label: str = "majority class") -> None:
    """Say at the axis edge where a reference line left off the axis lies."""
    x, y, ha, va, text = _NOTE_AT[(axis, line < low)]
    ax.annotate(text.format(f"{label} {line:.3f}"), (x, y), xycoords="axes fraction", ha=ha, va=va, fontsize=8,
                color="0.15")


def placeholder(out_dir: Path, name: str, message: str) -> list[Path]:
    fig, ax = plt.subplots(figsize=(6, 2))
    ax.axis("off")
    ax.text(0.5, 0.5, message, ha="center", va="center", wrap=True)
    return save_figure(fig, out_dir, name)

"""Dot-and-interval figures of ``main_comparison.csv``: one panel per dataset x protocol x
level, one line per method, sorted by the plotted number (best on top).

Each method shows its (fold, seed) cells as small points, the mean as a large marker (a square
when its pretraining saw labels, a circle when it saw none) and the 95 % patient-bootstrap
interval as a line (± std, dashed, where the metrics carry no ``test_videos``). Vertical lines
mark ``random_init`` and the majority-class rate (the accuracy of always predicting the most
frequent class of the test sets, which is what a classifier that learned nothing reaches; on an
imbalanced set it is above 1 / number of classes). The axis is zoomed to the data. ``*``: the
Holm-adjusted corrected t-test against the reference gives p < 0.05.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.lines import Line2D

from hico.report.figure_style import (
    RANDOM_INIT,
    Style,
    label_suffix,
    off_axis_note,
    save_figure,
    zoom_with_line,
)
from hico.report.stats import ALPHA


@dataclass
class Panel:
    """What one panel draws. ``rows``: index = method; columns ``value``, ``low``, ``high``,
    ``ci`` (the interval is a bootstrap CI, else ± std), ``labelled``, ``significant``,
    ``published``."""

    title: str
    rows: pd.DataFrame
    points: dict[str, np.ndarray] = field(default_factory=dict)
    chance: float | None = None

    def limits(self) -> tuple[float, float, bool]:
        """Zoomed to the methods' numbers (:func:`zoom_with_line`): (low, high, chance on the axis)."""
        r = self.rows
        values = [*r["value"], *r["low"], *r["high"], *r["published"]]
        return zoom_with_line(values + [v for pts in self.points.values() for v in pts], self.chance)


def _draw_method(ax, y: float, method: str, r: pd.Series, points: np.ndarray, color) -> None:
    if len(points):
        jitter = np.linspace(-0.2, 0.2, len(points)) if len(points) > 1 else np.zeros(1)
        ax.scatter(points, y + jitter, s=9, color=color, alpha=0.45, linewidths=0, zorder=2)
    if np.isfinite(r["low"]) and np.isfinite(r["high"]):
        ax.hlines(y, r["low"], r["high"], color=color, zorder=3, linewidth=2.4 if r["ci"] else 1.3,
                  linestyles="solid" if r["ci"] else (0, (3, 1.5)))
    known = np.isfinite(r["labelled"])
    marker = "s" if known and r["labelled"] > 0 else "o"
    ax.scatter([r["value"]], [y], marker=marker, s=50, color=color if known else "white", edgecolors=color if not known
               else "black", linewidths=0.7 if known else 1.6, zorder=4)
    if np.isfinite(r["published"]):
        ax.scatter([r["published"]], [y], marker="D", s=38, facecolors="none", edgecolors="black", zorder=5)
    if r["significant"]:
        right = max(v for v in (r["high"], r["value"]) if np.isfinite(v))
        ax.annotate("*", (right, y), xytext=(4, -4), textcoords="offset points", fontsize=12, zorder=5)


def draw_panel(ax, panel: Panel, style: Style, colors: dict[str, tuple]) -> None:
    rows = panel.rows.sort_values("value", kind="stable")  # ascending: the best ends on top
    for y, (method, r) in enumerate(rows.iterrows()):
        _draw_method(ax, y, method, r, panel.points.get(method, np.array([])), colors[method])
    if RANDOM_INIT in rows.index:
        ax.axvline(rows.loc[RANDOM_INIT, "value"], color="0.35", linestyle="--", linewidth=1.0, zorder=1)
    lo, hi, on_axis = panel.limits()
    if on_axis:
        ax.axvline(panel.chance, color="0.15", linestyle=":", linewidth=1.2, zorder=1)
    elif panel.chance is not None:
        off_axis_note(ax, panel.chance, lo)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([m + label_suffix(f) for m, f in zip(rows.index, rows["labelled"])])
    for tick, method in zip(ax.get_yticklabels(), rows.index):
        tick.set_fontweight("bold" if method == style.reference else "normal")
    ax.set_ylim(-0.7, len(rows) - 0.3)
    ax.set_xlim(lo, hi)
    ax.grid(axis="x", alpha=0.3)
    ax.set_title(panel.title)


def _legend(flat: list[Panel], points_label: str, significance: bool, reference: str) -> list[Line2D]:
    def h(label, **kw):
        return Line2D([], [], color=kw.pop("color", "0.3"), label=label, **kw)

    any_ci = any((p.rows["ci"] & p.rows["low"].notna()).any() for p in flat)
    any_std = any((~p.rows["ci"] & p.rows["low"].notna()).any() for p in flat)
    handles = [h(points_label, marker="o", linestyle="none", markersize=4, alpha=0.6)]
    if any_ci:
        handles.append(h("95 % patient-bootstrap CI", linewidth=2.4))
    if any_std:
        handles.append(h("± std (no CI: see ci_note)", linewidth=1.3, linestyle=(0, (3, 1.5))))
    handles += [h("label-free pretraining", marker="o", linestyle="none", markeredgecolor="black"),
                h("pretraining saw labels", marker="s", linestyle="none", markeredgecolor="black")]
    if any(p.rows["labelled"].isna().any() for p in flat):
        handles.append(h("labels unknown (metrics schema 2)", marker="o", linestyle="none", markerfacecolor="white"))
    handles.append(h(RANDOM_INIT, color="0.35", linestyle="--"))
    if any(p.chance is not None for p in flat):
        handles.append(h("majority class", color="0.15", linestyle=":"))
    if any(p.rows["published"].notna().any() for p in flat):
        handles.append(h("published", marker="D", linestyle="none", markerfacecolor="none", color="black"))
    if significance:
        handles.append(h(f"* Holm-adjusted p < {ALPHA} vs {reference}", linestyle="none"))
    return handles


def draw_figure(panels: list[list[Panel | None]], style: Style, title: str, out_dir, name: str,
                points_label: str = "(fold, seed) cell", significance: bool = True):
    """``panels[row][column]`` (None: nothing in that cell) -> one figure, saved as ``name``."""
    methods = sorted({m for row in panels for p in row if p is not None for m in p.rows.index})
    colors = style.colors(methods)
    heights = [max(len(p.rows) for p in row if p is not None) + 1.5 for row in panels]
    ncols = max(len(row) for row in panels)
    fig, axes = plt.subplots(len(panels), ncols, figsize=(5.6 * ncols + 1.2, 0.3 * sum(heights) + 1.4),
                             squeeze=False, layout="constrained", gridspec_kw={"height_ratios": heights})
    flat = [p for row in panels for p in row if p is not None]
    for r, row in enumerate(panels):
        for c in range(ncols):
            panel = row[c] if c < len(row) else None
            if panel is None:
                axes[r][c].axis("off")
            else:
                draw_panel(axes[r][c], panel, style, colors)
                if r == len(panels) - 1 or all(p is None for p in panels[r + 1][c:c + 1]):
                    axes[r][c].set_xlabel("accuracy")
    handles = _legend(flat, points_label, significance, style.reference)
    fig.legend(handles=handles, loc="outside lower center", ncol=min(5, len(handles)), frameon=False)
    fig.suptitle(title)
    return save_figure(fig, out_dir, name)

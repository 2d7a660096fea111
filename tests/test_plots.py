"""Figures: every figure is written as a non-empty PNG and SVG, headless; missing inputs are
skipped with a message (or a placeholder for the workflow's main_comparison target)."""

from __future__ import annotations

import json
import logging

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest
from test_aggregate import build_run, make_metrics, write
from test_evaluate import write_tiny_dataset, write_tiny_encoder

from hico.report import aggregate, plots

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _check(path):
    assert path.exists(), path
    data = path.read_bytes()
    assert len(data) > 2000, path
    if path.suffix == ".png":
        assert data.startswith(PNG_MAGIC)
        width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
        assert 300 < width < 5000 and 200 < height < 5000, (path, width, height)
    else:
        assert b"<svg" in data[:2000]


@pytest.fixture(scope="module")
def figures(tmp_path_factory):
    root = tmp_path_factory.mktemp("plots")
    mdir = build_run(root, folds=3, seeds=(0,))
    for fold in range(3):  # fine-tuning histories for the curves
        for method in ("hico", "simclr"):
            m = make_metrics(method, protocol="finetune_full", fold=fold, finetune=True)
            m["selection"]["history"] = [{"epoch": e, "train_loss": 1 / e, "val_loss": 1 / e, "val_accuracy": 0.5 + e / 20,
                                          "test_accuracy": 0.5} for e in range(1, 6)]
            write(mdir, m)
    tables = root / "tables"
    assert aggregate.main(["--metrics-dir", str(mdir), "--out-dir", str(tables)]) == 0
    data = write_tiny_dataset(root, per_class=4, frames=2)
    enc = {name: write_tiny_encoder(root / name / "encoder.pt", seed=i) for i, name in enumerate(("hico", "simclr"))}
    rc = plots.main(["--tables", str(tables), "--out-dir", str(root / "fig"), "--metrics-dir", str(mdir),
                     "--encoders", *(f"{k}={v}" for k, v in enc.items()), "--data", str(data),
                     "--image-size", "32", "--max-frames", "2"])
    assert rc == 0
    return root


@pytest.mark.parametrize("name", ["main_comparison", "main_comparison_paper_protocol", "convergence",
                                  "label_efficiency", "confusion_pocus_linear_probe",
                                  "confusion_pocus_finetune_released", "finetune_curves", "tsne"])
def test_figures_are_written(figures, name):
    for ext in ("png", "svg"):
        _check(figures / "fig" / f"{name}.{ext}")


def test_redrawing_the_same_tables_writes_byte_identical_figures(figures, tmp_path):
    """A rerun reproduces the figures, not only the tables: no date in the SVG, fixed element ids."""
    names = ("main_comparison", "convergence", "label_efficiency")
    rc = plots.main(["--tables", str(figures / "tables"), "--out-dir", str(tmp_path), "--figures", *names])
    assert rc == 0
    for name in names:
        for ext in ("png", "svg"):
            assert (tmp_path / f"{name}.{ext}").read_bytes() == (figures / "fig" / f"{name}.{ext}").read_bytes()
    assert b"<dc:date>" not in (tmp_path / "convergence.svg").read_bytes()


def test_figures_drawn_by_parallel_processes_are_the_same_files(figures, tmp_path, caplog):
    """--jobs 3 draws a task per figure in forked processes (the workflow's plot rule, on its
    cores): the same files, byte for byte, as the one-process figures of the fixture."""
    caplog.set_level(logging.INFO, logger="hico")
    groups = ("main_comparison", "convergence", "label_efficiency", "confusion", "finetune_curves")
    tasks = plots._figure_tasks(set(groups), figures / "tables", tmp_path, plots.Style(),
                                plots.argparse.Namespace(metrics_list=None, metrics_dir=str(figures / "eval"),
                                                         encoders=[], data=None))
    n_confusion = len(plots.confusion_pairs(figures / "tables"))
    assert n_confusion >= 2 and len(tasks) == 2 + 2 + n_confusion + 1  # main's two figures are two tasks
    rc = plots.main(["--tables", str(figures / "tables"), "--out-dir", str(tmp_path / "fig"), "--metrics-dir",
                     str(figures / "eval"), "--figures", *groups, "--jobs", "3"])
    assert rc == 0
    written = sorted(p.name for p in (tmp_path / "fig").iterdir())
    expected = sorted(p.name for p in (figures / "fig").iterdir() if not p.name.startswith("tsne."))
    assert written == expected and len(written) == 2 * len(tasks)
    for name in written:
        assert (tmp_path / "fig" / name).read_bytes() == (figures / "fig" / name).read_bytes(), name
    assert f"[plot] {len(written)} files" in caplog.text


def test_headless_backend():
    assert matplotlib.get_backend().lower() == "agg"


def test_missing_inputs_are_skipped_with_a_message(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="hico")
    rc = plots.main(["--tables", str(tmp_path / "none"), "--out-dir", str(tmp_path / "fig")])
    assert rc == 0
    assert "skipped convergence" in caplog.text and "skipped tsne" in caplog.text
    _check(tmp_path / "fig" / "main_comparison.png")  # the workflow's target exists even without results
    assert not (tmp_path / "fig" / "convergence.png").exists()


def test_confusion_json_drives_one_figure_per_dataset_protocol(figures):
    entries = json.loads((figures / "tables" / "confusion_matrices.json").read_text())
    pairs = {(e["dataset"], e["protocol"]) for e in entries if e["selection"] == "selected"}
    for dataset, protocol in pairs:
        _check(figures / "fig" / f"confusion_{dataset}_{protocol}.png")


def test_figures_flag_draws_only_those(figures, tmp_path):
    data = next(p for p in figures.iterdir() if (p / "manifest.csv").exists())
    enc = {name: figures / name / "encoder.pt" for name in ("hico", "simclr")}
    rc = plots.main(["--figures", "tsne", "--out-dir", str(tmp_path), "--data", str(data), "--image-size", "32",
                     "--max-frames", "2", "--encoders", *(f"{k}={v}" for k, v in enc.items())])
    assert rc == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tsne.png", "tsne.svg"]
    with pytest.raises(SystemExit):  # every figure but the t-SNE reads the tables
        plots.main(["--figures", "convergence", "--out-dir", str(tmp_path)])


def test_curves_keep_methods_with_several_points_and_draw_controls_flat(monkeypatch, tmp_path):
    import pandas as pd

    rows = [("hico", 4, 0.6), ("hico", 8, 0.7), ("hico", 12, 0.8),  # a curve
            ("random_init", 0, 0.65),                                 # a control: a dashed level
            ("byol", 12, 0.75)]                                       # one point, no variants: left out
    df = pd.DataFrame([{"method": m, "dataset": "d", "protocol": "linear_probe", "selection": "selected",
                        "level": "frame", "encoder_epoch": e, "accuracy_mean": a, "accuracy_std": 0.01}
                       for m, e, a in rows])
    drawn = {}
    monkeypatch.setattr(plots, "_save", lambda fig, out_dir, name: drawn.setdefault(name, fig) and [])
    plots._lines(df, "encoder_epoch", tmp_path, "convergence", "t", "epoch", flat_at=0)
    fig = drawn["convergence"]
    (ax,) = fig.axes
    curves = [ln for ln in ax.get_lines() if not ln.get_label().startswith("_")]
    assert [ln.get_label() for ln in curves] == ["hico"]
    assert list(curves[0].get_xdata()) == [4, 8, 12]
    flat = [ln for ln in ax.get_lines() if ln.get_linestyle() == "--"]
    assert len(flat) == 1 and list(flat[0].get_ydata()) == [0.65, 0.65]
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["hico", "random_init (no pretraining)"]


def test_expected_figures_without_data_get_a_placeholder(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="hico")
    """The workflow declares the figures its config implies; one the tables cannot fill (say,
    checkpoints asked only for a control) must still exist, or Snakemake fails the job."""
    rc = plots.main(["--tables", str(tmp_path / "none"), "--out-dir", str(tmp_path / "fig"),
                     "--figures", "main_comparison", "convergence", "--expect", "main_comparison", "convergence"])
    assert rc == 0
    assert "skipped convergence" in caplog.text
    for name in ("main_comparison", "convergence"):
        _check(tmp_path / "fig" / f"{name}.png")
    assert sorted(p.name for p in (tmp_path / "fig").iterdir()) == [
        "convergence.png", "convergence.svg", "main_comparison.png", "main_comparison.svg"]


@pytest.fixture(scope="module")
def dot_tables(tmp_path_factory):
    """hico (semi-supervised), simclr and random_init, 2 seeds x 3 folds, schema 3."""
    root = tmp_path_factory.mktemp("dots")
    for method, acc in {"hico": 0.9, "simclr": 0.72, "random_init": 0.8}.items():
        for seed in (0, 1):
            for fold in range(3):
                write(root / "eval", make_metrics(method, fold=fold, seed=seed, acc=acc, full_video_metrics=True))
    tables = root / "tables"
    assert aggregate.main(["--metrics-dir", str(root / "eval"), "--out-dir", str(tables), "--bootstrap", "300"]) == 0
    return tables


def _captured(monkeypatch, module):
    drawn = {}
    monkeypatch.setattr(module, "save_figure", lambda fig, out_dir, name: drawn.setdefault(name, fig) and [])
    return drawn


def test_main_comparison_is_a_sorted_dot_plot_with_intervals_and_reference_lines(dot_tables, monkeypatch, tmp_path):
    import pandas as pd
    from matplotlib.collections import LineCollection

    from hico.report import comparison_figure

    drawn = _captured(monkeypatch, comparison_figure)
    plots.plot_main_comparison(dot_tables, tmp_path)
    fig = drawn["main_comparison"]
    ax = next(a for a in fig.axes if a.get_title().startswith("pocus / linear_probe / frame level"))
    main = pd.read_csv(dot_tables / "main_comparison.csv")
    rows = main[(main["selection"] == "selected") & (main["level"] == "frame")].set_index("method")
    # sorted by the plotted mean, best on top; the methods that saw labels say so
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == ["simclr", "random_init", "hico [labels 100%]"]
    assert [t.get_fontweight() for t in ax.get_yticklabels()][-1] == "bold"  # the reference
    # one interval per method, exactly the table's patient-bootstrap CI
    segments = [seg for c in ax.collections if isinstance(c, LineCollection) for seg in c.get_segments()]
    intervals = sorted((round(s[0][0], 6), round(s[1][0], 6)) for s in segments)
    assert intervals == sorted((round(lo, 6), round(hi, 6)) for lo, hi in
                               zip(rows["accuracy_ci_low"], rows["accuracy_ci_high"]))
    # random_init as a dashed line at its mean; the axis is zoomed to the data, not 0..1
    dashed = [ln for ln in ax.get_lines() if ln.get_linestyle() == "--"]
    assert len(dashed) == 1 and dashed[0].get_xdata()[0] == pytest.approx(rows.loc["random_init", "accuracy_mean"])
    lo, hi = ax.get_xlim()
    assert lo > 0.4 and hi < 1.0 and lo < rows["accuracy_ci_low"].min() and hi > rows["accuracy_ci_high"].max()
    # the majority-class rate of the test sets (7 of 20 videos per fold are class 0): 21/60 of the
    # frames; far below the data, so it is written at the edge instead of squashing the axis
    assert any("majority class 0.350" in t.get_text() for t in ax.texts)
    # every (fold, seed) cell is a point
    points = sum(len(c.get_offsets()) for c in ax.collections if not isinstance(c, LineCollection))
    assert points == 3 * 6 + 3  # cells + one mean marker per method


def test_majority_class_line_is_drawn_when_near_the_data():
    import pandas as pd

    from hico.report.comparison_figure import Panel, draw_panel
    from hico.report.figure_style import DEFAULT_STYLE

    rows = pd.DataFrame({"value": [0.6, 0.7], "ci": [True, True], "low": [0.55, 0.66], "high": [0.65, 0.74],
                         "labelled": [0.0, np.nan], "significant": [False, True], "published": [np.nan, np.nan]},
                        index=["simclr", "moco_v2"])
    fig, ax = plt.subplots()
    draw_panel(ax, Panel("t", rows, {}, chance=0.52), DEFAULT_STYLE, DEFAULT_STYLE.colors(rows.index))
    dotted = [ln for ln in ax.get_lines() if ln.get_linestyle() == ":"]
    assert len(dotted) == 1 and dotted[0].get_xdata()[0] == pytest.approx(0.52)
    assert ax.get_xlim()[0] < 0.52 < 0.74 < ax.get_xlim()[1] < 0.8
    assert [t.get_text() for t in ax.get_yticklabels()] == ["simclr", "moco_v2 [labels ?]"]
    assert any(t.get_text() == "*" for t in ax.texts)  # Holm p < 0.05 against the reference
    plt.close(fig)


def test_curves_are_zoomed_and_show_the_majority_class(monkeypatch, tmp_path):
    import pandas as pd

    rows = [("hico", 4, 0.6), ("hico", 8, 0.7), ("hico", 12, 0.8)]
    df = pd.DataFrame([{"method": m, "dataset": "d", "protocol": "linear_probe", "selection": "selected",
                        "level": "frame", "encoder_epoch": e, "accuracy_mean": a, "accuracy_std": 0.01}
                       for m, e, a in rows])
    drawn = {}
    monkeypatch.setattr(plots, "_save", lambda fig, out_dir, name: drawn.setdefault(name, fig) and [])
    plots._lines(df, "encoder_epoch", tmp_path, "convergence", "t", "epoch", chance={("d", "linear_probe"): 0.55})
    (ax,) = drawn["convergence"].axes
    dotted = [ln for ln in ax.get_lines() if ln.get_linestyle() == ":"]
    assert len(dotted) == 1 and list(dotted[0].get_ydata()) == [0.55, 0.55]
    lo, hi = ax.get_ylim()
    assert 0.45 < lo < 0.55 and 0.81 < hi < 0.9
    assert "majority class" in [t.get_text() for t in drawn["convergence"].legends[0].get_texts()]

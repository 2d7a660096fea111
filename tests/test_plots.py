"""Figures: every figure is written as a non-empty PNG and SVG, headless; missing inputs are
skipped with a message (or a placeholder for the workflow's main_comparison target)."""

from __future__ import annotations

import json

import matplotlib
import pytest
import torch
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
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        rc = plots.main(["--tables", str(tables), "--out-dir", str(root / "fig"), "--metrics-dir", str(mdir),
                         "--encoders", *(f"{k}={v}" for k, v in enc.items()), "--data", str(data),
                         "--image-size", "32", "--max-frames", "2"])
    finally:
        torch.set_num_threads(before)
    assert rc == 0
    return root


@pytest.mark.parametrize("name", ["main_comparison", "main_comparison_paper_protocol", "convergence",
                                  "label_efficiency", "confusion_pocus_linear_probe",
                                  "confusion_pocus_finetune_released", "finetune_curves", "tsne"])
def test_figures_are_written(figures, name):
    for ext in ("png", "svg"):
        _check(figures / "fig" / f"{name}.{ext}")


def test_headless_backend():
    assert matplotlib.get_backend().lower() == "agg"


def test_missing_inputs_are_skipped_with_a_message(tmp_path, capsys):
    rc = plots.main(["--tables", str(tmp_path / "none"), "--out-dir", str(tmp_path / "fig")])
    assert rc == 0
    out = capsys.readouterr().out
    assert "skipped convergence" in out and "skipped tsne" in out
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


def test_expected_figures_without_data_get_a_placeholder(tmp_path, capsys):
    """The workflow declares the figures its config implies; one the tables cannot fill (say,
    checkpoints asked only for a control) must still exist, or Snakemake fails the job."""
    rc = plots.main(["--tables", str(tmp_path / "none"), "--out-dir", str(tmp_path / "fig"),
                     "--figures", "main_comparison", "convergence", "--expect", "main_comparison", "convergence"])
    assert rc == 0
    assert "skipped convergence" in capsys.readouterr().out
    for name in ("main_comparison", "convergence"):
        _check(tmp_path / "fig" / f"{name}.png")
    assert sorted(p.name for p in (tmp_path / "fig").iterdir()) == [
        "convergence.png", "convergence.svg", "main_comparison.png", "main_comparison.svg"]

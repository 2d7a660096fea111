"""The real lung-US path end to end on a few real videos: POCUS and COVID-BLUeS from ../shared,
32 px, 1 epoch, through the workflow (each set evaluated with encoders pretrained on the other,
COVID-BLUeS by B-lines and by PCR), then nothing left to do. Skipped without ../shared."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import shared_path
from test_workflow import REPO, snakemake

LUNG = REPO / "workflows" / "config" / "lung_cpu.yaml"


def _pocus_subset(root: Path, per_class: int = 3) -> Path:
    """``per_class`` videos of each POCUS class (Cov/Pne/Reg), linked, with their manifest rows."""
    src = shared_path("data", "pocus")
    out = root / "pocus"
    (out / "videos").mkdir(parents=True)
    with open(src / "manifest.tsv", newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    keep, counts = [], {}
    for row in rows:
        prefix = Path(row["file"]).name[:3].lower()
        if prefix in ("cov", "pne", "reg") and counts.get(prefix, 0) < per_class:
            counts[prefix] = counts.get(prefix, 0) + 1
            keep.append(row)
    for row in keep:
        os.symlink(src / row["file"], out / row["file"])
    with open(out / "manifest.tsv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]), delimiter="\t")
        w.writeheader()
        w.writerows(keep)
    return out


def _covid_blues_subset(root: Path, per_result: int = 4) -> Path:
    """All videos of ``per_result`` PCR-positive and PCR-negative patients, with the sheets."""
    src = shared_path("data", "covid_blues")
    out = root / "covid_blues"
    (out / "lus_videos").mkdir(parents=True)
    for sheet in ("clinical_variables.csv", "severity.csv", "LICENSE"):
        os.symlink(src / sheet, out / sheet)
    clinical = pd.read_csv(src / "clinical_variables.csv")
    patients = []
    for result in (0, 1):
        ids = sorted(clinical.loc[clinical["cov_test"] == result, "patient_id"].astype(int))
        patients += ids[:per_result]
    for video in sorted((src / "lus_videos").glob("*.mp4")):
        if int(video.stem.split("_")[1]) in patients:
            os.symlink(video, out / "lus_videos" / video.name)
    return out


def _tiny_lung_config(tmp_path: Path) -> Path:
    """The committed lung config, shrunk: its datasets and pools, SimCLR only (random init is the
    same code on any data, and its export, features and probes were a third of this run's job time),
    32 px, 1 epoch."""
    cfg = yaml.safe_load(LUNG.read_text())
    pocus, covid = _pocus_subset(tmp_path / "raw"), _covid_blues_subset(tmp_path / "raw")
    for spec in cfg["datasets"].values():
        spec["local"] = [str(pocus if spec["source"] == "pocus" else covid)]
    cfg.update(data_root=str(tmp_path / "data"), runs_root=str(tmp_path / "runs"),
               results_root=str(tmp_path / "results"))
    cfg["pretrain"]["overrides"].update(image_size=32, batch_size=4, epochs=1)
    cfg["methods"] = {"simclr": {}}
    ev = cfg["evaluation"]
    ev.update(folds=2, seeds=[0], image_size=32, max_frames=2, protocols={"linear_probe": {}})
    for key in ("convergence_epochs", "variant_protocols", "variant_methods", "variant_seeds", "variant_datasets",
                "tsne_methods", "label_fractions"):
        ev.pop(key, None)
    path = tmp_path / "lung_tiny.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.mark.slow
@pytest.mark.shared
def test_real_lung_videos_end_to_end_then_nothing_to_do(tmp_path):
    cfg = _tiny_lung_config(tmp_path)
    r = snakemake("--cores", "2", "--configfile", str(cfg))
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    main = pd.read_csv(tmp_path / "results" / "tables" / "main_comparison.csv")
    frame = main[(main["selection"] == "selected") & (main["level"] == "frame")]
    expected = {"pocus", "covid_blues_b_lines", "covid_blues_pcr"}
    assert set(frame["dataset"]) == expected
    assert set(frame["method"]) == {"simclr"}
    assert (frame["n_folds"] == 2).all() and frame["accuracy_mean"].between(0, 1).all()
    # each set was evaluated with encoders pretrained on the other one (leave-one-out across sets)
    records = pd.read_csv(tmp_path / "results" / "tables" / "records.csv")
    simclr = records[records["method"] == "simclr"].groupby("dataset")["pretrain_data"].first().to_dict()
    assert simclr == {"pocus": "covid_blues_b_lines", "covid_blues_b_lines": "pocus", "covid_blues_pcr": "pocus"}
    classes = {d: sorted(json.loads(c)) for d, c in records.groupby("dataset")["classes"].first().items()}
    assert classes["covid_blues_b_lines"] == ["b_lines_absent", "b_lines_present"]
    assert classes["covid_blues_pcr"] == ["pcr_negative", "pcr_positive"]
    again = snakemake("-n", "--configfile", str(cfg))
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr

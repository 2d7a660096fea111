"""Aggregation: synthetic metrics.json files -> tables with stable columns and dtypes, means and
stds as numpy, Wilcoxon p as scipy, pooled confusion matrices, paper merge, claims verdicts."""

from __future__ import annotations

import json
import re
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.stats import t as t_dist
from scipy.stats import ttest_rel

from hico import layout
from hico.evaluate import classification_metrics, frame_and_video_metrics
from hico.report import AggregateError, stats
from hico.report import aggregate as agg
from hico.report import claims as claims_mod
from hico.report.columns import SCHEMAS
from hico.report.compute_cost import compute_cost
from hico.report.paper import PAPER_CSV, load_paper
from hico.report.records import find_metrics, load_records

CLASSES = ["covid", "pneumonia", "regular"]


#: share of labelled pretraining videos per method (contract 1); every other method: 0.0
LABELLED = {"hico": 1.0, "uscl": 1.0, "hico_peer_only": 1.0, "hico_hard_labels": 1.0, "supervised": 1.0}


def video_outcomes(fold, vids, y, proba):
    """metrics.json's ``test_videos`` (contract 2) of frames ``vids``/``y`` predicted ``proba``;
    two videos per patient, patients named by fold (each fold tests its own patients)."""
    order = list(dict.fromkeys(vids.tolist()))
    rows = {v: np.flatnonzero(vids == v) for v in order}
    pred = proba.argmax(1)
    return {"video_id": order, "patient_id": [f"f{fold}p{order.index(v) // 2}" for v in order],
            "label": [int(y[rows[v][0]]) for v in order], "n_frames": [len(rows[v]) for v in order],
            "frame_correct": [int((pred[rows[v]] == y[rows[v]]).sum()) for v in order],
            "video_pred": [int(proba[rows[v]].mean(0).argmax()) for v in order]}


def make_metrics(method, dataset="pocus", protocol="linear_probe", fold=0, seed=0, acc=0.8, train_fraction=1.0,
                 encoder_epoch=100, encoder_kind="final", n=60, finetune=False, pretrain=("us4",), schema=3,
                 full_video_metrics=False):
    """A metrics.json dict whose frame accuracy is close to ``acc`` (random wrong labels): 20
    test videos of one label each, schema 3 (contract 2) or 2 (no labelled fraction, no
    test_videos)."""
    # zlib.crc32, not hash(): str hashes change with every interpreter (PYTHONHASHSEED), which
    # made the simulated accuracies, and so the claims' verdicts, differ from run to run
    key = repr((method, dataset, protocol, fold, seed, train_fraction, encoder_epoch)).encode()
    rng = np.random.default_rng(zlib.crc32(key))
    k = len(CLASSES)
    per_video = max(1, n // 20)
    y = (np.arange(n) // per_video) % k
    pred = np.where(rng.random(n) < acc, y, (y + rng.integers(1, k, n)) % k)
    proba = 0.1 + 0.7 * np.eye(k)[pred]
    proba /= proba.sum(1, keepdims=True)
    vids = np.array([f"f{fold}v{i // per_video}" for i in range(n)])
    encoder = f"runs/pretrain/us4/{method}/seed{seed}/" + ("encoder.pt" if encoder_kind == "final"
                                                            else f"encoder_epoch{encoder_epoch}.pt")
    m = {"schema_version": schema, "method": method, "dataset": dataset, "protocol": "finetune" if finetune else protocol,
         "protocol_id": protocol, "fold": fold, "seed": seed, "train_fraction": train_fraction, "encoder": encoder,
         "encoder_meta": {"method": method, "epoch": encoder_epoch}, "encoder_epoch": encoder_epoch,
         "encoder_kind": encoder_kind, "pretrain_datasets": list(pretrain), "classes": CLASSES,
         "n_videos": {"train": int(40 * train_fraction) + 1, "val": 10, "test": 20},
         "selection": {"epoch": 3} if finetune else {"C": 1.0},
         "provenance": {"git_sha": "abc"}}
    if schema >= 3:
        m["pretrain_labelled_fraction"] = LABELLED.get(method, 0.0)
        m["test_videos"] = video_outcomes(fold, vids, y, proba)
    if fold == 0 or full_video_metrics:
        m.update(frame_and_video_metrics(vids, y, proba, CLASSES))
    else:  # the video block's numbers do not matter here; skip half of the sklearn calls
        m["frame"] = classification_metrics(y, proba, CLASSES)
        m["video"] = m["frame"]
    if finetune:
        m["paper_protocol"] = {"epoch": 5, "optimistic": True, "frame": m["frame"], "video": m["video"]}
        m["last"] = {"epoch": 10, "optimistic": False, "frame": m["frame"], "video": m["video"]}
    return m


def write(root: Path, m: dict) -> Path:
    path = (root / m["dataset"] / m["protocol_id"] / m["method"] / f"seed{m['seed']}" / f"fold{m['fold']}"
            / f"f{m['train_fraction']}_e{m['encoder_epoch']}_{m['encoder_kind']}" / "metrics.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(m))
    return path


ACC = {"hico": 0.9, "simclr": 0.7, "uscl": 0.88, "hico_peer_only": 0.8, "hico_hard_labels": 0.89}


def build_run(root: Path, folds=5, seeds=(0, 1)) -> Path:
    """5 folds x 2 seeds of 5 methods on POCUS (linear probe and finetune_released), label
    fractions and convergence checkpoints for hico and simclr."""
    mdir = root / "eval"
    for method, acc in ACC.items():
        for seed in seeds:
            for fold in range(folds):
                write(mdir, make_metrics(method, fold=fold, seed=seed, acc=acc))
                write(mdir, make_metrics(method, protocol="finetune_released", fold=fold, seed=seed, acc=acc,
                                         finetune=True))
                if method in ("hico", "simclr"):
                    for frac in (0.1, 0.5):
                        write(mdir, make_metrics(method, fold=fold, seed=seed, acc=acc * (0.6 + frac / 2),
                                                 train_fraction=frac))
                    for epoch in (10, 50):
                        shift = 0.1 if method == "hico" else 0.3
                        write(mdir, make_metrics(method, fold=fold, seed=seed, acc=acc - shift * 10 / epoch,
                                                 encoder_epoch=epoch, encoder_kind="checkpoint"))
    return mdir


def run_config(run_name, seed, datasets, method=None, labelled_fraction=1.0):
    """A run folder's config.json as contract 1 says hico.train writes it."""
    return {"run_name": run_name, "method": method or run_name, "seed": seed, "datasets": list(datasets),
            "labelled_fraction": labelled_fraction, "config": {"batch_size": 32, "image_size": 224}, "device": "cpu"}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("agg")
    mdir = build_run(root)
    # a pretraining run folder + Snakemake benchmark, for compute_cost
    rdir = root / "pretrain" / "us4" / "hico" / "seed0"
    rdir.mkdir(parents=True)
    pd.DataFrame({"epoch": [1, 2], "step": [10, 20], "loss": [1.0, 0.5], "epoch_time_s": [2.0, 3.0],
                  "images_per_s": [100.0, 120.0], "peak_mem_mb": [500.0, 600.0]}).to_csv(rdir / "train_log.csv", index=False)
    torch.save({"backbone": "resnet18", "state_dict": {"w": torch.zeros(10, 3), "bn.running_mean": torch.zeros(3)},
                "meta": {}}, rdir / "encoder.pt")
    (rdir / "config.json").write_text(json.dumps(run_config("hico", 0, ["data/us4"])))
    bdir = root / "bench" / "us4" / "hico"
    bdir.mkdir(parents=True)
    (bdir / "seed0.tsv").write_text("s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
                                    "12.5\t0:00:12\t850.1\t900\t800\t810\t0\t1\t95\t11.0\n")
    out = root / "tables"
    rc = agg.main(["--metrics-dir", str(mdir), "--out-dir", str(out), "--compute-dir", str(root / "pretrain"),
                   "--bench-dir", str(root / "bench")])
    assert rc == 0
    records = load_records(find_metrics([mdir]))
    return {"root": root, "mdir": mdir, "out": out, "records": records}


def test_every_table_has_its_columns_and_dtypes(run):
    for name in layout.TABLES:
        path = run["out"] / f"{name}.csv"
        assert path.exists(), name
        df = pd.read_csv(path)
        assert list(df.columns) == [c for c, _ in SCHEMAS[name]], name
        for col, kind in SCHEMAS[name]:
            if kind in ("int", "float") and df[col].notna().any():
                assert pd.api.types.is_numeric_dtype(df[col]), (name, col)
    tables, _ = agg.build_tables(run["records"], load_paper(PAPER_CSV))
    for name, df in tables.items():
        for col, kind in SCHEMAS[name]:
            want = {"str": "object", "int": "int64", "Int64": "Int64", "float": "float64", "bool": "bool"}[kind]
            assert str(df[col].dtype) == want, (name, col, df[col].dtype)
    assert not list(run["out"].glob(".*.tmp"))  # atomic writes leave nothing behind


def test_main_means_stds_and_counts(run):
    main = pd.read_csv(run["out"] / "main_comparison.csv")
    rec = run["records"]
    for method in ACC:
        row = main[(main["method"] == method) & (main["protocol"] == "linear_probe") & (main["selection"] == "selected")
                   & (main["level"] == "frame")].iloc[0]
        vals = rec[(rec["method"] == method) & (rec["protocol"] == "linear_probe") & (rec["level"] == "frame")
                   & (rec["encoder_kind"] == "final") & (rec["train_fraction"] == 1.0)]["accuracy"].to_numpy()
        assert len(vals) == 10 and row["n"] == 10 and row["n_folds"] == 5 and row["n_seeds"] == 2
        assert row["n_files"] == 10
        assert row["accuracy_mean"] == pytest.approx(vals.mean(), rel=1e-5)
        assert row["accuracy_std"] == pytest.approx(vals.std(ddof=1), rel=1e-5)
    # the checkpoints and label fractions stay out of the main table
    assert set(main["method"]) == set(ACC)
    assert set(main["selection"]) == {"selected", "paper_protocol", "last"}
    assert set(main.loc[main["protocol"] == "linear_probe", "selection"]) == {"selected"}
    assert main.loc[main["selection"] == "paper_protocol", "optimistic"].all()
    assert not main.loc[main["selection"] == "selected", "optimistic"].any()


def test_corrected_t_on_the_table_matches_a_hand_computation(run):
    """main_comparison's p: Nadeau & Bengio's corrected resampled t-test over the 10 (fold, seed)
    pairs, written out here from the records."""
    main = pd.read_csv(run["out"] / "main_comparison.csv")
    rec = run["records"]
    sel = rec[(rec["protocol"] == "linear_probe") & (rec["level"] == "frame") & (rec["encoder_kind"] == "final")
              & (rec["train_fraction"] == 1.0)]
    h = sel[sel["method"] == "hico"].set_index(["fold", "seed"])["accuracy"].sort_index()
    s = sel[sel["method"] == "simclr"].set_index(["fold", "seed"])["accuracy"].sort_index()
    row = main[(main["method"] == "simclr") & (main["protocol"] == "linear_probe") & (main["level"] == "frame")].iloc[0]
    d = (h - s).to_numpy()
    ratio = 20 / (41 + 10)  # make_metrics: 20 test videos, 41 training + 10 validation videos per fold
    t = d.mean() / np.sqrt((1 / len(d) + ratio) * d.var(ddof=1))
    assert row["n_pairs"] == 10 and row["test_train_ratio"] == pytest.approx(ratio, rel=1e-5)
    assert row["t_accuracy"] == pytest.approx(t, rel=1e-5)
    assert row["p_accuracy"] == pytest.approx(2 * t_dist.sf(abs(t), len(d) - 1), rel=1e-5)
    assert row["reference_minus_method_accuracy"] == pytest.approx((h - s).mean(), rel=1e-5)
    ref = main[(main["method"] == "hico") & (main["protocol"] == "linear_probe") & (main["level"] == "frame")].iloc[0]
    assert np.isnan(ref["p_accuracy"]) and ref["test_note"] == "reference method"


@pytest.mark.parametrize("n", [3, 6, 10, 13, 30])
def test_corrected_t_without_correction_is_the_paired_t_test(n):
    rng = np.random.default_rng(n)
    a, b = rng.normal(0.3, 1.0, n), rng.normal(0.0, 1.0, n)
    t, p, note = stats.corrected_t(a - b, 0.0)
    ref = ttest_rel(a, b)
    assert t == pytest.approx(ref.statistic, rel=1e-9) and p == pytest.approx(ref.pvalue, rel=1e-9) and note == ""
    t_corr, p_corr, _ = stats.corrected_t(a - b, 0.25)  # the correction only ever widens
    assert abs(t_corr) == pytest.approx(abs(t) * np.sqrt((1 / n) / (1 / n + 0.25))) and p_corr > p


def test_corrected_t_small_n_and_zero_differences():
    t, p, note = stats.corrected_t(np.array([0.1]), 0.25)
    assert np.isnan(t) and np.isnan(p) and "no test" in note
    assert stats.corrected_t(np.zeros(7), 0.25)[1:] == (1.0, "all differences are zero")
    t, p, note = stats.corrected_t(np.full(5, 0.02), 0.25)
    assert np.isnan(p) and "zero variance" in note
    assert stats.paired_test(pd.DataFrame(columns=["method", "fold", "seed", "accuracy", "n_test_videos",
                                                   "n_fit_videos"]), "a", "b").n == 0


def test_pooled_confusion_is_sum_over_folds(run):
    cms = json.loads((run["out"] / "confusion_matrices.json").read_text())
    entry = next(e for e in cms if e["method"] == "uscl" and e["protocol"] == "finetune_released"
                 and e["selection"] == "paper_protocol" and e["level"] == "frame")
    rec = run["records"]
    sel = rec[(rec["method"] == "uscl") & (rec["protocol"] == "finetune_released") & (rec["selection"] == "paper_protocol")
              & (rec["level"] == "frame")]
    assert np.array_equal(np.asarray(entry["matrix"]), np.sum(np.stack(list(sel["_cm"])), axis=0))
    assert entry["n_folds"] == 5 and entry["n_seeds"] == 2 and len(entry["sources"]) == 10
    main = pd.read_csv(run["out"] / "main_comparison.csv")
    row = main[(main["method"] == "uscl") & (main["protocol"] == "finetune_released")
               & (main["selection"] == "paper_protocol") & (main["level"] == "frame")].iloc[0]
    per_seed = [np.asarray(c) for c in entry["per_seed"].values()]
    assert row["pooled_accuracy"] == pytest.approx(np.mean([np.trace(c) / c.sum() for c in per_seed]), rel=1e-5)


def test_paper_numbers_are_merged(run):
    main = pd.read_csv(run["out"] / "main_comparison.csv", keep_default_na=False, na_values=[""])
    key = (main["protocol"] == "finetune_released") & (main["selection"] == "paper_protocol") & (main["level"] == "frame")
    uscl = main[key & (main["method"] == "uscl")].iloc[0]
    assert uscl["paper_accuracy"] == pytest.approx(0.9419)  # the README number is the primary one
    assert "README" in uscl["paper_source"]
    assert uscl["delta_accuracy"] == pytest.approx(uscl["pooled_accuracy"] - 0.9419, abs=1e-5)
    hico = main[key & (main["method"] == "hico")].iloc[0]
    assert np.isnan(hico["paper_accuracy"]) and "not available offline" in hico["paper_note"]
    assert np.isnan(main[(main["selection"] == "selected") & (main["method"] == "uscl")]["paper_accuracy"]).all()
    pc = pd.read_csv(run["out"] / "paper_comparison.csv")
    assert set(pc["paper_value"].dropna().round(4)) >= {0.9419, 0.9542, 0.84, 0.946}
    assert len(pc[(pc["method"] == "uscl") & (pc["metric"] == "accuracy")]) == 2


def test_reference_paper_csv_is_well_formed():
    paper = load_paper(PAPER_CSV)
    assert (paper["source"].str.len() > 10).all()
    with_value = paper[paper["value"].notna()]
    assert set(with_value["method"]) == {"uscl", "imagenet", "meta_uscl"}
    assert paper[paper["method"] == "hico"]["value"].isna().all()


def test_ablation_label_efficiency_convergence_transfer(run):
    ab = pd.read_csv(run["out"] / "ablation.csv")
    assert set(ab["variant"]) == {"hico_peer_only", "hico_hard_labels"}
    row = ab[(ab["variant"] == "hico_peer_only") & (ab["protocol"] == "linear_probe") & (ab["level"] == "frame")].iloc[0]
    assert row["n_pairs"] == 10 and row["variant_minus_reference_accuracy"] < 0
    le = pd.read_csv(run["out"] / "label_efficiency.csv")
    hico_le = le[(le["method"] == "hico") & (le["level"] == "frame") & (le["protocol"] == "linear_probe")]
    assert sorted(hico_le["train_percent"]) == [10, 50, 100]
    assert (hico_le["n"] == 10).all()
    conv = pd.read_csv(run["out"] / "convergence.csv")
    hc = conv[(conv["method"] == "hico") & (conv["level"] == "frame") & (conv["protocol"] == "linear_probe")]
    assert sorted(hc["encoder_epoch"]) == [10, 50, 100]
    assert hc.set_index("encoder_epoch")["includes_final"].to_dict() == {10: False, 50: False, 100: True}
    tr = pd.read_csv(run["out"] / "transfer.csv")
    assert set(tr["pretrain_data"]) == {"us4"} and not tr["in_domain"].any()
    pcl = pd.read_csv(run["out"] / "per_class.csv")
    assert set(pcl["class"]) == set(CLASSES)


def test_compute_cost_reads_logs_and_benchmarks(run):
    cc = pd.read_csv(run["out"] / "compute_cost.csv")
    row = cc.iloc[0]
    assert row["method"] == "hico" and row["pretrain_data"] == "us4" and row["n_runs"] == 1
    assert row["encoder_params"] == 30  # BatchNorm statistics are not parameters
    assert row["wall_time_s"] == pytest.approx(5.0) and row["step_time_s"] == pytest.approx(0.25)
    assert row["images_per_s"] == pytest.approx(110.0) and row["peak_mem_mb"] == pytest.approx(600.0)
    assert row["bench_wall_s"] == pytest.approx(12.5) and row["bench_max_rss_mb"] == pytest.approx(850.1)


def _cost_run(folder, cfg):
    folder.mkdir(parents=True)
    pd.DataFrame({"epoch": [1], "step": [4], "epoch_time_s": [2.0]}).to_csv(folder / "train_log.csv", index=False)
    (folder / "config.json").write_text(json.dumps(cfg))


def test_compute_cost_names_runs_from_their_config_not_their_folder(tmp_path):
    """Run name, seed and pretraining data come from config.json (contract 1): a folder layout
    that says something else (or nothing) does not change them."""
    _cost_run(tmp_path / "x" / "elsewhere", run_config("hico_ssl", 3, ["/d/pocus", "/d/covid_blues"], method="hico"))
    _cost_run(tmp_path / "y" / "seed3", run_config("hico_ssl", 4, ["/d/pocus", "/d/covid_blues"], method="hico"))
    _cost_run(tmp_path / "z", run_config("random_init", 0, []))
    cc = compute_cost([tmp_path])
    assert cc[["method", "pretrain_data", "n_runs"]].values.tolist() == [
        ["hico_ssl", "pocus;covid_blues", 2], ["random_init", "none", 1]]


@pytest.mark.parametrize("cfg", [None, {"config": {}, "seed": 0, "datasets": []}])
def test_compute_cost_without_run_identity_is_an_error_naming_the_file(tmp_path, cfg):
    folder = tmp_path / "pool" / "hico" / "seed0"
    _cost_run(folder, cfg or {})
    if cfg is None:
        (folder / "config.json").unlink()
    with pytest.raises(AggregateError, match="config.json") as e:
        compute_cost([tmp_path])
    assert str(folder / "config.json") in str(e.value)


@pytest.mark.parametrize("n,diff,p,seeds,expected", [
    (10, 0.05, 0.01, 2, stats.SUPPORTED),
    (10, -0.05, 0.01, 2, stats.NOT_SUPPORTED),
    (10, 0.05, 0.2, 2, stats.INCONCLUSIVE),
    (3, 0.05, 0.25, 3, stats.INCONCLUSIVE),
    (1, 0.05, 0.001, 1, stats.INCONCLUSIVE),   # one pair: no test
    (10, 0.05, 0.001, 1, stats.INCONCLUSIVE),  # one pretraining seed: no independent replicate
    (0, float("nan"), float("nan"), 0, stats.NO_EVIDENCE),
])
def test_verdict_rules(n, diff, p, seeds, expected):
    assert stats.verdict(n, diff, p, n_seeds=seeds) == expected


def test_claims_verdicts(run):
    cl = pd.read_csv(run["out"] / "claims.csv", keep_default_na=False, na_values=[""])
    assert set(cl["claim_id"]) == {c["id"] for c in claims_mod.CLAIMS}

    def one(claim, comparison, protocol="linear_probe"):
        return cl[(cl["claim_id"] == claim) & (cl["comparison"] == comparison) & (cl["protocol"] == protocol)].iloc[0]

    assert one("beats_baselines_on_pocus", "hico vs simclr")["verdict"] == stats.SUPPORTED
    assert one("multi_level_alignment_helps", "hico vs hico_peer_only")["verdict"] == stats.SUPPORTED
    conv = one("faster_convergence", "hico vs simclr")
    assert conv["encoder_epoch"] == 10 and conv["verdict"] == stats.SUPPORTED
    assert set(cl.loc[cl["claim_id"] == "favorable_over_sota", "comparison"]) == {"hico vs simclr", "hico vs uscl"}
    for _, row in cl.iterrows():  # every verdict follows the rule from its own numbers (Holm-adjusted p)
        assert row["verdict"] == stats.verdict(row["n_pairs"], row["mean_diff"], row["p_holm"], n_seeds=row["n_seeds"])
    for _, claim in cl.groupby("claim_id"):  # Holm over the comparisons of each claim
        np.testing.assert_allclose(claim["p_holm"], stats.holm(claim["p"].to_numpy()), rtol=1e-5)


def test_claims_without_evidence(tmp_path):
    mdir = tmp_path / "eval"
    for fold in range(3):
        write(mdir, make_metrics("hico", dataset="synthetic", fold=fold, acc=0.9))
        write(mdir, make_metrics("simclr", dataset="synthetic", fold=fold, acc=0.5))
    records = load_records(find_metrics([mdir]))
    cl = claims_mod.claims(records)
    by_id = cl.groupby("claim_id")["verdict"].apply(set).to_dict()
    for claim in ("faster_convergence", "multi_level_alignment_helps", "soft_labels_help", "beats_baselines_on_pocus"):
        assert by_id[claim] == {stats.NO_EVIDENCE}
    # 3 folds of one pretraining seed: the p-value is there, but one encoder per method is no replicate
    assert by_id["favorable_over_sota"] == {stats.INCONCLUSIVE}
    assert cl.loc[cl["claim_id"] == "favorable_over_sota", "p"].notna().all()


def test_cli_errors_name_the_problem(tmp_path, capsys):
    from hico.cli import main

    assert main(["aggregate", "--metrics-dir", str(tmp_path), "--out-dir", str(tmp_path / "t")]) == 2
    assert "no metrics.json found" in capsys.readouterr().err
    bad = tmp_path / "x" / "metrics.json"
    bad.parent.mkdir()
    bad.write_text(json.dumps({"method": "hico"}))
    assert main(["aggregate", "--metrics", str(bad), "--out-dir", str(tmp_path / "t")]) == 2
    assert "lacks" in capsys.readouterr().err


@pytest.mark.parametrize("change,message", [
    ({"schema_version": None}, "lacks schema_version"),
    ({"schema_version": 1}, "schema_version 1 is not one of [2, 3]"),
    ({"protocol_id": None}, "lacks ['protocol_id']"),
    ({"encoder_kind": None}, "lacks ['encoder_kind']"),
])
def test_old_or_foreign_metrics_files_are_errors_naming_the_file(tmp_path, change, message):
    """No fallbacks for metrics.json files older than schema 2: each is an error that names the file."""
    m = make_metrics("hico")
    for k, v in change.items():
        if v is None:
            del m[k]
        else:
            m[k] = v
    path = tmp_path / "metrics.json"
    path.write_text(json.dumps(m))
    with pytest.raises(AggregateError, match=re.escape(message)) as e:
        load_records([path])
    assert str(path) in str(e.value)


def test_schema_versions_2_and_3_are_read(tmp_path):
    paths = [write(tmp_path, {**make_metrics("hico", fold=f), "schema_version": v}) for f, v in ((0, 2), (1, 3))]
    assert sorted(load_records(paths)["fold"].unique()) == [0, 1]


def test_a_metrics_list_keeps_files_outside_it_out_of_the_tables(run, tmp_path):
    """The workflow passes the current config's metrics.json files as a list: an old evaluation
    left in the folder (a protocol since dropped from the config) must not reach the tables."""
    paths = find_metrics([run["mdir"]])
    methods = sorted(set(run["records"]["method"]))
    kept = [p for p in paths if json.loads(p.read_text())["method"] != methods[0]]
    assert 0 < len(kept) < len(paths)
    listing = tmp_path / "metrics_list.txt"
    listing.write_text("".join(f"{p}\n" for p in kept))
    out = tmp_path / "tables"
    assert agg.main(["--metrics-list", str(listing), "--out-dir", str(out), "--bootstrap", "50"]) == 0
    main = pd.read_csv(out / "main_comparison.csv")
    assert methods[0] not in set(main["method"]) and set(methods[1:]) <= set(main["method"])
    records = pd.read_csv(out / "records.csv")
    assert len(records) == len(load_records(kept))
    listing.write_text(f"{tmp_path / 'gone' / 'metrics.json'}\n")
    with pytest.raises(Exception, match="gone"):
        agg.main(["--metrics-list", str(listing), "--out-dir", str(out)])


def test_tables_name_metrics_files_relative_to_the_working_directory(tmp_path, monkeypatch):
    """records.csv's `source` is the same in every clone: runs/... , not this machine's path."""
    from hico.report.records import find_metrics

    inside = tmp_path / "runs" / "eval" / "a" / "metrics.json"
    inside.parent.mkdir(parents=True)
    inside.write_text("{}")
    outside = tmp_path.parent / f"{tmp_path.name}_elsewhere" / "metrics.json"
    outside.parent.mkdir()
    outside.write_text("{}")
    monkeypatch.chdir(tmp_path)
    assert find_metrics(["runs"], [str(outside)]) == sorted([Path("runs/eval/a/metrics.json"), outside.resolve()])
    assert find_metrics([tmp_path / "runs"]) == [Path("runs/eval/a/metrics.json")]

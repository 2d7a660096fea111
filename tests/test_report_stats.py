"""The report's statistics: the corrected resampled t-test, Holm's correction, the minimum
detectable effect, the patient-level bootstrap, and how the tables and claims use them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import t as t_dist
from test_aggregate import make_metrics, write

from hico.report import bootstrap, stats
from hico.report.aggregate import build_tables
from hico.report.claims import claims
from hico.report.records import find_metrics, load_records

# --------------------------------------------------------------------------------------------
# The corrected resampled t-test


def test_corrected_t_hand_example():
    """J = 10 differences, n_test/n_train = 1/4 (5 folds):
    mean 0.02; squared deviations sum to 38e-4, var = 38e-4 / 9 = 4.2222e-4;
    corrected var of the mean = (1/10 + 1/4) * 4.2222e-4 = 1.47778e-4, se = 0.0121564;
    t = 0.02 / 0.0121564 = 1.64523, two-sided p (t, 9 df) = 0.13433.
    Without the correction (se = sqrt(4.2222e-4 / 10)) t would be 3.0779 and p 0.0132."""
    d = np.array([0.03, 0.01, 0.04, -0.02, 0.05, 0.02, 0.00, 0.03, 0.01, 0.03])
    t, p, note = stats.corrected_t(d, 0.25)
    assert t == pytest.approx(1.64523, abs=1e-5) and p == pytest.approx(0.13433, abs=1e-5) and note == ""
    t0, p0, _ = stats.corrected_t(d, 0.0)
    assert t0 == pytest.approx(3.07794, abs=1e-5) and p0 == pytest.approx(0.01318, abs=1e-5)


def _records(diffs: dict[str, np.ndarray], folds: int = 5, base: float = 0.8, labelled=None) -> pd.DataFrame:
    """Records of ``hico`` (accuracy ``base``) and each other method (``base - diff``) on
    ``len(diff) // folds`` seeds x ``folds`` folds of one dataset, as load_records gives them."""
    labelled = labelled or {}
    rows = []
    for method, d in {"hico": None, **diffs}.items():
        n = len(next(iter(diffs.values())))
        for j in range(n):
            rows.append({"method": method, "dataset": "pocus", "protocol": "linear_probe", "selection": "selected",
                         "level": "frame", "fold": j % folds, "seed": j // folds, "train_fraction": 1.0,
                         "encoder_kind": "final", "encoder_epoch": 100.0, "source": f"{method}{j}",
                         "accuracy": base if d is None else base - d[j], "n_test_videos": 10.0, "n_fit_videos": 40.0,
                         "pretrain_labelled_fraction": labelled.get(method, 0.0)})
    return pd.DataFrame(rows)


def test_paired_test_reads_the_ratio_from_the_fold_sizes():
    d = np.array([0.03, 0.01, 0.04, -0.02, 0.05, 0.02, 0.00, 0.03, 0.01, 0.03])
    test = stats.paired_test(_records({"simclr": d}), "hico", "simclr")
    assert (test.n, test.n_seeds) == (10, 2) and test.test_train_ratio == pytest.approx(0.25)
    assert test.mean_diff == pytest.approx(0.02) and test.p == pytest.approx(0.13433, abs=1e-5)


# --------------------------------------------------------------------------------------------
# Holm


def test_holm_hand_example():
    """p = (0.01, 0.04, 0.03, 0.005), m = 4: sorted 0.005, 0.01, 0.03, 0.04 scale by 4, 3, 2, 1
    to 0.02, 0.03, 0.06, 0.04; running maximum 0.02, 0.03, 0.06, 0.06; back in order:
    0.03, 0.06, 0.06, 0.02. At alpha 0.05 Holm rejects two of the four raw p < 0.05."""
    np.testing.assert_allclose(stats.holm([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02])
    out = stats.holm([np.nan, 0.01, 0.04])  # NaN is no comparison: m = 2
    assert np.isnan(out[0]) and out[1:] == pytest.approx([0.02, 0.04])
    assert stats.holm([0.6, 0.9]) == pytest.approx([1.0, 1.0])  # capped at 1
    assert np.isnan(stats.holm([np.nan])).all() and len(stats.holm([])) == 0


# --------------------------------------------------------------------------------------------
# Minimum detectable effect


def test_mde_has_the_stated_power():
    """Simulated paired differences whose true mean is the MDE are rejected in ~80 % of the runs."""
    rng = np.random.default_rng(0)
    n, sd = 10, 0.02
    mde = stats.min_detectable_effect(sd, n, 0.0)
    rejected = [stats.corrected_t(rng.normal(mde, sd, n), 0.0)[1] < 0.05 for _ in range(4000)]
    assert np.mean(rejected) == pytest.approx(0.80, abs=0.02)


def test_mde_shrinks_as_one_over_sqrt_n_only_in_the_1_over_j_term():
    sd = 0.03
    # without the overlap term: 1/sqrt(n) (up to the t quantiles, which converge)
    assert stats.min_detectable_effect(sd, 4000, 0.0) / stats.min_detectable_effect(sd, 1000, 0.0) == \
        pytest.approx(0.5, abs=1e-3)
    # the non-centrality factor tends to z_0.975 + z_0.8 = 2.8016
    assert stats.min_detectable_effect(sd, 100_000, 0.0) / (sd * np.sqrt(1 / 100_000)) == pytest.approx(2.8016, abs=1e-3)
    # with it, the corrected standard error is sd * sqrt(1/n + n_test/n_train): more seeds on the
    # same partition approach a floor of 2.8 * sd * sqrt(n_test/n_train), they never go below it
    for n in (5, 15, 60):
        assert stats.min_detectable_effect(sd, n, 0.25) / np.sqrt(1 / n + 0.25) == pytest.approx(
            stats.min_detectable_effect(sd, n, 0.0) / np.sqrt(1 / n), rel=1e-9)
    # 3 seeds x 5 folds instead of 1 x 5 buys a factor 0.67 in MDE, not 1/sqrt(3) = 0.58
    assert stats.min_detectable_effect(sd, 15, 0.25) / stats.min_detectable_effect(sd, 5, 0.25) == \
        pytest.approx(0.6721, abs=1e-3)
    assert stats.min_detectable_effect(sd, 10**6, 0.25) == pytest.approx(2.8016 * sd * 0.5, rel=1e-3)
    assert np.isnan(stats.min_detectable_effect(sd, 1, 0.25))


# --------------------------------------------------------------------------------------------
# Patient-level bootstrap


def _simulated_videos(rng, n_patients=40, folds=4, seeds=2, p_true=0.8, spread=0.1):
    """test_videos of ``seeds`` x ``folds`` records over one partition of ``n_patients``
    patients whose own accuracy varies around ``p_true`` (2 videos of 5 frames each)."""
    p_patient = np.clip(rng.normal(p_true, spread, n_patients), 0, 1)
    out = []
    for _seed in range(seeds):
        for f in range(folds):
            pats = [i for i in range(n_patients) if i % folds == f]
            vids = {"video_id": [], "patient_id": [], "label": [], "n_frames": [], "frame_correct": [],
                    "video_pred": []}
            for i in pats:
                for v in range(2):
                    hits = int(rng.binomial(5, p_patient[i]))
                    vids["video_id"].append(f"p{i}v{v}")
                    vids["patient_id"].append(f"p{i}")
                    vids["label"].append(v % 2)
                    vids["n_frames"].append(5)
                    vids["frame_correct"].append(hits)
                    vids["video_pred"].append(v % 2 if hits >= 3 else 1 - v % 2)
            out.append(vids)
    return out


def test_bootstrap_interval_covers_the_true_mean():
    rng = np.random.default_rng(1)
    covered = []
    for i in range(60):
        videos = _simulated_videos(rng)
        ci = bootstrap.patient_bootstrap(videos, "frame", np.random.default_rng(i), n_resamples=500)
        covered.append(ci.low <= 0.8 <= ci.high)
        assert ci.n_patients == 40 and ci.low < bootstrap.point_estimate(videos, "frame") < ci.high
    assert np.mean(covered) >= 0.85  # nominal 95 %; 60 simulations


def test_bootstrap_is_reproducible_with_its_seed_and_blank_without_test_videos():
    videos = _simulated_videos(np.random.default_rng(2))
    key = ("hico", "pocus", "linear_probe", "selected", "frame")
    a = bootstrap.patient_bootstrap(videos, "video", bootstrap.row_seed(0, key))
    b = bootstrap.patient_bootstrap(videos, "video", bootstrap.row_seed(0, key))
    c = bootstrap.patient_bootstrap(videos, "video", bootstrap.row_seed(1, key))
    assert (a.low, a.high) == (b.low, b.high) and (a.low, a.high) != (c.low, c.high)
    assert 0 < a.low < a.high < 1
    blank = bootstrap.patient_bootstrap(videos[:2] + [None], "frame", bootstrap.row_seed(0, key))
    assert np.isnan(blank.low) and blank.n_patients == 0 and "1 of 3" in blank.note


def test_bootstrap_shares_the_patient_draw_across_seeds():
    """Seeds that test the same patients with identical outcomes give the same interval as one
    seed: they add no information about the patients (independent draws would narrow it)."""
    one = _simulated_videos(np.random.default_rng(3), seeds=1)
    three = one * 3
    rng_key = ("k",)
    a = bootstrap.patient_bootstrap(one, "frame", bootstrap.row_seed(0, rng_key))
    b = bootstrap.patient_bootstrap(three, "frame", bootstrap.row_seed(0, rng_key))
    assert (a.low, a.high) == pytest.approx((b.low, b.high))


# --------------------------------------------------------------------------------------------
# The tables


@pytest.fixture(scope="module")
def lung(tmp_path_factory):
    """3 seeds x 5 folds on POCUS: hico (semi-supervised), hico_ssl, simclr, moco_v2, uscl; the
    metrics of moco_v2 are schema 2 (no test_videos, no labelled fraction)."""
    root = tmp_path_factory.mktemp("stats")
    for method, acc in {"hico": 0.9, "hico_ssl": 0.86, "simclr": 0.75, "moco_v2": 0.88, "uscl": 0.89}.items():
        for seed in range(3):
            for fold in range(5):
                write(root, make_metrics(method, fold=fold, seed=seed, acc=acc, schema=2 if method == "moco_v2" else 3,
                                         full_video_metrics=True))
                if method in ("hico", "simclr"):
                    write(root, make_metrics(method, protocol="finetune_released", fold=fold, seed=seed, acc=acc,
                                             finetune=True, full_video_metrics=True))
    records = load_records(find_metrics([root]))
    built, _ = build_tables(records, n_resamples=400)
    return records, built


def test_main_comparison_holm_family_is_dataset_protocol_selection_level(lung):
    _, built = lung
    main = built["main_comparison"]
    for _, fam in main.groupby(["dataset", "protocol", "selection", "level"]):
        np.testing.assert_allclose(fam["p_holm_accuracy"], stats.holm(fam["p_accuracy"].to_numpy()), rtol=1e-9)
        assert fam.loc[fam["method"] == "hico", "p_holm_accuracy"].isna().all()
    lp = main[(main["protocol"] == "linear_probe") & (main["level"] == "frame")].set_index("method")
    assert lp["p_holm_accuracy"].notna().sum() == 4  # hico against the four others
    assert (lp.drop("hico")["mde_accuracy"] > 0).all() and (lp.drop("hico")["n_pairs"] == 15).all()


def test_main_comparison_intervals(lung):
    records, built = lung
    main = built["main_comparison"]
    sel = main[main["selection"] == "selected"].set_index(["method", "protocol", "level"])
    for (method, protocol, level), row in sel.iterrows():
        if method == "moco_v2":  # schema 2: no test_videos, blank interval saying why
            assert np.isnan(row["accuracy_ci_low"]) and row["n_patients"] == 0 and "schema" in row["ci_note"]
            continue
        assert row["n_patients"] == 50 and row["ci_note"] == ""
        assert row["accuracy_ci_low"] < row["accuracy_mean"] < row["accuracy_ci_high"], (method, protocol, level)
        group = records[(records["method"] == method) & (records["protocol"] == protocol)
                        & (records["level"] == level) & (records["selection"] == "selected")]
        # test_videos reproduce the row's own number, so the interval is about the same thing
        assert bootstrap.point_estimate(list(group["_test_videos"]), level) == pytest.approx(row["accuracy_mean"])
    pp = main[main["selection"] != "selected"]
    assert len(pp) and pp["accuracy_ci_low"].isna().all() and (pp["ci_note"] != "").all()


def test_labelled_fraction_is_carried_to_the_tables(lung):
    _, built = lung
    main = built["main_comparison"].set_index(["method", "protocol", "selection", "level"])
    assert main.loc[("hico", "linear_probe", "selected", "frame"), "pretrain_labelled_fraction"] == 1.0
    assert main.loc[("hico_ssl", "linear_probe", "selected", "frame"), "pretrain_labelled_fraction"] == 0.0
    assert np.isnan(main.loc[("moco_v2", "linear_probe", "selected", "frame"), "pretrain_labelled_fraction"])
    tr = built["transfer"].set_index(["method", "protocol", "level"])
    assert tr.loc[("uscl", "linear_probe", "frame"), "pretrain_labelled_fraction"] == 1.0
    assert "pretrain_labelled_fraction" in built["label_efficiency"] and "pretrain_labelled_fraction" in built["records"]


def test_claims_name_the_hico_row_and_its_labels(lung):
    _, built = lung
    cl = built["claims"]
    pocus = cl[cl["claim_id"] == "beats_baselines_on_pocus"].set_index("comparison")
    assert {"hico vs simclr", "hico vs uscl", "hico vs moco_v2", "hico_ssl vs simclr", "hico_ssl vs uscl",
            "hico_ssl vs moco_v2"} <= set(pocus.index)
    assert pocus.loc["hico_ssl vs simclr", "reference_labelled_fraction"] == 0.0
    assert pocus.loc["hico vs uscl", ["reference_labelled_fraction", "other_labelled_fraction"]].tolist() == [1.0, 1.0]
    # one family per claim: both HiCo rows x 3 baselines on the linear probe, hico vs simclr fine-tuned
    assert len(pocus) == 7 and pocus.loc["hico vs simclr"].shape[0] == 2
    np.testing.assert_allclose(pocus["p_holm"], stats.holm(pocus["p"].to_numpy()), rtol=1e-9)


def test_claims_verdicts_follow_the_adjusted_p():
    """Two comparisons with raw p 0.03 and 0.04 (each < 0.05) are both inconclusive after Holm
    (adjusted 0.06 and 0.06 in a family of two); a third comparison with p 0.001 would be
    supported and lifts neither."""
    base = np.tile([1.0, -1.0, 0.5, -0.5, 0.0], 3)  # mean 0, 3 seeds x 5 folds
    base = base / base.std(ddof=1)

    def diffs_with_p(p, sd=0.01):  # differences whose corrected t-test gives p (15 pairs, ratio 1/4)
        t = t_dist.isf(p / 2, 14)
        return sd * base + t * sd * np.sqrt(1 / 15 + 0.25)

    records = _records({"simclr": diffs_with_p(0.03), "moco_v2": diffs_with_p(0.04)})
    cl = claims(records).set_index("comparison")
    fav = cl[cl["claim_id"] == "favorable_over_sota"]
    assert fav.loc["hico vs simclr", "p"] == pytest.approx(0.03) and fav.loc["hico vs moco_v2", "p"] == pytest.approx(0.04)
    assert fav["p_holm"].tolist() == pytest.approx([0.06, 0.06])
    assert (fav["verdict"] == stats.INCONCLUSIVE).all()
    records = _records({"simclr": diffs_with_p(0.03), "moco_v2": diffs_with_p(0.001)})
    fav = claims(records).set_index("comparison")
    fav = fav[fav["claim_id"] == "favorable_over_sota"]
    assert fav.loc["hico vs moco_v2", "p_holm"] == pytest.approx(0.002)
    assert fav.loc["hico vs moco_v2", "verdict"] == stats.SUPPORTED
    assert fav.loc["hico vs simclr", "p_holm"] == pytest.approx(0.03) and fav.loc["hico vs simclr", "verdict"] == stats.SUPPORTED
    # a negative difference that survives Holm is "not supported"
    fav = claims(_records({"simclr": -diffs_with_p(0.001)})).set_index("comparison")
    assert fav.loc["hico vs simclr"].query("claim_id == 'favorable_over_sota'")["verdict"].item() == stats.NOT_SUPPORTED


def test_interval_is_blank_when_test_videos_disagree_with_the_metrics(tmp_path):
    """A CI must be about the row's own number: test_videos that do not reproduce a record's
    accuracy (here fold 1's video block is a copy of its frame block) leave it blank, naming the file."""
    paths = [write(tmp_path, make_metrics("hico", fold=f, seed=s, full_video_metrics=(f == 0)))
             for f in range(2) for s in range(2)]
    built, _ = build_tables(load_records(paths), n_resamples=100)
    main = built["main_comparison"].set_index("level")
    assert main.loc["frame", "accuracy_ci_low"] < main.loc["frame", "accuracy_mean"] < main.loc["frame", "accuracy_ci_high"]
    assert np.isnan(main.loc["video", "accuracy_ci_low"]) and "fold1" in main.loc["video", "ci_note"]
    assert "test_videos give video accuracy" in main.loc["video", "ci_note"]

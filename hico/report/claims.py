"""The HiCo paper's claims and our verdict on each, from the records (``claims.csv``).

Each claim names a *kind* of evidence; one function per kind lists its pieces of evidence
(dataset, protocol, the HiCo row used, its records, the other method's records, the pretraining
epoch), and :func:`claims` turns each piece into one row: the corrected resampled t-test
(:func:`hico.report.stats.paired_test`), Holm's correction over the rows of the claim, and
:func:`hico.report.stats.verdict` on the adjusted p. Evidence is always ``selection = selected``,
``level = frame``, accuracy, paired over (fold, seed).

HiCo as released is semi-supervised (it sees the pool's labels). Claims against other methods
are tested for the released ``reference`` and, when the run has it, for its pure-SSL variant
(``<reference>_ssl``: no supervised term), which is the fair comparison with SimCLR, MoCo, BYOL
and IVPP; the ``comparison`` column names the row used and the ``*_labelled_fraction`` columns
say which labels each side saw.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd

from hico.report import stats
from hico.report.columns import conform
from hico.report.records import final_records

#: Ablation variants (method names ``hico_<...>``) that remove multi-level alignment or soft labels.
MULTI_LEVEL_TOKENS = ("peer_only", "cross_only", "global_only", "local_only", "no_peer", "no_cross",
                      "single_level", "no_hierarchy", "no_multilevel", "no_multi_level")
SOFT_LABEL_TOKENS = ("hard_label", "no_soft", "no_smooth", "hard_ce")
POCUS_BASELINES = ("uscl", "uscl_ssl", "simclr", "moco_v2", "moco", "mocov2")

CLAIMS = [
    {"id": "faster_convergence", "kind": "convergence",
     "claim": "Peer- and cross-level alignment accelerate convergence: at an early pretraining epoch "
              "HiCo's encoder is already better downstream than a baseline's at the same epoch",
     "source": "HiCo abstract (arXiv 2210.04477): 'effectively accelerate the convergence speed'"},
    {"id": "multi_level_alignment_helps", "kind": "ablation", "tokens": MULTI_LEVEL_TOKENS,
     "claim": "Multi-level (peer + cross) alignment helps: HiCo beats its variants without it",
     "source": "HiCo abstract: 'peer-level semantic alignment and cross-level semantic alignment'"},
    {"id": "soft_labels_help", "kind": "ablation", "tokens": SOFT_LABEL_TOKENS,
     "claim": "The softened objective helps: HiCo beats its variant with hard labels",
     "source": "HiCo abstract: 'a softened objective function ... by smoothing the hard labels'"},
    {"id": "beats_baselines_on_pocus", "kind": "comparison", "dataset_re": r"pocus", "others": POCUS_BASELINES,
     "claim": "HiCo beats USCL, SimCLR and MoCo on POCUS",
     "source": "HiCo abstract: 'favorable results over state-of-the-art approaches' (POCUS is its main benchmark)"},
    {"id": "favorable_over_sota", "kind": "comparison", "dataset_re": r".*", "others": None,
     "claim": "HiCo is better than every other method on every downstream dataset",
     "source": "HiCo abstract: 'Experiments with HiCo on five datasets demonstrate its favorable results over "
               "state-of-the-art approaches'"},
]

#: (dataset, protocol, HiCo row, its records, other records, pretraining epoch or None)
Evidence = tuple[str, str, str, pd.DataFrame, pd.DataFrame, int | None]


def _is_variant(method: str, reference: str) -> bool:
    return method.startswith(f"{reference}_")


def hico_rows(base: pd.DataFrame, reference: str, ssl_reference: str | None) -> list[str]:
    """The HiCo rows a claim against other methods is tested for: the released reference and
    its pure-SSL variant when the run has one."""
    return [reference] + ([ssl_reference] if ssl_reference and (base["method"] == ssl_reference).any() else [])


def comparison_evidence(spec: dict[str, Any], base: pd.DataFrame, reference: str,
                        ssl_reference: str | None = None) -> Iterator[Evidence]:
    """The reference against the listed baselines (``others``; None: every method that is not
    the reference or one of its variants) on the datasets matching ``dataset_re``."""
    final = final_records(base)
    methods = sorted(final["method"].unique())
    if spec["others"] is None:
        others = [m for m in methods if m != reference and not _is_variant(m, reference)]
    else:
        others = [m for m in methods if m in spec["others"]]
    pool = final[final["dataset"].str.contains(spec["dataset_re"], case=False, regex=True)]
    for hico in hico_rows(final, reference, ssl_reference):
        for (dataset, protocol), cell in pool.groupby(["dataset", "protocol"], sort=True):
            a = cell[cell["method"] == hico]
            if a.empty:
                continue
            for other in others:
                b = cell[cell["method"] == other]
                if len(b):
                    yield dataset, protocol, hico, a, b, None


def ablation_evidence(spec: dict[str, Any], base: pd.DataFrame, reference: str,
                      ssl_reference: str | None = None) -> Iterator[Evidence]:
    """The reference against its variants whose name contains one of ``tokens``."""
    final = final_records(base)
    variants = [m for m in sorted(final["method"].unique())
                if _is_variant(m, reference) and any(t in m for t in spec["tokens"])]
    for (dataset, protocol), cell in final.groupby(["dataset", "protocol"], sort=True):
        a = cell[cell["method"] == reference]
        for other in variants:
            b = cell[cell["method"] == other]
            if len(a) and len(b):
                yield dataset, protocol, reference, a, b, None


def convergence_evidence(spec: dict[str, Any], base: pd.DataFrame, reference: str,
                         ssl_reference: str | None = None) -> Iterator[Evidence]:
    """Each HiCo row against each baseline at the earliest pretraining epoch with checkpoint
    evaluations of both."""
    conv = base[np.isclose(base["train_fraction"].astype(float), 1.0) & (base["encoder_kind"] == "checkpoint")]
    baselines = sorted(m for m in conv["method"].unique() if m != reference and not _is_variant(m, reference))
    for hico in hico_rows(conv, reference, ssl_reference):
        for (dataset, protocol), cell in conv.groupby(["dataset", "protocol"], sort=True):
            a_all = cell[cell["method"] == hico]
            for other in baselines:
                b_all = cell[cell["method"] == other]
                common = sorted(set(a_all["encoder_epoch"].dropna()) & set(b_all["encoder_epoch"].dropna()))
                if common:
                    e = common[0]
                    yield (dataset, protocol, hico, a_all[a_all["encoder_epoch"] == e],
                           b_all[b_all["encoder_epoch"] == e], int(e))


EVIDENCE = {"comparison": comparison_evidence, "ablation": ablation_evidence, "convergence": convergence_evidence}


def _no_evidence_why(spec: dict[str, Any], reference: str) -> str:
    return {"comparison": f"no {reference} and baseline results on a matching dataset",
            "ablation": f"no {reference} variant named with any of {list(spec.get('tokens', ()))}",
            "convergence": f"no encoder_epoch<k>.pt evaluations shared by {reference} and a baseline"}[spec["kind"]]


def _evidence_row(spec: dict[str, Any], ev: Evidence, alpha: float, rule: str) -> dict[str, Any]:
    """One row of evidence, before Holm's correction over the claim (:func:`_adjust`)."""
    # mean_diff = HiCo - other: > 0 supports every claim (for ablations: the removed part helps)
    dataset, protocol, hico, a, b, epoch = ev
    other = b["method"].iloc[0]
    test = stats.paired_test(pd.concat([a, b]), hico, other, alpha=alpha)
    return {"claim_id": spec["id"], "claim": spec["claim"], "paper_source": spec["source"], "dataset": dataset,
            "protocol": protocol, "selection": "selected", "level": "frame", "metric": "accuracy",
            "comparison": f"{hico} vs {other}", "reference_labelled_fraction": a["pretrain_labelled_fraction"].mean(),
            "other_labelled_fraction": b["pretrain_labelled_fraction"].mean(), "encoder_epoch": epoch,
            "n_pairs": test.n, "n_seeds": test.n_seeds, "reference_mean": a["accuracy"].mean(),
            "other_mean": b["accuracy"].mean(), "mean_diff": test.mean_diff, "test_train_ratio": test.test_train_ratio,
            "p": test.p, "mde": test.mde, "_note": test.note, "rule": rule}


def _evidence_text(row: dict[str, Any]) -> str:
    hico, other = row["comparison"].split(" vs ")
    if not row["n_pairs"]:
        return "no paired (fold, seed) results"
    text = (f"{hico} {row['reference_mean']:.4f} vs {other} {row['other_mean']:.4f} (mean paired diff "
            f"{row['mean_diff']:+.4f}, n_pairs={row['n_pairs']} over {row['n_seeds']} seeds, p={row['p']:.3g}, "
            f"Holm p={row['p_holm']:.3g}, detectable {row['mde']:.3g})")
    if row["encoder_epoch"] is not None:
        text = f"pretraining epoch {row['encoder_epoch']}: " + text
    return text + (f"; {row['_note']}" if row["_note"] else "")


def _adjust(rows: list[dict[str, Any]], alpha: float) -> list[dict[str, Any]]:
    """Holm over the rows of one claim, then each row's verdict (on the adjusted p) and evidence."""
    adjusted = stats.holm([r["p"] for r in rows])
    for r, p_holm in zip(rows, adjusted):
        r["p_holm"] = p_holm
        r["verdict"] = stats.verdict(r["n_pairs"], r["mean_diff"], p_holm, alpha, r["n_seeds"])
        r["evidence"] = _evidence_text(r)
    return rows


def _no_evidence_row(spec: dict[str, Any], reference: str, rule: str) -> dict[str, Any]:
    return {"claim_id": spec["id"], "claim": spec["claim"], "paper_source": spec["source"],
            "selection": "selected", "level": "frame", "metric": "accuracy", "n_pairs": 0,
            "verdict": stats.NO_EVIDENCE, "evidence": f"{stats.NO_EVIDENCE}: {_no_evidence_why(spec, reference)}",
            "rule": rule}


def claims(records: pd.DataFrame, reference: str = "hico", alpha: float = stats.ALPHA,
           ssl_reference: str | None = "") -> pd.DataFrame:
    """One row per claim x piece of evidence (dataset, protocol, comparison); a claim without
    evidence gets one row saying why. ``ssl_reference`` (default ``<reference>_ssl``; None: none)
    is the pure-SSL HiCo row also tested against the other methods."""
    if ssl_reference == "":
        ssl_reference = f"{reference}_ssl"
    rule = stats.verdict_rule(alpha)
    base = records[(records["selection"] == "selected") & (records["level"] == "frame")]
    rows = []
    for spec in CLAIMS:
        found = [_evidence_row(spec, ev, alpha, rule)
                 for ev in EVIDENCE[spec["kind"]](spec, base, reference, ssl_reference)]
        rows += _adjust(found, alpha) if found else [_no_evidence_row(spec, reference, rule)]
    return conform(pd.DataFrame(rows), "claims")

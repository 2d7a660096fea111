"""The HiCo paper's claims and our verdict on each, from the records (``claims.csv``).

Each claim names a *kind* of evidence; one function per kind lists its pieces of evidence
(dataset, protocol, the reference's records, the other method's records, the pretraining
epoch), and :func:`claims` turns each piece into one row with :func:`hico.report.stats.verdict`.
Evidence is always ``selection = selected``, ``level = frame``, accuracy, paired over (fold, seed).
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
POCUS_BASELINES = ("uscl", "simclr", "moco_v2", "moco", "mocov2")

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

#: (dataset, protocol, reference records, other records, pretraining epoch or None)
Evidence = tuple[str, str, pd.DataFrame, pd.DataFrame, int | None]


def _is_variant(method: str, reference: str) -> bool:
    return method.startswith(f"{reference}_")


def comparison_evidence(spec: dict[str, Any], base: pd.DataFrame, reference: str) -> Iterator[Evidence]:
    """The reference against the listed baselines (``others``; None: every method that is not
    the reference or one of its variants) on the datasets matching ``dataset_re``."""
    final = final_records(base)
    methods = sorted(final["method"].unique())
    if spec["others"] is None:
        others = [m for m in methods if m != reference and not _is_variant(m, reference)]
    else:
        others = [m for m in methods if m in spec["others"]]
    pool = final[final["dataset"].str.contains(spec["dataset_re"], case=False, regex=True)]
    for (dataset, protocol), cell in pool.groupby(["dataset", "protocol"], sort=True):
        a = cell[cell["method"] == reference]
        if a.empty:
            continue
        for other in others:
            b = cell[cell["method"] == other]
            if len(b):
                yield dataset, protocol, a, b, None


def ablation_evidence(spec: dict[str, Any], base: pd.DataFrame, reference: str) -> Iterator[Evidence]:
    """The reference against its variants whose name contains one of ``tokens``."""
    final = final_records(base)
    variants = [m for m in sorted(final["method"].unique())
                if _is_variant(m, reference) and any(t in m for t in spec["tokens"])]
    for (dataset, protocol), cell in final.groupby(["dataset", "protocol"], sort=True):
        a = cell[cell["method"] == reference]
        for other in variants:
            b = cell[cell["method"] == other]
            if len(a) and len(b):
                yield dataset, protocol, a, b, None


def convergence_evidence(spec: dict[str, Any], base: pd.DataFrame, reference: str) -> Iterator[Evidence]:
    """The reference against each baseline at the earliest pretraining epoch with checkpoint
    evaluations of both."""
    conv = base[np.isclose(base["train_fraction"].astype(float), 1.0) & (base["encoder_kind"] == "checkpoint")]
    baselines = sorted(m for m in conv["method"].unique() if m != reference and not _is_variant(m, reference))
    for (dataset, protocol), cell in conv.groupby(["dataset", "protocol"], sort=True):
        a_all = cell[cell["method"] == reference]
        for other in baselines:
            b_all = cell[cell["method"] == other]
            common = sorted(set(a_all["encoder_epoch"].dropna()) & set(b_all["encoder_epoch"].dropna()))
            if common:
                e = common[0]
                yield (dataset, protocol, a_all[a_all["encoder_epoch"] == e], b_all[b_all["encoder_epoch"] == e],
                       int(e))


EVIDENCE = {"comparison": comparison_evidence, "ablation": ablation_evidence, "convergence": convergence_evidence}


def _no_evidence_why(spec: dict[str, Any], reference: str) -> str:
    return {"comparison": f"no {reference} and baseline results on a matching dataset",
            "ablation": f"no {reference} variant named with any of {list(spec.get('tokens', ()))}",
            "convergence": f"no encoder_epoch<k>.pt evaluations shared by {reference} and a baseline"}[spec["kind"]]


def _evidence_row(spec: dict[str, Any], ev: Evidence, reference: str, alpha: float, rule: str) -> dict[str, Any]:
    # mean_diff = reference - other: > 0 supports every claim (for ablations: the removed part helps)
    dataset, protocol, a, b, epoch = ev
    other = b["method"].iloc[0]
    n, diff, p, note = stats.paired_summary(pd.concat([a, b]), reference, other)
    evidence = (f"{reference} {a['accuracy'].mean():.4f} vs {other} {b['accuracy'].mean():.4f} "
                f"(mean paired diff {diff:+.4f}, n_pairs={n}, p={p:.3g})" if n else "no paired (fold, seed) results")
    if epoch is not None:
        evidence = f"pretraining epoch {epoch}: " + evidence
    if note:
        evidence += f"; {note}"
    return {"claim_id": spec["id"], "claim": spec["claim"], "paper_source": spec["source"], "dataset": dataset,
            "protocol": protocol, "selection": "selected", "level": "frame", "metric": "accuracy",
            "comparison": f"{reference} vs {other}", "encoder_epoch": epoch, "n_pairs": n,
            "hico_mean": a["accuracy"].mean(), "other_mean": b["accuracy"].mean(), "mean_diff": diff,
            "wilcoxon_p": p, "verdict": stats.verdict(n, diff, p, alpha), "evidence": evidence, "rule": rule}


def _no_evidence_row(spec: dict[str, Any], reference: str, rule: str) -> dict[str, Any]:
    return {"claim_id": spec["id"], "claim": spec["claim"], "paper_source": spec["source"],
            "selection": "selected", "level": "frame", "metric": "accuracy", "n_pairs": 0,
            "verdict": stats.NO_EVIDENCE, "evidence": f"{stats.NO_EVIDENCE}: {_no_evidence_why(spec, reference)}",
            "rule": rule}


def claims(records: pd.DataFrame, reference: str = "hico", alpha: float = stats.ALPHA) -> pd.DataFrame:
    """One row per claim x piece of evidence (dataset, protocol, comparison); a claim without
    evidence gets one row saying why."""
    rule = stats.VERDICT_RULE.replace(str(stats.ALPHA), str(alpha))
    base = records[(records["selection"] == "selected") & (records["level"] == "frame")]
    rows = []
    for spec in CLAIMS:
        found = [_evidence_row(spec, ev, reference, alpha, rule) for ev in EVIDENCE[spec["kind"]](spec, base, reference)]
        rows += found or [_no_evidence_row(spec, reference, rule)]
    return conform(pd.DataFrame(rows), "claims")

"""Paired tests and the explicit verdict rules of ``claims.csv``.

Pairs are (fold, seed) cells where both methods were evaluated on the same test fold with the
same seed, so the Wilcoxon signed-rank test (Wilcoxon 1945; scipy's two-sided test, exact for
small n without ties) compares like with like. With n pairs the smallest two-sided exact
p-value is 2 / 2**n, so fewer than :data:`MIN_PAIRS` pairs can never reach p < 0.05.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
from scipy.stats import rankdata, wilcoxon

ALPHA = 0.05
#: smallest n whose exact two-sided Wilcoxon p-value can fall below 0.05 (2 / 2**6 = 0.031)
MIN_PAIRS = 6

SUPPORTED = "supported"
NOT_SUPPORTED = "not supported"
INCONCLUSIVE = "inconclusive at this n"
NO_EVIDENCE = "no evidence in this run"

VERDICT_RULE = (
    f"supported: two-sided Wilcoxon p < {ALPHA} and mean difference > 0 in the claimed direction; "
    f"not supported: p < {ALPHA} and mean difference < 0; inconclusive at this n: otherwise "
    f"(always when n_pairs < {MIN_PAIRS}); no evidence in this run: no paired results"
)


#: up to this many non-zero differences the p-value is exact (all 2**n sign flips enumerated)
EXACT_MAX_N = 16


def _exact_signed_rank_p(d: np.ndarray) -> float:
    """Two-sided p of the signed-rank statistic over all 2**n sign flips of the non-zero
    differences ``d`` (average ranks for ties), as scipy's exact / permutation null."""
    n = len(d)
    ranks = rankdata(np.abs(d))
    r_plus = ranks[d > 0].sum()
    flips = (np.arange(2**n)[:, None] >> np.arange(n)) & 1
    null = flips @ ranks
    gamma = abs(1e-14 * r_plus)
    p_less = np.mean(null <= r_plus + gamma)
    p_greater = np.mean(null >= r_plus - gamma)
    return float(min(1.0, 2 * min(p_less, p_greater)))


def wilcoxon_p(a: np.ndarray, b: np.ndarray) -> tuple[float, str]:
    """Two-sided Wilcoxon signed-rank p-value of paired samples ``a`` and ``b`` and a note.

    Zero differences are dropped (Wilcoxon's convention, scipy's default). With at most
    :data:`EXACT_MAX_N` non-zero differences the exact null over every sign flip is used
    (equal to scipy's exact test without ties and to its exhaustive permutation test with
    ties); above, scipy's exact test without ties and its normal approximation with ties
    (deterministic, unlike scipy's randomised permutation null). NaN pairs are dropped.
    Returns (nan, note) without pairs; p = 1 when every difference is 0.
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    keep = ~(np.isnan(a) | np.isnan(b))
    a, b = a[keep], b[keep]
    n = len(a)
    if n == 0:
        return float("nan"), "no pairs"
    note = ""
    if n < MIN_PAIRS:
        note = f"n_pairs={n} < {MIN_PAIRS}: p cannot fall below {ALPHA}"
    d = a - b
    d = d[d != 0]
    if len(d) == 0:
        return 1.0, "; ".join(x for x in (note, "all differences are zero") if x)
    if len(d) <= EXACT_MAX_N:
        return _exact_signed_rank_p(d), note
    ties = len(np.unique(np.abs(d))) < len(d)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        warnings.simplefilter("ignore", UserWarning)
        p = float(wilcoxon(d, method="approx" if ties else "exact").pvalue)
    return p, "; ".join(x for x in (note, "normal approximation (ties)" if ties else "") if x)


def paired(df: pd.DataFrame, metric: str, method_a: str, method_b: str,
           on: tuple[str, ...] = ("fold", "seed")) -> tuple[np.ndarray, np.ndarray]:
    """Values of ``metric`` for ``method_a`` and ``method_b`` matched on the ``on`` columns."""
    cols = list(on)
    a = df[df["method"] == method_a].groupby(cols)[metric].mean()
    b = df[df["method"] == method_b].groupby(cols)[metric].mean()
    both = a.index.intersection(b.index)
    return a.loc[both].to_numpy(float), b.loc[both].to_numpy(float)


def verdict(n_pairs: int, mean_diff: float, p: float, alpha: float = ALPHA) -> str:
    """The claims rule (:data:`VERDICT_RULE`); ``mean_diff`` is in the claimed direction."""
    if n_pairs == 0 or mean_diff is None or (isinstance(mean_diff, float) and math.isnan(mean_diff)):
        return NO_EVIDENCE
    if p is not None and not math.isnan(p) and p < alpha:
        if mean_diff > 0:
            return SUPPORTED
        if mean_diff < 0:
            return NOT_SUPPORTED
    return INCONCLUSIVE


def paired_summary(df: pd.DataFrame, a: str, b: str, metric: str = "accuracy") -> tuple[int, float, float, str]:
    """n pairs, mean(a - b), Wilcoxon p and note over the (fold, seed) cells of ``df``."""
    xa, xb = paired(df, metric, a, b)
    if len(xa) == 0:
        return 0, float("nan"), float("nan"), "no paired (fold, seed) results"
    p, note = wilcoxon_p(xa, xb)
    return len(xa), float(np.mean(xa - xb)), p, note

"""The statistics of the tables: the paired test, Holm's correction, the benchmark's resolution
(minimum detectable effect), patient-level bootstrap intervals and the verdict rule of
``claims.csv``. results/README.md ("Statistics") says why these and what they assume.

**Paired test.** Two methods are paired on the (fold, seed) cells where both were evaluated
(same test fold, same seed). The J cells are not independent: the training sets of the folds of
one partition overlap, and every seed reuses the same partition. The corrected resampled t-test
(Nadeau & Bengio 2003, "Inference for the generalization error", Machine Learning 52:239-281,
eq. 11; applied to r x k cross-validation by Bouckaert & Frank 2004, PAKDD) inflates the
variance of the mean difference for that overlap::

    t = mean(d) / sqrt((1/J + n_test/n_train) * var(d)),   df = J - 1,

where ``d`` are the J paired differences, ``var`` the sample variance (ddof = 1) and
``n_test/n_train`` the ratio of test to training videos of a fold (1/(k-1) for k folds). With
``n_test/n_train = 0`` it is the ordinary paired t-test.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as sps
from scipy.optimize import brentq

ALPHA = 0.05
POWER = 0.8
#: a difference needs at least this many pairs (J - 1 >= 1 degrees of freedom)
MIN_PAIRS = 2
#: and this many independent pretraining runs: with one seed the test compares two encoders,
#: not two methods (every cell reuses the same pretrained encoder)
MIN_SEEDS = 2

SUPPORTED = "supported"
NOT_SUPPORTED = "not supported"
INCONCLUSIVE = "inconclusive at this n"
NO_EVIDENCE = "no evidence in this run"


def verdict_rule(alpha: float = ALPHA) -> str:
    return (
        f"supported: Holm-adjusted p < {alpha} (corrected resampled t-test of Nadeau & Bengio 2003 over the "
        f"paired (fold, seed) cells; Holm over the claim's comparisons) and mean difference > 0 in the claimed "
        f"direction; not supported: adjusted p < {alpha} and mean difference < 0; inconclusive at this n: "
        f"otherwise (always with fewer than {MIN_PAIRS} pairs or {MIN_SEEDS} pretraining seeds); "
        f"no evidence in this run: no paired results"
    )


VERDICT_RULE = verdict_rule()


# --------------------------------------------------------------------------------------------
# The paired test


@dataclass(frozen=True)
class PairedTest:
    """The corrected resampled t-test of ``a - b`` over ``n`` paired cells."""

    n: int
    n_seeds: int
    mean_diff: float
    sd_diff: float
    test_train_ratio: float
    t: float
    p: float
    mde: float
    note: str


def corrected_t(d: np.ndarray, test_train_ratio: float) -> tuple[float, float, str]:
    """(t, two-sided p, note) of the corrected resampled t-test of the differences ``d``.

    Undefined (NaN, with a note) for fewer than :data:`MIN_PAIRS` differences, or when they
    all equal a non-zero value (zero variance); p = 1 when every difference is 0.
    """
    d = np.asarray(d, dtype=float)
    d = d[~np.isnan(d)]
    n = len(d)
    if n < MIN_PAIRS:
        return float("nan"), float("nan"), f"n_pairs={n} < {MIN_PAIRS}: no test"
    mean, var = float(d.mean()), float(d.var(ddof=1))
    if var == 0:
        if mean == 0:
            return 0.0, 1.0, "all differences are zero"
        return float("nan"), float("nan"), "every difference is the same: zero variance, no test"
    t = mean / math.sqrt((1 / n + test_train_ratio) * var)
    return t, float(2 * sps.t.sf(abs(t), n - 1)), ""


def _power(ncp: float, df: int, t_crit: float) -> float:
    # the lower tail is negligible where scipy's non-central t returns NaN (large ncp, df = 1)
    lower = sps.nct.cdf(-t_crit, df, ncp)
    return float(sps.nct.sf(t_crit, df, ncp) + (0.0 if np.isnan(lower) else lower))


def min_detectable_effect(sd: float, n: int, test_train_ratio: float, alpha: float = ALPHA,
                          power: float = POWER) -> float:
    """The smallest true mean difference that the two-sided corrected t-test at level ``alpha``
    detects with probability ``power``, for ``n`` pairs whose differences have standard
    deviation ``sd``: ``ncp * sd * sqrt(1/n + n_test/n_train)``, where ``ncp`` solves
    power(ncp) = ``power`` under the non-central t distribution with n - 1 degrees of freedom.
    NaN for fewer than :data:`MIN_PAIRS` pairs or an unknown ``sd``."""
    if n < MIN_PAIRS or sd is None or not np.isfinite(sd):
        return float("nan")
    df = n - 1
    t_crit = float(sps.t.ppf(1 - alpha / 2, df))
    hi = 2 * t_crit + 10
    while _power(hi, df, t_crit) < power:
        hi *= 2
    ncp = brentq(lambda x: _power(x, df, t_crit) - power, 0.0, hi, xtol=1e-10)
    return float(ncp * sd * math.sqrt(1 / n + test_train_ratio))


def paired(df: pd.DataFrame, metric: str, method_a: str, method_b: str,
           on: tuple[str, ...] = ("fold", "seed")) -> tuple[np.ndarray, np.ndarray]:
    """Values of ``metric`` for ``method_a`` and ``method_b`` matched on the ``on`` columns."""
    cols = list(on)
    a = df[df["method"] == method_a].groupby(cols)[metric].mean()
    b = df[df["method"] == method_b].groupby(cols)[metric].mean()
    both = a.index.intersection(b.index)
    return a.loc[both].to_numpy(float), b.loc[both].to_numpy(float)


def _pairs(df: pd.DataFrame, a: str, b: str, metric: str) -> pd.DataFrame:
    """One row per (fold, seed) cell of both methods: the difference and the cell's
    test/training size ratio (from the metrics' ``n_videos``)."""
    cells = df.assign(_ratio=df["n_test_videos"] / df["n_fit_videos"])
    by = cells.groupby(["method", "fold", "seed"])[[metric, "_ratio"]].mean()
    if a not in by.index.get_level_values(0) or b not in by.index.get_level_values(0):
        return pd.DataFrame(columns=["seed", "diff", "ratio"])
    xa, xb = by.loc[a], by.loc[b]
    both = xa.index.intersection(xb.index)
    return pd.DataFrame({"seed": both.get_level_values("seed"),
                         "diff": xa.loc[both, metric].to_numpy(float) - xb.loc[both, metric].to_numpy(float),
                         "ratio": (xa.loc[both, "_ratio"].to_numpy(float) + xb.loc[both, "_ratio"].to_numpy(float)) / 2})


def paired_test(df: pd.DataFrame, a: str, b: str, metric: str = "accuracy", alpha: float = ALPHA) -> PairedTest:
    """The corrected resampled t-test of ``a`` against ``b`` over the (fold, seed) cells of ``df``
    (records with the private ``n_test_videos`` and ``n_fit_videos`` columns of
    :func:`hico.report.records.load_records`), and the effect it could detect."""
    pairs = _pairs(df, a, b, metric).dropna(subset=["diff"])
    n = len(pairs)
    if n == 0:
        return PairedTest(0, 0, float("nan"), float("nan"), float("nan"), float("nan"), float("nan"), float("nan"),
                          "no paired (fold, seed) results")
    ratio = float(pairs["ratio"].mean())
    d = pairs["diff"].to_numpy(float)
    t, p, note = corrected_t(d, ratio)
    sd = float(d.std(ddof=1)) if n >= MIN_PAIRS else float("nan")
    n_seeds = int(pairs["seed"].nunique())
    if n_seeds < MIN_SEEDS:
        note = "; ".join(x for x in (note, f"{n_seeds} pretraining seed: no independent replicate") if x)
    return PairedTest(n, n_seeds, float(d.mean()), sd, ratio, t, p,
                      min_detectable_effect(sd, n, ratio, alpha), note)


# --------------------------------------------------------------------------------------------
# Multiple comparisons


def holm(p: np.ndarray | list[float]) -> np.ndarray:
    """Holm's (1979) step-down adjusted p-values of one family; NaN stays NaN and does not count.

    With the m defined p-values sorted ascending, ``adj_(i) = max_{j <= i} min(1, (m - j + 1) p_(j))``;
    rejecting where ``adj < alpha`` controls the family-wise error rate at alpha.
    """
    p = np.asarray(p, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    if len(ok) == 0:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    m = len(order)
    scaled = np.minimum(1.0, (m - np.arange(m)) * p[order])
    out[order] = np.maximum.accumulate(scaled)
    return out


def holm_within(table: pd.DataFrame, family: list[str], p_col: str) -> pd.Series:
    """Holm-adjusted ``p_col`` within each group of ``family`` columns (index of ``table``)."""
    out = pd.Series(np.nan, index=table.index, dtype=float)
    if table.empty or p_col not in table:  # no comparison in the table (only the reference ran)
        return out
    for _, g in table.groupby(family, sort=False, dropna=False):
        out.loc[g.index] = holm(g[p_col].to_numpy(float))
    return out


# --------------------------------------------------------------------------------------------
# Verdicts


def verdict(n_pairs: int, mean_diff: float, p: float, alpha: float = ALPHA, n_seeds: int = MIN_SEEDS) -> str:
    """The claims rule (:func:`verdict_rule`); ``mean_diff`` is in the claimed direction and
    ``p`` is the Holm-adjusted p of the comparison."""
    if n_pairs == 0 or mean_diff is None or (isinstance(mean_diff, float) and math.isnan(mean_diff)):
        return NO_EVIDENCE
    if n_pairs < MIN_PAIRS or n_seeds < MIN_SEEDS:
        return INCONCLUSIVE
    if p is not None and not math.isnan(p) and p < alpha:
        if mean_diff > 0:
            return SUPPORTED
        if mean_diff < 0:
            return NOT_SUPPORTED
    return INCONCLUSIVE

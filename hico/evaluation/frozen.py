"""Protocols on frozen features: the linear probe and the k-NN.

- ``linear_probe``: pooled c5 features of every stored frame, standardised, scikit-learn
  logistic regression; C chosen by validation accuracy, then refit on train+val.
- ``knn``: cosine k-NN (k = 20) on the same features, neighbours voted by similarity
  (temperature 0.07, as in Wu et al. 2018's instance-discrimination k-NN).

Registered in :mod:`hico.evaluation.protocols` as ``linear_probe``/``knn`` and, on features of
the encoder with BatchNorm adapted to the fold (AdaBN), ``linear_probe_adabn``/``knn_adabn``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hico.evaluation.metrics import full_proba
from hico.evaluation.protocols import ProtocolError, positive_int, positive_number
from hico.evaluation.splits import FrameFeatures
from hico.progress import progress

#: test frames compared with the neighbour bank at once (bounds the similarity matrix's memory)
KNN_QUERY_BLOCK = 4096


def linear_probe(train: FrameFeatures, val: FrameFeatures, test: FrameFeatures, n_classes: int, seed: int = 0,
                 c_grid: tuple[float, ...] = (1e-3, 1e-2, 1e-1, 1.0, 10.0), max_iter: int = 2000) -> dict[str, Any]:
    """Logistic regression on standardised frozen features; returns test probabilities."""
    c_grid, max_iter = linear_probe_arguments(c_grid, max_iter)
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(train.features)
    xt, xv = scaler.transform(train.features), scaler.transform(val.features)
    scores = {}
    for c in progress(c_grid, desc="linear probe: C grid", unit="C"):
        clf = LogisticRegression(C=c, max_iter=max_iter, random_state=seed)
        clf.fit(xt, train.labels)
        scores[c] = accuracy_score(val.labels, clf.predict(xv)) if len(val.labels) else 0.0
    best_c = max(c_grid, key=lambda c: (scores[c], -abs(np.log10(c))))
    x_all = np.concatenate([train.features, val.features])
    y_all = np.concatenate([train.labels, val.labels])
    scaler = StandardScaler().fit(x_all)
    clf = LogisticRegression(C=best_c, max_iter=max_iter, random_state=seed).fit(scaler.transform(x_all), y_all)
    proba = full_proba(clf.classes_, clf.predict_proba(scaler.transform(test.features)), n_classes)
    return {"proba": proba, "selection": {"rule": "validation accuracy over C, then refit on train+val",
                                          "C": best_c, "val_accuracy_by_C": {str(k): v for k, v in scores.items()}}}


def knn(train: FrameFeatures, val: FrameFeatures, test: FrameFeatures, n_classes: int, seed: int = 0,
        k: int = 20, temperature: float = 0.07) -> dict[str, Any]:
    """Cosine k-NN on frozen features (neighbours from train+val), similarity-weighted votes."""
    k, temperature = knn_arguments(k, temperature)
    bank = np.concatenate([train.features, val.features])
    bank_y = np.concatenate([train.labels, val.labels])
    bank = bank / (np.linalg.norm(bank, axis=1, keepdims=True) + 1e-12)
    q = test.features / (np.linalg.norm(test.features, axis=1, keepdims=True) + 1e-12)
    kk = min(k, len(bank))
    votes = np.zeros((len(q), n_classes))
    for start in progress(range(0, len(q), KNN_QUERY_BLOCK), desc="k-NN: test frames", unit="block"):
        sim = q[start : start + KNN_QUERY_BLOCK] @ bank.T
        nn_idx = np.argpartition(-sim, kk - 1, axis=1)[:, :kk]
        w = np.exp(np.take_along_axis(sim, nn_idx, axis=1) / temperature)
        rows = np.repeat(np.arange(start, start + len(sim)), kk)
        np.add.at(votes, (rows, bank_y[nn_idx].ravel()), w.ravel())
    return {"proba": votes / votes.sum(axis=1, keepdims=True), "selection": {"rule": "fixed k", "k": kk}}


def linear_probe_arguments(c_grid=(1e-3, 1e-2, 1e-1, 1.0, 10.0), max_iter=2000) -> tuple[tuple[float, ...], int]:
    """A non-empty grid of positive inverse regularisation strengths and iterations >= 1."""
    if isinstance(c_grid, str) or not hasattr(c_grid, "__iter__"):
        raise ProtocolError(f"protocol linear_probe: c_grid must be a list of numbers, got {c_grid!r}")
    c_grid = tuple(c_grid)
    for c in c_grid:
        positive_number("linear_probe", "every c_grid value", c)
    if not c_grid:
        raise ProtocolError("protocol linear_probe: c_grid is empty; give at least one C, e.g. [0.1, 1.0]")
    return c_grid, positive_int("linear_probe", "max_iter", max_iter)


def knn_arguments(k=20, temperature=0.07) -> tuple[int, float]:
    """k >= 1 neighbours (``k: 0`` would vote with nobody: chance accuracy) and a temperature > 0."""
    return positive_int("knn", "k", k), positive_number("knn", "temperature", temperature)

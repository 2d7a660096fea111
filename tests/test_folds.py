"""Patient-grouped folds and inner validation: no patient on both sides, seeded."""

from __future__ import annotations

import pandas as pd
import pytest

from hico.data.folds import FoldError, inner_validation, make_folds, read_folds, split_fold


def manifest(n_patients=20, videos=3):
    rows = [{"video_id": f"p{p}v{v}", "patient_id": f"p{p}", "label": p % 3}
            for p in range(n_patients) for v in range(videos)]
    return pd.DataFrame(rows)


def test_folds_grouped_stratified_seeded():
    m = manifest()
    f = make_folds(m, k=5, seed=1)
    assert sorted(f["fold"].unique()) == [0, 1, 2, 3, 4]
    joined = m.merge(f, on="video_id")
    assert (joined.groupby("patient_id")["fold"].nunique() == 1).all()
    # stratified: every fold sees every class
    assert (joined.groupby("fold")["label"].nunique() == 3).all()
    assert make_folds(m, 5, 1).equals(f)
    assert not make_folds(m, 5, 2)["fold"].equals(f["fold"])


def test_split_fold_disjoint_by_patient():
    m = manifest()
    f = make_folds(m, k=4, seed=0)
    train, val, test = split_fold(m, f, fold=2, val_fraction=0.25, seed=0)
    pid = dict(zip(m["video_id"], m["patient_id"]))
    sets = [set(pid[v] for v in ids) for ids in (train, val, test)]
    assert not (sets[0] & sets[1]) and not (sets[0] & sets[2]) and not (sets[1] & sets[2])
    assert len(train) + len(val) + len(test) == len(m)
    assert set(test) == set(f[f["fold"] == 2]["video_id"])
    assert 0 < len(val) < len(train)


def test_inner_validation_falls_back_when_classes_are_tiny():
    m = manifest(n_patients=4, videos=1)
    val = inner_validation(m, 0.25, seed=0)
    assert len(val) == 1


def test_clear_errors(tmp_path):
    with pytest.raises(FoldError, match="cannot make 5 patient-grouped folds from 3 patients"):
        make_folds(manifest(3), k=5)
    with pytest.raises(FoldError, match="python -m hico folds"):
        read_folds(tmp_path / "missing.csv")
    m = manifest()
    make_folds(m, 2).iloc[:-3].to_csv(tmp_path / "f.csv", index=False)
    with pytest.raises(FoldError, match="no fold for 3 videos"):
        read_folds(tmp_path / "f.csv", m)


@pytest.mark.parametrize("value, shown", [("two", "'two'"), ("", "empty")])
def test_a_fold_that_is_not_an_integer_is_named(tmp_path, value, shown):
    path = tmp_path / "folds.csv"
    path.write_text(f"video_id,fold\np0v0,0\np0v1,{value}\n")
    with pytest.raises(FoldError, match=rf"folds.csv row 3 \(video_id='p0v1'\): fold is {shown}"):
        read_folds(path)

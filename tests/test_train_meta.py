"""Meta batches from held-out videos (PretrainMethod.meta_sampler; Meta-USCL's meta step): the
loop splits the held-out videos by patient into meta and validation videos, draws one meta batch
per step, and resumes exactly; a method without the hook trains as before."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from hico.train import CyclingBatches, MetaSplitError, PretrainPool, pretrain

TINY = {"image_size": 32, "batch_size": 4, "num_workers": 0, "pretrained": False, "val_fraction": 0.25}


def _spy_runs(monkeypatch):
    """Record each run's sets, the video indices of every training and meta batch, and the
    batches the method's training_step saw."""
    import hico.train as train

    seen = {"runs": [], "train": [], "meta": [], "steps": []}
    set_up, train_step = train._set_up, train._train_step

    def spy_set_up(*args, **kwargs):
        run = set_up(*args, **kwargs)
        seen["runs"].append(run)
        step = run.model.training_step

        def spy_step(batch):
            if run.model.training:
                seen["steps"].append({k: batch[k] for k in ("views", "meta_views") if k in batch})
            return step(batch)

        run.model.training_step = spy_step
        return run

    def spy_train_step(run, epoch, step_in_epoch, raw, raw_meta=None):
        seen["train"] += raw["video_idx"].tolist()
        seen["meta"].append(None if raw_meta is None else raw_meta["video_idx"].tolist())
        return train_step(run, epoch, step_in_epoch, raw, raw_meta)

    monkeypatch.setattr(train, "_set_up", spy_set_up)
    monkeypatch.setattr(train, "_train_step", spy_train_step)
    return seen


def test_meta_batches_come_only_from_held_out_videos(toy_dataset, tmp_path, monkeypatch):
    seen = _spy_runs(monkeypatch)
    out = tmp_path / "meta"
    pretrain("meta_uscl", [toy_dataset], out, [TINY, {"epochs": 2}], device="cpu", progress=False)
    run = seen["runs"][0]
    train_v, val_v, meta_v = (set(ds.indices.tolist()) for ds in (run.train_set, run.val_set, run.meta_set))
    patients = run.pool.table["patient_id"].to_numpy()
    assert meta_v and val_v and not meta_v & (train_v | val_v)
    assert not {patients[v] for v in meta_v} & {patients[v] for v in train_v | val_v}  # grouped by patient
    # the held-out videos of the plain split are the meta videos plus the validation videos
    pool = PretrainPool([toy_dataset], 0.0, 0)
    plain_train, plain_val = pool.split(0.25, 0)
    assert train_v == set(plain_train.tolist()) and meta_v | val_v == set(plain_val.tolist())
    drawn = [v for batch in seen["meta"] for v in batch]
    assert len(seen["meta"]) == 2 * run.steps_per_epoch and set(drawn) == meta_v
    assert all(len(set(b)) == len(b) == min(4, len(meta_v)) for b in seen["meta"])  # no video twice in a batch
    assert set(seen["train"]) <= train_v
    for batch in seen["steps"]:
        views, meta_views = batch["views"], batch["meta_views"]
        assert len(meta_views) == 2 and meta_views[0].shape == (len(meta_v), 3, 32, 32)
        assert not torch.equal(meta_views[0], meta_views[1])  # two augmentations of one frame
        assert views[0].shape[0] == 4
    log = json.loads((out / "config.json").read_text())
    assert (log["n_train_videos"], log["n_val_videos"], log["n_meta_videos"]) == (len(train_v), len(val_v), len(meta_v))
    import pandas as pd

    assert pd.read_csv(out / "train_log.csv")["meta_held_out"].tolist() == [1.0, 1.0]


def test_meta_batches_resume_exactly_whatever_the_workers(toy_dataset, tmp_path, monkeypatch):
    """Straight with a loader worker (persistent, meta loader included) against killed after epoch
    2 and resumed without one: bitwise the same weights (num_workers is not bound)."""
    from test_train import Killed, stop_after

    overrides = [TINY, {"export": "last", "epochs": 3}]
    pretrain("meta_uscl", [toy_dataset], tmp_path / "a", overrides + [{"num_workers": 2}], device="cpu",
             progress=False)
    with monkeypatch.context() as m:
        stop_after(m, 2)
        with pytest.raises(Killed):
            pretrain("meta_uscl", [toy_dataset], tmp_path / "b", overrides, device="cpu", progress=False)
    pretrain("meta_uscl", [toy_dataset], tmp_path / "b", overrides, device="cpu", progress=False)
    a, b = (torch.load(tmp_path / r / "last.pt", weights_only=True) for r in ("a", "b"))
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), f"{k} differs after resume"
    for key in ("loss", "meta_loss", "mean_weight", "val_loss"):
        assert [r[key] for r in a["log"]] == [r[key] for r in b["log"]], key


def test_a_method_without_the_hook_gets_no_meta_batches(toy_dataset, tmp_path, monkeypatch):
    seen = _spy_runs(monkeypatch)
    pretrain("simclr", [toy_dataset], tmp_path / "s", [TINY, {"epochs": 1}], device="cpu", progress=False)
    pretrain("meta_uscl", [toy_dataset], tmp_path / "m", [TINY, {"epochs": 1, "params": {"meta": False}}],
             device="cpu", progress=False)  # the PPI-only ablation has no meta step
    _, plain_val = PretrainPool([toy_dataset], 0.0, 0).split(0.25, 0)
    for run in seen["runs"]:
        assert run.meta_loader is None and run.meta_set is None
        assert run.val_set.indices.tolist() == plain_val.tolist()  # the whole held-out set validates
    assert seen["meta"] and all(m is None for m in seen["meta"])
    assert seen["steps"] and all("meta_views" not in s for s in seen["steps"])
    assert "n_meta_videos" not in json.loads((tmp_path / "s" / "config.json").read_text())


def test_too_few_held_out_patients_for_a_meta_split(toy_dataset, tmp_path):
    with pytest.raises(MetaSplitError, match=r"meta_uscl: the held-out videos \(2\) come from 1 patient\(s\); a meta "
                                             r"step needs 2 or more .* raise val_fraction"):
        pretrain("meta_uscl", [toy_dataset], tmp_path / "x", [TINY, {"epochs": 1, "val_fraction": 0.1}],
                 device="cpu", progress=False)


@pytest.mark.parametrize("world", [1, 2])
def test_cycling_batches_cover_the_videos_without_repeats_in_a_batch(world):
    n, seed, batch, steps = 7, 3, 3 // world, 5
    shards = []
    for rank in range(world):
        order = CyclingBatches(n, seed, batch, steps, rank, world)
        order.set_epoch(4)
        batches = list(order)
        assert len(batches) == len(order) == steps
        for b in batches:
            assert len({i for _, _, i in b}) == len(b) == batch  # no video twice in a batch
            assert {e for e, _, _ in b} == {4}
        # a cycle is this rank's slice of the permutation [seed, epoch, cycle, 7], in whole batches
        cycle = np.random.default_rng([seed, 4, 0, 7]).permutation(n)[: n // world * world][rank::world]
        assert [i for b in batches for _, c, i in b if c == 0] == cycle[: len(cycle) // batch * batch].tolist()
        assert {c for b in batches for _, c, _ in b} == ({0, 1, 2} if world == 1 else {0, 1})  # cycle after cycle
        shards.append(batches)
    if world == 2:  # the ranks' videos of a cycle are disjoint
        for c in range(2):
            got = [{i for b in shard for _, cc, i in b if cc == c} for shard in shards]
            assert got[0] and got[1] and not got[0] & got[1]
    again = CyclingBatches(n, seed, batch, steps, 0, world)
    again.set_epoch(4)
    assert list(again) == shards[0]  # a function of (seed, epoch): a resumed run draws the same
    again.set_epoch(5)
    assert list(again) != shards[0]
    with pytest.raises(ValueError, match="a batch of 8 from 7 videos"):
        CyclingBatches(7, 0, 8, 1)

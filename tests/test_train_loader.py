"""The pretraining loader: one DataLoader per split for the whole run (persistent workers), items
keyed (epoch, i), frames read with StandardDataset.read_frames; batches equal to the per-epoch
definition (seeded order [seed, epoch, 7], frames drawn from [seed, epoch, video]) on every
epoch and worker count (issue 15 item 3)."""

from __future__ import annotations

import hashlib
import multiprocessing

import numpy as np
import pytest
import torch
from conftest import write_pattern_dataset
from torch.utils.data.dataloader import default_collate

from hico.data.pairs import build_sampler
from hico.data.transforms import resize_square
from hico.train import EpochOrder, PretrainPool, VideoSampleDataset, pretrain, sample_loader

#: UCL's curriculum shrinks its negative bands from the first epoch on (shrink_from 0), so an item
#: depends on the epoch's progress as well as on its seed
UCL_CURRICULUM = {"name": "ucl_hard_negatives", "positive_window": 1, "shrink_from": 0.0}
TINY = {"image_size": 32, "batch_size": 4, "pretrained": False, "val_fraction": 0.25, "export": "last"}


@pytest.fixture
def long_videos(tmp_path):
    return write_pattern_dataset(tmp_path, "toy16", n_patients=9, videos=2, frames=16, size=40)


def reference_epoch(pool, indices, sampler, size, seed, epoch, epochs, batch, redraw=True, shuffle=True):
    """The batches of one epoch as the loop defined them before the run-long loader (written out
    plainly: a DataFrame row and a memory map per item, the sampler told the progress first)."""
    n = len(indices)
    order = np.random.default_rng([seed, epoch, 7]).permutation(n) if shuffle else np.arange(n)
    if hasattr(sampler, "set_progress"):
        sampler.set_progress(epoch / epochs)
    items = []
    for i in order:
        row = pool.table.iloc[int(indices[i])]
        rng = np.random.default_rng([seed, epoch if redraw else 0, int(indices[i])])
        frames = pool.datasets[int(row["dataset"])].frames(row["video_id"])
        idx, extras = sampler.choose(int(frames.shape[0]), rng)
        picked = torch.from_numpy(np.stack([np.asarray(frames[j]) for j in idx]))
        items.append({"frames": resize_square(picked, size),
                      "extras": {k: torch.tensor(v, dtype=torch.float32) for k, v in extras.items()},
                      "video_idx": torch.tensor(int(indices[i])), "labels": torch.tensor(int(row["train_label"]))})
    stop = n // batch * batch if shuffle else n
    return [default_collate(items[b:b + batch]) for b in range(0, stop, batch)]


def _assert_same_batches(got, expected):
    assert len(got) == len(expected)
    for a, b in zip(got, expected):
        for k in ("frames", "video_idx", "labels"):
            assert torch.equal(a[k], b[k]), k
        assert a["extras"].keys() == b["extras"].keys()
        for k in a["extras"]:
            assert torch.equal(a["extras"][k], b["extras"][k]), k


@pytest.mark.parametrize("workers", [0, 1])
@pytest.mark.parametrize("spec", [UCL_CURRICULUM, {"name": "three_frame_mixup", "beta": 0.5}])
def test_the_run_long_loader_gives_each_epochs_batches(long_videos, workers, spec):
    pool = PretrainPool([long_videos], 0.5, 0)
    train_idx, _ = pool.split(0.25, 0)
    epochs, seed, batch, size = 4, 3, 4, 32
    sampler = build_sampler(spec)
    loader = sample_loader(VideoSampleDataset(pool, train_idx, sampler, size, seed, epochs), seed, True, batch,
                           workers, pin=False)
    assert loader.persistent_workers == (workers > 0)
    firsts = set()
    for epoch in range(epochs):
        loader.sampler.set_epoch(epoch)
        got = list(loader)
        _assert_same_batches(got, reference_epoch(pool, train_idx, build_sampler(spec), size, seed, epoch, epochs,
                                                  batch))
        firsts.add(got[0]["frames"].numpy().tobytes())
    assert len(firsts) == epochs  # the epochs really differ, so the equality above is not vacuous


def test_validation_items_keep_their_draw_and_follow_the_progress(long_videos):
    pool = PretrainPool([long_videos], 0.0, 0)
    _, val_idx = pool.split(0.25, 0)
    sampler = build_sampler(UCL_CURRICULUM)
    loader = sample_loader(VideoSampleDataset(pool, val_idx, sampler, 32, 1, 4, redraw_per_epoch=False), 0, False,
                           4, 1, pin=False)
    for epoch in (0, 3):
        loader.sampler.set_epoch(epoch)
        expected = reference_epoch(pool, val_idx, build_sampler(UCL_CURRICULUM), 32, 1, epoch, 4, 4,
                                   redraw=False, shuffle=False)
        _assert_same_batches(list(loader), expected)


def test_ddp_ranks_take_disjoint_slices_of_the_epochs_order():
    n, seed, world = 11, 5, 3
    shards = []
    for rank in range(world):
        order = EpochOrder(n, seed, True, rank, world)
        order.set_epoch(2)
        keys = list(order)
        assert len(keys) == len(order) == n // world and {e for e, _ in keys} == {2}
        shards.append([i for _, i in keys])
    full = np.random.default_rng([seed, 2, 7]).permutation(n)[: n // world * world]
    assert [x for rank in range(world) for x in shards[rank]] != list(full)  # interleaved, not blocks
    for rank in range(world):
        assert shards[rank] == list(full[rank::world])
    assert sorted(sum(shards, [])) == sorted(full.tolist())


def _digest(state_dict):
    h = hashlib.sha256()
    for k in sorted(state_dict):
        h.update(k.encode() + state_dict[k].contiguous().numpy().tobytes())
    return h.hexdigest()


def test_loader_workers_do_not_change_the_weights(long_videos, tmp_path):
    """UCL's curriculum sampler runs in the workers: a persistent worker must see each epoch's
    progress (it travels in the item's key), or epoch 2's negatives and so the weights differ."""
    runs = {}
    for workers in (0, 2):  # 2 is one worker on a CPU (hico.train)
        out = tmp_path / f"w{workers}"
        pretrain("ucl", [long_videos], out, [TINY, {"epochs": 2, "num_workers": workers,
                                                     "sampler": UCL_CURRICULUM}], device="cpu", progress=False)
        runs[workers] = torch.load(out / "last.pt", weights_only=True)
    assert _digest(runs[0]["model"]) == _digest(runs[2]["model"])
    assert [r["loss"] for r in runs[0]["log"]] == [r["loss"] for r in runs[2]["log"]]
    assert not multiprocessing.active_children(), "a loader worker outlived the run"


def test_no_loader_worker_outlives_a_failed_run(toy_dataset, tmp_path, monkeypatch):
    import hico.train as train

    def diverge(run, epoch, step_in_epoch, raw, raw_meta=None):
        assert multiprocessing.active_children(), "the loader should be running a worker here"
        raise train.DivergenceError("stop")

    monkeypatch.setattr(train, "_train_step", diverge)
    with pytest.raises(train.DivergenceError) as failed:
        pretrain("simclr", [toy_dataset], tmp_path / "x", [TINY, {"epochs": 1, "num_workers": 1}], device="cpu",
                 progress=False)
    assert failed.value.__traceback__ is not None  # the traceback (and its frames) are still alive here
    assert not multiprocessing.active_children(), "a loader worker outlived the failed run"

"""The shared pretraining loop: every method trains through this one function.

One "epoch" draws one sample per training video, as the USCL/HiCo/Meta-USCL loaders do
(their ``__len__`` is the number of videos); ``val_fraction`` of the videos (grouped by
patient) are held out for a validation loss that picks the exported checkpoint
(released: 20 %, lowest validation contrastive loss -> ``best_model.pth``). A method with a meta
step (:meth:`~hico.methods.base.PretrainMethod.meta_sampler`, Meta-USCL) gets half of those
patients' videos for its meta batches, one batch per step, and the other half validates.

Speed: uint8 frames cross the loader (one DataLoader per split for the whole run, persistent
workers, only the chosen frames read; ``bench/loader.py`` measures it against the step); augmentation and view mixing run on the training
device; one forward per view; bf16 autocast and channels_last on CUDA and on CPUs with native
bf16 (``cpu_amp``; its speed against fp32 is measured in ``bench/README.md``); DDP under ``torchrun``
(the process group is set up whenever ``WORLD_SIZE`` is set, one process included).

Safety: ``last.pt`` (model, optimiser, epoch, best validation loss, the log rows and the run's
binding) is written atomically after every epoch and resumed from automatically, but only by a
run of the same config and data (:mod:`hico.run_folder`; another one is an error, or with
``restart_on_mismatch`` a fresh start); per-sample randomness is a function of (seed, epoch,
video), so a resumed run redraws exactly what an uninterrupted one would, and ``train_log.csv``
is rebuilt from ``last.pt``. One process trains in a folder at a time (a lock file). Every
parameter and buffer is checked for finiteness at the end of each epoch and before each export.

Logs: ``train_log.csv`` always; TensorBoard and MLflow as well when the config's ``logger`` names
them (:mod:`hico.trackers`).

Steps: :func:`pretrain` is ``_bind_folder`` -> ``_set_up`` -> ``_resume`` -> (``_train_epoch``
-> ``_end_epoch``) per epoch -> ``_export``, sharing one :class:`PretrainRun`.
"""

from __future__ import annotations

import contextlib
import csv
import io
import itertools
import logging
import math
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, Sampler

from hico import layout
from hico.config import PretrainConfig, resolve_pretrain_config
from hico.data.folds import inner_validation
from hico.data.pairs import ViewSampler, build_sampler
from hico.data.standard import StandardDataset, load_dataset
from hico.data.transforms import AugmentConfig, FrameAugment, resize_square
from hico.device import resolve_device
from hico.errors import HicoError
from hico.io import atomic_torch_save, atomic_write_json, atomic_write_text
from hico.methods.base import PretrainMethod, build_method
from hico.models.backbone import save_encoder
from hico.precision import bf16_autocast_enabled
from hico.provenance import provenance
from hico.run_folder import (
    RunMismatchError,
    binding_hash,
    clear_run,
    folder_differences,
    hold_run_folder,
    mismatch_message,
    run_binding,
)
from hico.trackers import RunTrackers, open_run_trackers
from hico.trackers import check_available as check_trackers

log = logging.getLogger(__name__)


class PretrainPool:
    """The union of one or more standard datasets as a flat list of videos.

    Labels live in a joint space ``<dataset>/<class>`` (HiCo's 12-way US-4 map is the same idea);
    ``label_rate`` of the videos keep theirs (seeded), the rest get -1.
    """

    def __init__(self, dataset_dirs: list[str | Path], label_rate: float = 0.0, seed: int = 0):
        if not dataset_dirs:
            raise ValueError("pretraining needs at least one dataset folder")
        self.datasets: list[StandardDataset] = [load_dataset(d) for d in dataset_dirs]
        rows, self.class_names = [], []
        for di, ds in enumerate(self.datasets):
            offset = len(self.class_names)
            self.class_names += [f"{ds.name}/{c}" for c in ds.classes]
            m = ds.manifest
            rows.append(
                pd.DataFrame(
                    {
                        "dataset": di,
                        "video_id": m["video_id"].to_numpy(),
                        "patient_id": [f"{ds.name}/{p}" for p in m["patient_id"]],
                        "n_frames": m["n_frames"].to_numpy(),
                        "label": m["label"].to_numpy() + offset,
                        "source_sha256": m["source_sha256"].to_numpy(),
                    }
                )
            )
        self.table = pd.concat(rows, ignore_index=True)
        rng = np.random.default_rng(seed)
        keep = rng.random(len(self.table)) < label_rate
        self.table["train_label"] = np.where(keep, self.table["label"], -1)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def split(self, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """Indices of training and validation videos, grouped by patient."""
        t = self.table.assign(video_id=[f"{d}:{v}" for d, v in zip(self.table["dataset"], self.table["video_id"])])
        if val_fraction <= 0 or t["patient_id"].nunique() < 2:
            return np.arange(len(t)), np.arange(0)
        val_ids = set(inner_validation(t, val_fraction, seed))
        is_val = t["video_id"].isin(val_ids).to_numpy()
        return np.flatnonzero(~is_val), np.flatnonzero(is_val)

    def split_held_out(self, held_out: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """The held-out videos in two halves grouped by patient: (meta, validation) indices."""
        t = self.table.iloc[held_out]
        t = t.assign(video_id=[f"{d}:{v}" for d, v in zip(t["dataset"], t["video_id"])])
        if t["patient_id"].nunique() < 2:
            raise MetaSplitError(f"the held-out videos ({len(t)}) come from {t['patient_id'].nunique()} "
                                 "patient(s); a meta step needs 2 or more (one part for its batches, one for "
                                 "the validation loss): raise val_fraction or add videos")
        is_meta = t["video_id"].isin(set(inner_validation(t, 0.5, seed))).to_numpy()
        return np.asarray(held_out)[is_meta], np.asarray(held_out)[~is_meta]


class MetaSplitError(HicoError, ValueError):
    """A method's meta step cannot have held-out videos of its own."""


class VideoSampleDataset(Dataset):
    """One item per video: the sampler's frames (uint8 ``[k, S, S]``) and extras.

    An item is keyed ``(epoch, i)`` (:class:`EpochOrder`; more leading keys, e.g.
    ``(epoch, cycle, i)``, draw anew per value), so a DataLoader's persistent workers, whose
    dataset copies never see :meth:`set_epoch`, draw what the epoch asks for; a plain ``i`` uses
    the epoch of :meth:`set_epoch`. The frames are drawn from ``[seed, epoch, video]``
    (``redraw_per_epoch=False``: ``[seed, 0, video]`` every epoch, the validation pairs).
    A sampler with ``set_progress`` (UCL's curriculum) is told ``epoch / epochs`` before it
    chooses, here in the worker, since the loop's call reaches only the main process's copy.
    """

    def __init__(self, pool: PretrainPool, indices: np.ndarray, sampler: ViewSampler, image_size: int, seed: int,
                 epochs: int = 1, redraw_per_epoch: bool = True):
        self.pool, self.indices, self.sampler = pool, np.asarray(indices, dtype=np.int64), sampler
        self.image_size, self.seed, self.epoch = image_size, seed, 0
        self.epochs, self.redraw_per_epoch = max(1, int(epochs)), redraw_per_epoch
        t = pool.table  # numpy columns once: a DataFrame row per item costs more than the read
        self.dataset_of, self.video_id_of, self.n_frames_of, self.label_of = (
            t[c].to_numpy()[self.indices] for c in ("dataset", "video_id", "n_frames", "train_label"))

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, key: int | tuple[int, ...]) -> dict[str, Any]:
        draw = tuple(int(k) for k in key[:-1]) if isinstance(key, tuple) else (self.epoch,)
        i = int(key[-1]) if isinstance(key, tuple) else int(key)
        v = int(self.indices[i])
        if hasattr(self.sampler, "set_progress"):
            self.sampler.set_progress(draw[0] / self.epochs)
        rng = np.random.default_rng([self.seed, *(draw if self.redraw_per_epoch else (0,)), v])
        idx, extras = self.sampler.choose(int(self.n_frames_of[i]), rng)
        picked = self.pool.datasets[int(self.dataset_of[i])].read_frames(self.video_id_of[i], idx)
        return {
            "frames": resize_square(torch.from_numpy(picked), self.image_size),
            "extras": {k: torch.tensor(x, dtype=torch.float32) for k, x in extras.items()},
            "video_idx": torch.tensor(v),
            "labels": torch.tensor(int(self.label_of[i])),
        }


class EpochOrder(Sampler):
    """The keys ``(epoch, i)`` of an epoch's items on this rank: the seeded order
    ``[seed, epoch, 7]`` (``shuffle``) or ``0..n-1``; under DDP rank r takes ``[r::world]`` of
    the first ``n // world * world``. :meth:`set_epoch` picks the epoch."""

    def __init__(self, n: int, seed: int, shuffle: bool, rank: int = 0, world: int = 1):
        self.n, self.seed, self.shuffle, self.rank, self.world, self.epoch = n, seed, shuffle, rank, world, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def order(self) -> np.ndarray:
        n, world = self.n, self.world
        order = np.random.default_rng([self.seed, self.epoch, 7]).permutation(n) if self.shuffle else np.arange(n)
        return order[: n // world * world][self.rank::world] if world > 1 else order

    def __len__(self) -> int:
        return self.n // self.world if self.world > 1 else self.n

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return iter([(self.epoch, int(i)) for i in self.order()])


class CyclingBatches(Sampler):
    """``steps`` batches an epoch of ``batch_size`` keys ``(epoch, cycle, i)``: the videos in the
    seeded order ``[seed, epoch, cycle, 7]``, one cycle after another (a cycle's incomplete last
    batch is dropped, so no video is twice in a batch); under DDP rank r takes ``[r::world]`` of
    each cycle. A function of (seed, epoch) alone, so a resumed run draws the same batches."""

    def __init__(self, n: int, seed: int, batch_size: int, steps: int, rank: int = 0, world: int = 1):
        if not 1 <= batch_size <= n // world:
            raise ValueError(f"a batch of {batch_size} from {n} videos on {world} process(es)")
        self.n, self.seed, self.batch_size, self.steps, self.rank, self.world = n, seed, batch_size, steps, rank, world
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.steps

    def __iter__(self) -> Iterator[list[tuple[int, int, int]]]:
        batches: list[list[tuple[int, int, int]]] = []
        n, world, b, cycle = self.n, self.world, self.batch_size, 0
        while len(batches) < self.steps:
            order = np.random.default_rng([self.seed, self.epoch, cycle, 7]).permutation(n)
            order = order[: n // world * world][self.rank::world]
            batches += [[(self.epoch, cycle, int(i)) for i in order[k:k + b]] for k in range(0, len(order) - b + 1, b)]
            cycle += 1
        return iter(batches[: self.steps])


def sample_loader(ds: VideoSampleDataset, seed: int, shuffle: bool, batch_size: int, workers: int, pin: bool,
                  rank: int = 0, world: int = 1) -> DataLoader:
    """The DataLoader of one split for the whole run: ``loader.sampler.set_epoch(e)`` before each
    pass. Its workers start once (``persistent_workers``); its own generator seeds them, so the
    global torch RNG is not drawn from per epoch."""
    return DataLoader(ds, batch_size=batch_size, sampler=EpochOrder(len(ds), seed, shuffle, rank, world),
                      drop_last=shuffle, num_workers=workers, pin_memory=pin, persistent_workers=workers > 0,
                      generator=torch.Generator().manual_seed(seed))


class DivergenceError(HicoError, FloatingPointError):
    """Training diverged: a loss, a parameter or a buffer is not finite."""


def non_finite_tensors(named: Iterable[tuple[str, torch.Tensor]]) -> list[str]:
    """``"<name> (<k> of <n> values)"`` for each floating tensor holding a NaN or an infinity."""
    bad = []
    for name, t in named:
        if t.is_floating_point() or t.is_complex():
            k = int((~torch.isfinite(t)).sum())
            if k:
                bad.append(f"{name} ({k} of {t.numel()} values)")
    return bad


def assert_finite(named: Iterable[tuple[str, torch.Tensor]], where: str, hint: str = "") -> None:
    """:class:`DivergenceError` unless every parameter and buffer in ``named`` is finite (a
    finite loss does not prove it: BatchNorm's running_var can overflow while the batch
    statistics keep the loss finite)."""
    bad = non_finite_tensors(named)
    if bad:
        raise DivergenceError(f"{where}: {len(bad)} parameters or buffers are not finite, first "
                              f"{', '.join(bad[:3])}; nothing was exported{hint}")


def use_amp(cfg: PretrainConfig, dev: torch.device) -> bool:
    return bf16_autocast_enabled(dev, cuda_amp=cfg.amp, cpu_amp=cfg.cpu_amp)


def _distributed() -> tuple[int, int, int]:
    """(rank, world_size, local_rank); initialises the process group under torchrun."""
    if "WORLD_SIZE" not in os.environ:
        return 0, 1, 0
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
    return dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0))


def build_optimizer(method: PretrainMethod, cfg: PretrainConfig, device: torch.device) -> torch.optim.Optimizer:
    o = cfg.optimizer
    lr = o.lr * (cfg.batch_size / 256 if o.scale_lr_with_batch else 1.0)
    groups = method.param_groups()
    if o.name in ("adam", "adamw"):
        cls = torch.optim.Adam if o.name == "adam" else torch.optim.AdamW
        try:  # fused kernels: CUDA, and CPU from torch 2.4 (10x faster on HiCo's 273 M head weights)
            return cls(groups, lr=lr, betas=o.betas, weight_decay=o.weight_decay, fused=True)
        except (RuntimeError, TypeError):
            return cls(groups, lr=lr, betas=o.betas, weight_decay=o.weight_decay)
    if o.name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=o.momentum, weight_decay=o.weight_decay)
    raise ValueError(f"{cfg.name}: unknown optimizer {o.name!r}; use adam, adamw or sgd")


def lr_factor(cfg: PretrainConfig, epoch: int, step_in_epoch: int, steps_per_epoch: int) -> float:
    """Multiplier of the base learning rate; every length is a share of ``cfg.epochs``.

    ``hold_fraction`` reproduces the released HiCo/USCL quirk relative to the budget: the LR is
    constant for ``round(hold_fraction * epochs)`` epochs, then ``CosineAnnealingLR(T_max =
    t_max_fraction * epochs)`` is stepped once per epoch from there, so it never reaches 0
    (released: 10 of 300 epochs held, T_max = 300, ≈ 9.9e-7 at epoch 299 for lr 3e-4).
    Otherwise a per-step cosine after an optional linear warm-up of ``warmup_fraction * epochs``.
    """
    s = cfg.schedule
    if s.name == "constant":
        return 1.0
    if s.name != "cosine":
        raise ValueError(f"{cfg.name}: unknown schedule {s.name!r}; use cosine or constant")
    floor = s.min_lr / cfg.optimizer.lr if cfg.optimizer.lr else 0.0
    hold = round(s.hold_fraction * cfg.epochs)
    if s.hold_fraction > 0:
        t = max(0, epoch - hold)
        t_max = s.t_max_fraction * cfg.epochs if s.t_max_fraction else max(1, cfg.epochs - hold)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t / t_max))
    warmup = s.warmup_fraction * cfg.epochs
    e = epoch + step_in_epoch / max(1, steps_per_epoch)
    if e < warmup:
        return (e + 1 / max(1, steps_per_epoch)) / warmup
    t_max = s.t_max_fraction * cfg.epochs if s.t_max_fraction else max(1e-8, cfg.epochs - warmup)
    t = min(1.0, (e - warmup) / t_max)
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t))


def _to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {
        "frames": batch["frames"].to(device, non_blocking=True),
        "extras": {k: v.to(device, non_blocking=True) for k, v in batch["extras"].items()},
        "video_idx": batch["video_idx"].to(device, non_blocking=True),
        "labels": batch["labels"].to(device, non_blocking=True),
    }


def _views_batch(sampler, augment, batch, generator, channels_last: bool, val: bool = False) -> dict[str, Any]:
    make = sampler.make_val_views if val else sampler.make_views
    views, weights = make(batch["frames"], batch["extras"], augment, generator)
    if channels_last:
        views = [v.contiguous(memory_format=torch.channels_last) for v in views]
    if weights is None:
        weights = torch.ones(batch["frames"].shape[0], device=batch["frames"].device)
    return {"views": views, "video_idx": batch["video_idx"], "labels": batch["labels"], "weights": weights}


def _write_log(path: Path, rows: list[dict[str, Any]]) -> None:
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys)
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(path, buf.getvalue())


def _run_identity(run_name: str | None, method: str, seed: int, datasets: list[str | Path],
                  labelled_fraction: float) -> dict[str, Any]:
    """The head of a run's ``config.json`` (contract 1), for trained runs and controls alike."""
    return {"run_name": run_name or method, "method": method, "seed": int(seed),
            "datasets": [str(d) for d in datasets], "labelled_fraction": float(labelled_fraction)}


def _encoder_meta(run_info: dict[str, Any]) -> dict[str, Any]:
    """What every encoder file of a run records about the run (each export adds its epoch).
    ``method`` holds the run name (as before ``run_name`` existed), ``base_method`` the method."""
    return {"method": run_info["run_name"], "run_name": run_info["run_name"], "base_method": run_info["method"],
            **{k: run_info[k] for k in ("seed", "labelled_fraction", "git_sha", "config_hash")}}


def labelled_fraction(model: PretrainMethod, pool: PretrainPool, train_idx: np.ndarray) -> float:
    """Share of the pool's training videos whose label the method sees (0 if it reads none)."""
    if not model.sees_labels() or len(train_idx) == 0:
        return 0.0
    return float((pool.table["train_label"].to_numpy()[train_idx] >= 0).mean())


@dataclass
class PretrainRun:
    """One pretraining run as its steps share it: built by :func:`_set_up`, advanced by
    :func:`_resume`, :func:`_train_epoch` and :func:`_end_epoch`, exported by :func:`_export`."""

    cfg: PretrainConfig
    method: str
    out_dir: Path
    dev: torch.device
    rank: int
    world: int
    progress: bool | None
    pool: PretrainPool
    model: PretrainMethod
    sampler: ViewSampler
    augment: FrameAugment
    amp: bool
    channels_last: bool
    optimizer: torch.optim.Optimizer
    train_set: VideoSampleDataset
    val_set: VideoSampleDataset
    per_rank_batch: int
    steps_per_epoch: int
    workers: int
    run_info: dict[str, Any]
    meta: dict[str, Any]  # the encoder meta, built once
    binding: dict[str, Any]  # what the run is bound to (hico.run_folder.run_binding)
    step_model: torch.nn.Module | None = None  # the model, or its DDP wrapper (after _resume)
    base_lrs: list[float] = field(default_factory=list)
    generator: torch.Generator | None = None
    start_epoch: int = 0
    best_val: float = math.inf
    log_rows: list[dict[str, Any]] = field(default_factory=list)
    train_loader: DataLoader | None = None  # one per split for the whole run (workers start once)
    val_loader: DataLoader | None = None
    # a meta step's batches (PretrainMethod.meta_sampler): held-out videos that are not validated on
    meta_sampler: ViewSampler | None = None
    meta_set: VideoSampleDataset | None = None
    meta_loader: DataLoader | None = None
    meta_generator: torch.Generator | None = None
    trackers: RunTrackers | None = None  # TensorBoard / MLflow (logger), rank 0 only; train_log.csv always

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def total_steps(self) -> int:
        return self.steps_per_epoch * self.cfg.epochs

    def loader(self, ds: VideoSampleDataset, shuffle: bool) -> DataLoader:
        """``ds``'s batches on this rank for the whole run (:func:`sample_loader`)."""
        return sample_loader(ds, self.cfg.seed, shuffle, self.per_rank_batch, self.workers, self.dev.type == "cuda",
                             self.rank, self.world)

    def close(self, failed: bool = False) -> None:
        """End the trackers' runs, and the loaders' persistent workers now, also when a step raised
        (a traceback keeps the epoch's frame, and with it the loader, alive until it is handled)."""
        if self.trackers is not None:
            self.trackers.close(failed)
            self.trackers = None
        for loader in (self.train_loader, self.val_loader, self.meta_loader):
            workers = getattr(loader, "_iterator", None)  # torch's DataLoader keeps its live iterator there
            if hasattr(workers, "_shutdown_workers"):
                workers._shutdown_workers()
        self.train_loader = self.val_loader = self.meta_loader = None


def _training_device(device: str | None) -> torch.device:
    dev = resolve_device(device)  # auto: cuda:<LOCAL_RANK> when torch sees a GPU
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    return dev


def _build_model(method: str, cfg: PretrainConfig, pool: PretrainPool, n_train: int,
                 dev: torch.device) -> PretrainMethod:
    model = build_method(method, cfg.params, backbone=cfg.backbone, pretrained=cfg.pretrained,
                         weights=cfg.weights, num_classes=pool.num_classes, image_size=cfg.image_size).to(dev)
    model.fit_to_data(n_train, cfg.batch_size)
    return model


def step_parts(model: PretrainMethod, cfg: PretrainConfig, dev: torch.device):
    """What a training step needs besides the model, set up as the loop sets it up: the sampler
    (built after the model, because importing a method's module may register one), the
    augmentation, bf16 autocast, channels_last (on CUDA, or on a CPU with autocast) and the
    optimiser. Returns ``(model, sampler, augment, amp, channels_last, optimizer)``."""
    sampler = build_sampler(cfg.sampler)
    augment = FrameAugment(AugmentConfig.from_dict(cfg.augment, cfg.image_size))
    amp = use_amp(cfg, dev)
    channels_last = cfg.channels_last and (dev.type == "cuda" or amp)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model, sampler, augment, amp, channels_last, build_optimizer(model, cfg, dev)


def _pretrain_config(method: str, overrides: list[dict[str, Any]] | None) -> PretrainConfig:
    cfg = resolve_pretrain_config(method, *(overrides or []))
    if not cfg.requires_pretraining:
        raise ValueError(f"method {method} is a control (requires_pretraining: false); it is not pretrained")
    return cfg


def _barrier(world: int) -> None:
    if world > 1:
        dist.barrier()


def _bind_folder(out_dir: Path, binding: dict[str, Any], cfg: PretrainConfig, rank: int, world: int,
                 restart_on_mismatch: bool) -> None:
    """Resume only the same run: another one in ``out_dir`` is an error, or with
    ``restart_on_mismatch`` cleared for a fresh start (``hico.run_folder``)."""
    differences = folder_differences(out_dir, binding, cfg.checkpoint_epochs)
    if differences and not restart_on_mismatch:
        raise RunMismatchError(mismatch_message(out_dir, differences))
    _barrier(world)  # every rank has looked before rank 0 removes anything
    if rank == 0:
        if differences or not (out_dir / layout.RESUME_STATE).exists():
            removed = clear_run(out_dir)  # nothing of another run (or of an unfinished first epoch) stays
            if differences:
                log.info(f"[pretrain] {cfg.name}: {out_dir} held another run (differs: {'; '.join(differences[:4])}); "
                         f"starting afresh, removed {', '.join(p.name for p in removed)}")
        else:
            for stale in out_dir.glob(".*.tmp"):  # a write cut short by a kill; the file it replaces is intact
                stale.unlink(missing_ok=True)
    _barrier(world)


def _set_up(cfg: PretrainConfig, dataset_dirs: list[str | Path], out_dir: Path, device: str | None,
            progress: bool | None, run_name: str | None, binding: dict[str, Any]) -> PretrainRun:
    """Device, pool, model, sampler, optimiser and datasets of a run (nothing loaded)."""
    method = cfg.name
    rank, world, local_rank = _distributed()
    dev = _training_device(device)
    torch.manual_seed(cfg.seed)
    pool = PretrainPool(dataset_dirs, cfg.label_rate, cfg.seed)
    train_idx, val_idx = pool.split(cfg.val_fraction, cfg.seed)
    model = _build_model(method, cfg, pool, len(train_idx), dev)
    meta_spec, meta_idx = model.meta_sampler(), np.arange(0)
    if meta_spec is not None:  # its own held-out videos: the validation loss stays on untouched ones
        try:
            meta_idx, val_idx = pool.split_held_out(val_idx, cfg.seed + 2)
        except MetaSplitError as e:
            raise MetaSplitError(f"{method}: {e}") from None
    model, sampler, augment, amp, channels_last, optimizer = step_parts(model, cfg, dev)
    train_set = VideoSampleDataset(pool, train_idx, sampler, cfg.image_size, cfg.seed, cfg.epochs)
    # the same validation pairs every epoch, so the losses are comparable
    val_set = VideoSampleDataset(pool, val_idx, sampler, cfg.image_size, cfg.seed + 1, cfg.epochs,
                                 redraw_per_epoch=False)
    per_rank_batch = max(1, cfg.batch_size // world)
    n_train = len(train_set) // world * world
    if n_train < per_rank_batch * world:
        raise ValueError(
            f"{method}: {len(train_set)} training videos are fewer than one batch of {cfg.batch_size}; "
            "lower batch_size or add videos"
        )
    run_info = {**_run_identity(run_name, method, cfg.seed, dataset_dirs, labelled_fraction(model, pool, train_idx)),
                "config": cfg.to_dict(), "world_size": world, "n_train_videos": len(train_idx),
                "n_val_videos": len(val_idx), **({"n_meta_videos": len(meta_idx)} if meta_spec is not None else {}),
                "classes": pool.class_names, "binding": binding,
                "binding_hash": binding_hash(binding), **provenance(cfg.to_dict(), cfg.seed, dev)}
    run = PretrainRun(
        cfg=cfg, method=method, out_dir=out_dir, dev=dev, rank=rank, world=world, progress=progress,
        pool=pool, model=model, sampler=sampler, augment=augment, amp=amp, channels_last=channels_last,
        optimizer=optimizer, base_lrs=[g["lr"] for g in optimizer.param_groups], train_set=train_set,
        val_set=val_set, per_rank_batch=per_rank_batch, steps_per_epoch=n_train // world // per_rank_batch,
        workers=cfg.num_workers if dev.type == "cuda" else min(cfg.num_workers, 1),
        run_info=run_info, meta=_encoder_meta(run_info), binding=binding,
    )
    run.train_loader, run.val_loader = run.loader(train_set, True), run.loader(val_set, False)
    if meta_spec is not None:
        _add_meta_batches(run, meta_spec, meta_idx)
    return run


def _add_meta_batches(run: PretrainRun, spec: str | dict[str, Any], meta_idx: np.ndarray) -> None:
    """The meta videos' sample set (seed + 2) and its loader: one batch per training step, of the
    per-rank batch size or all the meta videos a rank has, if fewer."""
    cfg = run.cfg
    run.meta_sampler = build_sampler(spec)
    run.meta_set = VideoSampleDataset(run.pool, meta_idx, run.meta_sampler, cfg.image_size, cfg.seed + 2, cfg.epochs)
    batch = min(run.per_rank_batch, len(meta_idx) // run.world)
    if batch < 2:
        raise MetaSplitError(f"{run.method}: {len(meta_idx)} meta videos on {run.world} process(es) make no batch of "
                             "2 (a contrastive meta loss needs 2); raise val_fraction or add videos")
    order = CyclingBatches(len(meta_idx), cfg.seed + 2, batch, run.steps_per_epoch, run.rank, run.world)
    run.meta_loader = DataLoader(run.meta_set, batch_sampler=order, num_workers=run.workers,
                                 pin_memory=run.dev.type == "cuda", persistent_workers=run.workers > 0,
                                 generator=torch.Generator().manual_seed(cfg.seed + 2))
    run.meta_generator = torch.Generator(device=run.dev)


def _resume(run: PretrainRun) -> None:
    """Load ``last.pt`` when the folder has one; then wrap the model for DDP and record the run."""
    ckpt_path = run.out_dir / layout.RESUME_STATE
    if ckpt_path.exists():  # of this very run: _bind_folder has removed any other
        state = torch.load(ckpt_path, map_location=run.dev, weights_only=True)
        run.model.load_state_dict(state["model"])
        run.optimizer.load_state_dict(state["optimizer"])
        run.start_epoch, run.best_val = int(state["epoch"]) + 1, float(state["best_val"])
        run.log_rows = _logged_rows(run, state)
        if run.is_main:
            log.info(f"[pretrain] {run.method}: resuming from {ckpt_path} at epoch {run.start_epoch}")
            # Snakemake deletes an incomplete train_log.csv before it reruns the job
            if run.log_rows:
                _write_log(run.out_dir / layout.TRAIN_LOG, run.log_rows)
    run.step_model = run.model
    if run.world > 1:
        run.step_model = torch.nn.parallel.DistributedDataParallel(
            run.model, device_ids=[run.dev.index] if run.dev.type == "cuda" else None, find_unused_parameters=True
        )
    run.generator = torch.Generator(device=run.dev)
    if run.is_main:
        atomic_write_json(run.out_dir / layout.RUN_CONFIG, run.run_info)
        if any(name != "csv" for name in run.cfg.logger):
            run.trackers = open_run_trackers(run.cfg.logger, run.out_dir, run.run_info, run.cfg.epochs, run.log_rows)


def _logged_rows(run: PretrainRun, state: dict[str, Any]) -> list[dict[str, Any]]:
    """The log rows of the epochs ``last.pt`` holds: kept inside it (older resume states: from
    the CSV, which may have lost them)."""
    if "log" in state:
        return [dict(r) for r in state["log"]][: run.start_epoch]
    path = run.out_dir / layout.TRAIN_LOG
    rows = pd.read_csv(path).to_dict("records")[: run.start_epoch] if path.exists() else []
    return [{k: v.item() if hasattr(v, "item") else v for k, v in r.items()} for r in rows]


def _train_step(run: PretrainRun, epoch: int, step_in_epoch: int, raw: dict[str, Any],
                raw_meta: dict[str, Any] | None = None) -> tuple[dict[str, Any], dict]:
    """One optimiser step on one batch (and the meta step's batch, if any); returns the method's
    outputs and the views."""
    f = lr_factor(run.cfg, epoch, step_in_epoch, run.steps_per_epoch)
    for g, base in zip(run.optimizer.param_groups, run.base_lrs):
        g["lr"] = base if g.get("fix_lr") else base * f  # SimSiam keeps its predictor's lr
    batch = _to_device(raw, run.dev)
    with torch.autocast(run.dev.type, dtype=torch.bfloat16, enabled=run.amp):
        views = _views_batch(run.sampler, run.augment, batch, run.generator, run.channels_last)
        if raw_meta is not None:
            meta = _to_device(raw_meta, run.dev)
            views["meta_views"] = _views_batch(run.meta_sampler, run.augment, meta, run.meta_generator,
                                               run.channels_last)["views"]
        out = run.step_model(views)
    loss = out["loss"]
    if not torch.isfinite(loss.detach()):
        raise DivergenceError(f"{run.method}: loss is {loss.item()} at epoch {epoch} step {step_in_epoch}")
    run.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    run.optimizer.step()
    run.model.after_step((epoch * run.steps_per_epoch + step_in_epoch + 1) / max(1, run.total_steps))
    return out, views


def _train_epoch(run: PretrainRun, epoch: int) -> dict[str, Any]:
    """Train one epoch and validate: the epoch's log row."""
    from hico.progress import progress

    cfg, dev = run.cfg, run.dev
    run.model.train()
    run.train_loader.sampler.set_epoch(epoch)
    if hasattr(run.sampler, "set_progress"):  # curriculum samplers (UCL) follow training progress
        run.sampler.set_progress(epoch / cfg.epochs)
    run.generator.manual_seed(cfg.seed * 1_000_003 + epoch * 101 + run.rank)
    meta_batches: Iterable[dict[str, Any] | None] = itertools.repeat(None)
    if run.meta_loader is not None:
        run.meta_loader.batch_sampler.set_epoch(epoch)
        run.meta_generator.manual_seed((cfg.seed + 2) * 1_000_003 + epoch * 101 + run.rank)
        meta_batches = run.meta_loader
    sums: dict[str, float] = {}
    t0, n_images = time.perf_counter(), 0
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    bar = progress(run.train_loader, total=run.steps_per_epoch, desc=f"{run.method} epoch {epoch + 1}/{cfg.epochs}",
                   enabled=run.is_main if run.progress is None else run.progress)
    for step_in_epoch, (raw, raw_meta) in enumerate(zip(bar, meta_batches)):
        out, views = _train_step(run, epoch, step_in_epoch, raw, raw_meta)
        for k, v in out.items():
            sums[k] = sums.get(k, 0.0) + float(v.detach())
        n_images += sum(v.shape[0] for v in [*views["views"], *views.get("meta_views", [])]) * run.world
        bar.set_postfix(loss=f"{float(out['loss'].detach()):.4f}")
    elapsed = time.perf_counter() - t0
    row: dict[str, Any] = {"epoch": epoch + 1, "step": (epoch + 1) * run.steps_per_epoch,
                           "lr": run.optimizer.param_groups[0]["lr"]}
    row.update({k: v / max(1, run.steps_per_epoch) for k, v in sums.items()})
    row["val_loss"] = _validate(run, epoch)
    row.update(epoch_time_s=round(elapsed, 3), images_per_s=round(n_images / max(elapsed, 1e-9), 2),
               peak_mem_mb=round(torch.cuda.max_memory_allocated(dev) / 2**20, 1) if dev.type == "cuda" else float("nan"))
    return row


def _end_epoch(run: PretrainRun, epoch: int, row: dict[str, Any]) -> None:
    """Check the weights; log the epoch; keep the best and the requested encoders; write the resume state."""
    _assert_run_finite(run, run.model.state_dict().items(), f"at the end of epoch {epoch + 1}")
    run.log_rows.append(row)
    if not run.is_main:
        return
    meta = {**run.meta, "epoch": epoch + 1}
    if math.isfinite(row["val_loss"]) and row["val_loss"] < run.best_val:
        run.best_val = row["val_loss"]
        save_encoder(run.model.encoder(), run.out_dir / layout.BEST_ENCODER, {**meta, "val_loss": run.best_val})
    if epoch + 1 in run.cfg.checkpoint_epochs:
        save_encoder(run.model.encoder(), run.out_dir / layout.checkpoint_name(epoch + 1), meta)
    _write_log(run.out_dir / layout.TRAIN_LOG, run.log_rows)
    atomic_torch_save({"model": run.model.state_dict(), "optimizer": run.optimizer.state_dict(),
                       "epoch": epoch, "best_val": run.best_val, "binding": run.binding, "log": run.log_rows},
                      run.out_dir / layout.RESUME_STATE)
    if run.trackers is not None:  # after the resume state: a tracker never holds an epoch the run may redo
        run.trackers.log_epoch(row)
    log.info(f"[pretrain] {run.method} epoch {epoch + 1}/{run.cfg.epochs} loss {row.get('loss', float('nan')):.4f} "
             f"val {row['val_loss']:.4f} {row['images_per_s']:.1f} img/s")


def _assert_run_finite(run: PretrainRun, named: Iterable[tuple[str, torch.Tensor]], when: str) -> None:
    assert_finite(named, f"{run.method} diverged {when}",
                  f" ({layout.RESUME_STATE} keeps the last finite epoch, if any); lower optimizer.lr "
                  f"(now {run.cfg.optimizer.lr:g}) or check the data")


def _export(run: PretrainRun) -> Path:
    """``encoder.pt``: a copy of ``encoder_best.pt`` (``export: best``) or the last weights."""
    final, best = run.out_dir / layout.ENCODER, run.out_dir / layout.BEST_ENCODER
    if run.is_main:
        if run.cfg.export == "best" and best.exists():
            blob = torch.load(best, map_location="cpu", weights_only=True)
            # the run name is not bound (a label): a resumed run exports under its current one
            blob["meta"] = {**blob.get("meta", {}), **{k: run.meta[k] for k in ("method", "run_name")}}
            _assert_run_finite(run, blob["state_dict"].items(), f"in {best}")
            atomic_torch_save(blob, final)
        else:
            _assert_run_finite(run, run.model.encoder().state_dict().items(), "in its last weights")
            save_encoder(run.model.encoder(), final, {**run.meta, "epoch": run.cfg.epochs, "export": run.cfg.export})
    if run.world > 1:
        dist.barrier()
    return final


def pretrain(
    method: str,
    dataset_dirs: list[str | Path],
    out_dir: str | Path,
    overrides: list[dict[str, Any]] | None = None,
    device: str | None = None,
    progress: bool | None = None,
    run_name: str | None = None,
    restart_on_mismatch: bool = False,
) -> Path:
    """Pretrain ``method`` on the union of ``dataset_dirs``; returns the exported ``encoder.pt``.

    ``out_dir`` receives ``last.pt`` (resume state), ``encoder.pt`` (weights only),
    ``train_log.csv``, ``config.json`` and optionally ``encoder_epoch<k>.pt``. A run already in
    ``out_dir`` is resumed when it has the same binding (config and data, ``hico.run_folder``);
    another one is a :class:`~hico.run_folder.RunMismatchError`, or with
    ``restart_on_mismatch`` removed for a fresh start.
    """
    cfg = _pretrain_config(method, overrides)
    check_trackers(cfg.logger)  # a missing tracker package fails before anything trains
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rank, world, _ = _distributed()
    binding = run_binding(cfg.to_dict(), dataset_dirs, world)
    with hold_run_folder(out_dir) if rank == 0 else contextlib.nullcontext():  # one job's ranks share it
        _bind_folder(out_dir, binding, cfg, rank, world, restart_on_mismatch)
        run = _set_up(cfg, dataset_dirs, out_dir, device, progress, run_name, binding)
        failed = True
        try:
            _resume(run)
            for epoch in range(run.start_epoch, run.cfg.epochs):
                _end_epoch(run, epoch, _train_epoch(run, epoch))
            final = _export(run)
            failed = False
            return final
        finally:
            run.close(failed)


@torch.no_grad()
def _validate(run: PretrainRun, epoch: int) -> float:
    model, dev = run.model, run.dev
    if len(run.val_set) == 0:
        return float("nan")
    was_training = model.training
    model.eval()
    run.val_loader.sampler.set_epoch(epoch)  # the epoch's curriculum progress; the pairs stay the same
    gen = torch.Generator(device=dev)
    gen.manual_seed(run.cfg.seed + 12345)
    total, n = 0.0, 0
    for raw in run.val_loader:
        batch = _to_device(raw, dev)
        if batch["frames"].shape[0] < 2:
            continue
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=run.amp):
            views = _views_batch(run.sampler, run.augment, batch, gen, run.channels_last, val=True)
            out = model.validation_step(views)
        total += float(out["loss"]) * batch["frames"].shape[0]
        n += batch["frames"].shape[0]
    model.train(was_training)
    return total / n if n else float("nan")


def export_initial_encoder(method: str, out_dir: str | Path, overrides: list[dict[str, Any]] | None = None,
                           run_name: str | None = None) -> Path:
    """For controls (``requires_pretraining: false``): write the encoder as initialised
    (random with the run's seed, or ImageNet weights) so evaluation treats every row alike."""
    from hico.models.backbone import Backbone

    cfg = resolve_pretrain_config(method, *(overrides or []))
    if cfg.requires_pretraining:
        raise ValueError(f"method {method} requires pretraining; use pretrain()")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    backbone = Backbone(cfg.backbone, pretrained=cfg.pretrained, weights=cfg.weights, image_size=cfg.image_size)
    info = {**_run_identity(run_name, method, cfg.seed, [], 0.0), "config": cfg.to_dict(),
            **provenance(cfg.to_dict(), cfg.seed)}
    assert_finite(backbone.state_dict().items(), f"{method}: the initial encoder ({cfg.weights or cfg.backbone})")
    with hold_run_folder(out_dir):
        atomic_write_json(out_dir / layout.RUN_CONFIG, info)
        _write_log(out_dir / layout.TRAIN_LOG, [{"epoch": 0, "step": 0, "loss": float("nan"), "val_loss": float("nan")}])
        save_encoder(backbone, out_dir / layout.ENCODER, {**_encoder_meta(info), "epoch": 0, "export": "init"})
    return out_dir / layout.ENCODER

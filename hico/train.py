"""The shared pretraining loop: every method trains through this one function.

One "epoch" draws one sample per training video, as the USCL/HiCo/Meta-USCL loaders do
(their ``__len__`` is the number of videos); ``val_fraction`` of the videos (grouped by
patient) are held out for a validation loss that picks the exported checkpoint
(released: 20 %, lowest validation contrastive loss -> ``best_model.pth``).

Speed: uint8 frames cross the loader; augmentation and view mixing run on the training
device; one forward per view; bf16 autocast and channels_last on CUDA and on CPUs with native
bf16 (``cpu_amp``; its speed against fp32 is measured in ``bench/README.md``); DDP under ``torchrun``
(the process group is set up whenever ``WORLD_SIZE`` is set, one process included).

Safety: ``last.pt`` (model, optimiser, epoch, best validation loss) is written atomically
after every epoch and resumed from automatically; per-sample randomness is a function of
(seed, epoch, video), so a resumed run redraws exactly what an uninterrupted one would.
"""

from __future__ import annotations

import csv
import io
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset

from hico.config import PretrainConfig, resolve_pretrain_config
from hico.data.folds import inner_validation
from hico.data.pairs import ViewSampler, build_sampler
from hico.data.standard import StandardDataset, load_dataset
from hico.data.transforms import AugmentConfig, FrameAugment, resize_square
from hico.device import resolve_device
from hico.io import atomic_torch_save, atomic_write_json, atomic_write_text
from hico.methods.base import PretrainMethod, build_method
from hico.models.backbone import save_encoder
from hico.precision import bf16_autocast_enabled
from hico.provenance import provenance


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


class VideoSampleDataset(Dataset):
    """One item per video: the sampler's frames (uint8 ``[k, S, S]``) and extras."""

    def __init__(self, pool: PretrainPool, indices: np.ndarray, sampler: ViewSampler, image_size: int, seed: int):
        self.pool, self.indices, self.sampler = pool, np.asarray(indices), sampler
        self.image_size, self.seed, self.epoch = image_size, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> dict[str, Any]:
        row = self.pool.table.iloc[int(self.indices[i])]
        rng = np.random.default_rng([self.seed, self.epoch, int(self.indices[i])])
        ds = self.pool.datasets[int(row["dataset"])]
        frames = ds.frames(row["video_id"])
        idx, extras = self.sampler.choose(int(frames.shape[0]), rng)
        picked = torch.from_numpy(np.stack([np.asarray(frames[j]) for j in idx]))
        return {
            "frames": resize_square(picked, self.image_size),
            "extras": {k: torch.tensor(v, dtype=torch.float32) for k, v in extras.items()},
            "video_idx": torch.tensor(int(self.indices[i])),
            "labels": torch.tensor(int(row["train_label"])),
        }


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
    """Multiplier of the base learning rate.

    ``hold_epochs`` reproduces the released HiCo/USCL quirk: LR constant for the first epochs,
    then ``CosineAnnealingLR(T_max=t_max_epochs)`` stepped once per epoch from there, so it never
    reaches 0 (≈ 9.9e-7 at epoch 299 of 300 for lr 3e-4). Otherwise a per-step cosine after an
    optional linear warm-up.
    """
    s = cfg.schedule
    if s.name == "constant":
        return 1.0
    if s.name != "cosine":
        raise ValueError(f"{cfg.name}: unknown schedule {s.name!r}; use cosine or constant")
    floor = s.min_lr / cfg.optimizer.lr if cfg.optimizer.lr else 0.0
    if s.hold_epochs > 0:
        t = max(0, epoch - s.hold_epochs)
        t_max = s.t_max_epochs or max(1, cfg.epochs - s.hold_epochs)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t / t_max))
    e = epoch + step_in_epoch / max(1, steps_per_epoch)
    if e < s.warmup_epochs:
        return (e + 1 / max(1, steps_per_epoch)) / s.warmup_epochs
    t_max = s.t_max_epochs or max(1e-8, cfg.epochs - s.warmup_epochs)
    t = min(1.0, (e - s.warmup_epochs) / t_max)
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


def pretrain(
    method: str,
    dataset_dirs: list[str | Path],
    out_dir: str | Path,
    overrides: list[dict[str, Any]] | None = None,
    device: str | None = None,
    progress: bool | None = None,
    run_name: str | None = None,
) -> Path:
    """Pretrain ``method`` on the union of ``dataset_dirs``; returns the exported ``encoder.pt``.

    ``out_dir`` receives ``last.pt`` (resume state), ``encoder.pt`` (weights only),
    ``train_log.csv``, ``config.json`` and optionally ``encoder_epoch<k>.pt``.
    """
    from tqdm.auto import tqdm

    cfg = resolve_pretrain_config(method, *(overrides or []))
    if not cfg.requires_pretraining:
        raise ValueError(f"method {method} is a control (requires_pretraining: false); it is not pretrained")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rank, world, local_rank = _distributed()
    dev = resolve_device(device)  # auto: cuda:<LOCAL_RANK> when torch sees a GPU
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    torch.manual_seed(cfg.seed)

    pool = PretrainPool(dataset_dirs, cfg.label_rate, cfg.seed)
    train_idx, val_idx = pool.split(cfg.val_fraction, cfg.seed)
    model = build_method(
        method,
        cfg.params,
        backbone=cfg.backbone,
        pretrained=cfg.pretrained,
        weights=cfg.weights,
        num_classes=pool.num_classes,
        image_size=cfg.image_size,
    ).to(dev)
    model.fit_to_data(len(train_idx), cfg.batch_size)
    # after build_method: a method's module may register its own sampler when imported
    sampler = build_sampler(cfg.sampler)
    augment = FrameAugment(AugmentConfig.from_dict(cfg.augment, cfg.image_size))
    amp = use_amp(cfg, dev)
    channels_last = cfg.channels_last and (dev.type == "cuda" or amp)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(model, cfg, dev)
    base_lrs = [g["lr"] for g in optimizer.param_groups]

    start_epoch, best_val, log_rows = 0, math.inf, []
    ckpt_path = out_dir / "last.pt"
    if rank == 0:
        for stale in out_dir.glob(".*.tmp"):  # a write cut short by a kill; the file it replaces is intact
            stale.unlink(missing_ok=True)
    if ckpt_path.exists():
        state = torch.load(ckpt_path, map_location=dev, weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start_epoch, best_val = int(state["epoch"]) + 1, float(state["best_val"])
        if (out_dir / "train_log.csv").exists():
            log_rows = pd.read_csv(out_dir / "train_log.csv").to_dict("records")[:start_epoch]
        if rank == 0:
            print(f"[pretrain] {method}: resuming from {ckpt_path} at epoch {start_epoch}")

    step_model: torch.nn.Module = model
    if world > 1:
        step_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[dev.index] if dev.type == "cuda" else None, find_unused_parameters=True
        )
    train_set = VideoSampleDataset(pool, train_idx, sampler, cfg.image_size, cfg.seed)
    val_set = VideoSampleDataset(pool, val_idx, sampler, cfg.image_size, cfg.seed + 1)
    per_rank_batch = max(1, cfg.batch_size // world)
    n_train = len(train_set) // world * world
    if n_train < per_rank_batch * world:
        raise ValueError(
            f"{method}: {len(train_set)} training videos are fewer than one batch of {cfg.batch_size}; "
            "lower batch_size or add videos"
        )
    steps_per_epoch = n_train // world // per_rank_batch
    total_steps = steps_per_epoch * cfg.epochs
    generator = torch.Generator(device=dev)
    workers = cfg.num_workers if dev.type == "cuda" else min(cfg.num_workers, 1)
    run_info = {"config": cfg.to_dict(), "datasets": [str(d) for d in dataset_dirs], "world_size": world,
                "n_train_videos": len(train_idx), "n_val_videos": len(val_idx), "classes": pool.class_names,
                **provenance(cfg.to_dict(), cfg.seed, dev)}
    if rank == 0:
        atomic_write_json(out_dir / "config.json", run_info)

    def loader(ds: Dataset, epoch: int, shuffle: bool) -> DataLoader:
        order = np.random.default_rng([cfg.seed, epoch, 7]).permutation(len(ds)) if shuffle else np.arange(len(ds))
        order = order[: len(ds) // world * world][rank::world] if world > 1 else order
        return DataLoader(torch.utils.data.Subset(ds, order.tolist()), batch_size=per_rank_batch,
                          drop_last=shuffle, num_workers=workers, pin_memory=dev.type == "cuda",
                          persistent_workers=False)

    for epoch in range(start_epoch, cfg.epochs):
        model.train()
        train_set.set_epoch(epoch)
        if hasattr(sampler, "set_progress"):  # curriculum samplers (UCL) follow training progress
            sampler.set_progress(epoch / cfg.epochs)
        generator.manual_seed(cfg.seed * 1_000_003 + epoch * 101 + rank)
        sums: dict[str, float] = {}
        t0, n_images = time.perf_counter(), 0
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)
        bar = tqdm(loader(train_set, epoch, True), total=steps_per_epoch, desc=f"{method} epoch {epoch + 1}/{cfg.epochs}",
                   disable=(rank != 0) if progress is None else not progress, leave=False)
        for step_in_epoch, raw in enumerate(bar):
            f = lr_factor(cfg, epoch, step_in_epoch, steps_per_epoch)
            for g, base in zip(optimizer.param_groups, base_lrs):
                g["lr"] = base if g.get("fix_lr") else base * f  # SimSiam keeps its predictor's lr
            batch = _to_device(raw, dev)
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp):
                views = _views_batch(sampler, augment, batch, generator, channels_last)
                out = step_model(views)
            loss = out["loss"]
            if not torch.isfinite(loss.detach()):
                raise FloatingPointError(f"{method}: loss is {loss.item()} at epoch {epoch} step {step_in_epoch}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            model.after_step((epoch * steps_per_epoch + step_in_epoch + 1) / max(1, total_steps))
            for k, v in out.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach())
            n_images += sum(v.shape[0] for v in views["views"]) * world
            bar.set_postfix(loss=f"{loss.item():.4f}")
        elapsed = time.perf_counter() - t0
        row: dict[str, Any] = {"epoch": epoch + 1, "step": (epoch + 1) * steps_per_epoch, "lr": optimizer.param_groups[0]["lr"]}
        row.update({k: v / max(1, steps_per_epoch) for k, v in sums.items()})
        row["val_loss"] = _validate(model, sampler, augment, val_set, loader, dev, amp, channels_last, epoch, cfg.seed)
        row.update(epoch_time_s=round(elapsed, 3), images_per_s=round(n_images / max(elapsed, 1e-9), 2),
                   peak_mem_mb=round(torch.cuda.max_memory_allocated(dev) / 2**20, 1) if dev.type == "cuda" else float("nan"))
        log_rows.append(row)
        if rank == 0:
            meta = {"method": run_name or method, "base_method": method, "epoch": epoch + 1, **{k: run_info[k] for k in ("git_sha", "config_hash", "seed")}}
            improved = math.isfinite(row["val_loss"]) and row["val_loss"] < best_val
            if improved:
                best_val = row["val_loss"]
                save_encoder(model.encoder(), out_dir / "encoder_best.pt", {**meta, "val_loss": best_val})
            if epoch + 1 in cfg.checkpoint_epochs:
                save_encoder(model.encoder(), out_dir / f"encoder_epoch{epoch + 1}.pt", meta)
            _write_log(out_dir / "train_log.csv", log_rows)
            atomic_torch_save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                               "epoch": epoch, "best_val": best_val}, ckpt_path)
            print(f"[pretrain] {method} epoch {epoch + 1}/{cfg.epochs} loss {row.get('loss', float('nan')):.4f} "
                  f"val {row['val_loss']:.4f} {row['images_per_s']:.1f} img/s", flush=True)
    if rank == 0:
        final = out_dir / "encoder.pt"
        best = out_dir / "encoder_best.pt"
        meta = {"method": run_name or method, "base_method": method, "epoch": cfg.epochs, "export": cfg.export,
                **{k: run_info[k] for k in ("git_sha", "config_hash", "seed")}}
        if cfg.export == "best" and best.exists():
            blob = torch.load(best, map_location="cpu", weights_only=True)
            atomic_torch_save(blob, final)
        else:
            save_encoder(model.encoder(), final, meta)
    if world > 1:
        dist.barrier()
    return out_dir / "encoder.pt"


@torch.no_grad()
def _validate(model, sampler, augment, val_set, loader, dev, amp, channels_last, epoch, seed) -> float:
    if len(val_set) == 0:
        return float("nan")
    was_training = model.training
    model.eval()
    val_set.set_epoch(0)  # the same validation pairs every epoch, so losses are comparable
    gen = torch.Generator(device=dev)
    gen.manual_seed(seed + 12345)
    total, n = 0.0, 0
    for raw in loader(val_set, 0, False):
        batch = _to_device(raw, dev)
        if batch["frames"].shape[0] < 2:
            continue
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp):
            views = _views_batch(sampler, augment, batch, gen, channels_last, val=True)
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
    torch.manual_seed(cfg.seed)
    backbone = Backbone(cfg.backbone, pretrained=cfg.pretrained, weights=cfg.weights)
    info = provenance(cfg.to_dict(), cfg.seed)
    atomic_write_json(out_dir / "config.json", {"config": cfg.to_dict(), **info})
    _write_log(out_dir / "train_log.csv", [{"epoch": 0, "step": 0, "loss": float("nan"), "val_loss": float("nan")}])
    save_encoder(backbone, out_dir / "encoder.pt", {"method": run_name or method, "base_method": method,
                                                      "epoch": 0, "export": "init",
                                                      "git_sha": info["git_sha"], "config_hash": info["config_hash"],
                                                      "seed": cfg.seed})
    return out_dir / "encoder.pt"

"""Does the pretraining loader keep up? Its rate against the model's, side by side in one run.

The loader side is the loop's own loader (``hico/train.py``): the pretraining pool, the recipe's
view sampler choosing frames per video, uint8 frames read from the standard format
(``frames/<video>.npy``) with ``StandardDataset.read_frames`` and squashed to ``image_size`` in the
worker, collated by ``hico.train.sample_loader``: one DataLoader for the whole run, its order the
epoch's seeded permutation keyed ``(epoch, i)``, ``drop_last``, pinned memory where CUDA exists and
persistent workers, so only the first epoch pays the workers' start. It is timed alone, for every
``--workers`` count, over whole epochs, first batch included.

The model side is one training step as the loop runs it on ``--device``: the batch moved to the
device, views made there (augmentation, mixup), forward, backward and the optimiser step, with
the loop's precision (bf16 autocast + channels_last on CUDA and on CPUs with native bf16) and
optimiser (fused Adam). Methods: SimCLR (1 frame per sample, 2 views) and HiCo with pooled heads
(3 frames per sample, 2 mixed views), ResNet-18 from scratch, batch ``--batch``.

Both rates are counted in samples (videos) per second, one sample being one entry of a batch, so
``ratio = loader samples/s / model samples/s`` is how many times faster the loader delivers
batches than the model consumes them; the goal is at least 5x. Frames/s of the loader
(samples x frames per sample) and images/s of the model (samples x views) are printed beside.

Data: ``--data DIR`` (one or more prepared standard datasets), or by default a synthetic dataset
sized like the real sets, written once into ``--work``: 300 videos x 12 frames of 256 x 341 px
(a 640 x 480 clip at store size 256; non-square, so the squash does real work).

    python bench/loader.py                                  # 64 and 224 px, 0/1/2/4/8 workers
    python bench/loader.py --data data/pocus --device cuda  # a real set against a GPU step
    python bench/loader.py --videos 24 --frames 4 --sizes 64 --workers 0 1 --rounds 1  # smoke
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from torch.utils.data.dataloader import default_collate

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# The loop's pieces, in one place: a move or rename in hico/train.py is a fix here.
from hico.config import resolve_pretrain_config  # noqa: E402
from hico.data.pairs import build_sampler  # noqa: E402
from hico.data.standard import DatasetWriter, load_dataset  # noqa: E402
from hico.io import atomic_write_json  # noqa: E402
from hico.methods.base import build_method  # noqa: E402
from hico.train import PretrainPool, VideoSampleDataset, sample_loader, step_parts  # noqa: E402
from hico.train import _views_batch as views_batch  # noqa: E402

GOAL = 5.0  # the loader should deliver at least 5x what the model consumes (issue 15)
METHODS = {  # bench name -> (registered method, recipe overrides on top of size and batch)
    "simclr": ("simclr", {}),
    "hico_pooled": ("hico", {"params": {"heads": "pooled"}}),
}


def synthetic_dataset(work: Path, videos: int, frames: int, height: int, width: int, seed: int = 0) -> Path:
    """A 3-class dataset of ``videos`` videos (2 per patient) of noise with a class band, written
    once into ``work`` (reused when the folder exists and loads). Content does not matter to the
    loader's speed (``.npy`` is uncompressed); shape and count do."""
    name = f"bench_{videos}v_{frames}f_{height}x{width}_s{seed}"
    path = work / name
    if path.is_dir():
        try:
            load_dataset(path)
            return path
        except ValueError:
            pass  # a damaged copy: written again below
    rng = np.random.default_rng(seed)
    classes = ["a", "b", "c"]
    with DatasetWriter(work, name, classes, store_size=min(height, width), info={"bench": "loader"}) as w:
        for v in range(videos):
            label = (v // 2) % 3
            arr = rng.integers(0, 90, (frames, height, width), dtype=np.uint8)
            arr[:, label * height // 3:(label + 1) * height // 3] += 120
            w.add_video(f"v{v:04d}", f"p{v // 2}", classes[label], arr, source_sha256=f"bench-{seed}-{v}")
    return path


def method_config(bench_name: str, size: int, batch: int):
    method, extra = METHODS[bench_name]
    return method, resolve_pretrain_config(method, {"image_size": size, "batch_size": batch, "pretrained": False,
                                                    "weights": None}, extra)


def run_loader(dataset: VideoSampleDataset, cfg, workers: int, pin: bool) -> DataLoader:
    """The loop's training loader on one process (``hico.train.PretrainRun.loader``)."""
    return sample_loader(dataset, cfg.seed, True, cfg.batch_size, workers, pin)


def loader_epoch(loader: DataLoader, epoch: int) -> tuple[int, float, float]:
    """One whole epoch of the run-long loader, as the loop iterates it (the first one includes the
    workers' start): (samples, seconds, seconds to the first batch)."""
    loader.sampler.set_epoch(epoch)
    samples, first, t0 = 0, float("nan"), time.perf_counter()
    for i, batch in enumerate(loader):
        if i == 0:
            first = time.perf_counter() - t0
        samples += batch["frames"].shape[0]
    return samples, time.perf_counter() - t0, first


def model_step(method: str, cfg, pool: PretrainPool, n_train: int, dev: torch.device):
    """A closure running one training step as the loop does, on a uint8 batch from the loader."""
    torch.manual_seed(cfg.seed)
    model = build_method(method, cfg.params, backbone=cfg.backbone, pretrained=False, weights=None,
                         num_classes=pool.num_classes, image_size=cfg.image_size).to(dev).train()
    model.fit_to_data(n_train, cfg.batch_size)
    model, sampler, augment, amp, channels_last, optimizer = step_parts(model, cfg, dev)
    generator = torch.Generator(device=dev).manual_seed(cfg.seed)

    def step(raw: dict) -> float:
        batch = {"frames": raw["frames"].to(dev, non_blocking=True),
                 "extras": {k: v.to(dev, non_blocking=True) for k, v in raw["extras"].items()},
                 "video_idx": raw["video_idx"].to(dev, non_blocking=True),
                 "labels": raw["labels"].to(dev, non_blocking=True)}
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp):
            views = views_batch(sampler, augment, batch, generator, channels_last)
            out = model(views)
        optimizer.zero_grad(set_to_none=True)
        out["loss"].backward()
        optimizer.step()
        model.after_step(0.5)
        return float(out["loss"].detach())  # synchronises, as the loop's isfinite check does

    return step, amp, channels_last


def summary(runs: list[tuple[int, float, float]], frames_per_sample: int, prefix: str) -> dict:
    """Median rate over the rounds' epochs (samples / epoch seconds, worker start included)."""
    rate = statistics.median(n / sec for n, sec, _ in runs)
    return {f"{prefix}_samples_per_s": rate, f"{prefix}_frames_per_s": rate * frames_per_sample,
            f"{prefix}_first_batch_ms": 1e3 * statistics.median(f for _, _, f in runs),
            f"{prefix}_epoch_s": [sec for _, sec, _ in runs]}


def measure_config(args, name: str, size: int, dirs: list[Path], dev: torch.device, pin: bool) -> list[dict]:
    """Model steps and loader epochs (per worker count) of one (method, size), interleaved in rounds
    so that a change of load on a shared machine hits all alike; medians over the rounds."""
    method, cfg = method_config(name, size, args.batch)
    pool = PretrainPool(dirs, cfg.label_rate, cfg.seed)
    train_idx, _ = pool.split(cfg.val_fraction, cfg.seed)
    if len(train_idx) < cfg.batch_size:
        raise SystemExit(f"bench/loader.py: {len(train_idx)} training videos, fewer than one batch "
                         f"of {cfg.batch_size}; lower --batch or add videos")
    step, amp, channels_last = model_step(method, cfg, pool, len(train_idx), dev)
    sampler = build_sampler(cfg.sampler)
    dataset = VideoSampleDataset(pool, train_idx, sampler, size, cfg.seed, cfg.epochs)
    batch = default_collate([dataset[i] for i in range(cfg.batch_size)])
    loss = step(batch)  # warm-up (allocations, oneDNN/cuDNN kernel choice)
    if not np.isfinite(loss):
        raise SystemExit(f"bench/loader.py: {name} at {size} px: the model's loss is {loss} on the warm-up step")
    loaders = {w: run_loader(dataset, cfg, w, pin) for w in args.workers}
    step_s, runs = [], {w: [] for w in args.workers}
    for r in range(args.rounds):
        for _ in range(args.model_steps):
            t0 = time.perf_counter()
            step(batch)
            step_s.append(time.perf_counter() - t0)
        for w in args.workers:
            runs[w].append(loader_epoch(loaders[w], r))
    del loaders  # persistent workers end here
    ms = statistics.median(step_s)
    model = {"model_ms_per_step": 1e3 * ms, "model_samples_per_s": cfg.batch_size / ms,
             "model_images_per_s": 2 * cfg.batch_size / ms, "model_step_s": step_s}
    print(f"{name} {size} px: model {1e3 * ms:.0f} ms/step, {cfg.batch_size / ms:.1f} samples/s "
          f"({'bf16' if amp else 'fp32'}{', channels_last' if channels_last else ''})", flush=True)
    rows = []
    for w in args.workers:
        row = {"method": name, "size": size, "sampler": sampler.sampler_name, "frames_per_sample": sampler.n_frames,
               "batch": cfg.batch_size, "train_videos": len(train_idx), "precision": "bf16" if amp else "fp32",
               "pin_memory": pin, "workers": w, **model, **summary(runs[w], sampler.n_frames, "loader")}
        row["ratio"] = row["loader_samples_per_s"] / row["model_samples_per_s"]
        rows.append(row)
        print(f"  {w} workers: loader {row['loader_frames_per_s']:.0f} frames/s ({row['ratio']:.1f}x)", flush=True)
    return rows


def measure(args, dirs: list[Path], dev: torch.device) -> list[dict]:
    pin = torch.cuda.is_available()
    return [row for size in args.sizes for name in args.methods
            for row in measure_config(args, name, size, dirs, dev, pin)]


def print_table(rows: list[dict]) -> None:
    print(f"\n{'method':<12} {'px':>4} {'model ms/step':>13} {'model img/s':>11} {'model smp/s':>11} "
          f"{'workers':>7} {'loader frames/s':>15} {'loader smp/s':>12} {'1st batch ms':>12} {'loader/model':>12}")
    for r in rows:
        flag = "" if r["ratio"] >= GOAL else f"  < {GOAL:g}x"
        print(f"{r['method']:<12} {r['size']:>4} {r['model_ms_per_step']:>13.0f} {r['model_images_per_s']:>11.1f} "
              f"{r['model_samples_per_s']:>11.1f} {r['workers']:>7} {r['loader_frames_per_s']:>15.0f} "
              f"{r['loader_samples_per_s']:>12.1f} {r['loader_first_batch_ms']:>12.0f} {r['ratio']:>11.1f}x{flag}")
    print("smp = samples (videos of a batch); ratio = loader samples/s / model samples/s; model img/s = 2 views "
          "per sample; frames/s = samples x frames per sample (SimCLR 1, HiCo 3); loader = the loop's "
          "(hico.train.sample_loader: one DataLoader for the run, persistent workers)")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", nargs="+", type=Path, help="prepared standard dataset folder(s); default synthetic")
    ap.add_argument("--work", type=Path, default=Path("runs/bench_loader"), help="where the synthetic set goes")
    ap.add_argument("--videos", type=int, default=300)
    ap.add_argument("--frames", type=int, default=12, help="frames per synthetic video")
    ap.add_argument("--height", type=int, default=256, help="stored frame height (the store size)")
    ap.add_argument("--width", type=int, default=341, help="stored frame width")
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 224], help="image_size of the runs")
    ap.add_argument("--methods", nargs="+", choices=sorted(METHODS), default=["simclr", "hico_pooled"])
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2, 4, 8], help="DataLoader workers")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=3, help="rounds of (model steps, one loader epoch per "
                    "worker count); medians over them")
    ap.add_argument("--model-steps", type=int, default=1, help="timed model steps per round (after one warm-up)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, help="torch threads of this process (the model's, and the loader's "
                    "with 0 workers; workers always run on one); default torch's")
    ap.add_argument("--json", type=Path, help="also write every number here")
    args = ap.parse_args(argv)
    dev = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    # more workers than cores is what is measured here: the DataLoader's warning about it is noise
    warnings.filterwarnings("ignore", message="This DataLoader will create", category=UserWarning)
    dirs = args.data or [synthetic_dataset(args.work, args.videos, args.frames, args.height, args.width)]
    pool = PretrainPool(dirs, 0.0, 0)
    n_frames = int(pool.table["n_frames"].sum())
    where = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"{torch.get_num_threads()} threads"
    print(f"data {', '.join(map(str, dirs))}: {len(pool.table)} videos, {n_frames} frames; model on {dev} "
          f"({where}), torch {torch.__version__}, batch {args.batch}, {os.cpu_count()} cores, load average "
          f"{os.getloadavg()[0]:.1f}", flush=True)
    load = [os.getloadavg()[0]]
    rows = measure(args, dirs, dev)
    load.append(os.getloadavg()[0])
    print_table(rows)
    print(f"load average (1 min) {load[0]:.1f} at the start, {load[1]:.1f} at the end, on {os.cpu_count()} cores")
    if args.json:
        atomic_write_json(args.json, {"data": [str(d) for d in dirs], "device": str(dev), "device_name": where,
                                      "torch": torch.__version__, "threads": torch.get_num_threads(),
                                      "cores": os.cpu_count(), "load_average": load, "goal": GOAL, "rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

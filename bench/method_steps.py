"""Training-step time of MAE, DINO and Meta-USCL against SimCLR, side by side, at 64 and 224 px.

A step is what ``hico.train`` does per batch: the recipe's sampler makes the views from uint8
frames (augmentation included), then ``training_step``, ``backward``, the recipe's optimiser step
and ``after_step``, in the loop's precision: bf16 autocast and channels_last on a CPU with native
bf16 (``cpu_amp``, as the demo runs), fp32 elsewhere or with ``--cpu-amp off``. Every method runs from its own recipe (sampler, augmentation, optimiser,
params) on the backbone of its row; ResNet-18 and ``vit_tiny_patch16_224`` rows of SimCLR are the
references (ratios ``vs simclr`` use the SimCLR row of the same backbone and size). Rounds
alternate over the rows (so load on a shared machine hits them alike); the median of ``--steps``
timed rounds after ``--warmup`` is reported. DINO is told one step per epoch
(``fit_to_data``), so its last layer, frozen in the first epoch, trains in the timed steps.

    python bench/method_steps.py                     # 64 px batch 16, 224 px batch 8, 1 thread: minutes
    python bench/method_steps.py --sizes 32 --batches 4 --steps 1 --warmup 0   # smoke run
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hico.config import resolve_pretrain_config  # noqa: E402
from hico.data.pairs import build_sampler  # noqa: E402
from hico.data.transforms import AugmentConfig, FrameAugment  # noqa: E402
from hico.methods.base import build_method  # noqa: E402
from hico.precision import cpu_has_native_bf16  # noqa: E402
from hico.train import build_optimizer  # noqa: E402

R18, VIT = "resnet18", "vit_tiny_patch16_224"
ROWS = [("simclr", R18), ("dino", R18), ("meta_uscl", R18),
        ("simclr", VIT), ("mae", VIT), ("dino", VIT), ("meta_uscl", VIT)]


class Row:
    """One (method, backbone) at one size: the model, its optimiser, sampler and augmentation."""

    def __init__(self, method: str, backbone: str, size: int, batch: int, frames: torch.Tensor, amp: bool):
        self.method, self.backbone, self.times, self.amp = method, backbone, [], amp
        cfg = resolve_pretrain_config(method, {"image_size": size, "batch_size": batch, "backbone": backbone,
                                               "pretrained": False})
        torch.manual_seed(0)
        self.model = build_method(method, cfg.params, backbone=backbone, pretrained=False, num_classes=0,
                                  image_size=size).train()
        self.model.fit_to_data(batch, batch)  # one step per epoch (DINO's frozen last layer: step 0 only)
        if amp:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.optimizer = build_optimizer(self.model, cfg, torch.device("cpu"))
        self.sampler = build_sampler(cfg.sampler)
        self.augment = FrameAugment(AugmentConfig.from_dict(cfg.augment, size))
        k = self.sampler.n_frames
        self.frames = frames[:, :1].expand(-1, k, -1, -1).contiguous()  # [B, k, S, S] uint8
        self.extras = _extras(self.sampler, batch)
        self.generator = torch.Generator().manual_seed(0)

    def step(self, progress: float) -> float:
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.amp):
            views, weights = self.sampler.make_views(self.frames, self.extras, self.augment, self.generator)
            if self.amp:
                views = [v.contiguous(memory_format=torch.channels_last) for v in views]
            b = self.frames.shape[0]
            batch = {"views": views, "video_idx": torch.arange(b), "labels": torch.full((b,), -1),
                     "weights": torch.ones(b) if weights is None else weights}
            out = self.model.training_step(batch)
        self.optimizer.zero_grad(set_to_none=True)
        out["loss"].backward()
        self.optimizer.step()
        self.model.after_step(progress)
        self.views = [tuple(v.shape[-2:]) for v in views]
        return time.perf_counter() - t0


def _extras(sampler, batch: int) -> dict[str, torch.Tensor]:
    """The per-sample floats ``choose`` gives for a 16-frame video (the same for every sample)."""
    import numpy as np

    _, extras = sampler.choose(16, np.random.default_rng(0))
    return {k: torch.full((batch,), float(v)) for k, v in extras.items()}


def _views(shapes) -> str:
    counts: dict[tuple[int, int], int] = {}
    for s in shapes:
        counts[s] = counts.get(s, 0) + 1
    return " + ".join(f"{n}x{h}" for (h, _), n in counts.items())


def bench_size(size: int, batch: int, warmup: int, steps: int, amp: bool) -> list[Row]:
    frames = torch.randint(0, 256, (batch, 1, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    rows = [Row(m, b, size, batch, frames, amp) for m, b in ROWS]
    for r in range(warmup + steps):
        for row in rows:
            dt = row.step((r + 1) / (warmup + steps + 1))
            if r >= warmup:
                row.times.append(dt)
    return rows


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[64, 224])
    p.add_argument("--batches", type=int, nargs="+", default=[16, 8], help="batch per size (the demo's 16 at 64 px)")
    p.add_argument("--steps", type=int, default=2, help="timed rounds (median)")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (the demo's jobs use 1)")
    p.add_argument("--cpu-amp", choices=("auto", "on", "off"), default="auto",
                   help="bf16 autocast + channels_last; auto: where the CPU has native bf16, as hico.train")
    args = p.parse_args(argv)
    amp = {"on": True, "off": False}.get(args.cpu_amp, cpu_has_native_bf16())
    if len(args.batches) != len(args.sizes):
        p.error(f"--batches needs one batch per size ({len(args.sizes)}), got {args.batches}")
    torch.set_num_threads(args.threads)
    print(f"# {args.threads} thread(s), median of {args.steps} after {args.warmup} warm-up, "
          f"torch {torch.__version__}, CPU {'bf16 autocast + channels_last' if amp else 'fp32'}")
    print("| size | batch | method | backbone | views | ms/step | vs simclr (same backbone) |")
    print("|---:|---:|---|---|---|---:|---:|")
    for size, batch in zip(args.sizes, args.batches):
        rows = bench_size(size, batch, args.warmup, args.steps, amp)
        ref = {row.backbone: statistics.median(row.times) for row in rows if row.method == "simclr"}
        for row in rows:
            ms = statistics.median(row.times) * 1000
            print(f"| {size} | {batch} | {row.method} | {row.backbone} | {_views(row.views)} | {ms:,.0f} | "
                  f"{ms / 1000 / ref[row.backbone]:.2f}x |", flush=True)


if __name__ == "__main__":
    main()

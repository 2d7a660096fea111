"""The CUDA path, checked and timed in one prepared run (at most ~5 minutes on one GPU).

What ``hico.train`` does on a GPU (bf16 autocast, channels_last, TF32, fused Adam, DDP under
``torchrun``) had never run when this script was written; it runs every piece once, checks it and
times it, and exits 1 with a ``GPU CHECK FAILED`` line per failed check. Sections:

1. **precision**: SimCLR, HiCo (``heads: flatten``, the recipe) and HiCo (``heads: pooled``) at
   the same weights and batch, fp32 (TF32 off) against bf16 autocast + channels_last; fails when
   a loss is not finite or the relative difference exceeds ``--bf16-rtol``.
2. **throughput**: the same three, batch 32 and 128 at 224 px, training steps as the loop runs
   them (bf16 + channels_last + TF32 + cuDNN benchmark, fused Adam; fails when the optimiser is
   not fused or a loss is not finite): ms/step, images/s (2 views per sample), peak memory.
3. **reference**: our HiCo step against the reference-equivalent of the released loop
   (``bench/hico_step.py``: torchvision ResNet-18 + FPN, flattened heads, four forwards per step,
   per-element soft CE, per-parameter Adam, ``empty_cache`` every step) in the reference's
   precision (fp16 autocast with dynamic loss scaling, apex O2's stand-in). First the two are
   checked equal in fp32 at the same weights and batch (``--ref-rtol``), then timed alternately.
4. **ddp**: a 1-process group (NCCL; gloo in the dry run) in this process: a
   ``DistributedDataParallel`` copy of HiCo (pooled heads, ``find_unused_parameters`` as the loop)
   steps on the same batch as the plain model; loss and updated weights must agree
   (``--ddp-rtol``); its step time beside the plain one.
5. **torchrun**: ``python -m hico pretrain simclr`` on a tiny synthetic set, once plainly and once
   under ``torchrun --nproc_per_node=1`` (the loop's own process-group path); the epoch's training
   and validation losses must agree (``--torchrun-rtol``; the GPU's kernels are not bitwise
   deterministic between processes).
6. **loader**: ``bench/loader.py``'s measurement against this GPU's step (SimCLR and HiCo pooled,
   ``--loader-size`` px, batch 32, ``--loader-workers``): the loop's loader (one DataLoader for
   the run, persistent workers), samples/s and the loader/model ratio (the goal is 5x; a
   measurement, not a check).

Every number goes to ``--json``. ``--dry-run`` runs the same code on the CPU at toy sizes (32 px,
batch 4, 1 step, gloo), so a test can run it; its numbers are not GPU numbers.

    python bench/gpu_check.py                 # on a machine with a CUDA GPU
    python bench/gpu_check.py --dry-run       # anywhere, ~20-40 s on 2 cores
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch
import torch.distributed as dist

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path[:0] = [str(REPO), str(BENCH)]

# Pieces of the suite and of the other bench scripts, in one place (hico/train.py is being refactored).
import hico_step as reference  # noqa: E402  (the reference-equivalent network, loss and batch)
import loader as loader_bench  # noqa: E402  (the synthetic dataset writer)

from hico.config import resolve_pretrain_config  # noqa: E402
from hico.io import atomic_write_json  # noqa: E402
from hico.methods.base import build_method  # noqa: E402
from hico.train import build_optimizer  # noqa: E402

VARIANTS = {  # name -> (registered method, params over the recipe's)
    "simclr": ("simclr", {}),
    "hico_flatten": ("hico", {"heads": "flatten"}),
    "hico_pooled": ("hico", {"heads": "pooled"}),
}


SECTIONS = ("precision", "throughput", "reference", "ddp", "torchrun", "loader")


class Checks:
    """Collects pass/fail of every check; ``failed`` lists the failures' messages."""

    def __init__(self):
        self.results: list[dict] = []

    def check(self, name: str, ok: bool, detail: str) -> bool:
        self.results.append({"check": name, "ok": bool(ok), "detail": detail})
        print(f"  [{'ok' if ok else 'FAILED'}] {name}: {detail}", flush=True)
        return ok

    @property
    def failed(self) -> list[str]:
        return [f"{r['check']}: {r['detail']}" for r in self.results if not r["ok"]]


def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def set_fast_math(dev: torch.device, on: bool) -> None:
    """TF32 and cuDNN autotuning as ``hico.train`` sets them (off for the exact fp32 checks)."""
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = on
        torch.backends.cudnn.benchmark = on


def build(variant: str, size: int, batch: int, dev: torch.device):
    """A variant's model (ResNet-18 from scratch, weights seeded) and its recipe config."""
    method, params = VARIANTS[variant]
    cfg = resolve_pretrain_config(method, {"image_size": size, "batch_size": batch, "pretrained": False,
                                           "weights": None, "params": params})
    torch.manual_seed(0)
    model = build_method(method, cfg.params, backbone=cfg.backbone, pretrained=False, weights=None,
                         num_classes=reference.NUM_CLASSES, image_size=size).to(dev).train()
    return model, cfg


def channels_last(batch: dict) -> dict:
    return dict(batch, views=[v.contiguous(memory_format=torch.channels_last) for v in batch["views"]])


def loss_of(model, batch: dict, dev: torch.device, bf16: bool) -> float:
    with torch.no_grad(), torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
        return float(model(batch)["loss"])


def timed_steps(step, n: int, dev: torch.device) -> tuple[list[float], list[float]]:
    """``n`` calls of ``step() -> loss tensor``: (seconds each, losses)."""
    seconds, losses = [], []
    for _ in range(n):
        sync(dev)
        t0 = time.perf_counter()
        loss = step()
        sync(dev)
        seconds.append(time.perf_counter() - t0)
        losses.append(float(loss))
    return seconds, losses


def ours_step(model, optimizer, batch: dict, dev: torch.device):
    """One training step as the loop runs it (views already made): bf16 autocast, fused Adam."""
    def step():
        with torch.autocast(dev.type, dtype=torch.bfloat16):
            loss = model(batch)["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss.detach()
    return step


def reference_step(model, optimizer, scaler, batch: dict, dev: torch.device):
    """The released step in its precision: fp16 autocast with dynamic loss scaling (apex O2's
    stand-in), gradients zeroed in place, ``torch.cuda.empty_cache()`` every iteration. On the
    CPU (dry run) bf16 instead: CPU fp16 backward kernels took 29 s for one toy step here."""
    dtype = torch.float16 if dev.type == "cuda" else torch.bfloat16

    def step():
        if dev.type == "cuda":
            torch.cuda.empty_cache()
        with torch.autocast(dev.type, dtype=dtype):
            loss = reference.released_loss(model, *batch["views"], batch["labels"])
        optimizer.zero_grad(set_to_none=False)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        return loss.detach()
    return step


def peak_mb(dev: torch.device, mem) -> float:
    return (torch.cuda.max_memory_allocated(dev) if dev.type == "cuda" else mem.peak()) / 2**20


def precision(args, dev, checks: Checks, out: dict) -> None:
    print("1. precision: fp32 against bf16 autocast + channels_last, same weights and batch", flush=True)
    set_fast_math(dev, False)
    batch = reference.make_batch(args.batches[0], args.size, dev)
    for variant in VARIANTS:
        model, _ = build(variant, args.size, args.batches[0], dev)
        fp32 = loss_of(model, batch, dev, bf16=False)
        model = model.to(memory_format=torch.channels_last)
        bf16 = loss_of(model, channels_last(batch), dev, bf16=True)
        rel = abs(bf16 - fp32) / abs(fp32)
        out[variant] = {"fp32_loss": fp32, "bf16_loss": bf16, "rel_diff": rel}
        checks.check(f"precision {variant}", math.isfinite(fp32) and math.isfinite(bf16) and rel <= args.bf16_rtol,
                     f"fp32 {fp32:.6f}, bf16 {bf16:.6f}, rel diff {rel:.1e} (limit {args.bf16_rtol:g})")
        del model


def throughput(args, dev, checks: Checks, out: list, mem) -> None:
    print("2. throughput: training steps, bf16 autocast + channels_last + fused Adam", flush=True)
    set_fast_math(dev, True)
    for b in args.batches:
        batch = channels_last(reference.make_batch(b, args.size, dev))
        for variant in VARIANTS:
            model, cfg = build(variant, args.size, b, dev)
            model = model.to(memory_format=torch.channels_last)
            optimizer = build_optimizer(model, cfg, dev)
            fused = bool(optimizer.defaults.get("fused"))
            step = ours_step(model, optimizer, batch, dev)
            timed_steps(step, args.warmup, dev)
            if dev.type == "cuda":
                torch.cuda.reset_peak_memory_stats(dev)
            mem.reset()
            seconds, losses = timed_steps(step, args.steps, dev)
            ms = 1e3 * statistics.median(seconds)
            row = {"variant": variant, "batch": b, "size": args.size, "ms_per_step": ms,
                   "images_per_s": 2 * b / (ms / 1e3), "peak_mb": peak_mb(dev, mem), "fused_adam": fused,
                   "losses": losses}
            out.append(row)
            print(f"  {variant:<13} batch {b:>4}: {ms:8.1f} ms/step {row['images_per_s']:9.1f} img/s "
                  f"peak {row['peak_mb']:8.0f} MB", flush=True)
            checks.check(f"fused Adam {variant} b{b}", fused, f"{type(optimizer).__name__} fused={fused}")
            checks.check(f"finite loss {variant} b{b}", all(map(math.isfinite, losses)),
                         f"losses {', '.join(f'{v:.4f}' for v in losses[:4])}{' ...' if len(losses) > 4 else ''}")
            del model, optimizer, step


def against_reference(args, dev, checks: Checks, out: list, mem) -> None:
    print("3. reference: ours (bf16) against the reference-equivalent step (fp16), HiCo heads: flatten",
          flush=True)
    for b in args.batches:
        set_fast_math(dev, False)
        ours, cfg = build("hico_flatten", args.size, b, dev)
        released = reference.ReleasedHiCoNet(args.size).to(dev).train()
        reference.copy_weights(ours, released)
        batch = reference.make_batch(b, args.size, dev)
        with torch.no_grad():
            loss_ours = float(ours(batch)["loss"])
            loss_ref = float(reference.released_loss(released, *batch["views"], batch["labels"]))
        rel = abs(loss_ours - loss_ref) / abs(loss_ref)
        checks.check(f"reference equality b{b}", rel <= args.ref_rtol,
                     f"fp32 loss ours {loss_ours:.7f}, reference {loss_ref:.7f}, rel diff {rel:.1e} "
                     f"(limit {args.ref_rtol:g})")
        set_fast_math(dev, True)
        ours = ours.to(memory_format=torch.channels_last)
        opt_ref = torch.optim.Adam(released.parameters(), cfg.optimizer.lr, weight_decay=cfg.optimizer.weight_decay,
                                   foreach=False)  # one parameter at a time, as PyTorch 1.4
        steps = {"ours": ours_step(ours, build_optimizer(ours, cfg, dev), channels_last(batch), dev),
                 "reference": reference_step(released, opt_ref, torch.amp.GradScaler(dev.type), batch, dev)}
        times: dict[str, list[float]] = {k: [] for k in steps}
        losses: dict[str, list[float]] = {k: [] for k in steps}
        for i in range(args.warmup + args.steps):  # alternating, so a load change hits both alike
            for k, step in steps.items():
                s, v = timed_steps(step, 1, dev)
                if i >= args.warmup:
                    times[k] += s
                    losses[k] += v
        ms = {k: 1e3 * statistics.median(v) for k, v in times.items()}
        peak = {}
        for k, step in steps.items():  # one more, untimed, step each: its peak alone
            if dev.type == "cuda":
                torch.cuda.reset_peak_memory_stats(dev)
            mem.reset()
            timed_steps(step, 1, dev)
            peak[k] = peak_mb(dev, mem)
        row = {"batch": b, "fp32_loss_ours": loss_ours, "fp32_loss_reference": loss_ref, "rel_diff": rel,
               "peak_mb_ours": peak["ours"], "peak_mb_reference": peak["reference"],
               "ms_ours": ms["ours"], "ms_reference": ms["reference"], "speedup": ms["reference"] / ms["ours"],
               "images_per_s_ours": 2 * b / ms["ours"] * 1e3, "images_per_s_reference": 2 * b / ms["reference"] * 1e3}
        out.append(row)
        print(f"  batch {b:>4}: ours {ms['ours']:.1f} ms ({row['images_per_s_ours']:.1f} img/s, peak "
              f"{peak['ours']:.0f} MB), reference {ms['reference']:.1f} ms ({row['images_per_s_reference']:.1f} "
              f"img/s, peak {peak['reference']:.0f} MB): ours {row['speedup']:.2f}x faster", flush=True)
        checks.check(f"reference finite losses b{b}",
                     all(map(math.isfinite, losses["ours"] + losses["reference"])),
                     f"ours {losses['ours'][-1]:.4f}, reference {losses['reference'][-1]:.4f} (last timed step)")
        del ours, released, opt_ref, steps


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ddp(args, dev, checks: Checks, out: dict) -> None:
    backend = "nccl" if dev.type == "cuda" else "gloo"
    print(f"4. ddp: 1-process {backend} group in this process, HiCo heads: pooled", flush=True)
    set_fast_math(dev, True)
    dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{free_port()}", rank=0, world_size=1)
    try:
        b = args.batches[0]
        plain, cfg = build("hico_pooled", args.size, b, dev)
        plain = plain.to(memory_format=torch.channels_last)
        twin = copy.deepcopy(plain)
        wrapped = torch.nn.parallel.DistributedDataParallel(
            twin, device_ids=[dev.index or 0] if dev.type == "cuda" else None, find_unused_parameters=True)
        batch = channels_last(reference.make_batch(b, args.size, dev))
        steps = {"plain": ours_step(plain, build_optimizer(plain, cfg, dev), batch, dev),
                 "ddp": ours_step(wrapped, build_optimizer(twin, cfg, dev), batch, dev)}
        first = {k: timed_steps(s, 1, dev)[1][0] for k, s in steps.items()}  # same weights, same batch
        with torch.no_grad():
            worst = max(float((p - q).abs().max()) / (float(p.abs().max()) or 1.0)
                        for p, q in zip(plain.parameters(), twin.parameters()))
        rel = abs(first["ddp"] - first["plain"]) / abs(first["plain"])
        checks.check("ddp loss", rel <= args.ddp_rtol,
                     f"plain {first['plain']:.7f}, DDP {first['ddp']:.7f}, rel diff {rel:.1e} (limit {args.ddp_rtol:g})")
        checks.check("ddp weights after one step", worst <= args.ddp_rtol,
                     f"worst |w_plain - w_ddp| / max|w| {worst:.1e} (limit {args.ddp_rtol:g})")
        ms = {}
        for k, s in steps.items():
            timed_steps(s, max(0, args.warmup - 1), dev)
            ms[k] = 1e3 * statistics.median(timed_steps(s, args.steps, dev)[0])
        out.update(backend=backend, batch=b, loss_plain=first["plain"], loss_ddp=first["ddp"], rel_diff=rel,
                   weight_diff=worst, ms_plain=ms["plain"], ms_ddp=ms["ddp"], overhead=ms["ddp"] / ms["plain"])
        print(f"  plain {ms['plain']:.1f} ms/step, DDP {ms['ddp']:.1f} ms/step ({out['overhead']:.2f}x)", flush=True)
    finally:
        dist.destroy_process_group()


def pretrain_run(cmd: list[str], out_dir: Path, env: dict) -> tuple[dict, float]:
    t0 = time.perf_counter()
    r = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {r.returncode}:\n{(r.stdout + r.stderr)[-3000:]}")
    return pd.read_csv(out_dir / "train_log.csv").iloc[-1].to_dict(), wall


def torchrun(args, dev, checks: Checks, out: dict) -> None:
    print("5. torchrun: python -m hico pretrain simclr, plain and under torchrun --nproc_per_node=1", flush=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    for k in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)  # this process's group must not leak into the plain run
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp:
        data = loader_bench.synthetic_dataset(Path(tmp), args.pretrain_videos, 4, args.size, args.size + 16)
        common = ["pretrain", "simclr", "--data", str(data), "--device", str(dev),
                  "--set", "epochs=1", "--set", f"image_size={args.size}", "--set", f"batch_size={args.batches[0]}",
                  "--set", "pretrained=false", "--set", "num_workers=0"]
        logs, walls = {}, {}
        for kind in ("plain", "torchrun"):
            run_dir = Path(tmp) / kind
            launcher = ([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1", "-m"]
                        if kind == "torchrun" else [sys.executable, "-m"])
            try:
                logs[kind], walls[kind] = pretrain_run([*launcher, "hico", *common, "--out", str(run_dir)],
                                                       run_dir, env)
            except (RuntimeError, subprocess.TimeoutExpired) as e:
                checks.check(f"torchrun {kind} run", False, str(e)[-1500:])
                return
    out.update(wall_s=walls, log=logs)
    for key in ("loss", "val_loss"):
        a, b = float(logs["plain"][key]), float(logs["torchrun"][key])
        rel = abs(a - b) / abs(a)
        out[f"{key}_rel_diff"] = rel
        checks.check(f"torchrun {key}", rel <= args.torchrun_rtol,
                     f"plain {a:.6f}, torchrun {b:.6f}, rel diff {rel:.1e} (limit {args.torchrun_rtol:g})")
    print(f"  wall time: plain {walls['plain']:.1f} s, torchrun {walls['torchrun']:.1f} s", flush=True)


def loader(args, dev, checks: Checks, out: list) -> None:
    """bench/loader.py's measurement against this device's step: the number issue 15 item 3 is about."""
    print(f"6. loader: the loop's loader against this device's step, "
          f"{args.loader_size} px, workers {args.loader_workers}", flush=True)
    set_fast_math(dev, True)
    with tempfile.TemporaryDirectory(prefix="gpu_check_loader_") as tmp:
        data = loader_bench.synthetic_dataset(Path(tmp), args.loader_videos, 12 if not args.dry_run else 4, 256, 341)
        opts = argparse.Namespace(batch=args.batches[0], workers=args.loader_workers, rounds=args.loader_rounds,
                                  model_steps=args.steps)
        pin = dev.type == "cuda"
        for name in ("simclr", "hico_pooled"):
            out += loader_bench.measure_config(opts, name, args.loader_size, [data], dev, pin)
    for r in out:
        print(f"  {r['method']:<12} {r['workers']:>2} workers: model {r['model_samples_per_s']:8.1f} samples/s, "
              f"loader {r['loader_samples_per_s']:8.1f} ({r['ratio']:.1f}x)", flush=True)


def print_summary(r: dict) -> None:
    print(f"\nsummary ({r['device_name']}, {r['size']} px)")
    for t in r["throughput"]:
        print(f"  {t['variant']:<13} batch {t['batch']:>4}: {t['images_per_s']:9.1f} img/s, peak {t['peak_mb']:8.0f} MB")
    for t in r["reference"]:
        print(f"  HiCo flatten batch {t['batch']:>4}: ours (bf16) {t['images_per_s_ours']:.1f} img/s, reference-"
              f"equivalent (fp16) {t['images_per_s_reference']:.1f} img/s: {t['speedup']:.2f}x")
    if r["ddp"]:
        print(f"  DDP (1 process, {r['ddp']['backend']}) step / plain step: {r['ddp']['overhead']:.2f}x")
    for t in r["loader"]:
        print(f"  loader/model {t['method']:<12} {t['workers']:>2} workers: {t['ratio']:.1f}x")


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dry-run", action="store_true", help="CPU, 32 px, batch 4, 1 step, gloo: the code paths only")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--batches", type=int, nargs="+", default=[32, 128])
    ap.add_argument("--steps", type=int, default=10, help="timed steps (median)")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--pretrain-videos", type=int, default=160, help="videos of the torchrun check's dataset")
    ap.add_argument("--bf16-rtol", type=float, default=5e-3, help="bf16 against fp32 loss, same weights")
    ap.add_argument("--ref-rtol", type=float, default=1e-4, help="ours against the reference, fp32")
    ap.add_argument("--ddp-rtol", type=float, default=1e-6, help="DDP against plain, loss and weights")
    ap.add_argument("--torchrun-rtol", type=float, default=5e-3, help="torchrun against plain pretrain losses")
    ap.add_argument("--loader-size", type=int, default=224, help="image size of the loader section")
    ap.add_argument("--loader-workers", type=int, nargs="+", default=[4, 8, 12])
    ap.add_argument("--loader-videos", type=int, default=300)
    ap.add_argument("--loader-rounds", type=int, default=3)
    ap.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS), help="run only these")
    ap.add_argument("--json", type=Path, default=Path("runs/gpu_check.json"))
    args = ap.parse_args(argv)
    if args.dry_run:
        args.device, args.size, args.batches, args.steps, args.warmup = "cpu", 32, [4], 1, 0
        args.pretrain_videos = min(args.pretrain_videos, 24)
        args.loader_size, args.loader_workers, args.loader_videos, args.loader_rounds = 32, [0, 1], 24, 1
        # one thread: on a shared CPU, two OpenMP threads waiting on each other made a toy step 10x slower
        torch.set_num_threads(1)
        os.environ["OMP_NUM_THREADS"] = "1"  # and in the pretrain subprocesses
    if args.size % 32:
        ap.error("--size must be divisible by 32")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    dev = torch.device(args.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        print(f"bench/gpu_check.py: error: no CUDA device here (torch {torch.__version__}, built for CUDA "
              f"{torch.version.cuda}); run it on a GPU machine, or with --dry-run to try its code on the CPU",
              file=sys.stderr)
        return 2
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "CPU (dry run: not GPU numbers)"
    print(f"device {dev} ({name}), torch {torch.__version__}, CUDA {torch.version.cuda}, cuDNN "
          f"{torch.backends.cudnn.version()}, {args.size} px, batches {args.batches}, {args.steps} timed steps "
          f"after {args.warmup}", flush=True)
    checks, mem, t0 = Checks(), reference.Memory(dev), time.perf_counter()
    results: dict = {"device": str(dev), "device_name": name, "torch": torch.__version__, "cuda": torch.version.cuda,
                     "dry_run": args.dry_run, "size": args.size, "batches": args.batches, "steps": args.steps,
                     "precision": {}, "throughput": [], "reference": [], "ddp": {}, "torchrun": {}, "loader": []}
    sections = {"precision": (precision, (results["precision"],)),
                "throughput": (throughput, (results["throughput"], mem)),
                "reference": (against_reference, (results["reference"], mem)), "ddp": (ddp, (results["ddp"],)),
                "torchrun": (torchrun, (results["torchrun"],)), "loader": (loader, (results["loader"],))}
    for section, extra in (sections[k] for k in SECTIONS if k in args.sections):
        t = time.perf_counter()
        try:
            section(args, dev, checks, *extra)
        except (Exception, SystemExit) as e:  # a crash is a failed check too: the others still run
            checks.check(section.__name__, False, f"raised {type(e).__name__}: {e}")
        results.setdefault("section_s", {})[section.__name__] = time.perf_counter() - t
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    results.update(total_s=time.perf_counter() - t0, checks=checks.results, failed=checks.failed)
    print_summary(results)
    atomic_write_json(args.json, results)
    print(f"\nall numbers in {args.json}; {time.perf_counter() - t0:.0f} s in all")
    for failure in checks.failed:
        print(f"GPU CHECK FAILED: {failure}", file=sys.stderr)
    return 1 if checks.failed else 0


if __name__ == "__main__":
    raise SystemExit(main())

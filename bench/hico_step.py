"""One HiCo training step: ours (``hico/methods/hico.py``) vs the released loop, side by side.

The reference-equivalent step is written here after ``train_HiCo/simclr.py``,
``models/resnet_simclr.py``, ``models/fpn.py`` and ``loss/nt_xent.py`` (983632847/HiCo @
1eeacee): torchvision ResNet-18 + FPN, flattened level heads, and per step

  - four forward passes: ``model(x_i)``, ``model(x_j)`` for the classifier, then again in ``_step``;
  - in each forward the dead ``relu(l2/l3/l4/l5(.))`` (p2 802,816 -> 256 twice per forward, the
    p4 head ``l4`` never used);
  - NT-Xent built as released (numpy mask, ``CosineSimilarity`` broadcast, 7 calls per step);
  - the softened CE with its per-element Python loop (``soft_label_CrossEntropyLoss``) and the
    ``FindNotX`` label filter;
  - Adam as PyTorch 1.4 ran it (one parameter at a time, ``zero_grad`` to zeros, not None).

Both networks hold the same weights (ours copied into the reference's module names) and see the
same batch. The losses must agree: in train mode BatchNorm normalises with the batch statistics,
so the release's extra running-stat updates (two per view and step instead of one) do not enter
the loss; at the first step the weights are identical, the gradients are the same sum, so the
loss *and* every gradient agree to float rounding, and the two runs stay in lock step after the
optimiser steps. The check runs in fp32 before timing and the script exits 1 if it fails.

Timing: steps of the two alternate (so load on a shared machine hits both alike); the median of
``--steps`` after ``--warmup``. Memory: the variant's persistent state (weights + optimiser
state) plus the peak above it during a step (activations, gradients, temporaries): CUDA
``max_memory_allocated``; CPU peak RSS (``VmHWM``, reset through ``/proc/self/clear_refs``,
process-wide ``ru_maxrss`` where that is unavailable). For scale also ours with ``heads:
pooled`` and a bare ResNet-18 forward+backward of both views. Ours runs as ``hico.train`` does
by default: on CUDA bf16 autocast, channels_last and TF32, the reference with fp16 autocast (apex
O2's stand-in; ``--ref-amp none`` for fp32); on a CPU with native bf16 (AVX512-BF16/AMX) bf16
autocast and channels_last (``cpu_amp``), the reference in fp32 (apex is CUDA-only, so the
release runs fp32 there). Ours is also timed in fp32 (``cpu_amp: false``), so the fp32-against-
fp32 ratio is printed too, and the bf16 loss is compared with the fp32 one at the same weights
(``--bf16-rtol``).

    python bench/hico_step.py                      # batch 32, 224 px, CPU here (a few minutes)
    python bench/hico_step.py --device cuda --steps 10
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hico.config import resolve_pretrain_config  # noqa: E402
from hico.data.pairs import build_sampler  # noqa: E402
from hico.data.transforms import AugmentConfig, FrameAugment  # noqa: E402
from hico.methods.base import build_method  # noqa: E402
from hico.models.backbone import Backbone  # noqa: E402
from hico.precision import cpu_has_native_bf16  # noqa: E402
from hico.train import build_optimizer  # noqa: E402

NUM_CLASSES = 12  # US-4's joint class map, as released
LAM, ALPHA, TEMPERATURE = 0.2, 0.2, 0.5


# ---------------------------------------------------------------- the released network and loss


class ReleasedFPN(nn.Module):
    """``FPNresnet18``: torchvision ResNet-18 (``ResNetNew.forward``) + the top-down pyramid."""

    def __init__(self):
        super().__init__()
        self.R18 = torchvision.models.resnet18(weights=None)
        self.toplayer = nn.Conv2d(512, 256, 1)
        self.smooth1 = nn.Conv2d(256, 256, 3, padding=1)
        self.smooth2 = nn.Conv2d(256, 256, 3, padding=1)
        self.smooth3 = nn.Conv2d(256, 256, 3, padding=1)
        self.latlayer1 = nn.Conv2d(256, 256, 1)
        self.latlayer2 = nn.Conv2d(128, 256, 1)
        self.latlayer3 = nn.Conv2d(64, 256, 1)

    @staticmethod
    def _upsample_add(x, y):  # F.upsample(x, size=(H, W), mode='bilinear') + y
        return F.interpolate(x, size=y.shape[-2:], mode="bilinear", align_corners=False) + y

    def forward(self, x):
        r = self.R18
        x = r.maxpool(r.relu(r.bn1(r.conv1(x))))
        c2 = r.layer1(x)
        c3 = r.layer2(c2)
        c4 = r.layer3(c3)
        c5 = r.layer4(c4)
        f = r.avgpool(c5)
        p5 = self.toplayer(c5)
        p4 = self._upsample_add(p5, self.latlayer1(c4))
        p3 = self._upsample_add(p4, self.latlayer2(c3))
        p2 = self._upsample_add(p3, self.latlayer3(c2))
        return self.smooth3(p2), self.smooth2(p3), self.smooth1(p4), p5, f


class ReleasedHiCoNet(nn.Module):
    """``ResNetSimCLR`` of the release, forward line for line (dead branches included)."""

    def __init__(self, size: int = 224, out_dim: int = 256, num_classes: int = NUM_CLASSES):
        super().__init__()
        s2, s3, s4, s5 = size // 4, size // 8, size // 16, size // 32
        self.features = ReleasedFPN()
        self.l2 = nn.Linear(256 * s2 * s2, out_dim)
        self.l3 = nn.Linear(256 * s3 * s3, out_dim)
        self.l4 = nn.Linear(256 * s4 * s4, out_dim)
        self.l5 = nn.Linear(256 * s5 * s5, out_dim)
        self.lf = nn.Linear(512, out_dim)
        self.l22 = nn.Linear(out_dim, out_dim)
        self.l33 = nn.Linear(out_dim, out_dim)
        self.l55 = nn.Linear(out_dim, out_dim)
        self.fc = nn.Linear(out_dim, num_classes)

    def forward(self, x):
        p2, p3, p4, p5, h = self.features(x)
        f2, f3, f4, f5, fp = (torch.flatten(t, start_dim=1) for t in (p2, p3, p4, p5, h))
        x2 = F.relu(self.l2(f2))  # noqa: F841  (dead, as released)
        x3 = F.relu(self.l3(f3))  # noqa: F841
        x4 = F.relu(self.l4(f4))  # noqa: F841  (the p4 head: never in a loss)
        x5 = F.relu(self.l5(f5))  # noqa: F841
        c = self.fc(F.relu(self.lf(fp)))
        xx2 = self.l22(F.relu(self.l2(f2)))
        xx3 = self.l33(F.relu(self.l3(f3)))
        xx5 = self.l55(F.relu(self.l5(f5)))
        return xx2, xx3, xx5, c


def released_nt_xent(zis, zjs, temperature=TEMPERATURE):
    """``NTXentLoss.forward`` with ``use_cosine_similarity: True``."""
    n, device = zis.shape[0], zis.device
    diag = np.eye(2 * n)
    lower = np.eye(2 * n, 2 * n, k=-n)
    upper = np.eye(2 * n, 2 * n, k=n)
    mask = (1 - torch.from_numpy(diag + lower + upper)).type(torch.bool).to(device)
    representations = torch.cat([zjs, zis], dim=0)
    similarity = torch.nn.CosineSimilarity(dim=-1)(representations.unsqueeze(1), representations.unsqueeze(0))
    positives = torch.cat([torch.diag(similarity, n), torch.diag(similarity, -n)]).view(2 * n, 1)
    negatives = similarity[mask].view(2 * n, -1)
    logits = torch.cat((positives, negatives), dim=1) / temperature
    labels = torch.zeros(2 * n, device=device).long()
    return torch.nn.CrossEntropyLoss(reduction="sum")(logits, labels) / (2 * n)


def released_step_loss(model, xis, xjs):
    """``SimCLR._step``: two more forward passes, seven NT-Xent terms."""
    ris, kis, zis, _ = model(xis)
    rjs, kjs, zjs, _ = model(xjs)
    zis, zjs, kis, kjs, ris, rjs = (F.normalize(t, dim=1) for t in (zis, zjs, kis, kjs, ris, rjs))
    lumbda_ = 0.5
    peer = released_nt_xent(ris, rjs) + released_nt_xent(kis, kjs) + released_nt_xent(zis, zjs)
    cross = (released_nt_xent(zis, kis) + released_nt_xent(zjs, kjs)
             + released_nt_xent(zis, ris) + released_nt_xent(zjs, rjs))
    return lumbda_ * peer + (1 - lumbda_) * cross


def released_soft_ce(labels, outputs, alpha=ALPHA):
    """``soft_label_CrossEntropyLoss``: the target built one element at a time."""
    batch_size, num_class = len(labels), outputs.shape[1]
    soft_labels_a = F.one_hot(labels, num_class)
    soft_labels = torch.zeros((batch_size, num_class)).to(outputs.device)
    for i in range(batch_size):
        for j in range(num_class):
            if soft_labels_a[i][j] == 1:
                soft_labels[i][j] = (1 - alpha) * 1 + alpha / (batch_size - 1)
            else:
                soft_labels[i][j] = (1 - alpha) * 0 + alpha / (batch_size - 1)
    return -torch.sum(soft_labels * F.log_softmax(outputs, dim=1)) / batch_size


def find_not(values, x):
    return [i for i, item in enumerate(values) if item != x]


def released_loss(model, xis, xjs, labels):
    """The body of ``SimCLR.train``'s loop (semi-supervised branch); labels -1 = the release's 9999."""
    _, _, _, out_i = model(xis)
    _, _, _, out_j = model(xjs)
    idx_i, idx_j = find_not(labels.tolist(), -1), find_not(labels.tolist(), -1)
    loss_i = released_soft_ce(labels[idx_i], out_i[idx_i])
    loss_j = released_soft_ce(labels[idx_j], out_j[idx_j])
    return released_step_loss(model, xis, xjs) + LAM * loss_i + LAM * loss_j


def ours_to_released_names(ours) -> dict[str, str]:
    """Our parameter/buffer names -> the release's (``heads.local.fc1`` -> ``l2`` ...)."""
    heads = {"local": ("l2", "l22"), "medium": ("l3", "l33"), "global": ("l5", "l55")}
    out = {}
    for name in ours.state_dict():
        if name.startswith("backbone.body."):
            out[name] = "features.R18." + name[len("backbone.body."):]
        elif name.startswith("fpn."):
            out[name] = "features." + name[len("fpn."):]
        elif name.startswith("heads."):
            _, level, layer, leaf = name.split(".")
            out[name] = f"{heads[level][layer == 'fc2']}.{leaf}"
        elif name.startswith("classifier."):
            out[name] = name[len("classifier."):]
    return out


def copy_weights(ours, released) -> dict[str, str]:
    names = ours_to_released_names(ours)
    state = ours.state_dict()
    missing, unexpected = released.load_state_dict({names[k]: v for k, v in state.items()}, strict=False)
    dead = {k for k in missing if k.split(".")[0] in ("l4",) or ".smooth1." in k or k.startswith("features.R18.fc.")}
    if unexpected or set(missing) != dead:
        raise RuntimeError(f"weight copy: unexpected {unexpected}, missing {sorted(set(missing) - dead)}")
    return names


# ---------------------------------------------------------------- measurement


class Memory:
    """Bytes in use now and the peak since ``reset``: CUDA allocator, or this process's RSS."""

    def __init__(self, device: torch.device):
        self.device = device
        self.resettable = device.type == "cuda"
        if device.type == "cpu":
            with contextlib.suppress(OSError):
                Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM (Linux >= 4.0)
                self.resettable = True

    @staticmethod
    def _status_kb(key: str) -> int:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
        raise KeyError(key)

    def now(self) -> int:
        if self.device.type == "cuda":
            return torch.cuda.memory_allocated(self.device)
        return self._status_kb("VmRSS") * 1024 if self.resettable else 0

    def trim(self) -> None:
        """Give freed heap pages back to the OS, so that RSS is what is live (CPU)."""
        if self.device.type == "cpu":
            with contextlib.suppress(OSError, AttributeError):
                ctypes.CDLL("libc.so.6").malloc_trim(0)

    def reset(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        elif self.resettable:
            Path("/proc/self/clear_refs").write_text("5")

    def peak(self) -> int:
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device)
        if self.resettable:
            return self._status_kb("VmHWM") * 1024
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # whole run, not per variant


def state_bytes(model: nn.Module, optimizer: torch.optim.Optimizer | None) -> int:
    """Weights, buffers, gradients held between steps and optimiser state."""
    n = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    n += sum(p.grad.numel() * p.grad.element_size() for p in model.parameters() if p.grad is not None)
    if optimizer is not None:
        for s in optimizer.state.values():
            n += sum(v.numel() * v.element_size() for v in s.values() if torch.is_tensor(v))
    return n


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Variant:
    """A step split in ``forward_backward() -> loss`` and ``update()``, timed and measured."""

    def __init__(self, name, forward_backward, update, model, optimizer, mem):
        self.name, self.forward_backward, self.update = name, forward_backward, update
        self.model, self.optimizer, self.mem = model, optimizer, mem
        self.fb_s, self.update_s, self.losses, self.transient = [], [], [], 0

    def timed(self, fn, record: list) -> torch.Tensor | None:
        _sync(self.mem.device)
        t0 = time.perf_counter()
        out = fn()
        _sync(self.mem.device)
        record.append(time.perf_counter() - t0)
        return out

    def run(self) -> None:
        """One timed step."""
        self.losses.append(float(self.timed(self.forward_backward, self.fb_s)))
        self.timed(self.update, self.update_s)

    def measure(self) -> None:
        """One untimed step for memory: the rise of the footprint above its pre-step level."""
        self.mem.trim()
        base = self.mem.now()
        self.mem.reset()
        self.losses.append(float(self.forward_backward()))
        self.update()
        _sync(self.mem.device)
        self.transient = self.mem.peak() - base

    def summary(self, warmup: int) -> dict:
        fb, up = self.fb_s[warmup:] or self.fb_s, self.update_s[warmup:] or self.update_s
        persistent = state_bytes(self.model, self.optimizer)
        return {"name": self.name, "ms": 1e3 * statistics.median(a + b for a, b in zip(fb, up)),
                "fb_ms": 1e3 * statistics.median(fb), "update_ms": 1e3 * statistics.median(up),
                "loss": self.losses[0], "state_mb": persistent / 2**20,
                "peak_mb": (persistent + self.transient) / 2**20 if self.mem.resettable else float("nan")}


def make_batch(batch: int, size: int, device: torch.device, seed: int = 0) -> dict:
    """Three random frames per 'video', the released mixup and augmentation, random labels."""
    rng = np.random.default_rng(seed)
    sampler = build_sampler({"name": "three_frame_mixup", "beta": 0.5})
    augment = FrameAugment(AugmentConfig.from_dict({}, size))
    lams = [sampler.choose(22, rng)[1]["lam"] for _ in range(batch)]
    frames = torch.from_numpy(rng.integers(0, 256, (batch, 3, size, size), dtype=np.uint8)).to(device)
    gen = torch.Generator(device=device).manual_seed(seed)
    views, _ = sampler.make_views(frames, {"lam": torch.tensor(lams, device=device)}, augment, gen)
    labels = torch.from_numpy(rng.integers(0, NUM_CLASSES, batch)).to(device)
    return {"views": views, "labels": labels, "video_idx": torch.arange(batch, device=device),
            "weights": torch.ones(batch, device=device)}


def gflop_per_sample(loss_fn, n: int) -> float:
    """Forward+backward GFLOP (matmuls and convolutions) of ``loss_fn()`` on an ``n``-sample batch,
    per sample (the step is linear in the batch apart from the tiny similarity matrices)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        loss_fn().backward()
    return counter.get_total_flops() / n / 1e9


def gradient_difference(ours, released, names) -> float:
    """max over parameters of max|g_ours - g_ref| / max|g_ref| (after one backward of each)."""
    ref_params = dict(released.named_parameters())
    worst = 0.0
    for name, p in ours.named_parameters():
        g, g_ref = p.grad, ref_params[names[name]].grad
        if g is None or g_ref is None:
            raise RuntimeError(f"no gradient for {name} (ours) or {names[name]} (reference)")
        worst = max(worst, float((g.float() - g_ref.float()).abs().max()) / (float(g_ref.abs().max()) or 1.0))
    return worst


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--steps", type=int, default=None, help="timed steps per variant, median (CPU 2, CUDA 10)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed first steps (CPU 1, CUDA 3)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--ref-amp", choices=["fp16", "none"], default="fp16", help="reference precision on CUDA")
    ap.add_argument("--rtol", type=float, default=1e-4, help="loss agreement required (relative)")
    ap.add_argument("--cpu-amp", choices=["auto", "on", "off"], default="auto",
                    help="also time ours with bf16 autocast + channels_last on CPU (hico.train's default, "
                         "cpu_amp: true); auto = when the CPU has native bf16, as hico.train decides")
    ap.add_argument("--bf16-rtol", type=float, default=2e-3,
                    help="agreement required between ours in bf16 and in fp32 at the same weights (relative)")
    args = ap.parse_args(argv)
    dev = torch.device(args.device)
    cuda = dev.type == "cuda"
    steps = args.steps or (10 if cuda else 2)
    warmup = args.warmup if args.warmup is not None else (3 if cuda else 1)
    if args.size % 32:
        ap.error("--size must be divisible by 32")
    mem = Memory(dev)
    where = torch.cuda.get_device_name(dev) if cuda else f"{torch.get_num_threads()} threads"
    print(f"device {dev} ({where}), torch {torch.__version__}, batch {args.batch}, {args.size} px, "
          f"resnet18, {NUM_CLASSES} classes, {steps} timed steps after {warmup} warm-up", flush=True)

    cfg = resolve_pretrain_config("hico", {"image_size": args.size, "batch_size": args.batch, "pretrained": False})
    torch.manual_seed(0)
    ours = build_method("hico", {**cfg.params, "heads": "flatten"}, backbone=cfg.backbone, pretrained=False,
                        num_classes=NUM_CLASSES, image_size=args.size).to(dev).train()
    released = ReleasedHiCoNet(args.size).to(dev).train()
    names = copy_weights(ours, released)
    batch = make_batch(args.batch, args.size, dev)
    small = make_batch(2, args.size, dev, seed=1)  # FLOP counts on 2 samples, scaled to the batch
    gflop = {"ours": gflop_per_sample(lambda m=ours: m.training_step(small)["loss"], 2),
             "ref": gflop_per_sample(lambda m=released: released_loss(m, *small["views"], small["labels"]), 2)}
    ours.zero_grad(set_to_none=True)
    released.zero_grad(set_to_none=True)
    if cuda:  # exact fp32 for the check; timing below as hico.train runs (TF32, bf16, channels_last)
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False

    def autocast(dtype, enabled):
        return torch.autocast(dev.type, dtype=dtype, enabled=enabled)

    amp = {"ours": cuda, "ref": cuda and args.ref_amp == "fp16"}
    views_ours = batch

    def ours_variant(name, model, opt):
        def forward_backward():
            with autocast(torch.bfloat16, amp["ours"]):
                out = model(views_ours)  # forward() is training_step, as hico.train calls it
            opt.zero_grad(set_to_none=True)
            out["loss"].backward()
            return out["loss"].detach()
        return Variant(name, forward_backward, opt.step, model, opt, mem)

    def ref_variant(name, model, opt):
        def forward_backward():
            if cuda:
                torch.cuda.empty_cache()  # as released, every iteration
            with autocast(torch.float16, amp["ref"]):
                loss = released_loss(model, *batch["views"], batch["labels"])
            opt.zero_grad(set_to_none=False)  # PyTorch 1.4: gradients zeroed in place, kept
            loss.backward()
            return loss.detach()
        return Variant(name, forward_backward, opt.step, model, opt, mem)

    opt_ours = build_optimizer(ours, cfg, dev)  # Adam, fused (CUDA, and CPU from torch 2.4)
    opt_ref = torch.optim.Adam(released.parameters(), cfg.optimizer.lr, weight_decay=cfg.optimizer.weight_decay,
                               foreach=False)  # one parameter at a time, as PyTorch 1.4
    pair = [ours_variant("ours, heads: flatten" + ("" if cuda else ", fp32 (cpu_amp: false)"), ours, opt_ours),
            ref_variant("reference-equivalent (released loop)", released, opt_ref)]

    cpu_amp = not cuda and (args.cpu_amp == "on" or (args.cpu_amp == "auto" and cpu_has_native_bf16()))
    bf16_loss = None
    if cpu_amp:  # the bf16 loss at the same weights and batch, before anything moves
        with torch.no_grad(), autocast(torch.bfloat16, True):
            bf16_loss = float(ours.training_step(batch)["loss"])

    # 1. equality: first step, identical weights, fp32, train-mode BN (on CPU: the warm-up step)
    t0 = time.perf_counter()
    if cuda:
        amp.update(ours=False, ref=False)
    losses = [float(v.forward_backward()) for v in pair]
    for v, loss in zip(pair, losses):
        v.losses.append(loss)
    grad_diff = gradient_difference(ours, released, names)
    rel = abs(losses[0] - losses[1]) / abs(losses[1])
    equal = rel <= args.rtol
    print(f"equality (fp32, first step, same weights and batch): loss ours {losses[0]:.7f}  reference "
          f"{losses[1]:.7f}  rel diff {rel:.1e}; worst gradient diff / max|grad| {grad_diff:.1e}  "
          f"[{'equal' if equal else 'NOT EQUAL'}] ({time.perf_counter() - t0:.0f} s)", flush=True)
    for v in pair:
        v.update()
    if cuda:
        amp.update(ours=True, ref=args.ref_amp == "fp16")
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
        ours.to(memory_format=torch.channels_last)
        views_ours = dict(batch, views=[v.contiguous(memory_format=torch.channels_last) for v in batch["views"]])
    warmup = max(0, warmup - 1) if not cuda else warmup  # the check was the CPU warm-up

    # 2. timing, ours and reference alternating (load on a shared machine hits both alike)
    for _ in range(warmup + steps):
        for v in pair:
            v.run()
    for v in pair:
        v.measure()
    rows = [dict(v.summary(warmup), gflop=gflop[k] * args.batch) for k, v in zip(("ours", "ref"), pair)]
    drift = max(abs(a - b) / abs(b) for a, b in zip(pair[0].losses, pair[1].losses))
    if cpu_amp:  # the same model and optimiser, as hico.train runs it with cpu_amp: true
        amp["ours"] = True
        ours.to(memory_format=torch.channels_last)
        views_ours = dict(batch, views=[v.contiguous(memory_format=torch.channels_last) for v in batch["views"]])
        fast = ours_variant("ours, heads: flatten, bf16 + channels_last (default)", ours, opt_ours)
        for _ in range(max(1, warmup) + steps):
            fast.run()
        fast.measure()
        rows.append(dict(fast.summary(max(1, warmup)), gflop=gflop["ours"] * args.batch))
        amp["ours"] = False
        views_ours = batch
    del pair, opt_ref, released, opt_ours, ours  # free ~9 GB before the next variants

    # 3. for scale: pooled heads; a bare ResNet-18 forward+backward of both views
    torch.manual_seed(0)
    pooled = build_method("hico", {**cfg.params, "heads": "pooled"}, backbone=cfg.backbone, pretrained=False,
                          num_classes=NUM_CLASSES, image_size=args.size).to(dev).train()
    plain = Backbone("resnet18").to(dev).train()
    if cuda:
        pooled.to(memory_format=torch.channels_last)
        plain.to(memory_format=torch.channels_last)

    def plain_loss(views):
        return sum(plain(v).float().pow(2).mean() for v in views)

    def plain_forward_backward():
        plain.zero_grad(set_to_none=True)
        with autocast(torch.bfloat16, amp["ours"]):
            loss = plain_loss(views_ours["views"])
        loss.backward()
        return loss.detach()

    gflop["pooled"] = gflop_per_sample(lambda: pooled.training_step(small)["loss"], 2)
    gflop["plain"] = gflop_per_sample(lambda: plain_loss(small["views"]), 2)
    pooled.zero_grad(set_to_none=True)
    plain.zero_grad(set_to_none=True)

    precision = "" if cuda else ", fp32"
    extra = [ours_variant("ours, heads: pooled" + precision, pooled, build_optimizer(pooled, cfg, dev)),
             Variant("plain resnet18 fwd+bwd, both views" + precision, plain_forward_backward,
                     lambda: None, plain, None, mem)]
    for v in extra:
        for _ in range(max(1, warmup) + steps):
            v.run()
        v.measure()
    rows += [dict(v.summary(max(1, warmup)), gflop=gflop[k] * args.batch) for k, v in zip(("pooled", "plain"), extra)]

    ours_ms, ref_ms = rows[0]["ms"], rows[1]["ms"]
    print(f"\n{'variant':<55} {'ms/step':>9} {'fwd+bwd':>9} {'optim':>7} {'vs ours':>8} "
          f"{'GFLOP':>7} {'state MB':>9} {'peak MB':>8}  first loss")
    for r in rows:
        print(f"{r['name']:<55} {r['ms']:>9.0f} {r['fb_ms']:>9.0f} {r['update_ms']:>7.0f} "
              f"{r['ms'] / ours_ms:>7.2f}x {r['gflop']:>7.0f} {r['state_mb']:>9.0f} {r['peak_mb']:>8.0f}  "
              f"{r['loss']:.6f}")
    print(f"\nspeed-up of ours{'' if cuda else ' in fp32'} over the reference-equivalent: {ref_ms / ours_ms:.2f}x "
          f"(median of {steps} steps); FLOP ratio {rows[1]['gflop'] / rows[0]['gflop']:.2f}x")
    if cpu_amp:
        bf16_rel = abs(bf16_loss - losses[0]) / abs(losses[0])
        equal = equal and bf16_rel <= args.bf16_rtol
        print(f"speed-up of ours as hico.train runs it on this CPU (bf16 autocast + channels_last, cpu_amp "
              f"default) over the reference-equivalent (fp32, as the release runs on CPU): "
              f"{ref_ms / rows[2]['ms']:.2f}x; at the first step's weights its loss is {bf16_loss:.6f} vs "
              f"{losses[0]:.6f} in fp32 (= the reference's), rel diff {bf16_rel:.1e} "
              f"[{'equal at bf16 precision' if bf16_rel <= args.bf16_rtol else 'NOT EQUAL'}, "
              f"--bf16-rtol {args.bf16_rtol:g}]")
    print(f"loss agreement over all steps (weights in lock step): max rel diff {drift:.1e}"
          + (" (timed steps: ours bf16, reference " + ("fp16" if amp["ref"] else "fp32") + ")" if cuda else ""))
    print("GFLOP = matmul+conv FLOPs of forward+backward (torch.utils.flop_counter, counted on 2 samples)")
    print("state MB = weights + gradients kept between steps + optimiser state; peak MB = state + "
          "the rise above the pre-step footprint during one more (untimed) step"
          + ("" if mem.resettable else " (n/a: /proc/self/clear_refs not writable)"))
    return 0 if equal else 1


if __name__ == "__main__":
    raise SystemExit(main())

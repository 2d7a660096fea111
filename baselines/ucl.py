"""UCL: ultrasound video contrastive learning with hard negatives (Basu et al., MICCAI 2022,
"Unsupervised Contrastive Learning of Image Representations from Ultrasound Videos with Hard
Negative Mining", arXiv 2207.13148; reference: gbc-iitd/US_UCL ``ucl/builder_gb.py``,
``ucl/datasets_gb.py``, flags of ``scripts/pretrain_ucl_butterfly.sh``).

Per video: anchor a, positive within +-3 frames, 3 intra-video negatives from two bands
around a that shrink over training (sampler ``ucl_hard_negatives`` below). With q the
normalised query embedding of the anchor, k+ the momentum (key) encoder's embedding of the
positive, n1..n3 the query encoder's embeddings of the negatives (with gradient) and N all
negatives of the step (detached, every rank):

    n^ = sum_{top-2 n in N by q.n} softmax(q.n / T) n          (soft cross-video negative)
    L  = CE([q.k+, q.n1, q.n2, q.n3, q.n^] / T, 0)             (T = 0.07)

and only ``[q.k+, q.n^]`` while ``progress < cross_only_until`` (the release's first 10 of 60
epochs). As released, N includes the anchor's own negatives and n^ is not re-normalised.
Single GPU: no shuffle-BN; the release's unused second anchor crop is not computed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from baselines._momentum import momentum_copy, update_momentum
from hico.data.pairs import ViewSampler, register_sampler
from hico.losses import check_temperature, gather_with_grad
from hico.methods.base import PretrainMethod
from hico.models.heads import ProjectionHead
from hico.registry import register_method


@register_sampler("ucl_hard_negatives")
@dataclass
class UCLHardNegatives(ViewSampler):
    """Frames ``[anchor, positive, n_1 .. n_k]`` of one video (``GbVideoDataset.__getitem__``).

    With T frames and p = ``positive_window``:
      - anchor a uniform in ``[ceil(0.2 T), ceil(0.5 T))`` (``anchor_range``);
      - positive uniform in ``[a - p, a + p]`` without a, clipped to the video;
      - k negatives drawn with replacement from
        ``[a - max(floor(h T), p + 3), a - max(floor(l T), p + 1))`` and
        ``[a + max(floor(l T), p + 1), a + max(ceil(h T), p + 3))``, clipped, where
        ``(l, h) = band * scale(progress)``.
    Curriculum: ``scale`` is 1 until ``shrink_from`` of training, then multiplied, once per
    epoch of a ``curriculum_epochs``-epoch clock (the release's 60 epochs, stretched over our
    run), by ``(1 + cos(pi (e - e0) / (E - e0))) / 2``, so negatives move to 4-6 frames from a.
    The shared loop sets ``progress`` per epoch through :meth:`set_progress`.

    Videos too short for any negative (the release crashes on them) get their missing
    negatives from the previous video of the batch: cross-video negatives, never the anchor.
    Each frame is augmented once; the anchor's unused second crop is not made.
    """

    positive_window: int = 3
    n_negatives: int = 3
    band: tuple[float, float] = (0.2, 0.4)
    anchor_range: tuple[float, float] = (0.2, 0.5)
    shrink_from: float = 0.5
    curriculum_epochs: int = 60

    def __post_init__(self):
        self.band = tuple(float(b) for b in self.band)
        self.anchor_range = tuple(float(b) for b in self.anchor_range)
        if self.positive_window < 1:
            raise ValueError(f"positive_window must be >= 1 frame, got {self.positive_window}")
        if self.n_negatives < 1:
            raise ValueError(f"n_negatives must be >= 1, got {self.n_negatives}")
        if not 0 <= self.band[0] <= self.band[1]:
            raise ValueError(f"band must satisfy 0 <= l <= h, got {self.band}")
        if not 0 <= self.anchor_range[0] <= self.anchor_range[1] <= 1:
            raise ValueError(f"anchor_range must satisfy 0 <= lo <= hi <= 1, got {self.anchor_range}")
        if not 0 <= self.shrink_from <= 1 or self.curriculum_epochs < 1:
            raise ValueError("shrink_from must be in [0, 1] and curriculum_epochs >= 1")
        self.n_frames = 2 + self.n_negatives
        self.progress = 0.0

    def set_progress(self, progress: float) -> None:
        """Training progress in [0, 1] at the start of an epoch (drives the band curriculum)."""
        self.progress = min(max(float(progress), 0.0), 1.0)

    def band_scale(self, progress: float | None = None) -> float:
        progress = self.progress if progress is None else progress
        total = self.curriculum_epochs
        start = int(round(self.shrink_from * total))
        epoch = min(int(progress * total), total)
        scale = 1.0
        for e in range(start, epoch + 1):
            scale *= 0.5 * (1.0 + math.cos(math.pi * (e - start) / max(1, total - start)))
        return scale

    def choose(self, n_frames, rng):
        t, p = n_frames, self.positive_window
        lo = min(math.ceil(self.anchor_range[0] * t), t - 1)
        hi = min(max(math.ceil(self.anchor_range[1] * t), lo + 1), t)
        a = int(rng.integers(lo, hi))
        near = [i for i in range(max(0, a - p), min(t, a + p + 1)) if i != a]
        pos = int(rng.choice(near)) if near else a
        scale = self.band_scale()
        low, high = self.band[0] * scale, self.band[1] * scale
        left = range(max(0, a - max(int(high * t), p + 3)), max(0, a - max(int(low * t), p + 1)))
        right = range(min(t, a + max(int(low * t), p + 1)), min(t, a + max(math.ceil(high * t), p + 3)))
        candidates = [*left, *right]
        if candidates:
            negs = [int(i) for i in rng.choice(candidates, size=self.n_negatives, replace=True)]
        else:
            negs = [a] * self.n_negatives  # replaced by another video's frames in make_views
        return [a, pos, *negs], {"n_valid": float(len(negs) if candidates else 0)}

    def make_views(self, frames, extras, augment, generator=None):
        # frames: uint8 [B, 2 + k, S, S]
        k = self.n_negatives
        negs = frames[:, 2:]  # [B, k, S, S]
        invalid = torch.arange(k, device=frames.device).view(1, k) >= extras["n_valid"].view(-1, 1)
        negs = torch.where(invalid.view(-1, k, 1, 1), frames.roll(1, dims=0)[:, 2:], negs)
        views = [augment(frames[:, 0], generator), augment(frames[:, 1], generator)]
        return views + [augment(negs[:, j], generator) for j in range(k)], None


@register_method("ucl")
class UCL(PretrainMethod):
    def __init__(self, temperature: float = 0.07, momentum: float = 0.999,
                 proj_hidden: int | None = None, proj_dim: int = 128,
                 soft_negative_topk: int = 2, cross_only_until: float = 10 / 60, **base):
        super().__init__(**base)
        check_temperature(temperature)
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"momentum must be in [0, 1], got {momentum}")
        if soft_negative_topk < 1:
            raise ValueError(f"soft_negative_topk must be >= 1, got {soft_negative_topk}")
        if not 0.0 <= cross_only_until <= 1.0:
            raise ValueError(f"cross_only_until must be in [0, 1], got {cross_only_until}")
        d = self.backbone.num_features
        self.temperature, self.momentum = float(temperature), float(momentum)
        self.soft_negative_topk, self.cross_only_until = int(soft_negative_topk), float(cross_only_until)
        self.projector = ProjectionHead(d, proj_hidden or d, proj_dim)  # 512 -> 512 -> 128 for R18
        self.key_backbone = momentum_copy(self.backbone)
        self.key_projector = momentum_copy(self.projector)
        self.register_buffer("progress", torch.zeros(()))  # in state_dict: the phase resumes exactly

    def _query(self, x):
        return F.normalize(self.projector(self.backbone(x)), dim=1)

    def training_step(self, batch):
        anchor, positive, *negatives = batch["views"]  # [B, 3, S, S] each
        b, k = anchor.shape[0], len(negatives)
        use_intra = float(self.progress) >= self.cross_only_until
        q = self._query(anchor)  # [B, D]
        with torch.set_grad_enabled(use_intra and torch.is_grad_enabled()):
            negs = self._query(torch.cat(negatives))  # one forward of [k*B], as released
        negs = negs.view(k, b, -1).transpose(0, 1)  # [B, k, D]
        with torch.no_grad():
            pos = F.normalize(self.key_projector(self.key_backbone(positive)), dim=1)  # [B, D]
            bank = gather_with_grad(negs.detach().reshape(b * k, -1))  # N: [world*B*k, D]
        sim = q @ bank.T  # [B, |N|]
        top, idx = sim.topk(min(self.soft_negative_topk, bank.shape[0]), dim=1)
        weights = F.softmax(top / self.temperature, dim=1)  # keeps q's gradient, as released
        soft_neg = (weights.unsqueeze(-1) * bank[idx]).sum(dim=1)  # [B, D], not re-normalised
        logits = [(q * pos).sum(1, keepdim=True)]
        if use_intra:
            logits.append(torch.einsum("bd,bkd->bk", q, negs))
        logits.append((q * soft_neg).sum(1, keepdim=True))
        logits = torch.cat(logits, dim=1) / self.temperature  # [B, 1 (+k) + 1]
        target = torch.zeros(b, dtype=torch.long, device=q.device)
        loss = F.cross_entropy(logits, target)
        return {"loss": loss, "intra_negatives": torch.tensor(float(use_intra), device=q.device)}

    def after_step(self, progress: float) -> None:
        self.progress.fill_(float(progress))
        update_momentum(self.key_backbone, self.backbone, self.momentum)
        update_momentum(self.key_projector, self.projector, self.momentum)

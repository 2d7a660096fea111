"""Meta-USCL (Chen, Zhang, Zhang, Lv, Zhao, Liu, Zhang, Li, IEEE TMI 2022, "Generating and Weighting
Semantically Consistent Sample Pairs for Ultrasound Contrastive Learning", arXiv 2212.04097;
reference: Schuture/Meta-USCL ``train.py`` (``train_step``), ``model.py`` (``WNet``,
``ContrastiveModel``), ``loss.py`` (``InfoNCE``), ``dataloader.py``).

Pairs from the positive pair interpolator (``ppi_mixup``). Features h (pooled backbone), projection
z = l2(relu(l1(h))) (512 -> 512 -> 128). CMW-Net w = sigmoid(fc2(relu(fc1([h_l, h_r])))) (1024 ->
10 -> 1) weights each pair; the weighted InfoNCE (T = 0.5, cosine, 2N anchors) is

    L_w = sum_a w~_a CE_a,   w~ = [w; w] / sum([w; w])          (unweighted: the mean)

Every training step (``train_step``):
  1. L_w on the training pair with CMW-Net's weights, keeping their graph;
  2. a virtual SGD step of the encoder, differentiable in CMW-Net's parameters a:
     theta'(a) = theta - lr (mu buf + grad L_w + wd theta)  (MetaSGD with the main optimiser's
     momentum buffers, learning rate and weight decay, loaded from its state_dict);
  3. the unweighted InfoNCE of theta' on *clean* pairs (two augmentations of one frame) from the
     held-out videos; its gradient in a updates CMW-Net with Adam (lr 6e-5);
  4. the main loss: L_w with the *updated* CMW-Net's weights (no gradient into CMW-Net), which
     the shared loop back-propagates and steps (SGD 0.1, momentum 0.9, wd 1e-4).
The virtual step reuses step 1's forward pass (same parameters, same batch, BatchNorm in train
mode: the running statistics move once per view, as in the release's main pass); the clean pairs
run through ``torch.func.functional_call`` on copies of the BatchNorm buffers.

The loop owns the main optimiser, so the method mirrors it: after each step it rebuilds the SGD
momentum buffers (``mu buf + grad + wd theta``, exact for the shipped SGD recipe) and infers the
step's learning rate from the parameter change; CMW-Net, its Adam moments, the mirrored buffers
and the inferred lr are all buffers or parameters, so ``state_dict`` resumes exactly.

Clean pairs: :meth:`MetaUSCL.meta_sampler` asks the shared loop for batches of held-out videos
(``first_frame``: two augmentations of each video's first frame, the release's ``samples=1``); the
loop splits the held-out videos by patient into these meta videos and the validation videos and
passes one batch as ``batch["meta_views"]`` every step (``meta_held_out`` logs 1). A caller that
passes none (a method test, ``bench/method_steps.py``) gets the sampler's views 3-4, the training
videos' first frames (``meta_held_out`` 0).
"""

from __future__ import annotations

import warnings

import torch
import torch.distributed as dist
from torch import nn
from torch.func import functional_call

from hico.losses import nt_xent
from hico.methods.base import PretrainMethod
from hico.models.heads import ProjectionHead
from hico.registry import register_method


class CMWNet(nn.Module):
    """The released ``WNet(input, hidden, 1)``: ``sigmoid(fc2(relu(fc1(x))))``, ``[B, in] -> [B]``."""

    def __init__(self, in_dim: int, hidden: int = 10):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(in_dim, hidden), nn.Linear(hidden, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.fc2(torch.relu(self.fc1(x)))).squeeze(-1)


def weighted_info_nce(z_l: torch.Tensor, z_r: torch.Tensor, temperature: float,
                      weights: torch.Tensor | None = None) -> torch.Tensor:
    """``loss.py`` ``InfoNCE``: per-anchor NT-Xent cross entropy over the 2N anchors, weighted by
    the pair weights duplicated over both anchors and normalised to sum 1 (mean when None)."""
    if weights is None:
        return nt_xent(z_l, z_r, temperature)
    # nt_xent averages w_a * l_a over the 2N anchors; dividing by mean(w) renormalises to sum 1
    loss = nt_xent(z_l, z_r, temperature, weights=weights)
    return loss / weights.to(loss.dtype).mean()


@register_method("meta_uscl")
class MetaUSCL(PretrainMethod):
    """Meta-USCL; defaults are the released ``train.py`` flags."""

    def __init__(self, temperature: float = 0.5, proj_dim: int = 128, meta: bool = True,
                 cmw_hidden: int = 10, cmw_lr: float = 6e-5,
                 cmw_betas: tuple[float, float] = (0.9, 0.999), meta_lr: float = 0.1,
                 sgd_momentum: float = 0.9, sgd_weight_decay: float = 1e-4, **base):
        if temperature <= 0:
            raise ValueError(f"meta_uscl: temperature must be > 0, got {temperature}")
        if cmw_hidden < 1 or cmw_lr <= 0 or meta_lr <= 0:
            raise ValueError("meta_uscl: cmw_hidden >= 1, cmw_lr > 0 and meta_lr > 0 expected")
        if not 0 <= sgd_momentum < 1 or sgd_weight_decay < 0:
            raise ValueError("meta_uscl: sgd_momentum in [0, 1) and sgd_weight_decay >= 0 expected")
        super().__init__(**base)
        d = self.backbone.num_features
        self.temperature, self.meta = float(temperature), bool(meta)
        self.cmw_lr, self.cmw_betas = float(cmw_lr), tuple(float(b) for b in cmw_betas)
        self.sgd_momentum, self.sgd_weight_decay = float(sgd_momentum), float(sgd_weight_decay)
        self.projector = ProjectionHead(d, d, proj_dim)  # l1, l2: 512 -> 512 -> 128 for R18
        self.cmw = CMWNet(2 * d, cmw_hidden)
        self.register_buffer("virtual_lr", torch.tensor(float(meta_lr)))  # lr of the last main step
        self.register_buffer("cmw_step", torch.zeros((), dtype=torch.long))
        self.register_buffer("main_steps", torch.zeros((), dtype=torch.long))
        for i, p in enumerate(self.cmw.parameters()):
            self.register_buffer(f"cmw_exp_avg_{i}", torch.zeros_like(p))
            self.register_buffer(f"cmw_exp_avg_sq_{i}", torch.zeros_like(p))
        for i, p in enumerate(self._main_params()):
            self.register_buffer(f"sgd_momentum_{i}", torch.zeros_like(p))
        self._before: list[torch.Tensor] | None = None
        self._warned = False
        if self.backbone.is_vit:  # fused attention kernels have no second derivative (step 3)
            for block in self.backbone.body.blocks:
                block.attn.fused_attn = False

    # ------------------------------------------------------------------ pieces

    def _main_params(self) -> list[nn.Parameter]:
        return [*self.backbone.parameters(), *self.projector.parameters()]

    def _named_main(self) -> dict[str, nn.Parameter]:
        return {n: p for n, p in self.named_parameters() if not n.startswith("cmw.")}

    def _features(self, x: torch.Tensor, params=None, buffers=None) -> tuple[torch.Tensor, torch.Tensor]:
        """(h [B, d], z [B, proj_dim]) with the module's own weights, or ``params``/``buffers``."""
        if params is None:
            h = self.backbone(x)
            return h, self.projector(h)
        sub = lambda prefix, d: {k[len(prefix):]: v for k, v in d.items() if k.startswith(prefix)}  # noqa: E731
        h = functional_call(self.backbone, (sub("backbone.", params), sub("backbone.", buffers)), (x,))
        z = functional_call(self.projector, (sub("projector.", params), sub("projector.", buffers)), (h,))
        return h, z

    def param_groups(self):
        return [{"params": [p for p in self._main_params() if p.requires_grad]}]

    def meta_sampler(self):
        """Clean pairs from held-out videos for the meta step (none for the PPI-only ablation)."""
        return {"name": "first_frame", "n_views": 2} if self.meta else None

    # ------------------------------------------------------------------ the step

    def training_step(self, batch):
        x_l, x_r = batch["views"][:2]  # [B, 3, S, S] each: the interpolated pair
        if self.training:
            self._before = [p.detach().clone() for p in self._main_params()]
        h_l, z_l = self._features(x_l)
        h_r, z_r = self._features(x_r)
        out: dict[str, torch.Tensor] = {}
        if self.meta and torch.is_grad_enabled():
            out.update(self._meta_step(torch.cat([h_l, h_r], 1), z_l, z_r, batch))
        with torch.no_grad():
            weights = self.cmw(torch.cat([h_l, h_r], 1).detach().to(self.cmw.fc1.weight.dtype)) if self.meta else None
        loss = weighted_info_nce(z_l, z_r, self.temperature, weights)
        if weights is not None:
            out["mean_weight"] = weights.mean()
        return {"loss": loss, **out}

    def _meta_step(self, h_pair, z_l, z_r, batch) -> dict[str, torch.Tensor]:
        """Steps 1-3: CMW-Net's Adam step on the clean-pair loss after a virtual SGD step."""
        meta_views, held_out = self._meta_views(batch)
        meta_loss = self.meta_objective(h_pair, z_l, z_r, meta_views)
        cmw_grads = torch.autograd.grad(meta_loss, list(self.cmw.parameters()), retain_graph=True)
        self._adam_step(cmw_grads)
        return {"meta_loss": meta_loss.detach(),
                "meta_held_out": torch.tensor(float(held_out), device=meta_loss.device)}

    def meta_objective(self, h_pair, z_l, z_r, meta_views) -> torch.Tensor:
        """The clean-pair InfoNCE after the virtual step, differentiable in CMW-Net's parameters.

        ``h_pair`` [B, 2d] and ``z_l``, ``z_r`` [B, proj_dim] come from this step's forward pass
        (with their graph); ``meta_views`` are the two clean views [M, 3, S, S]."""
        params = self._named_main()
        names = [n for n, p in params.items() if p.requires_grad]
        w_hat = self.cmw(h_pair.to(self.cmw.fc1.weight.dtype))  # [B], graph into CMW-Net
        loss_hat = weighted_info_nce(z_l, z_r, self.temperature, w_hat)
        grads = torch.autograd.grad(loss_hat, [params[n] for n in names], create_graph=True, allow_unused=True)
        lr, mu, wd = float(self.virtual_lr), self.sgd_momentum, self.sgd_weight_decay
        momentum_of = dict(zip(params, self._momentum_buffers()))
        virtual = {}
        for n, g in zip(names, grads):
            p = params[n].detach()  # MetaSGD detaches theta: only the gradient carries a
            step = (g if g is not None else torch.zeros_like(p)) + wd * p
            if int(self.main_steps) > 0 and mu > 0:
                step = step + mu * momentum_of[n]
            virtual[n] = p - lr * step
        buffers = {n: b.detach().clone() for n, b in self.named_buffers()
                   if n.startswith(("backbone.", "projector."))}
        _, mz_l = self._features(meta_views[0], virtual, buffers)
        _, mz_r = self._features(meta_views[1], virtual, buffers)
        return weighted_info_nce(mz_l, mz_r, self.temperature)

    def _meta_views(self, batch) -> tuple[list[torch.Tensor], bool]:
        if batch.get("meta_views") is not None:
            return list(batch["meta_views"][:2]), True
        if len(batch["views"]) < 4:
            raise ValueError("meta_uscl: no clean pairs for the meta step: the loop gave no "
                             "batch['meta_views'] and the sampler made no views 3-4; use the recipe's "
                             "sampler {name: ppi_mixup, clean_pairs: true} or params.meta: false")
        return list(batch["views"][2:4]), False

    @torch.no_grad()
    def _adam_step(self, grads) -> None:
        """torch.optim.Adam (no weight decay, eps 1e-8) on CMW-Net, its moments in buffers."""
        if dist.is_available() and dist.is_initialized():  # one CMW-Net on every rank
            grads = [g.clone() for g in grads]
            for g in grads:
                dist.all_reduce(g)
                g.div_(dist.get_world_size())
        self.cmw_step += 1
        t = int(self.cmw_step)
        b1, b2 = self.cmw_betas
        for i, (p, g) in enumerate(zip(self.cmw.parameters(), grads)):
            m, v = getattr(self, f"cmw_exp_avg_{i}"), getattr(self, f"cmw_exp_avg_sq_{i}")
            m.lerp_(g, 1 - b1)
            v.mul_(b2).addcmul_(g, g, value=1 - b2)
            denom = (v.sqrt() / (1 - b2 ** t) ** 0.5).add_(1e-8)
            p.addcdiv_(m, denom, value=-self.cmw_lr / (1 - b1 ** t))

    def _momentum_buffers(self) -> list[torch.Tensor]:
        return [getattr(self, f"sgd_momentum_{i}") for i in range(len(self._main_params()))]

    @torch.no_grad()
    def after_step(self, progress: float) -> None:
        """Mirror the loop's SGD step: momentum buffers and the learning rate it used."""
        if self._before is None:
            return
        bufs, params = self._momentum_buffers(), self._main_params()
        first = int(self.main_steps) == 0
        num = den = 0.0
        for p, before, buf in zip(params, self._before, bufs):
            if p.grad is None:
                continue
            d_p = torch.add(p.grad, before, alpha=self.sgd_weight_decay)  # as torch SGD
            if first or self.sgd_momentum == 0:
                buf.copy_(d_p)
            else:
                buf.mul_(self.sgd_momentum).add_(d_p)
            delta = before - p.detach()
            num += float((delta * buf).sum())
            den += float((buf * buf).sum())
        if den > 0:
            self.virtual_lr.fill_(num / den)
            self._check_mirror(params, bufs)
        self.main_steps += 1
        self._before = None

    def _check_mirror(self, params, bufs) -> None:
        if self._warned:
            return
        lr = float(self.virtual_lr)
        err = sum(float((before - p.detach() - lr * b).norm()) for p, before, b in zip(params, self._before, bufs))
        size = sum(float((before - p.detach()).norm()) for p, before in zip(params, self._before))
        if size > 0 and err > 1e-3 * size:
            self._warned = True
            warnings.warn("meta_uscl: the loop's optimiser step is not SGD with momentum "
                          f"{self.sgd_momentum} and weight decay {self.sgd_weight_decay} (params.sgd_momentum, "
                          "params.sgd_weight_decay); the meta step's virtual update only approximates it",
                          stacklevel=2)

    @torch.no_grad()
    def validation_step(self, batch):
        x_l, x_r = batch["views"][:2]
        return {"loss": weighted_info_nce(self._features(x_l)[1], self._features(x_r)[1], self.temperature)}

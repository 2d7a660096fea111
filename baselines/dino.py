"""DINO (Caron, Touvron, Misra, Jégou, Mairal, Bojanowski, Joulin, ICCV 2021, "Emerging Properties
in Self-Supervised Vision Transformers"; reference: facebookresearch/dino ``main_dino.py``
(``DINOLoss``, ``train_one_epoch``), ``vision_transformer.py`` (``DINOHead``), ``utils.py``).

Student g_s = head(backbone), teacher g_t = its EMA (``m`` 0.996 -> 1, cosine over training).
Views from ``multi_crop``: 2 global crops x_1, x_2 (teacher and student) and L local crops
(student only). With P_t(x) = softmax((g_t(x) - c) / T_t) (centred, sharpened) and
P_s(x) = softmax(g_s(x) / T_s), T_s = 0.1::

    L = 1/n_terms * sum_{i in globals} sum_{v != i} mean_batch( -P_t(x_i) . log P_s(x_v) )

then the centre follows the teacher's batch mean: c <- m_c c + (1 - m_c) mean(g_t(x_1), g_t(x_2))
(m_c 0.9, all ranks). T_t rises linearly from 0.04 to 0.07 over the first 30 epochs (constant
within an epoch), then stays; the last layer gets no gradient during the first epoch; every
student parameter's gradient is clipped to norm 3 on its own (``utils.clip_gradients``). The
exported encoder is the *teacher* backbone (DINO evaluates the teacher: ``--checkpoint_key teacher``).

State for exact resume (buffers): the centre, the step counter, steps per epoch (set by
``fit_to_data``); the student's stochastic depth draws from the global RNG re-seeded from the
step counter, so a resumed run drops the paths an uninterrupted one would.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from timm.layers import DropPath

from baselines._momentum import cosine_momentum, momentum_copy, update_momentum
from hico.methods.base import PretrainMethod
from hico.models.heads import DINOHead
from hico.registry import register_method


def teacher_probs(teacher_out: torch.Tensor, center: torch.Tensor, temp: float) -> torch.Tensor:
    """``softmax((t - c) / T_t)`` over prototypes: centring then sharpening, no gradient."""
    return F.softmax((teacher_out.float() - center) / temp, dim=-1).detach()


def dino_loss(student_out: list[torch.Tensor], teacher_out: list[torch.Tensor], center: torch.Tensor,
              teacher_temp: float, student_temp: float = 0.1) -> torch.Tensor:
    """DINO's cross entropy between every global teacher view and every *other* student view.

    ``student_out``: one ``[B, K]`` tensor per crop, globals first (in the teacher's order);
    ``teacher_out``: one ``[B, K]`` per global crop. Terms where the student sees the teacher's
    own crop are skipped; the mean over the remaining (crop pair, sample) terms is returned.
    """
    total, n_terms = 0.0, 0
    log_p = [F.log_softmax(s.float() / student_temp, dim=-1) for s in student_out]
    for i, t in enumerate(teacher_out):
        q = teacher_probs(t, center, teacher_temp)
        for v, lp in enumerate(log_p):
            if v == i:
                continue
            total = total + (-q * lp).sum(dim=-1).mean()
            n_terms += 1
    return total / n_terms


@torch.no_grad()
def updated_center(center: torch.Tensor, teacher_out: torch.Tensor, momentum: float = 0.9) -> torch.Tensor:
    """``c m + (1 - m) mean over every rank's teacher rows`` (``DINOLoss.update_center``)."""
    batch_sum = teacher_out.float().sum(dim=0, keepdim=True)
    count = torch.tensor(float(teacher_out.shape[0]), device=teacher_out.device)
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(batch_sum)
        dist.all_reduce(count)
    return center * momentum + batch_sum / count * (1 - momentum)


def teacher_temperature(epoch: int, warmup_temp: float, temp: float, warmup_epochs: int) -> float:
    """``np.linspace(warmup_temp, temp, warmup_epochs)[epoch]`` during warm-up, then ``temp``."""
    if epoch >= warmup_epochs:
        return float(temp)
    if warmup_epochs == 1:
        return float(warmup_temp)
    return float(warmup_temp + (temp - warmup_temp) * epoch / (warmup_epochs - 1))


@register_method("dino")
class DINO(PretrainMethod):
    """Self-distillation with no labels; defaults are ``main_dino.py``'s ViT-S/16 recipe with
    the teacher temperature warmed 0.04 -> 0.07 over 30 epochs."""

    def __init__(
        self,
        out_dim: int = 65536,
        hidden_dim: int = 2048,
        bottleneck_dim: int = 256,
        use_bn_in_head: bool = False,
        norm_last_layer: bool = True,
        base_momentum: float = 0.996,
        warmup_teacher_temp: float = 0.04,
        teacher_temp: float = 0.07,
        warmup_teacher_temp_epochs: int = 30,
        student_temp: float = 0.1,
        center_momentum: float = 0.9,
        freeze_last_layer_epochs: int = 1,
        clip_grad: float = 3.0,
        drop_path_rate: float = 0.1,
        **base,
    ):
        if not (warmup_teacher_temp > 0 and teacher_temp > 0 and student_temp > 0):
            raise ValueError("dino: temperatures must be > 0")
        if not (0.0 <= base_momentum <= 1.0 and 0.0 <= center_momentum <= 1.0):
            raise ValueError(f"dino: base_momentum and center_momentum must be in [0, 1], got "
                             f"{base_momentum}, {center_momentum}")
        if warmup_teacher_temp_epochs < 0 or freeze_last_layer_epochs < 0 or clip_grad < 0:
            raise ValueError("dino: warmup_teacher_temp_epochs, freeze_last_layer_epochs and clip_grad must be >= 0")
        if not 0.0 <= drop_path_rate < 1.0:
            raise ValueError(f"dino: drop_path_rate must be in [0, 1), got {drop_path_rate}")
        super().__init__(**base)
        self.base_momentum, self.momentum = float(base_momentum), float(base_momentum)
        self.temps = (float(warmup_teacher_temp), float(teacher_temp), int(warmup_teacher_temp_epochs))
        self.student_temp, self.center_momentum = float(student_temp), float(center_momentum)
        self.freeze_last_layer_epochs, self.clip_grad = int(freeze_last_layer_epochs), float(clip_grad)
        self.head = DINOHead(self.backbone.num_features, out_dim, hidden_dim, bottleneck_dim,
                             use_bn=use_bn_in_head, norm_last_layer=norm_last_layer)
        self.teacher_backbone = momentum_copy(self.backbone)  # before the student's drop path
        self.teacher_head = momentum_copy(self.head)
        self.drop_path_rate = float(drop_path_rate) if self.backbone.is_vit else 0.0
        _add_drop_path(self.backbone, self.drop_path_rate)
        self.register_buffer("center", torch.zeros(1, out_dim))
        self.register_buffer("step", torch.zeros((), dtype=torch.long))
        self.register_buffer("steps_per_epoch", torch.zeros((), dtype=torch.long))
        if self.clip_grad > 0:
            for p in [*self.backbone.parameters(), *self.head.parameters()]:
                if p.requires_grad:
                    p.register_post_accumulate_grad_hook(self._clip)

    def _clip(self, p: torch.Tensor) -> None:
        # per-parameter clipping (utils.clip_gradients): each gradient on its own to norm clip_grad
        norm = p.grad.norm(2)
        p.grad.mul_(torch.clamp(self.clip_grad / (norm + 1e-6), max=1.0))

    def fit_to_data(self, n_train_videos: int, batch_size: int) -> None:
        self.steps_per_epoch.fill_(max(1, n_train_videos // max(1, batch_size)))

    @property
    def epoch(self) -> int:
        """Training epoch of the current step (0 while ``fit_to_data`` was not called)."""
        spe = int(self.steps_per_epoch)
        return int(self.step) // spe if spe > 0 else 0

    def teacher_temp(self) -> float:
        return teacher_temperature(self.epoch, *self.temps)

    def _student(self, views: list[torch.Tensor], n_global: int) -> list[torch.Tensor]:
        """Student logits per crop: one backbone pass per crop size, as ``MultiCropWrapper``."""
        groups = [views[:n_global], views[n_global:]]  # multi_crop: all local crops share one size
        feats = [self.backbone(torch.cat(g)) for g in groups if g]  # [n*B, D] per resolution
        freeze = self.epoch < self.freeze_last_layer_epochs
        logits = self.head(torch.cat(feats), freeze_last_layer=freeze)  # [(G + L) B, K]
        return list(logits.chunk(len(views)))

    def _losses(self, views: list[torch.Tensor], update: bool) -> dict[str, torch.Tensor]:
        # global crops: the leading views at full size (multi_crop puts them first)
        n_global = next((i for i, v in enumerate(views) if v.shape[-2:] != views[0].shape[-2:]), len(views))
        if len(views) < 2 or (n_global == len(views) and n_global < 2):
            raise ValueError(f"dino needs two or more views (got {len(views)}): use the multi_crop sampler")
        with torch.no_grad():
            teacher = self.teacher_head(self.teacher_backbone(torch.cat(views[:n_global])))  # [G B, K]
        devices = [views[0].device] if views[0].is_cuda else []
        with torch.random.fork_rng(devices=devices):  # stochastic depth, seeded by the step
            torch.manual_seed(int(self.step) * 2 + 1)
            student = self._student(views, n_global)
        temp = self.teacher_temp()
        loss = dino_loss(student, list(teacher.chunk(n_global)), self.center, temp, self.student_temp)
        if update:
            self.center.copy_(updated_center(self.center, teacher, self.center_momentum))
            self.step += 1
        return {"loss": loss, "teacher_temp": torch.tensor(temp, device=loss.device)}

    def training_step(self, batch):
        return self._losses(batch["views"], update=self.training)

    @torch.no_grad()
    def validation_step(self, batch):
        return {"loss": self._losses(batch["views"], update=False)["loss"]}

    def after_step(self, progress: float) -> None:
        self.momentum = cosine_momentum(progress, self.base_momentum)
        update_momentum(self.teacher_backbone, self.backbone, self.momentum)
        update_momentum(self.teacher_head, self.head, self.momentum)

    def encoder(self):
        return self.teacher_backbone

    def param_groups(self):
        # utils.get_params_groups: no weight decay on biases and 1-D parameters
        decay, no_decay = [], []
        for name, p in [*self.backbone.named_parameters(), *self.head.named_parameters()]:
            if p.requires_grad:
                (no_decay if p.ndim <= 1 or name.endswith(".bias") else decay).append(p)
        return [{"params": decay}, {"params": no_decay, "weight_decay": 0.0}]


def _add_drop_path(backbone, rate: float) -> None:
    """Stochastic depth on the student's transformer blocks, linearly 0 -> ``rate`` over depth
    (``vision_transformer.py``: ``dpr = linspace(0, drop_path_rate, depth)``)."""
    if rate <= 0 or not backbone.is_vit:
        return
    blocks = backbone.body.blocks
    for i, block in enumerate(blocks):
        r = rate * i / max(1, len(blocks) - 1)
        if r > 0:
            block.drop_path1, block.drop_path2 = DropPath(r), DropPath(r)

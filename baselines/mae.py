"""MAE (He, Chen, Xie, Li, Dollár, Girshick, CVPR 2022, "Masked Autoencoders Are Scalable
Vision Learners"; reference: facebookresearch/mae ``models_mae.py``, ``main_pretrain.py``).

Per image x (one augmented frame per video): cut into L patches of p x p; keep a random
``1 - mask_ratio`` of them (per-sample shuffle by argsort of uniform noise, ``random_masking``);
the ViT encoder sees the visible patches (+ CLS) only; a light decoder gets the encoded visible
tokens back at their places, a shared learnt mask token everywhere else, and predicts every
patch's pixels. With t the patch's pixels, normalised per patch when ``norm_pix_loss``
(``(t - mean(t)) / sqrt(var(t) + 1e-6)``, unbiased var as ``torch.var``)::

    L = sum_i m_i * mean_pixels((pred_i - t_i)^2) / sum_i m_i         (m_i = 1: patch i masked)

Encoder and decoder position embeddings are fixed 2-D sine-cosine tables (CLS position 0);
Linear layers are Xavier-uniform, LayerNorms (1, 0), the patch projection Xavier as a Linear,
CLS and mask token N(0, 0.02), as ``MaskedAutoencoderViT.initialize_weights``. Weight decay
skips biases and 1-D parameters (timm ``param_groups_weight_decay``, as ``main_pretrain.py``).

Randomness: the masks come from the method's own generator, seeded from (``mask_seed``,
``mask_step``), both buffers: a resumed run draws the masks an uninterrupted one would, and the
validation loss uses the same masks every epoch (seeded by the batch's videos).
"""

from __future__ import annotations

from functools import partial

import torch
from timm.models.vision_transformer import Block
from torch import nn

from hico.methods.base import PretrainMethod
from hico.registry import register_method


def sincos_2d(dim: int, grid_h: int, grid_w: int, n_prefix: int = 1) -> torch.Tensor:
    """Fixed 2-D sine-cosine position table ``[1, n_prefix + grid_h * grid_w, dim]``.

    Patch (r, c) in row-major order; the first half of the channels encodes c, the second r,
    each half as ``[sin(pos * w_k), cos(pos * w_k)]`` with ``w_k = 10000^(-k / (dim / 4))``,
    k < dim / 4 (MAE's ``get_2d_sincos_pos_embed``); prefix (CLS) rows are zeros.
    """
    if dim % 4:
        raise ValueError(f"a 2-D sine-cosine table needs a width divisible by 4, got {dim}")
    quarter = dim // 4
    omega = 1.0 / 10000 ** (torch.arange(quarter, dtype=torch.float64) / quarter)  # [dim/4]
    rows, cols = torch.meshgrid(torch.arange(grid_h, dtype=torch.float64),
                                torch.arange(grid_w, dtype=torch.float64), indexing="ij")

    def encode(pos: torch.Tensor) -> torch.Tensor:
        angle = pos.reshape(-1, 1) * omega  # [N, dim/4]
        return torch.cat([angle.sin(), angle.cos()], dim=1)  # [N, dim/2]

    table = torch.cat([encode(cols), encode(rows)], dim=1)  # [N, dim]
    table = torch.cat([torch.zeros(n_prefix, dim, dtype=torch.float64), table])
    return table.float().unsqueeze(0)


def patchify(images: torch.Tensor, patch: int) -> torch.Tensor:
    """``[B, C, H, W]`` -> ``[B, (H/p)(W/p), p*p*C]``: patches row-major, pixels (row, col,
    channel) within a patch (MAE's ``patchify``)."""
    b, c, h, w = images.shape
    if h % patch or w % patch:
        raise ValueError(f"patchify: image {h}x{w} is not a multiple of the patch size {patch}")
    x = images.reshape(b, c, h // patch, patch, w // patch, patch)
    return x.permute(0, 2, 4, 3, 5, 1).reshape(b, (h // patch) * (w // patch), patch * patch * c)


def random_masking(tokens: torch.Tensor, mask_ratio: float, noise: torch.Tensor):
    """Keep ``int(L * (1 - mask_ratio))`` tokens per sample: those with the smallest ``noise``.

    ``tokens`` [B, L, D], ``noise`` [B, L] -> (kept [B, keep, D] in ascending-noise order,
    mask [B, L] (1 = masked), ids_restore [B, L] that undoes the shuffle).
    """
    b, length, d = tokens.shape
    keep = int(length * (1 - mask_ratio))
    ids_shuffle = torch.argsort(noise, dim=1)  # ascending: small noise is kept
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    kept = torch.gather(tokens, 1, ids_shuffle[:, :keep].unsqueeze(-1).expand(-1, -1, d))
    mask = torch.ones(b, length, device=tokens.device)
    mask[:, :keep] = 0
    return kept, torch.gather(mask, 1, ids_restore), ids_restore


def masked_patch_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
                      norm_pix: bool = True) -> torch.Tensor:
    """Mean over masked patches of the per-patch mean squared error (``forward_loss``)."""
    target = target.float()
    if norm_pix:
        mean = target.mean(dim=-1, keepdim=True)
        var = target.var(dim=-1, keepdim=True)
        target = (target - mean) / (var + 1e-6) ** 0.5
    per_patch = ((pred.float() - target) ** 2).mean(dim=-1)  # [B, L]
    return (per_patch * mask).sum() / mask.sum()


@register_method("mae")
class MAE(PretrainMethod):
    """Masked autoencoder on a timm ViT; defaults are the paper's (75 % masking, a 512-wide,
    8-block, 16-head decoder, normalised-pixel targets)."""

    backbone_kinds = ("vit",)
    backbone_requirement = (
        "MAE masks patch tokens, and a CNN has none: use a timm ViT "
        "(vit_tiny_patch16_224, vit_small_patch16_224, vit_small_patch8_224, ...)."
    )

    def __init__(self, mask_ratio: float = 0.75, decoder_dim: int = 512, decoder_depth: int = 8,
                 decoder_heads: int = 16, mlp_ratio: float = 4.0, norm_pix_loss: bool = True,
                 **base):
        if not 0.0 < mask_ratio < 1.0:
            raise ValueError(f"mae: mask_ratio must be in (0, 1), got {mask_ratio}")
        if decoder_depth < 1 or decoder_heads < 1 or decoder_dim % decoder_heads or decoder_dim % 4:
            raise ValueError(f"mae: need decoder_depth, decoder_heads >= 1 and decoder_dim divisible by "
                             f"decoder_heads and by 4, got {decoder_dim}, {decoder_depth}, {decoder_heads}")
        super().__init__(**base)
        enc = self.backbone
        self.mask_ratio, self.norm_pix_loss = float(mask_ratio), bool(norm_pix_loss)
        self.patch, self.grid = enc.patch_size, self.image_size // enc.patch_size
        n_prefix = enc.num_prefix_tokens
        if self.grid * self.patch != self.image_size:
            raise ValueError(f"mae: image_size {self.image_size} is not a multiple of the patch size {self.patch}")
        if int(self.grid ** 2 * (1 - self.mask_ratio)) < 1:
            raise ValueError(f"mae: {self.grid ** 2} patches at mask_ratio {mask_ratio} leave none visible")
        norm = partial(nn.LayerNorm, eps=1e-6)
        self.decoder_embed = nn.Linear(enc.num_features, decoder_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_dim))
        self.decoder_blocks = nn.Sequential(*[Block(decoder_dim, decoder_heads, mlp_ratio, qkv_bias=True,
                                                    norm_layer=norm) for _ in range(decoder_depth)])
        self.decoder_norm = norm(decoder_dim)
        self.decoder_pred = nn.Linear(decoder_dim, self.patch ** 2 * 3)
        self.register_buffer("decoder_pos_embed", sincos_2d(decoder_dim, self.grid, self.grid, n_prefix))
        self.register_buffer("mask_seed", torch.tensor(torch.initial_seed() % 2**62, dtype=torch.long))
        self.register_buffer("mask_step", torch.zeros((), dtype=torch.long))
        self._init_weights()

    def _init_weights(self) -> None:
        vit = self.backbone.body
        if vit.pos_embed is not None:  # fixed sine-cosine, frozen (exported like any weight)
            n_pos_prefix = vit.pos_embed.shape[1] - self.grid ** 2
            with torch.no_grad():
                vit.pos_embed.copy_(sincos_2d(vit.pos_embed.shape[-1], self.grid, self.grid, n_pos_prefix))
            vit.pos_embed.requires_grad_(False)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        proj = vit.patch_embed.proj.weight
        nn.init.xavier_uniform_(proj.data.view(proj.shape[0], -1))
        for token in (vit.cls_token, vit.reg_token, self.mask_token):
            if token is not None:
                nn.init.normal_(token, std=0.02)

    def _noise(self, x: torch.Tensor, video_idx: torch.Tensor | None, train: bool) -> torch.Tensor:
        gen = torch.Generator(device=x.device)
        if train:
            seed = int(self.mask_seed) * 1_000_003 + int(self.mask_step)
        else:  # the same masks at every validation pass
            seed = int(self.mask_seed) * 7_919 + 1 + (int(video_idx.sum()) if video_idx is not None else 0)
        gen.manual_seed(seed % 2**63)
        return torch.rand(x.shape[0], self.grid ** 2, device=x.device, generator=gen)

    def reconstruct(self, x: torch.Tensor, noise: torch.Tensor):
        """One image batch ``x`` [B, 3, S, S] with masking ``noise`` [B, L] -> (loss, pred
        [B, L, p*p*3], mask [B, L]): ``forward_encoder``, ``forward_decoder``, ``forward_loss``."""
        enc = self.backbone
        prefix, patches = enc.embed_tokens(x)  # [B, P, D], [B, L, D] with position embeddings
        kept, mask, ids_restore = random_masking(patches, self.mask_ratio, noise)
        latent = enc.encode_tokens(torch.cat([prefix, kept], dim=1))  # [B, P + keep, D]
        y = self.decoder_embed(latent)  # [B, P + keep, Dd]
        n_prefix, b, dd = prefix.shape[1], y.shape[0], y.shape[-1]
        masked = self.mask_token.expand(b, ids_restore.shape[1] - kept.shape[1], -1)
        tokens = torch.cat([y[:, n_prefix:], masked.to(y.dtype)], dim=1)  # shuffled order
        tokens = torch.gather(tokens, 1, ids_restore.unsqueeze(-1).expand(-1, -1, dd))  # image order
        y = torch.cat([y[:, :n_prefix], tokens], dim=1) + self.decoder_pos_embed
        pred = self.decoder_pred(self.decoder_norm(self.decoder_blocks(y)))[:, n_prefix:]  # [B, L, p*p*3]
        loss = masked_patch_loss(pred, patchify(x, self.patch), mask, self.norm_pix_loss)
        return loss, pred, mask

    def training_step(self, batch):
        x = batch["views"][0]  # [B, 3, S, S]: one crop + flip of one frame per video
        loss, _, mask = self.reconstruct(x, self._noise(x, batch.get("video_idx"), train=self.training))
        if self.training:
            self.mask_step += 1
        return {"loss": loss, "masked_fraction": mask.mean().detach()}

    @torch.no_grad()
    def validation_step(self, batch):
        x = batch["views"][0]
        loss, _, _ = self.reconstruct(x, self._noise(x, batch.get("video_idx"), train=False))
        return {"loss": loss}

    def param_groups(self):
        decay, no_decay = [], []
        for name, p in self.named_parameters():
            if p.requires_grad:
                (no_decay if p.ndim <= 1 or name.endswith(".bias") else decay).append(p)
        return [{"params": decay}, {"params": no_decay, "weight_decay": 0.0}]

"""MAE, DINO and Meta-USCL against hand-written references of their released code on fixed
tensors (masking, patchify, sine-cosine table and loss of ``models_mae.py``; ``DINOLoss`` and its
centre; ``loss.py`` ``InfoNCE``, MetaSGD's virtual step and CMW-Net's Adam of ``train.py``), plus
their samplers (``multi_crop``, ``ppi_mixup``) and the state that must resume.

The generic registry tests (``tests/test_methods.py``) also run all three from their recipes on
ResNet-18 and a tiny ViT.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hico.config import resolve_pretrain_config
from hico.data.pairs import build_sampler
from hico.data.transforms import AugmentConfig, FrameAugment
from hico.methods.base import build_method
from hico.train import build_optimizer

VIT = "vit_tiny_patch16_224"
IDENTITY = {"crop_scale": [1, 1], "crop_ratio": [1, 1], "hflip_p": 0, "brightness": 0, "contrast": 0,
            "mean": 0.0, "std": 1.0}


def build(name, size=32, backbone=VIT, seed=0, batch=4, **params):
    cfg = resolve_pretrain_config(name, {"image_size": size, "batch_size": batch, "backbone": backbone,
                                         "pretrained": False}, {"params": params} if params else None)
    torch.manual_seed(seed)
    model = build_method(name, cfg.params, backbone=backbone, pretrained=False, num_classes=0, image_size=size)
    return cfg, model


# ================================================================ MAE


def reference_patchify(imgs, p):
    """models_mae.py patchify, written out: reshape then einsum('nchpwq->nhwpqc')."""
    n, c, h, w = imgs.shape
    x = imgs.reshape(n, c, h // p, p, w // p, p)
    return torch.einsum("nchpwq->nhwpqc", x).reshape(n, (h // p) * (w // p), p * p * c)


def reference_sincos(dim, grid):
    """util/pos_embed.py get_2d_sincos_pos_embed(cls_token=True), in numpy float64."""

    def one_d(d, pos):
        omega = 1.0 / 10000 ** (np.arange(d // 2, dtype=np.float64) / (d / 2.0))
        out = np.einsum("m,d->md", pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    gw, gh = np.meshgrid(np.arange(grid, dtype=np.float64), np.arange(grid, dtype=np.float64))  # w first
    emb = np.concatenate([one_d(dim // 2, gw), one_d(dim // 2, gh)], axis=1)
    return np.concatenate([np.zeros((1, dim)), emb])


def test_patchify_and_sincos_match_the_reference():
    from baselines.mae import patchify, sincos_2d

    imgs = torch.randn(2, 3, 32, 48)
    torch.testing.assert_close(patchify(imgs, 16), reference_patchify(imgs, 16), rtol=0, atol=0)
    # pixel (row 17, col 5, channel 1) is patch (1, 0), position (1, 5) inside it
    assert patchify(imgs, 16)[0, 3, (1 * 16 + 5) * 3 + 1] == imgs[0, 1, 17, 5]
    for dim, grid in ((192, 4), (512, 14)):
        table = sincos_2d(dim, grid, grid, n_prefix=1)
        assert table.shape == (1, 1 + grid * grid, dim)
        np.testing.assert_allclose(table[0].numpy(), reference_sincos(dim, grid), rtol=0, atol=1e-6)


@pytest.mark.parametrize(("length", "masked"), [(4, 3), (16, 12), (64, 48), (196, 147)])
def test_random_masking_hides_75_percent_and_keeps_the_lowest_noise(length, masked):
    from baselines.mae import random_masking

    g = torch.Generator().manual_seed(length)
    tokens = torch.randn(3, length, 5, generator=g)
    noise = torch.rand(3, length, generator=g)
    kept, mask, ids_restore = random_masking(tokens, 0.75, noise)
    keep = length - masked
    assert kept.shape == (3, keep, 5) and mask.shape == (3, length)
    assert mask.sum(dim=1).tolist() == [masked] * 3  # 75 %, as int(L * 0.25) kept
    for b in range(3):  # the kept tokens are those of the `keep` smallest noise values, in that order
        order = sorted(range(length), key=lambda i: noise[b, i].item())[:keep]
        torch.testing.assert_close(kept[b], tokens[b, order], rtol=0, atol=0)
        assert {i for i in range(length) if mask[b, i] == 0} == set(order)
        # ids_restore undoes the shuffle: shuffled[ids_restore] is the identity
        shuffled = torch.argsort(noise[b])
        assert torch.equal(shuffled[ids_restore[b]], torch.arange(length))


def test_mae_encoder_sees_only_visible_patches_and_the_loss_is_the_hand_computed_one():
    cfg, model = build("mae", size=64)
    model.train()
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    seen = []
    hook = model.backbone.body.blocks[0].register_forward_pre_hook(lambda m, a: seen.append(a[0].shape))
    noise = torch.rand(2, 16, generator=torch.Generator().manual_seed(2))
    loss, pred, mask = model.reconstruct(x, noise)
    hook.remove()
    assert seen == [torch.Size([2, 1 + 4, 192])]  # CLS + 4 of 16 patches
    assert pred.shape == (2, 16, 16 * 16 * 3) and mask.sum().item() == 2 * 12

    # by hand: per patch, normalise the target pixels (unbiased variance), squared error averaged
    # over the patch's pixels, then averaged over the masked patches only
    total, count = 0.0, 0
    for b in range(2):
        for i in range(16):
            r, c = divmod(i, 4)
            target = x[b, :, 16 * r:16 * (r + 1), 16 * c:16 * (c + 1)].permute(1, 2, 0).reshape(-1).double()
            target = (target - target.mean()) / (target.var(unbiased=True) + 1e-6).sqrt()
            if mask[b, i] == 1:
                total += float(((pred[b, i].detach().double() - target) ** 2).mean())
                count += 1
    assert count == 24
    assert float(loss) == pytest.approx(total / count, rel=1e-5)
    raw = build("mae", size=64, norm_pix_loss=False)[1].reconstruct(x, noise)
    want = ((raw[1] - reference_patchify(x, 16)) ** 2).mean(-1)
    assert float(raw[0]) == pytest.approx(float((want * raw[2]).sum() / raw[2].sum()), rel=1e-6)


def test_mae_follows_the_released_initialisation_and_weight_decay_groups():
    from baselines.mae import sincos_2d

    _, model = build("mae", size=64)
    vit = model.backbone.body
    assert not vit.pos_embed.requires_grad
    torch.testing.assert_close(vit.pos_embed, sincos_2d(192, 4, 4, 1), rtol=0, atol=0)
    torch.testing.assert_close(model.decoder_pos_embed, sincos_2d(512, 4, 4, 1), rtol=0, atol=0)
    assert len(model.decoder_blocks) == 8 and model.decoder_pred.out_features == 16 * 16 * 3
    bound = math.sqrt(6 / (192 + 3 * 192))  # xavier_uniform of the first qkv Linear
    qkv = vit.blocks[0].attn.qkv.weight
    assert qkv.abs().max() <= bound and qkv.abs().max() > 0.9 * bound
    assert torch.count_nonzero(vit.blocks[0].attn.qkv.bias) == 0
    decay, no_decay = model.param_groups()
    assert no_decay["weight_decay"] == 0.0 and "weight_decay" not in decay
    ids = lambda ps: {id(p) for p in ps}  # noqa: E731
    assert id(vit.blocks[0].norm1.weight) in ids(no_decay["params"])
    assert id(vit.blocks[0].attn.qkv.bias) in ids(no_decay["params"])
    assert id(qkv) in ids(decay["params"]) and id(model.mask_token) in ids(decay["params"])
    assert id(vit.pos_embed) not in ids(decay["params"]) | ids(no_decay["params"])


def test_mae_masks_resume_exactly_and_validation_masks_are_fixed():
    cfg, model = build("mae", size=32)
    batch = {"views": [torch.randn(4, 3, 32, 32)], "video_idx": torch.arange(4)}
    model.train()
    first = model.training_step(batch)["loss"]
    second = model.training_step(batch)["loss"]
    assert int(model.mask_step) == 2 and not torch.equal(first, second)  # a new mask every step
    _, other = build("mae", size=32, seed=9)
    other.load_state_dict(model.state_dict())
    other.train()
    assert torch.equal(model.training_step(batch)["loss"], other.training_step(batch)["loss"])
    model.eval()
    with torch.no_grad():
        v1, v2 = model.validation_step(batch)["loss"], model.validation_step(batch)["loss"]
    assert torch.equal(v1, v2) and int(model.mask_step) == 3


def test_mae_rejects_bad_params():
    with pytest.raises(ValueError, match="mask_ratio"):
        build("mae", mask_ratio=1.0)
    with pytest.raises(ValueError, match="divisible"):
        build("mae", decoder_dim=100, decoder_heads=16)


# ================================================================ DINO


def reference_dino_loss(student, teacher, center, t_temp, s_temp=0.1, n_global=2):
    """DINOLoss.forward, written out sample by sample."""
    n_crops, b = len(student), student[0].shape[0]
    total, terms = 0.0, 0
    for iq in range(n_global):
        for v in range(n_crops):
            if v == iq:
                continue
            per_sample = []
            for s in range(b):
                q = torch.softmax((teacher[iq][s].double() - center[0].double()) / t_temp, dim=0)
                log_p = torch.log_softmax(student[v][s].double() / s_temp, dim=0)
                per_sample.append(-(q * log_p).sum())
            total += sum(per_sample) / b
            terms += 1
    return total / terms


def test_dino_loss_matches_the_reference_on_fixed_tensors():
    from baselines.dino import dino_loss

    g = torch.Generator().manual_seed(0)
    student = [torch.randn(3, 7, generator=g) for _ in range(4)]  # 2 global + 2 local crops
    teacher = [torch.randn(3, 7, generator=g) for _ in range(2)]
    center = torch.randn(1, 7, generator=g) * 0.1
    for t_temp in (0.04, 0.07):
        got = dino_loss(student, teacher, center, t_temp, 0.1)
        want = reference_dino_loss(student, teacher, center, t_temp)
        assert float(got) == pytest.approx(float(want), rel=1e-6)
    # the student's view of the teacher's own crop is skipped: with one global crop and the
    # student seeing it plus one more crop, only that other crop is a term
    other = torch.randn(3, 7, generator=g)
    lone = dino_loss([student[0], other], teacher[:1], center, 0.05, 0.1)
    want = reference_dino_loss([torch.full((3, 7), float("nan")), other], teacher[:1], center, 0.05, n_global=1)
    assert float(lone) == pytest.approx(float(want), rel=1e-5)


def test_dino_centre_update_matches_the_reference():
    from baselines.dino import updated_center

    center = torch.tensor([[0.5, -1.0, 2.0]])
    teacher = torch.tensor([[1.0, 2.0, 3.0], [3.0, 0.0, -1.0], [2.0, 1.0, 4.0], [-2.0, 1.0, 2.0]])
    # batch mean [1, 1, 2]: 0.9 * [0.5, -1, 2] + 0.1 * [1, 1, 2]
    torch.testing.assert_close(updated_center(center, teacher, 0.9), torch.tensor([[0.55, -0.8, 2.0]]))
    torch.testing.assert_close(updated_center(center, teacher, 0.0), teacher.mean(dim=0, keepdim=True))


def test_dino_step_uses_teacher_on_globals_and_updates_the_centre():
    from baselines.dino import dino_loss

    cfg, model = build("dino", out_dim=64, hidden_dim=32, bottleneck_dim=16, drop_path_rate=0.0)
    sampler = build_sampler(cfg.sampler)
    augment = FrameAugment(AugmentConfig.from_dict(cfg.augment, 32))
    frames = torch.randint(0, 256, (4, 1, 32, 32), dtype=torch.uint8)
    views, _ = sampler.make_views(frames, {}, augment, torch.Generator().manual_seed(0))
    assert len(views) == 10 and views[2].shape[-1] == 16
    model.train()
    center0 = model.center.clone()
    out = model.training_step({"views": views})
    with torch.no_grad():
        teacher = model.teacher_head(model.teacher_backbone(torch.cat(views[:2])))
        student = [model.head(model.backbone(v)) for v in views]
    want = dino_loss(student, list(teacher.chunk(2)), center0, 0.04, 0.1)
    torch.testing.assert_close(out["loss"].detach(), want, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(model.center, 0.9 * center0 + 0.1 * teacher.mean(0, keepdim=True))
    assert int(model.step) == 1 and model.encoder() is model.teacher_backbone


def test_dino_teacher_temperature_and_last_layer_follow_epochs():
    from baselines.dino import teacher_temperature

    assert teacher_temperature(0, 0.04, 0.07, 30) == pytest.approx(0.04)
    assert teacher_temperature(29, 0.04, 0.07, 30) == pytest.approx(0.07)
    assert teacher_temperature(10, 0.04, 0.07, 30) == pytest.approx(np.linspace(0.04, 0.07, 30)[10])
    assert teacher_temperature(100, 0.04, 0.07, 30) == 0.07
    assert teacher_temperature(0, 0.04, 0.07, 0) == 0.07

    cfg, model = build("dino", out_dim=32, hidden_dim=16, bottleneck_dim=8, backbone="resnet18")
    model.fit_to_data(n_train_videos=10, batch_size=4)  # 2 steps per epoch
    v = model.head.last_layer.parametrizations.weight.original1
    views = [torch.randn(4, 3, 32, 32) for _ in range(2)] + [torch.randn(4, 3, 16, 16) for _ in range(2)]
    model.train()
    for step in range(3):
        model.zero_grad(set_to_none=True)
        out = model.training_step({"views": views})
        out["loss"].backward()
        frozen = step < 2  # epoch 0: the last layer gets no gradient
        assert (v.grad is None) == frozen, step
        assert float(out["teacher_temp"]) == pytest.approx(teacher_temperature(step // 2, 0.04, 0.07, 30))


def test_dino_clips_each_gradient_to_norm_3():
    _, model = build("dino", out_dim=32, hidden_dim=16, bottleneck_dim=8, backbone="resnet18")
    views = [torch.randn(4, 3, 32, 32) for _ in range(2)]
    model.train()
    (model.training_step({"views": views})["loss"] * 1e4).backward()  # large gradients
    norms = [float(p.grad.norm()) for p in model.head.parameters() if p.grad is not None]
    assert norms and max(norms) <= 3.0 + 1e-4 and max(norms) > 2.9
    _, free = build("dino", out_dim=32, hidden_dim=16, bottleneck_dim=8, backbone="resnet18", clip_grad=0.0)
    (free.training_step({"views": views})["loss"] * 1e4).backward()
    assert max(float(p.grad.norm()) for p in free.head.parameters() if p.grad is not None) > 3.0


def test_dino_teacher_is_the_ema_and_has_no_drop_path():
    from timm.layers import DropPath

    _, model = build("dino", out_dim=32, hidden_dim=16, bottleneck_dim=8)
    blocks = model.backbone.body.blocks
    assert isinstance(blocks[-1].drop_path1, DropPath) and blocks[-1].drop_path1.drop_prob == pytest.approx(0.1)
    assert not isinstance(blocks[0].drop_path1, DropPath)  # linspace(0, 0.1, depth)[0] = 0
    assert all(not isinstance(b.drop_path1, DropPath) for b in model.teacher_backbone.body.blocks)
    with torch.no_grad():
        model.head.mlp[0].weight.add_(1.0)
    t, s = model.teacher_head.mlp[0].weight.clone(), model.head.mlp[0].weight.clone()
    model.after_step(0.5)
    torch.testing.assert_close(model.teacher_head.mlp[0].weight, 0.998 * t + 0.002 * s)


def test_multi_crop_sizes_and_per_view_augmentation():
    sampler = build_sampler({"name": "multi_crop", "n_local": 3, "global_blur_p": [0, 0],
                             "global_solarize_p": [0, 1], "local_blur_p": 0})
    assert [sampler.local_size(s) for s in (224, 128, 64, 32)] == [96, 48, 32, 16]
    frames = torch.stack([torch.arange(32 * 32).reshape(1, 32, 32) % 256]).to(torch.uint8).repeat(2, 1, 1, 1)
    augment = FrameAugment(AugmentConfig.from_dict(IDENTITY, 32))
    views, weights = sampler.make_views(frames, {}, augment)
    assert weights is None and [v.shape[-1] for v in views] == [32, 32, 16, 16, 16]
    x = frames[:, 0].float().div(255)
    torch.testing.assert_close(views[0][:, 0], x)
    torch.testing.assert_close(views[1][:, 0], torch.where(x >= 128 / 255, 1 - x, x))  # solarised
    with pytest.raises(ValueError, match="one value per global view"):
        build_sampler({"name": "multi_crop", "n_global": 2, "global_blur_p": [1.0]})
    with pytest.raises(TypeError, match="FrameAugment"):
        sampler.make_views(frames, {}, lambda f, g=None: f)


# ================================================================ Meta-USCL


def reference_info_nce(zl, zr, temperature, weights=None):
    """loss.py InfoNCE.forward: [zr; zl], cosine 2N x 2N, positives on the +-N diagonals,
    per-row cross entropy, dot with [w; w] / sum (or 1 / 2N)."""
    n = zl.shape[0]
    reps = torch.cat([F.normalize(zr, dim=1), F.normalize(zl, dim=1)]).double()
    sim = reps @ reps.T
    pos = torch.cat([torch.diagonal(sim, n), torch.diagonal(sim, -n)]).view(2 * n, 1)
    rows = torch.arange(2 * n)
    keep = torch.ones(2 * n, 2 * n, dtype=torch.bool)
    keep[rows, rows] = False  # self
    keep[rows, (rows + n) % (2 * n)] = False  # the partner view (upper and lower diagonals)
    logits = torch.cat([pos, sim[keep].view(2 * n, -1)], dim=1) / temperature
    ce = F.cross_entropy(logits, torch.zeros(2 * n, dtype=torch.long), reduction="none")
    w = torch.full((2 * n,), 1 / (2 * n), dtype=torch.float64) if weights is None else \
        torch.cat([weights, weights]).double() / torch.cat([weights, weights]).double().sum()
    return torch.dot(ce, w)


def test_weighted_info_nce_matches_the_reference():
    from baselines.meta_uscl import weighted_info_nce

    g = torch.Generator().manual_seed(0)
    zl, zr = torch.randn(5, 8, generator=g), torch.randn(5, 8, generator=g)
    w = torch.rand(5, generator=g)
    assert float(weighted_info_nce(zl, zr, 0.5)) == pytest.approx(float(reference_info_nce(zl, zr, 0.5)), rel=1e-6)
    assert float(weighted_info_nce(zl, zr, 0.5, w)) == pytest.approx(float(reference_info_nce(zl, zr, 0.5, w)),
                                                                     rel=1e-6)


def test_ppi_sampler_orders_frames_and_mixes_raw_pixels():
    sampler = build_sampler({"name": "ppi_mixup"})
    rng = np.random.default_rng(0)
    for _ in range(200):
        (i0, i1, i2, clean), extras = sampler.choose(12, rng)
        assert 0 <= i0 < i1 < i2 < 12 and clean == 0
        assert 0 < extras["alpha"] < 1 and 0 < extras["beta"] < 1
    near = build_sampler({"name": "ppi_mixup", "max_dist": 2})
    for _ in range(50):
        (i0, i1, i2, _), _ = near.choose(12, rng)
        assert (i1 - i0, i2 - i0) == (1, 2)
    (a, b, c, _), ex = sampler.choose(2, rng)
    assert (a, b) == (0, 1) and b == c and (ex["alpha"], ex["beta"]) == (0.0, 1.0)
    assert sampler.choose(1, rng)[0] == [0, 0, 0, 0]

    frames = torch.randint(0, 256, (2, 4, 8, 8), dtype=torch.uint8)
    extras = {"alpha": torch.tensor([0.3, 0.0]), "beta": torch.tensor([0.6, 1.0])}
    augment = FrameAugment(AugmentConfig.from_dict(IDENTITY, 8))
    views, _ = sampler.make_views(frames, extras, augment)
    f = frames.double()
    a, b = (float(extras[k][0]) for k in ("alpha", "beta"))  # as collated: float32
    left = torch.floor((1 - a) * f[0, 0] + a * f[0, 1])  # np.uint8 truncation of the float64 mix
    right = torch.floor(b * f[0, 1] + (1 - b) * f[0, 2])
    torch.testing.assert_close(views[0][0, 0].double() * 255, left, atol=1e-3, rtol=0)
    torch.testing.assert_close(views[1][0, 0].double() * 255, right, atol=1e-3, rtol=0)
    torch.testing.assert_close(views[0][1, 0].double() * 255, f[1, 0], atol=1e-3, rtol=0)  # alpha 0
    torch.testing.assert_close(views[2][0, 0].double() * 255, f[0, 3], atol=1e-3, rtol=0)  # clean pair
    assert len(views) == 4 and len(sampler.make_val_views(frames, extras, augment)[0]) == 2


def test_cmw_adam_is_torch_adam():
    _, model = build("meta_uscl", backbone="resnet18")
    ref = [p.detach().clone().requires_grad_(True) for p in model.cmw.parameters()]
    adam = torch.optim.Adam(ref, lr=6e-5)
    g = torch.Generator().manual_seed(0)
    for _ in range(3):
        grads = [torch.randn(p.shape, generator=g) for p in ref]
        for p, gr in zip(ref, grads):
            p.grad = gr.clone()
        adam.step()
        model._adam_step(grads)
    for mine, want in zip(model.cmw.parameters(), ref):
        torch.testing.assert_close(mine, want, rtol=1e-6, atol=1e-9)
    assert int(model.cmw_step) == 3


def test_meta_uscl_mirrors_the_loops_sgd_step():
    cfg, model = build("meta_uscl", backbone="resnet18")
    optimizer = build_optimizer(model, cfg, torch.device("cpu"))
    assert {id(p) for p in optimizer.param_groups[0]["params"]}.isdisjoint({id(p) for p in model.cmw.parameters()})
    g = torch.Generator().manual_seed(0)
    model.train()
    for step, lr in enumerate((0.1, 0.05, 0.02)):  # a schedule: the mirror must follow it
        optimizer.param_groups[0]["lr"] = lr
        out = model.training_step({"views": [torch.randn(4, 3, 32, 32, generator=g) for _ in range(4)]})
        optimizer.zero_grad(set_to_none=True)
        out["loss"].backward()
        optimizer.step()
        model.after_step((step + 1) / 3)
        assert float(model.virtual_lr) == pytest.approx(lr, rel=1e-5)
    for p, buf in zip(model._main_params(), model._momentum_buffers()):
        assert torch.equal(optimizer.state[p]["momentum_buffer"], buf)  # bitwise
    assert int(model.main_steps) == 3


def test_meta_gradient_matches_finite_differences():
    """The second-order path: d(clean-pair loss after the virtual step) / d(CMW-Net) in float64."""
    _, model = build("meta_uscl", backbone="resnet18")
    model = model.double().train()
    model.virtual_lr.fill_(0.5)
    model.main_steps.fill_(1)  # use the momentum term too
    g = torch.Generator().manual_seed(0)
    for buf in model._momentum_buffers():
        buf.copy_(torch.randn(buf.shape, generator=g, dtype=torch.float64) * 1e-2)
    x_l, x_r, m_l, m_r = (torch.randn(4, 3, 32, 32, generator=g, dtype=torch.float64) for _ in range(4))
    w = model.cmw.fc2.weight

    def objective():
        h_l, z_l = model._features(x_l)
        h_r, z_r = model._features(x_r)
        return model.meta_objective(torch.cat([h_l, h_r], 1), z_l, z_r, [m_l, m_r])

    (grad,) = torch.autograd.grad(objective(), [w])
    direction = torch.randn(w.shape, generator=g, dtype=torch.float64)
    eps = 1e-6  # the objective has kinks (ReLU, max-pool): a small step stays between them
    with torch.no_grad():
        w.add_(eps * direction)
    plus = float(objective())
    with torch.no_grad():
        w.sub_(2 * eps * direction)
    minus = float(objective())
    fd = (plus - minus) / (2 * eps)
    assert abs(float((grad * direction).sum())) > 1e-8
    assert float((grad * direction).sum()) == pytest.approx(fd, rel=1e-6)


def test_meta_step_moves_only_cmw_and_batchnorm_once():
    _, model = build("meta_uscl", backbone="resnet18")
    _, plain = build("meta_uscl", backbone="resnet18", meta=False)
    plain.load_state_dict(model.state_dict())
    model.train(), plain.train()
    views = [torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(i)) for i in range(4)]
    cmw_before = [p.detach().clone() for p in model.cmw.parameters()]
    out = model.training_step({"views": views})
    ref = plain.training_step({"views": views})
    assert set(out) == {"loss", "meta_loss", "meta_held_out", "mean_weight"} and set(ref) == {"loss"}
    assert float(out["meta_held_out"]) == 0.0
    assert any(not torch.equal(a, b) for a, b in zip(cmw_before, model.cmw.parameters()))
    for (name, a), b in zip(model.backbone.state_dict().items(), plain.backbone.state_dict().values()):
        assert torch.equal(a, b), name  # weights untouched, BN statistics moved once per view
    held = model.training_step({"views": views[:2], "meta_views": views[2:]})
    assert float(held["meta_held_out"]) == 1.0
    with pytest.raises(ValueError, match="no clean pairs"):
        model.training_step({"views": views[:2]})


def test_dino_counts_global_crops_from_the_view_sizes():
    _, model = build("dino", out_dim=16, hidden_dim=8, bottleneck_dim=4, backbone="resnet18")
    model.train()
    three = [torch.randn(2, 3, 32, 32) for _ in range(3)] + [torch.randn(2, 3, 16, 16)]
    out = model.training_step({"views": three})  # 3 globals: 3 x 3 terms
    assert torch.isfinite(out["loss"])
    with pytest.raises(ValueError, match="two or more views"):
        model.training_step({"views": [torch.randn(2, 3, 32, 32)]})

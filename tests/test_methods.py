"""Every registered pretraining method, one tiny step each (timm's ``test_models.py`` habit).

The generic tests are parametrized over ``list_methods(include_controls=False)`` x the backbones
``resnet18`` and ``vit_tiny_patch16_224`` (2 x 2 patches at 32 px), so a method added as
``<name>.py`` + ``<name>.yaml`` is tested on a CNN and a ViT without writing a test. Each builds
the method from its own recipe at 32 px (batch 4, 3 classes, some videos unlabelled) and makes the
views with the recipe's own sampler and augmentation from random uint8 videos of uneven length
(24, 12, 3 and 1 frames, so the samplers' short-video fallbacks run too). A method that declares a
backbone kind unsupported (``backbone_kinds``: HiCo needs a pyramid, MAE patch tokens) is tested to
refuse it with an ``UnsupportedBackboneError`` that names the backbone and what to use.

Method-specific tests below: MoCo v2's queue and momentum state, BYOL's tau schedule,
SimSiam's predictor group, UCL's sampler and curriculum, USCL's label handling.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from hico.config import resolve_pretrain_config
from hico.data.pairs import build_sampler
from hico.data.transforms import AugmentConfig, FrameAugment
from hico.methods.base import UnsupportedBackboneError, build_method
from hico.models.backbone import backbone_kind
from hico.registry import get_method, list_methods
from hico.train import build_optimizer

METHODS = list_methods(include_controls=False)
BACKBONES = ("resnet18", "vit_tiny_patch16_224")  # a CNN and the smallest timm ViT


def _supports(name: str, backbone: str) -> bool:
    return backbone_kind(backbone) in get_method(name).backbone_kinds


CASES = [(m, b) for m in METHODS for b in BACKBONES if _supports(m, b)]
REFUSED = [(m, b) for m in METHODS for b in BACKBONES if not _supports(m, b)]
SIZE, NUM_CLASSES = 32, 3
VIDEO_LENGTHS = (24, 12, 3, 1)  # batch 4
LABELS = torch.tensor([0, 2, -1, 1])  # one unlabelled video
TINY = {"image_size": SIZE, "batch_size": len(VIDEO_LENGTHS), "pretrained": False, "weights": None}
CPU = torch.device("cpu")


def build(name: str, seed: int = 0, backbone: str = "resnet18", **overrides):
    """(config, method) from the shipped recipe at tiny size on ``backbone``; ``overrides`` go
    into ``params``."""
    cfg = resolve_pretrain_config(name, {**TINY, "backbone": backbone}, {"params": overrides} if overrides else None)
    torch.manual_seed(seed)
    model = build_method(name, cfg.params, backbone=cfg.backbone, pretrained=False, weights=None,
                         num_classes=NUM_CLASSES, image_size=cfg.image_size)
    return cfg, model


def make_batch(cfg, seed: int = 0, val: bool = False, video_idx=None) -> dict:
    """A batch as the shared loop builds it: sampler.choose per video, then make_views."""
    sampler = build_sampler(cfg.sampler)  # after build(): a baseline's own sampler is registered
    augment = FrameAugment(AugmentConfig.from_dict(cfg.augment, cfg.image_size))
    rng = np.random.default_rng(seed)
    picks, frames = [], []
    for n in VIDEO_LENGTHS:
        video = torch.from_numpy(rng.integers(0, 256, (n, SIZE, SIZE), dtype=np.uint8))
        idx, extras = sampler.choose(n, rng)
        assert all(0 <= i < n for i in idx), f"{sampler.sampler_name} chose {idx} in a {n}-frame video"
        picks.append(extras)
        frames.append(video[idx])
    frames = torch.stack(frames)  # [B, k, S, S] uint8
    extras = {k: torch.tensor([e[k] for e in picks], dtype=torch.float32) for k in picks[0]}
    make = sampler.make_val_views if val else sampler.make_views
    views, weights = make(frames, extras, augment, torch.Generator().manual_seed(seed))
    b = len(VIDEO_LENGTHS)
    for v in views:  # square views at the image size (multi-crop's local crops: smaller)
        assert v.shape[:2] == (b, 3) and v.shape[-1] == v.shape[-2] <= SIZE and v.dtype == torch.float32
    assert views[0].shape[-1] == SIZE
    return {
        "views": views,
        "video_idx": torch.arange(b) if video_idx is None else torch.as_tensor(video_idx),
        "labels": LABELS.clone(),
        "weights": torch.ones(b) if weights is None else weights,
    }


def snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def assert_same_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"state {k} differs"


def train_step(model, optimizer, batch, progress: float = 0.5) -> dict:
    out = model.training_step(batch)
    optimizer.zero_grad(set_to_none=True)
    out["loss"].backward()
    optimizer.step()
    model.after_step(progress)
    return out


# ---------------------------------------------------------------- every registered method


def test_methods_are_found():
    assert {"simclr", "moco_v2", "byol", "simsiam", "uscl", "ivpp", "ucl", "supervised",
            "mae", "dino", "meta_uscl"} <= set(METHODS)


def test_every_method_runs_on_a_cnn_or_a_vit_and_the_refusals_are_the_documented_ones():
    assert {m for m, _ in CASES} == set(METHODS)
    assert set(REFUSED) == {("hico", "vit_tiny_patch16_224"), ("mae", "resnet18")}


@pytest.mark.parametrize(("name", "backbone"), REFUSED)
def test_unsupported_backbone_is_a_clear_error(name, backbone):
    cls = get_method(name)
    with pytest.raises(UnsupportedBackboneError, match=rf"method {name} does not support the "
                       rf"{backbone_kind(backbone)} backbone '{backbone}'") as err:
        build(name, backbone=backbone)
    assert cls.backbone_requirement and cls.backbone_requirement in str(err.value)
    assert ("resnet18" if backbone_kind(backbone) == "vit" else "vit_tiny_patch16_224") in str(err.value)


@pytest.mark.parametrize(("name", "backbone"), CASES)
def test_step_is_finite_and_trains_the_encoder(name, backbone):
    cfg, model = build(name, backbone=backbone)
    model.train()
    batch = make_batch(cfg)
    optimizer = build_optimizer(model, cfg, CPU)
    encoder_before = snapshot(model.encoder())
    out = train_step(model, optimizer, batch)
    assert out["loss"].dim() == 0 and out["loss"].requires_grad
    for part, value in out.items():
        assert torch.is_tensor(value) and value.dim() == 0, f"{name}: part {part} is not a scalar tensor"
        assert torch.isfinite(value).all(), f"{name}: part {part} = {value}"
    changed = [k for k, v in model.encoder().state_dict().items()
               if v.is_floating_point() and not torch.equal(v, encoder_before[k])]
    assert changed, f"{name}: one optimiser step left the exported encoder unchanged"
    with torch.no_grad():
        feats = model.encoder()(batch["views"][0])
    assert feats.shape == (len(VIDEO_LENGTHS), model.encoder().num_features)


@pytest.mark.parametrize(("name", "backbone"), CASES)
def test_checkpoint_round_trip_reproduces_the_loss(name, backbone, tmp_path):
    cfg, model = build(name, seed=0, backbone=backbone)
    optimizer = build_optimizer(model, cfg, CPU)
    train_step(model, optimizer, make_batch(cfg, seed=1))  # momentum encoders, queues, BN stats move
    path = tmp_path / "last.pt"
    torch.save({"model": model.state_dict()}, path)

    _, fresh = build(name, seed=123, backbone=backbone)
    fresh.load_state_dict(torch.load(path, weights_only=True)["model"])
    assert_same_state(snapshot(model), snapshot(fresh))

    val = make_batch(cfg, seed=2, val=True)
    model.eval(), fresh.eval()
    with torch.no_grad():
        assert torch.equal(model.validation_step(val)["loss"], fresh.validation_step(val)["loss"])

    batch = make_batch(cfg, seed=3)
    model.train(), fresh.train()
    out_a, out_b = model.training_step(batch), fresh.training_step(batch)
    for part in out_a:
        assert torch.equal(out_a[part].detach(), out_b[part].detach()), f"{name}: {part} differs after reload"


@pytest.mark.parametrize(("name", "backbone"), CASES)
def test_validation_step_is_finite_and_changes_no_state(name, backbone):
    cfg, model = build(name, backbone=backbone)
    model.eval()
    before = snapshot(model)
    with torch.no_grad():
        out = model.validation_step(make_batch(cfg, seed=4, val=True))
    assert out["loss"].dim() == 0 and torch.isfinite(out["loss"])
    assert_same_state(before, snapshot(model))  # no enqueue, no EMA, no BN update


# ---------------------------------------------------------------- MoCo v2


def test_moco_logits_use_the_queue_before_this_steps_keys():
    from hico.losses import infonce_logits_loss

    cfg, model = build("moco_v2", queue_size=16)
    batch = make_batch(cfg)
    queue_before = model.queue.clone()
    out = model.training_step(batch)
    x_q, x_k = batch["views"]
    with torch.no_grad():
        q = torch.nn.functional.normalize(model.projector(model.backbone(x_q)), dim=1)
        k = torch.nn.functional.normalize(model.key_projector(model.key_backbone(x_k)), dim=1)
    torch.testing.assert_close(out["loss"].detach(), infonce_logits_loss(q, k, queue_before, 0.2))
    torch.testing.assert_close(model.queue[:4], k)
    assert torch.equal(model.queue[4:], queue_before[4:])
    assert int(model.queue_ptr) == 4 and model.queue_video[:4].tolist() == [0, 1, 2, 3]


def test_moco_queue_and_key_encoder_resume_exactly(tmp_path):
    cfg, model = build("moco_v2", queue_size=16)
    optimizer = build_optimizer(model, cfg, CPU)
    for step in range(2):
        train_step(model, optimizer, make_batch(cfg, seed=step, video_idx=[4 * step + i for i in range(4)]),
                   progress=(step + 1) / 10)
    assert int(model.queue_ptr) == 8 and model.queue_video[:8].tolist() == list(range(8))
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict()}, tmp_path / "last.pt")

    _, fresh = build("moco_v2", seed=7, queue_size=16)
    fresh_opt = build_optimizer(fresh, cfg, CPU)
    state = torch.load(tmp_path / "last.pt", weights_only=True)
    fresh.load_state_dict(state["model"])
    fresh_opt.load_state_dict(state["optimizer"])
    for key in ("queue", "queue_ptr", "queue_video"):
        assert torch.equal(getattr(model, key), getattr(fresh, key)), key
    for a, b in zip(model.key_backbone.state_dict().values(), fresh.key_backbone.state_dict().values()):
        assert torch.equal(a, b)
    for a, b in zip(model.key_projector.parameters(), fresh.key_projector.parameters()):
        assert torch.equal(a, b)

    batch = make_batch(cfg, seed=9, video_idx=[8, 9, 10, 11])
    out_a = train_step(model, optimizer, batch, progress=0.3)
    out_b = train_step(fresh, fresh_opt, batch, progress=0.3)
    assert torch.equal(out_a["loss"].detach(), out_b["loss"].detach())
    assert_same_state(snapshot(model), snapshot(fresh))  # queue, pointer, both encoders


def test_moco_momentum_update():
    cfg, model = build("moco_v2", momentum=0.9)
    optimizer = build_optimizer(model, cfg, CPU)
    key_before = model.key_projector[0].weight.detach().clone()
    train_step(model, optimizer, make_batch(cfg))
    online = model.projector[0].weight.detach()
    torch.testing.assert_close(model.key_projector[0].weight, 0.9 * key_before + 0.1 * online)
    assert not model.key_projector[0].weight.requires_grad


def test_moco_warns_when_the_queue_outgrows_the_videos():
    cfg, model = build("moco_v2", queue_size=8)
    model.training_step(make_batch(cfg, video_idx=[0, 1, 2, 3]))
    with pytest.warns(UserWarning, match=r"only 4 distinct videos.*queue_size <= 4"):
        model.training_step(make_batch(cfg, seed=1, video_idx=[0, 1, 2, 3]))  # 4 videos fill 8 slots


def test_moco_queue_within_the_videos_does_not_warn():
    cfg, model = build("moco_v2", queue_size=8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.training_step(make_batch(cfg, video_idx=[0, 1, 2, 3]))
        model.training_step(make_batch(cfg, seed=1, video_idx=[4, 5, 6, 7]))


def test_moco_fit_to_data_clamps_the_queue():
    _, model = build("moco_v2")  # recipe: queue_size 768
    assert model.queue.shape[0] == 768
    with pytest.warns(UserWarning, match="clamped to 48"):
        model.fit_to_data(n_train_videos=50, batch_size=4)
    assert model.queue.shape[0] == 48 and model.queue_video.shape == (48,)
    assert "queue" in model.state_dict() and model.state_dict()["queue"].shape[0] == 48
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.fit_to_data(n_train_videos=1000, batch_size=32)  # large enough: untouched
    assert model.queue.shape[0] == 48


# ---------------------------------------------------------------- BYOL, SimSiam


def test_byol_tau_schedule():
    from baselines._momentum import cosine_momentum

    assert cosine_momentum(0.0, 0.996) == pytest.approx(0.996)
    assert cosine_momentum(0.5, 0.996) == pytest.approx(0.998)
    assert cosine_momentum(1.0, 0.996) == pytest.approx(1.0)
    assert cosine_momentum(0.25, 0.996) == pytest.approx(1 - 0.004 * (math.cos(math.pi / 4) + 1) / 2)
    taus = [cosine_momentum(p / 10, 0.996) for p in range(11)]
    assert taus == sorted(taus)


def test_byol_after_step_applies_tau():
    _, model = build("byol")
    with torch.no_grad():
        model.projector[0].weight.add_(1.0)  # make online and target differ
    target = model.target_projector[0].weight.detach().clone()
    online = model.projector[0].weight.detach().clone()
    model.after_step(0.5)
    assert model.momentum == pytest.approx(0.998)
    torch.testing.assert_close(model.target_projector[0].weight, 0.998 * target + 0.002 * online)
    frozen = model.target_projector[0].weight.detach().clone()
    model.after_step(1.0)  # tau = 1 at the end: the target stops moving
    assert model.momentum == pytest.approx(1.0)
    torch.testing.assert_close(model.target_projector[0].weight, frozen)


def test_simsiam_predictor_group_is_marked_fix_lr():
    _, model = build("simsiam")
    groups = model.param_groups()
    assert [g["fix_lr"] for g in groups] == [False, True]
    assert {id(p) for p in groups[1]["params"]} == {id(p) for p in model.predictor.parameters()}
    n_trainable = sum(1 for p in model.parameters() if p.requires_grad)
    assert sum(len(g["params"]) for g in groups) == n_trainable


# ---------------------------------------------------------------- UCL


def _ucl_sampler(**kw):
    build("ucl")  # registers the sampler
    return build_sampler({"name": "ucl_hard_negatives", **kw})


def test_ucl_sampler_windows_follow_the_release():
    sampler = _ucl_sampler()
    rng = np.random.default_rng(0)
    t = 60
    for _ in range(300):
        (a, pos, *negs), extras = sampler.choose(t, rng)
        assert 12 <= a < 30  # [ceil(0.2 T), ceil(0.5 T))
        assert pos != a and abs(pos - a) <= 3
        assert len(negs) == 3 and extras["n_valid"] == 3
        for n in negs:  # left [a - 24, a - 12), right [a + 12, a + 24)
            assert a - 24 <= n < a - 12 or a + 12 <= n < a + 24, (a, n)


def test_ucl_curriculum_moves_negatives_next_to_the_positive_window():
    sampler = _ucl_sampler()
    assert sampler.band_scale(0.0) == 1.0 and sampler.band_scale(0.5) == 1.0
    assert 0 < sampler.band_scale(0.6) < sampler.band_scale(0.55) < 1
    assert sampler.band_scale(0.8) < 0.03 and sampler.band_scale(1.0) == 0.0
    sampler.set_progress(1.0)
    rng = np.random.default_rng(1)
    for _ in range(200):
        (a, _, *negs), _ = sampler.choose(60, rng)
        assert all(4 <= abs(n - a) <= 6 for n in negs)


def test_ucl_short_videos_get_cross_video_negatives():
    sampler = _ucl_sampler()
    rng = np.random.default_rng(2)
    (a, pos, *negs), extras = sampler.choose(1, rng)
    assert a == pos == 0 and extras["n_valid"] == 0
    frames = torch.stack([torch.full((5, 8, 8), v, dtype=torch.uint8) for v in (10, 20)])  # [2, 5, 8, 8]
    extras = {"n_valid": torch.tensor([3.0, 0.0])}
    identity = FrameAugment(AugmentConfig.from_dict(
        {"crop_scale": [1, 1], "crop_ratio": [1, 1], "hflip_p": 0, "brightness": 0, "contrast": 0,
         "mean": 0.0, "std": 1.0}, 8))
    views, weights = sampler.make_views(frames, extras, identity)
    assert weights is None and len(views) == 5
    torch.testing.assert_close(views[0][1], torch.full((3, 8, 8), 20 / 255))  # video 1's anchor
    for neg in views[2:]:
        torch.testing.assert_close(neg[0], torch.full((3, 8, 8), 10 / 255))  # video 0: its own
        torch.testing.assert_close(neg[1], torch.full((3, 8, 8), 10 / 255))  # video 1: video 0's


def test_ucl_intra_negatives_start_after_the_cross_only_phase():
    cfg, model = build("ucl")
    batch = make_batch(cfg)
    model.after_step(0.1)  # < 10/60: only [k+, soft negative]
    assert float(model.training_step(batch)["intra_negatives"]) == 0.0
    model.after_step(0.2)
    assert float(model.training_step(batch)["intra_negatives"]) == 1.0
    assert float(model.progress) == pytest.approx(0.2)


# ---------------------------------------------------------------- USCL, supervised


def test_uscl_ignores_unlabelled_videos_and_validates_on_the_contrastive_term():
    cfg, model = build("uscl")
    batch = make_batch(cfg)
    batch["labels"] = torch.full((4,), -1)
    out = model.training_step(batch)
    assert float(out["ce"].detach()) == 0.0
    torch.testing.assert_close(out["loss"], out["contrastive"])
    model.eval()
    with torch.no_grad():
        val = model.validation_step(make_batch(cfg, val=True))
    assert set(val) == {"loss"}


def test_uscl_loss_is_contrastive_plus_lambda_ce():
    cfg, model = build("uscl")
    out = model.training_step(make_batch(cfg))
    torch.testing.assert_close(out["loss"], out["contrastive"] + 0.2 * out["ce"])


def test_supervised_needs_classes():
    cfg = resolve_pretrain_config("supervised", TINY)
    with pytest.raises(ValueError, match="num_classes = 0"):
        build_method("supervised", cfg.params, num_classes=0, image_size=SIZE)

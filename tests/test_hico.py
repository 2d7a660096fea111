"""HiCo (``hico/methods/hico.py``, ``hico.yaml``): parts, ablation switches, equality with the
golden-tested losses, gradient flow, the released parameter count, the recipe and its LR schedule.

Most tests use pooled heads at 32/64 px; one slow test runs the released flattened heads at
224 px. The generic registry tests (``tests/test_methods.py``) also run ``hico`` from its recipe.
"""

from __future__ import annotations

import math
import warnings

import pytest
import torch
import torch.nn.functional as F

from hico.config import resolve_pretrain_config
from hico.losses import hico_multilevel_loss, soft_cross_entropy
from hico.methods.base import build_method, method_params
from hico.registry import get_method
from hico.train import lr_factor

NUM_CLASSES = 3
PEER = {"peer_local", "peer_medium", "peer_global"}
CROSS = {"cross_global_medium", "cross_global_local"}
CE = {"ce_i", "ce_j"}
ALL_PARTS = {"loss", "contrastive"} | PEER | CROSS | CE
# The released pretraining module (shared/golden reference_param_count) less what we do not
# build: torchvision's unused 1000-class fc (513,000), the dead p4 head l4 (12,845,312) and the
# FPN conv smooth1 that only feeds it (590,080).
RELEASED_TOTAL = 286_996_788
HICO_AT_224 = RELEASED_TOTAL - 513_000 - 12_845_312 - 590_080


def make(size: int = 32, num_classes: int = NUM_CLASSES, seed: int = 0, **params):
    params = {"heads": "pooled", **params}
    torch.manual_seed(seed)
    return build_method("hico", params, backbone="resnet18", pretrained=False,
                        num_classes=num_classes, image_size=size)


def batch(size: int = 32, n: int = 4, labels=(0, 2, -1, 1), seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {
        "views": [torch.randn(n, 3, size, size, generator=g) for _ in range(2)],
        "labels": torch.tensor(labels[:n]),
        "video_idx": torch.arange(n),
        "weights": torch.ones(n),
    }


def _has_grad(p: torch.Tensor) -> bool:
    return p.grad is not None and bool(p.grad.abs().sum() > 0)


# ---------------------------------------------------------------- loss and its parts


def test_default_step_is_finite_with_every_part():
    model = make()
    out = model.training_step(batch())
    assert set(out) == ALL_PARTS
    for k, v in out.items():
        assert v.dim() == 0 and torch.isfinite(v), k
    assert out["loss"].requires_grad
    torch.testing.assert_close(out["loss"], out["contrastive"] + 0.2 * (out["ce_i"] + out["ce_j"]))


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({}, PEER | CROSS | CE),
        ({"cross": False}, PEER | CE),
        ({"peer": False}, CROSS | CE),
        ({"levels": ["medium", "global"]}, {"peer_medium", "peer_global", "cross_global_medium"} | CE),
        ({"levels": ["local", "global"]}, {"peer_local", "peer_global", "cross_global_local"} | CE),
        ({"levels": ["global"]}, {"peer_global"} | CE),
        ({"cross_pairs": "across"}, PEER | CROSS | CE),
        ({"lam": 0.0}, PEER | CROSS),
        ({"smoothing": "hard"}, PEER | CROSS | CE),
        ({"smoothing": "standard"}, PEER | CROSS | CE),
        ({"medium_level": 4}, PEER | CROSS | CE),
    ],
)
def test_ablation_switches_select_the_parts(params, expected):
    model = make(**params)
    out = model.training_step(batch())
    assert set(out) == {"loss", "contrastive"} | expected
    assert all(torch.isfinite(v) for v in out.values())
    if "lam" in params:
        assert model.classifier is None
        torch.testing.assert_close(out["loss"], out["contrastive"])


def test_contrastive_part_equals_a_direct_multilevel_call():
    model = make()
    b = batch()
    out = model.training_step(b)
    # train-mode BN normalises by batch statistics, so a second forward gives the same outputs
    (z_i, logits_i), (z_j, logits_j) = (model.project(v, with_logits=True) for v in b["views"])
    direct = hico_multilevel_loss((z_i["local"], z_j["local"]), (z_i["medium"], z_j["medium"]),
                                  (z_i["global"], z_j["global"]), temperature=0.5)
    torch.testing.assert_close(out["contrastive"], direct["loss"])
    for part in PEER | CROSS:
        torch.testing.assert_close(out[part], direct[part])
    torch.testing.assert_close(out["ce_i"], soft_cross_entropy(logits_i, b["labels"], 0.2, "reference"))
    torch.testing.assert_close(out["ce_j"], soft_cross_entropy(logits_j, b["labels"], 0.2, "reference"))


def test_across_pairs_change_only_the_cross_terms():
    b = batch()
    within, across = make().training_step(b), make(cross_pairs="across").training_step(b)
    for part in PEER | CE:
        torch.testing.assert_close(within[part], across[part])
    assert not torch.allclose(within["cross_global_local"], across["cross_global_local"])


@pytest.mark.parametrize("smoothing", ["hard", "standard"])
def test_other_smoothings_are_plain_and_label_smoothed_ce(smoothing):
    model = make(smoothing=smoothing)
    b = batch()
    out = model.training_step(b)
    _, logits = model.project(b["views"][0], with_logits=True)
    keep = b["labels"] >= 0
    expected = F.cross_entropy(logits[keep], b["labels"][keep],
                               label_smoothing=0.2 if smoothing == "standard" else 0.0)
    torch.testing.assert_close(out["ce_i"], expected)


def test_unlabelled_batch_has_no_ce_term_and_a_finite_loss():
    model = make()
    out = model.training_step(batch(labels=(-1, -1, -1, -1)))
    assert set(out) == {"loss", "contrastive"} | PEER | CROSS
    assert torch.isfinite(out["loss"])
    torch.testing.assert_close(out["loss"], out["contrastive"])
    out["loss"].backward()
    assert all(p.grad is None for p in model.classifier.parameters())


def test_no_classes_means_no_classifier():
    model = make(num_classes=0)
    assert model.classifier is None
    assert set(model.training_step(batch())) == {"loss", "contrastive"} | PEER | CROSS


def test_validation_step_is_the_contrastive_part():
    model = make()
    b = batch()
    model.eval()
    with torch.no_grad():
        val = model.validation_step(b)
        z_i, z_j = model.project(b["views"][0])[0], model.project(b["views"][1])[0]
    assert "ce_i" not in val and "contrastive" not in val
    torch.testing.assert_close(val["loss"], model.contrastive(z_i, z_j)["loss"])


# ---------------------------------------------------------------- network


def test_gradients_reach_every_pyramid_level_and_head():
    model = make(size=64)
    model.training_step(batch(size=64))["loss"].backward()
    assert model.fpn.smooth1 is None  # p4 unused: not built
    missing = [n for n, p in model.named_parameters() if not _has_grad(p)]
    assert not missing, f"no gradient reached {missing}"


def test_levels_without_local_leave_p2_untrained():
    model = make(levels=["medium", "global"])
    model.training_step(batch())["loss"].backward()
    assert set(model.heads) == {"medium", "global"}
    for conv in (model.fpn.smooth3, model.fpn.latlayer3):
        assert conv.weight.grad is None
    assert _has_grad(model.fpn.smooth2.weight) and _has_grad(model.fpn.latlayer2.weight)


def test_medium_level_4_uses_p4():
    model = make(size=64, medium_level=4, heads="flatten")
    assert model.fpn.smooth1 is not None
    assert model.heads["medium"].map_shape == (256, 4, 4)  # 64 / 16
    model.training_step(batch(size=64))["loss"].backward()
    assert _has_grad(model.fpn.smooth1.weight)
    assert model.fpn.smooth2.weight.grad is None  # p3 feeds no head


def test_flatten_heads_follow_the_image_size():
    model = make(size=64, heads="flatten")
    shapes = {k: h.map_shape for k, h in model.heads.items()}
    assert shapes == {"local": (256, 16, 16), "medium": (256, 8, 8), "global": (256, 2, 2)}
    assert model.heads["local"].fc1.in_features == 256 * 16 * 16
    out = model.training_step(batch(size=64))
    assert set(out) == ALL_PARTS and torch.isfinite(out["loss"])
    with pytest.raises(ValueError, match="flattened head fixes the input size"):
        model.training_step(batch(size=96))


def test_parameter_count_at_224_is_the_released_one_less_the_dead_parts():
    with torch.device("meta"):
        model = build_method("hico", {"heads": "flatten"}, num_classes=12, image_size=224)
    n = {k: sum(p.numel() for p in m.parameters()) for k, m in model.named_children()}
    assert n["heads"] == 205_521_152 + 51_380_480 + 3_211_520 + 3 * 65_792  # l2 l3 l5 + l22 l33 l55
    assert n["classifier"] == 131_328 + 3_084  # lf, fc
    assert sum(n.values()) == HICO_AT_224 == 273_048_396


@pytest.mark.parametrize(
    "params",
    [
        {"temperature": 0.0}, {"lam": -0.1}, {"alpha": 1.5}, {"smoothing": "soft"},
        {"cross_pairs": "both"}, {"heads": "conv"}, {"medium_level": 2},
        {"levels": ["local", "medium"]}, {"levels": ["global", "global"]}, {"levels": ["fine", "global"]},
        {"peer": False, "cross": False}, {"peer": False, "levels": ["global"]}, {"proj_dim": 0},
    ],
)
def test_bad_params_are_rejected(params):
    with pytest.raises(ValueError, match="hico:"):
        make(**params)


@pytest.mark.slow
def test_released_flatten_heads_at_224_one_training_step():
    """The released network for real: flattened heads at 224 px (~1 GB of weights), batch 2."""
    cfg = resolve_pretrain_config("hico", {"pretrained": False})
    torch.manual_seed(0)
    model = build_method("hico", cfg.params, backbone=cfg.backbone, pretrained=False, num_classes=12,
                         image_size=cfg.image_size)
    assert model.head_kind == "flatten" and model.heads["local"].map_shape == (256, 56, 56)
    b = batch(size=224, n=2, labels=(3, 7))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    before = model.heads["local"].fc1.weight[:4, :1000].detach().clone()
    out = model.training_step(b)
    assert set(out) == ALL_PARTS and all(torch.isfinite(v) for v in out.values())
    optimizer.zero_grad(set_to_none=True)
    out["loss"].backward()
    for name, head in model.heads.items():
        assert _has_grad(head.fc1.weight) and _has_grad(head.fc2.weight), name
    optimizer.step()
    assert not torch.equal(before, model.heads["local"].fc1.weight[:4, :1000])


# ---------------------------------------------------------------- recipe


def test_recipe_resolves_to_the_released_setting():
    cfg = resolve_pretrain_config("hico")
    assert (cfg.backbone, cfg.pretrained, cfg.image_size, cfg.batch_size, cfg.epochs) == ("resnet18", True, 224, 32, 300)
    assert cfg.sampler == {"name": "three_frame_mixup", "beta": 0.5}
    assert (cfg.optimizer.name, cfg.optimizer.lr, cfg.optimizer.weight_decay) == ("adam", 3e-4, 1e-4)
    assert (cfg.schedule.name, round(cfg.schedule.hold_fraction * cfg.epochs), cfg.schedule.t_max_fraction * cfg.epochs) \
        == ("cosine", 10, 300)
    assert (cfg.label_rate, cfg.val_fraction, cfg.export) == (1.0, 0.2, "best")
    assert cfg.augment == {"crop_scale": [0.8, 1.0], "crop_ratio": [0.8, 1.25], "hflip_p": 0.5,
                           "brightness": 0.8, "contrast": 0.8, "jitter_p": 1.0, "mean": 0.5, "std": 0.25}
    # the recipe spells out every param with the class defaults (the released values)
    defaults = method_params(get_method("hico"))
    assert set(cfg.params) == set(defaults)
    for k, v in cfg.params.items():
        assert (list(v) if isinstance(v, (list, tuple)) else v) == (
            list(defaults[k]) if isinstance(defaults[k], (list, tuple)) else defaults[k]), k


def test_every_deviation_says_what_and_why():
    cfg = resolve_pretrain_config("hico")
    assert len(cfg.deviations) >= 5
    for d in cfg.deviations:
        assert isinstance(d, dict) and set(d) == {"what", "why"}, d
        assert d["what"].strip() and d["why"].strip(), d


def test_recipe_with_default_flatten_heads_builds_at_32_px():
    """What tests/test_methods.py does: the shipped recipe, image_size 32."""
    cfg = resolve_pretrain_config("hico", {"image_size": 32, "pretrained": False})
    model = build_method("hico", cfg.params, backbone=cfg.backbone, pretrained=False,
                         num_classes=NUM_CLASSES, image_size=cfg.image_size)
    assert model.head_kind == "flatten" and model.heads["local"].map_shape == (256, 8, 8)
    out = model.training_step(batch())
    assert set(out) == ALL_PARTS and torch.isfinite(out["loss"])


def _released_lrs(epochs: int = 300, lr: float = 3e-4) -> list[float]:
    """The LR of each epoch under the release's loop: CosineAnnealingLR(T_max=epochs) built at
    the start, ``scheduler.step()`` at the end of every epoch >= 10 (simclr.py)."""
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.Adam([param], lr, weight_decay=1e-4)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs, eta_min=0, last_epoch=-1)
    lrs = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for epoch in range(epochs):
            lrs.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            if epoch >= 10:
                scheduler.step()
    return lrs


def test_lr_schedule_reproduces_the_released_scheduler():
    cfg = resolve_pretrain_config("hico")
    released = _released_lrs(cfg.epochs, cfg.optimizer.lr)
    for epoch in (0, 9, 10, 11, 150, 299):
        for step in (0, 13, 26):  # constant within an epoch, as the per-epoch scheduler
            ours = cfg.optimizer.lr * lr_factor(cfg, epoch, step, 27)
            assert ours == pytest.approx(released[epoch], rel=1e-9, abs=1e-12), (epoch, step)
    assert released[10] == released[0] == 3e-4 and released[11] < 3e-4
    assert released[299] == pytest.approx(3e-4 * 0.5 * (1 + math.cos(math.pi * 289 / 300)))
    assert 9.8e-7 < released[299] < 1.0e-6

"""View samplers and the batched augmentation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hico.data.pairs import build_sampler
from hico.data.transforms import AugmentConfig, FrameAugment, normalize


def identity_augment(frames, generator=None):
    return normalize(frames, 0.5, 0.25)


def test_three_frame_mixup_choice_and_fallbacks():
    s = build_sampler({"name": "three_frame_mixup", "beta": 0.5})
    rng = np.random.default_rng(0)
    idx, ex = s.choose(10, rng)
    assert len(set(idx)) == 3 and 0 <= ex["lam"] <= 1
    idx, ex = s.choose(2, rng)
    assert sorted(idx[:2]) == [0, 1] and idx[1] == idx[2] and ex["lam"] == 1.0
    assert s.choose(1, rng) == ([0, 0, 0], {"lam": 1.0})
    lams = [s.choose(30, rng)[1]["lam"] for _ in range(4000)]
    # Beta(0.5, 0.5) is U-shaped: mean 1/2, variance 1/8
    assert np.mean(lams) == pytest.approx(0.5, abs=0.02) and np.var(lams) == pytest.approx(0.125, abs=0.01)


def test_three_frame_mixup_views_mix_around_the_shared_frame():
    s = build_sampler("three_frame_mixup")
    frames = torch.stack([torch.full((2, 8, 8), v, dtype=torch.uint8) for v in (0, 100, 200)], dim=1)
    lam = torch.tensor([0.25, 1.0])
    (vi, vj), w = s.make_views(frames, {"lam": lam}, identity_augment)
    a = [normalize(frames[:, k], 0.5, 0.25) for k in range(3)]
    torch.testing.assert_close(vi, lam.view(-1, 1, 1, 1) * a[0] + (1 - lam.view(-1, 1, 1, 1)) * a[1])
    torch.testing.assert_close(vj, lam.view(-1, 1, 1, 1) * a[2] + (1 - lam.view(-1, 1, 1, 1)) * a[1])
    assert w is None
    (ui, uj), _ = s.make_val_views(frames, {"lam": lam}, identity_augment)
    torch.testing.assert_close(ui, a[0])
    torch.testing.assert_close(uj, a[1])


def test_no_mixup_ablation_and_near_frames_weights():
    s = build_sampler({"name": "three_frame_mixup", "mixup": False})
    assert s.choose(10, np.random.default_rng(0))[1]["lam"] == 1.0
    near = build_sampler({"name": "near_frames", "delta": 3})
    rng = np.random.default_rng(0)
    for _ in range(200):
        (i, j), ex = near.choose(50, rng)
        assert abs(i - j) <= 3 and ex["weight"] == pytest.approx((3 - abs(i - j) + 1) / 4)


def test_unknown_sampler():
    with pytest.raises(ValueError, match="unknown view sampler 'nope'"):
        build_sampler("nope")


def test_augment_identity_when_disabled():
    cfg = AugmentConfig(image_size=16, crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), hflip_p=0.0,
                        brightness=0.0, contrast=0.0)
    frames = torch.randint(0, 255, (3, 16, 16), dtype=torch.uint8)
    out = FrameAugment(cfg)(frames)
    torch.testing.assert_close(out, normalize(frames, 0.5, 0.25), atol=1e-5, rtol=0)


def test_augment_flip_shapes_and_determinism():
    cfg = AugmentConfig(image_size=16, crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), hflip_p=1.0,
                        brightness=0.0, contrast=0.0)
    frames = torch.randint(0, 255, (2, 16, 16), dtype=torch.uint8)
    out = FrameAugment(cfg)(frames)
    torch.testing.assert_close(out, normalize(frames.flip(-1), 0.5, 0.25), atol=1e-5, rtol=0)
    full = FrameAugment(AugmentConfig(image_size=32, blur_p=0.5))
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    x = torch.randint(0, 255, (4, 48, 48), dtype=torch.uint8)
    a, b = full(x, g1), full(x, g2)
    assert a.shape == (4, 3, 32, 32) and torch.equal(a, b)
    assert not torch.equal(a, full(x, torch.Generator().manual_seed(2)))


def test_blur_is_relative_to_the_image_size():
    """The same sigma range blurs a 64 px image as much, relative to its size, as a 224 px one."""

    def blurred_edge_width(size):
        cfg = AugmentConfig(image_size=size, crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), hflip_p=0.0,
                            brightness=0.0, contrast=0.0, blur_p=1.0, blur_sigma=(2.0, 2.0))
        frames = torch.zeros(1, size, size, dtype=torch.uint8)
        frames[:, :, size // 2:] = 255  # a vertical step edge
        row = FrameAugment(cfg)(frames)[0, 0, size // 2] * 0.25 + 0.5
        return int(((row > 0.05) & (row < 0.95)).sum()) / size  # transition width, share of the image

    assert blurred_edge_width(224) > 0.02
    assert abs(blurred_edge_width(64) - blurred_edge_width(224)) < 0.02
    with pytest.raises(ValueError, match="blur_sigma"):
        AugmentConfig.from_dict({"blur_sigma": [0.0, 1.0]})


def test_augment_config_rejects_unknown_keys():
    with pytest.raises(ValueError, match=r"unknown augmentation keys \['rotate'\]"):
        AugmentConfig.from_dict({"rotate": 10})

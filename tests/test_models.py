"""Feature pyramid and heads: shapes on every supported backbone, the released layout and
parameter counts, and gradient flow to every pyramid level and head."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from hico.models.backbone import Backbone
from hico.models.fpn import FeaturePyramid
from hico.models.heads import ClassifierHead, FlattenHead, PooledHead, ProjectionHead

BACKBONES = ["resnet18", "resnet50", "efficientnet_b0", "convnext_tiny", "mobilenetv3_large_100"]
STRIDES = (4, 8, 16, 32)


@pytest.fixture(scope="module")
def backbones():
    torch.manual_seed(0)
    return {name: Backbone(name) for name in BACKBONES}


def _n(module) -> int:
    return sum(p.numel() for p in module.parameters())


def _has_grad(p) -> bool:
    return p.grad is not None and bool(p.grad.abs().sum() > 0)


@pytest.mark.parametrize("name", BACKBONES)
@pytest.mark.parametrize("size", [64, 96])
def test_fpn_shapes(backbones, name, size):
    backbone = backbones[name]
    fpn = FeaturePyramid(backbone.channels, out_channels=256)
    with torch.no_grad():
        feats = backbone.forward_pyramid(torch.randn(2, 3, size, size))
        pyramid = fpn(feats)
    assert [f.shape[1] for f in feats] == backbone.channels
    assert len(pyramid) == 4
    for p, stride in zip(pyramid, STRIDES):
        assert p.shape == (2, 256, size // stride, size // stride)


def test_fpn_layout_is_the_released_one(backbones):
    fpn = FeaturePyramid(backbones["resnet18"].channels)
    shapes = {k: tuple(v.shape) for k, v in fpn.state_dict().items() if k.endswith("weight")}
    assert shapes == {
        "toplayer.weight": (256, 512, 1, 1),
        "latlayer1.weight": (256, 256, 1, 1),
        "latlayer2.weight": (256, 128, 1, 1),
        "latlayer3.weight": (256, 64, 1, 1),
        "smooth1.weight": (256, 256, 3, 3),
        "smooth2.weight": (256, 256, 3, 3),
        "smooth3.weight": (256, 256, 3, 3),
    }
    assert _n(fpn) == 2_017_024  # released FPN convs (13,706,536 - torchvision resnet18)


def test_fpn_matches_released_forward():
    torch.manual_seed(1)
    fpn = FeaturePyramid([8, 16, 24, 32], out_channels=12).double()
    c2, c3, c4, c5 = (torch.randn(2, c, s, s, dtype=torch.float64)
                      for c, s in zip([8, 16, 24, 32], [16, 8, 4, 2]))

    def up_add(x, y):  # the release's F.upsample(x, size=y.size()[2:], mode='bilinear') + y
        return F.interpolate(x, size=y.shape[-2:], mode="bilinear", align_corners=False) + y

    p5 = fpn.toplayer(c5)
    t4 = up_add(p5, fpn.latlayer1(c4))
    t3 = up_add(t4, fpn.latlayer2(c3))  # from p4 *before* smoothing
    t2 = up_add(t3, fpn.latlayer3(c2))
    expected = [fpn.smooth3(t2), fpn.smooth2(t3), fpn.smooth1(t4), p5]
    for got, want in zip(fpn([c2, c3, c4, c5]), expected):
        torch.testing.assert_close(got, want, rtol=0, atol=0)

    lean = FeaturePyramid([8, 16, 24, 32], out_channels=12, smooth_p4=False).double()
    lean.load_state_dict({k: v for k, v in fpn.state_dict().items() if not k.startswith("smooth1")})
    out = lean([c2, c3, c4, c5])
    assert out[2] is None and not hasattr(lean.smooth1, "weight")
    for i in (0, 1, 3):
        torch.testing.assert_close(out[i], expected[i], rtol=0, atol=0)


def test_fpn_rejects_wrong_channel_list():
    with pytest.raises(ValueError, match="c2..c5"):
        FeaturePyramid([64, 128, 256])


def test_flatten_head_counts_at_224():
    """Released level heads at 224 px (built on the meta device: shapes only)."""
    with torch.device("meta"):
        heads = {
            "p2": FlattenHead(256, 56), "p3": FlattenHead(256, 28),
            "p4": FlattenHead(256, 14, out=None), "p5": FlattenHead(256, 7),
        }
    assert _n(heads["p2"].fc1) == 205_521_152  # l2: 256*56*56 -> 256
    assert _n(heads["p3"].fc1) == 51_380_480
    assert _n(heads["p4"]) == 12_845_312  # l4 alone, no second layer
    assert _n(heads["p5"].fc1) == 3_211_520
    assert _n(heads["p2"].fc2) == _n(heads["p3"].fc2) == _n(heads["p5"].fc2) == 65_792
    assert sum(_n(h) for h in heads.values()) == 273_155_840


def test_flatten_head_rejects_other_map_size():
    head = FlattenHead(8, (4, 6), hidden=5, out=3)
    assert head(torch.randn(2, 8, 4, 6)).shape == (2, 3)
    assert FlattenHead(8, 4, hidden=5, out=None)(torch.randn(2, 8, 4, 4)).shape == (2, 5)
    with pytest.raises(ValueError, match=r"built for feature maps \[8, 4, 6\].*pooled"):
        head(torch.randn(2, 8, 8, 12))


def test_projection_head_recipes():
    simclr = ProjectionHead(512, 512, 256)
    assert [type(m).__name__ for m in simclr] == ["Linear", "ReLU", "Linear"]
    assert _n(simclr) == 512 * 512 + 512 + 512 * 256 + 256
    byol = ProjectionHead(512, 4096, 256, batch_norm=True)
    assert [type(m).__name__ for m in byol] == ["Linear", "BatchNorm1d", "ReLU", "Linear"]
    simsiam = ProjectionHead(512, 2048, 2048, n_layers=3, batch_norm=True, hidden_bias=False,
                             last_bias=False, last_batch_norm=True, last_bn_affine=False)
    names = [type(m).__name__ for m in simsiam]
    assert names == ["Linear", "BatchNorm1d", "ReLU"] * 2 + ["Linear", "BatchNorm1d"]
    assert simsiam[-1].weight is None and simsiam[-2].bias is None
    assert _n(simsiam) == 512 * 2048 + 2048 * 2048 + 2048 * 2048 + 2 * 2 * 2048
    assert simsiam(torch.randn(4, 512)).shape == (4, 2048)
    assert ProjectionHead(10, 99, 3, n_layers=1)(torch.randn(2, 10)).shape == (2, 3)
    with pytest.raises(ValueError, match="n_layers"):
        ProjectionHead(10, 10, 10, n_layers=0)


def test_classifier_head():
    head = ClassifierHead(512, num_classes=12)
    assert _n(head.lf) == 131_328 and _n(head.fc) == 3_084
    x = torch.randn(3, 512, 2, 2)
    torch.testing.assert_close(head(x), head(x.mean(dim=(2, 3))))
    assert head(x).shape == (3, 12)


def _assert_all_grads(modules: dict) -> None:
    missing = [f"{m}.{n}" for m, mod in modules.items() for n, p in mod.named_parameters()
               if not _has_grad(p)]
    assert not missing, f"no gradient reached: {missing}"


def test_gradients_reach_every_level_and_flatten_head(backbones):
    backbone = backbones["resnet18"]
    backbone.zero_grad(set_to_none=True)
    size = 64
    fpn = FeaturePyramid(backbone.channels)
    heads = torch.nn.ModuleDict({
        "p2": FlattenHead(256, size // 4), "p3": FlattenHead(256, size // 8),
        "p4": FlattenHead(256, size // 16, out=None), "p5": FlattenHead(256, size // 32),
    })
    classifier = ClassifierHead(backbone.channels[-1], num_classes=12)
    feats = backbone.forward_pyramid(torch.randn(2, 3, size, size))
    pyramid = fpn(feats)
    outputs = [heads[k](p) for k, p in zip(["p2", "p3", "p4", "p5"], pyramid)]
    outputs.append(classifier(feats[-1]))
    sum(o.sum() for o in outputs).backward()
    _assert_all_grads({"fpn": fpn, "heads": heads, "classifier": classifier})
    # (not every backbone weight: timm zero-initialises each block's last BN scale, so the
    # residual branches of a randomly initialised ResNet get no gradient on the first step)
    assert _has_grad(backbone.body.conv1.weight)
    backbone.zero_grad(set_to_none=True)


@pytest.mark.parametrize("name", BACKBONES)
def test_gradients_reach_every_level_pooled(backbones, name):
    backbone = backbones[name]
    backbone.zero_grad(set_to_none=True)
    fpn = FeaturePyramid(backbone.channels, smooth_p4=False)  # HiCo's loss never uses p4
    heads = torch.nn.ModuleList([PooledHead(256) for _ in range(3)])
    p2, p3, p4, p5 = fpn(backbone.forward_pyramid(torch.randn(2, 3, 64, 64)))
    assert p4 is None
    sum(h(p).sum() for h, p in zip(heads, (p2, p3, p5))).backward()
    _assert_all_grads({"fpn": fpn, "heads": heads})
    backbone.zero_grad(set_to_none=True)


@pytest.mark.slow
def test_released_network_at_224_forward_backward(backbones):
    """The released pretraining network for real at 224 px (~1.1 GB of head weights, twice
    that with gradients): counts, output shapes, and gradients into every head."""
    backbone = backbones["resnet18"]
    backbone.zero_grad(set_to_none=True)
    fpn = FeaturePyramid(backbone.channels)
    heads = torch.nn.ModuleDict({
        "p2": FlattenHead(256, 56), "p3": FlattenHead(256, 28),
        "p4": FlattenHead(256, 14, out=None), "p5": FlattenHead(256, 7),
    })
    classifier = ClassifierHead(512, num_classes=12)
    assert _n(heads) == 273_155_840
    assert _n(backbone) + _n(fpn) + _n(heads) + _n(classifier) + 513_000 == 286_996_788
    feats = backbone.forward_pyramid(torch.randn(2, 3, 224, 224))
    pyramid = fpn(feats)
    outputs = {k: heads[k](p) for k, p in zip(["p2", "p3", "p4", "p5"], pyramid)}
    assert {k: tuple(v.shape) for k, v in outputs.items()} == {k: (2, 256) for k in outputs}
    logits = classifier(feats[-1])
    assert logits.shape == (2, 12)
    (sum(o.sum() for o in outputs.values()) + logits.sum()).backward()
    _assert_all_grads({"fpn": fpn, "heads": heads, "classifier": classifier})
    backbone.zero_grad(set_to_none=True)


# ---------------------------------------------------------------- ViT backbones


def test_backbone_kind_needs_no_model():
    from hico.models.backbone import backbone_kind

    assert backbone_kind("resnet18") == backbone_kind("resnet18.tv_in1k") == "cnn"
    assert backbone_kind("convnext_tiny") == "cnn"
    for name in ("vit_tiny_patch16_224", "vit_small_patch16_224", "vit_small_patch8_224", "deit3_small_patch16_224"):
        assert backbone_kind(name) == "vit", name


def test_resnet18_is_the_plain_timm_features_model():
    """The ViT branch leaves the CNN path as it was: same init (RNG draws), same state names."""
    import timm

    torch.manual_seed(3)
    ours = Backbone("resnet18", image_size=64).state_dict()
    torch.manual_seed(3)
    plain = timm.create_model("resnet18", pretrained=False, zero_init_last=False, features_only=True).state_dict()
    assert list(ours) == [f"body.{k}" for k in plain]
    assert all(torch.equal(ours[f"body.{k}"], v) for k, v in plain.items())


@pytest.fixture(scope="module")
def vit64():
    torch.manual_seed(0)
    return Backbone("vit_tiny_patch16_224", image_size=64).eval()


def test_vit_pooled_feature_is_the_cls_token_after_the_last_norm(vit64):
    x = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        tokens = vit64.body.forward_features(x)  # [B, 1 + 16, 192]
        pooled = vit64(x)
    assert vit64.kind == "vit" and vit64.patch_size == 16 and vit64.image_size == 64
    assert tokens.shape == (3, 1 + 4 * 4, 192) and vit64.num_features == 192
    torch.testing.assert_close(pooled, tokens[:, 0], rtol=0, atol=0)


def test_vit_token_pieces_rebuild_timms_forward(vit64):
    """embed_tokens + encode_tokens (MAE's split of the forward pass) == timm forward_features."""
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        prefix, patches = vit64.embed_tokens(x)
        out = vit64.encode_tokens(torch.cat([prefix, patches], dim=1))
        want = vit64.body.forward_features(x)
    assert prefix.shape == (2, 1, 192) and patches.shape == (2, 16, 192)
    torch.testing.assert_close(out, want, rtol=0, atol=0)


@pytest.mark.parametrize(("size", "grid"), [(32, 2), (96, 6)])
def test_vit_runs_at_any_size_its_patch_divides(vit64, size, grid):
    with torch.no_grad():
        assert vit64(torch.randn(2, 3, size, size)).shape == (2, 192)  # position table resampled
        assert vit64.embed_tokens(torch.randn(1, 3, size, size))[1].shape == (1, grid * grid, 192)
    torch.manual_seed(0)
    native = Backbone("vit_tiny_patch16_224", image_size=size)
    assert native.body.pos_embed.shape == (1, 1 + grid * grid, 192)


def test_vit_rejects_sizes_its_patch_does_not_divide(vit64):
    from hico.models.backbone import BackboneError

    with pytest.raises(BackboneError, match="40x40 is not a multiple of its patch size 16"):
        vit64(torch.randn(1, 3, 40, 40))
    with pytest.raises(BackboneError, match="divisible by 16"):
        Backbone("vit_tiny_patch16_224", image_size=40)


def test_patch8_vit_at_64px():
    torch.manual_seed(0)
    vit = Backbone("vit_small_patch8_224", image_size=64)
    assert vit.patch_size == 8 and vit.body.pos_embed.shape == (1, 1 + 8 * 8, 384)
    with torch.no_grad():
        assert vit(torch.randn(2, 3, 64, 64)).shape == (2, 384)


def test_vit_has_no_pyramid(vit64):
    from hico.models.backbone import BackboneError

    with pytest.raises(BackboneError, match="Vision Transformer.*no c2..c5 pyramid.*resnet18"):
        vit64.forward_pyramid(torch.randn(1, 3, 64, 64))


def test_last_block_is_layer4_1_or_the_last_transformer_block(backbones, vit64):
    assert vit64.last_block() is vit64.body.blocks[-1]
    r18 = backbones["resnet18"]
    assert r18.last_block() is r18.body.layer4[1]
    from hico.evaluate import last_block  # the evaluation's name delegates (contract 7)

    assert last_block(vit64) is vit64.body.blocks[-1] and last_block(r18) is r18.body.layer4[1]


def test_vit_encoder_file_round_trip(vit64, backbones, tmp_path):
    from hico.models.backbone import load_encoder, save_encoder

    save_encoder(vit64, tmp_path / "vit.pt", {"method": "mae"})
    blob = torch.load(tmp_path / "vit.pt", weights_only=True)
    assert blob["image_size"] == 64 and blob["backbone"] == "vit_tiny_patch16_224"
    again = load_encoder(tmp_path / "vit.pt").eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(again(x), vit64(x), rtol=0, atol=0)
    save_encoder(backbones["resnet18"], tmp_path / "r18.pt")
    assert "image_size" not in torch.load(tmp_path / "r18.pt", weights_only=True)  # CNN files unchanged


# ---------------------------------------------------------------- DINO head


def test_dino_head_layout_and_weight_normalised_prototypes():
    from hico.models.heads import DINOHead

    torch.manual_seed(0)
    head = DINOHead(192, out_dim=50, hidden_dim=32, bottleneck_dim=8)
    assert [type(m).__name__ for m in head.mlp] == ["Linear", "GELU", "Linear", "GELU", "Linear"]
    g = head.last_layer.parametrizations.weight.original0
    assert g.shape == (50, 1) and not g.requires_grad and torch.equal(g, torch.ones(50, 1))
    w = head.last_layer.weight
    torch.testing.assert_close(w.norm(dim=1), torch.ones(50))  # unit prototypes
    x = torch.randn(4, 192)
    bottleneck = F.normalize(head.mlp(x), dim=-1)
    torch.testing.assert_close(head(x), bottleneck @ w.T)  # logits are cosines
    assert head(x).abs().max() <= 1 + 1e-6
    free = DINOHead(192, out_dim=50, hidden_dim=32, bottleneck_dim=8, norm_last_layer=False, use_bn=True)
    assert free.last_layer.parametrizations.weight.original0.requires_grad
    assert [type(m).__name__ for m in free.mlp][:3] == ["Linear", "BatchNorm1d", "GELU"]


def test_dino_head_frozen_last_layer_gets_no_gradient():
    from hico.models.heads import DINOHead

    head = DINOHead(16, out_dim=20, hidden_dim=12, bottleneck_dim=4)
    v = head.last_layer.parametrizations.weight.original1
    head(torch.randn(3, 16), freeze_last_layer=True).sum().backward()
    assert v.grad is None and head.mlp[0].weight.grad is not None
    head(torch.randn(3, 16)).sum().backward()
    assert v.grad is not None and v.grad.abs().sum() > 0

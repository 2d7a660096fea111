"""hico.losses against the released HiCo code's golden values and plain hand-written references.

Golden values: ``shared/golden/hico_reference_golden.{json,npz}`` (computed by running the
released ``train_HiCo/simclr.py`` and ``loss/nt_xent.py``, commit 1eeacee); skipped in a clone
without ``../shared``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from hico.losses import (
    gather_with_grad,
    hico_multilevel_loss,
    infonce_logits_loss,
    negative_cosine,
    nt_xent,
    soft_cross_entropy,
)

GOLDEN_DIR = Path(__file__).parents[2] / "shared" / "golden"
GOLDEN_JSON = GOLDEN_DIR / "hico_reference_golden.json"
GOLDEN_NPZ = GOLDEN_DIR / "hico_reference_golden.npz"
RTOL = {torch.float64: 1e-6, torch.float32: 1e-5}

# torchvision's resnet18 keeps its 1000-class ImageNet fc (512*1000 + 1000) inside the released
# FPNresnet18 (ResNetNew only changes forward), so the golden backbone+FPN count includes it;
# timm's features_only backbone has no fc.
RELEASED_UNUSED_IMAGENET_FC = 512 * 1000 + 1000


def _golden_cases() -> dict:
    if not GOLDEN_JSON.exists():
        return {}
    return json.loads(GOLDEN_JSON.read_text())


GOLDEN = _golden_cases()


@pytest.fixture(scope="module")
def golden_arrays():
    if not GOLDEN_NPZ.exists():
        pytest.skip(f"golden values not found at {GOLDEN_DIR} (needs ../shared)")
    with np.load(GOLDEN_NPZ) as npz:
        return {k: npz[k] for k in npz.files}


# --- plain references (loops and explicit masks, no shared code with hico.losses) -------------


def reference_nt_xent(z_i, z_j, temperature):
    """NTXentLoss as released: cat([z_j, z_i]), cosine matrix, positives on the +-N diagonals,
    2N-2 negatives (self and partner masked), CE summed over 2N rows / 2N."""
    n = z_i.shape[0]
    reps = torch.cat([z_j, z_i])
    sim = F.cosine_similarity(reps.unsqueeze(1), reps.unsqueeze(0), dim=-1)
    positives = torch.cat([torch.diag(sim, n), torch.diag(sim, -n)]).view(2 * n, 1)
    eye = torch.eye(2 * n)
    mask = (1 - (eye + torch.diag(torch.ones(n), n) + torch.diag(torch.ones(n), -n))).bool()
    negatives = sim[mask].view(2 * n, -1)
    logits = torch.cat([positives, negatives], dim=1) / temperature
    total = 0.0
    for row in logits:
        total = total - (row[0] - torch.logsumexp(row, dim=0))
    return total / (2 * n)


def reference_per_anchor(z_i, z_j, temperature):
    """Per-anchor losses in the order [anchors of z_i; anchors of z_j]."""
    u = F.normalize(torch.cat([z_i, z_j]), dim=1)
    n = z_i.shape[0]
    out = []
    for a in range(2 * n):
        p = (a + n) % (2 * n)
        sims = torch.stack([u[a] @ u[b] / temperature for b in range(2 * n) if b != a])
        out.append(-(u[a] @ u[p] / temperature - torch.logsumexp(sims, dim=0)))
    return torch.stack(out)


def reference_soft_ce(logits, labels, alpha):
    """soft_label_CrossEntropyLoss as released, element by element (labelled rows only)."""
    keep = [i for i, y in enumerate(labels.tolist()) if y >= 0]
    logits, labels = logits[keep], labels[keep]
    b, c = logits.shape
    target = torch.zeros(b, c, dtype=logits.dtype)
    for i in range(b):
        for j in range(c):
            target[i, j] = (1 - alpha) * float(j == int(labels[i])) + alpha / max(b - 1, 1)
    return -(target * F.log_softmax(logits, dim=1)).sum() / b


# --- golden values ----------------------------------------------------------------------------


def _count_released_network() -> dict[str, int]:
    """Parameter counts of Backbone + FeaturePyramid + heads as released, at 224 px.

    The 273 M head parameters are built on the meta device (shapes only, no memory).
    """
    from hico.models.backbone import Backbone
    from hico.models.fpn import FeaturePyramid
    from hico.models.heads import ClassifierHead, FlattenHead

    def n(module):
        return sum(p.numel() for p in module.parameters())

    backbone = Backbone("resnet18")
    fpn = FeaturePyramid(backbone.channels, 256)
    with torch.device("meta"):
        heads = {
            "p2": FlattenHead(256, 56),  # l2, l22
            "p3": FlattenHead(256, 28),  # l3, l33
            "p4": FlattenHead(256, 14, out=None),  # l4 only (never in a loss)
            "p5": FlattenHead(256, 7),  # l5, l55
            "cls": ClassifierHead(512, num_classes=12),  # lf, fc
        }
    counts = {
        "l2": n(heads["p2"].fc1), "l22": n(heads["p2"].fc2),
        "l3": n(heads["p3"].fc1), "l33": n(heads["p3"].fc2),
        "l4": n(heads["p4"]),
        "l5": n(heads["p5"].fc1), "l55": n(heads["p5"].fc2),
        "lf": n(heads["cls"].lf), "fc": n(heads["cls"].fc),
    }
    counts["backbone_fpn"] = n(backbone) + n(fpn)
    return counts


def _evaluate_golden(case, arrays, dtype):
    def t(name):
        return torch.from_numpy(arrays[name]).to(dtype)

    names = case["inputs"]
    if case["kind"] == "nt_xent":
        return nt_xent(t(names[0]), t(names[1]), case["temperature"])
    if case["kind"] == "hico_multilevel":
        li, lj, mi, mj, gi, gj = (t(x) for x in names)
        return hico_multilevel_loss((li, lj), (mi, mj), (gi, gj), case["temperature"])["loss"]
    if case["kind"] == "soft_ce":
        labels = torch.from_numpy(arrays[names[1]])
        return soft_cross_entropy(t(names[0]), labels, case["alpha"])
    raise AssertionError(f"unknown golden kind {case['kind']!r}: extend this test")


@pytest.mark.shared
@pytest.mark.parametrize("name", [k for k, c in GOLDEN.items() if c["kind"] != "count"] or ["none"])
def test_golden_losses(name, golden_arrays):
    case = GOLDEN[name]
    input_dtype = golden_arrays[case["inputs"][0]].dtype
    dtypes = [torch.float64, torch.float32] if input_dtype == np.float64 else [torch.float32]
    for dtype in dtypes:
        value = _evaluate_golden(case, golden_arrays, dtype)
        assert value.dtype == dtype
        assert value.item() == pytest.approx(case["expected"], rel=RTOL[dtype]), (name, dtype)


@pytest.mark.shared
def test_golden_parameter_counts():
    if not GOLDEN:
        pytest.skip(f"golden values not found at {GOLDEN_DIR} (needs ../shared)")
    counts = _count_released_network()
    heads = GOLDEN["reference_head_param_counts"]["expected"]
    assert set(heads) == set(counts) - {"backbone_fpn"}
    for name, expected in heads.items():
        assert counts[name] == expected, name
    fpn = GOLDEN["reference_fpn_param_count"]["expected"]
    assert counts["backbone_fpn"] + RELEASED_UNUSED_IMAGENET_FC == fpn
    total = GOLDEN["reference_param_count"]["expected"]
    assert sum(counts.values()) + RELEASED_UNUSED_IMAGENET_FC == total
    # the "~273 M head parameters" of the notes: l2..l5 and their second layers
    used_and_p4 = sum(counts[k] for k in ("l2", "l22", "l3", "l33", "l4", "l5", "l55"))
    assert used_and_p4 == 273_155_840


def test_every_golden_kind_is_checked():
    if not GOLDEN:
        pytest.skip(f"golden values not found at {GOLDEN_DIR} (needs ../shared)")
    assert {c["kind"] for c in GOLDEN.values()} <= {"nt_xent", "hico_multilevel", "soft_ce", "count"}
    counts = {k for k, c in GOLDEN.items() if c["kind"] == "count"}
    assert counts == {"reference_param_count", "reference_head_param_counts", "reference_fpn_param_count"}


# --- nt_xent ----------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 2, 5, 16])
@pytest.mark.parametrize("dim", [3, 64])
@pytest.mark.parametrize("temperature", [0.07, 0.5, 1.0])
def test_nt_xent_matches_reference(n, dim, temperature):
    g = torch.Generator().manual_seed(n * 1000 + dim)
    z_i = torch.randn(n, dim, generator=g, dtype=torch.float64) * 3
    z_j = torch.randn(n, dim, generator=g, dtype=torch.float64)
    expected = reference_nt_xent(z_i, z_j, temperature)
    assert nt_xent(z_i, z_j, temperature).item() == pytest.approx(expected.item(), rel=1e-10, abs=1e-12)
    per_anchor = reference_per_anchor(z_i, z_j, temperature)
    assert per_anchor.mean().item() == pytest.approx(expected.item(), rel=1e-10, abs=1e-12)


@pytest.mark.parametrize("n", [2, 9])
def test_nt_xent_is_symmetric_and_scale_invariant(n):
    z_i, z_j = torch.randn(2, n, 32, dtype=torch.float64)
    a = nt_xent(z_i, z_j)
    assert nt_xent(z_j, z_i).item() == pytest.approx(a.item(), rel=1e-12)
    assert nt_xent(5 * z_i, 0.1 * z_j).item() == pytest.approx(a.item(), rel=1e-12)


def test_nt_xent_weights():
    n = 6
    z_i, z_j = torch.randn(2, n, 16, dtype=torch.float64)
    plain = nt_xent(z_i, z_j, 0.3)
    assert nt_xent(z_i, z_j, 0.3, weights=torch.ones(n)).item() == pytest.approx(plain.item(), rel=1e-12)
    w = torch.rand(n, dtype=torch.float64)
    expected = (reference_per_anchor(z_i, z_j, 0.3) * torch.cat([w, w])).mean()
    assert nt_xent(z_i, z_j, 0.3, weights=w).item() == pytest.approx(expected.item(), rel=1e-10)
    with pytest.raises(ValueError, match="weights"):
        nt_xent(z_i, z_j, weights=torch.ones(n + 1))


def test_nt_xent_rejects_bad_input():
    z = torch.randn(4, 8)
    with pytest.raises(ValueError, match="temperature"):
        nt_xent(z, z, temperature=0.0)
    with pytest.raises(ValueError, match="z_i and z_j"):
        nt_xent(z, z[:3])


def test_nt_xent_gradient_is_finite():
    z_i = torch.randn(5, 8, requires_grad=True)
    z_j = torch.randn(5, 8, requires_grad=True)
    nt_xent(z_i, z_j).backward()
    assert torch.isfinite(z_i.grad).all() and z_i.grad.abs().sum() > 0
    assert torch.isfinite(z_j.grad).all() and z_j.grad.abs().sum() > 0


def test_nt_xent_under_bf16_autocast_is_computed_in_fp32():
    z_i, z_j = (z.to(torch.bfloat16) for z in torch.randn(2, 16, 32))
    exact = nt_xent(z_i.double(), z_j.double(), 0.1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = nt_xent(z_i, z_j, 0.1)
        moco = infonce_logits_loss(z_i, z_j, z_j.flip(0), 0.1)
    assert loss.dtype == torch.float32 and moco.dtype == torch.float32
    assert loss.item() == pytest.approx(exact.item(), rel=1e-5)


def test_gather_with_grad_is_identity_on_one_process():
    x = torch.randn(3, 4)
    assert gather_with_grad(x) is x


# --- hico_multilevel_loss ---------------------------------------------------------------------


def _levels(n=6, d=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [tuple(torch.randn(n, d, generator=g, dtype=torch.float64) for _ in range(2)) for _ in range(3)]


def test_hico_multilevel_parts_within():
    (li, lj), (mi, mj), (gi, gj) = _levels()
    out = hico_multilevel_loss((li, lj), (mi, mj), (gi, gj))
    r = reference_nt_xent
    parts = {
        "peer_local": r(li, lj, 0.5), "peer_medium": r(mi, mj, 0.5), "peer_global": r(gi, gj, 0.5),
        "cross_global_medium": r(gi, mi, 0.5) + r(gj, mj, 0.5),
        "cross_global_local": r(gi, li, 0.5) + r(gj, lj, 0.5),
    }
    assert set(out) == {"loss", *parts}
    for k, v in parts.items():
        assert out[k].item() == pytest.approx(v.item(), rel=1e-10), k
    expected = 0.5 * sum(v for k, v in parts.items() if k.startswith("peer")) + 0.5 * (
        parts["cross_global_medium"] + parts["cross_global_local"]
    )
    assert out["loss"].item() == pytest.approx(expected.item(), rel=1e-10)


def test_hico_multilevel_across_views():
    (li, lj), (mi, mj), (gi, gj) = _levels(seed=1)
    t = 0.2
    out = hico_multilevel_loss((li, lj), (mi, mj), (gi, gj), temperature=t, peer_weight=0.3,
                               cross_weight=0.7, cross_pairs="across")
    r = reference_nt_xent
    cross_gm = r(gi, mj, t) + r(gj, mi, t)
    cross_gl = r(gi, lj, t) + r(gj, li, t)
    peer = r(li, lj, t) + r(mi, mj, t) + r(gi, gj, t)
    assert out["cross_global_medium"].item() == pytest.approx(cross_gm.item(), rel=1e-10)
    assert out["cross_global_local"].item() == pytest.approx(cross_gl.item(), rel=1e-10)
    assert out["loss"].item() == pytest.approx((0.3 * peer + 0.7 * (cross_gm + cross_gl)).item(), rel=1e-10)
    within = hico_multilevel_loss((li, lj), (mi, mj), (gi, gj), temperature=t, cross_pairs="within")
    assert within["cross_global_medium"].item() != pytest.approx(cross_gm.item(), rel=1e-6)


def test_hico_multilevel_ablations():
    (li, lj), (mi, mj), (gi, gj) = _levels(seed=2)
    r = reference_nt_xent
    no_local = hico_multilevel_loss(None, (mi, mj), (gi, gj))
    assert set(no_local) == {"loss", "peer_medium", "peer_global", "cross_global_medium"}
    expected = 0.5 * (r(mi, mj, 0.5) + r(gi, gj, 0.5)) + 0.5 * (r(gi, mi, 0.5) + r(gj, mj, 0.5))
    assert no_local["loss"].item() == pytest.approx(expected.item(), rel=1e-10)
    global_only = hico_multilevel_loss(None, None, (gi, gj), peer_weight=1.0)
    assert set(global_only) == {"loss", "peer_global"}
    assert global_only["loss"].item() == pytest.approx(r(gi, gj, 0.5).item(), rel=1e-10)
    peer_only = hico_multilevel_loss((li, lj), (mi, mj), (gi, gj), cross=False)
    assert not any(k.startswith("cross") for k in peer_only)
    cross_only = hico_multilevel_loss((li, lj), (mi, mj), (gi, gj), peer=False)
    assert not any(k.startswith("peer") for k in cross_only)
    full = hico_multilevel_loss((li, lj), (mi, mj), (gi, gj))
    assert (peer_only["loss"] + cross_only["loss"]).item() == pytest.approx(full["loss"].item(), rel=1e-12)


def test_hico_multilevel_rejects_bad_arguments():
    (li, lj), (mi, mj), (gi, gj) = _levels()
    with pytest.raises(ValueError, match="cross_pairs"):
        hico_multilevel_loss((li, lj), (mi, mj), (gi, gj), cross_pairs="diagonal")
    with pytest.raises(ValueError, match="both off"):
        hico_multilevel_loss((li, lj), (mi, mj), (gi, gj), peer=False, cross=False)
    with pytest.raises(ValueError, match="global"):
        hico_multilevel_loss((li, lj), (mi, mj), None)


# --- soft_cross_entropy -----------------------------------------------------------------------


@pytest.mark.parametrize("b,c", [(2, 3), (5, 12), (32, 12)])
@pytest.mark.parametrize("alpha", [0.0, 0.2, 0.5])
def test_soft_ce_reference_matches_hand(b, c, alpha):
    g = torch.Generator().manual_seed(b * c)
    logits = torch.randn(b, c, generator=g, dtype=torch.float64)
    labels = torch.randint(0, c, (b,), generator=g)
    labels[0] = -1  # one unlabelled row, dropped
    expected = reference_soft_ce(logits, labels, alpha)
    assert soft_cross_entropy(logits, labels, alpha).item() == pytest.approx(expected.item(), rel=1e-12)


def test_soft_ce_no_labels_is_connected_zero():
    logits = torch.randn(4, 5, requires_grad=True)
    loss = soft_cross_entropy(logits, torch.full((4,), -1))
    assert loss.item() == 0.0 and loss.grad_fn is not None
    loss.backward()
    assert torch.equal(logits.grad, torch.zeros_like(logits))


def test_soft_ce_one_label_is_finite():
    logits = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([-1, 2, -1])
    loss = soft_cross_entropy(logits, labels, alpha=0.2)
    assert math.isfinite(loss.item())
    # defined as alpha / max(B - 1, 1) = alpha on every class
    logp = F.log_softmax(logits[1].detach(), dim=0)
    assert loss.item() == pytest.approx(-(0.8 * logp[2] + 0.2 * logp.sum()).item(), rel=1e-12)
    loss.backward()
    assert torch.isfinite(logits.grad).all()


@pytest.mark.parametrize("alpha", [0.0, 0.1, 0.2])
def test_soft_ce_standard_and_hard(alpha):
    logits = torch.randn(7, 5, dtype=torch.float64)
    labels = torch.tensor([0, 4, -1, 2, 2, -1, 1])
    keep = labels >= 0
    standard = F.cross_entropy(logits[keep], labels[keep], label_smoothing=alpha)
    hard = F.cross_entropy(logits[keep], labels[keep])
    assert soft_cross_entropy(logits, labels, alpha, "standard").item() == pytest.approx(standard.item(), rel=1e-12)
    assert soft_cross_entropy(logits, labels, alpha, "hard").item() == pytest.approx(hard.item(), rel=1e-12)


def test_soft_ce_rejects_bad_arguments():
    logits, labels = torch.randn(3, 4), torch.tensor([0, 1, 2])
    with pytest.raises(ValueError, match="smoothing"):
        soft_cross_entropy(logits, labels, smoothing="pyramid")
    with pytest.raises(ValueError, match="alpha"):
        soft_cross_entropy(logits, labels, alpha=1.5)
    with pytest.raises(ValueError, match="out of range"):
        soft_cross_entropy(logits, torch.tensor([0, 1, 4]))


# --- MoCo / BYOL / SimSiam --------------------------------------------------------------------


def test_infonce_logits_loss_matches_hand():
    n, k, d, t = 4, 10, 8, 0.2
    q, key = (F.normalize(x, dim=1) for x in torch.randn(2, n, d, dtype=torch.float64))
    queue = F.normalize(torch.randn(k, d, dtype=torch.float64), dim=1)
    expected = 0.0
    for b in range(n):
        pos = q[b] @ key[b] / t
        all_logits = torch.cat([pos.view(1), queue @ q[b] / t])
        expected += -(pos - torch.logsumexp(all_logits, dim=0)) / n
    assert infonce_logits_loss(q, key, queue, t).item() == pytest.approx(expected.item(), rel=1e-12)


def test_negative_cosine():
    p, z = torch.randn(2, 5, 7, dtype=torch.float64)
    expected = -sum((p[b] @ z[b]) / (p[b].norm() * z[b].norm()) for b in range(5)) / 5
    assert negative_cosine(p, z).item() == pytest.approx(expected.item(), rel=1e-12)
    assert negative_cosine(p, p).item() == pytest.approx(-1.0)


# --- DDP: gathered negatives on two gloo ranks equal the single-process loss ------------------

WORLD = 2
N_PER_RANK, DIM, TEMPERATURE = 3, 8, 0.4


def _full_batch():
    g = torch.Generator().manual_seed(0)
    z_i = torch.randn(WORLD * N_PER_RANK, DIM, generator=g, dtype=torch.float64)
    z_j = torch.randn(WORLD * N_PER_RANK, DIM, generator=g, dtype=torch.float64)
    w = torch.rand(WORLD * N_PER_RANK, generator=g, dtype=torch.float64)
    return z_i, z_j, w


def _ddp_worker(rank: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        z_i, z_j, w = _full_batch()
        part = slice(rank * N_PER_RANK, (rank + 1) * N_PER_RANK)
        results = {}
        for weighted in (False, True):
            zi = z_i[part].clone().requires_grad_(True)
            zj = z_j[part].clone().requires_grad_(True)
            loss = nt_xent(zi, zj, TEMPERATURE, weights=w[part] if weighted else None)
            loss.backward()
            results[weighted] = (loss.detach(), zi.grad, zj.grad)
        torch.save(results, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed not available")
def test_nt_xent_gathered_across_two_gloo_ranks(tmp_path):
    """Convention: each rank's loss covers its local anchors against every gathered candidate.
    The mean of the rank losses is the full-batch loss, and each rank's gradient (summed over
    ranks by gather_with_grad) is world_size times the full-batch loss's gradient, which DDP's
    gradient averaging turns back into exactly that gradient."""
    mp.spawn(_ddp_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=WORLD, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD)]
    z_i, z_j, w = _full_batch()
    for weighted in (False, True):
        zi, zj = z_i.clone().requires_grad_(True), z_j.clone().requires_grad_(True)
        full = nt_xent(zi, zj, TEMPERATURE, weights=w if weighted else None)
        full.backward()
        mean_of_ranks = sum(r[weighted][0] for r in ranks) / WORLD
        assert mean_of_ranks.item() == pytest.approx(full.item(), rel=1e-12)
        grad_i = torch.cat([r[weighted][1] for r in ranks]) / WORLD
        grad_j = torch.cat([r[weighted][2] for r in ranks]) / WORLD
        torch.testing.assert_close(grad_i, zi.grad, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(grad_j, zj.grad, rtol=1e-10, atol=1e-12)
    # without gathering each rank would only see its own negatives: a different loss
    local = nt_xent(z_i[:N_PER_RANK], z_j[:N_PER_RANK], TEMPERATURE)
    assert local.item() != pytest.approx(ranks[0][False][0].item(), rel=1e-6)

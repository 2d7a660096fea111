"""Losses shared by HiCo and the baselines: NT-Xent, HiCo's multi-level sum, softened CE,
MoCo's InfoNCE over a queue, and the negative cosine of BYOL/SimSiam.

Reference code: HiCo, ``train_HiCo/loss/nt_xent.py`` and ``train_HiCo/simclr.py`` (commit
1eeacee; ``_step`` and ``soft_label_CrossEntropyLoss``). The values in
``shared/golden/hico_reference_golden.json`` were computed with that code and
``tests/test_losses.py`` checks every one of them.

References:
  - Chen et al., "A Simple Framework for Contrastive Learning of Visual Representations"
    (SimCLR), ICML 2020.
  - Zhang et al., "HiCo: Hierarchical Contrastive Learning for Ultrasound Video Model
    Pretraining", ACCV 2022.
  - He et al., "Momentum Contrast for Unsupervised Visual Representation Learning" (MoCo),
    CVPR 2020; Chen et al., "Improved Baselines with Momentum Contrastive Learning", 2020.
  - Grill et al., BYOL, NeurIPS 2020; Chen & He, SimSiam, CVPR 2021.
  - VanBerlo et al., "Intra-video positive pairs in self-supervised learning for
    ultrasound" (IVPP), 2024: per-pair weights.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F

__all__ = [
    "check_multilevel_args",
    "check_smoothing",
    "check_temperature",
    "gather_with_grad",
    "hico_multilevel_loss",
    "infonce_logits_loss",
    "negative_cosine",
    "nt_xent",
    "soft_cross_entropy",
]

SMOOTHINGS = ("reference", "standard", "hard")
CROSS_PAIRS = ("within", "across")


def check_temperature(temperature: float) -> None:
    """The one check of a contrastive temperature (losses and method constructors): T > 0."""
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")


def check_multilevel_args(temperature: float, peer_weight: float, cross_weight: float, peer: bool,
                          cross: bool, cross_pairs: str) -> None:
    """The settings :func:`hico_multilevel_loss` accepts (also checked when HiCo is built)."""
    check_temperature(temperature)
    if cross_pairs not in CROSS_PAIRS:
        raise ValueError(f"cross_pairs must be one of {CROSS_PAIRS}, got {cross_pairs!r}")
    if not (peer or cross):
        raise ValueError("hico_multilevel_loss: peer and cross are both off; nothing to compute")
    if peer_weight < 0 or cross_weight < 0:
        raise ValueError(f"peer_weight and cross_weight must be >= 0, got {peer_weight}, {cross_weight}")


def check_smoothing(alpha: float, smoothing: str) -> None:
    """The label smoothing :func:`soft_cross_entropy` accepts."""
    if smoothing not in SMOOTHINGS:
        raise ValueError(f"smoothing must be one of {SMOOTHINGS}, got {smoothing!r}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")


def _at_least_fp32(*tensors: torch.Tensor) -> list[torch.Tensor]:
    """Upcast half/bfloat16 inputs: logits of unit vectors over T = 0.1 lose ~0.04 in bf16."""
    dtype = torch.promote_types(tensors[0].dtype, torch.float32)
    return [t.to(dtype) for t in tensors]


def _no_autocast(t: torch.Tensor):
    """Keep the (small) similarity matmuls out of AMP's low-precision autocast."""
    return torch.autocast(device_type=t.device.type, enabled=False)


def _distributed_world(process_group=None) -> tuple[int, int]:
    """``(world_size, rank)`` of ``process_group``; ``(1, 0)`` without torch.distributed."""
    if not (dist.is_available() and dist.is_initialized()):
        return 1, 0
    return dist.get_world_size(process_group), dist.get_rank(process_group)


class _GatherWithGrad(torch.autograd.Function):
    """all_gather whose backward sends each rank the summed gradient of its own slice."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, group) -> tuple[torch.Tensor, ...]:
        ctx.group = group
        x = x.contiguous()
        out = [torch.empty_like(x) for _ in range(dist.get_world_size(group))]
        dist.all_gather(out, x, group=group)
        return tuple(out)

    @staticmethod
    def backward(ctx, *grads: torch.Tensor):
        # Every rank's loss may depend on this rank's slice: sum those gradients here.
        # all_reduce rather than reduce_scatter, which the gloo backend lacks.
        stacked = torch.stack([g.contiguous() for g in grads])
        dist.all_reduce(stacked, op=dist.ReduceOp.SUM, group=ctx.group)
        return stacked[dist.get_rank(ctx.group)], None


def gather_with_grad(x: torch.Tensor, process_group=None) -> torch.Tensor:
    """Concatenate ``x`` [N, D] from every rank along dim 0 -> [world * N, D], keeping autograd.

    Rank r's slice is ``out[r * N:(r + 1) * N]``. In backward each rank receives the sum over
    ranks of the gradients flowing into its slice, so with DDP's gradient averaging the update
    equals that of the mean of the per-rank losses (as lightly's ``GatherLayer``). Every rank
    must call it with the same N (use ``drop_last``). Without an initialised process group, or
    with a world of one, it returns ``x`` unchanged.
    """
    world, _ = _distributed_world(process_group)
    if world == 1:
        return x
    return torch.cat(_GatherWithGrad.apply(x, process_group), dim=0)


def nt_xent(
    z_i: torch.Tensor,
    z_j: torch.Tensor,
    temperature: float = 0.5,
    weights: torch.Tensor | None = None,
    gather: bool = True,
    process_group=None,
) -> torch.Tensor:
    r"""NT-Xent (SimCLR's normalised temperature-scaled cross entropy), as HiCo/USCL use it.

    With :math:`u = \mathrm{normalize}([z_i; z_j])` (2N rows) and :math:`p(a)` the partner
    of anchor :math:`a` (row k of ``z_i`` pairs with row k of ``z_j``):

    .. math::
        \ell_a = -\log \frac{\exp(u_a^\top u_{p(a)} / T)}
                            {\sum_{b \ne a} \exp(u_a^\top u_b / T)}, \qquad
        L = \frac{1}{2N} \sum_{a=1}^{2N} w_a\, \ell_a

    i.e. one positive and 2N-2 negatives per anchor, cross entropy summed over the 2N anchors
    and divided by 2N (reference ``NTXentLoss``: cosine similarity, ``CrossEntropyLoss(
    reduction="sum") / (2 * batch_size)``; HiCo's ``config.yaml`` sets T = 0.5).

    Args:
        z_i, z_j: ``[N, D]`` projections of the two views (any scale: L2-normalised here).
        temperature: T > 0.
        weights: optional ``[N]`` per-pair weights (IVPP's sample weights); pair k's weight
            applies to both of its anchors and the loss is ``mean(w_a * l_a)`` over the 2N
            anchors, so ``weights=ones`` is the unweighted loss. (IVPP sums the two
            directions, giving twice this value; the weights are not renormalised, as in IVPP.)
        gather: under torch.distributed with world size > 1, gather ``z_i``/``z_j`` from every
            rank (:func:`gather_with_grad`) so the negatives are the whole global batch.
            Convention (as SimCLR's and IVPP's): each rank's loss is over its *local* 2N
            anchors, against all 2·world·N candidates; the mean of the per-rank losses equals
            the single-process loss on the concatenated batch (equal N on every rank), and
            DDP's gradient averaging gives that loss's gradient. All ranks must call it.
        process_group: the group to gather over (default: the world).

    Half-precision inputs are upcast to float32 and the similarities computed outside autocast
    (the 2N x 2M matrix is small; in bfloat16 a logit at T = 0.1 is off by up to ~0.04).

    Returns:
        A scalar tensor (float32, or float64 for float64 inputs).
    """
    check_temperature(temperature)
    if z_i.shape != z_j.shape or z_i.dim() != 2:
        raise ValueError(f"nt_xent: z_i and z_j must both be [N, D], got {tuple(z_i.shape)} "
                         f"and {tuple(z_j.shape)}")
    n = z_i.shape[0]
    with _no_autocast(z_i):
        z_i, z_j = (F.normalize(z, dim=1) for z in _at_least_fp32(z_i, z_j))
        world, rank = _distributed_world(process_group) if gather else (1, 0)
        if world > 1:
            all_i = gather_with_grad(z_i, process_group)  # [world*N, D]
            all_j = gather_with_grad(z_j, process_group)
        else:
            all_i, all_j = z_i, z_j
        m = all_i.shape[0]
        anchors = torch.cat([z_i, z_j])  # [2N, D]
        candidates = torch.cat([all_i, all_j])  # [2M, D], M = world * N
        logits = anchors @ candidates.T / temperature  # [2N, 2M]
    local = torch.arange(n, device=z_i.device) + rank * n  # rows of this rank in all_i
    self_idx = torch.cat([local, local + m])
    partner_idx = torch.cat([local + m, local])
    rows = torch.arange(2 * n, device=z_i.device)
    self_mask = torch.zeros_like(logits, dtype=torch.bool)
    self_mask[rows, self_idx] = True
    logits = logits.masked_fill(self_mask, float("-inf"))  # drop u_a . u_a
    per_anchor = F.cross_entropy(logits, partner_idx, reduction="none")  # [2N]
    if weights is not None:
        weights = torch.as_tensor(weights, dtype=per_anchor.dtype, device=per_anchor.device)
        if weights.shape != (n,):
            raise ValueError(f"nt_xent: weights must be [N] = [{n}], got {tuple(weights.shape)}")
        per_anchor = per_anchor * torch.cat([weights, weights])
    return per_anchor.mean()


def hico_multilevel_loss(
    local: tuple[torch.Tensor, torch.Tensor] | None,
    medium: tuple[torch.Tensor, torch.Tensor] | None,
    global_: tuple[torch.Tensor, torch.Tensor],
    temperature: float = 0.5,
    peer_weight: float = 0.5,
    cross_weight: float = 0.5,
    peer: bool = True,
    cross: bool = True,
    cross_pairs: str = "within",
    *,
    weights: torch.Tensor | None = None,
    gather: bool = True,
    process_group=None,
) -> dict[str, torch.Tensor]:
    r"""HiCo's contrastive objective over local (p2), medium (p3) and global (p5) projections.

    Released ``SimCLR._step`` (``lumbda_ = 0.5`` for both groups):

    .. math::
        L = w_p\,[NT(l_i,l_j) + NT(m_i,m_j) + NT(g_i,g_j)]
          + w_c\,[NT(g_i,m_i) + NT(g_j,m_j) + NT(g_i,l_i) + NT(g_j,l_j)]

    with NT = :func:`nt_xent` (inputs L2-normalised inside). Cross-level pairs are *within*
    one view in the code (``cross_pairs="within"``, the default and the golden values); the
    paper's figure draws them *across* views, ``cross_pairs="across"``:
    NT(g_i, m_j) + NT(g_j, m_i) and NT(g_i, l_j) + NT(g_j, l_i).

    Args:
        local, medium, global_: each a pair ``(view_i, view_j)`` of raw ``[N, D]`` projections.
            ``local`` or ``medium`` may be None (levels ablation): every term using it is
            skipped. ``global_`` is required.
        temperature: NT-Xent temperature (released 0.5).
        peer_weight, cross_weight: weights of the peer-level and cross-level sums (released 0.5
            and 1 - 0.5).
        peer, cross: include the peer-level / cross-level terms (ablations).
        cross_pairs: ``"within"`` (released code) or ``"across"`` (paper figure).
        weights, gather, process_group: passed to every :func:`nt_xent`.

    Returns:
        ``{"loss": total, <part>: value}`` with parts among ``peer_local``, ``peer_medium``,
        ``peer_global``, ``cross_global_medium``, ``cross_global_local`` (each cross part is
        the sum of its two NT-Xent terms, unweighted); skipped terms are absent.
    """
    check_multilevel_args(temperature, peer_weight, cross_weight, peer, cross, cross_pairs)
    if global_ is None:
        raise ValueError("hico_multilevel_loss: the global level is required")
    for name, pair in (("local", local), ("medium", medium), ("global_", global_)):
        if pair is not None and len(pair) != 2:
            raise ValueError(f"hico_multilevel_loss: {name} must be a pair (view_i, view_j)")

    def nt(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return nt_xent(a, b, temperature, weights=weights, gather=gather, process_group=process_group)

    g_i, g_j = global_
    parts: dict[str, torch.Tensor] = {}
    if peer:
        if local is not None:
            parts["peer_local"] = nt(*local)
        if medium is not None:
            parts["peer_medium"] = nt(*medium)
        parts["peer_global"] = nt(g_i, g_j)
    if cross:
        for name, pair in (("cross_global_medium", medium), ("cross_global_local", local)):
            if pair is None:
                continue
            x_i, x_j = pair
            if cross_pairs == "within":
                parts[name] = nt(g_i, x_i) + nt(g_j, x_j)
            else:
                parts[name] = nt(g_i, x_j) + nt(g_j, x_i)
    peer_sum = sum(v for k, v in parts.items() if k.startswith("peer_"))
    cross_sum = sum(v for k, v in parts.items() if k.startswith("cross_"))
    loss = peer_weight * peer_sum + cross_weight * cross_sum
    return {"loss": loss, **parts}


def soft_cross_entropy(
    logits: torch.Tensor,
    labels: torch.Tensor,
    alpha: float = 0.2,
    smoothing: str = "reference",
) -> torch.Tensor:
    r"""Cross entropy on the labelled rows of a batch, with HiCo's softened targets by default.

    Rows with ``labels == -1`` (any negative label) are unlabelled and dropped; B is the number
    of labelled rows and C the number of classes.

    - ``"reference"`` (released ``soft_label_CrossEntropyLoss``, alpha = 0.2):
      :math:`t_{bc} = (1-\alpha)\,[c = y_b] + \alpha / \max(B-1, 1)`,
      :math:`L = -\frac{1}{B}\sum_b \sum_c t_{bc} \log\mathrm{softmax}(x_b)_c`.
      The smoothing mass is spread by the *batch* size, not C (PyramidCLIP's contrastive
      target reused for class CE), so rows do not sum to 1. The released code divides by
      B - 1 and is infinite for B = 1; here B = 1 uses alpha / 1 (our definition).
    - ``"standard"``: ordinary label smoothing over C classes,
      ``F.cross_entropy(..., label_smoothing=alpha)`` (mean over labelled rows).
    - ``"hard"``: plain cross entropy (alpha ignored).

    With no labelled row (B = 0) the result is a zero still connected to ``logits``' graph,
    so a step on an unlabelled batch backpropagates (zero gradients) like any other.

    Args:
        logits: ``[N, C]``.
        labels: ``[N]`` int64 class indices, -1 = unlabelled.
    """
    check_smoothing(alpha, smoothing)
    if logits.dim() != 2 or labels.shape != logits.shape[:1]:
        raise ValueError(f"soft_cross_entropy: expected logits [N, C] and labels [N], got "
                         f"{tuple(logits.shape)} and {tuple(labels.shape)}")
    labelled = labels >= 0
    logits, labels = logits[labelled], labels[labelled].long()
    b, c = logits.shape
    if b == 0:
        return logits.sum() * 0.0
    if int(labels.max()) >= c:
        raise ValueError(f"soft_cross_entropy: label {int(labels.max())} out of range for {c} classes")
    if smoothing == "hard":
        return F.cross_entropy(logits, labels)
    if smoothing == "standard":
        return F.cross_entropy(logits, labels, label_smoothing=alpha)
    target = (1.0 - alpha) * F.one_hot(labels, c).to(logits.dtype) + alpha / max(b - 1, 1)
    return -(target * F.log_softmax(logits, dim=1)).sum() / b


def infonce_logits_loss(
    q: torch.Tensor, k: torch.Tensor, negatives: torch.Tensor, temperature: float
) -> torch.Tensor:
    r"""MoCo's InfoNCE: logits ``[q·k⁺, q·n_1 .. q·n_K] / T``, cross entropy with target 0.

    .. math:: L = -\frac{1}{N}\sum_b \log \frac{\exp(q_b^\top k_b/T)}
                  {\exp(q_b^\top k_b/T) + \sum_{n} \exp(q_b^\top n/T)}

    (``moco/builder.py``: ``l_pos``, ``l_neg`` against the queue, T = 0.2 in MoCo v2).

    Args:
        q: ``[N, D]`` queries, k: ``[N, D]`` positive keys, negatives: ``[K, D]`` (the queue,
            row-major; MoCo's buffer is ``[D, K]``, pass its transpose). All assumed
            L2-normalised by the caller; keys and queue detached by the caller.
        temperature: T > 0.
    """
    check_temperature(temperature)
    with _no_autocast(q):
        q, k, negatives = _at_least_fp32(q, k, negatives)
        l_pos = (q * k).sum(dim=1, keepdim=True)  # [N, 1]
        l_neg = q @ negatives.T  # [N, K]
        logits = torch.cat([l_pos, l_neg], dim=1) / temperature
    target = torch.zeros(q.shape[0], dtype=torch.long, device=q.device)
    return F.cross_entropy(logits, target)


def negative_cosine(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    r"""``-mean_b cos(p_b, z_b)`` (SimSiam's D; BYOL's ``2 - 2 cos`` is ``2 + 2 *`` this).

    The stop-gradient on ``z`` is the caller's: pass ``z.detach()`` (SimSiam) or the target
    network's output (BYOL). Symmetrise by calling it for both views.
    """
    return -F.cosine_similarity(p, z, dim=-1).mean()

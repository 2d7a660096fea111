"""Fine-tuning: a new linear head on pooled c5, trained end to end with the released recipe.

Released HiCo/USCL recipe (eval_pretrained_model.py): Adam 0.01, weight decay 1e-4, cosine
over 100 epochs, batch 32, Resize -> RandomResizedCrop(0.8-1, 0.8-1.25) -> flip -> Normalize(0.5,
0.25). ``released`` trains the last block of the last stage (``layer4.1`` of a ResNet-18) and
the head; ``full`` trains every layer at lr 1e-4. The epoch reported as ``frame``/``video`` is
chosen on the inner validation split; the released code's choice, the epoch with the best
*test-fold* accuracy, is kept separately as ``paper_protocol`` (optimistic), and the last epoch
as ``last``. Registered as ``finetune`` (variant argument), ``finetune_released`` and
``finetune_full`` (:mod:`hico.evaluation.protocols`).
"""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from hico.data.transforms import AugmentConfig, FrameAugment, normalize
from hico.evaluation.protocols import ProtocolError, positive_int, positive_number
from hico.evaluation.splits import FrameSet
from hico.models.backbone import Backbone
from hico.precision import bf16_autocast_enabled
from hico.progress import progress

#: Released HiCo/USCL fine-tuning (eval_pretrained_model.py); ``full`` differs in what trains and lr.
FINETUNE_VARIANTS: dict[str, dict[str, Any]] = {
    "released": {"trainable": "last_block", "epochs": 100, "batch_size": 32, "lr": 0.01, "weight_decay": 1e-4},
    "full": {"trainable": "all", "epochs": 100, "batch_size": 32, "lr": 1e-4, "weight_decay": 1e-4},
}


def last_block(backbone: Backbone) -> nn.Module:
    """The block the released fine-tune trains: :meth:`Backbone.last_block` (``layer4.1`` of a
    timm ResNet-18; the last transformer block of a ViT)."""
    return backbone.last_block()


class FinetuneModel(nn.Module):
    """Encoder + a new linear head on pooled c5 (USCL's ``linear``; HiCo's head concatenates
    random frozen FPN projections, which an encoder-only checkpoint does not carry)."""

    def __init__(self, encoder: Backbone, n_classes: int):
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(encoder.num_features, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x))


def _predict(model: FinetuneModel, data: FrameSet, mean: float, std: float, device, batch_size: int = 128,
             amp: bool = False) -> tuple[np.ndarray, float]:
    """Softmax probabilities ``[N, K]`` and mean cross-entropy (test-time transform: Resize + Normalize)."""
    model.eval()
    probs, loss_sum = [], 0.0
    with torch.no_grad():
        for start in range(0, len(data), batch_size):
            x = normalize(data.frames[start : start + batch_size].to(device), mean, std)
            y = torch.as_tensor(data.labels[start : start + batch_size], device=device)
            with torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=amp):
                logits = model(x)
            logits = logits.float()
            loss_sum += float(F.cross_entropy(logits, y, reduction="sum"))
            probs.append(logits.softmax(dim=1).cpu().numpy())
    k = model.head.out_features
    proba = np.concatenate(probs) if probs else np.zeros((0, k))
    return proba.astype(np.float64), loss_sum / max(1, len(data))


def train_epoch(model: FinetuneModel, data: FrameSet, optimizer: torch.optim.Optimizer, augment: FrameAugment,
                batch_size: int, order_gen: torch.Generator, aug_gen: torch.Generator, device, amp: bool = False) -> float:
    """One pass over ``data`` (shuffled) with the training augmentation; returns the mean loss.

    The whole network stays in train mode, as released (BatchNorm statistics of the frozen
    layers keep updating). A last batch of a single frame is skipped: BatchNorm cannot
    normalise one sample at a 1x1 c5.
    """
    model.train()
    order = torch.randperm(len(data), generator=order_gen)
    total, n = 0.0, 0
    for start in range(0, len(data), batch_size):
        idx = order[start : start + batch_size]
        if len(idx) < 2 and len(data) > 1:
            continue
        x = augment(data.frames[idx.to(data.frames.device)].to(device), generator=aug_gen)
        y = torch.as_tensor(data.labels[idx.numpy()], device=device)
        with torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=amp):
            logits = model(x)
        loss = F.cross_entropy(logits.float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += float(loss.detach()) * len(idx)
        n += len(idx)
    return total / max(1, n)


def select_epoch(history: list[dict[str, float]]) -> int:
    """Index of the epoch with the best validation accuracy; ties -> lower validation loss,
    then the earlier epoch. Reads only ``val_*`` entries."""
    best = min(range(len(history)), key=lambda i: (-history[i]["val_accuracy"], history[i]["val_loss"], i))
    return best


def finetune(train: FrameSet, val: FrameSet, test: FrameSet, n_classes: int, seed: int = 0, *,
             encoder: Backbone, device: str | torch.device = "cpu", variant: str = "released",
             epochs: int | None = None, batch_size: int | None = None, lr: float | None = None,
             weight_decay: float | None = None, trainable: str | None = None,
             mean: float = 0.5, std: float = 0.25) -> dict[str, Any]:
    """Fine-tune ``encoder`` + a new linear head on ``train``; pick the epoch on ``val``.

    Recipe (released HiCo/USCL eval_pretrained_model.py): Adam(lr, weight_decay),
    CosineAnnealingLR(T_max=epochs, eta_min=0) stepped per epoch, cross-entropy, training
    transform RandomResizedCrop(scale 0.8-1, ratio 0.8-1.25) + horizontal flip on the
    Resize((S, S))d frame, Normalize(0.5, 0.25); test transform Resize + Normalize.
    ``trainable``: ``last_block`` (released: last block of the last stage + head) or ``all``.
    """
    hp = finetune_hyperparameters(variant, epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay,
                                  trainable=trainable, mean=mean, std=std)
    if len(train) == 0 or len(val) == 0:
        raise ProtocolError(f"finetune: empty training ({len(train)}) or validation ({len(val)}) set")
    device = torch.device(device)
    amp = bf16_autocast_enabled(device)
    image_size = int(train.frames.shape[-1])

    if device.type == "cuda":  # uint8 frames live on the GPU once (POCUS at 224 px: ~0.1 GB)
        train, val, test = (FrameSet(d.frames.to(device), d.labels, d.video_ids) for d in (train, val, test))
    torch.manual_seed(seed)
    model = FinetuneModel(copy.deepcopy(encoder), n_classes).to(device)
    trainable_names = _set_trainable(model, hp["trainable"])
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=hp["lr"], weight_decay=hp["weight_decay"])
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=hp["epochs"], eta_min=0.0)
    augment = FrameAugment(AugmentConfig(image_size=image_size, brightness=0.0, contrast=0.0, jitter_p=0.0,
                                         mean=mean, std=std))
    order_gen = torch.Generator().manual_seed(seed)
    aug_gen = torch.Generator(device=device).manual_seed(seed + 1)

    history: list[dict[str, float]] = []
    test_probas: list[np.ndarray] = []
    bar = progress(range(hp["epochs"]), desc=f"finetune ({variant})", unit="epoch")
    for epoch in bar:
        train_loss = train_epoch(model, train, optimizer, augment, hp["batch_size"], order_gen, aug_gen, device, amp)
        scheduler.step()
        val_proba, val_loss = _predict(model, val, mean, std, device, amp=amp)
        test_proba, _ = _predict(model, test, mean, std, device, amp=amp)
        test_probas.append(test_proba)
        history.append({
            "epoch": epoch + 1,
            "train_loss": train_loss,
            "val_loss": val_loss,
            "val_accuracy": float((val_proba.argmax(1) == val.labels).mean()),
            # for the paper_protocol record and curves only; never read by select_epoch
            "test_accuracy": float((test_proba.argmax(1) == test.labels).mean()) if len(test) else float("nan"),
        })
        bar.set_postfix(train_loss=f"{train_loss:.4f}", val_accuracy=f"{history[-1]['val_accuracy']:.3f}")
    n_trainable = sum(p.numel() for p in params)
    return {
        "variant": variant,
        "hyperparameters": {**hp, "n_trainable_params": int(n_trainable), "trainable_modules": trainable_names},
        **_selected_epochs(history, test_probas),
    }


def finetune_hyperparameters(variant: str = "released", *, epochs: int | None = None, batch_size: int | None = None,
                             lr: float | None = None, weight_decay: float | None = None, trainable: str | None = None,
                             mean: float = 0.5, std: float = 0.25) -> dict[str, Any]:
    """The variant's recipe (:data:`FINETUNE_VARIANTS`) with the given (non-None) settings, checked;
    also the protocol's argument check (:mod:`hico.evaluation.protocols`)."""
    if variant not in FINETUNE_VARIANTS:
        raise ProtocolError(f"finetune variant must be one of {sorted(FINETUNE_VARIANTS)}, got {variant!r}")
    hp = dict(FINETUNE_VARIANTS[variant])
    given = {"epochs": epochs, "batch_size": batch_size, "lr": lr, "weight_decay": weight_decay, "trainable": trainable}
    hp.update({key: value for key, value in given.items() if value is not None})
    name = f"finetune ({variant})"
    hp["epochs"], hp["batch_size"] = positive_int(name, "epochs", hp["epochs"]), positive_int(name, "batch_size", hp["batch_size"])
    hp["lr"] = positive_number(name, "lr", hp["lr"])
    hp["weight_decay"] = positive_number(name, "weight_decay", hp["weight_decay"], allow_zero=True)
    if hp["trainable"] not in ("last_block", "all"):
        raise ProtocolError(f"finetune: trainable must be 'last_block' or 'all', got {hp['trainable']!r}")
    positive_number(name, "std", std)
    if isinstance(mean, bool) or not isinstance(mean, int | float) or not math.isfinite(mean):
        raise ProtocolError(f"protocol {name}: mean must be a finite number, got {mean!r}")
    return hp


def _set_trainable(model: FinetuneModel, trainable: str) -> list[str]:
    """Freeze what the recipe does not train; the names of the trained encoder modules."""
    if trainable == "all":
        model.requires_grad_(True)
        return ["all"]
    model.encoder.requires_grad_(False)
    block = last_block(model.encoder)
    block.requires_grad_(True)
    return [n for n, m in model.encoder.named_modules() if m is block]


def _selected_epochs(history: list[dict[str, float]], test_probas: list[np.ndarray]) -> dict[str, Any]:
    """The test predictions of the epoch chosen on validation (``proba``), of the best test epoch
    (``paper_protocol``, the released choice: optimistic) and of the last epoch."""
    selected = select_epoch([{k: v for k, v in h.items() if not k.startswith("test")} for h in history])
    test_acc = [h["test_accuracy"] for h in history]
    best_test = int(np.argmax(test_acc))  # first maximum, as the released `if acc > best`
    last = len(history) - 1
    return {
        "proba": test_probas[selected],
        "selection": {"rule": "max validation frame accuracy; ties -> lower validation loss, earlier epoch",
                      "epoch": selected + 1, "history": history},
        "records": {
            "paper_protocol": {"proba": test_probas[best_test], "epoch": best_test + 1, "optimistic": True,
                               "rule": "max test-fold frame accuracy over epochs (released code); optimistic"},
            "last": {"proba": test_probas[last], "epoch": last + 1, "optimistic": False, "rule": "last epoch"},
        },
    }

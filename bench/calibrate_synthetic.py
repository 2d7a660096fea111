"""Calibrate the synthetic LUS dataset's difficulty: learnable, but not by random features.

Two numbers, both on held-out *patients* (StratifiedGroupKFold over ``patient_id``):

1. supervised: timm ``resnet18`` from random init, trained on the frames (resized to ``--px``,
   grey repeated to 3 channels, horizontal flips and small shifts) for ``--epochs`` epochs with
   AdamW; frame-level test accuracy. Must be >= 95 %: the classes are separable from pixels.
2. random-init probe: the same architecture, randomly initialised and frozen (eval mode), global
   average pooled features of every frame -> StandardScaler + sklearn ``LogisticRegression``,
   C chosen on an inner patient-grouped validation split, for timm's init and for the
   torchvision init that the suite's ``random_init`` uses. Must stay clearly below:
   the signs are spatial (vertical comet tails vs horizontal reverberations vs a textured
   region under the pleura), so a representation has to be learned to read them.

    python bench/calibrate_synthetic.py              # the setting behind the numbers in the
    python bench/calibrate_synthetic.py --seed 1     # docstring of hico/data/synthetic.py
    python bench/calibrate_synthetic.py --probe-only # seconds: the random-init probe alone
    python bench/calibrate_synthetic.py --max-folds 1 --epochs 10   # a quicker check

Defaults: 60 patients x 2 videos x 8 frames at 128 px, network input 64 px, 3 folds, 15 epochs;
about 4 min on an idle 2-core CPU. Also prints the confusion matrix and the videos it got wrong.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings

import numpy as np
import timm
import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.preprocessing import StandardScaler

from hico.data.standard import load_dataset
from hico.data.synthetic import simulate


def load_frames(root, px: int):
    """All frames as float tensors ``[N, 1, px, px]`` with label, patient and video per frame."""
    ds = load_dataset(root)
    xs, ys, groups, vids = [], [], [], []
    for i, row in ds.manifest.iterrows():
        f = torch.from_numpy(ds.frames(row["video_id"], mmap=False)).float()[:, None] / 255.0
        xs.append(F.interpolate(f, size=(px, px), mode="area"))
        ys += [int(row["label"])] * len(f)
        groups += [row["patient_id"]] * len(f)
        vids += [i] * len(f)
    x = (torch.cat(xs) - 0.25) / 0.25
    return x, np.array(ys), np.array(groups), np.array(vids), ds


def grouped_split(y, groups, k, seed):
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The least populated class")
        return list(StratifiedGroupKFold(k, shuffle=True, random_state=seed).split(y, y, groups))


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    flip = torch.rand(len(x), generator=gen) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    dx, dy = (int(v) for v in torch.randint(-4, 5, (2,), generator=gen))
    return torch.roll(x, shifts=(dy, dx), dims=(2, 3))


def supervised_predictions(x, y, train, test, epochs, seed, batch=32, lr=2e-3) -> np.ndarray:
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = timm.create_model("resnet18", pretrained=False, num_classes=3, in_chans=3)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05)
    steps = epochs * int(np.ceil(len(train) / batch))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    yt = torch.from_numpy(y)
    for _ in range(epochs):
        model.train()
        perm = torch.from_numpy(train)[torch.randperm(len(train), generator=gen)]
        for i in range(0, len(perm), batch):
            idx = perm[i:i + batch]
            xb = augment(x[idx], gen).expand(-1, 3, -1, -1)
            loss = F.cross_entropy(model(xb), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    return predict(model, x[test])


@torch.no_grad()
def predict(model, x, batch=256) -> np.ndarray:
    model.eval()
    return torch.cat([model(x[i:i + batch].expand(-1, 3, -1, -1)).argmax(1)
                      for i in range(0, len(x), batch)]).numpy()


@torch.no_grad()
def random_features(x, seed, batch=256, zero_init_last: bool = True) -> np.ndarray:
    """Pooled features of a random, frozen resnet18. timm's default init zeroes the last BN of
    every residual block (each block starts as its shortcut); ``zero_init_last=False`` is the
    torchvision init of the released code, which the suite's ``random_init`` control uses."""
    torch.manual_seed(seed)
    model = timm.create_model("resnet18", pretrained=False, num_classes=0, in_chans=3,
                              zero_init_last=zero_init_last).eval()
    return torch.cat([model(x[i:i + batch].expand(-1, 3, -1, -1))
                      for i in range(0, len(x), batch)]).numpy()


def probe_accuracy(feats, y, groups, train, test, seed) -> float:
    """Logistic regression on frozen features; C picked on a patient-grouped inner split."""
    inner_tr, inner_va = grouped_split(y[train], groups[train], 4, seed)[0]
    best_c, best = None, -1.0
    for c in (0.001, 0.01, 0.1, 1.0, 10.0):
        sc = StandardScaler().fit(feats[train][inner_tr])
        clf = LogisticRegression(C=c, max_iter=3000)
        clf.fit(sc.transform(feats[train][inner_tr]), y[train][inner_tr])
        acc = clf.score(sc.transform(feats[train][inner_va]), y[train][inner_va])
        if acc > best:
            best_c, best = c, acc
    sc = StandardScaler().fit(feats[train])
    clf = LogisticRegression(C=best_c, max_iter=3000).fit(sc.transform(feats[train]), y[train])
    return float(clf.score(sc.transform(feats[test]), y[test]))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--n-patients", type=int, default=60)
    ap.add_argument("--videos-per-patient", type=int, default=2)
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--size", type=int, default=128, help="simulated image size")
    ap.add_argument("--px", type=int, default=64, help="network input size")
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--folds", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-folds", type=int, default=None, help="train on the first N folds only")
    ap.add_argument("--probe-only", action="store_true")
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        root = simulate(tmp, n_patients=args.n_patients, videos_per_patient=args.videos_per_patient,
                        n_frames=args.frames, size=args.size, seed=args.seed)
        t_sim = time.perf_counter() - t0
        x, y, groups, vids, ds = load_frames(root, args.px)
    print(f"simulated {len(ds)} videos / {len(x)} frames ({args.n_patients} patients, "
          f"{args.size}px, seed {args.seed}) in {t_sim:.1f} s; network input {args.px}px")

    splits = grouped_split(y, groups, args.folds, args.seed)
    t0 = time.perf_counter()
    for zero_init_last, what in ((True, "timm init, residual branches zeroed"),
                                 (False, "torchvision init, as the suite's random_init")):
        feats = random_features(x, args.seed, zero_init_last=zero_init_last)
        probe = [probe_accuracy(feats, y, groups, tr, te, args.seed) for tr, te in splits]
        print(f"random-init resnet18 ({what}) + linear probe: {np.mean(probe):.3f} "
              f"(folds {', '.join(f'{a:.3f}' for a in probe)}; {time.perf_counter() - t0:.0f} s)")
        t0 = time.perf_counter()
    if args.probe_only:
        return 0
    sup, conf, wrong = [], np.zeros((3, 3), int), []
    for f, (tr, te) in enumerate(splits[:args.max_folds]):
        t0 = time.perf_counter()
        pred = supervised_predictions(x, y, tr, te, args.epochs, args.seed + f)
        sup.append(float((pred == y[te]).mean()))
        np.add.at(conf, (y[te], pred), 1)
        for v in np.unique(vids[te]):
            p_v = pred[vids[te] == v]
            if (p_v != y[te][vids[te] == v]).mean() > 0.5:
                wrong.append(f"{ds.manifest.loc[v, 'video_id']} ({ds.manifest.loc[v, 'label_name']}, "
                             f"severity {ds.manifest.loc[v, 'severity']:.2f}) -> "
                             f"{ds.classes[np.bincount(p_v, minlength=3).argmax()]}")
        print(f"  fold {f}: supervised {sup[-1]:.3f} ({time.perf_counter() - t0:.0f} s)", flush=True)
    print(f"supervised resnet18 ({args.epochs} epochs): {np.mean(sup):.3f} "
          f"(folds {', '.join(f'{a:.3f}' for a in sup)})")
    print(f"supervised confusion (rows true, cols predicted; {', '.join(ds.classes)}):\n{conf}")
    print("videos with most frames wrong:", "; ".join(wrong) or "none")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

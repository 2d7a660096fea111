"""Example frames of the synthetic LUS dataset, one row per class (``synthetic_examples.png``).

Each row shows the first frame of a few videos of that class (mild to severe, left to right),
then the motion of the last of them: the difference between two frames half a second apart.
Lung sliding shows as red/blue pairs along the comet tails and as changing texture below the
pleura, while the chest wall above it, fixed to the probe, stays white (still).

    python -m hico.report.synthetic_figure data/synthetic_lus results/figures/synthetic_examples.png
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from hico.data.standard import load_dataset


def plot_examples(dataset_dir: str | Path, out_png: str | Path, per_class: int = 4,
                  dpi: int = 100) -> Path:
    """Draw ``per_class`` videos per class (sorted by severity) plus a motion column; save PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ds = load_dataset(dataset_dir)
    m = ds.manifest
    has_sev = "severity" in m.columns
    n_cols = per_class + 1
    fig, axes = plt.subplots(len(ds.classes), n_cols, figsize=(1.9 * n_cols, 2.15 * len(ds.classes)),
                             squeeze=False)
    for row, cls in enumerate(ds.classes):
        sub = m[m["label_name"] == cls]
        if has_sev:
            sub = sub.sort_values("severity")
        # spread the picks over the severity range, one video per patient where possible
        sub = sub.drop_duplicates("patient_id") if sub["patient_id"].nunique() >= per_class else sub
        picks = sub.iloc[np.linspace(0, len(sub) - 1, min(per_class, len(sub))).round().astype(int)]
        for col in range(n_cols):
            axes[row, col].axis("off")
        for col, (_, vid) in enumerate(picks.iterrows()):
            frames = ds.frames(vid["video_id"])
            ax = axes[row, col]
            ax.imshow(frames[0], cmap="gray", vmin=0, vmax=255)
            title = f"severity {vid['severity']:.2f}" if has_sev else vid["video_id"]
            ax.set_title(title, fontsize=7)
            if col == 0:
                ax.text(-0.06, 0.5, cls.replace("_", "-"), transform=ax.transAxes, rotation=90,
                        ha="right", va="center", fontsize=10)
        frames = ds.frames(picks.iloc[-1]["video_id"]).astype(np.float32)
        fps = float(picks.iloc[-1].get("fps", 10.0) or 10.0)
        lag = int(min(len(frames) - 1, max(1, round(0.5 * fps))))
        diff = frames[lag] - frames[0]
        ax = axes[row, n_cols - 1]
        ax.imshow(diff, cmap="bwr", vmin=-120, vmax=120)
        ax.set_title(f"motion: frame {lag} - frame 0", fontsize=7)
    fig.suptitle(f"{ds.name}: first frame of videos, mild to severe; last column: motion",
                 fontsize=9)
    fig.tight_layout(rect=(0.02, 0, 1, 0.96), pad=0.4, h_pad=0.9)
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=dpi)
    plt.close(fig)
    return out_png


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit("usage: python -m hico.report.synthetic_figure DATASET_DIR OUT_PNG")
    print(plot_examples(sys.argv[1], sys.argv[2]))  # the written path is this script's result: stdout

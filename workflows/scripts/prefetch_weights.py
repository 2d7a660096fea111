"""Fetch the timm ImageNet weights of a backbone into the weights cache (HF_HOME/TORCH_HOME).

The workflow's ``prefetch_weights`` rule runs this on the submit host, which reaches the internet;
the pretraining jobs on (often offline) compute nodes then read the cache with ``HF_HUB_OFFLINE=1``.
The weights are loaded through :class:`hico.models.backbone.Backbone`, the constructor the jobs
use, so the cache holds exactly the files they ask for.

    python workflows/scripts/prefetch_weights.py resnet18 --out data/weights/resnet18.ok
"""

from __future__ import annotations

import argparse
import json
import os

from hico.io import atomic_write_text
from hico.models.backbone import Backbone


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("backbone", help="timm model name, e.g. resnet18 or resnet18.tv_in1k")
    p.add_argument("--out", required=True, help="marker written once the weights are cached")
    a = p.parse_args(argv)
    backbone = Backbone(a.backbone, pretrained=True)
    n_params = sum(t.numel() for t in backbone.parameters())
    record = {"backbone": a.backbone, "parameters": n_params,
              "cache": {k: os.environ.get(k) for k in ("HF_HOME", "TORCH_HOME")}}
    atomic_write_text(a.out, json.dumps(record, indent=1) + "\n")
    print(f"[prefetch_weights] {a.backbone}: {n_params} parameters cached")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

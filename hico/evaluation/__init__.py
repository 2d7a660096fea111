"""Evaluation of a pretrained encoder on the folds of a downstream dataset.

Modules, lightest first (only ``extract`` and ``finetune`` import torch):

- ``protocols``: the registry of protocol records (standard library only);
- ``metrics``: frame- and video-level classification metrics;
- ``splits``: the frames of a fold's videos, label-efficiency subsets;
- ``frozen``: linear probe and k-NN on frozen features;
- ``extract``: frames, pooled features and AdaBN of an encoder (torch);
- ``finetune``: the released fine-tuning protocol (torch);
- ``run``: one protocol on folds of a dataset -> ``metrics.json``.

``hico.evaluate`` re-exports the public names of all of them.
"""

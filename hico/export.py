"""An encoder as a plain timm model: ``model.safetensors`` + timm's ``config.json`` + a model card.

``encoder.pt`` (:func:`hico.models.backbone.save_encoder`) holds the state dict of a
:class:`~hico.models.backbone.Backbone`, whose ``body`` is timm's ``features_only`` wrapper.
Its keys are not the plain model's (ConvNeXt's ``stem_0`` is ``stem.0``, a ViT's getter adds
``model.``), and renaming them by hand would only fit the architectures it was written for.
:func:`timm_state_dict` lets timm say which tensor is which: every tensor of a fresh plain model
is filled with its own index, the result is loaded through timm's own ``features_only`` loading
path (the one :class:`Backbone` uses for ``weights:``), and each ``body`` tensor then carries the
index of the plain tensor it came from.

Parameters of the plain model that the encoder never had (ConvNeXt's ``head.norm``,
EfficientNet's ``conv_head``) keep timm's initialisation, so strict loading works; they are
listed under ``hico.untrained_keys`` in ``config.json`` and in the card, and the export checks
which timm read-out reproduces the encoder's feature exactly (:data:`READOUTS`) and records it.

The result loads with ``timm.create_model("local-dir:<folder>", pretrained=True)``, from the
Hub with ``hf-hub:<repo>`` after :func:`push_export`, or with
``pretrained_cfg_overlay=dict(file=<folder>/model.safetensors, num_classes=0)``.
"""

from __future__ import annotations

import csv
import json
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import timm
import torch

from hico import __version__
from hico.errors import HicoError
from hico.io import atomic_write, atomic_write_json, atomic_write_text
from hico.layout import (
    EXPORT_CARD,
    EXPORT_CONFIG,
    EXPORT_FILES,
    EXPORT_WEIGHTS,
    RUN_CONFIG,
    TRAIN_LOG,
)
from hico.models.backbone import Backbone

log = logging.getLogger(__name__)


class ExportError(HicoError, ValueError):
    """An encoder, run folder or export target that cannot be exported as asked."""


#: how a timm model gives the encoder's feature (Backbone.forward: pooled last pyramid stage),
#: tried in this order; the first that matches is recorded in config.json and the card
READOUTS = {
    "pooled": "model(x) of the model created with num_classes=0 (timm's pooled pre-logits feature)",
    "forward_features_mean": "model.forward_features(x).mean(dim=(2, 3))",
    "features_only": "timm.create_model(..., features_only=True)(x)[{stage}].mean(dim=(2, 3))",
}
# PretrainedCfg fields that describe the weights' input and head, kept from timm's default cfg
_CFG_FIELDS = ("input_size", "fixed_input_size", "interpolation", "crop_pct", "crop_mode", "mean", "std",
               "num_classes", "pool_size", "first_conv", "classifier")


@dataclass
class RunRecord:
    """One encoder file and what its run folder says about it."""

    encoder_path: Path
    backbone: str
    state_dict: dict[str, torch.Tensor]
    meta: dict[str, Any]
    run_config: dict[str, Any]  # the run's config.json
    train_log: list[dict[str, str]]  # rows of train_log.csv ([] when absent)

    @property
    def recipe(self) -> dict[str, Any]:
        return self.run_config.get("config", {})

    @property
    def run_name(self) -> str:
        return str(self.run_config.get("run_name") or self.meta.get("method") or self.recipe.get("name", "encoder"))

    @property
    def image_size(self) -> int:
        return int(self.recipe.get("image_size", 224))

    @property
    def normalisation(self) -> tuple[float, float]:
        """Mean and std of hico.data.transforms.normalize (one value: a grayscale frame)."""
        from hico.data.transforms import AugmentConfig

        augment = AugmentConfig.from_dict(self.recipe.get("augment"), self.image_size)
        return float(augment.mean), float(augment.std)


def read_run(encoder: str | Path) -> RunRecord:
    """The encoder file, and the ``config.json`` (required) and ``train_log.csv`` beside it."""
    path = Path(encoder)
    if not path.is_file():
        raise ExportError(f"encoder {path} does not exist; give the encoder.pt of a pretraining run "
                          "(runs/pretrain/<pool>/<method>/seed<k>/encoder.pt)")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a truncated or foreign file: torch raises several types
        raise ExportError(f"{path} is not a readable encoder file ({type(e).__name__}: {str(e)[:200]})") from e
    if not isinstance(blob, dict) or not {"backbone", "state_dict"} <= set(blob):
        raise ExportError(f"{path}: not an encoder written by hico (expected keys backbone, state_dict)")
    config_path = path.parent / RUN_CONFIG
    if not config_path.is_file():
        raise ExportError(f"{config_path} does not exist: the model card needs the run's resolved "
                          "config; export an encoder from its run folder as pretraining left it")
    try:
        run_config = json.loads(config_path.read_text())
    except json.JSONDecodeError as e:
        raise ExportError(f"{config_path} is not valid JSON ({e.msg}, line {e.lineno}); restore it from the run") from e
    log_path = path.parent / TRAIN_LOG
    rows = list(csv.DictReader(log_path.read_text().splitlines())) if log_path.is_file() else []
    return RunRecord(path, str(blob["backbone"]), blob["state_dict"], dict(blob.get("meta") or {}), run_config, rows)


def _fingerprinted_body(arch: str, plain: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The ``Backbone.body`` state dict timm builds from ``plain`` with tensor i filled with i + 1."""
    from safetensors.torch import save_file

    tagged = {k: torch.full_like(v, i + 1) for i, (k, v) in enumerate(plain.state_dict().items())}
    with tempfile.TemporaryDirectory() as tmp:
        file = Path(tmp) / "fingerprint.safetensors"
        save_file(tagged, str(file))
        return Backbone(arch, weights=str(file)).body.state_dict()


def timm_state_dict(arch: str, state_dict: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """A :class:`Backbone` state dict -> the plain ``timm.create_model(arch, num_classes=0)`` one.

    Returns the plain state dict and the keys the encoder has no tensor for (left at timm's
    initialisation, seeded, so two exports of one encoder are byte-identical).
    """
    foreign = sorted(k for k in state_dict if not k.startswith("body."))
    if foreign:
        raise ExportError(f"{arch}: encoder keys outside the timm body {foreign[:5]}; this exporter maps "
                          "only Backbone.body (timm features_only) tensors")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        plain = timm.create_model(arch, pretrained=False, num_classes=0)
    plain_keys = list(plain.state_dict())
    out = {k: v.detach().clone() for k, v in plain.state_dict().items()}
    mapped: dict[str, str] = {}
    for key, tagged in _fingerprinted_body(arch, plain).items():
        flat = tagged.flatten()
        tag = int(flat[0]) if flat.numel() and bool((flat == flat[0]).all()) else 0
        source = plain_keys[tag - 1] if 1 <= tag <= len(plain_keys) else None
        if source is None or out[source].shape != tagged.shape:
            raise ExportError(f"{arch}: timm's features_only tensor {key} does not come from one tensor of "
                              "the plain model; this architecture cannot be exported as a plain timm model")
        mapped[f"body.{key}"] = source
    missing = sorted(set(mapped) ^ set(state_dict))
    if missing:
        raise ExportError(f"{arch}: the encoder's keys and timm's features_only keys differ ({missing[:5]}); "
                          "was the encoder written by another timm version?")
    for key, source in mapped.items():
        out[source] = state_dict[key].detach().to(out[source].dtype).clone().contiguous()
    untrained = [k for k in plain_keys if k not in set(mapped.values())]
    return out, untrained


def _readout_features(arch: str, weights: Path, stage: int, x: torch.Tensor):
    """Yield ``(name, feature)`` of each :data:`READOUTS` entry in order, loading the exported file
    the way a user does; lazily, so a match on the first spares the rest."""
    overlay = {"file": str(weights), "num_classes": 0}
    plain = timm.create_model(arch, pretrained=True, pretrained_cfg_overlay=overlay).eval()
    with torch.no_grad():
        fmap = plain.forward_features(x)
        yield "pooled", plain.forward_head(fmap)  # = plain(x): the classifier is Identity
        if fmap.ndim == 4:
            yield "forward_features_mean", fmap.mean(dim=(2, 3))
        features = timm.create_model(arch, pretrained=True, features_only=True, pretrained_cfg_overlay=overlay)
        yield "features_only", features.eval()(x)[stage].mean(dim=(2, 3))


def matching_readout(encoder: Backbone, weights: Path, image_size: int) -> tuple[str, float]:
    """The first :data:`READOUTS` entry whose feature equals ``encoder(x)``, and its max difference."""
    x = torch.randn(2, 3, image_size, image_size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours = encoder.eval()(x)
    diffs = {}
    for name, feature in _readout_features(encoder.name, weights, encoder.stage_indices[-1], x):
        if feature.shape == ours.shape:
            diffs[name] = float((feature - ours).abs().max())
            if torch.allclose(feature, ours, rtol=1e-4, atol=1e-5):
                return name, diffs[name]
    raise ExportError(f"{encoder.name}: no timm read-out of the exported weights reproduces the encoder's "
                      f"feature (max differences {diffs}); it is not exported")


def timm_config(record: RunRecord, default_cfg: dict[str, Any], num_features: int, readout: str,
                max_diff: float, untrained: list[str], stage: int, licences: dict[str, Any]) -> dict[str, Any]:
    """timm's hub ``config.json``: the architecture and the preprocessing the encoder was trained with.

    Frames are grayscale, replicated to 3 channels before normalising with one mean and std
    (hico.data.transforms.normalize), so the 3-channel mean and std repeat the value; evaluation
    squashes a frame to ``image_size`` square (bilinear), hence ``crop_mode: squash``, ``crop_pct: 1``.
    ``default_cfg`` is timm's pretrained cfg of the architecture, ``num_features`` the length of
    the encoder's feature and ``licences`` :func:`hico.model_card.licence_summary` of the data.
    """
    mean, std = record.normalisation
    size = record.image_size
    cfg = {k: default_cfg[k] for k in _CFG_FIELDS if default_cfg.get(k) is not None}
    if list(cfg.get("input_size", (3, 224, 224))[1:]) != [size, size]:
        cfg.pop("pool_size", None)
    cfg.update(input_size=[3, size, size], interpolation="bilinear", crop_pct=1.0, crop_mode="squash",
               mean=[mean] * 3, std=[std] * 3, num_classes=0, license=licences["id"],
               description=f"hico-bench {record.run_name} encoder (seed {record.meta.get('seed')}) for "
                           "ultrasound video frames")
    return {
        "architecture": record.backbone,
        "num_classes": 0,
        "num_features": int(num_features),
        "pretrained_cfg": cfg,
        "hico": {
            "exported_by": f"hico-bench {__version__}",
            "source_encoder": str(record.encoder_path),
            "run_name": record.run_name,
            "base_method": record.meta.get("base_method", record.recipe.get("name")),
            "seed": record.run_config.get("seed", record.meta.get("seed")),
            "epoch": record.meta.get("epoch"),
            "export": record.meta.get("export"),
            "config_hash": record.run_config.get("config_hash", record.meta.get("config_hash")),
            "git_sha": record.run_config.get("git_sha", record.meta.get("git_sha")),
            "input": "grayscale frame replicated to 3 channels, x/255, (x - mean) / std",
            "feature_readout": readout,
            "feature": READOUTS[readout].format(stage=stage),
            "feature_max_abs_diff": max_diff,
            "untrained_keys": untrained,
            "data_licences": licences["terms"],
            "unknown_licences": licences["unknown"],
        },
    }


def _check_target(out: Path) -> None:
    """An export replaces a previous export, never anything else."""
    if out.exists() and not out.is_dir():
        raise ExportError(f"--out {out} is a file; give a folder")
    others = sorted(p.name for p in out.iterdir() if p.name not in EXPORT_FILES
                    and not (p.name.startswith(".") and p.name.endswith(".tmp"))) if out.is_dir() else []
    if others:
        raise ExportError(f"--out {out} holds files an export does not write ({', '.join(others[:5])}); "
                          "nothing was changed: choose an empty or new folder")


def export_encoder(encoder: str | Path, out_dir: str | Path, tables: str | Path | None = None,
                   data_root: str | Path | None = None) -> Path:
    """Write ``model.safetensors``, ``config.json`` and ``README.md`` of ``encoder`` to ``out_dir``."""
    from safetensors.torch import save_file

    from hico.model_card import licence_summary, model_card, pretraining_data

    out = Path(out_dir)
    _check_target(out)
    record = read_run(encoder)
    backbone = Backbone(record.backbone, pretrained=False)
    backbone.load_state_dict(record.state_dict)
    plain_sd, untrained = timm_state_dict(record.backbone, record.state_dict)
    datasets = pretraining_data(record.run_config, data_root)
    with tempfile.TemporaryDirectory() as tmp:
        staged = Path(tmp) / EXPORT_WEIGHTS
        save_file(plain_sd, str(staged), metadata={"format": "pt"})
        readout, max_diff = matching_readout(backbone, staged, record.image_size)
        default_cfg = timm.models.get_pretrained_cfg(record.backbone)  # the arch's default tag
        config = timm_config(record, default_cfg.to_dict() if default_cfg else {}, backbone.num_features, readout,
                             max_diff, untrained, backbone.stage_indices[-1], licence_summary(datasets, record))
        card = model_card(record, config, datasets, tables)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write(out / EXPORT_WEIGHTS, lambda path: save_file(plain_sd, path, metadata={"format": "pt"}))
    atomic_write_json(out / EXPORT_CONFIG, config)
    atomic_write_text(out / EXPORT_CARD, card)  # last: a folder with a card is a complete export
    log.info("exported %s (%s, read-out %s) to %s", record.encoder_path, record.backbone, readout, out)
    return out


def push_export(folder: str | Path, repo_id: str, private: bool = False, token: str | None = None,
                allow_unknown_licence: bool = False) -> str:
    """Upload an export folder to the Hugging Face Hub model repo ``repo_id``; returns the commit URL.

    Refuses a folder whose card lists pretraining data of unknown licence unless
    ``allow_unknown_licence``: who may use such weights cannot be said.
    """
    folder = Path(folder)
    missing = [n for n in EXPORT_FILES if not (folder / n).is_file()]
    if missing:
        raise ExportError(f"{folder} is not a complete export (missing {', '.join(missing)}); run "
                          "`python -m hico export ENCODER --out FOLDER` first")
    config = json.loads((folder / EXPORT_CONFIG).read_text())
    if config.get("hico", {}).get("unknown_licences") and not allow_unknown_licence:
        raise ExportError(f"{folder}: the licence of pretraining data {config['hico']['unknown_licences']} is "
                          "unknown, so the card cannot say who may use these weights; find it out, or "
                          "pass --allow-unknown-licence to push anyway")
    try:
        from huggingface_hub import HfApi
        from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled
    except ImportError as e:
        raise ExportError("pushing needs huggingface_hub: pip install 'hico-bench[hub]'") from e
    api = HfApi(token=token, library_name="hico-bench", library_version=__version__)
    try:
        repo = api.create_repo(repo_id, private=private, exist_ok=True)
        commit = api.upload_folder(repo_id=repo.repo_id, folder_path=str(folder), allow_patterns=list(EXPORT_FILES),
                                   commit_message=f"hico-bench export of {config.get('hico', {}).get('run_name', '')}")
    except (HfHubHTTPError, OfflineModeIsEnabled) as e:
        raise ExportError(f"push of {folder} to {repo_id} failed: {' '.join(str(e).split())[:300]}. Log in "
                          "with `hf auth login` (or set HF_TOKEN) and check the repo name") from e
    return str(commit.commit_url)


def add_arguments(p) -> None:
    """The ``python -m hico export`` arguments (the parser, with its help, is built in hico.cli)."""
    p.add_argument("encoder", help="encoder.pt of a pretraining run (its config.json must be beside it)")
    p.add_argument("--out", required=True, help="export folder (new, empty or a previous export)")
    p.add_argument("--tables", help="results/tables folder: the card lists this run's main_comparison.csv rows")
    p.add_argument("--data-root", help="where to look for pretraining datasets whose recorded path is gone")
    p.add_argument("--push", metavar="REPO_ID", help="also upload the folder to this Hugging Face Hub model repo")
    p.add_argument("--private", action="store_true", help="create the Hub repo as private")
    p.add_argument("--allow-unknown-licence", action="store_true",
                   help="push even when a pretraining dataset's licence is unknown")


def run(args) -> int:
    out = export_encoder(args.encoder, args.out, tables=args.tables, data_root=args.data_root)
    log.info(f"[export] {args.encoder} -> {out}")
    if args.push:
        url = push_export(out, args.push, private=args.private, allow_unknown_licence=args.allow_unknown_licence)
        log.info(f"[export] pushed to {url}")
    return 0

"""The model card (``README.md``) of an exported encoder: what it is, what it was trained on
under which licences, how it was trained and scored, and what it may be used for.

Everything in the card is read from the run folder (``config.json``, ``train_log.csv``), the
pretraining datasets (``dataset.json``, the manifest's ``license`` column) and, when given,
``results/tables/main_comparison.csv``; nothing is typed in by hand. The card follows the
Hugging Face model-card layout (YAML front matter, then Markdown).
"""

from __future__ import annotations

import csv
import json
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from hico.errors import HicoError
from hico.layout import DATASET_INFO, EXPORT_WEIGHTS, MANIFEST
from hico.provenance import config_hash

#: licence terms recognised in a licence text (case-insensitive), in the order the card lists them
LICENCE_TERMS = (
    ("non-commercial", r"\bNC\b|non-?commercial|research use|challenge use"),
    ("no-derivatives", r"\bND\b|no-?derivatives"),
    ("share-alike", r"\bSA\b|share-?alike"),
    ("no-redistribution", r"no redistribution"),
    ("attribution", r"\bBY\b|attribution"),
)
_UNSTATED = re.compile(r"^\s*$|none stated|not stated|unknown|^\s*(none|n\.?a\.?)\s*$", re.IGNORECASE)
_CC_ID = re.compile(r"\bCC[ -]?(BY(?:-NC)?(?:-SA|-ND)?)[ ]*(\d\.\d)", re.IGNORECASE)


class CardError(HicoError, ValueError):
    """An input of the model card (a tables folder) that is not what it should be."""


@dataclass
class DatasetLicence:
    """One pretraining dataset as the card describes it."""

    name: str
    path: str
    found: bool
    licences: Counter = field(default_factory=Counter)  # licence text -> number of videos
    info: dict[str, Any] = field(default_factory=dict)  # dataset.json


def _norm(text: str) -> str:
    return re.sub(r"\s*-\s*", "-", " ".join(str(text).split()))


def licence_id(text: str) -> str | None:
    """The Hugging Face licence id of a licence text (``cc-by-nc-4.0``, ``cc0-1.0``), None if none fits."""
    text = _norm(text)
    if _UNSTATED.search(text):
        return None
    if re.search(r"\bCC0\b", text, re.IGNORECASE) and not _CC_ID.search(text):
        return "cc0-1.0"
    m = _CC_ID.search(text)
    return f"cc-{m.group(1).lower()}-{m.group(2)}" if m else None


def licence_terms(text: str) -> list[str]:
    """The :data:`LICENCE_TERMS` a licence text states; ``["unknown"]`` when it states none we know."""
    text = _norm(text)
    if _UNSTATED.search(text):
        return ["unknown"]
    terms = [name for name, pattern in LICENCE_TERMS if re.search(pattern, text, re.IGNORECASE)]
    return terms or ([] if licence_id(text) else ["unknown"])


def _dataset_folder(path: str, data_root: str | Path | None) -> Path:
    folder = Path(path)
    if not (folder / DATASET_INFO).is_file() and data_root is not None:
        folder = Path(data_root) / folder.name
    return folder


def pretraining_data(run_config: dict[str, Any], data_root: str | Path | None = None) -> list[DatasetLicence]:
    """Each pretraining dataset of the run with its licences: per video (manifest ``license``
    column) where the manifest has them, else the dataset's own (``dataset.json``)."""
    out = []
    for path in run_config.get("datasets") or []:
        folder = _dataset_folder(str(path), data_root)
        if not (folder / DATASET_INFO).is_file():
            out.append(DatasetLicence(Path(path).name, str(path), False, Counter({"": 1})))
            continue
        info = json.loads((folder / DATASET_INFO).read_text())
        counts: Counter = Counter()
        if (folder / MANIFEST).is_file():
            with (folder / MANIFEST).open(newline="") as fh:
                counts.update(_norm(r.get("license") or "") for r in csv.DictReader(fh))
        if not counts or set(counts) == {""}:
            counts = Counter({_norm(info.get("license", "")): int(info.get("n_videos", sum(counts.values())) or 1)})
        out.append(DatasetLicence(str(info.get("name", folder.name)), str(folder), True, counts, info))
    return out


def licence_summary(datasets: list[DatasetLicence], record=None) -> dict[str, Any]:
    """``{"id": hub licence id, "terms": [...], "unknown": [dataset names]}`` of the whole pool.

    A control has no pretraining data: its id is that of timm's ImageNet weights it starts from,
    or the suite's own (MIT) for a random initialisation.
    """
    ids = {licence_id(text) for d in datasets for text in d.licences}
    terms = {t for d in datasets for text in d.licences for t in licence_terms(text)}
    unknown = sorted({d.name for d in datasets for text in d.licences if "unknown" in licence_terms(text)})
    single = next(iter(ids)) if len(ids) == 1 else None
    if not datasets:
        single = (_imagenet_licence(record) if record is not None else None) or "mit"
    return {"id": single or "other",
            "terms": [t for t, _ in LICENCE_TERMS if t in terms] + (["unknown"] if unknown else []),
            "unknown": unknown}


def _front_matter(record, config: dict[str, Any], summary: dict[str, Any]) -> str:
    meta: dict[str, Any] = {"library_name": "timm", "pipeline_tag": "image-feature-extraction",
                            "license": summary["id"]}
    if summary["id"] == "other":
        meta["license_name"] = "pretraining-data-licences"
        meta["license_link"] = "README.md"  # the card's licence section states them
    base = _imagenet_base(record)
    if base:
        meta["base_model"] = base
    meta["tags"] = ["timm", "image-feature-extraction", "ultrasound", "self-supervised", "hico-bench",
                    str(config["hico"].get("base_method") or record.run_name)]
    return "---\n" + yaml.safe_dump(meta, sort_keys=False) + "---\n"


def _imagenet_cfg(record):
    """timm's pretrained cfg of the ImageNet weights the run started from, None for a random start."""
    recipe = record.recipe
    if not recipe.get("pretrained") or recipe.get("weights"):
        return None
    import timm.models

    return timm.models.get_pretrained_cfg(record.backbone)


def _imagenet_base(record) -> str | None:
    return getattr(_imagenet_cfg(record), "hf_hub_id", None)


def _imagenet_licence(record) -> str | None:
    return getattr(_imagenet_cfg(record), "license", None)


def _method_section(record, config: dict[str, Any]) -> str:
    recipe, hico = record.recipe, config["hico"]
    stored = record.run_config.get("config_hash")
    actual = config_hash(recipe) if recipe else None
    check = "" if stored == actual else f" **(config.json's recipe now hashes to `{actual}`: edited after training?)**"
    init = ("timm's ImageNet weights" + (f" (`{_imagenet_base(record)}`)" if _imagenet_base(record) else "")
            if recipe.get("pretrained") and not recipe.get("weights") else
            f"a local checkpoint (`{recipe.get('weights')}`)" if recipe.get("weights") else "random (seeded)")
    opt, sched = recipe.get("optimizer") or {}, recipe.get("schedule") or {}
    params = ", ".join(f"{k}={v}" for k, v in (recipe.get("params") or {}).items())
    training = [] if is_control(record) else [
        f"- Sampler `{json.dumps(recipe.get('sampler'))}`, batch {recipe.get('batch_size')}, "
        f"{recipe.get('epochs')} epochs, optimizer {opt.get('name')} (lr {opt.get('lr')}, weight decay "
        f"{opt.get('weight_decay')}), schedule {sched.get('name')}; exported encoder: `{hico.get('export')}` "
        f"(epoch {hico.get('epoch')}).",
        f"- Labels: {_label_use(record)}",
        *([f"- Method parameters: {params}"] if params else [])]
    lines = [
        "## Method and recipe", "",
        f"- Run `{record.run_name}` of method `{hico.get('base_method')}`"
        + (f": {recipe['citation']}" if recipe.get("citation") else ""),
        *([f"- Reference code: {recipe['reference_code']}"] if recipe.get("reference_code") else []),
        f"- Backbone `{record.backbone}`, initialised from {init}; input {record.image_size} px.",
        *training,
        f"- Recipe hash (`hico.provenance.config_hash` of the resolved recipe): `{stored}`{check}; "
        f"code: git `{hico.get('git_sha')}`.",
        *([f"- {len(recipe['deviations'])} deviations from the paper or released code, each with its "
           "reason, are listed in the recipe below (`deviations:`) and hico/REPRODUCTION.md."]
          if recipe.get("deviations") else []),
        "", "<details><summary>The resolved recipe</summary>", "", "```yaml",
        yaml.safe_dump(recipe, sort_keys=False).rstrip(), "```", "", "</details>",
    ]
    return "\n".join(lines)


def is_control(record) -> bool:
    """A control (``requires_pretraining: false``): the encoder as initialised, never trained."""
    return not record.recipe.get("requires_pretraining", True)


def _label_use(record) -> str:
    share = record.run_config.get("labelled_fraction", record.recipe.get("label_rate", 0.0))
    if not share:
        return "none (self-supervised: no label of the pretraining data was seen)."
    return (f"the method saw the labels of {float(share):.0%} of the pretraining videos (`label_rate`), "
            "so it is not purely self-supervised.")


def _data_section(datasets: list[DatasetLicence]) -> str:
    if not datasets:
        return ("## Pretraining data\n\nNone: this encoder is a control (its initialisation, "
                "not trained on ultrasound).")
    lines = ["## Pretraining data and licences", "",
             "| dataset | videos | licence (videos) | source | citation |", "|---|---:|---|---|---|"]
    for d in datasets:
        if not d.found:
            lines.append(f"| `{d.name}` | ? | **UNKNOWN: `{d.path}` was not found at export time** | | |")
            continue
        licences = "; ".join(f"{text or 'not stated'} ({n})" for text, n in d.licences.most_common())
        source = d.info.get("homepage") or d.info.get("source", "")
        citation = " ".join(str(d.info.get("citation", "")).split())
        lines.append(f"| `{d.name}` | {d.info.get('n_videos', sum(d.licences.values()))} | {licences} | "
                     f"{source} | {citation} |")
    return "\n".join(lines)


def _limits_section(record, datasets: list[DatasetLicence], summary: dict[str, Any]) -> str:
    def holders(term: str) -> str:
        return ", ".join(sorted({f"`{d.name}`" for d in datasets for t in d.licences if term in licence_terms(t)}))

    terms = summary["terms"]
    lines = ["## Intended use and licence limits", "",
             "- **Intended use:** research on ultrasound representation learning: a frozen feature "
             "extractor (linear probe, k-NN) or the start of fine-tuning for ultrasound frame or video "
             "classification, and reproducing or comparing with hico-bench results.",
             "- **Not for clinical use.** Not a medical device, not validated on patients; it must not "
             "inform diagnosis or treatment. Other probes, scanners, organs and populations than the "
             "pretraining data's are untested.",
             "- The weights are a product of their pretraining data; this card reads the data's "
             "licences as binding the weights (the conservative reading)."]
    if "non-commercial" in terms:
        lines.append(f"- **Non-commercial use only:** {holders('non-commercial')} is licensed for "
                     "non-commercial (research) use; these weights are too.")
    if "no-derivatives" in terms:
        lines.append(f"- **No derivatives:** {holders('no-derivatives')} forbids sharing adapted material; "
                     "whether trained weights are adapted material is unsettled. Share them only as the "
                     "licensor's terms allow (research, attributed).")
    if "share-alike" in terms:
        lines.append(f"- **Share-alike:** {holders('share-alike')} requires work built on it to be shared "
                     "under the same licence.")
    if "no-redistribution" in terms:
        lines.append(f"- **No redistribution:** {holders('no-redistribution')} may not be redistributed; "
                     "check its agreement before publishing these weights.")
    if "attribution" in terms:
        lines.append(f"- **Attribution:** cite {holders('attribution')} (table above) when you use the weights.")
    if _imagenet_base(record):
        lines.append(f"- **ImageNet start:** initialised from `{_imagenet_base(record)}` (timm's licence "
                     f"`{_imagenet_licence(record)}`); ImageNet's images are licensed for non-commercial research.")
    if summary["unknown"]:
        lines.append(f"- **Unknown licence:** {', '.join(f'`{n}`' for n in summary['unknown'])}: find out "
                     "the terms before any use or sharing.")
    return "\n".join(lines)


def _float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _compute_section(record) -> str:
    rows, cfg = record.train_log, record.run_config
    epochs = max((int(_float(r.get("epoch"))) for r in rows if math.isfinite(_float(r.get("epoch")))), default=0)
    if epochs == 0:
        return "## Seed and compute\n\n" + f"- Seed {cfg.get('seed', record.meta.get('seed'))}; not pretrained (a control)."
    seconds = sum(v for r in rows if math.isfinite(v := _float(r.get("epoch_time_s"))))
    speeds = [v for r in rows if math.isfinite(v := _float(r.get("images_per_s")))]
    memory = [v for r in rows if math.isfinite(v := _float(r.get("peak_mem_mb")))]
    lines = ["## Seed and compute", "",
             f"- Seed {cfg.get('seed', record.meta.get('seed'))}.",
             f"- {epochs} epoch{'s' * (epochs != 1)}, {rows[-1].get('step')} steps on {cfg.get('world_size', 1)} x {cfg.get('device', 'unknown device')}.",
             f"- Training time {seconds / 3600:.2f} h (sum of `epoch_time_s` in train_log.csv; validation excluded)"
             + (f", {sum(speeds) / len(speeds):.1f} images/s on average" if speeds else "")
             + (f", peak GPU memory {max(memory):.0f} MiB." if memory else ".")]
    return "\n".join(lines)


def _mean_std(row: dict[str, str], metric: str) -> str:
    mean, std = _float(row.get(f"{metric}_mean")), _float(row.get(f"{metric}_std"))
    return "" if not math.isfinite(mean) else f"{mean:.3f}" + (f" ± {std:.3f}" if math.isfinite(std) else "")


def _evaluation_section(tables: str | Path | None, run_name: str) -> str:
    head = "## Evaluation\n\n"
    if tables is None:
        return head + "Not given at export (`python -m hico export --tables results/tables` adds this run's rows)."
    path = Path(tables) / "main_comparison.csv"
    if not path.is_file():
        raise CardError(f"--tables {tables}: no main_comparison.csv there; give the folder "
                        "`python -m hico aggregate` wrote (e.g. results/tables)")
    with path.open(newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r.get("method") == run_name and r.get("optimistic") != "True"]
    if not rows:
        return head + f"`{path}` has no rows for `{run_name}`."
    lines = [f"Rows of `{path}` for `{run_name}`: mean ± std over the folds x seeds of the runs of this name "
             "in those tables (the table does not name the pretraining pool: check that it is this encoder's); "
             "held-out patients; `paper_protocol` rows (epoch chosen on the test fold) are left out.", "",
             "| dataset | protocol | selection | level | accuracy | macro-F1 | folds x seeds |",
             "|---|---|---|---|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r.get('dataset')} | {r.get('protocol')} | {r.get('selection')} | {r.get('level')} | "
                     f"{_mean_std(r, 'accuracy')} | {_mean_std(r, 'macro_f1')} | {r.get('n_folds')} x {r.get('n_seeds')} |")
    return head + "\n".join(lines)


def _usage_section(record, config: dict[str, Any]) -> str:
    cfg, hico = config["pretrained_cfg"], config["hico"]
    untrained = hico["untrained_keys"]
    return "\n".join([
        "## How to load", "",
        "```python",
        "import timm",
        "model = timm.create_model(\"local-dir:PATH/TO/THIS/FOLDER\", pretrained=True)  # or \"hf-hub:<repo>\"",
        "# any timm >= 0.9, from the weights file alone:",
        f"model = timm.create_model(\"{record.backbone}\", pretrained=True,",
        f"                          pretrained_cfg_overlay=dict(file=\"{EXPORT_WEIGHTS}\", num_classes=0))",
        "```", "",
        f"- Input: a grayscale frame replicated to 3 channels, squashed to {cfg['input_size'][1]} x "
        f"{cfg['input_size'][2]} (bilinear), `x / 255`, then `(x - {cfg['mean'][0]}) / {cfg['std'][0]}` "
        "(`timm.data.resolve_data_config({}, model=model)` returns these settings).",
        f"- Feature (equal to the encoder's in hico-bench, max difference {hico['feature_max_abs_diff']:.1e} "
        f"at export): `{hico['feature']}`.",
        *([f"- Not trained (timm's initialisation, seeded; the encoder never had them): "
           f"{', '.join(f'`{k}`' for k in untrained)}."] if untrained else []),
        "- No classifier: `num_classes=0`; add one with `model.reset_classifier(n)`.",
    ])


def model_card(record, config: dict[str, Any], datasets: list[DatasetLicence], tables: str | Path | None) -> str:
    """The ``README.md`` of an export (``record`` is a :class:`hico.export.RunRecord`)."""
    summary = licence_summary(datasets, record)
    title = f"# {record.run_name}: {record.backbone} ultrasound encoder (hico-bench, seed {config['hico'].get('seed')})"
    made = "exported unchanged (a control, not trained)" if is_control(record) else "pretrained"
    lead = (f"A `{record.backbone}` encoder {made} by the hico-bench suite "
            f"(run `{record.run_name}`, method `{config['hico'].get('base_method')}`) and exported as a plain timm "
            f"model. Licence of the weights: see *Intended use and licence limits* (`{summary['id']}`).")
    sections = [title, lead, _method_section(record, config), _data_section(datasets),
                _limits_section(record, datasets, summary), _compute_section(record),
                _evaluation_section(tables, record.run_name), _usage_section(record, config)]
    return _front_matter(record, config, summary) + "\n" + "\n\n".join(sections) + "\n"

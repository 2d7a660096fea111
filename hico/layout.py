"""Where everything lives and what it is called: the one home of the suite's naming rules.

Standard-library only, so the workflow (``workflows/rules/common.smk``) imports it without
torch, and the package and the workflow cannot drift apart. Every function takes plain
strings and returns strings, so Snakemake wildcards pass through: ``pretrain_run_dir("runs",
"{pool}", "{method}", "{seed}")`` is ``"runs/pretrain/{pool}/{method}/seed{seed}"``.

Folders (``<runs>`` is a config's ``runs_root``, ``<data>`` its ``data_root``)::

    <data>/<dataset>/                      a standard dataset (hico.data.standard)
    <data>/raw/<dataset>/                  downloads of a public source
    <runs>/pretrain/<pool>/<method>/seed<k>/   one pretraining run (RUN_FILES)
    <runs>/eval/<dataset>/<protocol_id>/<method>/seed<k>/fold<f>/<variant>/metrics.json
    <runs>/export/<pool>/<method>/seed<k>/     an exported encoder (EXPORT_FILES)
    <results>/tables/<table>.csv, <results>/figures/<figure>.png
"""

from __future__ import annotations

import re
from pathlib import Path

# --------------------------------------------------------------------------------------------
# A standard dataset folder

MANIFEST = "manifest.csv"
CLASSES = "classes.json"
DATASET_INFO = "dataset.json"
FOLDS = "folds.csv"
FRAMES_DIR = "frames"
PREPARE_REPORT = "prepare_report.json"


def dataset_dir(data_root: str, dataset: str) -> str:
    return f"{data_root}/{dataset}"


def dataset_file(data_root: str, dataset: str, name: str = MANIFEST) -> str:
    return f"{data_root}/{dataset}/{name}"


def raw_dir(data_root: str, dataset: str) -> str:
    return f"{data_root}/raw/{dataset}"


def failed_prepare_report(out_root: str | Path, dataset: str) -> Path:
    """Where ``prepare`` leaves its report when it writes no dataset (too many failures)."""
    return Path(out_root) / f"{dataset}.{PREPARE_REPORT}"


# --------------------------------------------------------------------------------------------
# A pretraining run folder

ENCODER = "encoder.pt"  # the exported encoder the evaluations read (weights only)
BEST_ENCODER = "encoder_best.pt"  # lowest validation loss so far
RESUME_STATE = "last.pt"  # model + optimiser + epoch: what a killed run resumes from
TRAIN_LOG = "train_log.csv"
RUN_CONFIG = "config.json"  # resolved config, inputs and provenance of the run
RUN_LOCK = ".lock"  # held while a process trains in the folder
TRACKERS_STATE = "trackers.json"  # the run's experiment trackers (hico.trackers): MLflow run id, TensorBoard dir
TENSORBOARD_DIR = "tensorboard"  # TensorBoard event files (logger: tensorboard)
MLFLOW_DB = "mlflow.db"  # the run's local MLflow store (logger: mlflow without MLFLOW_TRACKING_URI)
_CHECKPOINT_RE = re.compile(r"encoder_epoch(\d+)\.pt$")


def pretrain_run_dir(runs_root: str, pool: str, method: str, seed: str | int) -> str:
    return f"{runs_root}/pretrain/{pool}/{method}/seed{seed}"


def checkpoint_name(epoch: str | int) -> str:
    """The encoder saved after ``epoch`` pretraining epochs (convergence variants)."""
    return f"encoder_epoch{epoch}.pt"


def checkpoint_epoch(path: str | Path) -> int | None:
    """The epoch of a :func:`checkpoint_name` file, None for any other file."""
    m = _CHECKPOINT_RE.search(Path(path).name)
    return int(m.group(1)) if m else None


# --------------------------------------------------------------------------------------------
# An exported encoder (``python -m hico export``): a folder timm and the Hugging Face Hub read

EXPORT_WEIGHTS = "model.safetensors"  # the plain timm model's state dict (timm's preferred file)
EXPORT_CONFIG = "config.json"  # timm's hub config: architecture, num_classes, pretrained_cfg
EXPORT_CARD = "README.md"  # the model card
EXPORT_FILES = (EXPORT_WEIGHTS, EXPORT_CONFIG, EXPORT_CARD)


def export_dir(runs_root: str, pool: str, method: str, seed: str | int) -> str:
    """Where the workflow exports the encoder of one pretraining run."""
    return f"{runs_root}/export/{pool}/{method}/seed{seed}"


# --------------------------------------------------------------------------------------------
# Evaluation variants and protocols

FULL = "full"  # every training video of the fold, the final encoder
_VARIANT_RE = re.compile(r"(full)|frac(\d+)|epoch(\d+)")


def fraction_variant(percent: int) -> str:
    """Label efficiency: ``percent`` % of each fold's training videos."""
    return f"frac{int(percent)}"


def epoch_variant(epoch: int) -> str:
    """Convergence: the encoder saved after ``epoch`` pretraining epochs."""
    return f"epoch{int(epoch)}"


def parse_variant(variant: str) -> tuple[str, int | None]:
    """``"full"`` -> ("full", None); ``"frac10"`` -> ("fraction", 10); ``"epoch20"`` -> ("epoch", 20)."""
    m = _VARIANT_RE.fullmatch(variant)
    if not m:
        raise ValueError(f"evaluation variant {variant!r} is not 'full', 'frac<percent>' or 'epoch<k>'")
    if m.group(1):
        return FULL, None
    if m.group(2):
        return "fraction", int(m.group(2))
    return "epoch", int(m.group(3))


def encoder_file(run_dir: str, variant: str = FULL) -> str:
    """The encoder an evaluation variant reads from a pretraining run folder."""
    kind, value = parse_variant(variant)
    return f"{run_dir}/{checkpoint_name(value) if kind == 'epoch' else ENCODER}"


FINETUNE = "finetune"
FINETUNE_VARIANTS = ("released", "full")


def protocol_id(protocol: str, args: dict | None = None) -> str:
    """The name metrics.json and the tables give a protocol: ``finetune`` is named by its
    variant (``finetune_released``, ``finetune_full``); every other protocol by itself."""
    if protocol == FINETUNE:
        return f"{FINETUNE}_{(args or {}).get('variant', FINETUNE_VARIANTS[0])}"
    return protocol


def metrics_path(runs_root: str, dataset: str, protocol: str, method: str, seed: str | int,
                 fold: str | int, variant: str) -> str:
    return f"{runs_root}/eval/{dataset}/{protocol}/{method}/seed{seed}/fold{fold}/{variant}/metrics.json"


# --------------------------------------------------------------------------------------------
# Tables and figures

TABLES = (
    "main_comparison",
    "ablation",
    "transfer",
    "label_efficiency",
    "convergence",
    "per_class",
    "compute_cost",
    "claims",
    "paper_comparison",
    "records",
)
CONFUSION_MATRICES = "confusion_matrices.json"  # beside the tables, read by the confusion figures

FIG_MAIN = "main_comparison"
FIG_MAIN_PAPER = "main_comparison_paper_protocol"
FIG_CONVERGENCE = "convergence"
FIG_LABEL_EFFICIENCY = "label_efficiency"
FIG_FINETUNE_CURVES = "finetune_curves"
FIG_TSNE = "tsne"
#: groups of ``hico plot --figures``: each draws one or more figures
FIGURE_GROUPS = (FIG_MAIN, FIG_CONVERGENCE, FIG_LABEL_EFFICIENCY, "confusion", FIG_FINETUNE_CURVES, FIG_TSNE)


def confusion_figure(dataset: str, protocol: str) -> str:
    """File stem of the confusion-matrix figure of one dataset x protocol id."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", f"confusion_{dataset}_{protocol}")


def declared_figures(eval_datasets: list[str], protocol_ids: list[str], convergence: bool,
                     label_fractions: bool) -> list[str]:
    """The figures ``hico plot`` draws from the tables of a run (t-SNE, drawn by its own job,
    is not among them)."""
    out = [FIG_MAIN]
    if convergence:
        out.append(FIG_CONVERGENCE)
    if label_fractions:
        out.append(FIG_LABEL_EFFICIENCY)
    if any(p.startswith(FINETUNE) for p in protocol_ids):
        out += [FIG_FINETUNE_CURVES, FIG_MAIN_PAPER]
    out += [confusion_figure(d, p) for d in eval_datasets for p in protocol_ids]
    return out


# --------------------------------------------------------------------------------------------
# Method recipes

#: (import package, folder relative to the repository root) searched in this order
RECIPE_DIRS = (("hico.methods", "hico/methods"), ("baselines", "baselines"))
REPO_ROOT = Path(__file__).resolve().parent.parent


def recipe_dirs(repo_root: str | Path = REPO_ROOT) -> list[Path]:
    return [Path(repo_root) / folder for _, folder in RECIPE_DIRS]


def recipe_path(name: str, dirs: list[Path] | None = None) -> Path | None:
    """``<name>.yaml`` of a method in the first of ``dirs`` (default :func:`recipe_dirs`:
    hico/methods, then baselines) that has it; None when none has."""
    for folder in dirs if dirs is not None else recipe_dirs():
        path = Path(folder) / f"{name}.yaml"
        if path.exists():
            return path
    return None


def recipe_names(dirs: list[Path] | None = None) -> list[str]:
    return sorted({p.stem for folder in (dirs if dirs is not None else recipe_dirs()) for p in Path(folder).glob("*.yaml")})


def requires_pretraining(name: str, dirs: list[Path] | None = None) -> bool:
    """A recipe's ``requires_pretraining`` (default true); false for controls such as random_init.

    Reads the YAML with PyYAML, which every environment that runs the suite or Snakemake has
    (Snakemake depends on it); it is imported here, not at module level.
    """
    import yaml

    path = recipe_path(name, dirs)
    if path is None:
        searched = dirs if dirs is not None else recipe_dirs()
        raise LookupError(f"no recipe {name}.yaml in " + " or ".join(str(d) for d in searched)
                          + f"; known methods: {', '.join(recipe_names(dirs))}")
    return bool((yaml.safe_load(path.read_text()) or {}).get("requires_pretraining", True))

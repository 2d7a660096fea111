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
    <runs>/features/<dataset>/<method>/seed<k>/<full|epoch<k>>/<frozen|adabn>.npz   frozen features
    <results>/tables/<table>.csv, <results>/figures/<figure>.png
"""

from __future__ import annotations

import functools
import pkgutil
import re
from pathlib import Path

# --------------------------------------------------------------------------------------------
# A standard dataset folder

MANIFEST = "manifest.csv"
CLASSES = "classes.json"
DATASET_INFO = "dataset.json"
FOLDS = "folds.csv"  # the partition every seed shares (evaluation.partitions: shared)


def folds_name(seed: str | int | None = None) -> str:
    """The folds file of a dataset: ``folds.csv``, or ``folds_seed<k>.csv`` for the partition of
    pretraining seed ``k`` (``evaluation.partitions: per_seed``)."""
    return FOLDS if seed is None else f"folds_seed{seed}.csv"


_FOLDS_SEED_RE = re.compile(r"folds_seed(\d+)\.csv")
#: a regex matching every :func:`folds_name` (a Snakemake wildcard constraint)
FOLDS_NAME_RE = rf"{re.escape(FOLDS)}|{_FOLDS_SEED_RE.pattern}"


def folds_seed(name: str) -> int | None:
    """The pretraining seed of a :func:`folds_name` (None for the shared ``folds.csv``)."""
    m = _FOLDS_SEED_RE.fullmatch(name)
    return int(m.group(1)) if m else None
FRAMES_DIR = "frames"
PREPARE_REPORT = "prepare_report.json"


def dataset_dir(data_root: str, dataset: str) -> str:
    return f"{data_root}/{dataset}"


def dataset_file(data_root: str, dataset: str, name: str = MANIFEST) -> str:
    return f"{data_root}/{dataset}/{name}"


def raw_dir(data_root: str, dataset: str) -> str:
    return f"{data_root}/raw/{dataset}"


SYNTHETIC_SOURCE = "synthetic"  # the embedded simulator (``hico simulate``), not a source module
SOURCES_DIR = "hico/data/sources"  # one module per dataset source, relative to the repository root


def source_names(repo_root: str | Path | None = None) -> list[str]:
    """Names of the dataset source modules (``hico.data.sources.<name>``), found without
    importing them (the workflow checks its config at DAG time, without the package's dependencies)."""
    folder = Path(repo_root if repo_root is not None else REPO_ROOT) / SOURCES_DIR
    return sorted(m.name for m in pkgutil.iter_modules([str(folder)]) if not m.name.startswith("_"))


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


def pretrain_root(runs_root: str) -> str:
    """The folder of every pretraining run (compute cost reads it)."""
    return f"{runs_root}/pretrain"


def pretrain_run_dir(runs_root: str, pool: str, method: str, seed: str | int) -> str:
    return f"{pretrain_root(runs_root)}/{pool}/{method}/seed{seed}"


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
#: every protocol ``hico evaluate --protocol`` takes (the registry, hico.evaluation.protocols,
#: holds exactly these; a test checks it; the workflow checks config protocol names against it at
#: DAG time): ``finetune`` is the generic name of its variants
PROTOCOL_IDS = ("linear_probe", "knn", "linear_probe_adabn", "knn_adabn", FINETUNE,
                *(f"{FINETUNE}_{v}" for v in FINETUNE_VARIANTS))


def protocol_id(protocol: str, args: dict | None = None) -> str:
    """The name metrics.json and the tables give a protocol: ``finetune`` is named by its
    variant (``finetune_released``, ``finetune_full``); every other protocol by itself."""
    if protocol == FINETUNE:
        return f"{FINETUNE}_{(args or {}).get('variant', FINETUNE_VARIANTS[0])}"
    return protocol


METRICS = "metrics.json"  # one evaluation: one protocol on one fold


def eval_root(runs_root: str) -> str:
    """The folder of every metrics.json (the tables read it)."""
    return f"{runs_root}/eval"


#: BatchNorm of a frozen encoder's features: its own statistics, or re-estimated per fold (AdaBN)
BN_MODES = ("frozen", "adabn")


def encoder_variant(variant: str) -> str:
    """The encoder an evaluation variant reads, as a variant: ``full`` (also for ``frac<p>``,
    the same encoder on fewer labels) or ``epoch<k>``."""
    kind, value = parse_variant(variant)
    return epoch_variant(value) if kind == "epoch" else FULL


def features_path(runs_root: str, dataset: str, method: str, seed: str | int, encoder_variant: str, bn: str) -> str:
    """The feature file (``hico features``) of one encoder on one dataset in one BN mode."""
    return f"{runs_root}/features/{dataset}/{method}/seed{seed}/{encoder_variant}/{bn}.npz"


def metrics_path(runs_root: str, dataset: str, protocol: str, method: str, seed: str | int,
                 fold: str | int, variant: str) -> str:
    return f"{eval_root(runs_root)}/{dataset}/{protocol}/{method}/seed{seed}/fold{fold}/{variant}/{METRICS}"


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


def table_file(results_root: str, table: str) -> str:
    return f"{results_root}/tables/{table}.csv"


def figure_file(results_root: str, figure: str) -> str:
    return f"{results_root}/figures/{figure}.png"

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


def figure_kind(figure: str) -> str:
    """What a figure shows, whatever its dataset and protocol: ``confusion`` for every
    :func:`confusion_figure`, else the figure's own name (one report caption per kind)."""
    return "confusion" if figure.startswith("confusion_") else figure


def declared_figures(evaluations: list[tuple[str, str]], convergence: bool, label_fractions: bool) -> list[str]:
    """The figures ``hico plot`` draws from the tables of a run, given its evaluated (dataset,
    protocol id) pairs (t-SNE, drawn by its own job, is not among them)."""
    protocol_ids = list(dict.fromkeys(p for _, p in evaluations))
    out = [FIG_MAIN]
    if convergence:
        out.append(FIG_CONVERGENCE)
    if label_fractions:
        out.append(FIG_LABEL_EFFICIENCY)
    if any(p.startswith(FINETUNE) for p in protocol_ids):
        out += [FIG_FINETUNE_CURVES, FIG_MAIN_PAPER]
    out += [confusion_figure(d, p) for d, p in evaluations]
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

    The workflow asks this once per planned job (12,500 times for the paper config), so the
    parsed answer is kept per recipe file, size and modification time: an edited recipe is read
    again.
    """
    path = recipe_path(name, dirs)
    if path is None:
        searched = dirs if dirs is not None else recipe_dirs()
        raise LookupError(f"no recipe {name}.yaml in " + " or ".join(str(d) for d in searched)
                          + f"; known methods: {', '.join(recipe_names(dirs))}")
    stat = path.stat()
    return _recipe_requires_pretraining(str(path.resolve()), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=256)
def _recipe_requires_pretraining(path: str, mtime_ns: int, size: int) -> bool:
    # PyYAML: every environment that runs the suite or Snakemake has it (Snakemake depends on it);
    # imported here, not at module level, to keep `import hico.layout` free of it.
    import yaml

    return bool((yaml.safe_load(Path(path).read_text()) or {}).get("requires_pretraining", True))

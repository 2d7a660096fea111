# Helpers shared by the workflow: paths, target lists, per-method overrides, input functions.
# Every name the package also knows (run folders, file names, protocol ids, tables, figures,
# recipes) comes from hico.layout; the Snakefile put this checkout on sys.path.
import functools
import json
import re
import shlex
from pathlib import Path

from hico import __version__ as SUITE_VERSION
from hico import layout
from hico.evaluation.protocols import FEATURES as _FEATURES, get_protocol


DATA = config["data_root"]
RUNS = config["runs_root"]
RESULTS = config["results_root"]
LOGS = f"{RUNS}/logs"
BENCH = f"{RUNS}/benchmarks"
# Wildcard patterns of the files the rules write
MANIFEST = layout.dataset_file(DATA, "{dataset}")
FOLDS = layout.dataset_file(DATA, "{dataset}", layout.FOLDS)
# `partitions: per_seed`: every pretraining seed is evaluated on its own partition of the
# downstream set (fold seed = fold_seed + seed), so the seeds are the independent replicates of
# repeated cross-validation that the corrected resampled t-test assumes (results/README.md).
PER_SEED_PARTITIONS = config["evaluation"].get("partitions", "shared") == "per_seed"


def folds_for(wildcards):
    """The folds file an evaluation (or an AdaBN feature file) of seed `wildcards.seed` uses."""
    name = layout.folds_name(wildcards.seed if PER_SEED_PARTITIONS else None)
    return layout.dataset_file(DATA, wildcards.dataset, name)
RUN = layout.pretrain_run_dir(RUNS, "{pool}", "{method}", "{seed}")
# A pretraining job's log and benchmark mirror its run folder: the compute-cost table pairs a
# benchmark with the run of the same relative path.
PRETRAIN_LOG = layout.pretrain_run_dir(LOGS, "{pool}", "{method}", "{seed}")
PRETRAIN_BENCH = layout.pretrain_run_dir(BENCH, "{pool}", "{method}", "{seed}")
RECIPE_DIRS = layout.recipe_dirs(SUITE_ROOT)


# --------------------------------------------------------------------------------------------
# Software: the suite's code, its conda envs, its container image, the ImageNet weights

# Every job runs the suite of this checkout: SUITE_ROOT first on PYTHONPATH. The conda envs hold
# the pinned dependencies only, so the code reaches the job however Snakemake places the envs
# (--conda-prefix, --directory, a module of another workflow); there is no wheel to rebuild
# after an edit, and in a container the checkout (the working directory) wins over the image's copy.
WEIGHTS = config.get("weights_cache") or f"{DATA}/weights"
SUITE_ENV = (
    f"PYTHONPATH={shlex.quote(SUITE_ROOT)}${{PYTHONPATH:+:$PYTHONPATH}} "
    f"HF_HOME={shlex.quote(WEIGHTS)}/huggingface TORCH_HOME={shlex.quote(WEIGHTS)}/torch"
)


def shell_literal(text):
    """``text`` as literal text of a rule's shell command (Snakemake formats its braces)."""
    return text.replace("{", "{{").replace("}", "}}")


#: the thread counts Snakemake exports as a job's `threads` (snakemake/shell.py)
SNAKEMAKE_THREAD_VARS = ("OMP_NUM_THREADS", "GOTO_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                         "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")


def hico(command, threads=False, one_thread_each=False):
    """A rule's shell command: `python -m hico <command>` with the suite's environment (built here:
    the rules of a module cannot see this file's names when their command is formatted). Jobs
    read the weights prefetch_weights fetched on the submit host: no network on compute nodes.
    `threads`: OMP_NUM_THREADS is the job's thread count. `one_thread_each`: a job of several
    single-threaded processes (the plot rule's) sets the thread counts Snakemake exported for its
    `threads` back to 1: its processes want one thread each, and the environment of a one-thread
    job lets it fork from that job's warm-start server (hico/warm.py) instead of starting a second
    one, which would import torch again beside it."""
    omp = "OMP_NUM_THREADS={threads} " if threads else ""
    if one_thread_each:
        omp = "".join(f"{var}=1 " for var in SNAKEMAKE_THREAD_VARS)
    return f"{omp}{shell_literal(SUITE_ENV)} HF_HUB_OFFLINE=1 python -m hico {command}"


def prefetch(command):
    """The prefetch_weights command: the script, online, with the suite's environment."""
    script = shlex.quote(f"{SUITE_ROOT}/workflows/scripts/prefetch_weights.py")
    return f"{shell_literal(SUITE_ENV)} python {shell_literal(script)} {command}"


TORCH_BUILD = config["torch_build"]
TORCH_ENV = f"../envs/torch-{TORCH_BUILD}.yaml"
CONTAINER = config.get("container") or f"docker://ghcr.io/hico-bench/hico-bench:{SUITE_VERSION}-{TORCH_BUILD}"


def job_resources(section, family=None):
    """threads, gpus, mem_mb, runtime_min of a job: the section's values (pretrain, evaluation),
    then the family's (`evaluation.resources.frozen|finetune`)."""
    block = config[section]
    out = {"threads": 1, "gpus": 0, "mem_mb": 8000, "runtime_min": 60 if section == "pretrain" else 30}
    out.update({k: block[k] for k in out if k in block})
    if family is not None:
        out.update(block.get("resources", {}).get(family, {}))
    return out


def gpu_resource(n):
    """`gpu=n` only for jobs that need GPUs: the Kubernetes executor takes any `gpu` key as a GPU
    request (and then wants a gpu_manufacturer); SLURM gets --gpus=n from it."""
    return {"gpu": n} if n else {}


def given_gpus(wildcards, resources):
    """The GPUs the scheduler gave the job (also after --set-resources), for `hico ... --gpus`."""
    return getattr(resources, "gpu", 0) or 0


def method_spec(name):
    return config["methods"].get(name) or {}


def base_method(name):
    """A config entry may define a variant of a registered method (`method: hico`)."""
    return method_spec(name).get("method", name)


def _alternatives(names):
    # A regex matching exactly these dataset names (or nothing at all).
    return "|".join(re.escape(n) for n in names) or "(?!x)x"


SYNTHETIC_RE = _alternatives([d for d, s in config["datasets"].items() if s["source"] == layout.SYNTHETIC_SOURCE])
SOURCED_RE = _alternatives([d for d, s in config["datasets"].items() if s["source"] != layout.SYNTHETIC_SOURCE])


def requires_training(method):
    """`requires_pretraining` of the method's recipe (read by hico.layout, without torch)."""
    try:
        return layout.requires_pretraining(base_method(method), RECIPE_DIRS)
    except LookupError as e:
        raise ValueError(f"config methods.{method}: {e}") from None


def keeps_checkpoints(method):
    """Trained methods whose encoder checkpoints feed the convergence variants: the
    `variant_methods` (default: all). Only they train to every `convergence_epochs` entry, so other
    methods may run fewer epochs than the last checkpoint."""
    ev = config["evaluation"]
    return bool(ev.get("convergence_epochs")) and method in ev.get("variant_methods", config["methods"])


UNTRACKED_RE = _alternatives([m for m in config["methods"] if requires_training(m) and not keeps_checkpoints(m)])
TRACKED_RE = _alternatives([m for m in config["methods"] if requires_training(m) and keeps_checkpoints(m)])
CONTROL_RE = _alternatives([m for m in config["methods"] if not requires_training(m)])


def dataset_spec(name):
    return config["datasets"][name]


def dataset_manifest(name):
    return layout.dataset_file(DATA, name)


def _derive_pools():
    """Named pools from the config, plus a leave-one-out pool for each evaluation dataset that
    names none: the default pool without that dataset, so no test video is pretrained on."""
    pools = dict(config["pretrain"].get("pools", {}))
    default = config["pretrain"].get("default_pool")
    named = {"pretrain.default_pool": default}
    named.update({f"datasets.{d}.pool": s.get("pool") for d, s in config["datasets"].items()})
    for where, pool in named.items():
        if pool is not None and pool not in pools:
            raise ValueError(f"{where}: {pool!r} is not a pool of pretrain.pools (known pools: {', '.join(pools)})")
    for name, spec in config["datasets"].items():
        if not spec.get("evaluate") or spec.get("pool"):
            continue
        if default is None:
            raise ValueError(f"datasets.{name}: evaluate is true but it names no pool and pretrain.default_pool is unset")
        members = pools[default]
        if name in members:
            derived = f"{default}-without-{name}"
            pools[derived] = [m for m in members if m != name]
            spec["pool"] = derived
        else:
            spec["pool"] = default
    for pool, members in pools.items():
        unknown = [m for m in members if m not in config["datasets"]]
        if unknown:
            raise ValueError(f"pretrain.pools.{pool}: {unknown} are not in datasets")
    return pools


POOLS = _derive_pools()


def pool_members(pool):
    return POOLS[pool]


RESERVED_METHOD_KEYS = ("method", "evaluate_on")


def method_override_list(name, seed):
    """The override dicts a method's job merges over its recipe, in order."""
    spec = {k: v for k, v in method_spec(name).items() if k not in RESERVED_METHOD_KEYS}
    return [config["pretrain"].get("overrides", {}), spec, {"seed": int(seed)}]


def method_overrides(name, seed):
    return json.dumps(method_override_list(name, seed))


def configured_epochs(method, seed=0):
    """A method's epochs as the config sets them (the global override, then the method's); 0 if unset."""
    epochs = 0
    for layer in method_override_list(method, seed):
        epochs = int(layer.get("epochs", epochs))
    return epochs


def pretrain_priority(wildcards):
    """Longer pretraining runs are scheduled first (by their epochs as the config sets them), so
    that a long run does not start last and run alone on one core while the others wait; every
    pretraining before every evaluation job (above LONG_EVAL_PRIORITY: tied with the fine-tunes,
    the demo's Meta-USCL run, 1 epoch but 45 s, started last)."""
    return LONG_EVAL_PRIORITY + configured_epochs(wildcards.method, wildcards.seed)


# The long evaluation jobs (fine-tuning, the t-SNE) and the t-SNE's feature files before the
# one-second probes, so that the probes fill the last gaps of the cores instead of a fine-tune or
# the t-SNE running alone at the end (the plot job after it waits for every core).
LONG_EVAL_PRIORITY = 1
# Short jobs that many wait on go before every pretraining: a fold split, the leakage check, a
# control's encoder export. At priority 0, behind every pretraining, the demo's control export ran
# last and its chain (feature files, fine-tunes, the t-SNE) became the tail.
GATE_PRIORITY = LONG_EVAL_PRIORITY + 1 + max((configured_epochs(m) for m in config["methods"]), default=0)
# Data jobs before every other: all jobs wait on them, and a pretraining pool's data started behind
# a control's export and the test set's features held back all 15 demo pretrainings by 20 s.
DATA_PRIORITY = GATE_PRIORITY + 1


@functools.cache
def tsne_feature_files():
    """The t-SNE's feature files, once (features_priority asks for every feature job)."""
    return frozenset(str(p) for p in tsne_features().values())


def features_priority(wildcards):
    """LONG_EVAL_PRIORITY for a feature file the t-SNE reads, else 0."""
    path = layout.features_path(RUNS, wildcards.dataset, wildcards.method, wildcards.seed, wildcards.variant,
                                wildcards.bn)
    return LONG_EVAL_PRIORITY if str(path) in tsne_feature_files() else 0


def pretrain_override_list(name, seed):
    """A trained method's overrides, plus the checkpoints its convergence variants read."""
    epochs = config["evaluation"].get("convergence_epochs", []) if keeps_checkpoints(name) else []
    return method_override_list(name, seed) + [{"checkpoint_epochs": epochs}]


# --------------------------------------------------------------------------------------------
# Config checks at DAG time: a mistake fails the dry run, naming the key, not a job hours later.


def _check_method_lists():
    """Every method a protocol or the variants are restricted to must be a config method, and
    every dataset a method is restricted to a config dataset."""
    ev = config["evaluation"]
    lists = {f"evaluation.protocols.{p}.methods": (s or {}).get("methods", []) for p, s in ev["protocols"].items()}
    lists["evaluation.variant_methods"] = ev.get("variant_methods", [])
    lists["evaluation.tsne_methods"] = ev.get("tsne_methods", [])
    for where, names in lists.items():
        unknown = [m for m in names if m not in config["methods"]]
        if unknown:
            raise ValueError(f"{where}: {unknown} are not in methods (known: {sorted(config['methods'])})")
    dataset_lists = {f"methods.{m}.evaluate_on": method_spec(m).get("evaluate_on", []) for m in config["methods"]}
    dataset_lists.update({f"evaluation.protocols.{p}.datasets": (s or {}).get("datasets", []) for p, s in ev["protocols"].items()})
    dataset_lists["evaluation.variant_datasets"] = ev.get("variant_datasets", [])
    for where, names in dataset_lists.items():
        unknown = [d for d in names if d not in config["datasets"]]
        if unknown:
            raise ValueError(f"{where}: {unknown} are not in datasets (known: {sorted(config['datasets'])})")
    unknown = [s for s in ev.get("variant_seeds", []) if s not in ev["seeds"]]
    if unknown:
        raise ValueError(f"evaluation.variant_seeds: {unknown} are not in evaluation.seeds ({ev['seeds']})")


def _check_protocols_and_sources():
    """Protocols are registered protocol ids; sources are the simulator or a source module."""
    ev = config["evaluation"]
    unknown = [p for p in ev["protocols"] if p not in layout.PROTOCOL_IDS]
    if unknown:
        raise ValueError(f"evaluation.protocols: {unknown} are not protocols (known: {', '.join(layout.PROTOCOL_IDS)})")
    unknown = [p for p in ev.get("variant_protocols", []) if p not in ev["protocols"]]
    if unknown:
        raise ValueError(f"evaluation.variant_protocols: {unknown} are not in evaluation.protocols ({', '.join(ev['protocols'])})")
    known = [layout.SYNTHETIC_SOURCE, *layout.source_names(SUITE_ROOT)]
    for name, spec in config["datasets"].items():
        if spec["source"] not in known:
            raise ValueError(f"datasets.{name}.source: {spec['source']!r} is not a dataset source (known: {', '.join(known)})")


def _unknown_keys(where, spec, cls):
    """Keys of one override dict that the typed run config (hico.config) lacks, nested blocks included."""
    from dataclasses import fields, is_dataclass

    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(spec) - set(known))
    if unknown:
        raise ValueError(f"config {where}: unknown keys {unknown}; valid keys: {sorted(known)}")
    for key, value in spec.items():
        default = known[key].default_factory() if callable(known[key].default_factory) else None
        if is_dataclass(default) and isinstance(value, dict):
            _unknown_keys(f"{where}.{key}", value, type(default))


def _resolve_run_configs():
    """Every method's run config, resolved as its job will (hico.config, no torch): unknown keys
    and values the config rejects (checkpoints after the last epoch, an image size not divisible
    by 32, ...) fail here. The configs also say whose ImageNet weights to prefetch."""
    from hico.config import PretrainConfig, resolve_pretrain_config
    from hico.errors import HicoError

    _unknown_keys("pretrain.overrides", config["pretrain"].get("overrides", {}), PretrainConfig)
    seed = config["evaluation"]["seeds"][0]
    out = {}
    for m in config["methods"]:
        overrides = pretrain_override_list(m, seed) if requires_training(m) else method_override_list(m, seed)
        _unknown_keys(f"methods.{m}", overrides[1], PretrainConfig)
        try:
            out[m] = resolve_pretrain_config(base_method(m), *overrides)
        except HicoError as e:
            raise ValueError(f"config methods.{m} (over pretrain.overrides and its recipe): {e}") from None
    return out


_check_method_lists()
_check_protocols_and_sources()
RUN_CONFIGS = _resolve_run_configs()


def imagenet_weights(wildcards):
    """The prefetched timm weights a method's run starts from (none for `pretrained: false` or a
    local `weights:` file)."""
    cfg = RUN_CONFIGS[wildcards.method]
    return [f"{WEIGHTS}/{cfg.backbone}.ok"] if cfg.pretrained and not cfg.weights else []


def eval_variants():
    """Evaluation variants beyond the full training set: label fractions and checkpoints."""
    ev = config["evaluation"]
    out = [layout.FULL]
    out += [layout.fraction_variant(p) for p in ev.get("label_fractions", []) if p != 100]
    out += [layout.epoch_variant(e) for e in ev.get("convergence_epochs", [])]
    return out


def encoder_for(wildcards):
    pool = dataset_spec(wildcards.dataset)["pool"]
    run = layout.pretrain_run_dir(RUNS, pool, wildcards.method, wildcards.seed)
    return layout.encoder_file(run, wildcards.variant)


def methods_evaluated_on(dataset):
    return [m for m in config["methods"] if dataset in method_spec(m).get("evaluate_on", [dataset])]


def eval_datasets():
    return [d for d, spec in config["datasets"].items() if spec.get("evaluate", False)]


PROTOCOL_RESERVED_KEYS = ("methods", "datasets")  # which runs a protocol covers, not its arguments


def protocol_spec(protocol):
    return config["evaluation"]["protocols"][protocol] or {}


def finetunes(protocol):
    """Fine-tuning trains the encoder (a GPU job); the other protocols fit a probe on frozen features."""
    return layout.protocol_id(protocol, protocol_spec(protocol)).startswith(layout.FINETUNE)


FROZEN_RE = _alternatives([p for p in config["evaluation"]["protocols"] if not finetunes(p)])
FINETUNE_RE = _alternatives([p for p in config["evaluation"]["protocols"] if finetunes(p)])
EVAL_FROZEN = job_resources("evaluation", "frozen")
EVAL_FINETUNE = job_resources("evaluation", "finetune")
PRETRAIN = job_resources("pretrain")
# The frozen-feature jobs of one pretraining run (every protocol, label fraction and checkpoint)
# are ready together: a cluster profile submits them in a few jobs (--group-components).
PROBE_GROUP = "probes_{dataset}_{method}_seed{seed}"


def wants_variant(dataset, protocol, method, seed, variant):
    """Label fractions and checkpoints run only for `variant_datasets` x `variant_protocols` x
    `variant_methods` x `variant_seeds`."""
    kind, _ = layout.parse_variant(variant)
    if kind == layout.FULL:
        return True
    ev = config["evaluation"]
    if protocol not in ev.get("variant_protocols", [protocol]):
        return False
    if method not in ev.get("variant_methods", [method]):
        return False
    if seed not in ev.get("variant_seeds", [seed]) or dataset not in ev.get("variant_datasets", [dataset]):
        return False
    return not (kind == "epoch" and not requires_training(method))


def metrics_targets():
    ev = config["evaluation"]
    out = []
    for dataset in eval_datasets():
        for protocol in ev["protocols"]:
            if dataset not in protocol_spec(protocol).get("datasets", [dataset]):
                continue
            restricted = protocol_spec(protocol).get("methods")
            for method in methods_evaluated_on(dataset):
                if restricted is not None and method not in restricted:
                    continue
                for seed in ev["seeds"]:
                    for fold in range(ev["folds"]):
                        for variant in eval_variants():
                            if not wants_variant(dataset, protocol, method, seed, variant):
                                continue
                            out.append(layout.metrics_path(RUNS, dataset, protocol, method, seed, fold, variant))
    return out


def pretrain_targets():
    out = []
    for dataset in eval_datasets():
        pool = dataset_spec(dataset)["pool"]
        for method in methods_evaluated_on(dataset):
            for seed in config["evaluation"]["seeds"]:
                out.append(layout.encoder_file(layout.pretrain_run_dir(RUNS, pool, method, seed)))
    return sorted(set(out))


TABLES = [layout.table_file(RESULTS, t) for t in layout.TABLES]
METRICS_LIST = f"{RUNS}/report/metrics_list.txt"


def figures():
    """The figures the plot rule draws for this config (declared, so the report lists each; t-SNE
    has a rule of its own)."""
    ev = config["evaluation"]
    return layout.declared_figures(
        [(d, layout.protocol_id(p, protocol_spec(p))) for d in eval_datasets() for p in ev["protocols"]
         if d in protocol_spec(p).get("datasets", [d])],
        convergence=bool(ev.get("convergence_epochs")),
        label_fractions=bool([p for p in ev.get("label_fractions", []) if p != 100]),
    )


FIGURE_NAMES = figures()
FIGURES = [layout.figure_file(RESULTS, f) for f in FIGURE_NAMES]
#: the figure groups of `hico plot` drawn from the tables (t-SNE, from the encoders, has its own rule)
TABLE_FIGURE_GROUPS = [g for g in layout.FIGURE_GROUPS if g != layout.FIG_TSNE]
TSNE_FIGURE = layout.figure_file(RESULTS, layout.FIG_TSNE)


# Report captions are paths relative to the rule file that declares the output (report.smk).
# (A line must not start with `report(`: Snakemake's parser reads it as the report directive.)
def reported_table(table):
    """One results table in the report's Tables category, with its own caption."""
    path = layout.table_file(RESULTS, table)
    return report(path, caption=f"../report/tables/{table}.rst", category="Tables", labels={"table": table})


def reported_figure(figure):
    """One figure in the report's Figures category, with the caption of its kind."""
    caption = f"../report/figures/{layout.figure_kind(figure)}.rst"
    return report(layout.figure_file(RESULTS, figure), caption=caption, category="Figures", labels={"figure": figure})


def tsne_encoders():
    """name=path of seed-0 encoders of the first evaluation dataset's pool (t-SNE figure), of the
    `tsne_methods` if given."""
    dataset = eval_datasets()[0]
    pool = dataset_spec(dataset)["pool"]
    seed = config["evaluation"]["seeds"][0]
    chosen = config["evaluation"].get("tsne_methods")
    methods = [m for m in methods_evaluated_on(dataset) if chosen is None or m in chosen]
    return {m: layout.encoder_file(layout.pretrain_run_dir(RUNS, pool, m, seed)) for m in methods}


def export_targets():
    """The export folder of every pretrained (pool, method, seed) the evaluation reads, when
    `export: {enabled: true}`."""
    if not config.get("export", {}).get("enabled", False):
        return []
    out = {layout.export_dir(RUNS, dataset_spec(d)["pool"], m, s)
           for d in eval_datasets() for m in methods_evaluated_on(d) if requires_training(m)
           for s in config["evaluation"]["seeds"]}
    return sorted(out)


def all_targets():
    return TABLES + FIGURES + [TSNE_FIGURE] + export_targets()


def simulate_args(wildcards):
    """`--n-patients 9 --seed 1 ...`: one list item per command argument (each quoted by `:q`)."""
    params = dataset_spec(wildcards.dataset).get("params", {})
    return [arg for k, v in params.items() for arg in (f"--{k.replace('_', '-')}", str(v))]


def local_copy(spec):
    """The folder a dataset is read from in place: `path`, or the first existing folder of
    `local` (candidates such as ../shared/data/pocus); None: download the public source."""
    if spec.get("path"):
        return spec["path"]
    return next((d for d in spec.get("local", []) if Path(d).is_dir()), None)


def raw_input(wildcards):
    spec = dataset_spec(wildcards.dataset)
    if spec["source"] == layout.SYNTHETIC_SOURCE or local_copy(spec):
        return []  # simulated, or a local copy read in place: nothing is downloaded
    return f"{layout.raw_dir(DATA, wildcards.dataset)}/.complete"


def raw_dir(wildcards):
    return local_copy(dataset_spec(wildcards.dataset)) or layout.raw_dir(DATA, wildcards.dataset)


def source_options(wildcards):
    spec = dataset_spec(wildcards.dataset)
    opts = dict(spec.get("params", {}))
    if spec.get("base_url"):
        opts["base_url"] = spec["base_url"]
    return json.dumps(opts)


def dataset_source(wildcards):
    return dataset_spec(wildcards.dataset)["source"]


def pool_manifests(wildcards):
    return [dataset_manifest(d) for d in pool_members(wildcards.pool)]


def pool_dataset_dirs(wildcards):
    return [layout.dataset_dir(DATA, d) for d in pool_members(wildcards.pool)]


def pretrain_overrides(wildcards):
    return json.dumps(pretrain_override_list(wildcards.method, wildcards.seed))


def leakage_check(wildcards):
    return f"{RUNS}/checks/{dataset_spec(wildcards.dataset)['pool']}__{wildcards.dataset}.ok"


def protocol_args(wildcards):
    args = {k: v for k, v in protocol_spec(wildcards.protocol).items() if k not in PROTOCOL_RESERVED_KEYS}
    kind, percent = layout.parse_variant(wildcards.variant)
    if kind == "fraction":
        args["train_fraction"] = percent / 100
    return json.dumps(args)


# --------------------------------------------------------------------------------------------
# Feature files (rule features in evaluate.smk; read by frozen-feature evaluations and the t-SNE)


def features_for(wildcards):
    """The feature file a frozen-feature evaluation reads ([] for the fine-tune protocols)."""
    spec = get_protocol(wildcards.protocol)
    if spec.inputs != _FEATURES:
        return []
    return layout.features_path(RUNS, wildcards.dataset, wildcards.method, wildcards.seed,
                                layout.encoder_variant(wildcards.variant), spec.bn_mode)


def features_args(wildcards):
    """`--features FILE` for a frozen-feature evaluation, nothing for a fine-tune (items quoted by `:q`)."""
    path = features_for(wildcards)
    return ["--features", path] if path else []


def features_folds(wildcards):
    return [folds_for(wildcards)] if wildcards.bn == "adabn" else []


def features_folds_args(wildcards, input):
    return ["--folds", input.folds] if input.folds else []


def tsne_features():
    """name=feature file of the `tsne_encoders` (seed 0, first evaluation dataset, frozen BN)."""
    dataset = eval_datasets()[0]
    seed = config["evaluation"]["seeds"][0]
    return {m: layout.features_path(RUNS, dataset, m, seed, layout.FULL, "frozen") for m in tsne_encoders()}

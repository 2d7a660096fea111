# Helpers shared by the workflow: paths, target lists, per-method overrides, input functions.
import json
import os
import re
from pathlib import Path

from hico import layout
from hico.evaluation.protocols import FEATURES as _FEATURES, get_protocol


DATA = config["data_root"]
RUNS = config["runs_root"]
RESULTS = config["results_root"]
LOGS = f"{RUNS}/logs"
BENCH = f"{RUNS}/benchmarks"


def method_spec(name):
    return config["methods"].get(name) or {}


def base_method(name):
    """A config entry may define a variant of a registered method (`method: hico`)."""
    return method_spec(name).get("method", name)


def _alternatives(names):
    # A regex matching exactly these dataset names (or nothing at all).
    return "|".join(re.escape(n) for n in names) or "(?!x)x"


SYNTHETIC_RE = _alternatives([d for d, s in config["datasets"].items() if s["source"] == "synthetic"])
SOURCED_RE = _alternatives([d for d, s in config["datasets"].items() if s["source"] != "synthetic"])


def requires_training(method):
    """Read `requires_pretraining` from the method's recipe (no import of the package needed)."""
    import yaml

    name = base_method(method)
    for folder in ("hico/methods", "baselines"):
        path = Path(workflow.basedir) / folder / f"{name}.yaml"
        if path.exists():
            return bool((yaml.safe_load(path.read_text()) or {}).get("requires_pretraining", True))
    raise ValueError(f"config methods.{method}: no recipe {name}.yaml in hico/methods or baselines")


def keeps_checkpoints(method):
    """Trained methods whose `encoder_epoch<k>.pt` feed the convergence variants: the
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
    return f"{DATA}/{name}/manifest.csv"


def _derive_pools():
    """Named pools from the config, plus a leave-one-out pool for each evaluation dataset that
    names none: the default pool without that dataset, so no test video is pretrained on."""
    pools = dict(config["pretrain"].get("pools", {}))
    default = config["pretrain"].get("default_pool")
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


def method_overrides(name, seed):
    spec = {k: v for k, v in method_spec(name).items() if k not in RESERVED_METHOD_KEYS}
    return json.dumps([config["pretrain"].get("overrides", {}), spec, {"seed": int(seed)}])


def _check_method_lists():
    """Every method a protocol or the variants are restricted to must be a config method."""
    ev = config["evaluation"]
    lists = {f"evaluation.protocols.{p}.methods": (s or {}).get("methods", []) for p, s in ev["protocols"].items()}
    lists["evaluation.variant_methods"] = ev.get("variant_methods", [])
    lists["evaluation.tsne_methods"] = ev.get("tsne_methods", [])
    for where, names in lists.items():
        unknown = [m for m in names if m not in config["methods"]]
        if unknown:
            raise ValueError(f"{where}: {unknown} are not in methods (known: {sorted(config['methods'])})")


_check_method_lists()


def eval_variants():
    """Evaluation variants beyond the full training set: label fractions and checkpoints."""
    ev = config["evaluation"]
    out = ["full"]
    out += [f"frac{p}" for p in ev.get("label_fractions", []) if p != 100]
    out += [f"epoch{e}" for e in ev.get("convergence_epochs", [])]
    return out


def encoder_for(wildcards):
    pool = dataset_spec(wildcards.dataset)["pool"]
    run = f"{RUNS}/pretrain/{pool}/{wildcards.method}/seed{wildcards.seed}"
    if wildcards.variant.startswith("epoch"):
        return f"{run}/encoder_{wildcards.variant}.pt"
    return f"{run}/encoder.pt"


def methods_evaluated_on(dataset):
    return [m for m in config["methods"] if dataset in method_spec(m).get("evaluate_on", [dataset])]


def eval_datasets():
    return [d for d, spec in config["datasets"].items() if spec.get("evaluate", False)]


def protocol_spec(protocol):
    return config["evaluation"]["protocols"][protocol] or {}


def wants_variant(protocol, method, variant):
    """Label fractions and checkpoints run only for `variant_protocols` x `variant_methods`."""
    if variant == "full":
        return True
    ev = config["evaluation"]
    if protocol not in ev.get("variant_protocols", [protocol]):
        return False
    if method not in ev.get("variant_methods", [method]):
        return False
    return not (variant.startswith("epoch") and not requires_training(method))


def metrics_targets():
    ev = config["evaluation"]
    out = []
    for dataset in eval_datasets():
        for protocol in ev["protocols"]:
            restricted = protocol_spec(protocol).get("methods")
            for method in methods_evaluated_on(dataset):
                if restricted is not None and method not in restricted:
                    continue
                for seed in ev["seeds"]:
                    for fold in range(ev["folds"]):
                        for variant in eval_variants():
                            if not wants_variant(protocol, method, variant):
                                continue
                            out.append(
                                f"{RUNS}/eval/{dataset}/{protocol}/{method}/seed{seed}/fold{fold}/{variant}/metrics.json"
                            )
    return out


def pretrain_targets():
    out = []
    for dataset in eval_datasets():
        pool = dataset_spec(dataset)["pool"]
        for method in methods_evaluated_on(dataset):
            for seed in config["evaluation"]["seeds"]:
                out.append(f"{RUNS}/pretrain/{pool}/{method}/seed{seed}/encoder.pt")
    return sorted(set(out))


TABLES = [
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
]


def figures():
    """The figures the plot rule draws for this config (declared, so the report lists each; t-SNE
    has a rule of its own)."""
    ev = config["evaluation"]
    out = ["main_comparison"]
    if ev.get("convergence_epochs"):
        out.append("convergence")
    if [p for p in ev.get("label_fractions", []) if p != 100]:
        out.append("label_efficiency")
    if any(p.startswith("finetune") for p in ev["protocols"]):
        out += ["finetune_curves", "main_comparison_paper_protocol"]
    out += [
        re.sub(r"[^A-Za-z0-9_.-]", "_", f"confusion_{dataset}_{protocol_id(protocol)}")
        for dataset in eval_datasets()
        for protocol in ev["protocols"]
    ]
    return out


def protocol_id(protocol):
    """The name metrics.json (and the tables) give a protocol: `finetune` is named by its variant."""
    if protocol == "finetune":
        return f"finetune_{protocol_spec(protocol).get('variant', 'released')}"
    return protocol


FIGURES = figures()


def tsne_encoders():
    """name=path of seed-0 encoders of the first evaluation dataset's pool (t-SNE figure), of the
    `tsne_methods` if given."""
    dataset = eval_datasets()[0]
    pool = dataset_spec(dataset)["pool"]
    seed = config["evaluation"]["seeds"][0]
    chosen = config["evaluation"].get("tsne_methods")
    methods = [m for m in methods_evaluated_on(dataset) if chosen is None or m in chosen]
    return {m: f"{RUNS}/pretrain/{pool}/{m}/seed{seed}/encoder.pt" for m in methods}


def all_targets():
    return (
        [f"{RESULTS}/tables/{t}.csv" for t in TABLES]
        + [f"{RESULTS}/figures/{f}.png" for f in FIGURES]
        + [f"{RESULTS}/figures/tsne.png"]
    )


def simulate_args(wildcards):
    params = dataset_spec(wildcards.dataset).get("params", {})
    return " ".join(f"--{k.replace('_', '-')} {v}" for k, v in params.items())


def raw_input(wildcards):
    spec = dataset_spec(wildcards.dataset)
    if spec["source"] == "synthetic":
        return []
    if spec.get("path"):
        return []  # restricted or local data: read in place, never downloaded
    return f"{DATA}/raw/{wildcards.dataset}/.complete"


def raw_dir(wildcards):
    spec = dataset_spec(wildcards.dataset)
    return spec.get("path") or f"{DATA}/raw/{wildcards.dataset}"


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
    return " ".join(f"{DATA}/{d}" for d in pool_members(wildcards.pool))


def pretrain_overrides(wildcards):
    epochs = config["evaluation"].get("convergence_epochs", []) if keeps_checkpoints(wildcards.method) else []
    extra = {"checkpoint_epochs": epochs}
    return json.dumps(json.loads(method_overrides(wildcards.method, wildcards.seed)) + [extra])


def leakage_check(wildcards):
    return f"{RUNS}/checks/{dataset_spec(wildcards.dataset)['pool']}__{wildcards.dataset}.ok"


def protocol_args(wildcards):
    args = {k: v for k, v in protocol_spec(wildcards.protocol).items() if k != "methods"}
    if wildcards.variant.startswith("frac"):
        args["train_fraction"] = int(wildcards.variant[4:]) / 100
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


def features_flag(wildcards, input):
    return f"--features {input.features}" if input.features else ""


def evaluation_gpus(wildcards):
    """A frozen-feature evaluation fits on the CPU from its feature file: it holds no GPU."""
    return 0 if features_for(wildcards) else config["evaluation"].get("gpus", 0)


def features_folds(wildcards):
    return [f"{DATA}/{wildcards.dataset}/folds.csv"] if wildcards.bn == "adabn" else []


def features_folds_flag(wildcards, input):
    return f"--folds {input.folds}" if input.folds else ""


def tsne_features():
    """name=feature file of the `tsne_encoders` (seed 0, first evaluation dataset, frozen BN)."""
    dataset = eval_datasets()[0]
    seed = config["evaluation"]["seeds"][0]
    return {m: layout.features_path(RUNS, dataset, m, seed, layout.FULL, "frozen") for m in tsne_encoders()}

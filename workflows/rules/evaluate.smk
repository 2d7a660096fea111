# Evaluation: one job per (dataset, protocol, method, seed, variant) -> one metrics file per
# fold. Variants: `full` (all training videos of the fold), `frac<p>` (p % of them, label
# efficiency), `epoch<k>` (the encoder saved after k pretraining epochs, convergence).
#
# Frozen features are a workflow output: one `features` job per (dataset, method, seed, encoder
# variant, BN mode) writes a feature file, and every frozen-feature evaluation of that encoder
# (linear probe, k-NN; their AdaBN forms read the `adabn` file) and the t-SNE read it. The file
# records the hashes of the encoder, the dataset (and the folds for AdaBN); a job whose inputs
# no longer match it recomputes it, an evaluation refuses it. Fine-tuning reads frames itself.
# Two families with their own resources: `evaluate` (features + a probe: no GPU needed, grouped
# per pretraining run with its feature jobs) and `evaluate_finetune` (trains the encoder).

EVAL_OUTPUT = [
    layout.metrics_path(RUNS, "{dataset}", "{protocol}", "{method}", "{seed}", fold, "{variant}")
    for fold in range(config["evaluation"]["folds"])
]
EVAL_LOG = f"{LOGS}/eval/{{dataset}}/{{protocol}}/{{method}}/seed{{seed}}/{{variant}}"
EVAL_BENCH = f"{BENCH}/eval/{{dataset}}/{{protocol}}/{{method}}/seed{{seed}}/{{variant}}"
FEATURES_LOG = f"{LOGS}/features/{{dataset}}/{{method}}/seed{{seed}}/{{variant}}/{{bn}}"
FEATURES_BENCH = f"{BENCH}/features/{{dataset}}/{{method}}/seed{{seed}}/{{variant}}/{{bn}}"
EVAL_PARAMS = dict(
    folds=[str(f) for f in range(config["evaluation"]["folds"])],
    data=lambda wc: layout.dataset_dir(DATA, wc.dataset),
    args=protocol_args,
    image_size=config["evaluation"]["image_size"],
    max_frames=config["evaluation"].get("max_frames", 30),
    device=config["evaluation"].get("device", "auto"),
    gpus=given_gpus,
    features=features_args,
)
EVAL_COMMAND = hico(
    "evaluate --encoder {input.encoder:q} --data {params.data:q} "
    "--folds {input.folds:q} --fold {params.folds:q} --protocol {wildcards.protocol:q} --seed {wildcards.seed:q} "
    "--image-size {params.image_size:q} --max-frames {params.max_frames:q} --method {wildcards.method:q} "
    "--args {params.args:q} --device {params.device:q} --gpus {params.gpus:q} {params.features:q} "
    "--out {output:q} > {log:q} 2>&1",
    threads=True,
)


wildcard_constraints:
    bn="|".join(layout.BN_MODES),


rule features:
    input:
        encoder=encoder_for,
        data=MANIFEST,
        folds=features_folds,
    output:
        layout.features_path(RUNS, "{dataset}", "{method}", "{seed}", "{variant}", "{bn}"),
    log:
        f"{FEATURES_LOG}.log",
    benchmark:
        f"{FEATURES_BENCH}.tsv"
    wildcard_constraints:
        variant="full|epoch[0-9]+",
    params:
        data=lambda wc: layout.dataset_dir(DATA, wc.dataset),
        folds=features_folds_args,
        image_size=config["evaluation"]["image_size"],
        max_frames=config["evaluation"].get("max_frames", 30),
        device=config["evaluation"].get("device", "auto"),
        gpus=given_gpus,
    group:
        PROBE_GROUP
    threads: EVAL_FROZEN["threads"]
    resources:
        mem_mb=EVAL_FROZEN["mem_mb"],
        runtime=EVAL_FROZEN["runtime_min"],
        **gpu_resource(EVAL_FROZEN["gpus"]),
    priority: features_priority
    conda:
        TORCH_ENV
    shell:
        hico("features --encoder {input.encoder:q} --data {params.data:q} --image-size {params.image_size:q} "
        "--max-frames {params.max_frames:q} --bn {wildcards.bn:q} {params.folds:q} --device {params.device:q} "
        "--gpus {params.gpus:q} --out {output:q} > {log:q} 2>&1", threads=True)


rule evaluate:
    wildcard_constraints:
        protocol=FROZEN_RE,
    input:
        encoder=encoder_for,
        data=MANIFEST,
        folds=folds_for,
        check=leakage_check,
        features=features_for,
    output:
        EVAL_OUTPUT,
    log:
        f"{EVAL_LOG}.log",
    benchmark:
        f"{EVAL_BENCH}.tsv"
    params:
        **EVAL_PARAMS,
    group:
        PROBE_GROUP
    threads: EVAL_FROZEN["threads"]
    resources:
        mem_mb=EVAL_FROZEN["mem_mb"],
        runtime=EVAL_FROZEN["runtime_min"],
        **gpu_resource(EVAL_FROZEN["gpus"]),
    conda:
        TORCH_ENV
    shell:
        EVAL_COMMAND


rule evaluate_finetune:
    wildcard_constraints:
        protocol=FINETUNE_RE,
    input:
        encoder=encoder_for,
        data=MANIFEST,
        folds=folds_for,
        check=leakage_check,
    output:
        EVAL_OUTPUT,
    log:
        f"{EVAL_LOG}.log",
    benchmark:
        f"{EVAL_BENCH}.tsv"
    params:
        **EVAL_PARAMS,
    threads: EVAL_FINETUNE["threads"]
    resources:
        mem_mb=EVAL_FINETUNE["mem_mb"],
        runtime=EVAL_FINETUNE["runtime_min"],
        **gpu_resource(EVAL_FINETUNE["gpus"]),
    priority: LONG_EVAL_PRIORITY
    conda:
        TORCH_ENV
    shell:
        EVAL_COMMAND

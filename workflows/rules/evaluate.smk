# Evaluation: one job per (dataset, protocol, method, seed, variant) -> one metrics file per
# fold (frozen features are extracted once for all folds).
# Variants: `full` (all training videos of the fold), `frac<p>` (p % of them, label
# efficiency), `epoch<k>` (the encoder saved after k pretraining epochs, convergence).
# Two families with their own resources: `evaluate` (frozen features + a probe: no GPU needed,
# grouped per pretraining run) and `evaluate_finetune` (trains the encoder).

EVAL_OUTPUT = [
    layout.metrics_path(RUNS, "{dataset}", "{protocol}", "{method}", "{seed}", fold, "{variant}")
    for fold in range(config["evaluation"]["folds"])
]
EVAL_LOG = f"{LOGS}/eval/{{dataset}}/{{protocol}}/{{method}}/seed{{seed}}/{{variant}}"
EVAL_BENCH = f"{BENCH}/eval/{{dataset}}/{{protocol}}/{{method}}/seed{{seed}}/{{variant}}"
EVAL_PARAMS = dict(
    folds=[str(f) for f in range(config["evaluation"]["folds"])],
    data=lambda wc: layout.dataset_dir(DATA, wc.dataset),
    args=protocol_args,
    image_size=config["evaluation"]["image_size"],
    max_frames=config["evaluation"].get("max_frames", 30),
    device=config["evaluation"].get("device", "auto"),
    gpus=given_gpus,
)
EVAL_COMMAND = hico(
    "evaluate --encoder {input.encoder:q} --data {params.data:q} "
    "--folds {input.folds:q} --fold {params.folds:q} --protocol {wildcards.protocol:q} --seed {wildcards.seed:q} "
    "--image-size {params.image_size:q} --max-frames {params.max_frames:q} --method {wildcards.method:q} "
    "--args {params.args:q} --device {params.device:q} --gpus {params.gpus:q} --out {output:q} > {log:q} 2>&1",
    threads=True,
)


rule evaluate:
    wildcard_constraints:
        protocol=FROZEN_RE,
    input:
        encoder=encoder_for,
        data=MANIFEST,
        folds=FOLDS,
        check=leakage_check,
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
        folds=FOLDS,
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
    conda:
        TORCH_ENV
    shell:
        EVAL_COMMAND

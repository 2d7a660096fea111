# Evaluation: one job per (dataset, protocol, method, seed, variant) -> one metrics.json per
# fold. Variants: `full` (all training videos of the fold), `frac<p>` (p % of them, label
# efficiency), `epoch<k>` (the encoder saved after k pretraining epochs, convergence).
#
# Frozen features are a workflow output: one `features` job per (dataset, method, seed, encoder
# variant, BN mode) writes a feature file, and every frozen-feature evaluation of that encoder
# (linear probe, k-NN; their AdaBN forms read the `adabn` file) and the t-SNE read it. The file
# records the hashes of the encoder, the dataset (and the folds for AdaBN); a job whose inputs
# no longer match it recomputes it, an evaluation refuses it. Fine-tuning reads frames itself.
wildcard_constraints:
    bn="|".join(layout.BN_MODES),


rule features:
    input:
        encoder=encoder_for,
        data=f"{DATA}/{{dataset}}/manifest.csv",
        folds=features_folds,
    output:
        layout.features_path(RUNS, "{dataset}", "{method}", "{seed}", "{variant}", "{bn}"),
    log:
        f"{LOGS}/features/{{dataset}}/{{method}}/seed{{seed}}/{{variant}}/{{bn}}.log",
    benchmark:
        f"{BENCH}/features/{{dataset}}/{{method}}/seed{{seed}}/{{variant}}/{{bn}}.tsv"
    wildcard_constraints:
        variant="full|epoch[0-9]+",
    params:
        data=lambda wc: f"{DATA}/{wc.dataset}",
        folds=features_folds_flag,
        image_size=config["evaluation"]["image_size"],
        max_frames=config["evaluation"].get("max_frames", 30),
        device=config["evaluation"].get("device", "auto"),
    threads: config["evaluation"].get("threads", 1)
    resources:
        gpu=config["evaluation"].get("gpus", 0),
        mem_mb=config["evaluation"].get("mem_mb", 8000),
        runtime=config["evaluation"].get("runtime_min", 30),
    conda:
        "../envs/torch.yaml"
    shell:
        "OMP_NUM_THREADS={threads} python -m hico features --encoder {input.encoder} --data {params.data} "
        "--image-size {params.image_size} --max-frames {params.max_frames} --bn {wildcards.bn} {params.folds} "
        "--device {params.device} --out {output} > {log} 2>&1"


rule evaluate:
    input:
        encoder=encoder_for,
        data=f"{DATA}/{{dataset}}/manifest.csv",
        folds=f"{DATA}/{{dataset}}/folds.csv",
        check=leakage_check,
        features=features_for,
    output:
        [
            f"{RUNS}/eval/{{dataset}}/{{protocol}}/{{method}}/seed{{seed}}/fold{fold}/{{variant}}/metrics.json"
            for fold in range(config["evaluation"]["folds"])
        ],
    log:
        f"{LOGS}/eval/{{dataset}}/{{protocol}}/{{method}}/seed{{seed}}/{{variant}}.log",
    benchmark:
        f"{BENCH}/eval/{{dataset}}/{{protocol}}/{{method}}/seed{{seed}}/{{variant}}.tsv"
    params:
        folds=" ".join(str(f) for f in range(config["evaluation"]["folds"])),
        data=lambda wc: f"{DATA}/{wc.dataset}",
        args=protocol_args,
        image_size=config["evaluation"]["image_size"],
        max_frames=config["evaluation"].get("max_frames", 30),
        device=config["evaluation"].get("device", "auto"),
        features=features_flag,
    threads: config["evaluation"].get("threads", 1)
    resources:
        gpu=evaluation_gpus,
        mem_mb=config["evaluation"].get("mem_mb", 8000),
        runtime=config["evaluation"].get("runtime_min", 30),
    conda:
        "../envs/torch.yaml"
    shell:
        "OMP_NUM_THREADS={threads} python -m hico evaluate --encoder {input.encoder} --data {params.data} "
        "--folds {input.folds} --fold {params.folds} --protocol {wildcards.protocol} --seed {wildcards.seed} "
        "--image-size {params.image_size} --max-frames {params.max_frames} --method {wildcards.method} "
        "--args '{params.args}' --device {params.device} {params.features} --out {output} > {log} 2>&1"

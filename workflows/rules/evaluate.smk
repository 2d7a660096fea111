# Evaluation: one job per (dataset, protocol, method, seed, variant) -> one metrics file per
# fold (frozen features are extracted once for all folds).
# Variants: `full` (all training videos of the fold), `frac<p>` (p % of them, label
# efficiency), `epoch<k>` (the encoder saved after k pretraining epochs, convergence).

rule evaluate:
    input:
        encoder=encoder_for,
        data=MANIFEST,
        folds=FOLDS,
        check=leakage_check,
    output:
        [
            layout.metrics_path(RUNS, "{dataset}", "{protocol}", "{method}", "{seed}", fold, "{variant}")
            for fold in range(config["evaluation"]["folds"])
        ],
    log:
        f"{LOGS}/eval/{{dataset}}/{{protocol}}/{{method}}/seed{{seed}}/{{variant}}.log",
    benchmark:
        f"{BENCH}/eval/{{dataset}}/{{protocol}}/{{method}}/seed{{seed}}/{{variant}}.tsv"
    params:
        folds=[str(f) for f in range(config["evaluation"]["folds"])],
        data=lambda wc: layout.dataset_dir(DATA, wc.dataset),
        args=protocol_args,
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
        "OMP_NUM_THREADS={threads} python -m hico evaluate --encoder {input.encoder:q} --data {params.data:q} "
        "--folds {input.folds:q} --fold {params.folds:q} --protocol {wildcards.protocol:q} --seed {wildcards.seed:q} "
        "--image-size {params.image_size:q} --max-frames {params.max_frames:q} --method {wildcards.method:q} "
        "--args {params.args:q} --device {params.device:q} --out {output:q} > {log:q} 2>&1"

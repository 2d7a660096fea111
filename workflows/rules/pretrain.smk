# Pretraining: one job per (pool, method, seed); controls export their initial encoder.

rule pretrain:
    wildcard_constraints:
        method=UNTRACKED_RE,
    input:
        pool_manifests,
        weights=imagenet_weights,
    output:
        encoder=f"{RUN}/{layout.ENCODER}",
        log_csv=f"{RUN}/{layout.TRAIN_LOG}",
    log:
        f"{PRETRAIN_LOG}.log",
    benchmark:
        f"{PRETRAIN_BENCH}.tsv"
    params:
        data=pool_dataset_dirs,
        base=lambda wc: base_method(wc.method),
        overrides=pretrain_overrides,
        out=lambda wc: layout.pretrain_run_dir(RUNS, wc.pool, wc.method, wc.seed),
        device=config["pretrain"].get("device", "auto"),
        gpus=given_gpus,
    threads: PRETRAIN["threads"]
    priority: pretrain_priority
    resources:
        mem_mb=PRETRAIN["mem_mb"],
        runtime=PRETRAIN["runtime_min"],
        **gpu_resource(PRETRAIN["gpus"]),
    conda:
        TORCH_ENV
    shell:
        hico("pretrain {params.base:q} --name {wildcards.method:q} "
        "--data {params.data:q} --out {params.out:q} --overrides {params.overrides:q} --device {params.device:q} "
        "--gpus {params.gpus:q} --restart-on-mismatch > {log:q} 2>&1", threads=True)


# The variant methods also keep an encoder checkpoint at every convergence epoch (the convergence table).
use rule pretrain as pretrain_tracked with:
    wildcard_constraints:
        method=TRACKED_RE,
    output:
        encoder=f"{RUN}/{layout.ENCODER}",
        log_csv=f"{RUN}/{layout.TRAIN_LOG}",
        checkpoints=[f"{RUN}/{layout.checkpoint_name(e)}" for e in config["evaluation"].get("convergence_epochs", [])],


rule export_control:
    wildcard_constraints:
        method=CONTROL_RE,
    input:
        weights=imagenet_weights,
    output:
        encoder=f"{RUN}/{layout.ENCODER}",
        log_csv=f"{RUN}/{layout.TRAIN_LOG}",
    log:
        f"{PRETRAIN_LOG}.log",
    benchmark:
        f"{PRETRAIN_BENCH}.tsv"
    params:
        base=lambda wc: base_method(wc.method),
        overrides=lambda wc: method_overrides(wc.method, wc.seed),
        out=lambda wc: layout.pretrain_run_dir(RUNS, wc.pool, wc.method, wc.seed),
    resources:
        mem_mb=4000,
        runtime=15,
    priority: GATE_PRIORITY
    conda:
        TORCH_ENV
    shell:
        hico("pretrain {params.base:q} --name {wildcards.method:q} --out {params.out:q} "
        "--overrides {params.overrides:q} > {log:q} 2>&1")

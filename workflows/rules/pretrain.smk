# Pretraining: one job per (pool, method, seed); controls export their initial encoder.

rule pretrain:
    wildcard_constraints:
        method=UNTRACKED_RE,
    input:
        pool_manifests,
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
    threads: config["pretrain"].get("threads", 1)
    resources:
        gpu=config["pretrain"].get("gpus", 0),
        mem_mb=config["pretrain"].get("mem_mb", 8000),
        runtime=config["pretrain"].get("runtime_min", 60),
    conda:
        "../envs/torch.yaml"
    shell:
        "OMP_NUM_THREADS={threads} python -m hico pretrain {params.base:q} --name {wildcards.method:q} "
        "--data {params.data:q} --out {params.out:q} --overrides {params.overrides:q} --device {params.device:q} "
        "> {log:q} 2>&1"


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
    conda:
        "../envs/torch.yaml"
    shell:
        "python -m hico pretrain {params.base:q} --name {wildcards.method:q} --out {params.out:q} "
        "--overrides {params.overrides:q} > {log:q} 2>&1"

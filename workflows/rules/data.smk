# Data: simulate (embedded synthetic set) or download + prepare (public and restricted sets),
# then patient-grouped folds and the leakage guard between pretraining pools and test sets.

rule simulate:
    wildcard_constraints:
        dataset=SYNTHETIC_RE,
    output:
        MANIFEST,
    log:
        f"{LOGS}/simulate/{{dataset}}.log",
    benchmark:
        f"{BENCH}/simulate/{{dataset}}.tsv"
    params:
        args=simulate_args,
        root=lambda wc, output: Path(output[0]).parent.parent,
    priority: DATA_PRIORITY
    resources:
        mem_mb=2000,
        runtime=15,
    conda:
        "../envs/data.yaml"
    shell:
        hico("simulate --out {params.root:q} --name {wildcards.dataset:q} {params.args:q} > {log:q} 2>&1")

rule download:
    output:
        touch(f"{layout.raw_dir(DATA, '{dataset}')}/.complete"),
    log:
        f"{LOGS}/download/{{dataset}}.log",
    benchmark:
        f"{BENCH}/download/{{dataset}}.tsv"
    params:
        raw=lambda wc: layout.raw_dir(DATA, wc.dataset),
        source=dataset_source,
        options=source_options,
    priority: DATA_PRIORITY
    retries: 2
    conda:
        "../envs/data.yaml"
    shell:
        hico("download {params.source:q} --raw {params.raw:q} --options {params.options:q} > {log:q} 2>&1")

# The timm ImageNet weights of the methods that start from them (imagenet, hico), fetched on the
# submit host (a localrule) into the shared weights cache that every job reads offline.
rule prefetch_weights:
    wildcard_constraints:
        backbone=r"[A-Za-z0-9][A-Za-z0-9_.-]*",
    output:
        f"{WEIGHTS}/{{backbone}}.ok",
    log:
        f"{LOGS}/prefetch_weights/{{backbone}}.log",
    conda:
        "../envs/data.yaml"
    shell:
        prefetch("{wildcards.backbone:q} --out {output:q} > {log:q} 2>&1")


rule prepare:
    wildcard_constraints:
        dataset=SOURCED_RE,
    input:
        raw_input,
    output:
        MANIFEST,
    log:
        f"{LOGS}/prepare/{{dataset}}.log",
    benchmark:
        f"{BENCH}/prepare/{{dataset}}.tsv"
    params:
        raw=raw_dir,
        root=lambda wc, output: Path(output[0]).parent.parent,
        source=dataset_source,
        options=source_options,
    priority: DATA_PRIORITY
    resources:
        mem_mb=8000,
        runtime=120,
    conda:
        "../envs/data.yaml"
    shell:
        hico("prepare {params.source:q} --raw {params.raw:q} --out {params.root:q} --name {wildcards.dataset:q} "
        "--options {params.options:q} > {log:q} 2>&1")

rule folds:
    input:
        MANIFEST,
    output:
        layout.dataset_file(DATA, "{dataset}", "{folds_file}"),
    log:
        f"{LOGS}/folds/{{dataset}}/{{folds_file}}.log",
    benchmark:
        f"{BENCH}/folds/{{dataset}}/{{folds_file}}.tsv"
    wildcard_constraints:
        folds_file=layout.FOLDS_NAME_RE,
    params:
        k=config["evaluation"]["folds"],
        seed=lambda wc: config["evaluation"].get("fold_seed", 0) + (layout.folds_seed(wc.folds_file) or 0),
        dataset=lambda wc, input: Path(input[0]).parent,
    resources:
        mem_mb=2000,
        runtime=10,
    priority: GATE_PRIORITY
    conda:
        "../envs/data.yaml"
    shell:
        hico("folds {params.dataset:q} --k {params.k:q} --seed {params.seed:q} --out {output:q} > {log:q} 2>&1")


rule check_leakage:
    input:
        pool=pool_manifests,
        test=MANIFEST,
    output:
        f"{RUNS}/checks/{{pool}}__{{dataset}}.ok",
    log:
        f"{LOGS}/check_leakage/{{pool}}__{{dataset}}.log",
    benchmark:
        f"{BENCH}/check_leakage/{{pool}}__{{dataset}}.tsv"
    params:
        pool_dirs=pool_dataset_dirs,
        test_dir=lambda wc: layout.dataset_dir(DATA, wc.dataset),
        allow=["--allow-overlap"] if config.get("allow_overlap", False) else [],
    resources:
        mem_mb=2000,
        runtime=15,
    priority: GATE_PRIORITY
    conda:
        "../envs/data.yaml"
    shell:
        hico("check-overlap --pretrain {params.pool_dirs:q} --eval {params.test_dir:q} {params.allow:q} "
        "--out {output:q} > {log:q} 2>&1")

# Data: simulate (embedded synthetic set) or download + prepare (public and restricted sets),
# then patient-grouped folds and the leakage guard between pretraining pools and test sets.

rule simulate:
    wildcard_constraints:
        dataset=SYNTHETIC_RE,
    output:
        f"{DATA}/{{dataset}}/manifest.csv",
    log:
        f"{LOGS}/simulate/{{dataset}}.log",
    benchmark:
        f"{BENCH}/simulate/{{dataset}}.tsv"
    params:
        args=simulate_args,
        root=lambda wc, output: Path(output[0]).parent.parent,
    conda:
        "../envs/torch.yaml"
    shell:
        "python -m hico simulate --out {params.root} --name {wildcards.dataset} {params.args} > {log} 2>&1"

rule download:
    output:
        touch(f"{DATA}/raw/{{dataset}}/.complete"),
    log:
        f"{LOGS}/download/{{dataset}}.log",
    benchmark:
        f"{BENCH}/download/{{dataset}}.tsv"
    params:
        raw=lambda wc: f"{DATA}/raw/{wc.dataset}",
        source=dataset_source,
        options=source_options,
    retries: 2
    conda:
        "../envs/data.yaml"
    shell:
        "python -m hico download {params.source} --raw {params.raw} --options '{params.options}' > {log} 2>&1"

rule prepare:
    wildcard_constraints:
        dataset=SOURCED_RE,
    input:
        raw_input,
    output:
        f"{DATA}/{{dataset}}/manifest.csv",
    log:
        f"{LOGS}/prepare/{{dataset}}.log",
    benchmark:
        f"{BENCH}/prepare/{{dataset}}.tsv"
    params:
        raw=raw_dir,
        root=lambda wc, output: Path(output[0]).parent.parent,
        source=dataset_source,
        options=source_options,
    conda:
        "../envs/data.yaml"
    shell:
        "python -m hico prepare {params.source} --raw {params.raw} --out {params.root} --name {wildcards.dataset} "
        "--options '{params.options}' > {log} 2>&1"

rule folds:
    input:
        f"{DATA}/{{dataset}}/manifest.csv",
    output:
        f"{DATA}/{{dataset}}/folds.csv",
    log:
        f"{LOGS}/folds/{{dataset}}.log",
    benchmark:
        f"{BENCH}/folds/{{dataset}}.tsv"
    params:
        k=config["evaluation"]["folds"],
        seed=config["evaluation"].get("fold_seed", 0),
        dataset=lambda wc, input: Path(input[0]).parent,
    conda:
        "../envs/torch.yaml"
    shell:
        "python -m hico folds {params.dataset} --k {params.k} --seed {params.seed} --out {output} > {log} 2>&1"


rule check_leakage:
    input:
        pool=pool_manifests,
        test=f"{DATA}/{{dataset}}/manifest.csv",
    output:
        f"{RUNS}/checks/{{pool}}__{{dataset}}.ok",
    log:
        f"{LOGS}/check_leakage/{{pool}}__{{dataset}}.log",
    benchmark:
        f"{BENCH}/check_leakage/{{pool}}__{{dataset}}.tsv"
    params:
        pool_dirs=lambda wc: " ".join(f"{DATA}/{d}" for d in pool_members(wc.pool)),
        test_dir=lambda wc: f"{DATA}/{wc.dataset}",
        allow="--allow-overlap" if config.get("allow_overlap", False) else "",
    conda:
        "../envs/torch.yaml"
    shell:
        "python -m hico check-overlap --pretrain {params.pool_dirs} --eval {params.test_dir} {params.allow} "
        "--out {output} > {log} 2>&1"

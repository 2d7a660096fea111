# Report: every metrics.json -> results/tables/*.csv -> results/figures/*.


rule aggregate:
    input:
        metrics=metrics_targets(),
        encoders=pretrain_targets(),
    output:
        [f"{RESULTS}/tables/{t}.csv" for t in TABLES],
    log:
        f"{LOGS}/report/aggregate.log",
    benchmark:
        f"{BENCH}/report/aggregate.tsv"
    params:
        metrics_dir=lambda wc: f"{RUNS}/eval",
        compute_dir=lambda wc: f"{RUNS}/pretrain",
        bench_dir=lambda wc: f"{BENCH}/pretrain",
        out_dir=lambda wc, output: Path(output[0]).parent,
    conda:
        "../envs/report.yaml"
    shell:
        "python -m hico aggregate --metrics-dir {params.metrics_dir} --compute-dir {params.compute_dir} "
        "--bench-dir {params.bench_dir} --out-dir {params.out_dir} > {log} 2>&1"


rule plot:
    input:
        tables=[f"{RESULTS}/tables/{t}.csv" for t in TABLES],
    output:
        report(
            [f"{RESULTS}/figures/{f}.png" for f in FIGURES],
            caption="../report/figures.rst",
            category="Figures",
        ),
    log:
        f"{LOGS}/report/plot.log",
    benchmark:
        f"{BENCH}/report/plot.tsv"
    params:
        tables=lambda wc, input: Path(input.tables[0]).parent,
        out_dir=lambda wc, output: Path(output[0]).parent,
        metrics_dir=lambda wc: f"{RUNS}/eval",
        expect=" ".join(FIGURES),
    conda:
        "../envs/report.yaml"
    shell:
        "python -m hico plot --tables {params.tables} --out-dir {params.out_dir} --metrics-dir {params.metrics_dir} "
        "--figures main_comparison convergence label_efficiency confusion finetune_curves --expect {params.expect} "
        "> {log} 2>&1"


# t-SNE reads the frozen feature files of the encoders (the features rule), so it runs beside
# the evaluation jobs, not after them, and needs no torch.
rule tsne:
    input:
        features=tsne_features().values(),
        data=f"{DATA}/{eval_datasets()[0]}/manifest.csv",
    output:
        report(f"{RESULTS}/figures/tsne.png", caption="../report/tsne.rst", category="Figures"),
    log:
        f"{LOGS}/report/tsne.log",
    benchmark:
        f"{BENCH}/report/tsne.tsv"
    params:
        out_dir=lambda wc, output: Path(output[0]).parent,
        features=lambda wc: " ".join(f"{m}={p}" for m, p in tsne_features().items()),
        data=lambda wc, input: Path(input.data).parent,
    conda:
        "../envs/report.yaml"
    shell:
        "python -m hico plot --figures tsne --out-dir {params.out_dir} --features {params.features} "
        "--data {params.data} > {log} 2>&1"

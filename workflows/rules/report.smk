# Report: every evaluation record -> the tables -> the figures.


rule aggregate:
    input:
        metrics=metrics_targets(),
        encoders=pretrain_targets(),
    output:
        TABLES,
    log:
        f"{LOGS}/report/aggregate.log",
    benchmark:
        f"{BENCH}/report/aggregate.tsv"
    params:
        metrics_dir=lambda wc: layout.eval_root(RUNS),
        compute_dir=lambda wc: layout.pretrain_root(RUNS),
        bench_dir=lambda wc: layout.pretrain_root(BENCH),
        out_dir=lambda wc, output: Path(output[0]).parent,
    conda:
        "../envs/report.yaml"
    shell:
        "python -m hico aggregate --metrics-dir {params.metrics_dir} --compute-dir {params.compute_dir} "
        "--bench-dir {params.bench_dir} --out-dir {params.out_dir} > {log} 2>&1"


rule plot:
    input:
        tables=TABLES,
    output:
        report(
            FIGURES,
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
        metrics_dir=lambda wc: layout.eval_root(RUNS),
        groups=" ".join(TABLE_FIGURE_GROUPS),
        expect=" ".join(FIGURE_NAMES),
    conda:
        "../envs/report.yaml"
    shell:
        "python -m hico plot --tables {params.tables} --out-dir {params.out_dir} --metrics-dir {params.metrics_dir} "
        "--figures {params.groups} --expect {params.expect} "
        "> {log} 2>&1"


# t-SNE needs only the encoders, so it runs beside the evaluation jobs, not after them.
rule tsne:
    input:
        encoders=tsne_encoders().values(),
        data=dataset_manifest(eval_datasets()[0]),
    output:
        report(TSNE_FIGURE, caption="../report/tsne.rst", category="Figures"),
    log:
        f"{LOGS}/report/tsne.log",
    benchmark:
        f"{BENCH}/report/tsne.tsv"
    params:
        out_dir=lambda wc, output: Path(output[0]).parent,
        encoders=lambda wc: " ".join(f"{m}={p}" for m, p in tsne_encoders().items()),
        data=lambda wc, input: Path(input.data).parent,
        image_size=config["evaluation"]["image_size"],
        figure=layout.FIG_TSNE,
    conda:
        "../envs/report.yaml"
    shell:
        "python -m hico plot --figures {params.figure} --out-dir {params.out_dir} --encoders {params.encoders} "
        "--data {params.data} --image-size {params.image_size} > {log} 2>&1"

# Report: every evaluation record -> the tables -> the figures.


# The tables read the metrics.json files of this config and no others: a protocol, method or
# seed dropped from the config leaves its old files in runs/, never in the tables. (The list
# goes through a file: thousands of paths overflow a shell command line.)
rule metrics_list:
    input:
        metrics_targets(),
    output:
        METRICS_LIST,
    log:
        f"{LOGS}/report/metrics_list.log",
    run:
        from hico.io import atomic_write_text

        atomic_write_text(output[0], "".join(f"{path}\n" for path in input))
        atomic_write_text(log[0], f"{len(input)} metrics.json files of this config -> {output[0]}\n")


rule aggregate:
    input:
        metrics=metrics_targets(),
        metrics_list=METRICS_LIST,
        encoders=pretrain_targets(),
    output:
        [reported_table(t) for t in layout.TABLES],
    log:
        f"{LOGS}/report/aggregate.log",
    benchmark:
        f"{BENCH}/report/aggregate.tsv"
    params:
        compute_dir=lambda wc: layout.pretrain_root(RUNS),
        bench_dir=lambda wc: layout.pretrain_root(BENCH),
        out_dir=lambda wc, output: Path(output[0]).parent,
    conda:
        "../envs/report.yaml"
    shell:
        hico("aggregate --metrics-list {input.metrics_list:q} --compute-dir {params.compute_dir:q} "
        "--bench-dir {params.bench_dir:q} --out-dir {params.out_dir:q} > {log:q} 2>&1")


rule plot:
    input:
        tables=TABLES,
        metrics_list=METRICS_LIST,
    output:
        [reported_figure(f) for f in FIGURE_NAMES],
    log:
        f"{LOGS}/report/plot.log",
    benchmark:
        f"{BENCH}/report/plot.tsv"
    params:
        tables=lambda wc, input: Path(input.tables[0]).parent,
        out_dir=lambda wc, output: Path(output[0]).parent,
        groups=TABLE_FIGURE_GROUPS,
        expect=FIGURE_NAMES,
    # The workflow's last job: its figures are drawn by a process per core it gets, one thread
    # each (the demo's ten in 8 s on 2 cores instead of 17 s; the files are the same).
    threads: min(len(FIGURE_NAMES), 8)
    conda:
        "../envs/report.yaml"
    shell:
        hico("plot --tables {params.tables:q} --out-dir {params.out_dir:q} --metrics-list {input.metrics_list:q} "
        "--figures {params.groups:q} --expect {params.expect:q} --jobs {threads} > {log:q} 2>&1", one_thread_each=True)


# t-SNE reads the frozen feature files of the encoders (the features rule), so it runs beside
# the evaluation jobs, not after them, and needs no torch. It and its feature files have priority
# (LONG_EVAL_PRIORITY): left until the end, it ran beside the report tail and held back the plot
# job, which waits for every core.
rule tsne:
    input:
        features=tsne_features().values(),
        data=dataset_manifest(eval_datasets()[0]),
    output:
        reported_figure(layout.FIG_TSNE),
    log:
        f"{LOGS}/report/tsne.log",
    benchmark:
        f"{BENCH}/report/tsne.tsv"
    params:
        out_dir=lambda wc, output: Path(output[0]).parent,
        features=lambda wc: [f"{m}={p}" for m, p in tsne_features().items()],
        data=lambda wc, input: Path(input.data).parent,
        figure=layout.FIG_TSNE,
    resources:
        mem_mb=8000,
        runtime=60,
    priority: LONG_EVAL_PRIORITY
    conda:
        "../envs/report.yaml"
    shell:
        hico("plot --figures {params.figure:q} --out-dir {params.out_dir:q} --features {params.features:q} "
        "--data {params.data:q} > {log:q} 2>&1")

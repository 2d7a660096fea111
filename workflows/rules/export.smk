# Export: every pretrained encoder -> a timm model folder with its model card (python -m hico export).
# Off by default; `export: {enabled: true}` in the config adds the folders to `rule all`
# (export_targets() in common.smk). Controls (random_init, imagenet) are not exported: they are
# not pretrained. Pushing to the Hugging Face Hub needs credentials and the network, so it stays a
# manual step:  python -m hico export <encoder.pt> --out <folder> --push <user>/<repo>


rule export_encoder:
    input:
        encoder=f"{RUN}/{layout.ENCODER}",
        tables=layout.table_file(RESULTS, "main_comparison"),
    output:
        directory(layout.export_dir(RUNS, "{pool}", "{method}", "{seed}")),
    log:
        layout.export_dir(LOGS, "{pool}", "{method}", "{seed}") + ".log",
    benchmark:
        layout.export_dir(BENCH, "{pool}", "{method}", "{seed}") + ".tsv"
    params:
        tables=lambda wc, input: Path(input.tables).parent,
        data_root=DATA,
    conda:
        TORCH_ENV
    shell:
        hico("export {input.encoder:q} --out {output:q} --tables {params.tables:q} "
        "--data-root {params.data_root:q} > {log:q} 2>&1")

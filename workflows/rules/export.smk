# Export: every pretrained encoder -> a timm model folder with its model card (python -m hico export).
# Off by default; `export: {enabled: true}` in the config adds the folders to `rule all`
# (export_targets() in common.smk).
# Controls (random_init, imagenet) are not exported: they are not pretrained. Pushing to the
# Hugging Face Hub needs credentials and the network, so it stays a manual step:
#   python -m hico export <encoder.pt> --out <folder> --push <user>/<repo>


rule export_encoder:
    input:
        encoder=f"{RUNS}/pretrain/{{pool}}/{{method}}/seed{{seed}}/encoder.pt",
        tables=f"{RESULTS}/tables/main_comparison.csv",
    output:
        directory(f"{RUNS}/export/{{pool}}/{{method}}/seed{{seed}}"),
    log:
        f"{LOGS}/export/{{pool}}/{{method}}/seed{{seed}}.log",
    params:
        tables=lambda wc, input: Path(input.tables).parent,
        data_root=DATA,
    conda:
        "../envs/torch.yaml"
    shell:
        "python -m hico export {input.encoder} --out {output} --tables {params.tables} "
        "--data-root {params.data_root} > {log} 2>&1"

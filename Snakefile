# hico-bench: data -> pretrain -> evaluate -> tables and figures.
# The paper run:  snakemake --cores all --use-conda
# The demo:       snakemake --cores all --configfile workflows/config/demo.yaml
# A cluster:      snakemake --profile workflows/profiles/slurm   (README: Running on a cluster)
import os
import sys

from snakemake.exceptions import WorkflowError
from snakemake.utils import min_version, validate

min_version("8.0")

# The suite's own code is this checkout: the naming rules (hico.layout) are imported from it and
# the rules run it (PYTHONPATH, common.smk), wherever Snakemake runs (--directory, a module of
# another workflow), and never another installed copy that could disagree with it.
SUITE_ROOT = str(workflow.current_basedir)
if not os.path.isdir(SUITE_ROOT):
    raise WorkflowError(
        f"hico-bench runs from a local clone, not from {SUITE_ROOT}: git clone the repository and give "
        "its Snakefile's local path to `module ...: snakefile:` (README: Usage)"
    )
if SUITE_ROOT not in sys.path:
    sys.path.insert(0, SUITE_ROOT)


# The paper config is the default; a --configfile replaces it rather than merging into it
# (a merge would add the paper's datasets to the demo). `--config key=value` alone applies to
# the default. A module of another workflow gets its config from that workflow (`config:`).
if not workflow.overwrite_configfiles:

    configfile: f"{SUITE_ROOT}/workflows/config/config.yaml"


validate(config, "workflows/schemas/config.schema.yaml")


# `snakemake --report report.html`: the run described, then the tables and figures with captions
report: "workflows/report/workflow.rst"


include: "workflows/rules/common.smk"


# --software-deployment-method apptainer, and the Kubernetes executor's image (Dockerfile)
container: CONTAINER


include: "workflows/rules/data.smk"
include: "workflows/rules/pretrain.smk"
include: "workflows/rules/evaluate.smk"
include: "workflows/rules/report.smk"
include: "workflows/rules/export.smk"


# Run on the submit host: compute nodes are often offline (downloads) and the report rules are
# seconds of work after hours of queueing.
localrules:
    all,
    download,
    prefetch_weights,
    aggregate,
    metrics_list,
    plot,


rule all:
    input:
        all_targets(),
    default_target: True

# hico-bench: data -> pretrain -> evaluate -> tables and figures.
# The paper run:  snakemake --cores all --use-conda
# The demo:       snakemake --cores all --configfile workflows/config/demo.yaml
import sys

from snakemake.utils import min_version, validate

min_version("8.0")

# The suite's own code is this checkout: the naming rules (hico.layout) are imported from it,
# wherever Snakemake runs (--directory, a module of another workflow), and never from another
# installed copy that could disagree with it.
SUITE_ROOT = str(workflow.current_basedir)
if SUITE_ROOT not in sys.path:
    sys.path.insert(0, SUITE_ROOT)


# The paper config is the default; a --configfile replaces it rather than merging into it
# (a merge would add the paper's datasets to the demo).
if not config:

    configfile: "workflows/config/config.yaml"


validate(config, "workflows/schemas/config.schema.yaml")


include: "workflows/rules/common.smk"
include: "workflows/rules/data.smk"
include: "workflows/rules/pretrain.smk"
include: "workflows/rules/evaluate.smk"
include: "workflows/rules/report.smk"


rule all:
    input:
        all_targets(),
    default_target: True

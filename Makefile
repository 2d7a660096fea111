# The README's two commands: `make demo` and `make test`. Both bootstrap .venv with pip first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
CORES ?= all
# Workflow rules call `python`: make it the venv's, activated or not.
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: demo lung test test-fast lint bench clean-demo

# The venv's packages are installed by uv (put into the venv by pip), which fetches and unpacks
# the wheels in parallel: torch with its CUDA libraries is ~3 GB of wheels, 51 s with pip here and
# 18 s with uv; the whole .venv took 68 s with pip, 34-38 s with uv (the same `pip freeze`).
# Where uv cannot be installed, pip installs the same pins. Neither byte-compiles (pip would, on
# one core); compileall does it on every core after the installs (31 s here), for `make lung` and
# `make test`. It must be done: where PYTHONDONTWRITEBYTECODE is set (CI, many containers)
# nothing would cache the bytecode, and every job would compile its imports again. `make demo`
# skips it and lets its processes write the bytecode of what they import (a fraction of the
# venv), PYTHONDONTWRITEBYTECODE or not: its warm-start server imports torch once (compiling
# torch and torchvision alone would take 9 s on two cores). compileall's exit status is 1 for the
# few files of other Python versions that pip skips too.
UV := $(VENV)/bin/uv
UV_VERSION := 0.13.9
INSTALL = if [ -x $(UV) ]; then $(UV) pip install -q --python $(PY) $(1); else $(PY) -m pip install -q --no-compile $(1); fi
BYTE_COMPILE := $(PY) -m compileall -q -j 0 $(VENV)/lib hico baselines > /dev/null 2>&1 || true
$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q uv==$(UV_VERSION) || echo "uv could not be installed: pip installs the packages instead (slower)"
	$(call INSTALL,-r requirements.lock)
	$(call INSTALL,--no-deps -e .)
	touch $(STAMP)

COMPILED := $(VENV)/.compiled
$(COMPILED): $(STAMP)
	$(BYTE_COMPILE)
	touch $(COMPILED)

# `make test` (and lint) also need the trackers, the cluster executor plugins and the test tools.
EXTRAS_STAMP := $(VENV)/.installed-extras
$(EXTRAS_STAMP): $(COMPILED) requirements-extras.lock
	$(call INSTALL,-r requirements-extras.lock)
	$(BYTE_COMPILE)
	touch $(EXTRAS_STAMP)

# results/ is committed, so Snakemake would keep those tables; until this clone has run the demo
# (no runs/demo/eval yet) the report rules are forced, which pulls in every job upstream of them.
# The greedy scheduler: Snakemake's default ILP one solves a linear program each time it picks jobs.
# hico.warm: the jobs fork from a process that imported torch and timm once (hico/warm.py).
# --force-use-threads: a rule's `run:` block (the metrics list) runs in Snakemake's own process,
# as under a cluster executor, instead of a new Snakemake process that parses the workflow again
# (3 s of the serial report tail).
demo: $(STAMP)
	PYTHONDONTWRITEBYTECODE= $(PY) -m hico.warm -- $(PY) -m snakemake --cores $(CORES) --scheduler greedy --force-use-threads \
		--configfile workflows/config/demo.yaml \
		$(if $(wildcard runs/demo/eval),,--forcerun aggregate tsne)

# The real lung-US benchmark (POCUS + COVID-BLUeS from ../shared/data or data/lung/*/raw), CPU,
# <= 120 min on 2 cores; results/lung_cpu/ is committed, so the report rules are forced until this
# clone has its own runs. IMAGENET_WEIGHTS=<timm resnet18 checkpoint> adds the imagenet row.
lung: $(COMPILED)
	$(PY) -m snakemake --cores $(CORES) --scheduler greedy --force-use-threads --rerun-incomplete \
		--configfile workflows/config/lung_cpu.yaml \
		$(if $(wildcard runs/lung_cpu/eval),,--forcerun aggregate tsne) \
		$(if $(IMAGENET_WEIGHTS),--config 'methods={imagenet: {weights: $(IMAGENET_WEIGHTS)}}')

# Two workers, one test file each (module fixtures are built once): the end-to-end workflow,
# SLURM and real-data tests, mostly waiting on subprocesses, overlap the unit tests.
test: $(EXTRAS_STAMP)
	$(PY) -m pytest -q --timeout 900 -n 2 --dist loadfile --no-loadscope-reorder --durations 15

test-fast: $(EXTRAS_STAMP)
	$(PY) -m pytest -q -m "not slow"

lint: $(EXTRAS_STAMP)
	$(PY) -m ruff check hico baselines tests bench
	$(PY) -m snakemake --lint --configfile workflows/config/demo.yaml

bench: $(COMPILED)
	$(PY) bench/hico_step.py

clean-demo:
	rm -rf runs/demo data/synthetic_pretrain data/synthetic_lus

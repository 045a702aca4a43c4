# Two commands on a fresh machine: `make run` and `make test`. Both create .venv when it is
# missing or stale (pyproject.toml changed), install the pinned stack, then do their job.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell sha256sum pyproject.toml | cut -c1-16)

export HF_HUB_OFFLINE := 1
export HF_HUB_DISABLE_TELEMETRY := 1
export HF_HOME := $(CURDIR)/.cache/huggingface
export TOKENIZERS_PARALLELISM := false
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: venv run test lint bench sweep seeds clean

$(STAMP): pyproject.toml
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check --upgrade pip
	$(BIN)/pip install -q --disable-pip-version-check -e '.[dev]'
	touch $@

venv: $(STAMP)

## run: the whole embedded default (config.yaml) on this machine, then the summary table
run: venv
	$(BIN)/snakemake
	$(BIN)/sftrl summary

## sweep: the protocol's development half (configs/experiments/rl-sweep.yaml), one run per
## arm on one shared store; each arm's summary is kept as summary-<arm>.md
SWEEP := results/experiments/rl-sweep
sweep: venv
	for arm in configs/experiments/rl-sweep/*.yaml; do \
	  $(BIN)/snakemake --configfile configs/experiments/rl-sweep.yaml $$arm \
	    && cp $(SWEEP)/summary.md $(SWEEP)/summary-$$(basename $$arm .yaml).md || exit 1; \
	done

## seeds: the held-out half, the chosen arm with fresh seeds (configs/experiments/rl-recovery-seeds.yaml)
seeds: venv
	$(BIN)/snakemake --configfile configs/experiments/rl-recovery-seeds.yaml

## test: lint, then the test suite (unit, property, workflow end to end, SLURM when root)
test: venv lint
	$(BIN)/pytest -q -ra tests

lint: venv
	$(BIN)/ruff check src tests benchmarks workflow
	$(BIN)/ruff format --check src tests benchmarks workflow
	$(BIN)/snakefmt --check Snakefile workflow
	$(BIN)/snakemake --lint --configfile configs/micro.yaml

## bench: speed and memory benchmarks, JSON under benchmarks/results/
bench: venv
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf .snakemake

# The two set-up commands of README.md: `make demo` and `make test`.
VENV ?= .venv
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export PREFECT_SERVER_ANALYTICS_ENABLED := false

.PHONY: setup demo test test-fast bench ablate ablate-demo clean-demo

setup:
	bash scripts/setup.sh

## The main job: every available stage of the embedded-default pipeline.
demo: setup
	$(VENV)/bin/scot run pipelines/demo.yaml

## The whole test suite, as CI runs it.
test: setup
	$(VENV)/bin/python -m pytest

## Everything but the tests marked slow.
test-fast: setup
	$(VENV)/bin/python -m pytest -m "not slow"

## Issue 7's ablations after `make demo`: every training set (scripts/ablation_data.sh), then
## every variant x 3 seeds on the clip-art benchmark (ablation.json + report.html).
ablate: setup
	SCOT=$(VENV)/bin/scot bash scripts/ablation_data.sh
	$(VENV)/bin/scot ablate pipelines/ablations/clipart.yaml --out shards/demo/ablations/clipart

## The demo's own training choices after `make demo`: selected on val, reported on test.
ablate-demo: setup
	$(VENV)/bin/scot ablate pipelines/ablations/demo.yaml --out shards/demo/ablations/demo

## Every benchmark at modest sizes (~5 minutes on 2 cores), one table of ratios (BENCHMARKS.md).
bench: setup
	$(VENV)/bin/python bench/run_all

clean-demo:
	rm -rf shards/demo

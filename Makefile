# Two commands on a fresh machine: `make reproduce` (set up + default offline reproduction) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# CPU wheel of torch: a plain `pip install torch` would pull a multi-GB CUDA build.
TORCH_SPEC ?= torch==2.13.0+cpu
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu

.PHONY: setup reproduce test test-slow benchmark clean-results

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --retries 1 --no-deps "$(TORCH_SPEC)" --extra-index-url $(TORCH_INDEX)
	$(BIN)/pip install -e ".[dev]"
	touch $@

setup: $(VENV)/.installed

reproduce: setup
	$(BIN)/python -m experiments.reproduce

test: setup
	$(BIN)/python -m pytest

test-slow: setup
	$(BIN)/python -m pytest -m slow

benchmark: setup
	$(BIN)/python -m benchmarks.run_benchmark

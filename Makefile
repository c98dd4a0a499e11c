# Two commands on a fresh machine: `make reproduce` (set up + default offline reproduction) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# CPU wheel of torch: a plain `pip install torch` would pull a multi-GB CUDA build.
TORCH_SPEC ?= torch==2.13.0+cpu
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu

.PHONY: setup constraints reproduce test test-slow format check-format

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Every other dependency is pinned by constraints.txt, so a new release of transformers, pandas or
# huggingface-hub cannot change results unseen; `make constraints` refreshes it.
$(VENV)/.installed: pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/pip install --retries 1 --no-deps "$(TORCH_SPEC)" --extra-index-url $(TORCH_INDEX)
	$(BIN)/pip install -c constraints.txt -e ".[dev]"
	touch $@

setup: $(VENV)/.installed

# Pins of the current environment, less torch (TORCH_SPEC pins it per machine) and sinkmech itself.
constraints: setup
	$(BIN)/pip freeze --exclude-editable | grep -v -e '^#' -e '^torch==' -e '^sinkmech' > constraints.txt

# The default reproduction on the models available offline: real MiniLM weights, a tiny random
# model of every supported family (QK-norm ones included) and the smallest pair of the suite's
# knowledge ladder with and without QK-norm (checkpoints/ladder, issue 13), whose truth probes
# read only the facts each model knows (results/statements/<model>.csv, data.statements=known).
OFFLINE_MODELS ?= minilm,tiny_gpt2,tiny_llama,tiny_qwen2,tiny_olmo2,tiny_gemma3,tiny_qwen3
LADDER_MODELS ?= ladder_s_qknorm,ladder_s_noqknorm
EXPERIMENT ?= full

# `make reproduce` recomputes every unit into $(RESULTS) (force=true: nothing is skipped), writes
# the report, then compares the fresh tables with the committed reference column by column and
# fails (exit 1) when any column differs by more than TOLERANCE. Thread counts are fixed so CPU
# reductions, and the probes fitted on their output, are the same from run to run.
RESULTS ?= results
REFERENCE ?= results/reference
TOLERANCE ?= 1e-4
THREADS ?= 2
PINNED_THREADS := OMP_NUM_THREADS=$(THREADS) MKL_NUM_THREADS=$(THREADS) OPENBLAS_NUM_THREADS=$(THREADS)

reproduce: setup
	HF_HUB_OFFLINE=1 $(PINNED_THREADS) $(BIN)/python -m experiments.run -m experiment=$(EXPERIMENT) \
		model=$(OFFLINE_MODELS) results_dir=$(RESULTS) force=true
	@# the ladder's known-fact statement sets are committed under results/statements
	@[ "$(RESULTS)" = results ] || { mkdir -p $(RESULTS)/statements && cp results/statements/*.csv $(RESULTS)/statements/; }
	HF_HUB_OFFLINE=1 $(PINNED_THREADS) $(BIN)/python -m experiments.run -m experiment=$(EXPERIMENT) \
		model=$(LADDER_MODELS) data.statements=known results_dir=$(RESULTS) force=true
	$(BIN)/python -m experiments.report --results $(RESULTS) --extra results/ladder --html
	$(BIN)/python -m experiments.compare $(REFERENCE) $(RESULTS) --tolerance $(TOLERANCE) \
		--out $(RESULTS)/comparison

test: setup
	$(BIN)/python -m pytest

test-slow: setup
	$(BIN)/python -m pytest -m slow

# Formatter and import order, pinned in pyproject.toml (ruff, line length 100).
format: setup
	$(BIN)/ruff format . && $(BIN)/ruff check --fix .

check-format: setup
	$(BIN)/ruff format --check . && $(BIN)/ruff check .

# Two commands on a fresh machine: `make reproduce` (set up + default offline reproduction) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# CPU wheel of torch: a plain `pip install torch` would pull a multi-GB CUDA build.
TORCH_SPEC ?= torch==2.13.0+cpu
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu

.PHONY: setup reproduce test test-slow format check-format

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --retries 1 --no-deps "$(TORCH_SPEC)" --extra-index-url $(TORCH_INDEX)
	$(BIN)/pip install -e ".[dev]"
	touch $@

setup: $(VENV)/.installed

# The default reproduction on the models available offline: real MiniLM weights and a tiny
# random model of every supported family (QK-norm ones included), and the self-trained text LM
# pair with and without QK-norm (checkpoints/textlm, issue 8).
OFFLINE_MODELS ?= minilm,textlm_qknorm,textlm_noqknorm,tiny_gpt2,tiny_llama,tiny_qwen2,tiny_olmo2,tiny_gemma3,tiny_qwen3
EXPERIMENT ?= full

reproduce: setup
	HF_HUB_OFFLINE=1 $(BIN)/python -m experiments.run -m experiment=$(EXPERIMENT) model=$(OFFLINE_MODELS)
	$(BIN)/python -m experiments.report

test: setup
	$(BIN)/python -m pytest

test-slow: setup
	$(BIN)/python -m pytest -m slow

# Formatter and import order, pinned in pyproject.toml (ruff, line length 100).
format: setup
	$(BIN)/ruff format . && $(BIN)/ruff check --fix .

check-format: setup
	$(BIN)/ruff format --check . && $(BIN)/ruff check .

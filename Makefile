# Two commands on a fresh machine: `make reproduce` (set up + default offline reproduction) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# CPU wheel of torch: a plain `pip install torch` would pull a multi-GB CUDA build.
TORCH_SPEC ?= torch==2.13.0+cpu
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu

.PHONY: setup constraints reproduce test test-integration test-slow portability reference format check-format

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
# the report, then compares the fresh tables with the committed reference column by column, each
# column under the rule of its class (sinkmech/tolerance.py: exact, arithmetic, estimate), and
# fails when any column breaks its rule (compare exits 1, so make exits 2). Thread counts are
# fixed so CPU reductions are the same from run to run on one machine.
RESULTS ?= results
REFERENCE ?= results/reference
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
	$(BIN)/python -m experiments.compare $(REFERENCE) $(RESULTS) --out $(RESULTS)/comparison

# Replace the committed reference with the tables (parquet, CSV, config, marker) of a fresh
# `make reproduce RESULTS=...` run, after a change that alters results on purpose: bump
# RESULTS_VERSION and say in the commit which columns changed and why.
reference:
	@[ "$(RESULTS)" != results ] || { echo "make reference RESULTS=<fresh run directory>" >&2; exit 2; }
	rm -rf $(REFERENCE)/$(EXPERIMENT)
	cd $(RESULTS) && find $(EXPERIMENT) -mindepth 2 -maxdepth 2 -type f \
		\( -name '*.parquet' -o -name '*.csv' -o -name config.json -o -name _COMPLETE \) \
		-exec cp --parents {} $(abspath $(REFERENCE)) \;

# Test tiers: `make test` runs every test but the integration tier (marker `integration`: tests
# that start Python processes, build and install the wheel or train a model, 10-45 s each), which
# `make test-integration` runs; CI runs both, then `make portability`. `make test-slow`: long runs
# kept out of CI.
test: setup
	$(BIN)/python -m pytest -m "not slow and not integration"

test-integration: setup
	$(BIN)/python -m pytest -m "integration and not slow"

test-slow: setup
	$(BIN)/python -m pytest -m slow

# Another machine's CPU kernels, on this machine (issue 26): torch's vectorised kernels, MKL,
# oneDNN and OpenBLAS capped at AVX2 (OpenBLAS keeps a core type the machine sets itself). Runs the
# unit tests (no integration or e2e tier) and a small reproduction (MiniLM, a tiny model and a ladder model,
# probes included) against the committed reference, so a bound that holds on one instruction set
# only fails here, not on a user's machine.
OPENBLAS_CORETYPE ?= Haswell
SECOND_KERNELS := ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2 ONEDNN_MAX_CPU_ISA=AVX2 \
	OPENBLAS_CORETYPE=$(OPENBLAS_CORETYPE)
PORTABLE_RESULTS ?= results/_scratch/portability

portability: setup
	$(SECOND_KERNELS) $(BIN)/python -m pytest -q -m "not slow and not integration and not e2e"
	rm -rf $(PORTABLE_RESULTS) && mkdir -p $(PORTABLE_RESULTS)/statements
	cp results/statements/*.csv $(PORTABLE_RESULTS)/statements/
	HF_HUB_OFFLINE=1 $(PINNED_THREADS) $(SECOND_KERNELS) $(BIN)/python -m experiments.run -m \
		experiment=full model=minilm,tiny_qwen3 results_dir=$(PORTABLE_RESULTS) force=true
	HF_HUB_OFFLINE=1 $(PINNED_THREADS) $(SECOND_KERNELS) $(BIN)/python -m experiments.run -m \
		experiment=full model=ladder_s_qknorm data.statements=known \
		results_dir=$(PORTABLE_RESULTS) force=true
	$(BIN)/python -m experiments.compare $(REFERENCE) $(PORTABLE_RESULTS) --units full/minilm \
		full/tiny_qwen3 'full/ladder_s_qknorm@*' --out $(PORTABLE_RESULTS)/comparison

# Formatter and import order, pinned in pyproject.toml (ruff, line length 100).
format: setup
	$(BIN)/ruff format . && $(BIN)/ruff check --fix .

check-format: setup
	$(BIN)/ruff format --check . && $(BIN)/ruff check .

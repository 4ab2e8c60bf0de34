# Monet: `make demo` trains briefly and writes a sample grid; `make test` runs the test suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CONFIG ?= configs/wgan_gp.yaml
DEMO_CONFIG ?= configs/fastgan.yaml
DEMO_STEPS ?= 40
PYTEST_ARGS ?=
# pytest-xdist workers (one per core; each runs torch on one thread): WORKERS=0 runs in-process
WORKERS ?= auto
XDIST := $(if $(filter 0,$(WORKERS)),,-n $(WORKERS) --dist worksteal)

.PHONY: install test test-fast lint format fit demo bench bench-gpu quality clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

# pytest's exit code 5 (no tests collected) is a failure, never a pass.
test: install
	@$(BIN)/python -m pytest $(XDIST) $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests" >&2; fi; exit $$rc

# The edit loop: every test not marked slow (no end-to-end fits of whole configs, no DDP).
test-fast: install
	@$(BIN)/python -m pytest $(XDIST) -m "not slow" $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

fit: install
	$(BIN)/python -m monet fit --config $(CONFIG)

# Train the headline config for a few steps on the data it finds (MONET_DATA, else data/)
# and write a sample grid; with no data it says how to get it.
demo: install
	$(BIN)/python -m monet fit --config $(DEMO_CONFIG) --data.root "$${MONET_DATA:-data}" \
		--trainer.max_steps $(DEMO_STEPS) --trainer.logger.init_args.name demo \
		--trainer.enable_progress_bar true

bench: install
	$(BIN)/python benchmarks/data.py
	$(BIN)/python benchmarks/diffusion.py
	OMP_NUM_THREADS=1 $(BIN)/python benchmarks/small_unet.py
	$(BIN)/python benchmarks/train.py
	$(BIN)/python benchmarks/translation.py

# One CUDA GPU in about 10 minutes: images/s of every config in fp32 and bf16 (compiled too),
# the share of the measured bf16 matmul peak, host syncs a step, 3-minute quality rows.
# SMOKE=1: the same path on a CPU at tiny sizes.
bench-gpu: install
	$(BIN)/python benchmarks/gpu.py $(if $(SMOKE),--smoke)

# Sample quality of one config after MINUTES of training on the real data (MONET_DATA)
MINUTES ?= 20
quality: install
	$(BIN)/python benchmarks/quality.py $(CONFIG) --minutes $(MINUTES)

clean:
	rm -rf runs .pytest_cache .ruff_cache

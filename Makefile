# Two commands for a fresh clone: `make demo` (set up, then run the main job) and `make test`.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
# Test workers: one per core (measured on 2 cores: a third worker's own Prefect API and imports cost more than the
# waits it fills).
WORKERS ?= $(shell nproc)
# Python writes the bytecode of what it imports into the venv (pip compiles nothing up front: most installed
# files are never imported), also where the environment asks it not to.
unexport PYTHONDONTWRITEBYTECODE

.PHONY: setup demo test lint bench clean

setup: $(VENV)/.installed

# Reinstall when the dependency pins change; constraints.txt pins every transitive package.
$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-compile -c constraints.txt -e '.[piper,epub,zh,asr,kokoro,dev]'
	touch $@

demo: setup
	$(BIN)/voxbatch run data/sample/en --out out/demo

lint: setup
	$(BIN)/ruff check flows tasks bench tests docker
	$(BIN)/ruff format --check flows tasks bench tests docker
	$(BIN)/lint-imports --no-logo --no-cache
	$(BIN)/mypy

# First the system tools the tests use (tests/system_tools.py: installed as root with apt-get, else the command to
# run is printed and the tests that need them are skipped, by name; under CI=true they fail).
# The image check (tests/test_container_build.py, minutes of building) starts first, beside the install, where it
# can run (root, buildah, debootstrap); its test then waits for it. The suite runs on every core, whole modules
# to each worker, the longest first (tests/conftest.py orders them; xdist keeps that order); the slowest printed.
test:
	@$(PYTHON) tests/system_tools.py --install
	@docker/buildah-check.sh --background $(CURDIR)/.image-check
	@$(MAKE) --no-print-directory lint
	@# Bytecode of what every test process imports, written once before the workers and their servers start
	@# (else each of them compiles the same files at the same moment).
	$(BIN)/python -c "import prefect.testing.utilities, prefect.server.api.server, flows.cli, flows.corpus, flows.shard_flow, pandas, pyarrow.parquet"
	VOXBATCH_IMAGE_CHECK=$(CURDIR)/.image-check $(BIN)/pytest -m "not gpu" -n $(WORKERS) --dist loadscope --no-loadscope-reorder --durations=15

bench: setup
	$(BIN)/voxbatch bench
	$(BIN)/python tests/benchmarks/bench_synthesis.py
	$(BIN)/python tests/benchmarks/bench_oom.py
	$(BIN)/python tests/benchmarks/bench_storage.py --rounds 1
	$(BIN)/python tests/benchmarks/bench_dispatch.py
	$(BIN)/python tests/benchmarks/bench_plan.py
	$(BIN)/voxbatch voices install zh-baker
	$(BIN)/python tests/benchmarks/bench_zh.py

clean:
	rm -rf $(VENV) out .pytest_cache .ruff_cache .hypothesis .mypy_cache .image-check

# Two commands for a fresh clone: `make demo` (set up, then run the main job) and `make test`.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin

.PHONY: setup demo test lint bench clean

setup: $(VENV)/.installed

# Reinstall when the dependency pins change; constraints.txt pins every transitive package.
$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[piper,epub,zh,asr,dev]'
	touch $@

demo: setup
	$(BIN)/voxbatch run data/sample/en --out out/demo

lint: setup
	$(BIN)/ruff check flows tasks bench tests docker
	$(BIN)/ruff format --check flows tasks bench tests docker
	$(BIN)/lint-imports --no-logo --no-cache
	$(BIN)/mypy

test: lint
	$(BIN)/pytest -m "not gpu" -n auto

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
	rm -rf $(VENV) out .pytest_cache .ruff_cache .hypothesis .mypy_cache

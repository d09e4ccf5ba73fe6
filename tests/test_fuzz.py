"""Hostile inputs, fuzzed with hypothesis: random bytes, mutated real files, deep nesting and huge lines through
planning (decoding, markdown, EPUB, tables) and the settings loader. Only voxbatch's own errors may come out.

The fast version of tests/benchmarks/bench_fuzz.py (which tries 100,000 inputs or more): a few hundred examples
per target, derandomized so CI sees the same inputs every time. The targets and mutators: tests/fuzz_targets.py.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fuzz_targets import (
    CONFIG_SUFFIXES,
    INPUT_SUFFIXES,
    deep_nesting,
    huge_input,
    load_config_bytes,
    mutate,
    mutate_epub,
    plan_bytes,
    random_parquet,
    seeds,
)

# Mutations are driven by a drawn seed (a random.Random of our own): hypothesis shrinks the seed, and the draws do
# not depend on how many random numbers a mutation happens to use.
FAST = settings(
    max_examples=120,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.fixture(scope="module")
def seed_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[bytes]]:
    return seeds(tmp_path_factory.mktemp("seeds"))


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@pytest.mark.parametrize("suffix", INPUT_SUFFIXES)
@FAST
@given(data=st.binary(max_size=4096))
def test_random_bytes_are_planned_or_set_aside(folder: Path, suffix: str, data: bytes) -> None:
    plan_bytes(data, suffix, folder)


@pytest.mark.parametrize("suffix", INPUT_SUFFIXES)
@FAST
@given(seed=st.integers(0, 2**32), pick=st.integers(0, 100))
def test_mutated_real_files_are_planned_or_set_aside(
    seed_files: dict[str, list[bytes]], folder: Path, suffix: str, seed: int, pick: int
) -> None:
    own = seed_files[suffix]
    others = [b for kind in INPUT_SUFFIXES for b in seed_files[kind]]
    plan_bytes(mutate(own[pick % len(own)], random.Random(seed), others), suffix, folder)


@FAST
@given(seed=st.integers(0, 2**32))
def test_epubs_mutated_inside_their_zip_are_read_or_set_aside(
    seed_files: dict[str, list[bytes]], folder: Path, seed: int
) -> None:
    plan_bytes(mutate_epub(seed_files[".epub"][0], random.Random(seed)), ".epub", folder)


@FAST
@given(seed=st.integers(0, 2**32))
def test_parquet_tables_of_random_columns_are_read_or_set_aside(folder: Path, seed: int) -> None:
    plan_bytes(random_parquet(random.Random(seed)), ".parquet", folder)


@pytest.mark.parametrize("suffix", CONFIG_SUFFIXES)
@FAST
@given(seed=st.integers(0, 2**32), data=st.binary(max_size=1024), mutated=st.booleans())
def test_settings_files_load_or_are_refused(
    seed_files: dict[str, list[bytes]], folder: Path, suffix: str, seed: int, data: bytes, mutated: bool
) -> None:
    load_config_bytes(mutate(seed_files[suffix][0], random.Random(seed), []) if mutated else data, suffix, folder)


@pytest.mark.parametrize("suffix", INPUT_SUFFIXES[:-1] + CONFIG_SUFFIXES)
@pytest.mark.parametrize("depth", [100, 5_000, 200_000])
def test_deep_nesting_is_read_or_refused(folder: Path, suffix: str, depth: int) -> None:
    data = deep_nesting(suffix, depth)
    if suffix in CONFIG_SUFFIXES:
        load_config_bytes(data, suffix, folder)
    else:
        plan_bytes(data, suffix, folder)


@pytest.mark.parametrize("suffix", [".txt", ".md", ".jsonl", ".csv"])
def test_huge_lines_are_planned_within_a_second_per_megabyte(folder: Path, suffix: str) -> None:
    plan_bytes(b"warm up.", ".txt", folder)  # imports and the voice: not the input's time
    rng = random.Random(suffix)
    for _ in range(3):
        data = huge_input(suffix, 1 << 20, rng)
        seconds = plan_bytes(data, suffix, folder)
        assert seconds / (len(data) / 1e6) < 1.5, f"{len(data)} bytes took {seconds:.2f} s of CPU"


CORPUS = sorted((Path(__file__).resolve().parent / "fuzz_corpus").iterdir())


@pytest.mark.parametrize("path", CORPUS, ids=[p.name for p in CORPUS])
def test_inputs_that_crashed_once_are_set_aside(folder: Path, path: Path) -> None:
    # Inputs the fuzzing found crashing (tests/fuzz_corpus): each is now a bad input with voxbatch's message.
    plan_bytes(path.read_bytes(), path.suffix, folder)

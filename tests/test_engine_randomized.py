"""The engine against a simulated device that raises real out-of-memory exceptions above a memory limit."""

from __future__ import annotations

import functools
import gc
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from onnxruntime.capi.onnxruntime_pybind11_state import Fail

from tasks.shard import budgets
from tasks.shard.engine import BudgetState, Engine, EngineConfig

ERRORS = [
    lambda m: torch.OutOfMemoryError(f"CUDA out of memory ({m})"),
    lambda m: RuntimeError(f"CUDA error: out of memory ({m})"),
    lambda m: RuntimeError(f"CUDA error: CUBLAS_STATUS_ALLOC_FAILED ({m})"),
    lambda m: Fail(f"[ONNXRuntimeError] : 1 : FAIL : Failed to allocate memory for requested buffer ({m})"),
]


class SimulatedDevice:
    """Fails any batch whose padded cost (items x longest text) exceeds `limit`, like a GPU would."""

    def __init__(self, limit: int, error: int = 0) -> None:
        self.limit = limit
        self.error = error
        self.calls = 0
        self.ooms = 0

    def __call__(self, texts: list[str]) -> list[np.ndarray]:
        self.calls += 1
        padded = len(texts) * max(len(t) for t in texts)
        if padded > self.limit:
            self.ooms += 1
            raise ERRORS[self.error % len(ERRORS)](f"padded {padded} > {self.limit}")
        # The "audio" of a text encodes the text, so results can be checked against their items.
        return [np.frombuffer(t.encode(), dtype=np.uint8).astype(np.float32) for t in texts]


def texts_from(lengths: list[int]) -> list[str]:
    # Clause-separated words, so a text that is too long alone can be split.
    return [(f"w{i}, " * (n // 4 + 1))[:n].strip(" ,") or f"w{i}" for i, n in enumerate(lengths)]


def split_clauses(text: str) -> list[str]:
    parts = [p for p in re.split(r"(?<=,) ", text) if p]
    if len(parts) < 2:
        return [text]
    half = len(parts) // 2
    return [" ".join(parts[:half]), " ".join(parts[half:])]


def make_engine(device: SimulatedDevice, state: BudgetState, **config: int) -> Engine:
    # The young generations after an OOM, as the pipeline collects on a CPU device: the simulated device holds no
    # memory, and a full collection with torch loaded costs about 0.25 s an OOM (most of these tests' time).
    collect = functools.partial(gc.collect, 1)
    return Engine(device, len, state, EngineConfig(**config), split=split_clauses, gap_samples=0, collect=collect)


def check_results(texts: list[str], results: list) -> None:  # type: ignore[type-arg]
    assert sorted(r.index for r in results) == list(range(len(texts)))  # none lost, none twice
    for r in results:
        assert r.error is None, r.error
        heard = r.audio.astype(np.uint8).tobytes().decode()
        assert heard.replace(" ", "") == texts[r.index].replace(" ", "")


@settings(max_examples=40, deadline=None)
@given(
    lengths=st.lists(st.integers(min_value=5, max_value=60), min_size=20, max_size=200),
    limit=st.integers(min_value=100, max_value=1500),
    start=st.integers(min_value=1, max_value=5000),
    error=st.integers(min_value=0, max_value=3),
)
def test_nothing_lost_and_budget_converges_near_the_limit(
    lengths: list[int], limit: int, start: int, error: int
) -> None:
    # Enough work to learn from: about 40 device-fulls of items, whatever the mix of lengths.
    repeat = -(-40 * limit // sum(lengths))
    texts = texts_from(lengths * repeat)
    device = SimulatedDevice(limit, error)
    state = BudgetState(float(start))
    engine = make_engine(device, state, max_batch_size=1000)
    results = list(engine.run(list(enumerate(texts))))
    check_results(texts, results)
    assert engine.stats.ooms == device.ooms
    # Converged: the budget sits within 10% of what the device holds (items are discrete, so from below
    # it can only reach the largest padded cost that fits).
    assert 0.9 * limit <= state.budget <= 1.1 * limit or state.largest_ok >= 0.9 * limit, (state, limit)


@settings(max_examples=8, deadline=None)
@given(lengths=st.lists(st.integers(min_value=20, max_value=150), min_size=1, max_size=6))
def test_chunks_too_large_alone_are_split_and_rejoined(lengths: list[int]) -> None:
    texts = texts_from(lengths)
    device = SimulatedDevice(limit=60)
    engine = make_engine(device, BudgetState(1000.0))
    results = list(engine.run(list(enumerate(texts))))
    check_results(texts, results)
    assert all(r.oom_retries >= 1 for r in results if len(texts[r.index]) > 60)


def test_an_unsplittable_chunk_fails_alone_and_the_rest_goes_on() -> None:
    texts = ["x" * 100, "short one", "another"]
    engine = make_engine(SimulatedDevice(limit=50), BudgetState(1000.0))
    results = {r.index: r for r in engine.run(list(enumerate(texts)))}
    assert results[0].audio is None and "out of memory even alone" in (results[0].error or "")
    assert results[1].audio is not None and results[2].audio is not None


def test_budget_grows_back_after_the_limit_rises() -> None:
    texts = texts_from([40] * 12_000)
    device = SimulatedDevice(limit=800)
    state = BudgetState(100.0)
    engine = make_engine(device, state, max_batch_size=10_000, forget_after=10)
    check_results(texts[:500], list(engine.run(list(enumerate(texts[:500])))))
    assert 720 <= state.budget <= 880
    device.limit = 4000  # e.g. another process freed the GPU
    rest = texts[500:]
    check_results(rest, list(engine.run(list(enumerate(rest)))))
    assert state.largest_ok >= 0.9 * 4000


def test_budget_is_reloaded_from_the_state_file(tmp_path: Path) -> None:
    texts = texts_from([30] * 400)
    key = {"backend": "sim", "model_sha256": "abc", "device": "sim-gpu", "memory": 1, "dtype": "fp32"}
    device = SimulatedDevice(limit=1500)
    state = BudgetState(50.0)
    engine = make_engine(device, state)
    list(engine.run(list(enumerate(texts))))
    budgets.save(tmp_path, key, state)
    learned = budgets.load(tmp_path, key)
    assert learned == state
    assert budgets.load(tmp_path, {**key, "device": "other"}) is None
    second = SimulatedDevice(limit=1500)
    engine2 = make_engine(second, learned)
    list(engine2.run(list(enumerate(texts[:100]))))
    assert second.ooms == 0  # starts at the learned budget: no probing from scratch
    assert engine2.stats.trajectory[0][1] == state.budget


def test_other_errors_isolate_the_bad_chunk() -> None:
    def device(texts: list[str]) -> list[np.ndarray]:
        if any("bad" in t for t in texts):
            raise ValueError("cannot phonemize")
        return [np.zeros(len(t), np.float32) for t in texts]

    engine = Engine(device, len, BudgetState(10_000.0))
    results = {r.index: r for r in engine.run(list(enumerate(["good one", "bad one", "fine too"])))}
    assert results[1].error == "ValueError: cannot phonemize"
    assert results[0].error is None and results[2].error is None
    assert engine.stats.ooms == 0


def test_a_text_the_frontend_cannot_measure_fails_alone() -> None:
    def cost(text: str) -> int:
        if "\u2603" in text:
            raise ValueError("phonemizer: unknown symbol")
        return len(text)

    engine = Engine(lambda texts: [np.zeros(len(t), np.float32) for t in texts], cost, BudgetState(1000.0))
    results = {r.index: r for r in engine.run([(0, "fine"), (1, "snow \u2603 man"), (2, "also fine")])}
    assert results[1].audio is None and "cannot measure the text: ValueError: phonemizer" in (results[1].error or "")
    assert results[0].audio is not None and results[2].audio is not None


def test_a_backend_that_cannot_recover_stops_the_worker() -> None:
    from tasks.errors import DeviceFatal

    def synthesize(texts: list[str]) -> list[np.ndarray]:
        raise RuntimeError("CUDA error: out of memory")

    def release() -> None:
        raise OSError("session could not be created again")

    engine = Engine(synthesize, len, BudgetState(1000.0), release=release)
    with pytest.raises(DeviceFatal, match="could not recover after running out of memory") as err:
        list(engine.run([(0, "one"), (1, "two")]))
    assert isinstance(err.value.__cause__, OSError)


def test_a_read_only_budget_folder_is_a_warning_not_a_lost_shard(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A file where the folder should be: mkdir fails as it does on a read-only home (also when run as root).
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with caplog.at_level("WARNING", logger="voxbatch"):
        assert budgets.save(blocker / "budgets", {"k": 1}, BudgetState(5.0)) is None
    assert "cannot save the learned batch budget" in caplog.text


def test_a_smaller_first_batch_then_full_ones() -> None:
    """first_batch_size: the first call holds that many texts (its audio is the first a user sees), the rest
    are as large as max_batch_size allows; nothing lost."""
    texts = texts_from([30] * 20)
    device = SimulatedDevice(limit=10_000)
    sizes: list[int] = []

    def synthesize(batch: list[str]) -> list[np.ndarray]:
        sizes.append(len(batch))
        return device(batch)

    engine = Engine(synthesize, len, BudgetState(10_000.0), EngineConfig(max_batch_size=8, first_batch_size=2))
    check_results(texts, list(engine.run(list(enumerate(texts)))))
    assert sizes == [2, 8, 8, 2]

"""Inputs made to exhaust time or memory: each is read in linear time, or set aside as a bad input (InputError)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tasks.errors import EXIT_BAD_INPUT, EXIT_CHUNKS_FAILED
from tasks.text.normalize import to_paragraphs
from tests.helpers import SAMPLE_EN, voxbatch

# Lines where a pattern that may scan to the end of the line from every opener goes quadratic.
HOSTILE_MARKDOWN: dict[str, Callable[[int], str]] = {
    "emphasis *": lambda n: "*a " * (n // 3),
    "emphasis _": lambda n: "_a " * (n // 3),
    "code span": lambda n: "`a " * (n // 3),
    "backtick run": lambda n: "`" * n + "a",
    "strikethrough": lambda n: "~~a " * (n // 4),
    "link text": lambda n: "[a" * (n // 2),
    "link target": lambda n: "[a](" * (n // 4),
    "image": lambda n: "![a" * (n // 3),
    "html tag": lambda n: "<a" * (n // 2),
    "heading's closing #s": lambda n: "# a " + "#" * n + "x",
}


def _seconds(text: str) -> float:
    """Seconds to read `text` as markdown: the best of 3 timings, each repeating the call for at least 20 ms (so a
    fast call is not lost in the clock's noise)."""
    best = float("inf")
    for _ in range(3):
        calls, start = 0, time.perf_counter()
        while True:
            to_paragraphs(text, markdown=True)
            calls += 1
            elapsed = time.perf_counter() - start
            if elapsed > 0.02:
                break
        best = min(best, elapsed / calls)
    return best


@pytest.mark.parametrize("make", HOSTILE_MARKDOWN.values(), ids=HOSTILE_MARKDOWN.keys())
def test_markdown_is_read_in_linear_time(make: Callable[[int], str]) -> None:
    # A ratio of two sizes in the same run, not seconds: 4x the input may take at most 8x the time (quadratic: 16x;
    # the old patterns took 1.3 s for 20k characters of "*a ").
    small, large = _seconds(make(6_000)), _seconds(make(24_000))
    assert large < 8 * small, f"4x the input took {large / small:.1f}x the time ({small:.4f} s, {large:.4f} s)"


def test_deeply_nested_json_in_a_table_is_set_aside(tmp_path: Path) -> None:
    nested = tmp_path / "nested.jsonl"
    nested.write_text('{"text": "hello"}\n{"text": "x", "meta": ' + "[" * 100_000 + "]" * 100_000 + "}\n")
    result = voxbatch("plan", str(SAMPLE_EN), str(nested), "--out", str(tmp_path / "out"), "--backend", "tone")
    assert result.returncode == EXIT_CHUNKS_FAILED, result.stderr  # the other file is planned; this one set aside
    assert f"{nested}: line 2: JSON nested too deeply" in result.stderr
    assert "Traceback" not in result.stderr and "RecursionError" not in result.stderr


@pytest.mark.parametrize(
    ("suffix", "content"),
    [
        (".json", '{"text": ' + "[" * 100_000 + "]" * 100_000 + "}"),
        (".toml", "x = " + "[" * 100_000 + "]" * 100_000),
        (".yaml", "text: " + "[" * 100_000 + "]" * 100_000),
    ],
)
def test_a_deeply_nested_settings_file_is_a_config_error(tmp_path: Path, suffix: str, content: str) -> None:
    config = tmp_path / f"settings{suffix}"
    config.write_text(content)
    result = voxbatch("plan", str(SAMPLE_EN), "--out", str(tmp_path / "out"), "--config", str(config))
    assert result.returncode == EXIT_BAD_INPUT, result.stderr
    assert str(config) in result.stderr and "Traceback" not in result.stderr

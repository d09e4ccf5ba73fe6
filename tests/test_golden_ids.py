"""The same inputs and settings give the same run ids and chunk ids as before the restructuring (issue 20).

`tests/golden/ids.json` was written by the code of commit 135ecfc (before the restructuring) with
`python tests/test_golden_ids.py`; a chunk id or run id that moves would make every finished chunk of every
user's output look new, so this test compares every id of each case, in plan order.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
GOLDEN = REPO / "tests" / "golden" / "ids.json"
SAMPLE_EN = "data/sample/en"
SAMPLE_ZH = "data/sample/zh"
CHAPTERS = "tests/golden/chapters.md"
PROMPTS = "tests/golden/prompts.jsonl"

# (inputs relative to the repository, settings): between them every setting that shapes the audio, both
# samples, both languages, mixed-script chunks spoken by two voices, markdown chapters, speech normalization,
# a prompt table with per-row voices, paces and a refused row, and a given run id.
CASES: dict[str, tuple[list[str], dict[str, Any]]] = {
    "sample-en": ([SAMPLE_EN], {}),
    "sample-en-every-audio-setting": (
        [SAMPLE_EN],
        {
            "audio": {
                "sample_rate": 16000,
                "resampler": "resampy",
                "format": "wav",
                "peak_dbfs": -3.0,
                "loudness_lufs": -18.0,
                "trim_silence": False,
            },
            "synthesis": {
                "length_scale": 1.1,
                "noise_scale": 0.5,
                "noise_w": 0.6,
                "pitch_scale": 1.2,
                "energy_scale": 0.9,
            },
            "run": {"shard_size": 3},
        },
    ),
    "sample-en-native-rate": ([SAMPLE_EN], {"audio": {"sample_rate": 22050, "pad_seconds": 0.3, "format": "mp3"}}),
    "two-voices-mixed-scripts": (
        [SAMPLE_ZH, SAMPLE_EN, CHAPTERS],
        {"synthesis": {"voices": {"en": "joe", "zh": "tone:zh"}}, "run": {"shard_size": 4}},
    ),
    "markdown-forced-en": ([CHAPTERS], {"text": {"lang": "en", "normalize": "off", "emoji": "name"}}),
    "prompt-table": (
        [PROMPTS],
        {"text": {"bad_rows": "failed", "max_chars_en": 60}, "synthesis": {"voices": {"zh": "tone:zh"}}},
    ),
    "run-id-given": ([SAMPLE_EN], {"run": {"run_id": "my-run"}}),
}


def plan_ids(inputs: list[str], settings: dict[str, Any]) -> dict[str, Any]:
    """The run id and every chunk id, in plan order, of planning `inputs` with `settings` from the repository
    root (inputs by relative path: a refused row's id follows its error message, which names its file)."""
    from tasks.config import validate_settings
    from tasks.plan.planner import prepare

    here = os.getcwd()
    os.chdir(REPO)
    try:
        plan = prepare(inputs, validate_settings(settings)).plan
    finally:
        os.chdir(here)
    return {"run_id": plan.run_id, "chunk_ids": [c.chunk_id for c in plan.chunks]}


@pytest.mark.parametrize("case", sorted(CASES))
def test_same_ids_as_before(case: str) -> None:
    expected = json.loads(GOLDEN.read_text())[case]
    got = plan_ids(*CASES[case])
    assert got["run_id"] == expected["run_id"]
    assert len(got["chunk_ids"]) == len(expected["chunk_ids"])
    moved = [n for n, (a, b) in enumerate(zip(got["chunk_ids"], expected["chunk_ids"], strict=True)) if a != b]
    assert not moved, f"{case}: chunk ids changed at plan positions {moved[:10]}"


def test_golden_covers_every_case() -> None:
    assert sorted(json.loads(GOLDEN.read_text())) == sorted(CASES)


if __name__ == "__main__":  # writes the golden file: only ever from the code the ids must not move away from
    sys.path.insert(0, str(REPO))
    GOLDEN.write_text(json.dumps({name: plan_ids(*case) for name, case in sorted(CASES.items())}, indent=1) + "\n")
    print(f"wrote {GOLDEN}")

"""What a setting is for besides its value: whether it shapes the audio (and by which rule it enters a chunk's
id), whether a worker may set it for itself, and its command-line flag. Each field of tasks.config carries one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

# How a setting that shapes the audio enters a chunk's parameters (the ids of existing runs depend on these):
#   always           its value
#   when_set         its value, only when it differs from the default (settings added after runs were made)
#   output_rate      the output rate, with "native" resolved to the voice's own rate
#   when_resampling  its value when the output rate differs from the voice's, else null
#   when_trimming    its value when audio.trim_silence is on, else null
AudioRule = Literal["always", "when_set", "output_rate", "when_resampling", "when_trimming"]


@dataclass(frozen=True)
class Role:
    """What a setting is for besides its value (see the module's docstring)."""

    audio: AudioRule | None = None
    worker: bool = False
    flag: str | None = None
    metavar: str | None = None
    choices: tuple[str, ...] | None = None  # for a flag whose values are checked by a validator, not a Literal

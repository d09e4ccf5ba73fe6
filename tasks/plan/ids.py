"""Chunk ids: a digest of what the voice reads, the voice's identity and every setting that shapes the audio.

The same chunk id is the same audio object in every run (tasks.storage.layout), so nothing here may change
what an existing chunk's id is: tests/test_golden_ids.py compares them with the ids of earlier releases.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from json.encoder import encode_basestring_ascii
from typing import Any

from tasks.backends.checksums import digest_of
from tasks.backends.synthesizer import VoiceInfo
from tasks.config import Settings, all_settings


def output_rate(settings: Settings, voice: VoiceInfo) -> int:
    rate = settings.audio.sample_rate
    return voice.sample_rate if rate == "native" else int(rate)


def audio_params(settings: Settings, voice: VoiceInfo, rate: int | None = None) -> dict[str, Any]:
    """Every setting that changes the audio of a chunk (and so its id), besides its text and the voice: those
    whose role is `audio` (tasks.config), each entered by its rule.

    `rate`: the run's output rate (the run's own voice sets it when it is "native")."""
    rate = output_rate(settings, voice) if rate is None else rate
    params: dict[str, Any] = {}
    for s in all_settings():
        value = getattr(getattr(settings, s.section), s.name)
        rule = s.role.audio
        if rule == "always":
            params[s.name] = value
        elif rule == "when_set":
            if value != s.field.get_default(call_default_factory=True):
                params[s.name] = value
        elif rule == "output_rate":
            params[s.name] = rate
        elif rule == "when_resampling":
            params[s.name] = value if rate != voice.sample_rate else None
        elif rule == "when_trimming":
            params[s.name] = value if settings.audio.trim_silence else None
    return params


def chunk_id(text: str, voice: VoiceInfo, params: dict[str, Any]) -> str:
    return digest_of("chunk/v1", text, voice.identity, params)[:32]


_MARK = "\x00text\x00"


def chunk_id_maker(voice: VoiceInfo, params: dict[str, Any]) -> Callable[[str], str]:
    """`chunk_id` for one voice and parameters, fast: the JSON around the text is made once, not per chunk."""
    head, tail = json.dumps(["chunk/v1", _MARK, voice.identity, params], sort_keys=True, default=str).split(
        json.dumps(_MARK), 1
    )
    head_b, tail_b = head.encode(), tail.encode()
    quote, sha256 = encode_basestring_ascii, hashlib.sha256  # what json.dumps does with a str, without its layers

    def make(text: str) -> str:
        return sha256(head_b + quote(text).encode() + tail_b).hexdigest()[:32]

    return make

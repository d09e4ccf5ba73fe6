"""A test-signal backend: a tone whose length follows the text (about 15 characters a second).

It needs no voice files and is deterministic, so unit tests and rehearsals of a deployment can run the
whole pipeline quickly. It is not speech.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tasks.backends.checksums import digest_of
from tasks.backends.synthesizer import SynthOptions, VoiceInfo
from tasks.config import SynthesisSettings

SAMPLE_RATE = 16000
CHARS_PER_SECOND = 15.0


@dataclass
class ToneSynthesizer:
    info: VoiceInfo
    length_scale: float
    supports_batching: bool = True
    lanes: int = 1
    device: str = "cpu"
    sampling: bool = False

    def synthesize(self, texts: Sequence[str], options: SynthOptions | None = None) -> list[np.ndarray]:
        scale = options.length_scale if options and options.length_scale else self.length_scale
        out = []
        for text in texts:
            seconds = max(0.2, len(text) / CHARS_PER_SECOND) * scale
            t = np.arange(int(seconds * SAMPLE_RATE), dtype=np.float32) / SAMPLE_RATE
            freq = 220.0 + (sum(map(ord, text)) % 200)
            out.append((0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32))
        return out

    def cost(self, text: str) -> int:
        return len(text)

    def release(self) -> None:
        pass

    def memory_key(self) -> dict[str, Any]:
        return {"backend": "tone", "device": "cpu", "memory": 0, "dtype": "fp32", "versions": {}}

    def close(self) -> None:
        pass


class ToneBackend:
    name = "tone"

    def resolve(self, settings: SynthesisSettings) -> VoiceInfo:
        return VoiceInfo(
            backend="tone",
            name="tone",
            model_path="",
            model_sha256="",
            sample_rate=SAMPLE_RATE,
            languages=("en", "zh"),
            identity=digest_of("tone", 1),
        )

    def load(self, info: VoiceInfo, settings: SynthesisSettings) -> ToneSynthesizer:
        return ToneSynthesizer(info, settings.length_scale)

"""The backend interface: resolve a voice cheaply (identity, checksums), then load it and synthesize text."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

if TYPE_CHECKING:
    from tasks.config import SynthesisSettings


@dataclass(frozen=True)
class VoiceInfo:
    """What a voice is, known before loading it; `identity` enters every chunk id."""

    backend: str
    name: str
    model_path: str
    model_sha256: str
    sample_rate: int
    languages: tuple[str, ...]
    identity: str  # digest of model + config bytes + backend version that determine the audio
    spec: str = ""  # the voice as the settings name it (bundled name, path or URI): a worker resolves it again
    speakers: tuple[str, ...] = ()  # speaker names (or numbers) of a multi-speaker voice; () for one speaker
    licence: str = ""  # the voice's terms where they matter (shown by doctor, kept in the plan and manifests)


@dataclass(frozen=True)
class SynthOptions:
    """Per-utterance choices a table row can make: pace and speaker. None / "": the voice's settings. `seed`
    fixes the noise of voices that sample (a regenerated chunk's attempt); None: the backend's own."""

    length_scale: float | None = None
    speaker: str = ""
    seed: int | None = None

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> SynthOptions:
        return cls(params.get("length_scale"), params.get("speaker") or "")


Marks = tuple[tuple[int, int], ...]  # (sample, character of the text read) where each piece of it begins, in order
ONE_PIECE: Marks = ((0, 0),)  # what a voice that gives no timings says: the whole text begins at the start


class TimedAudio(np.ndarray):
    """A text's raw audio that knows where each piece of the text (a sentence, a clause) begins in it: `marks`.

    Voices that can tell return these from `synthesize`; the stages that make new audio from it (a split chunk
    rejoined, the parts of a mixed chunk, trimming and resampling) carry the marks over themselves, since any
    numpy operation returns a plain array. `marks_of` reads them from any array (ONE_PIECE where there are none).
    """

    marks: Marks

    @classmethod
    def of(cls, audio: np.ndarray, marks: Marks) -> TimedAudio:
        timed = audio.view(cls)
        timed.marks = marks
        return timed


def marks_of(audio: np.ndarray) -> Marks:
    marks: Marks | None = getattr(audio, "marks", None)
    return marks or ONE_PIECE


def joined_marks(pieces: list[tuple[Marks, int, int]]) -> Marks:
    """The marks of pieces laid end to end: (a piece's marks, the sample where it starts in the whole, the
    character where its text starts in the whole text)."""
    return tuple((sample + s, char + c) for marks, sample, char in pieces for s, c in marks)


def moved_marks(marks: Marks, cut: int, rate_in: int, rate_out: int, length: int) -> Marks:
    """Marks of audio that lost `cut` samples at its start and was resampled from `rate_in` to `rate_out`, where
    it is now `length` samples long: each sample moved and scaled, kept within the audio."""
    scale = rate_out / rate_in
    return tuple((min(length, max(0, round((s - cut) * scale))), c) for s, c in marks)


class Synthesizer(Protocol):
    """A loaded voice. `synthesize` returns one float32 mono array in [-1, 1] per text (a TimedAudio where the
    voice knows where the text's sentences or clauses begin)."""

    info: VoiceInfo
    supports_batching: bool  # padded batches: several texts in one model call
    lanes: int  # texts it synthesizes side by side on separate sessions (Piper on a CPU); 1 for the others
    device: str
    sampling: bool  # the same text can come out differently (noise): worth synthesizing a failed chunk again

    def synthesize(self, texts: Sequence[str], options: SynthOptions | None = None) -> list[np.ndarray]: ...

    def cost(self, text: str) -> int:
        """Size of the text in the model's input units (phonemes, tokens): the engine's batch budget unit."""
        ...

    def release(self) -> None:
        """Give cached device memory back after an out-of-memory error."""
        ...

    def memory_key(self) -> dict[str, Any]:
        """What a learned batch budget depends on: weights, device, memory, dtype, library versions."""
        ...

    def close(self) -> None: ...


class Backend(Protocol):
    name: str

    def resolve(self, settings: SynthesisSettings) -> VoiceInfo: ...

    def load(self, info: VoiceInfo, settings: SynthesisSettings) -> Synthesizer: ...

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


def _moved(marks: Marks, cut: int, scale: float, length: int) -> Marks:
    return tuple((min(length, max(0, round((s - cut) * scale))), c) for s, c in marks)


@dataclass(frozen=True)
class Timing:
    """Where the pieces of a text (sentences or clauses) and, where the voice knows, its words begin in its
    audio: samples and characters of the text read."""

    pieces: Marks = ONE_PIECE
    words: Marks = ()  # () where not known

    def moved(self, cut: int, rate_in: int, rate_out: int, length: int) -> Timing:
        """The timing of this audio after `cut` samples were trimmed from its start and it was resampled from
        `rate_in` to `rate_out`, where it is now `length` samples long: each mark moved, kept within the audio."""
        scale = rate_out / rate_in
        return Timing(_moved(self.pieces, cut, scale, length), _moved(self.words, cut, scale, length))

    @staticmethod
    def joined(parts: list[tuple[Timing, int, int]]) -> Timing:
        """The timing of parts laid end to end: (a part's timing, the sample where it starts in the whole, the
        character where its text starts in the whole text). Words only where every part has them."""
        pieces = tuple((at + s, char + c) for timing, at, char in parts for s, c in timing.pieces)
        words = (
            ()
            if any(not t.words for t, _, _ in parts)
            else tuple((at + s, char + c) for timing, at, char in parts for s, c in timing.words)
        )
        return Timing(pieces, words)


UNTIMED = Timing()  # one piece, no words: what audio says that its voice gave no timing for


class TimedAudio(np.ndarray):
    """A text's raw audio that knows where the pieces of the text (sentences, clauses) and maybe its words begin
    in it: `timing`.

    Voices that can tell return these from `synthesize`; the stages that make new audio from it (a split chunk
    rejoined, the parts of a mixed chunk, trimming and resampling) carry the timing over themselves, since any
    numpy operation returns a plain array. `timing_of` reads it from any array (one piece where there is none).
    """

    timing: Timing

    @classmethod
    def of(cls, audio: np.ndarray, timing: Timing) -> TimedAudio:
        timed = audio.view(cls)
        timed.timing = timing
        return timed


def laid_end_to_end(pieces: Sequence[tuple[np.ndarray, int, int]]) -> TimedAudio:
    """A text's pieces (sentences, clauses) joined into its audio, marked where each begins: (audio, samples of
    silence before it, the character where its text begins) each; the first piece's silence is left out."""
    parts: list[np.ndarray] = []
    marks: list[tuple[int, int]] = []
    at = 0
    for audio, pause, char in pieces:
        if parts:
            parts.append(np.zeros(pause, np.float32))
            at += pause
        marks.append((at, char))
        parts.append(audio)
        at += audio.size
    joined = np.concatenate(parts) if parts else np.zeros(0, np.float32)
    return TimedAudio.of(joined, Timing(tuple(marks) or ONE_PIECE))


def timing_of(audio: np.ndarray) -> Timing:
    timing: Timing | None = getattr(audio, "timing", None)
    return timing or UNTIMED


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

"""The backends voxbatch knows, by name, and the named voices that bring their own backend.

Plain data with no imports: the settings model validates `synthesis.backend` against it and prints the
summaries, while the registry (tasks.backends.registry) imports each backend's module only when it is chosen.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BackendEntry:
    name: str
    target: str  # "module:Class" implementing tasks.backends.synthesizer.Backend
    summary: str


BACKENDS: tuple[BackendEntry, ...] = (
    BackendEntry("piper", "tasks.backends.piper:PiperBackend", "Piper voices on ONNX Runtime"),
    BackendEntry("vits", "tasks.backends.vits:VitsBackend", "VITS checkpoints on PyTorch (transformers VitsModel)"),
    BackendEntry(
        "twostage",
        "tasks.backends.twostage:TwoStageBackend",
        "acoustic model + vocoder voices on ONNX Runtime (zh-baker)",
    ),
    BackendEntry(
        "kokoro",
        "tasks.backends.kokoro:KokoroBackend",
        "Kokoro-82M voices (kokoro-ja's Japanese voices installed; others by file) on ONNX Runtime or PyTorch",
    ),
    BackendEntry("tone", "tasks.backends.tone:ToneBackend", "a test signal whose length follows the text"),
)

# Voices known by name whose backend is not the default one: `--voice zh-baker` needs no `--backend`.
NAMED_VOICES = {
    "zh-baker": "twostage",
    **dict.fromkeys(("jf_alpha", "jf_gongitsune", "jf_nezumi", "jf_tebukuro", "jm_kumo"), "kokoro"),  # kokoro-ja's
}


# Voices bundled with a backend's package. Named beside another run voice (a language's voice in `voices`, a table
# row's `voice`), the name alone brings its backend: {ja = "kokoro:jf_alpha", en = "joe"}. Not for `synthesis.voice`
# itself, whose default (joe) stands for "the backend's default voice" under any backend given.
BUNDLED_VOICES = {"joe": "piper"}


def backend_names() -> list[str]:
    return [e.name for e in BACKENDS]


def backend_summaries() -> str:
    return "; ".join(f"{e.name}: {e.summary}" for e in BACKENDS)


def backend_of(voice: str, backend: str, beside: bool = False) -> str:
    """The backend for a voice: a named voice's own, else the one given. `beside`: the voice is named beside the
    run's own (a language's, a table row's), where a bundled voice's name brings its backend too."""
    if beside and voice in BUNDLED_VOICES:
        return BUNDLED_VOICES[voice]
    first = voice.split(",", 1)[0].split(":", 1)[0]  # a blend of named voices ("jf_alpha:0.6,jf_nezumi:0.4")
    return NAMED_VOICES.get(first, backend)

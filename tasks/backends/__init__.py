"""Synthesizer backends behind one small interface, in a registry by name.

The settings model, the CLI and `doctor` read the names from here; a backend module is imported only when it
is chosen, so its heavy or optional dependencies (torch, piper-tts) load only then.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tasks.backends.base import Backend, Synthesizer, VoiceInfo
from tasks.errors import ConfigError

if TYPE_CHECKING:
    from tasks.config import SynthesisSettings


@dataclass(frozen=True)
class BackendEntry:
    name: str
    target: str  # "module:Class" implementing Backend
    summary: str


_REGISTRY: dict[str, BackendEntry] = {}


def register_backend(name: str, target: str, summary: str) -> None:
    _REGISTRY[name] = BackendEntry(name, target, summary)


def backend_names() -> list[str]:
    return list(_REGISTRY)


def backend_summaries() -> str:
    return "; ".join(f"{e.name}: {e.summary}" for e in _REGISTRY.values())


register_backend("piper", "tasks.backends.piper:PiperBackend", "Piper voices on ONNX Runtime")
register_backend("vits", "tasks.backends.vits:VitsBackend", "VITS checkpoints on PyTorch (transformers VitsModel)")
register_backend(
    "twostage", "tasks.backends.twostage:TwoStageBackend", "acoustic model + vocoder voices on ONNX Runtime (zh-baker)"
)
register_backend("tone", "tasks.backends.tone:ToneBackend", "a test signal whose length follows the text")


# Voices known by name whose backend is not the default one: `--voice zh-baker` needs no `--backend`.
NAMED_VOICES = {"zh-baker": "twostage"}


def backend_of(voice: str, backend: str) -> str:
    """The backend for a voice: a named voice's own, else the one given."""
    return NAMED_VOICES.get(voice, backend)


def get_backend(name: str) -> Backend:
    entry = _REGISTRY.get(name)
    if entry is None:
        raise ConfigError(f"synthesis.backend: unknown backend {name!r} (known: {', '.join(backend_names())})")
    module, cls = entry.target.split(":")
    backend: Backend = getattr(importlib.import_module(module), cls)()
    return backend


# Resolved and loaded voices of this process: a worker hashes a voice once, and keeps the most recently used
# `max_loaded_voices` loaded for all its shards.
_RESOLVED: dict[str, VoiceInfo] = {}
_LOADED: OrderedDict[tuple[str, str], Synthesizer] = OrderedDict()


def voice_settings(base: SynthesisSettings, spec: str) -> SynthesisSettings:
    """Synthesis settings for another voice: `spec` is a voice as `synthesis.voice` takes it, optionally
    prefixed by its backend ("vits:/models/mms-tts-eng"); its checksum comes from its own records."""
    backend, _, rest = spec.partition(":")
    if rest and backend in _REGISTRY:
        return base.model_copy(update={"backend": backend, "voice": rest, "sha256": ""})
    if spec == base.voice:
        return base
    return base.model_copy(update={"backend": backend_of(spec, base.backend), "voice": spec, "sha256": ""})


def resolve_voice(settings: SynthesisSettings) -> VoiceInfo:
    """The voice's identity (checksums verified), cached per settings; `spec` records the voice as given."""
    key = settings.model_dump_json()
    if key not in _RESOLVED:
        info = get_backend(settings.backend).resolve(settings)
        _RESOLVED[key] = dataclasses.replace(info, spec=settings.voice)
    return _RESOLVED[key]


def load_cached(info: VoiceInfo, settings: SynthesisSettings) -> Synthesizer:
    key = (info.identity, settings.model_dump_json())
    if key in _LOADED:
        _LOADED.move_to_end(key)
        return _LOADED[key]
    while len(_LOADED) >= settings.max_loaded_voices:
        _, old = _LOADED.popitem(last=False)  # least recently used: its memory goes before the next one loads
        with contextlib.suppress(Exception):
            old.close()
    _LOADED[key] = get_backend(info.backend).load(info, settings)
    return _LOADED[key]


def evict(synth: Synthesizer) -> None:
    """Forget a loaded voice that is broken (a failed recovery), so the next shard loads it afresh."""
    for key, value in list(_LOADED.items()):
        if value is synth:
            del _LOADED[key]
    with contextlib.suppress(Exception):  # closing a broken voice must not hide why it broke
        synth.close()


__all__ = [
    "NAMED_VOICES",
    "Backend",
    "Synthesizer",
    "VoiceInfo",
    "backend_names",
    "backend_of",
    "evict",
    "get_backend",
    "load_cached",
    "register_backend",
    "resolve_voice",
    "voice_settings",
]

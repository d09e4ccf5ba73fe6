"""Synthesizer backends behind one small interface, looked up by name."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tasks.backends.base import Backend, Synthesizer, VoiceInfo
from tasks.errors import ConfigError

if TYPE_CHECKING:
    from tasks.config import SynthesisSettings

# Loaded voices, one per (voice, settings) in this process: a worker loads a voice once for all its shards.
_LOADED: dict[tuple[str, str], Synthesizer] = {}


def get_backend(name: str) -> Backend:
    # Imported lazily: a backend's heavy or optional dependencies load only when it is chosen.
    if name == "piper":
        from tasks.backends.piper import PiperBackend

        return PiperBackend()
    if name == "vits":
        from tasks.backends.vits import VitsBackend

        return VitsBackend()
    if name == "tone":
        from tasks.backends.tone import ToneBackend

        return ToneBackend()
    raise ConfigError(f"synthesis.backend: unknown backend {name!r} (known: piper, vits, tone)")


def load_cached(info: VoiceInfo, settings: SynthesisSettings) -> Synthesizer:
    key = (info.identity, settings.model_dump_json())
    if key not in _LOADED:
        _LOADED[key] = get_backend(info.backend).load(info, settings)
    return _LOADED[key]


__all__ = ["Backend", "Synthesizer", "VoiceInfo", "get_backend", "load_cached"]

"""Backends by name, and the voices of this process: resolved once (checksums verified), loaded once.

A backend's module is imported only when it is chosen (tasks.backend_catalog names them), so its heavy or
optional dependencies (torch, piper-tts) load only then. A worker hashes a voice once and keeps the most
recently used `synthesis.max_loaded_voices` of them loaded for all its shards.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
from collections import OrderedDict
from typing import TYPE_CHECKING

from tasks.backend_catalog import BACKENDS, backend_names, backend_of
from tasks.backends.synthesizer import Backend, Synthesizer, VoiceInfo
from tasks.errors import ConfigError

if TYPE_CHECKING:
    from tasks.config import SynthesisSettings

_TARGETS = {e.name: e.target for e in BACKENDS}


def get_backend(name: str) -> Backend:
    target = _TARGETS.get(name)
    if target is None:
        raise ConfigError(f"synthesis.backend: unknown backend {name!r} (known: {', '.join(backend_names())})")
    module, cls = target.split(":")
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
    if rest and backend in _TARGETS:
        return base.model_copy(update={"backend": backend, "voice": rest, "sha256": ""})
    if spec == base.voice:
        return base
    return base.model_copy(update={"backend": backend_of(spec, base.backend, beside=True), "voice": spec, "sha256": ""})


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

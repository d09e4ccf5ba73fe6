"""A shard's work items through the engine, voice by voice: each chunk's raw audio as a `Synthesized` value.

Items are grouped by voice and per-row options (pace, speaker), so a batch never mixes them; one engine runs
each group (batches, out-of-memory backoff, tasks.shard.engine) with the budget learned for that voice on this
kind of device. The parts of a chunk of two scripts come back joined (tasks.shard.work_items).
"""

from __future__ import annotations

import dataclasses
import functools
import gc
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tasks.backends.synthesizer import Synthesizer, SynthOptions
from tasks.config import Settings
from tasks.plan.file import Plan, PlannedChunk
from tasks.shard import budgets, faults
from tasks.shard.checker import AttemptFailed, Redo
from tasks.shard.engine import BudgetState, Engine, EngineConfig
from tasks.shard.work_items import ShardWork
from tasks.text.chunking import chunk_paragraph, detect_lang

TEXTS_PER_LANE = 4


@dataclass(frozen=True)
class Synthesized:
    """One chunk's raw audio (None: it could not be made, and `error` says why) and how it was made."""

    audio: np.ndarray | None
    error: str | None
    batch_size: int
    attempts: int
    oom_retries: int
    seconds: float
    device: str
    mixed: bool = False  # spoken by two voices, a part each
    voices: str = ""  # a mixed chunk's voice keys in the order they speak
    redo: Redo | None = None  # make it again with a noise seed; None for a voice that would repeat itself


@dataclass(frozen=True)
class VoiceGroup:
    """Work items one engine runs: one voice, one set of per-row options (None: the voice's settings)."""

    voice: str
    options: SynthOptions | None
    items: list[int]


def voice_groups(chunks: list[PlannedChunk], work: ShardWork, settings: Settings) -> list[VoiceGroup]:
    """The work items (chunks, and the parts of mixed ones) grouped by voice and options, voice by voice, each
    group in plan order."""
    groups: dict[tuple[str, SynthOptions], list[int]] = {}
    for n in work.items:
        options = SynthOptions.from_params(json.loads(chunks[work.chunk_of(n)].params_json))
        groups.setdefault((work.voice(n), options), []).append(n)
    out = []
    for (voice, options), items in sorted(groups.items(), key=lambda g: g[0][0]):  # stable: plan order
        plain = options.length_scale in (None, settings.synthesis.length_scale) and not options.speaker
        out.append(VoiceGroup(voice, None if plain else options, items))
    return out


def split_for_retry(text: str) -> list[str]:
    """How the engine splits a chunk that runs out of memory alone: in halves, at clause boundaries first."""
    if len(text) < 8:
        return [text]
    return [c.text for c in chunk_paragraph(text, detect_lang(text), max(4, (len(text) + 1) // 2))]


def _max_batch_size(synth: Synthesizer, settings: Settings) -> int:
    if synth.supports_batching:
        return settings.synthesis.batch_size
    # Lanes: a call returns when its last text is done, so each lane gets several texts (the engine's queue is
    # sorted by length: they end close together). Measured, 2 lanes on 2 cores, 20 KB: 2 texts each 1.06x the
    # plain loop's steady throughput, 4 each 1.10x, 8 each 1.17x but the first audio 2 s later than with 4.
    return synth.lanes * TEXTS_PER_LANE if synth.lanes > 1 else 1


def engine_for(
    synth: Synthesizer, settings: Settings, options: SynthOptions | None = None
) -> tuple[Engine, Path, dict[str, Any]]:
    """An engine over a loaded voice, starting from the budget learned for it on this kind of device; also where
    that budget is saved and under which key."""
    e = settings.engine
    state_dir = Path(e.state_dir).expanduser() if e.state_dir else budgets.default_dir()
    key = synth.memory_key()
    state = budgets.load(state_dir, key) or BudgetState(float(e.initial_budget))
    config = EngineConfig(
        max_batch_size=_max_batch_size(synth, settings),
        first_batch_size=synth.lanes if synth.lanes > 1 else None,  # a text per lane: the first audio sooner
        grow_after=e.grow_after,
        forget_after=e.forget_after,
        item_oom_tries=e.item_oom_tries,
    )
    engine = Engine(
        synth.synthesize if options is None else functools.partial(synth.synthesize, options=options),
        synth.cost,
        state,
        config,
        release=synth.release,
        split=split_for_retry,
        gap_samples=int(0.12 * synth.info.sample_rate),  # a clause pause where a split chunk is rejoined
        faults=faults.from_env(),
        # A full collection costs about 0.24 s here with torch loaded. On a GPU it is worth it (a reference
        # cycle can pin gigabytes); on the CPU the failed batch's arrays are freed by reference counting once
        # the except block is left, so the young generations suffice.
        collect=gc.collect if synth.device != "cpu" else lambda: gc.collect(1),
    )
    return engine, state_dir, key


def synthesize_group(
    engine: Engine, synth: Synthesizer, group: VoiceGroup, work: ShardWork, plan: Plan, settings: Settings
) -> Iterator[tuple[int, Synthesized]]:
    """(chunk index, its audio) as the engine makes them; a mixed chunk once its last part is made."""
    for part in engine.run([(n, work.text(n)) for n in group.items]):
        joined = work.deliver(part, synth, plan, settings)
        if joined is None:
            continue  # a part of a mixed chunk whose other parts are still to come
        result, own = joined
        i = result.index
        mixed, voices = work.spoken_by(i)
        yield (
            i,
            Synthesized(
                audio=result.audio,
                error=result.error,
                batch_size=result.batch_size,
                attempts=result.attempts,
                oom_retries=result.oom_retries,
                seconds=result.seconds,
                device=own.device,
                mixed=mixed,
                voices=voices,
                redo=None if mixed else _redo(engine, own, group.options, work.text(i)),
            ),
        )


def _redo(engine: Engine, synth: Synthesizer, options: SynthOptions | None, text: str) -> Redo | None:
    """How to synthesize a chunk again with a given noise seed; None for a voice that would repeat itself.

    Through the group's engine, as the first attempt was: an out-of-memory error backs off the same budget and is
    retried (then split), a fatal device error raises DeviceFatal (the worker commits and stops); only what
    fails this one chunk is an AttemptFailed, which the checker counts as one failed attempt."""
    if not synth.sampling:
        return None

    def redo(seed: int) -> np.ndarray:
        seeded = dataclasses.replace(options or SynthOptions(), seed=seed)
        (result,) = engine.run([(0, text)], functools.partial(synth.synthesize, options=seeded))
        if result.audio is None:
            raise AttemptFailed(result.error or "no audio")
        return result.audio

    return redo

"""Flagged chunks: listed for a person to listen to (`voxbatch review`), and accepted as ok (`voxbatch accept`).

A chunk is flagged when it failed only the listening check (qa.asr) after its regenerations: its best attempt is
stored under review/ (tasks.storage.layout.review_key) and its row says `flagged`, with what was heard. Accepting
one copies that audio, create-only, to the chunk's own key under audio/ (the bytes unchanged) and rewrites its
shard's manifest with the row `ok` and `accepted` (what was heard and why it was flagged kept); the shard's
manifest counts as more complete, so a commit never puts the flagged row back, and a rerun synthesizes nothing.
Then the run's consolidated manifest is written again. The review object stays where it is.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import urlparse

import pyarrow as pa
import pyarrow.compute as pc

from tasks.audio import dsp
from tasks.errors import InputError, RunIncomplete
from tasks.results.run_state import RunState, consolidate, load_run_state
from tasks.shard.manifest import commit_manifest, read_manifest, rows_from_table
from tasks.shard.rows import ManifestRow, accepted_row
from tasks.shard.storing import StoredAudio, store_audio
from tasks.storage import ObjectStore
from tasks.storage.layout import audio_key

MIN_PREFIX = 6  # a chunk id may be given by a unique prefix this long or longer


def flagged_rows(state: RunState) -> Iterator[tuple[int, ManifestRow]]:
    """(shard, row) of every flagged row of the committed shards, a shard at a time (counting them as it goes)."""
    for n, table in state.tables():
        for row in _flagged(table, state.run_id):
            yield n, row


def _flagged(table: pa.Table, run_id: str) -> list[ManifestRow]:
    """A shard manifest's flagged rows (only those become Python objects)."""
    flagged = table.filter(pc.equal(table.column("status"), "flagged"))
    return rows_from_table(flagged, run_id) if flagged.num_rows else []


def playable(store: ObjectStore, key: str) -> str:
    """Where a player finds an object: a local file's path, or the URI (s3://…)."""
    uri = store.uri(key)
    return urlparse(uri).path if uri.startswith("file://") else uri


def heard_line(row: ManifestRow) -> str:
    """A flagged chunk's score in a few words: its error rate against what was said."""
    if row.lang in ("zh", "ja") and row.asr_cer is not None:
        return f"CER {row.asr_cer:.2f}"
    return f"WER {row.asr_wer:.2f}" if row.asr_wer is not None else "not scored"


@dataclass(frozen=True)
class Accepted:
    """What `accept` did: the chunk ids accepted, the rows made ok (a chunk id may stand in several), the ids
    given that were accepted before (nothing to do), and the run manifest written again."""

    chunk_ids: tuple[str, ...]
    rows: int
    before: tuple[str, ...] = ()
    run_manifest: str | None = None


@dataclass
class _Found:
    """The run's flagged rows by shard, and the chunk ids accepted earlier (both small: only those rows)."""

    by_shard: dict[int, list[ManifestRow]] = field(default_factory=dict)
    accepted: set[str] = field(default_factory=set)

    @property
    def ids(self) -> set[str]:
        return {r.chunk_id for rows in self.by_shard.values() for r in rows}


def _find(state: RunState) -> _Found:
    found = _Found()
    for _, table in state.tables():
        for row in _flagged(table, state.run_id):
            found.by_shard.setdefault(row.shard, []).append(row)
        accepted = table.filter(pc.and_(pc.equal(table.column("status"), "ok"), table.column("accepted")))
        found.accepted.update(accepted.column("chunk_id").to_pylist())
    return found


def _resolve(given: list[str], flagged: set[str], accepted: set[str], run_id: str) -> tuple[set[str], list[str]]:
    """The flagged chunk ids meant by `given` (whole ids, or unique prefixes), and those accepted before; an
    InputError naming the ids that are neither."""
    chosen: set[str] = set()
    before: list[str] = []
    unknown: list[str] = []
    for g in given:
        g = g.strip().lower()
        if g in flagged:
            chosen.add(g)
            continue
        if g in accepted:
            before.append(g)
            continue
        matches = [i for i in flagged if i.startswith(g)] if len(g) >= MIN_PREFIX else []
        if len(matches) == 1:
            chosen.add(matches[0])
        elif len(g) >= MIN_PREFIX and len(done := [i for i in accepted if i.startswith(g)]) == 1:
            before.append(done[0])
        else:
            unknown.append(g + (" (ambiguous)" if len(matches) > 1 else ""))
    if unknown:
        raise InputError(
            f"run {run_id}: not flagged chunk id(s): {', '.join(unknown)}",
            hint="`voxbatch review OUT` lists the flagged chunks and their ids",
        )
    return chosen, before


def accept(store: ObjectStore, run_id: str, chunk_ids: list[str] | None) -> Accepted:
    """Make flagged rows ok: those of `chunk_ids` (None: every one). The run must be finished."""
    state = load_run_state(store, run_id)
    if not state.complete:
        raise RunIncomplete(
            f"run {run_id} has {len(state.pending)} shard(s) not committed yet: nothing accepted",
            hint="finish the run (the same `voxbatch run` command resumes it), then review and accept",
        )
    found = _find(state)
    flagged = found.ids
    before: list[str] = []
    if chunk_ids is None:
        if not flagged:
            raise InputError(
                f"run {run_id} has no flagged chunk to accept", hint="`voxbatch status OUT` shows its counts"
            )
        chosen = flagged
    else:
        chosen, before = _resolve(chunk_ids, flagged, found.accepted, run_id)
    copies: dict[str, StoredAudio] = {}
    rows = 0
    for shard in sorted(n for n, shard_rows in found.by_shard.items() if any(r.chunk_id in chosen for r in shard_rows)):
        committed = read_manifest(store, run_id, shard) or []
        updated = []
        for r in committed:
            chunk_id = r.chunk_id
            if r.status == "flagged" and chunk_id in chosen:
                if chunk_id not in copies:  # a chunk id in several rows (a repeated sentence) is copied once
                    copies[chunk_id] = _copy(store, r)
                updated.append(accepted_row(r, copies[chunk_id]))
                rows += 1
            else:
                updated.append(r)
        commit_manifest(store, run_id, shard, updated)  # more complete (more ok): it replaces the flagged one
    key = consolidate(store, load_run_state(store, run_id, state.plan)) if chosen else None
    return Accepted(tuple(sorted(chosen)), rows, tuple(before), store.uri(key) if key else None)


def _copy(store: ObjectStore, row: ManifestRow) -> StoredAudio:
    """A flagged row's review audio at the chunk's own key (create-only: an object there is kept, and described)."""
    data = store.get(row.audio_key or "")
    samples, _ = dsp.decode(data)
    return store_audio(store, audio_key(row.chunk_id, row.format), data, samples, row.spoken_text or row.text)

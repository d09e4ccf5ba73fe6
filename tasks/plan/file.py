"""A plan's chunks in a local Parquet file, written and read in row groups, so no process holds a whole plan.

The planner appends rows to a `PlanWriter` (a spool file); a row group holds whole shards, and each row group's
digest goes into the header with the run's totals. `PlanFile` reads one shard's row group at a time and checks
its digest, so a truncated or edited file is refused, never half-used. Where the file lives (a spool of this
process, or a copy of `runs/<run_id>/plan.parquet` from storage) is the caller's business (tasks.plan.store).
"""

from __future__ import annotations

import atexit
import bisect
import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterator
from functools import cached_property
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from tasks.backends.checksums import digest_of
from tasks.backends.synthesizer import VoiceInfo
from tasks.errors import StorageError
from tasks.records import arrow_schema, int32

_META = b"voxbatch.plan"
_GROUP_ROWS = 4096  # about this many chunks per row group (whole shards): a few MB of text at most
# 3: spoken text, table rows; 4: row groups of whole shards, each with its own digest; 5: spoken_text null
# where it equals text (half the text a plan stores), parts_json (mixed scripts); 6: shards of any length (sized by
# estimated audio), listed in the header. Plans of formats 4 and 5 (shards of `shard_size`) read as they are.
FORMAT = 6
_READS = (4, 5, 6)


@dataclasses.dataclass(frozen=True)
class PlannedChunk:
    """One chunk as the plan records it: everything a worker needs to make its audio (columns of plan.parquet)."""

    shard: int = int32()
    doc_id: str = ""
    source: str = ""
    chunk_index: int = int32(0)  # position within its document
    line: int = int32(0)  # 1-based line the chunk starts in
    chapter_index: int = int32(0)  # EPUB/markdown chapter; 0
    chapter_title: str = ""
    chunk_id: str = ""
    text: str = ""  # the chunk as the input has it
    spoken_text: str = ""  # what the voice reads: text normalized for speech (numbers as words, lexicon, emoji)
    lang: str = ""
    voice: str = ""  # key into Plan.voices
    params_json: str = ""  # the settings besides text and voice that shape its audio
    utterance_id: str = ""  # tables: the row's id (its parts share it); "" for documents
    part: int = int32(0)  # tables: part of a row split for length
    speaker: str = ""  # tables: the row's speaker of a multi-speaker voice
    extra_json: str = ""  # tables: the row's other columns, as JSON
    error: str = ""  # a row refused at plan time with text.bad_rows = "failed": the manifest row's error
    parts_json: str = ""  # a chunk of two scripts: [[start, end, voice key], ...] over spoken_text; "" otherwise


_SCHEMA = arrow_schema(PlannedChunk)
PLAN_SCHEMA = _SCHEMA.set(_SCHEMA.get_field_index("spoken_text"), pa.field("spoken_text", pa.string(), nullable=True))
FIELDS = tuple(f.name for f in dataclasses.fields(PlannedChunk))


class PlanRow(NamedTuple):
    """A chunk as the planner hands it to the writer: the plan file's columns in order (a tuple, so a row group's
    rows are transposed into columns cheaply). tests/test_plan_store.py checks the names against PlannedChunk."""

    shard: int  # 0 from the planner: the writer sets it from the chunk's position
    doc_id: str
    source: str
    chunk_index: int
    line: int
    chapter_index: int
    chapter_title: str
    chunk_id: str
    text: str
    spoken_text: str | None  # None: the text itself
    lang: str
    voice: str
    params_json: str
    utterance_id: str
    part: int
    speaker: str
    extra_json: str
    error: str
    parts_json: str


# Columns with few distinct values get dictionary encoding; trying it on the text columns costs a third of writing
_REPEATING = [
    "shard",
    "doc_id",
    "source",
    "chapter_title",
    "lang",
    "voice",
    "params_json",
    "speaker",
    "error",
    "parts_json",
]
# Typical speaking rates, for the dry run's duration estimate only.
CHARS_PER_SECOND = {"en": 15.0, "zh": 4.5, "ja": 5.8}


def estimated_seconds(row: PlanRow) -> float:
    """A chunk's audio as the plan guesses it (typical speaking rate), for sizing shards; refused rows: none."""
    if row.error:
        return 0.0
    return len(row.spoken_text if row.spoken_text is not None else row.text) / CHARS_PER_SECOND.get(row.lang, 15.0)


def shards_per_group(shard_size: int) -> int:
    return max(1, _GROUP_ROWS // max(1, shard_size))


def group_digest(table: pa.Table) -> str:
    """Digest of a row group's values, from the Arrow buffers (the same for the table written and read back)."""
    h = hashlib.sha256()
    for name in table.column_names:
        arr = table.column(name).combine_chunks()
        h.update(name.encode() + b"\0")
        if pa.types.is_string(arr.type):
            if arr.null_count:  # which values are null (none are in plans of format 4: their digests stay)
                h.update(np.asarray(arr.is_null().to_numpy(zero_copy_only=False), dtype=np.uint8).tobytes())
            offsets = np.frombuffer(arr.buffers()[1], dtype=np.int32, count=len(arr) + 1, offset=arr.offset * 4)
            data = arr.buffers()[2]
            h.update((offsets - offsets[0]).astype("<i4").tobytes())
            if data is not None and len(arr):
                h.update(memoryview(data)[int(offsets[0]) : int(offsets[-1])])
        else:
            h.update(np.asarray(arr.to_numpy(zero_copy_only=False), dtype="<i8").tobytes())
    return h.hexdigest()


_SPOOL: Path | None = None


def spool_dir() -> Path:
    """This process's folder for plan files (removed when it exits)."""
    global _SPOOL
    if _SPOOL is None:
        _SPOOL = Path(tempfile.mkdtemp(prefix="voxbatch-plans-"))
        atexit.register(shutil.rmtree, _SPOOL, True)
    return _SPOOL


def spool_file() -> Path:
    """A new empty file in the spool folder. mkstemp's descriptor is closed here: it was dropped before, one file
    descriptor leaked per plan made or read, and a long-lived process ran out of them (found by bench_fuzz)."""
    fd, name = tempfile.mkstemp(dir=spool_dir(), suffix=".parquet")
    os.close(fd)
    return Path(name)


class PlanWriter:
    """Rows in, row groups out: buffers one group's rows and writes each group (as columns) when it fills."""

    def __init__(self, shard_size: int, shard_seconds: float = 0.0) -> None:
        self.shard_size = shard_size  # at most this many chunks per shard
        self.shard_seconds = shard_seconds  # and, where > 0, a shard ends once its estimated audio reaches this
        self.group_rows = shard_size * shards_per_group(shard_size)
        self._shard = -1  # the shard being filled
        self._shard_rows = shard_size  # its chunks (full: the first chunk starts shard 0)
        self._shard_audio = 0.0  # its estimated seconds of audio
        self._row_shards: list[int] = []  # the shard of each buffered row
        self.shard_lengths: list[list[int]] = []  # [[chunks, shards of that length], ...] in order (run lengths)
        self.group_first_shards: list[int] = []  # the first shard of each row group written
        self.path = spool_file()
        self._writer = pq.ParquetWriter(self.path, PLAN_SCHEMA, compression="zstd", use_dictionary=_REPEATING)
        self._rows: list[PlanRow] = []  # the group being filled, as rows (transposed when written)
        self._any_ids = False
        self._chars_by_lang: dict[str, int] = {}
        self._written = 0  # chunks in the row groups written so far
        self.group_digests: list[str] = []
        self._ids = hashlib.sha256(b"[[")  # the run id's digest, fed as the chunk ids go by (see run_id_digest)
        self.by_source: Counter[str] = Counter()
        self.by_lang: Counter[str] = Counter()
        self.by_voice: Counter[str] = Counter()

    @property
    def num_chunks(self) -> int:
        return self._written + len(self._rows)

    def add(self, row: PlanRow) -> None:
        """One chunk; its shard is set here from its position."""
        self.extend([row])

    def extend(self, rows: list[PlanRow]) -> None:
        """Chunks in order, as `add` takes them, each put in a shard: the current one, or a new one once the
        current one is full (`shard_size` chunks, or `shard_seconds` of estimated audio). A row group holds whole
        shards: it is written when a shard starts and the rows buffered have reached `group_rows`."""
        cap = self.shard_seconds
        for row in rows:
            if self._shard_rows >= self.shard_size or (cap > 0 and self._shard_audio >= cap):
                if len(self._rows) >= self.group_rows:
                    self.flush()
                self._shard += 1
                self._count_shard(self._shard_rows)
                self._shard_rows, self._shard_audio = 0, 0.0
            self._rows.append(row)
            self._row_shards.append(self._shard)
            self._shard_rows += 1
            if cap > 0:
                self._shard_audio += estimated_seconds(row)

    def _count_shard(self, closed: int) -> None:
        """The shard before the one starting now had `closed` chunks (shard -1: none)."""
        if self._shard > 0:
            _add_run(self.shard_lengths, closed)

    def layout(self) -> list[list[int]]:
        """Every shard's chunk count, as run lengths (the shard being filled included)."""
        lengths = [list(pair) for pair in self.shard_lengths]
        if self._shard >= 0:
            _add_run(lengths, self._shard_rows)
        return lengths

    def by_count(self) -> bool:
        """Whether the shards are what `shard_size` alone makes (the audio cap never ended one early)."""
        layout = self.layout()
        if layout and layout[-1][0] < self.shard_size and layout[-1][1] == 1:
            layout = layout[:-1]  # the last shard may be short
        return all(length == self.shard_size for length, _ in layout)

    def flush(self) -> None:
        """Write the buffered rows as one row group (and count them into the totals)."""
        if not self._rows:
            return
        self._written += len(self._rows)
        columns = dict(zip(FIELDS, zip(*self._rows, strict=True), strict=True))
        columns["shard"] = tuple(self._row_shards)
        self.group_first_shards.append(self._row_shards[0])
        self._rows, self._row_shards = [], []
        ids = columns["chunk_id"]
        self._ids.update((b", " if self._any_ids else b"") + ('"' + '", "'.join(ids) + '"').encode())
        self._any_ids = True
        self.by_source.update(columns["source"])
        self.by_lang.update(columns["lang"])
        self.by_voice.update(columns["voice"])
        for lang, text in zip(columns["lang"], columns["text"], strict=True):
            self._chars_by_lang[lang] = self._chars_by_lang.get(lang, 0) + len(text)
        arrays = [pa.array(columns[f.name], type=f.type) for f in PLAN_SCHEMA]
        table = pa.Table.from_arrays(arrays, schema=PLAN_SCHEMA)
        self.group_digests.append(group_digest(table))
        self._writer.write_table(table, row_group_size=len(table))

    def run_id_digest(self) -> str:
        """What `digest_of([chunk ids], shard_size)` gives, without holding the ids."""
        h = self._ids.copy()
        if self.by_count():  # the ids of runs planned before shards were sized by audio stay what they were
            h.update(f"], {self.shard_size}]".encode())
        else:
            h.update(f"], {self.shard_size}, {json.dumps(self.layout())}]".encode())
        return h.hexdigest()

    def stats(self) -> dict[str, Any]:
        return {
            "chunks_by_source": dict(self.by_source),
            "chunks_by_lang": dict(self.by_lang),
            "chunks_by_voice": dict(self.by_voice),
            "characters": sum(self._chars_by_lang.values()),
            "estimated_seconds": round(
                sum(n / CHARS_PER_SECOND.get(lang, 15.0) for lang, n in self._chars_by_lang.items()), 1
            ),
        }

    def close(self, header: dict[str, Any]) -> Path:
        """Write the last group and the header (schema metadata); returns the file."""
        self.flush()
        self._writer.add_key_value_metadata({_META.decode(): json.dumps(header, sort_keys=True)})
        self._writer.close()
        return self.path

    def abort(self) -> None:
        self._writer.close()
        self.path.unlink(missing_ok=True)


def _add_run(lengths: list[list[int]], length: int) -> None:
    """One more shard of `length` chunks in a run-length list ([[chunks, shards of that length], ...])."""
    if lengths and lengths[-1][0] == length:
        lengths[-1][1] += 1
    else:
        lengths.append([length, 1])


def _chunk(row: dict[str, Any]) -> PlannedChunk:
    if row["spoken_text"] is None:  # stored as null: the voice reads the text as it is
        row["spoken_text"] = row["text"]
    return PlannedChunk(**row)


class PlanFile:
    """A plan file on local disk: its header, and its chunks by shard, each row group checked on reading."""

    def __init__(self, path: Path, where: str) -> None:
        self.path, self.where = path, where
        try:
            self._file = pq.ParquetFile(path)
            self.header: dict[str, Any] = json.loads((self._file.metadata.metadata or {})[_META])
        except (pa.ArrowInvalid, OSError, KeyError, ValueError) as exc:
            raise StorageError(f"{where}: not a readable voxbatch plan ({type(exc).__name__}: {exc})") from exc
        if self.header.get("format") not in _READS:
            raise StorageError(
                f"{where}: plan format {self.header.get('format')!r}; this voxbatch reads format {FORMAT}",
                hint="plan the run again (the same `voxbatch run` command rewrites it)",
            )
        digests = self.header.get("group_digests", [])
        if self._file.metadata.num_row_groups != len(digests) or self._file.metadata.num_rows != self.header.get(
            "num_chunks"
        ):
            raise StorageError(f"{where}: the plan is incomplete (row groups or rows missing)")
        self._verified: set[int] = set()
        self._last: tuple[int, pa.Table] | None = None
        size = int(self.header["shard_size"])
        layout = self.header.get("shard_lengths")
        if layout is None:  # formats 4 and 5: every shard `shard_size` chunks but the last
            num_chunks = int(self.header["num_chunks"])
            layout = [[size, num_chunks // size]] + ([[num_chunks % size, 1]] if num_chunks % size else [])
            per_group = shards_per_group(size)
            firsts = list(range(0, -(-num_chunks // size), per_group))
        else:
            firsts = self.header["group_first_shards"]
        lengths = np.repeat([n for n, _ in layout], [k for _, k in layout]).astype(np.int64)
        if int(lengths.sum()) != self.header.get("num_chunks") or len(firsts) != len(digests):
            raise StorageError(f"{where}: the plan's shard list does not match its chunks")
        self.shard_starts = np.concatenate([[0], np.cumsum(lengths)])  # shard n: chunks [starts[n], starts[n+1])
        self._group_first_shards = firsts

    def _group(self, index: int) -> pa.Table:
        if self._last is not None and self._last[0] == index:
            return self._last[1]
        try:
            table = self._file.read_row_group(index)
        except (pa.ArrowInvalid, OSError) as exc:
            raise StorageError(f"{self.where}: row group {index} unreadable ({exc})") from exc
        if index not in self._verified:
            if group_digest(table) != self.header["group_digests"][index]:
                raise StorageError(
                    f"{self.where}: the plan's checksum does not match its contents (edited or corrupt, row group "
                    f"{index})",
                    hint="plan the run again (the same `voxbatch run` command rewrites it)",
                )
            self._verified.add(index)
        self._last = (index, table)
        return table

    def verify(self) -> None:
        """Read and check every row group (one at a time)."""
        for index in range(self._file.metadata.num_row_groups):
            self._group(index)

    def shard(self, n: int) -> list[PlannedChunk]:
        table = self._group(bisect.bisect_right(self._group_first_shards, n) - 1)
        rows = table.filter(pc.equal(table.column("shard"), n)).to_pylist()
        if len(rows) != self.shard_len(n):  # the header's shard list is outside the checksum: held to the rows
            raise StorageError(f"{self.where}: shard {n} has {len(rows)} chunks, the header says {self.shard_len(n)}")
        return [_chunk(row) for row in rows]

    def chunks(self) -> Iterator[PlannedChunk]:
        for index in range(self._file.metadata.num_row_groups):
            for row in self._group(index).to_pylist():
                yield _chunk(row)

    @cached_property
    def num_shards(self) -> int:
        return len(self.shard_starts) - 1

    def shard_len(self, n: int) -> int:
        return int(self.shard_starts[n + 1] - self.shard_starts[n]) if 0 <= n < self.num_shards else 0


def plan_checksum(
    voices: dict[str, VoiceInfo], shard_size: int, sample_rate: int, num_chunks: int, group_digests: list[str]
) -> str:
    """Digest of the work a plan describes (voices, sharding, rate, every row group); not of its settings."""
    identities = {k: v.identity for k, v in sorted(voices.items())}
    return digest_of("plan/v2", identities, shard_size, sample_rate, num_chunks, group_digests)


def settings_checksum(settings: dict[str, Any]) -> str:
    """Digest of the settings stored with a plan: kept apart from the plan's checksum (which says what work it
    is: a rerun may run the same work differently), and verified like it, so an edit or corruption is caught."""
    return digest_of("settings/v1", settings)


@dataclasses.dataclass(frozen=True)
class Plan:
    """A run's plan: its header in memory, its chunks in a local plan file read a shard at a time."""

    run_id: str
    voices: dict[str, VoiceInfo]  # voice key -> identity (backend, name, spec, sha256)
    sample_rate: int  # output rate
    shard_size: int
    num_chunks: int
    file: PlanFile = dataclasses.field(compare=False, repr=False)  # equal plans have equal checksums
    settings: dict[str, Any] = dataclasses.field(default_factory=dict)  # the run's settings (a worker starts there)
    checksum: str = ""  # over the work: row groups, voices, shard size, rate (not over the settings)
    inputs: tuple[dict[str, Any], ...] = ()  # per document: source, encoding, chapters, warnings
    rejected: tuple[dict[str, str], ...] = ()  # inputs set aside: source and reason
    stats: dict[str, Any] = dataclasses.field(default_factory=dict)  # chunks by source, language and voice; chars

    @property
    def voice(self) -> VoiceInfo:
        """The run's own voice (`synthesis.voice`): the first of `voices`; rows and languages may add others."""
        return next(iter(self.voices.values()))

    @property
    def num_shards(self) -> int:
        return self.file.num_shards

    def shard(self, n: int) -> list[PlannedChunk]:
        return self.file.shard(n) if 0 <= n < self.num_shards else []

    def shard_len(self, n: int) -> int:
        return self.file.shard_len(n)

    @property
    def chunks(self) -> tuple[PlannedChunk, ...]:
        """Every chunk, in memory: for tests and small plans (workers read `shard(n)`)."""
        return tuple(self.file.chunks())

    def estimated_seconds(self) -> float:
        return float(self.stats.get("estimated_seconds", 0.0))

    def header(self) -> dict[str, Any]:
        return {**self.file.header, "settings": self.settings}


def open_plan(path: Path, where: str, *, verify: bool = True) -> Plan:
    """The plan in a local plan file; its header checked, and with `verify` every row group too."""
    file = PlanFile(path, where)
    h = file.header
    try:
        voices = {
            k: VoiceInfo(**{**v, "languages": tuple(v["languages"]), "speakers": tuple(v.get("speakers", ()))})
            for k, v in h["voices"].items()
        }
        checksum = plan_checksum(voices, h["shard_size"], h["sample_rate"], h["num_chunks"], h["group_digests"])
    except (KeyError, TypeError) as exc:
        raise StorageError(f"{where}: not a readable voxbatch plan (header: {type(exc).__name__}: {exc})") from exc
    if checksum != h.get("checksum"):
        raise StorageError(
            f"{where}: the plan's checksum does not match its contents (edited or corrupt)\n"
            f"  recorded {h.get('checksum')}\n  computed {checksum}",
            hint="plan the run again (the same `voxbatch run` command rewrites it)",
        )
    recorded = h.get("settings_checksum")  # plans written before it was recorded have none
    if recorded is not None and recorded != settings_checksum(h.get("settings", {})):
        raise StorageError(
            f"{where}: the settings stored with the plan do not match their checksum (edited or corrupt)",
            hint="plan the run again (the same `voxbatch run` command rewrites it)",
        )
    if verify:
        file.verify()
    return Plan(
        h["run_id"],
        voices,
        h["sample_rate"],
        h["shard_size"],
        h["num_chunks"],
        file,
        h.get("settings", {}),
        checksum,
        tuple(h.get("inputs", ())),
        tuple(h.get("rejected", ())),
        h.get("stats", {}),
    )


def header_for(
    writer: PlanWriter,
    run_id: str,
    voices: dict[str, VoiceInfo],
    sample_rate: int,
    settings: dict[str, Any],
    inputs: list[dict[str, Any]],
    rejected: list[dict[str, str]],
) -> dict[str, Any]:
    layout = writer.layout()
    return {
        "format": FORMAT,
        "run_id": run_id,
        "shard_size": writer.shard_size,
        "shard_seconds": writer.shard_seconds,
        "shard_lengths": layout,
        "group_first_shards": writer.group_first_shards,
        "num_chunks": writer.num_chunks,
        "num_shards": sum(k for _, k in layout),
        "sample_rate": sample_rate,
        "voices": {k: dataclasses.asdict(v) for k, v in voices.items()},
        "settings": settings,
        "settings_checksum": settings_checksum(settings),
        "checksum": plan_checksum(voices, writer.shard_size, sample_rate, writer.num_chunks, writer.group_digests),
        "group_digests": writer.group_digests,
        "inputs": inputs,
        "rejected": rejected,
        "stats": writer.stats(),
    }

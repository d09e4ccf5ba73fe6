"""Bounded memory: text read in blocks gives the paragraphs of reading it whole; plans in row groups by shard."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tasks.config import validate_settings
from tasks.errors import InputError, StorageError
from tasks.plan import file as plan_file
from tasks.plan.planner import prepare
from tasks.plan.store import parse_plan, read_plan, write_plan
from tasks.storage import open_store
from tasks.text import text_stream
from tasks.text.decoding import decode
from tasks.text.normalize import to_paragraphs

MIXED = (
    "First paragraph, wrapped\r\nover two lines with a NUL\x00 in it.\r\n\r\n"
    "中文的段落，\n换行以后接着写。\n\n"
    "   \n"
    "Third paragraph\u2028with a line separator and a café.\u2029Fourth after a paragraph separator.\n\n"
    + "word " * 400
    + "\n\nLast line without a newline at the end."
)


@pytest.mark.parametrize("encoding", ["utf-8", "utf-16", "gb18030"])
@pytest.mark.parametrize("block", [7, 64, 1 << 20])
def test_blocks_give_the_paragraphs_of_the_whole_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, encoding: str, block: int
) -> None:
    text = MIXED if encoding != "gb18030" else MIXED.replace("café", "cafe")
    path = tmp_path / "in.txt"
    path.write_bytes(text.encode(encoding))
    whole, _ = to_paragraphs(decode(path.read_bytes(), str(path), encoding).text)
    monkeypatch.setattr(text_stream, "BLOCK", block)  # blocks that split characters, CR LF and paragraphs
    scan = text_stream.scan_text(path, str(path), encoding)
    streamed = list(text_stream.text_paragraphs(path, scan))
    assert [(p.text, p.line) for p in streamed] == [(p.text, p.line) for p in whole]
    assert scan.warnings and "line 2" in scan.warnings[0]


def test_a_paragraph_without_blank_lines_is_cut_at_a_line_break(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "lines.txt"
    path.write_text("".join(f"Sentence number {n}.\n" for n in range(200)))
    monkeypatch.setattr(text_stream, "BLOCK", 100)
    monkeypatch.setattr(text_stream, "MAX_PARAGRAPH", 500)
    paragraphs = list(text_stream.text_paragraphs(path, text_stream.scan_text(path, str(path))))
    assert len(paragraphs) > 1 and all(len(p.text) <= 600 for p in paragraphs)
    assert " ".join(p.text for p in paragraphs) == " ".join(f"Sentence number {n}." for n in range(200))
    assert paragraphs[1].line == 1 + paragraphs[0].text.count(".")  # each part starts on its own line


def test_a_bad_byte_late_in_a_file_is_named_by_line_before_any_chunk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "late.txt"
    path.write_bytes(b"fine line.\n" * 50 + b"\xff broken\n")
    monkeypatch.setattr(text_stream, "BLOCK", 64)
    with pytest.raises(InputError, match=r"late\.txt: line 51: not valid utf-8"):
        text_stream.scan_text(path, str(path))


def test_plans_are_row_groups_of_whole_shards_each_checked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tone_settings
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(plan_file, "_GROUP_ROWS", 6)  # 3 shards of 2 chunks per row group
    doc = tmp_path / "book.txt"
    doc.write_text("\n\n".join(f"Paragraph {n} has its own words." for n in range(15)))
    settings = validate_settings({**tone_settings.model_dump(), "run": {"shard_size": 2}})
    plan = prepare([str(doc)], settings).plan
    assert plan.num_chunks == 15 and plan.num_shards == 8
    assert pq.ParquetFile(plan.file.path).metadata.num_row_groups == 3
    store = open_store(str(tmp_path / "out"))
    key = write_plan(store, plan)
    back = parse_plan(store.get(key), key)
    assert [c.text for n in range(8) for c in back.shard(n)] == [c.text for c in plan.chunks]
    assert [len(back.shard(n)) for n in range(8)] == [back.shard_len(n) for n in range(8)] == [2] * 7 + [1]
    assert read_plan(store, plan.run_id).stats["chunks_by_lang"] == {"en": 15}
    data = bytearray(store.get(key))
    data[200:210] = b"\0" * 10  # inside the first row group's pages
    with pytest.raises(StorageError):
        parse_plan(bytes(data), key)


def test_shards_are_sized_by_estimated_audio_as_well_as_by_count(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tone_settings
) -> None:  # type: ignore[no-untyped-def]
    """A long chapter and many one-line prompts: the chapter's shards end at the audio cap, the prompts' at the
    count cap; every chunk is in exactly one shard, in order, and the row groups still hold whole shards."""
    monkeypatch.setattr(plan_file, "_GROUP_ROWS", 8)
    chapter = tmp_path / "a-chapter.txt"  # 40 paragraphs of about 150 characters: about 10 s each at 15 chars/s
    chapter.write_text(
        "\n\n".join(f"Paragraph {n} " + "goes on and on about the sea and the wind. " * 3 for n in range(40))
    )
    prompts = tmp_path / "b-prompts.txt"  # 30 short lines: about 1 s each
    prompts.write_text("\n\n".join(f"Prompt {n}." for n in range(30)))
    settings = validate_settings({**tone_settings.model_dump(), "run": {"shard_size": 12, "shard_audio_minutes": 1}})
    plan = prepare([str(chapter), str(prompts)], settings).plan
    lengths = [plan.shard_len(n) for n in range(plan.num_shards)]
    assert sum(lengths) == plan.num_chunks == 70
    chunks = [c for n in range(plan.num_shards) for c in plan.shard(n)]
    assert [c.chunk_id for c in chunks] == [c.chunk_id for c in plan.chunks]
    assert [len(plan.shard(n)) for n in range(plan.num_shards)] == lengths
    per_shard = [
        sum(plan_file.estimated_seconds(plan_file.PlanRow(**vars(c))) for c in plan.shard(n))
        for n in range(plan.num_shards)
    ]
    chapter_shards = [n for n in range(plan.num_shards) if plan.shard(n)[0].source.endswith("a-chapter.txt")]
    assert len(chapter_shards) >= 6  # 40 × ~10 s in shards of about a minute, not 4 shards of 12
    for n in chapter_shards[:-1]:
        assert 60 <= per_shard[n] < 60 + 12 and lengths[n] < 12  # ended by the audio cap, at most one chunk over
    only_prompts = [n for n in range(plan.num_shards) if all(c.source.endswith("b-prompts.txt") for c in plan.shard(n))]
    assert len(only_prompts) >= 2 and all(lengths[n] == 12 for n in only_prompts[:-1])  # ended by the count cap
    # Planned again with the cap off: shards of 12 and the run id of a plan made before the audio cap existed.
    by_count = validate_settings({**settings.model_dump(), "run": {"shard_size": 12, "shard_audio_minutes": 0}})
    again = prepare([str(chapter), str(prompts)], by_count).plan
    assert [again.shard_len(n) for n in range(again.num_shards)] == [12] * 5 + [10]
    assert again.run_id != plan.run_id
    store = open_store(str(tmp_path / "out"))
    key = write_plan(store, plan)
    back = parse_plan(store.get(key), key)
    assert [back.shard_len(n) for n in range(back.num_shards)] == lengths
    assert [c.chunk_id for n in range(back.num_shards) for c in back.shard(n)] == [c.chunk_id for c in chunks]

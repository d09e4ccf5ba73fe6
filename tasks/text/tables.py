"""Prompt tables for dataset generation: .jsonl, .csv, .tsv and .parquet rows to utterances.

Each row is one utterance: a `text` column (required) and optional `id`, `voice`, `speaker`, `lang` and
`length_scale`; every other column is carried to the manifest as it is (`extra_json`). A row's number is its
1-based data row (the header of a CSV is not counted), which is what errors name together with the column.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from typing import Any

from tasks.config import LANGUAGES
from tasks.errors import InputError
from tasks.text.decoding import decode

KNOWN_COLUMNS = ("text", "id", "voice", "speaker", "lang", "length_scale")
LANGS = LANGUAGES


@dataclass(frozen=True)
class Row:
    """One utterance of a table; `problem` is set (and the row kept) when bad rows become failed rows."""

    number: int
    text: str
    id: str
    voice: str = ""
    speaker: str = ""
    lang: str = ""
    length_scale: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    problem: str = ""


def _records(raw: bytes, suffix: str, source: str, encoding: str) -> tuple[list[dict[str, Any]], str]:
    if suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            return pq.read_table(io.BytesIO(raw)).to_pylist(), "parquet"
        except (pa.ArrowException, OSError, ValueError) as exc:  # ValueError: bytes in a string column not UTF-8
            raise InputError(f"{source}: not a readable Parquet file ({exc})") from exc
    decoded = decode(raw, source, encoding)  # a JSONL or CSV file is text: its encoding is detected too
    text = decoded.text
    if suffix == ".jsonl":
        records = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"{source}: line {number}: not JSON ({exc.msg})") from None
            except RecursionError as exc:  # json's parser recurses per level: a bad input, not a crash
                raise InputError(f"{source}: line {number}: JSON nested too deeply") from exc
            if not isinstance(record, dict):
                raise InputError(f"{source}: line {number}: a JSON object per line is expected")
            records.append(record)
        return records, decoded.encoding
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""), delimiter="\t" if suffix == ".tsv" else ",")
        records = [dict(r) for r in reader]
    except csv.Error as exc:
        raise InputError(f"{source}: not a readable {suffix[1:].upper()} file ({exc})") from None
    for number, record in enumerate(records, start=1):
        if None in record:  # DictReader puts surplus fields under None
            raise InputError(f"{source}: row {number}: more fields than the header has columns")
    return records, decoded.encoding


def _text_of(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return value if isinstance(value, str) else str(value)


def _bad(source: str, number: int, column: str, why: str) -> str:
    return f"{source}: row {number}, column {column!r}: {why}"


def read_rows(
    raw: bytes, suffix: str, source: str, bad_rows: str = "error", encoding: str = "auto"
) -> tuple[list[Row], str]:
    """The table's rows as utterances. A row with no text, a duplicate id or a bad value is an InputError naming
    the file, row and column; with bad_rows="failed" it is kept with its `problem` instead. Also returns the
    encoding the file was read in ("parquet" for Parquet)."""
    records, used = _records(raw, suffix, source, encoding)
    if not records:
        raise InputError(f"{source}: the table has no rows")
    if not any("text" in r for r in records):
        columns = ", ".join(sorted({k for r in records[:10] for k in r}))
        raise InputError(f"{source}: the table has no 'text' column (columns: {columns})")
    rows: list[Row] = []
    seen: dict[str, int] = {}
    for number, record in enumerate(records, start=1):
        problem = ""
        text = _text_of(record.get("text")).strip()
        rid = _text_of(record.get("id")).strip() or f"row-{number}"
        lang = _text_of(record.get("lang")).strip()
        scale_value = record.get("length_scale")
        scale: float | None = None
        if not text:
            problem = _bad(source, number, "text", "no text")
        elif rid in seen:
            problem = _bad(source, number, "id", f"duplicate id {rid!r} (first in row {seen[rid]})")
        elif lang and lang not in LANGS:
            problem = _bad(source, number, "lang", f"unknown language {lang!r} (known: {', '.join(LANGS)})")
        elif _text_of(scale_value).strip():
            try:
                scale = float(scale_value) if isinstance(scale_value, int | float | str) else None
            except (TypeError, ValueError):
                scale = None
            if scale is None or not 0.1 <= scale <= 10.0:
                problem = _bad(source, number, "length_scale", f"{scale_value!r} is not a number from 0.1 to 10")
                scale = None
        if problem and bad_rows != "failed":
            raise InputError(problem, hint='fix the row, or set text.bad_rows = "failed" to record it and go on')
        seen.setdefault(rid, number)
        extra = {k: v for k, v in record.items() if k not in KNOWN_COLUMNS}
        rows.append(
            Row(
                number,
                text,
                rid,
                _text_of(record.get("voice")).strip(),
                _text_of(record.get("speaker")).strip(),
                lang,
                scale,
                extra,
                problem,
            )
        )
    return rows, used

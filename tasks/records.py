"""Dataclasses as Arrow records: a schema from the annotations, int32 fields, Parquet bytes (zstd)."""

from __future__ import annotations

import dataclasses
import io
import types
import typing
from dataclasses import field
from datetime import datetime
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

_PY_TO_ARROW: dict[Any, pa.DataType] = {
    str: pa.string(),
    int: pa.int64(),
    float: pa.float64(),
    bool: pa.bool_(),
    datetime: pa.timestamp("us", tz="UTC"),
}


def int32(default: Any = dataclasses.MISSING) -> Any:
    """A dataclass field stored as Arrow int32."""
    return field(default=default, metadata={"arrow": pa.int32()})


# Timed spans of a text: where each piece of it is heard in an audio clip (seconds) and which characters it is.
SPAN_TYPE = pa.struct(
    [("start_s", pa.float64()), ("end_s", pa.float64()), ("char_start", pa.int32()), ("char_end", pa.int32())]
)


def spans_field() -> Any:
    """A nullable dataclass field stored as an Arrow list of SPAN_TYPE (None: not known)."""
    return field(default=None, metadata={"arrow": pa.list_(SPAN_TYPE)})


def arrow_schema(cls: type) -> pa.Schema:
    """The Arrow schema of a dataclass: field order, types from the annotations (X | None is nullable)."""
    hints = typing.get_type_hints(cls)
    fields = []
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        args = typing.get_args(hint)
        nullable = isinstance(hint, types.UnionType) and type(None) in args
        base = next(a for a in args if a is not type(None)) if nullable else hint
        fields.append(pa.field(f.name, f.metadata.get("arrow") or _PY_TO_ARROW[base], nullable=nullable))
    return pa.schema(fields)


def to_parquet_bytes(table: pa.Table, metadata: dict[str, str] | None = None) -> bytes:
    if metadata:
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), **metadata})
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue()

"""A run's report as one self-contained HTML file: totals, failures by reason, flagged chunks, histograms, the worst
chunks.

Read from storage alone (the plan and the committed manifests), so it works for a run made anywhere, finished
or not. Pictures are inline PNGs (matplotlib, Agg) and the worst chunks' audio inline data URIs: the file can be
mailed or opened from S3 without anything beside it. Flagged chunks (for review) are the exception: their audio
is linked, a path relative to the report for a local output (open it where it lies), the URI otherwise.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import posixpath
import statistics
from datetime import UTC, datetime
from typing import Any

import numpy as np

from tasks.errors import StorageError
from tasks.results.figures import Figures, Measure, distribution, gather
from tasks.results.review import heard_line
from tasks.results.run_state import RunState, load_run_state
from tasks.shard.rows import ManifestRow
from tasks.storage import ObjectMissing, ObjectStore
from tasks.storage.layout import content_type, report_key, summary_key

AUDIO_BYTES = 2_000_000  # a chunk's audio larger than this is linked, not embedded


def _histograms(columns: dict[Measure, np.ndarray]) -> str | None:
    """One PNG (base64) with a histogram per measure that has values; None when nothing was measured."""
    shown = list(columns.items())
    if not shown:
        return None
    import matplotlib

    matplotlib.use("Agg")  # no display: render to memory
    import matplotlib.pyplot as plt

    per_line = 2
    lines = math.ceil(len(shown) / per_line)
    fig, axes = plt.subplots(lines, per_line, figsize=(10, 3.2 * lines), squeeze=False)
    for ax, (m, v) in zip(axes.flat, shown, strict=False):
        ax.hist(v, bins=min(30, max(5, len(v) // 3)), color="#3b6ea8", edgecolor="white")
        ax.set_title(f"{m.title} ({len(v)} chunks)")
        ax.set_xlabel(m.unit or "rate")
        ax.set_ylabel("chunks")
    for ax in list(axes.flat)[len(shown) :]:
        ax.axis("off")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _audio_tag(store: ObjectStore, row: ManifestRow) -> str:
    if row.status != "ok" or not row.audio_key:
        return "<em>no audio (failed chunks are not stored)</em>"
    if (row.audio_bytes or 0) > AUDIO_BYTES:
        return f'<a href="{html.escape(row.audio_uri or "")}">audio</a>'
    try:
        data = store.get(row.audio_key)
    except (ObjectMissing, StorageError):
        return "<em>audio missing from storage</em>"
    kind = content_type(row.audio_key)
    return f'<audio controls preload="none" src="data:{kind};base64,{base64.b64encode(data).decode()}"></audio>'


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return html.escape(str(value))


def _summary_json(store: ObjectStore, run_id: str) -> dict[str, Any]:
    try:
        return dict(json.loads(store.get(summary_key(run_id))))
    except (ObjectMissing, ValueError):
        return {}


def totals(state: RunState, figures: Figures, summary: dict[str, Any]) -> list[tuple[str, str]]:
    stats = state.stats()
    audio = stats.audio_seconds
    by_field = {m.field: v for m, v in figures.columns.items()}
    wer, cer = by_field.get("asr_wer", np.zeros(0)), by_field.get("asr_cer", np.zeros(0))
    out = [
        ("chunks planned", str(state.plan.num_chunks)),
        ("chunks committed", str(figures.rows)),
        ("ok / flagged / failed / skipped", f"{stats.ok} / {stats.flagged} / {stats.failed} / {stats.skipped}"),
        ("shards committed / planned", f"{len(state.committed)} / {state.plan.num_shards}"),
        ("audio", f"{audio / 3600:.3f} h ({audio:.1f} s)"),
        ("regenerated chunks", str(figures.regenerated)),
        ("chunks listened to (ASR)", str(len(wer) or len(cer))),
    ]
    if len(wer):
        out.append(("mean word error rate", f"{statistics.fmean(wer.tolist()):.3f}"))
    if len(cer):
        out.append(("mean character error rate", f"{statistics.fmean(cer.tolist()):.3f}"))
    if summary.get("wall_seconds"):
        out.append(("wall time of the last run command", f"{summary['wall_seconds']:.1f} s"))
        if audio:
            out.append(("audio seconds per wall second", f"{audio / summary['wall_seconds']:.1f}"))
    return out


def render(store: ObjectStore, state: RunState) -> str:
    """The report's HTML."""
    figures = gather(state)  # counts the run's shards for `state` in the same pass
    columns = figures.columns
    summary = _summary_json(store, state.run_id)
    voices = ", ".join(f"{k}: {v.backend}:{v.name}" for k, v in state.plan.voices.items())
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>voxbatch report {html.escape(state.run_id)}</title>",
        "<style>body{font:15px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1100px;padding:0 1em;color:#222}"
        "table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:.3em .6em;"
        "text-align:left;vertical-align:top}th{background:#f0f3f7}.num{text-align:right}"
        ".failed{color:#a01818}img{max-width:100%}audio{width:260px}</style></head><body>",
        f"<h1>voxbatch run <code>{html.escape(state.run_id)}</code></h1>",
        f"<p>Output <code>{html.escape(store.uri(''))}</code>; voices {html.escape(voices)}; "
        f"written {datetime.now(UTC):%Y-%m-%d %H:%M} UTC.</p>",
        "<h2>Totals</h2><table>",
    ]
    for name, value in totals(state, figures, summary):
        parts.append(f"<tr><th>{html.escape(name)}</th><td class='num'>{html.escape(value)}</td></tr>")
    parts.append("</table>")
    if state.pending:
        parts.append(f"<p class='failed'>{len(state.pending)} shard(s) not committed yet: this report is partial.</p>")
    failures = state.failures(examples=1)
    parts.append("<h2>Failures by reason</h2>")
    if failures:
        parts.append("<table><tr><th>reason</th><th>chunks</th><th>example</th></tr>")
        for reason, n, example in failures:
            first = example[0]
            where = f"{first.source}:{first.line}"
            parts.append(
                f"<tr><td>{html.escape(reason)}</td><td class='num'>{n}</td>"
                f"<td>{html.escape(where)}: {html.escape((first.error or '')[:300])}</td></tr>"
            )
        parts.append("</table>")
    else:
        parts.append("<p>No chunk failed.</p>")
    parts += _flagged_section(store, state, figures)
    parts.append("<h2>Distributions</h2><table><tr><th>measure</th>")
    parts += [f"<th>{h}</th>" for h in ("chunks", "min", "median", "p95", "max", "mean")]
    parts.append("</tr>")
    for m, v in columns.items():
        d = distribution(v)
        cells = "".join(f"<td class='num'>{d[k]:.2f}</td>" for k in ("min", "median", "p95", "max", "mean"))
        parts.append(f"<tr><td>{m.title} {html.escape(m.unit)}</td><td class='num'>{len(v)}</td>{cells}</tr>")
    parts.append("</table>")
    picture = _histograms(columns)
    if picture:
        parts.append(f"<img alt='histograms of chunk measures' src='data:image/png;base64,{picture}'>")
    parts.append("<h2>Worst chunks</h2><table><tr><th>where</th><th>status</th><th>text</th>")
    parts.append("<th>heard (ASR)</th><th>WER / CER</th><th>audio</th></tr>")
    for r in figures.worst:
        cls = " class='failed'" if r.status == "failed" else ""
        detail = f"<br><small>{html.escape(r.error or '')}</small>" if r.error else ""
        parts.append(
            f"<tr><td>{html.escape(r.source)}:{r.line}<br><small>{html.escape(r.chunk_id[:12])}</small></td>"
            f"<td{cls}>{html.escape(r.status)}{detail}</td><td>{html.escape(r.text)}</td>"
            f"<td>{_fmt(r.asr_transcript)}</td><td class='num'>{_fmt(r.asr_wer)} / {_fmt(r.asr_cer)}</td>"
            f"<td>{_audio_tag(store, r)}</td></tr>"
        )
    parts.append("</table></body></html>")
    return "".join(parts)


def _flagged_section(store: ObjectStore, state: RunState, figures: Figures) -> list[str]:
    """Flagged chunks with their audio (linked), text and what was heard; nothing when there are none."""
    if not figures.flagged:
        return []
    total = state.stats().flagged
    parts = [
        "<h2>Flagged for review</h2>",
        f"<p>{total} chunk(s) failed only the listening check; their best attempt is kept. Listen, then "
        f"<code>voxbatch accept {html.escape(store.uri(''))} CHUNK_ID…</code> makes those that sound right ok."
        + (
            f" The first {len(figures.flagged)} are shown (<code>voxbatch review</code> lists all).</p>"
            if total > len(figures.flagged)
            else "</p>"
        ),
        "<table><tr><th>where</th><th>text</th><th>heard (ASR)</th><th>score</th><th>audio</th></tr>",
    ]
    here = posixpath.dirname(report_key(state.run_id))
    for r in figures.flagged:
        key = r.audio_key or ""
        local = store.uri(key).startswith("file://")
        src = posixpath.relpath(key, here) if local else store.uri(key)
        parts.append(
            f"<tr><td>{html.escape(r.source)}:{r.line} chunk {r.chunk_index}<br><small>{html.escape(r.chunk_id)}"
            f"</small></td><td>{html.escape(r.spoken_text or r.text)}</td><td>{_fmt(r.asr_transcript)}</td>"
            f"<td class='num'>{html.escape(heard_line(r))}</td><td><audio controls preload='none' "
            f"src='{html.escape(src, quote=True)}'></audio><br><small>{html.escape(src)}</small></td></tr>"
        )
    parts.append("</table>")
    return parts


def write_report(store: ObjectStore, run_id: str) -> str:
    """Render the run's report and store it under runs/<run_id>/report.html; returns its key."""
    state = load_run_state(store, run_id)
    key = report_key(run_id)
    store.put(key, render(store, state).encode(), overwrite=True, content_type=content_type(key))
    return key


def quality_table(figures: Figures) -> list[dict[str, Any]]:
    """Per measure: chunks, min, median, 95th percentile, max, mean (a table artifact in the Prefect UI)."""
    out: list[dict[str, Any]] = []
    for m, v in figures.columns.items():
        rounded = {k: round(x, 3) for k, x in distribution(v).items()}
        out.append({"measure": f"{m.title} {m.unit}".strip(), "chunks": len(v), **rounded})
    out.append({"measure": "regenerated chunks", "chunks": figures.regenerated})
    return out


def worst_table(figures: Figures) -> list[dict[str, Any]]:
    """The worst chunks with their text, transcript and reason (a table artifact in the Prefect UI)."""
    return [
        {
            "where": f"{r.source}:{r.line}",
            "status": r.status,
            "text": r.text[:200],
            "heard": (r.asr_transcript or "")[:200],
            "wer": None if r.asr_wer is None else round(r.asr_wer, 3),
            "cer": None if r.asr_cer is None else round(r.asr_cer, 3),
            "error": (r.error or "")[:300],
        }
        for r in figures.worst
    ]

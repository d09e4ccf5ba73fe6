"""Sentence timings from synthesis: marks carried through joins, trimming and resampling onto the written text,
and a real run whose sentence starts are checked against where an offline Whisper hears each first word."""

from __future__ import annotations

import itertools
import re
import statistics
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tasks.audio import dsp
from tasks.backends.synthesizer import ONE_PIECE, TimedAudio, Timing, timing_of
from tasks.shard.rows import ManifestRow
from tasks.shard.timing import Span, spans_from_marks, spans_of
from tasks.text.chunking import sentence_spans
from tests.helpers import voxbatch

# Held out: written for this test, not for the code (abbreviations, numbers, quotes, a question, a long sentence).
PASSAGE = """\
The ferry left at 6:15 on a grey Tuesday. Nobody on the quay waved, and the gulls did not follow it for long.

Dr. Okafor had packed two notebooks and a tin of biscuits. "Will the weather hold?" she asked the mate. He \
shrugged, pointed at the low clouds to the west, and went back to coiling the ropes without a word.

By noon the island was a dark line on the water, perhaps 12 km away. The engine coughed twice; then it settled \
into a steady beat that made the cups rattle in the galley. She opened the first notebook and began to write.
"""


def test_marks_survive_trimming_resampling_and_joins() -> None:
    timing = Timing(((0, 0), (400, 10), (800, 25)), ((0, 0), (200, 4)))
    audio = TimedAudio.of(np.ones(1000, np.float32), timing)
    assert timing_of(audio) == timing
    assert timing_of(audio[10:]) == Timing()  # any numpy operation drops it: the stages carry it over
    # 100 samples trimmed from the start, 16 kHz to 48 kHz, 2700 samples long: moved, scaled and kept inside
    moved = Timing(((0, 0), (400, 10), (1000, 25)), ((150, 3),)).moved(100, 16000, 48000, 2700)
    assert moved == Timing(((0, 0), (900, 10), (2700, 25)), ((150, 3),))
    joined = Timing.joined([(Timing(((0, 0), (50, 4)), ((0, 0),)), 0, 0), (Timing(ONE_PIECE, ((5, 0),)), 120, 9)])
    assert joined == Timing(((0, 0), (50, 4), (120, 9)), ((0, 0), (125, 9)))
    # Words only where every part has them
    assert Timing.joined([(Timing(words=((0, 0),)), 0, 0), (Timing(), 120, 9)]).words == ()


def test_a_chunk_split_after_running_out_of_memory_keeps_its_marks() -> None:
    """The engine splits a chunk that runs out of memory alone and rejoins its halves with a gap: each half's
    marks move to where the half lies in the whole, in samples and in characters."""
    from tasks.shard.engine import BudgetState, Engine, EngineConfig

    def synthesize(texts: list[str]) -> list[np.ndarray]:
        if any(len(t) > 30 for t in texts):
            raise RuntimeError("CUDA error: out of memory (simulated)")
        # 10 samples a character; a mark at each sentence ("X. ") of the text
        return [
            TimedAudio.of(np.ones(10 * len(t), np.float32), Timing(tuple((10 * a, a) for a, _ in _sentences(t))))
            for t in texts
        ]

    text = "One two. Three four five. Six seven. Eight nine ten."
    engine = Engine(
        synthesize, len, BudgetState(1000.0), EngineConfig(item_oom_tries=1),
        split=lambda t: [t[:25], t[26:]], gap_samples=7, collect=lambda: 0,
    )  # fmt: skip
    (result,) = engine.run([(0, text)])
    assert result.error is None and result.audio is not None
    second = text.index("Six")
    assert timing_of(result.audio).pieces == ((0, 0), (90, 9), (257, second), (257 + 110, text.index("Eight")))


def _sentences(text: str) -> list[tuple[int, int]]:
    return sentence_spans(text, "en")


def test_audio_found_stored_keeps_its_timings_in_its_tag(tmp_path: Path) -> None:
    """A chunk's marks go into its file's comment tag: audio found stored later (a rerun, another shard with the
    same chunk) gets its sentences from there; audio stored without the tag (before timings) gets none."""
    from tasks.shard.rows import reused_row
    from tasks.shard.storing import stored_audio
    from tasks.shard.timing import timing_from_tag, timing_tag
    from tasks.storage import open_store
    from tests.helpers import place, speechlike

    timing = Timing(((0, 0), (16000, 11)), ((0, 0), (8000, 6), (16000, 11), (24000, 18)))
    assert timing_from_tag(timing_tag(timing)) == timing
    assert timing_from_tag(timing_tag(Timing(((0, 0), (5, 3))))) == Timing(((0, 0), (5, 3)))
    assert timing_from_tag("encoded by another program") is None and timing_from_tag("voxbatch-marks 1:x") is None
    store = open_store(str(tmp_path))
    text = "First one. Second one."
    for fmt in ("flac", "wav", "ogg", "mp3"):
        store.put(f"a.{fmt}", dsp.encode(speechlike(2.0), 16000, fmt, comment=timing_tag(timing)))
        row = reused_row(place(text=text, format=fmt), stored_audio(store, f"a.{fmt}", text))
        assert [(s["char_start"], s["start_s"]) for s in row.sentences or []] == [(0, 0.0), (11, 1.0)], fmt
        assert [text[w["char_start"] : w["char_end"]] for w in row.words or []] == text.split(), fmt
    store.put("old.flac", dsp.encode(speechlike(2.0), 16000, "flac"))
    assert reused_row(place(text=text), stored_audio(store, "old.flac", text)).sentences is None


def test_spans_map_spoken_pieces_back_onto_the_written_text() -> None:
    text = 'Dr. Smith left at 6:15. "Why?" he asked.  Then 3 more came.'
    said = 'Doctor Smith left at six fifteen. "Why?" he asked.  Then three more came.'
    marks = ((0, 0), (3000, said.index('"Why')), (5000, said.index("Then")))
    spans = spans_from_marks(marks, 8000, 1000, said, text)
    assert [text[s.char_start : s.char_end] for s in spans] == [
        "Dr. Smith left at 6:15.",
        '"Why?" he asked.',
        "Then 3 more came.",
    ]
    assert [(s.start_s, s.end_s) for s in spans] == [(0.0, 3.0), (3.0, 5.0), (5.0, 8.0)]


def test_a_closing_quote_ends_the_piece_before_and_empty_pieces_join_it() -> None:
    text = "他说：“海是有脾气的。”每天出海之前，他都要看看天。"
    marks = ((0, 0), (100, text.index("“")), (300, text.index("”")), (310, text.index("”") + 1))
    spans = spans_from_marks(marks, 600, 100, text, text)
    assert [text[s.char_start : s.char_end] for s in spans] == [
        "他说：",
        "“海是有脾气的。”",
        "每天出海之前，他都要看看天。",
    ]
    assert [s.start_s for s in spans] == [0.0, 1.0, 3.1]  # the closing quote's own piece (3.0 s) ran on


def test_a_voice_without_timings_gives_one_span() -> None:
    text = "One. Two. Three."
    assert spans_from_marks(ONE_PIECE, 300, 100, text, text) == [Span(0.0, 3.0, 0, len(text))]
    row = ManifestRow(run_id="r", shard=0, text=text, duration_s=2.5)
    assert spans_of(row) == [Span(0.0, 2.5, 0, len(text))]


def test_marks_beyond_the_audio_stay_inside_it() -> None:
    text = "One. Two."
    spans = spans_from_marks(((0, 0), (900, 5)), 300, 100, text, text)
    assert spans[-1].start_s <= spans[-1].end_s == 3.0


def test_piper_marks_a_sentence_where_its_audio_begins() -> None:
    """Each mark of the bundled voice falls where one sentence's audio ends and the next begins: in a pause."""
    from tasks.backends.registry import load_cached, resolve_voice
    from tasks.config import Settings

    synthesis = Settings().synthesis
    synth = load_cached(resolve_voice(synthesis), synthesis)
    text = "The tide came in slowly. Boats rocked at their moorings! Would the storm reach the harbour tonight?"
    (audio,) = synth.synthesize([text])
    marks = timing_of(audio).pieces
    assert [c for _, c in marks] == [a for a, _ in sentence_spans(text, "en")]
    assert len(marks) == 3
    rate = synth.info.sample_rate
    peak = float(np.max(np.abs(audio)))
    for sample, _ in marks[1:]:
        around = audio[max(0, sample - rate // 50) : sample + rate // 50]  # 20 ms either side
        assert float(np.sqrt(np.mean(around**2))) < peak * 0.05, f"mark at {sample / rate:.2f} s is not in a pause"


def test_piper_on_its_batched_path_marks_each_word_where_whisper_hears_it() -> None:
    """The batched path (a GPU's) reads the model's phoneme durations: a start for every written word, checked
    against Whisper's word timestamps."""
    import dataclasses

    from tasks.backends.registry import load_cached, resolve_voice
    from tasks.config import Settings
    from tests.listen import first_word_gaps, timed_words

    synthesis = Settings().synthesis
    loaded = load_cached(resolve_voice(synthesis), synthesis)
    batched = dataclasses.replace(loaded, batched=True, voice=None, _more_voices=[], _phonemes={})  # type: ignore[type-var]
    batched.open()
    text = PASSAGE.split("\n\n")[1].replace("\n", " ").strip()
    (audio,) = batched.synthesize([text])
    timing = timing_of(audio)
    rate = batched.info.sample_rate
    written = [(m.start(), m.end()) for m in re.finditer(r"\S*\w\S*", text)]
    assert [c for _, c in timing.words] == [a for a, _ in written]
    starts = [s for s, _ in timing.words]
    assert starts == sorted(starts) and starts[-1] < audio.size
    clips = [(s / rate, a, b) for s, (a, b) in zip(starts, written, strict=True)]
    off = sorted(abs(g) for g in first_word_gaps(text, clips, timed_words(audio, rate)))
    assert len(off) >= 0.8 * len(written)
    print(f"\nword starts vs Whisper's: median {statistics.median(off):.3f} s, worst {off[-1]:.3f} s, {len(off)} words")
    assert statistics.median(off) <= 0.1


@pytest.mark.slow
def test_a_real_runs_sentences_start_where_whisper_hears_their_first_words(tmp_path: Path) -> None:
    from tests.listen import first_word_gaps, timed_words

    source = tmp_path / "ferry.txt"
    source.write_text(PASSAGE, encoding="utf-8")
    out = tmp_path / "out"
    done = voxbatch("run", str(source), "--out", str(out), timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    (manifest,) = out.glob("runs/*/manifest.parquet")
    rows = [r for r in pq.read_table(manifest).to_pylist() if r["status"] == "ok"]
    assert rows
    gaps: list[float] = []
    word_gaps: list[float] = []
    sentences = 0
    for r in rows:
        spans = r["sentences"]
        assert spans, f"{r['chunk_id']}: no sentence timings"
        starts = [s["start_s"] for s in spans]
        assert starts == sorted(starts) and starts[0] == 0.0
        assert all(s["start_s"] <= s["end_s"] <= r["duration_s"] + 1e-9 for s in spans)
        chars = [(s["char_start"], s["char_end"]) for s in spans]
        assert all(a < b for a, b in chars) and all(b1 <= a2 for (_, b1), (a2, _) in itertools.pairwise(chars))
        # Every written sentence of the chunk starts a span (the bundled voice marks each one)
        assert [a for a, _ in chars] == [a for a, _ in sentence_spans(r["text"], "en")]
        sentences += len(spans)
        # and every written word a word span (the CPU path reads the model's phoneme durations too)
        assert [w["char_start"] for w in r["words"] or []] == [m.start() for m in re.finditer(r"\S*\w\S*", r["text"])]
        samples, rate = dsp.decode((out / r["audio_key"]).read_bytes())
        heard = timed_words(samples, rate)
        clips = [(s["start_s"], s["char_start"], s["char_end"]) for s in spans]
        gaps += first_word_gaps(r["text"], clips, heard)
        word_gaps += first_word_gaps(
            r["text"], [(w["start_s"], w["char_start"], w["char_end"]) for w in r["words"]], heard
        )
    assert sentences >= 8
    assert len(gaps) >= 0.8 * sentences, f"Whisper's words matched only {len(gaps)} of {sentences} sentence starts"
    off = sorted(abs(g) for g in gaps)
    print(f"\nsentence starts vs Whisper's first words: median {statistics.median(off):.3f} s, worst {off[-1]:.3f} s")
    assert statistics.median(off) <= 0.15
    assert off[-1] <= 0.5
    words = sorted(abs(g) for g in word_gaps)
    print(f"word starts vs Whisper's: median {statistics.median(words):.3f} s, worst {words[-1]:.3f} s, {len(words)}")
    assert statistics.median(words) <= 0.1


@settings(max_examples=300, deadline=None)
@given(
    text=st.text(st.sampled_from(list('ab .,!?"”“\n3é中。')), max_size=60),
    edits=st.lists(st.tuples(st.integers(0, 60), st.text(st.sampled_from(list("xy .")), max_size=4)), max_size=4),
    cuts=st.lists(st.tuples(st.integers(0, 80), st.integers(0, 500)), max_size=6),
)
def test_spans_are_ordered_inside_the_text_and_the_audio_whatever_the_marks(
    text: str, edits: list[tuple[int, str]], cuts: list[tuple[int, int]]
) -> None:
    said = text
    for at, insert in edits:  # a spoken text that differs from the written one here and there
        at = min(at, len(said))
        said = said[:at] + insert + said[at + 1 :]
    marks = tuple(sorted({(0, 0), *((s, min(c, len(said))) for c, s in cuts)}))
    spans = spans_from_marks(marks, 400, 100, said, text)
    assert spans
    for span in spans:
        assert 0 <= span.char_start <= span.char_end <= len(text)
        assert 0.0 <= span.start_s <= span.end_s <= 4.0
    for before, after in itertools.pairwise(spans):
        assert before.char_end <= after.char_start and before.start_s <= after.start_s
    if text.strip():  # every written character but whitespace is in a span
        covered = {i for s in spans for i in range(s.char_start, s.char_end)}
        assert {i for i, ch in enumerate(text) if not ch.isspace()} <= covered

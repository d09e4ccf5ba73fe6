"""Checking chunks before they are stored, and making them again when they fail.

Every chunk goes through post-processing and the signal checks (tasks.shard.finish, tasks.shard.qa); with
`qa.asr` it is also transcribed (tasks.audio.asr, in batches) and scored. Transcription runs on a thread of its
own while synthesis goes on (Whisper on one CPU thread gains almost nothing from a second, Piper gains 1.7x:
overlapping them is cheaper than taking turns); one pool of chunks is heard while the next one fills, so memory
stays bounded.

A chunk that fails is synthesized again, up to `qa.regenerate` times, each time with a noise seed derived from
its chunk id and the attempt (so a rerun makes the same attempts), and the best attempt is kept: the first that
passes, else the one with the lowest error, which then fails with its reason. Voices that do not sample (the
same text always gives the same audio) are not asked twice. The verdict is a `Checked` value.
"""

from __future__ import annotations

import hashlib
import statistics
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from tasks.config import Settings
from tasks.errors import ConfigError
from tasks.shard.finish import ChunkAudio, Finished, finish

if TYPE_CHECKING:
    from tasks.audio.asr import Listener

Redo = Callable[[int], np.ndarray]  # synthesize the chunk again with this seed; AttemptFailed if it cannot


class AttemptFailed(Exception):
    """One regeneration could not make this chunk (its text, not the device or storage): one failed attempt.
    Never reaches the user (so not one of voxbatch's errors): the chunk's row says why, if no attempt passes."""


TRANSCRIPT_CHARS = 2000
# Chunks are handed to Whisper in pools of this many batches: sorted by length over a pool, batches pad far less
# (measured: a pool of 40 chunks transcribes in 55% of the time of five pools of 8).
POOL_BATCHES = 6
IN_FLIGHT_POOLS = 2  # chunks being transcribed, in pools, while the next ones fill; then synthesis waits
# Past this WER over all its words a chunk fails even if its errors are on words the model does not know: garbled
# chunks score 0.9-1.0 with tiny.en, the line of names that set this scored 0.41 (qa.max_wer, when higher, wins).
BABBLE_WER = 0.8
# A chunk whose last words were not heard at all, this many and at least this share of its words, was cut short
# (whatever the WER: a truncated line of names scored under qa.max_wer on the words the model knows).
CUT_SHORT_WORDS, CUT_SHORT_SHARE = 3, 0.2
# A chunk far faster than its shard's typical speech (see below) of which Whisper heard under this share of the
# letters was cut short too (Whisper completes a cut sentence with words of its own: "... and there are no"); one far
# slower is heard over the full window, whatever its first transcript.
FAST_PACE, HEARD_SHARE, SLOW_PACE = 1.4, 0.75, 0.6
# Spot checks: an English chunk looks normal when its speech rate is within this share of the typical rate of the
# shard's chunks so far (their median, once there are WARM_UP of them); then only its opening seconds are heard,
# cut at the quietest 20 ms between SPOT_CUT seconds, unless it is shorter than SPOT_MIN_SECONDS.
NORMAL_RATE_BAND = 0.2
WARM_UP = 5
SPOT_CUT = (2.5, 3.5)
SPOT_MIN_SECONDS = 6.0


def attempt_seed(chunk_id: str, attempt: int | str) -> int:
    """The noise seed of a chunk's attempt (1 is the first regeneration), or another draw of 32 bits keyed by the
    chunk id ("asr": whether a spot check goes to a full listen): the same on every rerun."""
    return int.from_bytes(hashlib.sha256(f"{chunk_id}:{attempt}".encode()).digest()[:4], "big")


@dataclass(frozen=True)
class Heard:
    """What Whisper heard, and its error rates against the spoken text."""

    transcript: str
    wer: float | None  # word error rate (English)
    cer: float | None  # character error rate (every language)


@dataclass(frozen=True)
class Checked:
    """A chunk's verdict: the attempt kept (its finished audio, what was heard), how many attempts the checks saw,
    and why it failed (None: its audio is to be stored). `flagged`: it failed only the listening check, so it has
    audio, kept for a person to review (qa.flag) instead of thrown away."""

    finished: Finished | None  # None: synthesis itself failed, there was nothing to check
    heard: Heard | None
    qa_attempts: int
    error: str | None
    flagged: bool = False


Attempt = tuple[Finished, Heard | None, str | None]  # finished audio, what was heard, why it fails (None: passes)
Verdict = tuple[int, Checked]  # (chunk index in its shard, verdict)


@dataclass
class _Pending:
    index: int
    chunk: ChunkAudio
    finished: Finished
    samples: np.ndarray  # the finished audio, to listen to (a spot check: its opening seconds)
    redo: Redo | None
    opening: float | None = None  # a spot check: the share of the chunk's audio in `samples`
    pace: float | None = None  # its speech rate over the shard's typical rate (None: not known yet)


class Checker:
    """Takes chunks as the engine makes them and gives back their verdicts, in batches when listening."""

    def __init__(self, rate_out: int, settings: Settings, garble: Callable[[str], bool] | None = None) -> None:
        self.rate_out = rate_out
        self.settings = settings
        self.qa = settings.qa
        if self.qa.asr:
            from tasks.audio.asr import missing

            problem = missing()
            if problem:
                raise ConfigError(f"qa.asr is on, but {problem}", hint="pip install 'voxbatch[asr]', or drop --asr")
        self._listeners: dict[str, Listener] = {}  # per language, made on first use
        self._queue: list[_Pending] = []
        self._expected = 0  # chunks still to be offered before the next flush (see expect)
        self._in_flight: list[tuple[list[_Pending], Future[list[str]]]] = []
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._garble = garble or (lambda chunk_id: False)
        self.asr_seconds = 0.0
        self.regenerations = 0
        self.heard = 0  # first attempts heard in full
        self.spot_checked = 0  # first attempts that looked normal: their opening seconds heard (and passed)
        self._rates: dict[str, deque[float]] = {}  # recent speech rates (characters a second), per language

    def expect(self, chunks: int) -> None:
        """How many chunks will be offered before the next flush. When fewer are left than a pool holds, each batch
        goes to Whisper as soon as it fills, so the last pool is heard while synthesis goes on instead of after it
        (measured: half of the listening was left to the end of a shard)."""
        self._expected = chunks

    def offer(self, index: int, chunk: ChunkAudio, raw: np.ndarray, redo: Redo | None) -> list[Verdict]:
        """Check one chunk's first attempt; returns the verdicts now ready (this chunk's, a batch's, or none yet)."""
        self._expected = max(0, self._expected - 1)
        if self._garble(chunk.chunk_id):
            raw = _garbled(raw)
        finished = finish(raw, chunk, self.settings.audio, self.qa)
        if finished.samples is None:
            if not (finished.error or "").startswith("qa:"):
                return [(index, Checked(finished, None, 1, finished.error))]  # not a quality problem
            return [(index, self._again(chunk, redo, (finished, None, None)))]
        if not self.qa.asr:
            return [(index, Checked(finished, None, 1, None))]
        pace = self._pace(chunk, finished.samples, record=True)
        spot = self._spot(chunk, finished.samples, pace)
        if spot is None:
            self._queue.append(_Pending(index, chunk, finished, finished.samples, redo, pace=pace))
        else:
            opening = spot.size / finished.samples.size
            self._queue.append(_Pending(index, chunk, finished, spot, redo, opening, pace))
        pool, batch = self.qa.asr_batch_size * POOL_BATCHES, self.qa.asr_batch_size
        if len(self._queue) >= pool or (len(self._queue) + self._expected < pool and len(self._queue) >= batch):
            self._submit()
        return self._collect(keep=pool * IN_FLIGHT_POOLS)

    def _pace(self, chunk: ChunkAudio, samples: np.ndarray, record: bool = False) -> float | None:
        """The chunk's speech rate (characters a second) over the typical rate of its shard's chunks so far (their
        median, once there are WARM_UP of them); `record`: a first attempt, whose rate joins them."""
        rates = self._rates.setdefault(chunk.lang, deque(maxlen=200))
        rate = len(chunk.said) / max(samples.size / self.rate_out, 1e-3)
        typical = statistics.median(rates) if len(rates) >= WARM_UP else None
        if record:
            rates.append(rate)
        return rate / typical if typical else None

    def _spot(self, chunk: ChunkAudio, samples: np.ndarray, pace: float | None) -> np.ndarray | None:
        """The opening seconds to hear of a first attempt that looks normal (English, long enough, its speech rate
        close to the shard's typical rate: a loop or babble runs long, a cut runs short), or None: hear it all.
        Garbled or babbled speech is garbled from its start, so a spot check that fails is followed by a full
        listen, which decides; a share of normal chunks (qa.asr_sample, chosen by chunk id, the same on every
        rerun) is heard in full anyway."""
        seconds = samples.size / self.rate_out
        if self.qa.asr_sample >= 1.0 or pace is None or chunk.lang != "en" or seconds < SPOT_MIN_SECONDS:
            return None  # the multilingual model hears a fixed 30 s window: an opening would cost as much
        if abs(pace - 1.0) > NORMAL_RATE_BAND:
            return None
        if attempt_seed(chunk.chunk_id, "asr") / 2**32 < self.qa.asr_sample:
            return None
        return samples[: _quietest(samples, self.rate_out, *SPOT_CUT)]

    def flush(self) -> list[Verdict]:
        """Listen to everything still queued or in flight: chunks that read back are ready; the others are made
        again first (call it while their voice is loaded)."""
        self._submit()
        return self._collect(keep=0)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def _submit(self) -> None:
        batch, self._queue = self._queue, []
        by_lang: dict[str, list[_Pending]] = {}
        for p in batch:
            by_lang.setdefault(p.chunk.lang, []).append(p)
        if not by_lang:
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="voxbatch-asr")
        for lang, items in by_lang.items():
            audios = [p.samples for p in items]
            self._in_flight.append((items, self._pool.submit(self._transcribe, lang, audios)))

    def _collect(self, keep: int) -> list[Verdict]:
        """Verdicts of the finished batches, in order; waits for the oldest while more than `keep` chunks are in
        flight."""
        out: list[Verdict] = []
        while self._in_flight and (
            sum(len(items) for items, _ in self._in_flight) > keep or self._in_flight[0][1].done()
        ):
            items, transcripts = self._in_flight.pop(0)
            for p, text in zip(items, transcripts.result(), strict=True):
                heard, error = self._score(p.chunk, text, p.opening, p.pace)
                if p.opening is not None and error is None:
                    self.spot_checked += 1
                else:
                    self.heard += 1
                    # The full window decides a failure, and hears a chunk far slower than its shard's speech:
                    # over a fitted window Whisper stops after the first pass of a loop.
                    slow = p.pace is not None and p.pace < SLOW_PACE
                    if (error is not None or slow) and self._listener(p.chunk.lang).fitted:
                        heard, error = self._hear_fully(p.chunk, p.finished, p.pace)
                if error is None:
                    out.append((p.index, Checked(p.finished, heard, 1, None)))
                else:
                    out.append((p.index, self._again(p.chunk, p.redo, (p.finished, heard, error))))
        return sorted(out, key=lambda v: v[0])

    def _again(self, chunk: ChunkAudio, redo: Redo | None, first: Attempt) -> Checked:
        """Regenerate a failed chunk; the first attempt that passes, else the best, with its reason."""
        attempts = [first]
        for attempt in range(1, self.qa.regenerate + 1 if redo is not None else 1):
            if redo is None:
                break
            self.regenerations += 1
            try:
                raw = redo(attempt_seed(chunk.chunk_id, attempt))
            except AttemptFailed as exc:  # only this: device, storage and model errors go to the shard's handling
                reason = f"regeneration: {exc}"[:500]
                attempts.append((Finished(error=reason), None, reason))
                continue
            finished = finish(raw, chunk, self.settings.audio, self.qa)
            if finished.ok and self.qa.asr and finished.samples is not None:
                heard, error = self._hear_fully(chunk, finished, self._pace(chunk, finished.samples))
            else:
                heard, error = None, None
            attempts.append((finished, heard, error))
            if finished.ok and error is None:
                break
        best, heard, error = min(attempts, key=lambda a: _badness(a, chunk.lang))
        if best.ok and error is None:
            return Checked(best, heard, len(attempts), None)
        reason = error or best.error or "failed"
        if redo is None:
            tail = " (not regenerated: the voice makes the same audio every time)"
        else:
            tail = f" (best of {len(attempts)} attempts)"
        reason = (reason if reason.startswith("qa:") else "qa: " + reason) + tail
        # Only the listening check failed it (error is set only by scoring audio that passed the signal checks).
        flagged = self.qa.flag and best.ok and error is not None
        return Checked(best, heard, len(attempts), reason, flagged=flagged)

    def _listener(self, lang: str) -> Listener:
        """Per language ("en", "zh", "ja"), and "en-base": English heard by the multilingual model (a second
        opinion)."""
        from tasks.audio.asr import Listener, asr_device

        key = lang if lang in ("zh", "ja", "en-base") else "en"
        if key not in self._listeners:
            device = asr_device(self.settings.synthesis.device)
            multilingual = key == "en-base"
            language = "en" if multilingual else key
            self._listeners[key] = Listener(language, device, self.qa.asr_batch_size, multilingual=multilingual)
        return self._listeners[key]

    def _transcribe(self, lang: str, audios: list[np.ndarray], full_window: bool = False) -> list[str]:
        listener = self._listener(lang)
        started = time.perf_counter()
        try:
            return listener.transcribe(audios, self.rate_out, full_window=full_window)
        finally:
            with self._lock:
                self.asr_seconds += time.perf_counter() - started

    def _hear_fully(self, chunk: ChunkAudio, finished: Finished, pace: float | None) -> tuple[Heard, str | None]:
        """Transcribe one chunk over Whisper's full window and score it; an English chunk that fails is heard
        again by the larger multilingual model (qa.asr_second_opinion), whose verdict stands when it passes: the
        small model mishears names and rare words that the voice said well."""
        if finished.samples is None:
            raise ValueError(f"chunk {chunk.chunk_id}: no audio to listen to")
        heard, error = self._score(chunk, self._transcribe(chunk.lang, [finished.samples], True)[0], pace=pace)
        if error is None or chunk.lang != "en" or not self._second_opinion():
            return heard, error
        second, second_error = self._score(chunk, self._transcribe("en-base", [finished.samples])[0], pace=pace)
        return (second, None) if second_error is None else (heard, error)

    def _second_opinion(self) -> bool:
        from tasks.audio.asr import has_multilingual

        return self.qa.asr_second_opinion and has_multilingual()

    def _score(
        self, chunk: ChunkAudio, transcript: str, opening: float | None = None, pace: float | None = None
    ) -> tuple[Heard, str | None]:
        """What was heard with its error rates, and the reason it fails (None: it passes). English fails on its
        errors on words the model knows (`wer_known`): a misheard name alone never fails a chunk; but past
        `BABBLE_WER` over all its words it fails whatever they are (a line of names babbled). A spot check
        (`opening`: the share of the audio heard) is scored against the opening of the text that fits it best,
        and its transcript ends in "…"."""
        from tasks.audio.scoring import score, score_opening

        if opening is None:
            s = score(chunk.said, transcript, chunk.lang)
        else:
            s = score_opening(chunk.said, transcript, chunk.lang, opening)
            transcript = transcript.rstrip() + " …"
        heard = Heard(transcript[:TRANSCRIPT_CHARS], s.wer, s.cer)
        if sum(ch.isalnum() for ch in chunk.said) < self.qa.min_chars_for_asr_check or (
            chunk.lang == "en" and len(_words(chunk.said)) < 2
        ):
            return heard, None  # recorded, not judged: a lone word ("Preamble" heard "Pre-gamble") is a guess
        said = f"heard {transcript[:80]!r}"
        if s.excused:
            said += f"; excused as unknown to the model: {', '.join(s.excused[:6])}"
        if chunk.lang == "zh":
            # Judged by syllables (pinyin without tones): Whisper writes what it hears of classical verse with
            # homophones (73% of good Tang and Song poems over CER 0.4; none over 0.4 by syllables).
            if s.ser is not None and s.ser > self.qa.max_cer_zh:
                return heard, (
                    f"qa: asr: syllable error rate {s.ser:.2f} (CER {s.cer:.2f}) > qa.max_cer_zh {self.qa.max_cer_zh}"
                    f" ({said})"
                )
            if s.ser is None and s.cer > self.qa.max_cer_zh:
                return heard, f"qa: asr: CER {s.cer:.2f} > qa.max_cer_zh {self.qa.max_cer_zh} ({said})"
        elif chunk.lang == "ja":
            # Judged by the reading's morae (pyopenjtalk): Whisper's own kanji, kana and digits are no errors.
            limit = self.qa.max_cer_ja
            if s.ser is not None and s.ser > limit:
                why = f"reading error rate {s.ser:.2f} (CER {s.cer:.2f})"
                return heard, f"qa: asr: {why} > qa.max_cer_ja {limit} ({said})"
            if s.ser is None and s.cer > limit:
                return heard, f"qa: asr: CER {s.cer:.2f} > qa.max_cer_ja {limit} ({said})"
        elif s.wer is not None:
            known = s.wer if s.wer_known is None else s.wer_known
            if known > self.qa.max_wer:
                on = " on known words" if s.excused else ""
                return heard, f"qa: asr: WER {known:.2f}{on} > qa.max_wer {self.qa.max_wer} ({said})"
            if s.wer > max(self.qa.max_wer, BABBLE_WER):
                return heard, f"qa: asr: WER {s.wer:.2f} > {max(self.qa.max_wer, BABBLE_WER)} on all words ({said})"
            words = len(_words(chunk.said))
            if opening is None and s.unheard_tail >= max(CUT_SHORT_WORDS, CUT_SHORT_SHARE * words):
                return heard, f"qa: asr: WER {s.wer:.2f}, last {s.unheard_tail} words not heard: cut short? ({said})"
            share = sum(ch.isalnum() for ch in transcript) / max(1, sum(ch.isalnum() for ch in chunk.said))
            if opening is None and pace is not None and pace > FAST_PACE and share < HEARD_SHARE:
                return heard, (
                    f"qa: asr: {pace:.1f}x the shard's typical speech rate and {share:.0%} of its letters heard: "
                    f"cut short? ({said})"
                )
        return heard, None


def _words(text: str) -> list[str]:
    return [w for w in text.split() if any(ch.isalnum() for ch in w)]


def _badness(attempt: Attempt, lang: str) -> tuple[int, float]:
    finished, heard, error = attempt
    if not finished.ok:
        return 2, 0.0
    if error is None:
        return 0, 0.0
    rate = (heard.wer if lang == "en" else heard.cer) if heard is not None else None
    return 1, rate or 0.0


def _garbled(raw: np.ndarray, block: int = 4410) -> np.ndarray:
    """Speech made unintelligible but not quieter or shorter: each 0.2 s block reversed (fault injection)."""
    out = raw.copy()
    for start in range(0, raw.size, block):
        out[start : start + block] = raw[start : start + block][::-1]
    return out


def _quietest(samples: np.ndarray, rate: int, start_s: float, end_s: float) -> int:
    """The sample index of the quietest 20 ms frame between two times: where to cut speech between words."""
    frame = max(1, rate // 50)
    first, last = int(start_s * rate) // frame, min(int(end_s * rate), samples.size) // frame
    if last <= first:
        return min(samples.size, int(end_s * rate))
    frames = samples[first * frame : last * frame].reshape(-1, frame)
    return (first + int(np.argmin((frames.astype(np.float64) ** 2).mean(axis=1)))) * frame + frame // 2

"""Each voice's speed on this machine's CPU, by the backends' own synthesizers: Piper (joe, English) beside Kokoro
(kokoro-ja's jf_alpha, Japanese), each on one ONNX Runtime session using every thread and on lanes (sessions side
by side, each with its share of the threads), x real time (audio seconds per wall second), rounds alternating.

Per KB asked: a KB of English from the benchmark's sentences (about 70 s of speech) and one paragraph of Japanese
(170 characters, about 30 s: Kokoro is the slower voice), cut into chunks of about the size the planner makes (300
characters English, 120 Japanese).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

from bench.end_to_end import text_of_size
from tasks.text.chunking import sentence_spans

JAPANESE = (
    "朝の駅はいつもより静かだった。改札を抜けると、冷たい風が頬に当たり、私は思わず襟を立てた。"
    "ホームの端では、年配の男性が新聞を広げ、学生たちが小さな声で試験の話をしている。"
    "電車は五分ほど遅れて到着し、車内は暖かく、窓の外には薄い雲の向こうに山の稜線が見えた。"
    "私は鞄から本を取り出したが、数ページ読んだところで、景色の方に気を取られてしまった。"
)
CHUNK_CHARS = {"en": 300, "ja": 120}


def chunks(text: str, lang: str) -> list[str]:
    """Sentences packed into chunks of at most CHUNK_CHARS[lang] characters (a longer sentence alone)."""
    out: list[str] = []
    for a, b in sentence_spans(text, lang):
        sentence = text[a:b]
        if out and len(out[-1]) + len(sentence) + 1 <= CHUNK_CHARS[lang]:
            out[-1] += (" " if lang == "en" else "") + sentence
        else:
            out.append(sentence)
    return out


def _synth(backend: str, voice: str, lanes: int) -> Any:
    from tasks.backends.registry import get_backend
    from tasks.config import validate_settings

    settings = validate_settings({"synthesis": {"backend": backend, "voice": voice, "lanes": lanes}}).synthesis
    chosen = get_backend(backend)
    return chosen.load(chosen.resolve(settings), settings)


def _speed(synth: Any, texts: list[str]) -> float:
    start = time.perf_counter()
    audio = synth.synthesize(texts)
    wall = time.perf_counter() - start
    seconds: float = sum(a.size for a in audio) / synth.info.sample_rate
    return seconds / wall


def voice_speeds(kb: int = 2, rounds: int = 2, printer: Callable[[str], None] = print) -> dict[str, float]:
    """x real time per (voice, lanes) row; printed as a table."""
    texts = {"en": chunks(text_of_size(kb, numbered=False), "en")}
    texts["ja"] = chunks(JAPANESE * kb, "ja")
    cases = [("piper", "joe", "en"), ("kokoro", "jf_alpha", "ja")]
    synths = {(b, lanes): _synth(b, v, lanes) for b, v, _ in cases for lanes in (1, 0)}
    for (backend, _), synth in synths.items():  # first calls pay for allocation: not measured
        synth.synthesize(texts["en" if backend == "piper" else "ja"][:1])
    speeds: dict[tuple[str, int], list[float]] = {key: [] for key in synths}
    for _ in range(rounds):
        for (backend, lanes), synth in synths.items():
            speeds[(backend, lanes)].append(_speed(synth, texts["en" if backend == "piper" else "ja"]))
    printer(f"{'voice (CPU, ONNX Runtime)':34s} {'sessions':>8s} {'x real time':>12s} {'vs one session':>15s}")
    out: dict[str, float] = {}
    for backend, voice, lang in cases:
        one = statistics.median(speeds[(backend, 1)])
        for lanes in (1, 0):
            synth = synths[(backend, lanes)]
            speed = statistics.median(speeds[(backend, lanes)])
            label = f"{backend} {voice} ({lang}, {len(texts[lang])} chunks)"
            printer(f"{label:34s} {synth.lanes:8d} {speed:12.1f} {speed / one:14.2f}x")
            out[f"{backend} lanes={synth.lanes}"] = speed
    for synth in synths.values():
        synth.close()
    return out

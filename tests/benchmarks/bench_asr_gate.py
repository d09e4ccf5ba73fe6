"""Benchmark: the listening check's false failures on good chunks and its catches on broken ones (issue 23).

Run: .venv/bin/python tests/benchmarks/bench_asr_gate.py OUT [--broken 40] [--sample 0.1] [--verify]
OUT is a finished run (its manifest and audio, local; English and Chinese): its ok chunks are the candidates.

- `--verify`: a candidate is good only when the larger model (the multilingual Whisper base, beam 5, full window)
  hears it read correctly: English WER on known words, Chinese syllable error rate (pinyin without tones: a
  homophone is the listener's error, not the voice's) at most --verify-max. The others are listed, not counted.
- The good chunks go through the check a run uses (tasks.shard.checker.Checker: fitted batches, spot checks, the
  full window, the second opinion; no regeneration), then the first BROKEN good chunks of each language again,
  broken four ways: garbled (each 0.2 s reversed), looped (the chunk twice over), truncated (cut at half), silent.
  A good chunk that fails is a false failure; a broken one that passes is a miss.
- Thresholds: each chunk's first verdict (tiny.en over the full window for English, base for Chinese) and the
  second opinion's, scored against qa.max_wer / qa.max_cer_zh candidates: the false-failure and catch rates each
  would give, to choose them from.

Transcripts are cached in OUT/bench_asr_gate.json (per model and chunk), so a rerun after a scoring change is quick.
"""

from __future__ import annotations

import argparse
import glob
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf

from tasks.audio.asr import Listener
from tasks.audio.scoring import Score, score
from tasks.config import validate_settings
from tasks.shard.checker import BABBLE_WER, Checker, _garbled
from tasks.shard.finish import ChunkAudio

BROKEN: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "garbled": lambda a: _garbled(a),
    "looped": lambda a: np.concatenate([a, a]),
    "truncated": lambda a: a[: a.size // 2],
    "silent": lambda a: np.zeros_like(a),
}
THRESHOLDS = (0.2, 0.3, 0.4, 0.5, 0.6)


class Item:
    def __init__(self, kind: str, chunk_id: str, lang: str, said: str, audio: np.ndarray, rate: int) -> None:
        self.kind, self.chunk_id, self.lang, self.said, self.audio, self.rate = kind, chunk_id, lang, said, audio, rate


class Transcripts:
    """Transcripts per (model, chunk id), cached in a JSON file beside the run."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.known: dict[str, str] = json.loads(path.read_text()) if path.is_file() else {}
        self._listeners: dict[str, Listener] = {}

    def get(self, model: str, items: list[Item]) -> list[str]:
        todo = [i for i in items if f"{model}:{i.chunk_id}" not in self.known]
        if todo:
            listener = self._listeners.get(model)
            if listener is None:
                lang = "zh" if model == "base-zh" else "en"
                listener = self._listeners[model] = Listener(lang, multilingual=model != "tiny")
            for n, item in enumerate(todo):
                self.known[f"{model}:{item.chunk_id}"] = listener.transcribe([item.audio], item.rate, True)[0]
                if n % 20 == 19:
                    self.path.write_text(json.dumps(self.known, ensure_ascii=False))
            self.path.write_text(json.dumps(self.known, ensure_ascii=False))
        return [self.known[f"{model}:{i.chunk_id}"] for i in items]


def error_rate(item: Item, transcript: str, syllables: bool = False) -> float:
    """The rate the gate judges by: English WER on known words (all words past BABBLE_WER), Chinese CER or, with
    `syllables`, the syllable error rate."""
    s: Score = score(item.said, transcript, item.lang)
    if item.lang == "zh":
        return s.ser if syllables and s.ser is not None else s.cer
    known = s.wer if s.wer_known is None else s.wer_known
    return 1.0 if (s.wer or 0.0) > BABBLE_WER else known


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--broken", type=int, default=40, help="good chunks of each language to break each way")
    parser.add_argument("--sample", type=float, default=0.1, help="qa.asr_sample")
    parser.add_argument("--verify", action="store_true", help="good only when the multilingual base hears it right")
    parser.add_argument("--verify-max", type=float, default=0.25)
    parser.add_argument("--no-gate", action="store_true", help="thresholds only, not the run's check")
    parser.add_argument("--lang", choices=("en", "zh"), help="one language only (default: both)")
    parser.add_argument("--max-wer", type=float, help="qa.max_wer for the run's check (default: the setting's)")
    parser.add_argument("--max-cer-zh", type=float, help="qa.max_cer_zh for the run's check")
    args = parser.parse_args()
    rows = pd.read_parquet(glob.glob(str(args.out / "runs/*/manifest.parquet"))[0])
    rows = rows[rows.status == "ok"].drop_duplicates("chunk_id")
    if args.lang:
        rows = rows[rows.lang == args.lang]
    cache = Transcripts(args.out / "bench_asr_gate.json")
    good: list[Item] = []
    for r in rows.itertuples():
        audio, rate = sf.read(args.out / str(r.audio_key), dtype="float32")
        good.append(Item("good", str(r.chunk_id), str(r.lang), str(r.spoken_text or r.text), audio, rate))
    if args.verify:
        verified: list[Item] = []
        for lang in ("en", "zh"):
            items = [i for i in good if i.lang == lang]
            for item, heard in zip(items, cache.get(f"base-{lang}", items), strict=True):
                rate = error_rate(item, heard, syllables=True)
                if rate <= args.verify_max:
                    verified.append(item)
                else:
                    print(f"not verified ({lang}, {rate:.2f}): {item.said[:70]!r} heard {heard[:70]!r}")
        print(f"verified by the multilingual base: {len(verified)} of {len(good)}")
        good = verified
    items = list(good)
    for kind, broken in BROKEN.items():
        for lang in ("en", "zh"):
            picked = [i for i in good if i.lang == lang][: args.broken]
            items += [Item(kind, f"{kind}-{i.chunk_id}", i.lang, i.said, broken(i.audio), i.rate) for i in picked]
    thresholds(items, cache)
    if not args.no_gate:
        qa = {"max_wer": args.max_wer, "max_cer_zh": args.max_cer_zh}
        gate(items, {"asr_sample": args.sample, **{k: v for k, v in qa.items() if v is not None}})


def thresholds(items: list[Item], cache: Transcripts) -> None:
    """False-failure and catch rates per threshold, for the first listener alone and with the second opinion."""
    for lang, first, second in (("en", "tiny", "base-en"), ("zh", "base-zh", None)):
        chosen = [i for i in items if i.lang == lang]
        if not chosen:
            continue
        one = [error_rate(i, t) for i, t in zip(chosen, cache.get(first, chosen), strict=True)]
        two = [error_rate(i, t) for i, t in zip(chosen, cache.get(second, chosen), strict=True)] if second else one
        syl = [error_rate(i, t, True) for i, t in zip(chosen, cache.get(first, chosen), strict=True)]
        good = [n for n, i in enumerate(chosen) if i.kind == "good"]
        broken = [n for n, i in enumerate(chosen) if i.kind != "good"]
        print(f"\n{lang}: {len(good)} good, {len(broken)} broken chunks; first {first}, second opinion {second}")
        header = f"{'threshold':>10}{'false (first)':>15}{'false (both)':>14}{'caught':>9}"
        print(header + ("  syllables" * (not second)))
        for t in THRESHOLDS:
            false_one = sum(one[n] > t for n in good)
            false_two = sum(one[n] > t and two[n] > t for n in good)
            caught = sum(one[n] > t and two[n] > t for n in broken)
            line = f"{t:10.2f}{false_one / len(good):15.1%}{false_two / len(good):14.1%}{caught / len(broken):9.1%}"
            if not second:
                false_syl = sum(syl[n] > t for n in good) / len(good)
                line += f"  false {false_syl:.1%}, caught {sum(syl[n] > t for n in broken) / len(broken):.1%}"
            print(line)
        worst = sorted(good, key=lambda n: -two[n])[:5]
        for n in worst:
            print(f"  worst good {two[n]:.2f}: {chosen[n].said[:60]!r}")


def gate(items: list[Item], qa: dict[str, float]) -> None:
    """The check a run uses, over every item: its failures per kind and language."""
    rate = items[0].rate
    settings = validate_settings({"qa": {"asr": True, "regenerate": 0, **qa}})
    checker = Checker(rate, settings)
    verdicts = []
    for n, item in enumerate(items):
        verdicts += checker.offer(n, ChunkAudio(item.chunk_id, item.said, item.lang, rate, rate), item.audio, None)
    verdicts += checker.flush()
    checker.close()
    failed = {i: v.error for i, v in verdicts if v.error}
    print(f"\nthe run's check ({', '.join(f'qa.{k} {v}' for k, v in qa.items())})")
    print(f"{'kind':10}{'lang':>5}{'chunks':>8}{'failed':>8}{'rate':>8}")
    for kind in ("good", *BROKEN):
        for lang in ("en", "zh"):
            picked = [n for n, item in enumerate(items) if item.kind == kind and item.lang == lang]
            if picked:
                n_failed = sum(n in failed for n in picked)
                print(f"{kind:10}{lang:>5}{len(picked):8d}{n_failed:8d}{n_failed / len(picked):8.1%}")
    for n, error in failed.items():
        if items[n].kind == "good":
            print(f"false failure: {items[n].said[:70]!r}: {(error or '')[:160]}")
    heard = {i: v.heard.transcript if v.heard else "" for i, v in verdicts}
    broken_total = [n for n, item in enumerate(items) if item.kind != "good"]
    for n in broken_total:
        if n not in failed:
            print(f"missed {items[n].kind} ({items[n].lang}): {items[n].said[:50]!r}, heard {heard.get(n, '')[:50]!r}")
    caught = sum(n in failed for n in broken_total)
    good_total = len(items) - len(broken_total)
    false = sum(items[n].kind == "good" for n in failed)
    print(f"false failures {false}/{good_total} = {false / good_total:.1%}")
    print(f"catch rate {caught}/{len(broken_total)} = {caught / len(broken_total):.1%}")
    print(f"heard in full {checker.heard}, spot-checked {checker.spot_checked}")


if __name__ == "__main__":
    main()

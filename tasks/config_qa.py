"""The `qa` settings: what a chunk's audio must be to count as done (level, clipping, pace, silence, loudness), and
the listening check (ASR) with its thresholds per language. Part of the one settings model (tasks.config)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from tasks.config_section import Section as _Section
from tasks.setting_role import Role


class QASettings(_Section):
    silence_dbfs: float = Field(-45.0, le=0.0, description="A chunk whose peak is below this is silent (failed).")
    max_clipped_fraction: float = Field(
        0.001, ge=0.0, le=1.0, description="Largest share of samples at full scale before the chunk counts as clipped."
    )
    min_chars_per_second_en: float = Field(
        6.0,
        ge=0.0,
        description="Slower English speech than this means the audio is far too long, e.g. a loop (failed). "
        "Measured on joe: 14-20 characters a second.",
    )
    max_chars_per_second_en: float = Field(
        40.0, gt=0.0, description="Faster English speech than this means the audio is far too short (failed)."
    )
    min_chars_per_second_zh: float = Field(
        1.5, ge=0.0, description="As above, Chinese characters per second (measured on zh-baker: 3.9-5.2)."
    )
    max_chars_per_second_zh: float = Field(15.0, gt=0.0, description="As above, Chinese characters per second.")
    min_chars_per_second_ja: float = Field(
        2.0,
        ge=0.0,
        description="As above, characters of Japanese spoken text per second (measured on Kokoro jf_alpha: 5.0-6.5).",
    )
    max_chars_per_second_ja: float = Field(20.0, gt=0.0, description="As above, Japanese characters per second.")
    max_silence_ratio: float = Field(
        0.6,
        ge=0.0,
        le=1.0,
        description="Largest share of silent 20 ms frames in a trimmed chunk (measured: 0.11-0.33 on both voices).",
    )
    max_pause_seconds: float = Field(
        2.0, gt=0.0, description="Longest silence inside a chunk (measured: at most 0.62 s on both voices)."
    )
    min_chars_for_rate_check: int = Field(
        12, ge=0, description="Chunks shorter than this skip the speech-rate check (too noisy to judge)."
    )
    asr: Annotated[bool, Role(flag="--asr")] = Field(
        False,
        description="Transcribe every chunk with an offline Whisper (tiny.en, Chinese and Japanese: base) and fail "
        "those that do not read back as their text: babbling, mispronounced, cut short (extra asr).",
    )
    max_wer: float = Field(
        0.4,
        ge=0.0,
        description="Largest word error rate of an English chunk's transcript, counting errors on words tiny.en "
        "knows (names it does not know are excused; measured with tiny.en on joe: 0-0.21 on good chunks, 0.9-1.0 "
        "on garbled ones).",
    )
    max_cer_zh: float = Field(
        0.4,
        ge=0.0,
        description="Largest error rate of a Chinese chunk's transcript, counted over syllables (pinyin without "
        "tones, so a homophone Whisper writes for the right sound is no error; by characters without pypinyin). "
        "Measured with Whisper base on zh-baker: 0-0.25 on 159 good chunks of prose and Tang/Song verse, where "
        "by characters 70% of them were over 0.4; every garbled, looped, truncated or silent chunk over it.",
    )
    max_cer_ja: float = Field(
        0.4,
        ge=0.0,
        description="Largest error rate of a Japanese chunk's transcript, counted over the morae of both sides' "
        "readings (pyopenjtalk's katakana, so Whisper's own kanji, kana and digits for the right sound are no "
        "error; by characters without pyopenjtalk). Measured with Whisper base on Kokoro jf_alpha: 0-0.08 on 10 "
        "good chunks of prose (by characters up to 0.39, where Whisper wrote kana for kanji), 0.8-2.2 or nothing "
        "heard on the same chunks garbled.",
    )
    asr_sample: float = Field(
        0.1,
        ge=0.0,
        le=1.0,
        description="Share of the English chunks that look normal that are heard in full; the others get a spot "
        "check: their opening 3 s are heard, and the whole chunk when that fails. A chunk looks normal when it is "
        "6 s or longer and its speech rate is within 20% of the shard's typical rate (the first 5 of a shard are "
        "always heard in full). 1: every chunk heard in full. The summary counts both.",
    )
    asr_second_opinion: bool = Field(
        True,
        description="An English chunk that tiny.en fails is heard again by the multilingual Whisper base (when "
        "installed: extra asr) before it counts as failed; its transcript then stands.",
    )
    asr_batch_size: int = Field(8, ge=1, le=256, description="Chunks transcribed together.")
    min_chars_for_asr_check: int = Field(
        8,
        ge=0,
        description="Chunks with fewer letters and digits than this, and English chunks of one word, are transcribed "
        "and scored but never failed by the ASR check: a short title or a name is where Whisper guesses homophones "
        "(小刚 heard as 效果, Preamble as Pre-gamble).",
    )
    regenerate: int = Field(
        2,
        ge=0,
        le=20,
        description="A chunk that fails a check is synthesized again up to this many times, with a noise seed "
        "from its chunk id and the attempt; the best attempt is kept (voices that sample: piper, vits).",
    )
    flag: bool = Field(
        True,
        description="A chunk that still fails only the listening check (qa.asr) after its regenerations keeps its "
        "best attempt under review/ and is `flagged`, not `failed`: `voxbatch review` lists it, `voxbatch accept` "
        "makes it ok. False: it fails, without audio. Signal-check and synthesis failures always fail.",
    )

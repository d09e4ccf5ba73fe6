"""The settings flags every command takes (`--voice`, `--batch-size`, `--asr`, ...) and the settings they make."""

from __future__ import annotations

import argparse
from typing import Any

from tasks.backend_catalog import backend_names
from tasks.config import Settings, load_settings


def _rate(value: str) -> int | str:
    if value == "native":
        return value
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f'expected a whole number of Hz or "native", got {value!r}') from None


def _voices(value: str) -> dict[str, str]:
    pairs = [p.partition("=") for p in value.split(",") if p.strip()]
    if not pairs or any(not sep or not lang.strip() or not voice.strip() for lang, sep, voice in pairs):
        raise argparse.ArgumentTypeError(f"expected LANG=VOICE[,LANG=VOICE], e.g. en=joe,zh=my-zh.onnx; got {value!r}")
    return {lang.strip(): voice.strip() for lang, _, voice in pairs}


def settings_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("settings (override --config)")
    g.add_argument("--config", metavar="FILE", help="settings file (.toml, .yaml or .json); see `voxbatch config`")
    g.add_argument("--backend", choices=backend_names(), help="synthesizer backend")
    g.add_argument("--voice", help="bundled voice name (joe) or path to a Piper .onnx file")
    g.add_argument(
        "--voices", type=_voices, metavar="LANG=VOICE,...", help="a voice per language, e.g. en=joe,zh=my-zh.onnx"
    )
    g.add_argument("--lang", choices=["auto", "en", "zh"], help="input language")
    g.add_argument("--encoding", help="input encoding (default: auto)")
    g.add_argument(
        "--strict",
        action="store_const",
        const=True,
        help="stop before any work if an input file is bad (default: list it, skip it, exit 3)",
    )
    g.add_argument("--format", choices=["flac", "wav", "ogg", "mp3"], help="audio format")
    g.add_argument("--sample-rate", type=_rate, help='output rate in Hz, or "native"')
    g.add_argument("--resampler", choices=["soxr", "resampy"])
    g.add_argument("--batch-size", type=int, help="most chunks per synthesis call")
    g.add_argument("--device", choices=["auto", "cpu", "cuda"], help="where to synthesize")
    g.add_argument("--dtype", choices=["fp32", "fp16", "bf16"], help="PyTorch backends' precision on CUDA")
    g.add_argument(
        "--asr",
        action="store_const",
        const=True,
        help="listen to every chunk with an offline Whisper; regenerate or fail those that do not read back",
    )
    g.add_argument("--shard-size", type=int, help="chunks per shard")
    g.add_argument("--run-id", help="run id (default: derived from inputs and settings, so reruns resume)")
    g.add_argument(
        "--dispatch",
        metavar="DEPLOYMENT",
        help="run each shard as a flow run of this Prefect deployment (e.g. voxbatch-shard/voxbatch-shard) "
        "on workers; needs PREFECT_API_URL",
    )


_FLAG_KEYS = {
    "backend": ("synthesis", "backend"),
    "voice": ("synthesis", "voice"),
    "voices": ("synthesis", "voices"),
    "batch_size": ("synthesis", "batch_size"),
    "device": ("synthesis", "device"),
    "dtype": ("synthesis", "dtype"),
    "lang": ("text", "lang"),
    "encoding": ("text", "encoding"),
    "strict": ("text", "strict"),
    "format": ("audio", "format"),
    "sample_rate": ("audio", "sample_rate"),
    "resampler": ("audio", "resampler"),
    "asr": ("qa", "asr"),
    "shard_size": ("run", "shard_size"),
    "run_id": ("run", "run_id"),
    "dispatch": ("run", "dispatch"),
}


def settings_from_args(args: argparse.Namespace) -> Settings:
    overrides: dict[str, dict[str, Any]] = {}
    for flag, (section, key) in _FLAG_KEYS.items():
        value = getattr(args, flag, None)
        if value is not None:
            overrides.setdefault(section, {})[key] = value
    return load_settings(args.config, overrides)

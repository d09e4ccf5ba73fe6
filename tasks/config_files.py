"""Settings files (TOML, YAML or JSON, by suffix) and the effective settings as a commented TOML file."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import tomli_w
import yaml

from tasks.config import Settings, all_settings, merge, validate_settings
from tasks.environment import describe_environment
from tasks.errors import ConfigError


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
    except RecursionError as exc:  # the parsers recurse per level of nesting
        raise ConfigError(f"{p}: not valid {p.suffix[1:].upper()}: nested too deeply") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: the top level must be a table of sections, got {type(data).__name__}")
    return data


def load_settings(config_file: str | Path | None = None, overrides: dict[str, Any] | None = None) -> Settings:
    data = read_settings_file(config_file) if config_file else {}
    source = str(config_file) if config_file else "settings"
    return validate_settings(merge(data, overrides or {}), source=source)


def dump_toml(settings: Settings) -> str:
    """The effective settings as TOML, each key preceded by its description: the format --config reads."""
    lines = [
        "# voxbatch settings (voxbatch config). Pass with --config FILE; CLI flags override it.",
        "# (shapes the audio): enters every chunk's id, so changing it makes new audio; (worker): a worker may set",
        "# it for itself; --flag: the command-line flag that sets it.",
    ]
    section_name = ""
    for s in all_settings():
        if s.section != section_name:
            section_name = s.section
            lines += ["", f"[{section_name}]"]
        name, field = s.name, s.field
        tags = [t for t, on in (("(shapes the audio)", s.role.audio), ("(worker)", s.role.worker)) if on]
        tags += [s.role.flag] if s.role.flag else []
        if field.description or tags:
            lines.append(f"# {' '.join([field.description or '', *tags]).strip()}")
        value = getattr(getattr(settings, s.section), name)
        if value is None:  # TOML has no null: the key stays out, so reading the file back leaves it unset
            lines.append(f"# {name} = (not set)")
        elif isinstance(value, dict):  # an inline table, so the keys after it stay in this section
            inner = ", ".join(tomli_w.dumps({k: v}).rstrip("\n") for k, v in value.items())
            lines.append(f"{name} = {{{inner}}}" if inner else f"{name} = {{}}")
        else:
            lines.append(tomli_w.dumps({name: value}).rstrip("\n"))
    lines += ["", "# Environment variables (read by every command; a settings file cannot set them):"]
    for var, description, value in describe_environment():
        lines.append(f"#   {var}={value}" if value else f"#   {var} (not set)")
        lines.append(f"#     {description}")
    return "\n".join(lines) + "\n"

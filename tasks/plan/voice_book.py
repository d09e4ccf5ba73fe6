"""The voices of one plan: which voice speaks a sentence (its language) or a table row (its `voice` column).

Every voice a plan names is resolved here, at plan time (files found, checksums verified), so an unknown voice,
a language no voice speaks or a speaker a voice does not have is an error before any synthesis.
"""

from __future__ import annotations

from tasks.backend_catalog import backend_names, backend_of
from tasks.backends.synthesizer import VoiceInfo
from tasks.config import Settings
from tasks.errors import ConfigError, InputError, ModelError
from tasks.text.chunking import HAN_LANGS

# A voice given by name, not as a file: no path separator, scheme, home or relative prefix, or model suffix.
_PATH_MARKS = ("/", "\\", ":")


def names_a_file(spec: str, default_backend: str) -> bool:
    """Whether a voice spec reaches for a file or URI (a local .onnx, a folder, file://, s3://) rather than naming
    an installed or bundled voice. A vits voice is always a checkpoint folder, so always a file."""
    backend, _, voice = spec.partition(":")
    if not (voice and backend in backend_names()):
        backend, voice = backend_of(spec, default_backend, beside=True), spec
    return (
        backend == "vits"
        or not voice
        or any(mark in voice for mark in _PATH_MARKS)
        or voice.startswith((".", "~"))
        or voice.endswith(".onnx")
    )


def speaks(voice: VoiceInfo, lang: str) -> bool:
    return lang in voice.languages or "*" in voice.languages


class VoiceBook:
    """Voice specs to plan keys and identities. The run's own voice (`synthesis.voice`) is the first key."""

    def __init__(self, settings: Settings, default: VoiceInfo) -> None:
        self.settings = settings
        self.default_key = default.name
        self.voices: dict[str, VoiceInfo] = {default.name: default}
        self._by_spec: dict[str, str] = {settings.synthesis.voice: default.name}
        self._by_lang = dict(settings.synthesis.voices)

    def key_for(self, spec: str) -> str:
        """The plan key of a voice spec, resolving it on first use; ConfigError/ModelError if it is unknown."""
        if spec in self._by_spec:
            return self._by_spec[spec]
        from tasks.backends.registry import resolve_voice, voice_settings

        info = resolve_voice(voice_settings(self.settings.synthesis, spec))
        key = next((k for k, v in self.voices.items() if v.identity == info.identity), None)
        if key is None:
            key = info.name if info.name not in self.voices else spec
            self.voices[key] = info
        self._by_spec[spec] = key
        return key

    def check_table_voice(self, spec: str, where: str) -> None:
        """A table row's voice: a named voice, or one the settings configure (synthesis.voice and .voices); a path
        or URI only with text.table_voice_paths, so a table from a shared inbox cannot make the run read any file
        or bucket with the operator's credentials. InputError naming the row and column otherwise."""
        synthesis = self.settings.synthesis
        if spec == synthesis.voice or spec in synthesis.voices.values() or self.settings.text.table_voice_paths:
            return
        if names_a_file(spec, synthesis.backend):
            raise InputError(
                f"{where}, column 'voice': {spec!r} is a path or URI; a table may name installed or bundled voices "
                "and those the settings configure (synthesis.voice, synthesis.voices)",
                hint="configure the voice in synthesis.voices, or set text.table_voice_paths = true to let tables "
                "load voice files by path or URI",
            )

    def for_language(self, lang: str, where: str, han_only: bool = False) -> str:
        """The key of the voice for `lang`: `synthesis.voices[lang]`, else the run's voice if it speaks it.
        `han_only`: the text is in `lang` for its Han characters alone (no kana), which the error's hint explains."""
        spec = self._by_lang.get(lang)
        if spec is not None:
            try:
                key = self.key_for(spec)
            except (ConfigError, ModelError) as exc:
                raise ConfigError(f"synthesis.voices.{lang}: {exc}", hint=exc.hint) from exc
            if not speaks(self.voices[key], lang):
                raise ConfigError(
                    f"synthesis.voices.{lang} = {spec!r}, but that voice speaks {', '.join(self.voices[key].languages)}"
                )
            return key
        default = self.voices[self.default_key]
        if speaks(default, lang):
            return self.default_key
        configured = ", ".join(f"{k} = {v!r}" for k, v in self._by_lang.items()) or "none"
        han = ""
        if han_only:  # text in Han characters alone is in the document's declared language, else text.han_lang
            han = (
                "; text in Han characters without kana is read as the document's declared language, else as "
                f"text.han_lang (now {self.settings.text.han_lang!r}; --han-lang zh|ja)"
            )
        raise InputError(
            f"{where}: text is in {lang!r}, but no voice speaks it: voice {default.name!r} speaks "
            f"{', '.join(default.languages)}; voices per language: {configured}",
            hint=f"give that language a voice (--voices {lang}=VOICE, or synthesis.voices), or force the "
            f"language with --lang{han}",
        )

    def han_by_voices(self) -> str:
        """The one Han language a voice speaks here ("ja" with only a Japanese voice, "zh" with only a Chinese one),
        else "": Han characters alone then have one reading this run can speak, and need no setting."""
        default = self.voices[self.default_key]
        found = [lang for lang in HAN_LANGS if lang in self._by_lang or speaks(default, lang)]
        return found[0] if len(found) == 1 and "*" not in default.languages else ""

    def routes_by_language(self) -> bool:
        """Whether sentences are routed to voices by their language (a voice per language is configured)."""
        return bool(self._by_lang) and self.settings.text.lang == "auto"

"""Chinese or Japanese with English words in it: the runs of each script, so that each is planned for the voice of
its language.

"我们用Python写了一个TTS系统。" is spoken by two voices: the Chinese runs by the voice for zh, "Python" and "TTS"
by the voice for en; so is "新しいPythonの本を買った。", its Japanese runs by the voice for ja. `script_runs` finds
the runs: Latin letters are en; ideographs and kana together are one run, ja when the text has kana anywhere (the
kanji of a Japanese sentence stay with its kana), else the language of Han characters the caller knows (`han`:
the chunk's own language, zh or ja). Everything else (digits, spaces, punctuation) stays with the run before it,
so "2026年" is read by the Chinese or Japanese voice and "Python 3.12" by the English one. The parts' audio is
joined by tasks.audio.dsp.join_parts.
"""

from __future__ import annotations

import re

from tasks.text.chunking import IDEOGRAPH, KANA

_WIDE = IDEOGRAPH.pattern[:-1] + KANA.pattern[1:]  # one character class: ideographs and kana
_SCRIPT = re.compile(f"(?P<wide>{_WIDE}+)" + "|(?P<en>[A-Za-z\u00c0-\u024f]+(?:['\u2019][A-Za-z]+)*)")
_LATIN = re.compile("[A-Za-z]")


def script_runs(text: str, han: str = "zh") -> list[tuple[int, int, str]]:
    """(start, end, lang) spans covering the text, one per run of a script; [] when it has no letters at all.
    Ideographs and kana are ja when the text has kana, else `han`."""
    wide = "ja" if KANA.search(text) else han
    runs: list[tuple[int, int, str]] = []
    for m in _SCRIPT.finditer(text):
        lang = wide if m.lastgroup == "wide" else "en"
        if runs and runs[-1][2] == lang:
            runs[-1] = (runs[-1][0], m.end(), lang)
        elif runs:
            runs[-1] = (runs[-1][0], m.start(), runs[-1][2])  # what lies between goes with the run before
            runs.append((m.start(), m.end(), lang))
        else:
            runs.append((0, m.end(), lang))
    if runs:
        runs[-1] = (runs[-1][0], len(text), runs[-1][2])
    return runs


def is_mixed(text: str, lang: str) -> bool:
    """A quick check before `script_runs`: a Chinese or Japanese chunk with Latin letters, or an English one with
    ideographs or kana."""
    if lang != "en":
        return _LATIN.search(text) is not None
    return not text.isascii() and (IDEOGRAPH.search(text) is not None or KANA.search(text) is not None)

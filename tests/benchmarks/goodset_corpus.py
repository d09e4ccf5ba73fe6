"""The good set of the listening check's benchmark: varied English and Chinese prose and verse (issue 23).

Run: .venv/bin/python tests/benchmarks/goodset_corpus.py OUT.jsonl [--en 320] [--zh 160] [--seed 23]
Needs Debian's `fortunes` and `fortunes-zh` (apt-get install fortunes fortunes-zh): quotations, aphorisms and verse
from literature, songs and poems, wisdom, people and more for English; Tang and Song poems and prose entries for
Chinese. Writes a prompt table (id, text, lang, source): one passage per row, so one chunk per passage. Passages
with code, markup, ASCII art or lines of dialogue are left out; the draw is seeded, so the set is the same each time.
"""

from __future__ import annotations

import argparse
import json
import random
import re
from pathlib import Path

FORTUNES = Path("/usr/share/games/fortunes")
ENGLISH = (
    "literature", "songs-poems", "wisdom", "people", "humorists", "love", "education", "science", "work",
    "platitudes", "politics", "law", "food", "pets", "men-women", "medicine", "news", "sports", "kids",
    "miscellaneous", "fortunes", "cookie", "magic", "paradoxum", "pratchett", "riddles", "definitions",
)  # fmt: skip
CHINESE = {"tang300": 70, "song100": 40, "chinese": 50}  # share of the --zh draw per file, in percent-ish weights
ANSI = re.compile(r"\x1b\[[0-9;]*m")
NOT_PROSE_EN = re.compile(r"[|\\_~^<>{}#$*=@\[\]]|^\s*[A-Z][A-Za-z. ]*:|https?:|\.\.\.\.|\t\t\t")
NOT_PROSE_ZH = re.compile(r"[A-Za-z0-9$/\\|<>{}_=*#@]")


def entries(name: str) -> list[str]:
    text = ANSI.sub("", (FORTUNES / name).read_text(encoding="utf-8", errors="replace"))
    return [e.strip("\n") for e in text.split("\n%\n") if e.strip()]


def english_passage(entry: str) -> str | None:
    body, _, author = entry.partition("\n\t\t-- ")
    if "\n\t\t" in body or NOT_PROSE_EN.search(body) or "\ufffd" in body:
        return None  # indented attributions, dialogue, code, markup
    text = " ".join(line.strip() for line in body.splitlines() if line.strip())
    author = author.split(",")[0].strip()
    if author and len(author) < 40 and not NOT_PROSE_EN.search(author):
        text = f"{text} ({author})"  # read as a voice reads a quotation's source
    ok = 60 <= len(text) <= 260 and text.isascii() and sum(c.isalpha() for c in text) > 0.7 * len(text)
    return text if ok else None


def chinese_passage(entry: str, name: str) -> str | None:
    lines = [line.strip() for line in entry.splitlines() if line.strip()]
    if name in ("tang300", "song100"):
        lines = [line for line in lines if not line.startswith(("《", "作者"))]  # title and author lines
    text = "".join(lines)
    cjk = sum("\u4e00" <= c <= "\u9fff" for c in text)
    ok = 16 <= len(text) <= 96 and not NOT_PROSE_ZH.search(text) and cjk > 0.75 * len(text)
    return text if ok else None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--en", type=int, default=320, help="English passages")
    parser.add_argument("--zh", type=int, default=160, help="Chinese passages")
    parser.add_argument("--seed", type=int, default=23)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    rows: list[dict[str, str]] = []
    pool_en = sorted({(p, n) for n in ENGLISH for e in entries(n) if (p := english_passage(e))})
    for text, name in rng.sample(pool_en, min(args.en, len(pool_en))):
        rows.append({"text": text, "lang": "en", "source": name})
    weights = sum(CHINESE.values())
    for name, weight in CHINESE.items():
        pool = sorted({p for e in entries(name) if (p := chinese_passage(e, name))})
        for text in rng.sample(pool, min(round(args.zh * weight / weights), len(pool))):
            rows.append({"text": text, "lang": "zh", "source": name})
    with args.out.open("w", encoding="utf-8") as f:
        for n, row in enumerate(rows):
            f.write(json.dumps({"id": f"{row['lang']}-{n:04d}", **row}, ensure_ascii=False) + "\n")
    print(f"{args.out}: {sum(r['lang'] == 'en' for r in rows)} English, {sum(r['lang'] == 'zh' for r in rows)} Chinese")


if __name__ == "__main__":
    main()

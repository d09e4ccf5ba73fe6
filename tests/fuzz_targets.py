"""What the fuzzing feeds voxbatch, and how: seeds (real files of every kind), mutators, hostile big inputs, and the
two entry points inputs go through (planning a file, loading a settings file). Shared by tests/test_fuzz.py (fast,
hypothesis) and tests/benchmarks/bench_fuzz.py (long). The only exceptions allowed out are voxbatch's own.
"""

from __future__ import annotations

import contextlib
import io
import json
import random
import time
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from tasks.config import Settings, validate_settings
from tasks.config_files import dump_toml, load_settings
from tasks.errors import VoxbatchError

REPO = Path(__file__).resolve().parent.parent
INPUT_SUFFIXES = (".txt", ".md", ".epub", ".csv", ".tsv", ".jsonl", ".parquet")
CONFIG_SUFFIXES = (".toml", ".yaml", ".json")
ALLOWED = VoxbatchError  # InputError, ConfigError, ...: a file set aside or refused with a message

# Tokens that open or close structure in the formats read: markdown, HTML/XML, JSON, CSV, TOML, YAML, encodings.
TOKENS = [
    b"*", b"**", b"_", b"`", b"```", b"~~", b"[", b"](", b")", b"![", b"<", b">", b"</p>", b"<p>", b"#", b"# ",
    b"\n", b"\r\n", b"\r", b"\n\n", b"\t", b",", b'"', b"'", b"{", b"}", b"[[", b"]]", b"=", b": ", b"- ", b"&",
    b"&amp;", b"&#x0;", b"\x00", b"\xff\xfe", b"\xef\xbb\xbf", b"\xe4\xb8\xad", b"\x1b[31m", b"\xc3", b"\xf0\x9f\x98",
    b"http://x.y/", b"www.", b"12", b"3.5", b"$4", b"1999", b"%", b"\\", b"\\u0000", b"null", b"true", b"NaN",
    b"*a ", b"[a", b"<a", b"&a;", b"!!python/object:os.system", b"&a [*a, *a]", "\u2028".encode(),
]  # fmt: skip


def fuzz_settings(bad_rows: str = "failed") -> Settings:
    # The tone voice: planning without loading a model; bad rows kept as failed rows, so a table is read to its end.
    return validate_settings({"synthesis": {"backend": "tone"}, "text": {"bad_rows": bad_rows}})


def plan_bytes(data: bytes, suffix: str, folder: Path, settings: Settings | None = None) -> float:
    """Plan `data` as an input file of kind `suffix`, the way `voxbatch plan` does; CPU seconds it took. Only
    voxbatch's errors may come out."""
    from tasks.plan.planner import prepare

    path = folder / f"fuzz{suffix}"
    path.write_bytes(data)
    start = time.process_time()
    # Warnings are what a user would see printed, not failures: only exceptions count here.
    with contextlib.suppress(ALLOWED), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prepare([str(path)], settings or fuzz_settings())
    return time.process_time() - start


def load_config_bytes(data: bytes, suffix: str, folder: Path) -> None:
    """Load `data` as a settings file of kind `suffix` (TOML, YAML, JSON) and validate it."""
    path = folder / f"settings{suffix}"
    path.write_bytes(data)
    with contextlib.suppress(ALLOWED), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        load_settings(path)


def _epub_seed(folder: Path) -> bytes:
    from tests.helpers import make_epub

    return make_epub(folder / "seed.epub").read_bytes()


def _table_rows() -> list[dict[str, object]]:
    return [
        {"id": "a", "text": "The first prompt, with 12 numbers.", "voice": "tone:t", "emotion": "calm"},
        {"id": "b", "text": "第二个句子。", "lang": "zh", "length_scale": 1.2, "weight": 2.5},
        {"id": "c", "text": "A **markdown** line [a link](http://x.y).", "speaker": "", "extra": "x"},
    ]


class Seeds(dict[str, list[bytes]]):
    def __repr__(self) -> str:  # hypothesis prints a failing test's arguments: not megabytes of seeds
        return f"<seeds of {', '.join(self)}>"


def seeds(folder: Path) -> Seeds:
    """Real files of each kind: the repository's samples and docs, a publisher-style EPUB, tables, settings."""
    samples = [p.read_bytes() for p in sorted((REPO / "data" / "sample").rglob("*.txt"))]
    docs = [(REPO / "tests" / "golden" / "chapters.md").read_bytes(), (REPO / "README.md").read_bytes()[:20_000]]
    rows = _table_rows()
    columns = sorted({k for r in rows for k in r})
    csv_lines = [",".join(columns)] + [",".join(json.dumps(str(r.get(c, ""))) for c in columns) for r in rows]
    tsv_lines = ["\t".join(columns)] + ["\t".join(str(r.get(c, "")) for c in columns) for r in rows]
    parquet = io.BytesIO()
    pq.write_table(pa.Table.from_pylist([{c: r.get(c) for c in columns} for r in rows]), parquet)
    toml = dump_toml(validate_settings({})).encode()
    as_dict = {"text": {"lang": "en", "lexicons": {"joe": "lex.toml"}}, "synthesis": {"voices": {"zh": "tone:zh"}}}
    return Seeds(
        {
            ".txt": samples,
            ".md": docs + samples[:1],
            ".epub": [_epub_seed(folder)],
            ".csv": ["\n".join(csv_lines).encode()],
            ".tsv": ["\n".join(tsv_lines).encode()],
            ".jsonl": ["".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode()],
            ".parquet": [parquet.getvalue()],
            ".toml": [toml],
            ".yaml": [b"text:\n  lang: en\n  lexicons: {joe: lex.toml}\nsynthesis:\n  voices:\n    zh: tone:zh\n"],
            ".json": [json.dumps(as_dict).encode()],
        }
    )


def mutate(data: bytes, rng: random.Random, others: list[bytes]) -> bytes:
    """One to eight random edits: bit flips, inserted tokens or random bytes, deletions, duplicated or spliced runs,
    truncation. Kept under 64 KiB (huge inputs have their own generator)."""
    out = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        at = rng.randint(0, len(out))
        op = rng.randrange(8)
        if op == 0 and out:
            i = rng.randrange(len(out))
            out[i] ^= 1 << rng.randrange(8)
        elif op == 1:
            out[at:at] = rng.choice(TOKENS) * rng.choice((1, 1, 2, 10, 100))
        elif op == 2:
            out[at:at] = rng.randbytes(rng.randint(1, 32))
        elif op == 3:
            del out[at : at + rng.randint(1, 64)]
        elif op == 4 and out:
            start = rng.randrange(len(out))
            out[at:at] = out[start : start + rng.randint(1, 256)] * rng.randint(1, 4)
        elif op == 5 and others:
            other = rng.choice(others)
            start = rng.randrange(len(other) + 1)
            out[at:at] = other[start : start + rng.randint(1, 512)]
        elif op == 6:
            del out[at:]
        else:
            out[at:at] = bytes([rng.randrange(256)]) * rng.randint(1, 300)
    return bytes(out[: 64 << 10])


def mutate_epub(data: bytes, rng: random.Random) -> bytes:
    """A real EPUB with one of its files mutated inside a valid zip (raw byte edits mostly break the zip itself)."""
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        entries = [(info.filename, zf.read(info)) for info in zf.infolist()]
    i = rng.randrange(len(entries))
    name, content = entries[i]
    entries[i] = (rng.choice([name, name, "OEBPS/" + name.rsplit("/", 1)[-1], entries[0][0]]), mutate(content, rng, []))
    if rng.random() < 0.2:  # an entry listed twice
        entries.append(rng.choice(entries))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns of the duplicate names we make on purpose
        for name, content in entries:
            kind = zipfile.ZIP_STORED if name == "mimetype" else zipfile.ZIP_DEFLATED
            zf.writestr(zipfile.ZipInfo(name), content, compress_type=kind)
    return out.getvalue()


def random_parquet(rng: random.Random) -> bytes:
    """A Parquet table of random columns: text of odd kinds, numbers, nulls, nested lists and structs, binary."""
    n = rng.randint(0, 20)
    pools: dict[str, Callable[[], object]] = {
        "text": lambda: rng.choice(["", " ", "Hello.", "\x00", "*a " * 50, "第二", None, "a" * rng.randint(0, 5000)]),
        "id": lambda: rng.choice(["a", "a", "", None, "x" * 300]),
        "voice": lambda: rng.choice(["", "tone:t", "joe", "/etc/passwd.onnx", "s3://b/v.onnx", None]),
        "lang": lambda: rng.choice(["", "en", "zh", "fr", None]),
        "length_scale": lambda: rng.choice([None, 1.0, 0.0, -1.0, float("nan"), float("inf"), 1e308]),
        "extra": lambda: rng.choice([None, 1, [1, 2], {"k": "v"}, b"\xff", "x"]),
    }
    columns = rng.sample(sorted(pools), rng.randint(1, len(pools)))
    rows = [{c: pools[c]() for c in columns} for _ in range(n)]
    out = io.BytesIO()
    try:
        pq.write_table(pa.Table.from_pylist(rows), out)
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # mixed types in a column: pyarrow will not write those
        pq.write_table(pa.table({"text": [str(r.get("text")) for r in rows]}), out)
    return out.getvalue()


def deep_nesting(suffix: str, depth: int) -> bytes:
    """A structure nested `depth` levels: what recursive parsers fall over on."""
    if suffix in (".json", ".jsonl"):
        return ('{"text": "x", "meta": ' + "[" * depth + "]" * depth + "}\n").encode()
    if suffix == ".toml":
        return ("x = " + "[" * depth + "]" * depth + "\n").encode()
    if suffix == ".yaml":
        return ("text: " + "[" * depth + "]" * depth + "\n").encode()
    if suffix in (".md", ".txt"):
        return (">" * depth + " quote\n" + "- " * depth + "item\n").encode()
    if suffix == ".csv":
        return ("text\n" + '"' + "[" * depth + '"\n').encode()
    return ("<div>" * depth + "x" + "</div>" * depth).encode()


def huge_input(suffix: str, size: int, rng: random.Random) -> bytes:
    """About `size` bytes of a hostile shape for `suffix`: one huge line of a repeated opener, or many rows."""
    unit = rng.choice([b"*a ", b"_a ", b"`a ", b"[a", b"[a](", b"![a", b"<a", b"~~a ", b"# a #", b"a" * 64, b"1999 $4 ",
                       b"\xe4\xb8\xad", b"www.a.", b"\x1b[", b"&a;", b". ", b"\t", b"\"", b"a,", b"> - "])  # fmt: skip
    line = unit * (size // len(unit))
    if suffix == ".jsonl":
        return json.dumps({"text": line.decode("utf-8", "replace")}).encode() + b"\n"
    if suffix in (".csv", ".tsv"):
        sep = b"\t" if suffix == ".tsv" else b","
        return b"text" + sep + b"id\n" + (b'"' + line.replace(b'"', b'""') + b'"' + sep + b"1\n")
    if suffix == ".epub":
        return _book_of(line.decode("utf-8", "replace"))
    return line


def _book_of(text: str) -> bytes:
    from ebooklib import epub

    book = epub.EpubBook()
    book.set_identifier("fuzz")
    book.set_title("Fuzz")
    book.set_language("en")
    chapter = epub.EpubHtml(title="One", file_name="one.xhtml", lang="en")
    chapter.content = f"<html><body><p>{text.replace('<', '&lt;')}</p></body></html>"
    book.add_item(chapter)
    book.add_item(epub.EpubNav())
    book.spine = [chapter]
    out = io.BytesIO()
    epub.write_epub(out, book)
    return out.getvalue()

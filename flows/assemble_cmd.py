"""`voxbatch assemble OUT`: a finished run's chunks as one audio file per document (and per chapter), subtitled."""

from __future__ import annotations

import argparse
from typing import Any

from flows import run_choice


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from tasks.formats import BOOK_FORMATS
    from tasks.results.assemble import CUE_MODES, Pauses

    p = sub.add_parser("assemble", help="join a finished run's chunks into a file per document and chapter")
    run_choice.add_arguments(p)
    p.add_argument("--format", choices=list(BOOK_FORMATS), default="flac", dest="assemble_format")
    p.add_argument(
        "--include-flagged",
        action="store_true",
        help="with the chunks flagged for review (their audio, marked [flagged] in the subtitles and chapters)",
    )
    p.add_argument(
        "--cues",
        choices=list(CUE_MODES),
        default=CUE_MODES[0],
        help="subtitles: a cue per sentence, split to two lines of 42 characters and 20 characters a second "
        "(default), or one per chunk",
    )
    defaults = Pauses()
    for name in ("sentence", "paragraph", "chapter"):
        p.add_argument(
            f"--{name}-pause",
            type=float,
            default=getattr(defaults, name),
            metavar="SECONDS",
            help=f"silence between {name}s (default %(default)s)",
        )


def cmd_assemble(args: argparse.Namespace) -> int:
    from tasks.results.assemble import Pauses
    from tasks.storage import open_store

    store = open_store(args.out)
    pauses = Pauses(args.sentence_pause, args.paragraph_pause, args.chapter_pause)
    run_id = run_choice.pick_run(store, args.run_id)
    assemble_and_print(store, run_id, args.assemble_format, pauses, args.include_flagged, args.cues)
    return 0


def assemble_and_print(
    store: Any,
    run_id: str,
    fmt: str = "flac",
    pauses: Any = None,
    include_flagged: bool = False,
    cues: str = "sentence",
) -> None:
    from tasks.results.assemble import FLAGGED_MARK, assemble_run

    for made in assemble_run(store, run_id, fmt, pauses, include_flagged, cues):
        minutes, seconds = divmod(made.seconds, 60)
        flagged = f", {made.flagged} flagged (cues start {FLAGGED_MARK.strip()})" if made.flagged else ""
        beside = "(read-along: overlays, MP3 per chapter)" if made.key.endswith(".epub") else "(+ .srt, .vtt)"
        print(
            f"  assembled {store.uri(made.key)}: {made.chunks} chunks{flagged}, {int(minutes)}:{seconds:04.1f} {beside}"
        )

"""What voxbatch reads when given a folder, a glob or an S3 prefix, and nothing more.

S3 prefixes take the same kinds of file as local folders (one list of suffixes) and skip folder markers; links
in a folder or glob that lead outside it are set aside with their reason, never read; S3 text is streamed, one
block at a time, both passes over the same version of the object. Against the real S3 test server.
"""

from __future__ import annotations

import os
import tracemalloc
from pathlib import Path

import boto3
import pytest

from tasks.errors import InputError
from tasks.storage import s3_client
from tasks.text import text_stream
from tasks.text.ingest import read_document, read_documents
from tasks.text.text_stream import scan_text, text_paragraphs
from tests.helpers import TABLE_ROWS as ROWS
from tests.helpers import make_epub, write_table

SECRET = "aws_secret_access_key = THIS-MUST-NEVER-BE-SPOKEN"


def _kinds(folder: Path) -> Path:
    """One input file of every kind voxbatch reads, and files it does not."""
    folder.mkdir(parents=True)
    (folder / "notes.txt").write_text("The tide turned at noon.")
    (folder / "guide.md").write_text("# Guide\n\nKeep the lamp lit.")
    make_epub(folder / "book.epub")
    for suffix in (".jsonl", ".csv", ".tsv", ".parquet"):
        write_table(folder / f"prompts{suffix}", ROWS)
    (folder / "cover.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    (folder / "README").write_text("not an input")
    return folder


def _upload(folder: Path, bucket: str, prefix: str) -> None:
    s3 = boto3.client("s3")
    for path in sorted(folder.iterdir()):
        s3.put_object(Bucket=bucket, Key=prefix + path.name, Body=path.read_bytes())


def test_an_s3_prefix_takes_the_same_kinds_of_file_as_a_local_folder(tmp_path: Path, s3_bucket: str) -> None:
    folder = _kinds(tmp_path / "inbox")
    _upload(folder, s3_bucket, "inbox/")
    local = sorted(Path(d.source).name for d in read_documents([str(folder)]).documents)
    remote = sorted(d.source.rsplit("/", 1)[1] for d in read_documents([f"s3://{s3_bucket}/inbox/"]).documents)
    assert local == [
        "book.epub",
        "guide.md",
        "notes.txt",
        *(f"prompts{s}" for s in (".csv", ".jsonl", ".parquet", ".tsv")),
    ]
    assert remote == local  # before: notes.txt and guide.md only (epub and tables were dropped)


@pytest.mark.parametrize("uri_prefix", ["inbox/", "inbox"])
def test_a_folder_marker_is_not_an_input(s3_bucket: str, uri_prefix: str) -> None:
    s3 = boto3.client("s3")
    s3.put_object(Bucket=s3_bucket, Key="inbox/", Body=b"")  # what the AWS console's "Create folder" makes
    s3.put_object(Bucket=s3_bucket, Key="inbox/drafts/", Body=b"")
    s3.put_object(Bucket=s3_bucket, Key="inbox/chapter-1.txt", Body=b"The keeper climbed the stairs.")
    corpus = read_documents([f"s3://{s3_bucket}/{uri_prefix}"])
    # Before: the marker itself was the only input, and the run failed "file is empty".
    assert [d.source for d in corpus.documents] == [f"s3://{s3_bucket}/inbox/chapter-1.txt"] and not corpus.rejected


def test_a_link_out_of_the_input_folder_is_set_aside_not_read(tmp_path: Path) -> None:
    secret = tmp_path / "home" / ".aws" / "credentials"
    secret.parent.mkdir(parents=True)
    secret.write_text(SECRET)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "chapter.txt").write_text("The keeper climbed the stairs.")
    (inbox / "x.txt").symlink_to(secret)
    (inbox / "again.txt").symlink_to(inbox / "chapter.txt")  # a link that stays inside: read (once)
    (inbox / "outside").symlink_to(secret.parent, target_is_directory=True)
    os.symlink(secret, secret.parent / "also.txt")

    for pattern in (str(inbox), str(inbox / "*.txt"), str(inbox / "**" / "*.txt")):
        corpus = read_documents([pattern])
        spoken = " ".join(p.text for d in corpus.documents for p in d.paragraphs)
        assert "THIS-MUST-NEVER" not in spoken, pattern  # before: the credentials were read and spoken
        (doc,) = corpus.documents  # chapter.txt, or again.txt linking to it: one document
        assert Path(doc.source).resolve() == (inbox / "chapter.txt").resolve(), pattern
        (why,) = [r.reason for r in corpus.rejected if r.source.endswith("x.txt")]
        assert "x.txt: a symbolic link that leads outside" in why and str(secret) not in why  # the target unnamed
    # The only input a link out: refused, naming the file.
    alone = tmp_path / "alone"
    alone.mkdir()
    (alone / "x.txt").symlink_to(secret)
    with pytest.raises(InputError, match=r"x\.txt: a symbolic link that leads outside"):
        read_documents([str(alone)])
    # With --strict, one such link stops the run.
    with pytest.raises(InputError, match=r"x\.txt: a symbolic link that leads outside"):
        read_documents([str(inbox)], strict=True)
    # A file named on its own is read wherever it leads: the user chose it.
    assert read_documents([str(inbox / "x.txt")]).documents[0].source == str(inbox / "x.txt")


def _big_text(megabytes: int) -> bytes:
    paragraph = ("The lamp was lit at dusk and the keeper climbed the stairs again. " * 12).strip() + "\n\n"
    return (paragraph * (megabytes * (1 << 20) // len(paragraph) + 1)).encode()


def test_s3_text_is_streamed_not_held_whole(s3_bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(text_stream, "BLOCK", 1 << 20)  # a working set of a few MiB, so the object's size shows
    data = _big_text(40)
    boto3.client("s3").put_object(Bucket=s3_bucket, Key="big/book.txt", Body=data)
    uri = f"s3://{s3_bucket}/big/book.txt"
    s3_client.client()  # made before measuring: the client's service model alone is several MiB
    tracemalloc.start()
    try:
        doc = read_document(uri)
        n = sum(1 for _ in doc.paragraphs)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert n == data.count(b"\n\n")
    # Before: the 40 MB object was read whole in each pass (and sliced into blocks beside it).
    assert peak < 16 << 20, f"peak {peak / 2**20:.1f} MiB for a 40 MiB object"


def test_the_second_pass_reads_the_version_the_first_one_read(s3_bucket: str) -> None:
    s3 = boto3.client("s3")
    s3.put_object(Bucket=s3_bucket, Key="book.txt", Body=b"The keeper climbed the stairs.")
    uri = f"s3://{s3_bucket}/book.txt"
    scan = scan_text(uri, uri)
    s3.put_object(Bucket=s3_bucket, Key="book.txt", Body=b"Something else was put here meanwhile.")
    # Before: the second pass read the new text, under the first text's digest (its document id).
    with pytest.raises(InputError, match="replaced while it was being read"):
        list(text_paragraphs(uri, scan))

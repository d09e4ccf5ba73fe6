"""Model files by URI: content-addressed cache, no second download, safe under concurrent workers, real S3."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import uuid
from pathlib import Path

import boto3
import pytest

from tasks.backends.model_cache import ModelCache
from tasks.backends.piper_voices import BUNDLED_VOICES, voice_files
from tasks.backends.registry import get_backend
from tasks.config import validate_settings
from tasks.errors import ModelError


def test_file_uri_is_cached_and_not_copied_again(tmp_path: Path) -> None:
    src = tmp_path / "model.bin"
    src.write_bytes(b"weights" * 1000)
    cache = ModelCache(tmp_path / "cache")
    first = cache.fetch(src.as_uri())
    assert first.read_bytes() == src.read_bytes()
    assert first.name == hashlib.sha256(src.read_bytes()).hexdigest()
    again = ModelCache(tmp_path / "cache")
    assert again.fetch(src.as_uri()) == first and again.downloads == 0
    src.write_bytes(b"new weights")  # the source changed: fetched again
    assert again.fetch(src.as_uri()).read_bytes() == b"new weights" and again.downloads == 1


def test_known_digest_needs_no_remote_and_a_wrong_one_is_refused(tmp_path: Path) -> None:
    src = tmp_path / "model.bin"
    src.write_bytes(b"abc")
    digest = hashlib.sha256(b"abc").hexdigest()
    cache = ModelCache(tmp_path / "cache")
    cache.fetch(src.as_uri(), digest)
    src.unlink()  # gone at the source: the verified cached copy is still served
    assert cache.fetch(src.as_uri(), digest).read_bytes() == b"abc"
    other = tmp_path / "other.bin"
    other.write_bytes(b"truncated")
    with pytest.raises(ModelError, match="checksum mismatch") as err:
        cache.fetch(other.as_uri(), "0" * 64)
    assert "expected sha256 " + "0" * 64 in str(err.value)
    assert not list((tmp_path / "cache" / "tmp").iterdir())  # nothing half-written left behind


CONCURRENT = r"""
import json, sys
from pathlib import Path
from tasks.backends.model_cache import ModelCache
cache = ModelCache(Path(sys.argv[1]))
path = cache.fetch(sys.argv[2])
print(json.dumps({"path": str(path), "downloads": cache.downloads}))
"""


def test_concurrent_workers_download_once_and_never_corrupt(tmp_path: Path) -> None:
    src = tmp_path / "big.bin"
    src.write_bytes(bytes(range(256)) * 200_000)  # 51 MB
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CONCURRENT, str(tmp_path / "cache"), src.as_uri()],
            stdout=subprocess.PIPE,
            text=True,
            cwd=Path(__file__).resolve().parent.parent,
        )
        for _ in range(4)
    ]
    reports = [json.loads(p.communicate(timeout=120)[0]) for p in procs]
    assert len({r["path"] for r in reports}) == 1
    assert sum(r["downloads"] for r in reports) == 1
    assert Path(reports[0]["path"]).read_bytes() == src.read_bytes()
    assert len(list((tmp_path / "cache" / "objects").iterdir())) == 1


def _upload_joe(prefix: str, sidecar: bool = True) -> str:
    s3 = boto3.client("s3")
    bucket = "models-" + uuid.uuid4().hex[:8]
    s3.create_bucket(Bucket=bucket)
    model, config, _ = voice_files("joe")
    s3.put_object(Bucket=bucket, Key=f"{prefix}/joe.onnx", Body=model.read_bytes())
    s3.put_object(Bucket=bucket, Key=f"{prefix}/joe.onnx.json", Body=config.read_bytes())
    if sidecar:
        s3.put_object(Bucket=bucket, Key=f"{prefix}/joe.onnx.sha256", Body=BUNDLED_VOICES["joe"]["model_sha256"])
    return f"s3://{bucket}/{prefix}/joe.onnx"


def test_piper_voice_from_s3_is_verified_and_cached(s3_env: str) -> None:
    uri = _upload_joe("voices/en")
    settings = validate_settings({"synthesis": {"voice": uri}})
    info = get_backend("piper").resolve(settings.synthesis)
    assert info.model_sha256 == BUNDLED_VOICES["joe"]["model_sha256"]
    synth = get_backend("piper").load(info, settings.synthesis)
    (audio,) = synth.synthesize(["Fetched from object storage."])
    assert audio.size > 0.5 * info.sample_rate
    cache = ModelCache()
    before = {p.name for p in (cache.root / "objects").iterdir()}
    get_backend("piper").resolve(settings.synthesis)
    assert {p.name for p in (cache.root / "objects").iterdir()} == before  # nothing fetched twice


def test_corrupt_voice_on_s3_is_refused(s3_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A fresh cache: with a verified copy cached, the sidecar's digest alone would serve it (no download).
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    uri = _upload_joe("broken")
    bucket, key = uri[5:].split("/", 1)
    boto3.client("s3").put_object(Bucket=bucket, Key=key, Body=b"truncated model")
    with pytest.raises(ModelError, match="checksum mismatch"):
        get_backend("piper").resolve(validate_settings({"synthesis": {"voice": uri}}).synthesis)


def test_vits_checkpoint_from_an_s3_prefix(s3_env: str, tiny_vits: Path) -> None:
    s3 = boto3.client("s3")
    bucket = "ckpt-" + uuid.uuid4().hex[:8]
    s3.create_bucket(Bucket=bucket)
    for p in tiny_vits.iterdir():
        s3.put_object(Bucket=bucket, Key=f"tiny/{p.name}", Body=p.read_bytes())
    settings = validate_settings({"synthesis": {"backend": "vits", "voice": f"s3://{bucket}/tiny/"}})
    info = get_backend("vits").resolve(settings.synthesis)
    local = get_backend("vits").resolve(
        validate_settings({"synthesis": {"backend": "vits", "voice": str(tiny_vits)}}).synthesis
    )
    assert info.identity == local.identity  # same bytes, same chunk ids, wherever the checkpoint lives


def test_unreachable_endpoint_is_a_clear_error_without_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDSECRETID")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "super-secret-value")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with pytest.raises(ModelError) as err:
        get_backend("piper").resolve(validate_settings({"synthesis": {"voice": "s3://models/joe.onnx"}}).synthesis)
    text = err.value.user_message()
    assert "s3://models/joe.onnx" in text and "cannot reach the S3 endpoint" in text
    assert "super-secret-value" not in text and "AKIDSECRETID" not in text


def test_an_expected_digest_that_is_not_hex_never_names_another_file(tmp_path: Path) -> None:
    # Cached objects are named by digest: "../../elsewhere" as a digest used to resolve to tmp_path/elsewhere.
    (tmp_path / "elsewhere").write_bytes(b"not a model")
    src = tmp_path / "model.bin"
    src.write_bytes(b"weights")
    cache = ModelCache(tmp_path / "cache")
    with pytest.raises(ModelError, match="not 64 hex digits"):
        cache.fetch(src.as_uri(), "../../elsewhere")


def test_kokoro_model_and_voices_from_s3_are_verified_and_give_the_same_chunk_ids(
    s3_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tasks.backends.kokoro_files import kokoro_ja_model, voices_file

    s3 = boto3.client("s3")
    bucket = "kokoro-" + uuid.uuid4().hex[:8]
    s3.create_bucket(Bucket=bucket)
    (model, model_sha), (voices, voices_sha) = kokoro_ja_model(), voices_file("")
    for path, name, digest in ((model, "kokoro-v1.0.int8.onnx", model_sha), (voices, "voices-ja.bin", voices_sha)):
        s3.put_object(Bucket=bucket, Key=f"kokoro/{name}", Body=path.read_bytes())
        s3.put_object(Bucket=bucket, Key=f"kokoro/{name}.sha256", Body=f"{digest}  {name}\n".encode())
    remote = {
        "kokoro_model": f"s3://{bucket}/kokoro/kokoro-v1.0.int8.onnx",
        "kokoro_voices": f"s3://{bucket}/kokoro/voices-ja.bin",
    }
    settings = validate_settings({"synthesis": {"backend": "kokoro", "voice": "jf_alpha", **remote}}).synthesis
    info = get_backend("kokoro").resolve(settings)
    local = get_backend("kokoro").resolve(
        validate_settings({"synthesis": {"backend": "kokoro", "voice": "jf_alpha"}}).synthesis
    )
    assert info.model_sha256 == model_sha and info.identity == local.identity  # same bytes, same chunk ids
    (audio,) = get_backend("kokoro").load(info, settings).synthesize(["ストレージから来ました。"])
    assert audio.size > 0.5 * info.sample_rate
    s3.put_object(Bucket=bucket, Key="kokoro/voices-ja.bin", Body=b"cut short")  # its sidecar still says the old
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # no verified copy cached: it is downloaded again
    with pytest.raises(ModelError, match=r"voices-ja\.bin: checksum mismatch"):
        get_backend("kokoro").resolve(settings)

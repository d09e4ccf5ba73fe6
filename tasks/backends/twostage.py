"""Two-stage voices on ONNX Runtime: text to phoneme ids (a frontend), ids to a mel spectrogram (the acoustic
model), the mel spectrogram to a waveform (the vocoder). The family of FastSpeech2 + MelGAN, Sambert + HiFi-GAN.

A voice is a folder: `voice.json` (sample rate, hop length, frontend, speakers, file names, licence), the two ONNX
graphs, the frontend's `symbols.json` and `SHA256SUMS`, every file verified before use. `zh-baker` is built into
the voice folder by `voxbatch voices install zh-baker` (tasks.backends.voice_install); any such folder works by
path or by `s3://` / `file://` URI through the model cache.

Each clause goes through both stages and the clauses of a chunk are joined with a short pause, as the voice
was trained. On the CPU one clause at a time (measured fastest: batching pads, and attention grows with the
longest clause). With `batch_size` > 1 or on CUDA the vocoder, the larger stage, runs a batch's clauses padded
together (`vocoder_batch.onnx`, made at install), bucketed by length, each cut to its mel length times the hop:
the same samples as one at a time (see `_tail`). The acoustic model's graph only takes one item (its length
regulator reads item 0), so it runs clause by clause.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tasks.backends import model_cache
from tasks.backends.buckets import length_buckets
from tasks.backends.checksums import digest_of
from tasks.backends.devices import cuda_device, library_versions
from tasks.backends.onnx_session import onnx_cuda, onnx_session_setup
from tasks.backends.synthesizer import SynthOptions, VoiceInfo, laid_end_to_end
from tasks.config import SynthesisSettings
from tasks.errors import ModelError

BACKEND_VERSION = 1  # bump when the way audio is made from the same files changes
MIN_VOCODER_FRAMES = 10  # the vocoder's reflection padding needs at least this many frames
TAIL_FRAMES = 16  # frames repeated after each mel before vocoding (see _tail): the fewest that measured exact


def _voice_folder(voice: str) -> Path:
    """An installed voice's name, a local folder, or an s3:// / file:// folder fetched through the cache."""
    from tasks.backends import voice_install

    if model_cache.is_remote(voice):
        return model_cache.fetch_folder(voice, checksums=voice_install.CHECKSUMS, required=True)
    if "/" not in voice and not voice.startswith("."):
        folder = voice_install.voices_dir() / voice
        if not folder.exists():
            hint = (
                f"voxbatch voices install {voice}"
                if voice in voice_install.INSTALLABLE
                else f"installable: {', '.join(voice_install.INSTALLABLE)}; or give the voice's folder"
            )
            raise ModelError(f"synthesis.voice: voice {voice!r} is not installed ({folder} not found)", hint=hint)
        return folder
    return Path(voice).expanduser()


def read_config(folder: Path) -> dict[str, Any]:
    path = folder / "voice.json"
    try:
        config: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        missing = [
            k for k in ("sample_rate", "hop_length", "acoustic", "vocoder", "symbols", "frontend") if k not in config
        ]
        if missing:
            raise KeyError(missing[0])
        return config
    except FileNotFoundError as exc:
        raise ModelError(f"{path}: not found; a two-stage voice folder needs voice.json") from exc
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelError(f"{path}: not a valid two-stage voice config (missing or bad {exc})") from exc


def _tail(mel: np.ndarray, frames: int = 0) -> np.ndarray:
    """The mel spectrogram with its last frame (its closing silence) repeated: TAIL_FRAMES at least.

    Alone or padded in a batch, the vocoder then sees the same frames past each item's end for as far as its
    receptive field reaches, so batched audio equals one-at-a-time audio (the cut removes the tail)."""
    return np.pad(mel, ((0, max(frames, TAIL_FRAMES)), (0, 0)), mode="edge")


class TwoStageBackend:
    name = "twostage"

    def resolve(self, settings: SynthesisSettings) -> VoiceInfo:
        from tasks.backends import voice_install

        folder = _voice_folder(settings.voice)
        if not folder.is_dir():
            raise ModelError(f"synthesis.voice: {settings.voice!r} is not a two-stage voice folder")
        try:
            sums = voice_install.verify_folder(folder)
        except ModelError as exc:
            fix = f"voxbatch voices install --force {folder.name}" if folder.name in voice_install.INSTALLABLE else ""
            raise ModelError(str(exc), hint=fix or "copy the voice folder again from its source") from exc
        config = read_config(folder)
        if config["frontend"] != "baker":
            raise ModelError(f"{folder / 'voice.json'}: unknown frontend {config['frontend']!r} (known: baker)")
        source = config.get("provenance") or sums  # see tasks.backends.voice_install: what the audio follows
        speakers = config.get("speakers") or {}
        return VoiceInfo(
            backend="twostage",
            name=str(config.get("name") or folder.name),
            model_path=str(folder / config["acoustic"]),
            model_sha256=sums.get(config["acoustic"], ""),
            sample_rate=int(config["sample_rate"]),
            languages=tuple(config.get("languages") or ["zh"]),
            identity=digest_of("twostage", BACKEND_VERSION, source, sums.get(config["symbols"])),
            speakers=tuple(speakers) if len(speakers) > 1 else (),
            licence=str(config.get("licence", "")),
        )

    def load(self, info: VoiceInfo, settings: SynthesisSettings) -> TwoStageSynthesizer:
        use_cuda = onnx_cuda(settings)
        folder = Path(info.model_path).parent
        synth = TwoStageSynthesizer(
            info=info,
            folder=folder,
            config=read_config(folder),
            threads=settings.threads,
            use_cuda=use_cuda,
            batched=use_cuda or settings.batch_size > 1,
            ratios=(settings.length_scale, settings.pitch_scale, settings.energy_scale),
        )
        synth.open()
        return synth


@dataclass
class TwoStageSynthesizer:
    info: VoiceInfo
    folder: Path
    config: dict[str, Any]
    threads: int = 0
    use_cuda: bool = False
    batched: bool = False
    ratios: tuple[float, float, float] = (1.0, 1.0, 1.0)  # speed (a length scale: >1 slower), pitch, energy
    device: str = "cpu"
    _sessions: dict[str, Any] = field(default_factory=dict)
    frontend: Any = None
    sampling: bool = False  # converted without its dropout: the same text always gives the same audio
    lanes: int = 1

    @property
    def supports_batching(self) -> bool:
        return self.batched

    def open(self) -> None:
        import onnxruntime as ort

        from tasks.backends.zh_frontend import BakerFrontend

        options, providers = onnx_session_setup(self.threads, self.use_cuda)
        if self.use_cuda:
            self.device = "cuda:0"
        names = {"acoustic": self.config["acoustic"], "vocoder": self.config["vocoder"]}
        if self.batched and (self.folder / "vocoder_batch.onnx").exists():
            names["vocoder_batch"] = "vocoder_batch.onnx"
        for role, name in names.items():
            path = self.folder / name
            try:
                self._sessions[role] = ort.InferenceSession(str(path), sess_options=options, providers=providers)
            except Exception as exc:  # onnxruntime raises its own pybind types (Fail, InvalidProtobuf, ...)
                raise ModelError(
                    f"{path}: ONNX Runtime cannot load the {role} model: {str(exc).splitlines()[0][:300]}",
                    hint="the file is probably truncated; install or copy the voice again",
                ) from exc
        self.frontend = BakerFrontend(self.folder / self.config["symbols"])

    def cost(self, text: str) -> int:
        return int(self.frontend.cost(text))

    def _speaker(self, options: SynthOptions | None) -> int:
        speakers = self.config.get("speakers") or {}
        if options and options.speaker:
            name = options.speaker
            return int(speakers[name]) if name in speakers else int(name)
        return int(next(iter(speakers.values()), 0))

    def mel(self, ids: list[int], speaker: int, length_scale: float | None = None) -> np.ndarray:
        """One clause's mel spectrogram [frames, mels] (the acoustic model's output after its postnet)."""
        speed, pitch, energy = self.ratios
        feeds = {
            "input_ids": np.asarray([ids], dtype=np.int32),
            "speaker_ids": np.asarray([speaker], dtype=np.int32),
            "speed_ratios": np.asarray([length_scale or speed], dtype=np.float32),
            "f0_ratios": np.asarray([pitch], dtype=np.float32),
            "energy_ratios": np.asarray([energy], dtype=np.float32),
        }
        mel = self._sessions["acoustic"].run(None, feeds)[1][0]
        if len(mel) < MIN_VOCODER_FRAMES:
            mel = np.pad(mel, ((0, MIN_VOCODER_FRAMES - len(mel)), (0, 0)), mode="edge")
        return np.asarray(mel, dtype=np.float32)

    def vocode(self, mels: list[np.ndarray]) -> list[np.ndarray]:
        """Waveforms of mel spectrograms: padded into one run where batched, else one by one."""
        hop = int(self.config["hop_length"])
        if "vocoder_batch" not in self._sessions or len(mels) == 1:
            session = self._sessions["vocoder"]
            return [session.run(None, {"mels": _tail(m)[None]})[0].reshape(-1)[: len(m) * hop] for m in mels]
        out: list[np.ndarray] = [np.zeros(0, np.float32)] * len(mels)
        for group in length_buckets([len(m) for m in mels]):
            if len(group) == 1:
                out[group[0]] = self.vocode([mels[group[0]]])[0]
                continue
            width = len(mels[group[0]]) + TAIL_FRAMES
            batch = np.stack([_tail(mels[i], width - len(mels[i])) for i in group])
            audio = self._sessions["vocoder_batch"].run(None, {"mels": batch})[0].reshape(len(group), -1)
            for row, i in enumerate(group):
                out[i] = audio[row, : len(mels[i]) * hop]
        return out

    def synthesize(self, texts: Sequence[str], options: SynthOptions | None = None) -> list[np.ndarray]:
        """Each text's clauses joined by the clause pause, marked where each clause begins."""
        speaker = self._speaker(options)
        scale = options.length_scale if options else None
        clauses = [self.frontend.clauses(t) for t in texts]
        mels = [self.mel(c.ids, speaker, scale) for items in clauses for c in items]
        waves = iter(self.vocode(mels)) if mels else iter(())
        pause = int(float(self.config.get("clause_pause_seconds", 0.2)) * self.info.sample_rate)
        return [
            laid_end_to_end([(np.clip(next(waves), -1.0, 1.0).astype(np.float32), pause, c.start) for c in items])
            for items in clauses
        ]

    def release(self) -> None:
        """After an out-of-memory error: ONNX Runtime gives arena memory back on a new session."""
        if self.use_cuda:
            self._sessions.clear()
            self.open()

    def memory_key(self) -> dict[str, Any]:
        name, total = cuda_device() if self.use_cuda else ("cpu", 0)
        return {
            "backend": "twostage",
            "identity": self.info.identity,
            "device": name,
            "memory": total,
            "dtype": "fp32",
            "batched": self.batched,
            "versions": library_versions("onnxruntime", "onnxruntime-gpu"),
        }

    def close(self) -> None:
        self._sessions.clear()

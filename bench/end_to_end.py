"""`voxbatch bench`: voxbatch against the plain loop over the same voice, on this machine, in one invocation.

End to end: the same chunk texts through `voxbatch run` and through `bench.plain_loop` (load the voice,
synthesize, encode FLAC, write), each a fresh process, alternating, several rounds. Both are watched from the
outside the same way: wall time, time until the first audio file exists, the audio's seconds per wall second
with start-up and in steady state (from the first file to the last), and peak memory (RSS of the process, and
of it with its children: `voxbatch run` starts a temporary Prefect API without a server). Then the engine
under injected out-of-memory errors, and planning throughput.
"""

from __future__ import annotations

import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import soundfile as sf

# Sentences of our own (no corpus ships with a fresh install): shuffled into paragraphs for the long case.
SENTENCES = [
    "The ferry left the harbour a little after seven, its deck crowded with bicycles and crates of apples.",
    "Nobody on the island could remember a winter as mild as this one.",
    "She kept the letters in a tin box under the stairs, tied with blue string.",
    "By noon the fog had lifted, and the whole coast lay bright and sharp against the sea.",
    "He counted the steps to the top of the tower: one hundred and twelve, as always.",
    "The radio promised rain, but the sky stayed stubbornly clear all afternoon.",
    "Children ran along the breakwater, shouting at the gulls that circled overhead.",
    "In the evening the lamps came on one by one along the narrow street.",
    "Her grandfather had built the boat himself, plank by plank, over three long summers.",
    "The market smelled of bread, wet rope and oranges.",
    "When the tide went out, the rocks were covered with tiny crabs and strands of weed.",
    "They argued about the map for an hour before anyone thought to ask the fisherman.",
]
ONE_SENTENCE = "The lighthouse keeper climbed the stairs at dusk and lit the great lamp."


def text_of_size(kb: int, seed: int = 7, numbered: bool = True) -> str:
    """About `kb` KB of prose; `numbered`: each paragraph starts with its day number (so no two chunks are alike;
    digits take the slower normalization path when planning)."""
    rng = random.Random(seed)
    paragraphs: list[str] = []
    size = 0
    while size < kb * 1000:
        # One chunk per paragraph (under 300 characters), each made new by its day number: no two chunks share
        # audio, which voxbatch would store once and the loop write twice.
        day = [f"On day {len(paragraphs) + 1} of the log:"] if numbered else []
        paragraph = " ".join([*day, *rng.sample(SENTENCES, k=2)])
        paragraphs.append(paragraph)
        size += len(paragraph) + 2
    return "\n\n".join(paragraphs) + "\n"


def _tree(pid: int) -> list[int]:
    out = [pid]
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                for child in f.read().split():
                    out += _tree(int(child))
    except OSError:
        pass
    return out


def _rss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


@dataclass
class Sample:
    wall: float
    first_audio: float | None  # seconds from start until the first audio file existed
    audio_seconds: float
    steady: float | None  # audio seconds per wall second between the first and the last file
    peak_main: int  # bytes
    peak_tree: int

    @property
    def with_startup(self) -> float:
        return self.audio_seconds / self.wall if self.wall else 0.0


def watch(cmd: list[str], audio_dir: Path, env: dict[str, str] | None = None) -> Sample:
    """Run a command to its end, sampling memory and the first audio file every 20 ms."""
    started = time.perf_counter()
    process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    peaks = [0, 0]
    first: list[float] = []

    def sample() -> None:
        while process.poll() is None:
            pids = _tree(process.pid)
            sizes = [_rss(p) for p in pids]
            peaks[0], peaks[1] = max(peaks[0], sizes[0]), max(peaks[1], sum(sizes))
            if not first and audio_dir.is_dir() and any(True for _ in audio_dir.rglob("*.flac")):
                first.append(time.perf_counter() - started)
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, err = process.communicate()
    wall = time.perf_counter() - started
    sampler.join()
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:3])} … exited {process.returncode}: {err.decode()[-800:]}")
    files = sorted(audio_dir.rglob("*.flac"), key=lambda p: p.stat().st_mtime)
    durations = [sf.info(p).duration for p in files]
    steady = None
    if len(files) > 2:
        span = files[-1].stat().st_mtime - files[0].stat().st_mtime
        steady = sum(durations[1:]) / span if span > 0 else None
    return Sample(wall, first[0] if first else None, sum(durations), steady, peaks[0], peaks[1])


def chunk_texts(text_file: Path) -> list[str]:
    """What voxbatch will synthesize for this file with default settings: the loop gets the same texts."""
    from tasks.config import validate_settings
    from tasks.plan.planner import prepare

    plan = prepare([str(text_file)], validate_settings({})).plan
    return [c.spoken_text or c.text for c in plan.chunks]


@dataclass
class Case:
    name: str
    loop: list[Sample] = field(default_factory=list)
    run: list[Sample] = field(default_factory=list)
    served: list[Sample] = field(default_factory=list)  # voxbatch run with a Prefect server already up


def end_to_end(name: str, text: str, rounds: int, work: Path, voxbatch: str, server: str = "") -> Case:
    """Alternating rounds of the loop, `voxbatch run` alone (its temporary Prefect API), and, given a `server`
    URL, `voxbatch run` reporting to that server (no API to boot)."""
    folder = work / name.replace(" ", "-")
    folder.mkdir(parents=True)
    text_file = folder / "input.txt"
    text_file.write_text(text)
    texts_file = folder / "texts.json"
    texts_file.write_text(json.dumps(chunk_texts(text_file)))
    case = Case(name)
    env = {k: v for k, v in os.environ.items() if k not in ("VOXBATCH_FAULTS", "PREFECT_API_URL")}
    kinds = ("loop", "run", "served") if server else ("loop", "run")
    for r in range(rounds):
        for which in kinds if r % 2 == 0 else kinds[::-1]:  # alternate: drift hits all alike
            out = folder / f"{which}-{r}"
            if which == "loop":
                cmd = [sys.executable, "-m", "bench.plain_loop", str(texts_file), str(out)]
                case.loop.append(watch(cmd, out, env))
            else:
                cmd = [voxbatch, "run", str(text_file), "--out", str(out)]
                served = which == "served"
                samples = case.served if served else case.run
                samples.append(watch(cmd, out / "audio", {**env, "PREFECT_API_URL": server} if served else env))
    return case


def _median(samples: list[Sample], pick: Callable[[Sample], float | None]) -> float | None:
    values = [v for s in samples if (v := pick(s)) is not None]
    return statistics.median(values) if values else None


MEASURES: list[tuple[str, Callable[[Sample], float | None], str, str]] = [
    # (measure, what of a sample, goal for one sentence, goal for the long text)
    ("wall s", lambda s: s.wall, "", ""),
    ("first audio file, s after start", lambda s: s.first_audio, "<= 5 s", ""),
    ("audio s per wall s, start-up included", lambda s: s.with_startup, "", ">= 0.90 of the loop"),
    ("audio s per wall s, steady (first file to last)", lambda s: s.steady, "", ">= 0.95 of the loop"),
    ("peak memory MB, the process", lambda s: s.peak_main / (1 << 20), "<= 2x the loop", ""),
    ("peak memory MB, with its children", lambda s: s.peak_tree / (1 << 20), "", ""),
]


def case_rows(case: Case) -> list[tuple[str, float | None, float | None, float | None, str]]:
    """(measure, plain loop, voxbatch, voxbatch with a server, goal): medians over the rounds."""
    return [
        (
            measure,
            _median(case.loop, pick),
            _median(case.run, pick),
            _median(case.served, pick),
            one_goal if case.name == "one sentence" else long_goal,
        )
        for measure, pick, one_goal, long_goal in MEASURES
    ]


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def table(cases: list[Case]) -> str:
    """voxbatch alone (its temporary Prefect API) and, where measured, with a Prefect server already running."""
    served = any(case.served for case in cases)
    extra = f"{'server up':>12}{'ratio':>8}" if served else ""
    lines = [f"{'case':14}{'measure':50}{'plain loop':>12}{'voxbatch':>12}{'ratio':>8}{extra}  goal", "-" * 130]
    for case in cases:
        for measure, loop, run, with_server, goal in case_rows(case):
            ratio = run / loop if loop and run is not None else None
            line = f"{case.name:14}{measure:50}{_fmt(loop):>12}{_fmt(run):>12}{_fmt(ratio):>8}"
            if served:
                server_ratio = with_server / loop if loop and with_server is not None else None
                line += f"{_fmt(with_server):>12}{_fmt(server_ratio):>8}"
            lines.append(f"{line}  {goal}")
    return "\n".join(lines)


def engine_speed(synth: Any, texts: list[str], faults: str, batch: int) -> tuple[float, int]:
    """(audio seconds per wall second, OOMs) of the engine over `texts` with VOXBATCH_FAULTS-style `faults`, as
    the worker runs it on the CPU (budget 4096, clause splits, young-generation collections)."""
    import gc

    from tasks.shard.engine import BudgetState, Engine, EngineConfig
    from tasks.shard.faults import parse
    from tasks.shard.synthesis import split_for_retry

    engine = Engine(
        synth.synthesize,
        synth.cost,
        BudgetState(4096.0),
        EngineConfig(max_batch_size=batch),
        release=synth.release,
        split=split_for_retry,
        faults=parse(faults),
        collect=lambda: gc.collect(1),
    )
    t0 = time.perf_counter()
    results = list(engine.run(list(enumerate(texts))))
    wall = time.perf_counter() - t0
    if any(r.audio is None for r in results):
        raise RuntimeError(f"a chunk failed under faults {faults!r}: {next(r.error for r in results if r.error)}")
    return sum(r.audio.size for r in results if r.audio is not None) / synth.info.sample_rate / wall, engine.stats.ooms


def engine_under_ooms(chunks: int = 40, rates: tuple[float, ...] = (0.0, 0.05, 0.30), rounds: int = 2) -> list[str]:
    """Piper through the engine (one chunk per call on a CPU) with injected OOMs: throughput against none; and
    how many batches the budget takes to settle under a hard memory limit (tone backend, batches up to 32)."""
    from tasks.backends.registry import get_backend
    from tasks.config import validate_settings
    from tasks.shard.engine import BudgetState, Engine, EngineConfig
    from tasks.shard.faults import parse

    texts = [SENTENCES[i % len(SENTENCES)] + f" Entry {i}." for i in range(chunks)]
    s = validate_settings({"synthesis": {"lanes": 1}}).synthesis  # one session on every thread: one chunk a call
    piper = get_backend("piper")
    synth = piper.load(piper.resolve(s), s)
    synth.synthesize(texts[:1])

    def speed_at(rate: float, seed: int) -> tuple[float, int]:
        return engine_speed(synth, texts, f"oom_rate={rate},seed={seed}" if rate else "", batch=1)

    measured: dict[float, list[tuple[float, int]]] = {rate: [] for rate in rates}
    for r in range(rounds):  # alternating order, median of the rounds: this machine drifts
        for rate in rates if r % 2 == 0 else tuple(reversed(rates)):
            measured[rate].append(speed_at(rate, r))
    base = statistics.median(s for s, _ in measured[rates[0]])
    lines = []
    for rate in rates:
        speed = statistics.median(s for s, _ in measured[rate])
        ooms = statistics.median(n for _, n in measured[rate])
        lines.append(
            f"piper, {rate:4.0%} of batches OOM: {speed:6.1f}x real time, {ooms:.0f} OOMs a round, "
            f"{speed / base:.2f} of no faults"
        )
    tone = get_backend("tone")
    ts = validate_settings({"synthesis": {"backend": "tone"}}).synthesis
    tone_synth = tone.load(tone.resolve(ts), ts)
    limit = 3000
    engine = Engine(
        tone_synth.synthesize,
        tone_synth.cost,
        BudgetState(20000.0),
        EngineConfig(max_batch_size=32),
        faults=parse(f"memory_budget={limit}"),
    )
    list(engine.run(list(enumerate(texts * 40))))
    final = engine.state.budget
    # the batch after which the budget stayed within 10% of where it ended
    changes = engine.stats.trajectory
    settled = next(
        (n for k, (n, _) in enumerate(changes) if all(abs(b - final) <= 0.1 * final for _, b in changes[k:])), 0
    )
    lines.append(
        f"budget under a hard limit of {limit} (padded cost): started at 20000, ended at {final:.0f} "
        f"({final / limit:.0%} of the limit), within 10% of that from batch {settled} of {engine.stats.batches} on, "
        f"{engine.stats.ooms} OOMs"
    )
    return lines


def planning_throughput(mb: int = 5) -> str:
    from tasks.config import validate_settings
    from tasks.plan.planner import prepare

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "corpus.txt"
        path.write_text(text_of_size(mb * 1000, numbered=False))
        t0 = time.perf_counter()
        plan = prepare([str(path)], validate_settings({})).plan
        seconds = time.perf_counter() - t0
    return f"planning {mb} MB of plain prose: {mb / seconds:.1f} MB/s ({plan.num_chunks} chunks)"


def run_bench(
    rounds: int, kb: int, skip_engine: bool, server_url: str = "", printer: Callable[[str], None] = print
) -> list[Case]:
    """`server_url`: a Prefect API already up; voxbatch also runs against it, as with a configured server."""
    voxbatch = str(Path(sys.executable).parent / "voxbatch")
    cases = []
    with tempfile.TemporaryDirectory(prefix="voxbatch-bench-") as tmp:
        work = Path(tmp)
        for name, text in (("one sentence", ONE_SENTENCE + "\n"), (f"{kb} KB text", text_of_size(kb))):
            also = ", voxbatch run with a Prefect server up" if server_url else ""
            printer(f"… {name}: {rounds} round(s) of the plain loop, voxbatch run{also}; alternating")
            cases.append(end_to_end(name, text, rounds, work, voxbatch, server_url))
    printer("")
    printer(table(cases))
    if not skip_engine:
        printer("")
        for line in engine_under_ooms():
            printer(line)
        printer(planning_throughput())
    return cases

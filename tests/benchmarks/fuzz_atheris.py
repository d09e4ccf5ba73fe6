"""Coverage-guided fuzzing of planning and the settings loader with atheris (libFuzzer for Python).

Run: .venv/bin/pip install atheris==3.0.0   (once; a wheel from PyPI, not a voxbatch dependency)
     nice -n 10 .venv/bin/python tests/benchmarks/fuzz_atheris.py [--runs 20000] [--seconds 600] [--work DIR]

bench_fuzz.py mutates at random; this one lets libFuzzer steer by the branches voxbatch's own code (`tasks`)
takes, from the same seed files (tests/fuzz_targets.py): an input's first byte picks its kind (a text, markdown,
EPUB, table or settings suffix), the rest are its bytes. A crash is any exception that is not voxbatch's own
(VoxbatchError): libFuzzer stops, prints it and saves the input as crash-* in the current folder. At the end
libFuzzer prints its final statistics: `stat::number_of_executed_units` is the count of inputs tried.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

try:
    import atheris
except ImportError:
    sys.exit("fuzz_atheris: atheris is not installed: .venv/bin/pip install atheris==3.0.0")

# Everything planning imports, imported here so that libFuzzer sees its branches (plan_bytes imports lazily).
with atheris.instrument_imports(include=["tasks"]):
    import tasks.plan.planner  # noqa: F401
    from tests.fuzz_targets import CONFIG_SUFFIXES, INPUT_SUFFIXES, load_config_bytes, plan_bytes, seeds

KINDS = tuple(INPUT_SUFFIXES) + tuple(CONFIG_SUFFIXES)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20_000, help="inputs to try (default 20,000)")
    parser.add_argument("--seconds", type=int, default=600, help="stop after this long (default 600)")
    parser.add_argument("--work", type=Path, help="working folder (crash-* inputs land here); default a new one")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="voxbatch-atheris-"))
    folder, corpus = work / "inputs", work / "corpus"
    folder.mkdir(parents=True, exist_ok=True)
    corpus.mkdir(exist_ok=True)
    for suffix, files in seeds(folder).items():  # the seed files, each behind the byte that names its kind
        if suffix in KINDS:
            for i, data in enumerate(files):
                (corpus / f"seed-{suffix.lstrip('.')}-{i}").write_bytes(bytes([KINDS.index(suffix)]) + data)

    def one_input(data: bytes) -> None:
        if not data:
            return
        suffix, body = KINDS[data[0] % len(KINDS)], data[1:]
        if suffix in CONFIG_SUFFIXES:
            load_config_bytes(body, suffix, folder)
        else:
            plan_bytes(body, suffix, folder)

    libfuzzer = [sys.argv[0], f"-runs={args.runs}", f"-max_total_time={args.seconds}", "-rss_limit_mb=4096"]
    libfuzzer += ["-max_len=65536", "-print_final_stats=1", str(corpus)]
    atheris.Setup(libfuzzer, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()

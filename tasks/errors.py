"""voxbatch's own exceptions; third-party errors are translated into these at module boundaries.

VoxbatchError               anything voxbatch reports to a user                          (exit 1)
├── InputError              an input file is missing, empty, unreadable or not text      (exit 2)
├── ConfigError             a setting has an unknown key, a wrong type or a bad value    (exit 2)
├── ModelError              a voice/model file is missing, corrupt or fails to load      (exit 4)
├── StorageError            the output location cannot be read or written                (exit 4)
├── DeviceOutOfMemory       a batch did not fit in memory: the engine backs off          (exit 3)
├── DeviceFatal             the device is unusable: commit what is done, stop the worker (exit 4)
└── RunIncomplete           the run still has shards that are not committed              (exit 5)

A chunk that cannot be made is not an exception: it becomes a `failed` manifest row with its reason (exit 3).
Which library errors are out-of-memory or fatal device errors is decided in tasks.shard.oom.
"""

from __future__ import annotations


class VoxbatchError(Exception):
    """Base class: a message meant for the user, plus the process exit code it maps to."""

    exit_code = 1
    # Worth retrying later with nothing changed (an unreachable endpoint); orchestration retries only these.
    transient = False

    def __init__(self, message: str, *, hint: str | None = None, transient: bool | None = None) -> None:
        super().__init__(message)
        self.hint = hint
        if transient is not None:
            self.transient = transient

    def user_message(self) -> str:
        text = str(self)
        return f"{text}\n  hint: {self.hint}" if self.hint else text


class InputError(VoxbatchError):
    exit_code = 2


class ConfigError(VoxbatchError):
    exit_code = 2


class ModelError(VoxbatchError):
    exit_code = 4


class StorageError(VoxbatchError):
    exit_code = 4


class DeviceOutOfMemory(VoxbatchError):
    """A batch did not fit in device (or host) memory; the engine backs off and retries."""

    exit_code = 3


class DeviceFatal(VoxbatchError):
    """The device is in an unusable state; the worker must commit and exit."""

    exit_code = 4


class RunIncomplete(VoxbatchError):
    exit_code = 5


# Exit codes of the CLI, in one place so docs and tests agree.
EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_BAD_INPUT = 2
EXIT_CHUNKS_FAILED = 3
EXIT_ENVIRONMENT = 4
EXIT_PENDING = 5  # `voxbatch status`: some shards are not committed yet

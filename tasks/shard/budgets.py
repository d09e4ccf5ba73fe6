"""The learned batch budget, saved per kind of device so the next run on the same kind starts where it ended.

Keyed by (backend, weights sha256, device name, total device memory, dtype, library versions); one small JSON
file per key, replaced atomically.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

from tasks.environment import cache_home
from tasks.shard.engine import BudgetState

logger = logging.getLogger("voxbatch")


def default_dir() -> Path:
    return cache_home() / "budgets"


def _path(state_dir: Path, key: dict[str, Any]) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]
    return state_dir / f"{digest}.json"


def load(state_dir: Path, key: dict[str, Any]) -> BudgetState | None:
    path = _path(state_dir, key)
    try:
        data = json.loads(path.read_text())
        if data.get("key") != key:
            return None
        return BudgetState(float(data["budget"]), float(data["largest_ok"]), data["smallest_bad"])
    except (OSError, ValueError, KeyError, TypeError):
        return None  # missing or unreadable: start from the configured budget


def save(state_dir: Path, key: dict[str, Any], state: BudgetState) -> Path | None:
    """Save the learned budget; on a read-only home (common in Kubernetes pods) warn and go on: the budget is
    an optimisation, and a finished shard must not be lost over it. Returns the path, or None if not saved."""
    path = _path(state_dir, key)
    record = {
        "key": key,
        "budget": state.budget,
        "largest_ok": state.largest_ok,
        "smallest_bad": state.smallest_bad,
    }
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(record, f, indent=2)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    except OSError as exc:
        logger.warning(
            "cannot save the learned batch budget in %s (%s); set engine.state_dir to a writable folder to keep it",
            state_dir,
            exc.strerror or exc,
        )
        return None
    return path

"""The base of every settings section: strict types, no unknown keys, frozen once validated."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    # strict: `batch_size = 7.0` or `"8"` is an error, never coerced; extra="forbid": typos are errors.
    model_config = ConfigDict(strict=True, extra="forbid", validate_default=True, frozen=True)

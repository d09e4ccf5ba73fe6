"""Padded batches grouped by length: the items of a batch that a backend runs as one padded call."""

from __future__ import annotations


def length_buckets(lengths: list[int], most_padding: float = 0.25) -> list[list[int]]:
    """Indices grouped by length, longest first, so that padding is at most `most_padding` of a group's longest:
    less work padded, and a short item is not run beside a long one's padding (a clause vocoded, a Kokoro piece)."""
    groups: list[list[int]] = []
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        if groups and lengths[i] >= (1 - most_padding) * lengths[groups[-1][0]]:
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups

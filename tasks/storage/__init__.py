"""Output stores by URI scheme: a local folder (a path or file://) and S3 (s3://bucket/prefix).

A backend registers a factory for its scheme; `open_store` picks it and checks the location before any work.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from urllib.parse import urlparse

from tasks.errors import StorageError
from tasks.storage.object_store import ObjectMissing, ObjectStore, check_key

StoreFactory = Callable[[str], ObjectStore]
_FACTORIES: dict[str, StoreFactory] = {}


def register_store(scheme: str, factory: StoreFactory) -> None:
    _FACTORIES[scheme] = factory


def schemes() -> list[str]:
    return sorted(_FACTORIES)


def scheme_of(location: str) -> str:
    scheme = urlparse(location).scheme
    # No scheme, or a Windows drive letter: a local path.
    return "file" if scheme == "" or (len(scheme) == 1 and os.name == "nt") else scheme


def open_store(location: str, *, check: bool = True) -> ObjectStore:
    """The store for an output location; by default checked (reachable, writable) before it is returned."""
    scheme = scheme_of(location)
    factory = _FACTORIES.get(scheme)
    if factory is None:
        raise StorageError(
            f"{location}: unsupported output location scheme {scheme!r}",
            hint=f"give a local folder or a URI with one of: {', '.join(s + '://' for s in schemes())}",
        )
    store = factory(location)
    if check:
        store.check()
    return store


def _local(location: str) -> ObjectStore:
    from tasks.storage.local_store import LocalStore

    return LocalStore.from_location(location)


def _s3(location: str) -> ObjectStore:
    from tasks.storage.s3_store import S3Store

    return S3Store(location)


register_store("file", _local)
register_store("s3", _s3)

__all__ = ["ObjectMissing", "ObjectStore", "check_key", "open_store", "register_store", "scheme_of", "schemes"]

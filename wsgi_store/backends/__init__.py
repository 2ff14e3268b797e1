"""Storage backends: the sharded filesystem (default) and S3."""

from __future__ import annotations

from typing import TYPE_CHECKING

from wsgi_store.backends.base import Backend, ObjectInfo, PutResult, ReadyCheck, Staged

if TYPE_CHECKING:
    from wsgi_store.config import Config

__all__ = [
    'Backend',
    'ObjectInfo',
    'PutResult',
    'ReadyCheck',
    'Staged',
    'backend_class',
    'make_backend',
]


def backend_class(config: Config) -> type[Backend]:
    """The class of the backend the configuration names (S3 is imported lazily)."""
    if config.backend == 's3':
        from wsgi_store.backends.s3 import S3Backend

        return S3Backend
    from wsgi_store.backends.fs import FilesystemBackend

    return FilesystemBackend


def make_backend(config: Config) -> Backend:
    """Create the backend the configuration names."""
    return backend_class(config).from_config(config)  # type: ignore[attr-defined]

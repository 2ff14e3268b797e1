"""The domain errors: the StoreError family that backends and handlers raise.

No HTTP framework here: each error names the status, slug and title of its
answer, and :mod:`wsgi_store.http.problems` renders them as problem documents.
"""

from __future__ import annotations

from typing import Any


class StoreError(Exception):
    """Base of every error a backend or the request handling raises on purpose."""

    status: int = 500
    slug: str = 'internal-error'
    title: str = 'Internal Server Error'

    def __init__(self, detail: str = '', **extra: Any) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.extra = extra


class InvalidHash(StoreError):
    status, slug, title = 400, 'invalid-hash', 'Invalid file_hash'


class BadRequest(StoreError):
    status, slug, title = 400, 'bad-request', 'Bad Request'


class IncompleteBody(StoreError):
    status, slug, title = 400, 'incomplete-body', 'Incomplete request body'


class DigestMismatch(StoreError):
    status, slug, title = 400, 'digest-mismatch', 'Digest mismatch'


class Unauthorized(StoreError):
    status, slug, title = 401, 'unauthorized', 'Unauthorized'


class Forbidden(StoreError):
    status, slug, title = 403, 'forbidden', 'Forbidden'


class NotFound(StoreError):
    status, slug, title = 404, 'not-found', 'Not Found'


class TooLarge(StoreError):
    status, slug, title = 413, 'too-large', 'Content Too Large'


class RangeNotSatisfiable(StoreError):
    status, slug, title = 416, 'range-not-satisfiable', 'Range Not Satisfiable'


class InsufficientStorage(StoreError):
    status, slug, title = 507, 'insufficient-storage', 'Insufficient Storage'


class BackendUnavailable(StoreError):
    status, slug, title = 503, 'backend-unavailable', 'Storage backend unavailable'


class StoreMismatch(StoreError):
    """The store on disk was created with other settings (algorithm, layout)."""

    slug, title = 'store-mismatch', 'Store settings mismatch'

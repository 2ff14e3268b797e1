"""The S3 backend's client wrapper: boto3 clients per process, error translation.

Clients are created lazily in the process that uses them and re-created after a
fork (never shared between gunicorn's master and its workers). Credentials come
only from the standard AWS chain (environment, shared files, instance roles) and
are never logged.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any

from wsgi_store.errors import BackendUnavailable, NotFound, RangeNotSatisfiable

# NOTE: one logger for the whole S3 backend, named as before it was split into
# modules, so that logging configuration naming it keeps working.
LOGGER_NAME = 'wsgi_store.backends.s3'
logger = logging.getLogger(LOGGER_NAME)

_NOT_FOUND = frozenset({'NoSuchKey', 'NoSuchUpload', '404', 'NotFound'})
_MISCONFIGURED = frozenset({
    'AccessDenied', 'AllAccessDisabled', 'InvalidAccessKeyId', 'SignatureDoesNotMatch',
    'NoSuchBucket', 'InvalidBucketName', 'AuthorizationHeaderMalformed', 'ExpiredToken',
    'InvalidToken', '403',
})  # fmt: skip


def new_client(
    *,
    endpoint_url: str,
    region: str,
    addressing_style: str,
    connect_timeout: float,
    read_timeout: float,
    max_attempts: int,
    probe: bool = False,
) -> Any:
    """A boto3 S3 client (``probe``: one attempt and short timeouts, for readiness)."""
    import boto3
    from botocore.config import Config as BotoConfig

    config = BotoConfig(
        signature_version='s3v4',
        s3={'addressing_style': addressing_style},
        retries={'max_attempts': 1 if probe else max_attempts, 'mode': 'standard'},
        connect_timeout=min(connect_timeout, 2.0) if probe else connect_timeout,
        read_timeout=min(read_timeout, 5.0) if probe else read_timeout,
        max_pool_connections=32,
        # Many S3-compatible servers reject the newer flexible checksums.
        request_checksum_calculation='when_required',
        response_checksum_validation='when_required',
    )
    return boto3.session.Session().client(
        's3',
        endpoint_url=endpoint_url or None,
        region_name=region or None,
        config=config,
    )


class ProcessClients:
    """Clients by kind (``main``, ``probe``), each made by ``factory(kind)``.

    They belong to the process that created them: after a fork the first call
    creates new ones.
    """

    def __init__(self, factory: Callable[[str], Any]) -> None:
        self._factory = factory
        self._lock = threading.Lock()
        self._clients: dict[str, Any] = {}
        self._pid = 0

    def get(self, kind: str = 'main') -> Any:
        """This process's client of that kind, created on first use."""
        if self._pid == os.getpid() and kind in self._clients:
            return self._clients[kind]
        with self._lock:
            if self._pid != os.getpid():
                # NOTE: a client inherited across fork shares its sockets with the
                # parent; drop it without closing them.
                self._clients, self._pid = {}, os.getpid()
            if kind not in self._clients:
                self._clients[kind] = self._factory(kind)
            return self._clients[kind]

    def close(self) -> None:
        """Close this process's clients (an inherited one is only forgotten)."""
        with self._lock:
            clients, self._clients = self._clients, {}
            if self._pid == os.getpid():
                for client in clients.values():
                    client.close()


class S3Client:
    """The S3 backend's one door to S3: this process's clients and error translation.

    Args:
        bucket: the bucket every call names.
        factory: ``factory(kind)`` makes a boto3 client (``main`` or ``probe``).
        endpoint_url: for messages only.
        check: run once before the first call through :meth:`use` (the store's
            settings check); :attr:`checked` is set once it passed.
    """

    def __init__(
        self,
        bucket: str,
        factory: Callable[[str], Any],
        *,
        endpoint_url: str = '',
        check: Callable[[], None] | None = None,
    ) -> None:
        self.bucket = bucket
        self.endpoint_url = endpoint_url
        self.checked = check is None
        self._check = check
        self._clients = ProcessClients(factory)

    def get(self, kind: str = 'main') -> Any:
        """This process's client (``probe``: one attempt, for readiness checks)."""
        return self._clients.get(kind)

    def use(self) -> Any:
        """The client, once the store's settings have been checked."""
        if not self.checked and self._check is not None:
            self._check()
            self.checked = True
        return self.get()

    def errors(self, action: str, missing: str = '') -> AbstractContextManager[None]:
        """Turn botocore's exceptions into :mod:`wsgi_store.errors`."""
        return translate_errors(
            action, missing, bucket=self.bucket, endpoint_url=self.endpoint_url
        )

    def head(self, key: str, missing: str) -> dict[str, Any]:
        """HeadObject; ``NotFound(missing)`` when the key is absent."""
        with self.errors('read object metadata', missing=missing):
            reply: dict[str, Any] = self.use().head_object(Bucket=self.bucket, Key=key)
        return reply

    def exists(self, key: str) -> bool:
        """Whether the key exists (one HeadObject)."""
        try:
            self.head(key, missing='absent')
        except NotFound:
            return False
        return True

    def abort_quietly(self, key: str, upload_id: str) -> None:
        """Abort a multipart upload; one already gone is fine."""
        with (
            contextlib.suppress(NotFound),
            self.errors('abort a multipart upload', missing='gone'),
        ):
            self.get().abort_multipart_upload(
                Bucket=self.bucket, Key=key, UploadId=upload_id
            )

    def close(self) -> None:
        """Close this process's clients."""
        self._clients.close()


@contextlib.contextmanager
def translate_errors(
    action: str, missing: str = '', *, bucket: str, endpoint_url: str
) -> Iterator[None]:
    """Turn botocore's exceptions into :mod:`wsgi_store.errors`.

    ``missing``: when given, a missing key or upload raises ``NotFound(missing)``.
    """
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    where = (bucket, endpoint_url)
    try:
        yield
    except ClientError as exc:
        raise _client_error(exc, action, missing, where) from exc
    except NoCredentialsError as exc:
        raise _misconfigured(action, 'no AWS credentials found', where) from exc
    except BotoCoreError as exc:
        raise BackendUnavailable(
            f'S3 is unavailable: could not {action}: {exc}'
        ) from exc


def _client_error(
    exc: Any, action: str, missing: str, where: tuple[str, str]
) -> Exception:
    error = exc.response.get('Error', {})
    code = str(error.get('Code', ''))
    message = error.get('Message') or code
    if missing and code in _NOT_FOUND:
        return NotFound(missing)
    if code in _MISCONFIGURED:
        return _misconfigured(action, f'{code}: {message}', where)
    if code == 'InvalidRange':
        return RangeNotSatisfiable(f'could not {action}: {message}')
    return BackendUnavailable(f'S3 is unavailable: could not {action}: {message}')


def _misconfigured(
    action: str, reason: str, where: tuple[str, str]
) -> BackendUnavailable:
    bucket, endpoint_url = where
    logger.error(
        'S3 configuration error: could not %s in bucket %r at %s: %s (check the '
        'credentials, the bucket name and its policy)',
        action, bucket, endpoint_url or 'AWS', reason,
    )  # fmt: skip
    return BackendUnavailable(f'S3 refused to {action}: {reason}')

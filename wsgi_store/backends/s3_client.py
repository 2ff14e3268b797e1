"""boto3 clients for the S3 backend, one set per process, and error translation.

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
from typing import Any

from ..errors import BackendUnavailable, NotFound, RangeNotSatisfiable

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

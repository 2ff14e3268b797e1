"""Adopt a request body nginx already wrote to a file (``--body-offload``).

With ``filestorectl nginx-config --body-offload`` nginx receives the whole body
into ``STORE/tmp/nginx-body/`` (``client_body_in_file_only clean``), sends the
app no body, and names the file in ``X-Body-File`` (and its length in
``X-Body-Length``), overwriting whatever a client sent under those names.

NOTE: the header is trusted only when ``nginx_body_dir``
(``WSGI_STORE_NGINX_BODY_DIR``) is set, only from a ``FORWARDED_ALLOW_IPS``
peer, only with the site's secret in ``X-Body-Offload-Key`` (the exact
contents of ``nginx_body_key_file``, compared in constant time), and only for a
regular file directly inside that directory (no ``..``, no symlink anywhere in
the path); anything else is a 400 and no file is read. Without the directory
setting the header is ignored. The key is what stops a local user who reaches
gunicorn on loopback directly from naming another client's body file (nginx
numbers them in sequence), finished or still being written: nginx sends the key
and a file name only once it has read the whole body, so a file the app adopts
is always complete; without the key the app never opens the file at all.

A raw body is hard-linked into the store's ``tmp/`` (no copy), hashed, checked
against the announced digests and committed through the backend like a
streamed one; a multipart body, or a backend that cannot link, is read from the
file as if it were the request stream.
"""

from __future__ import annotations

import errno
import hmac
import ipaddress
import logging
import os
import stat
from collections.abc import Sequence
from pathlib import Path

import falcon

from wsgi_store.backends.base import Backend, PutResult, check_expectations
from wsgi_store.config import Config
from wsgi_store.errors import BadRequest, IncompleteBody, TooLarge
from wsgi_store.hashing import Expectation

logger = logging.getLogger(__name__)

BODY_FILE = 'X-Body-File'
BODY_LENGTH = 'X-Body-Length'
KEY_HEADER = 'X-Body-Offload-Key'
KEY_ALPHABET = frozenset(
    'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'
)
KEY_MIN_LENGTH = 32
_OPEN = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
NOT_OURS = f'{BODY_FILE} does not name a body file of this store'
_NOT_LINKABLE = (errno.EXDEV, errno.EPERM, errno.EACCES, errno.EMLINK)


def offered(req: falcon.Request, config: Config) -> str | None:
    """The body file this request names, when nginx offload is configured.

    Raises:
        BadRequest: it came from a peer that is not a trusted proxy, or
            without the site's key (``X-Body-Offload-Key``).
    """
    if config.nginx_body_dir is None:
        return None  # a client's X-Body-File means nothing here
    path = req.get_header(BODY_FILE)
    if path is None:
        return None
    peer = req.env.get('REMOTE_ADDR')
    if not from_proxy(peer, config):
        logger.warning('refused %s from %s', BODY_FILE, peer)
        raise BadRequest(NOT_OURS)
    if not key_matches(req.get_header(KEY_HEADER), config):
        # NOTE: never log the key, nor what the client sent in its place.
        logger.warning(
            'refused %s from %s: wrong or no %s', BODY_FILE, peer, KEY_HEADER
        )
        raise BadRequest(NOT_OURS)
    return path


def key_matches(sent: str | None, config: Config) -> bool:
    """True when ``sent`` is the site's key (constant-time comparison)."""
    if config.nginx_body_key_file is None:
        logger.error(
            'nginx_body_dir is set without nginx_body_key_file '
            '(WSGI_STORE_NGINX_BODY_KEY_FILE): every X-Body-File is refused'
        )
        return False
    try:
        key = read_key(config.nginx_body_key_file)
    except (OSError, ValueError) as exc:
        logger.error('cannot use the body offload key file: %s', exc)
        return False
    return sent is not None and hmac.compare_digest(
        sent.encode('utf-8', 'surrogateescape'), key.encode('ascii')
    )


def read_key(path: Path) -> str:
    """The secret in ``path``: one line of at least 32 ``[A-Za-z0-9_-]``.

    The alphabet is what nginx can carry in a quoted ``proxy_set_header`` value
    unchanged (no ``$`` variable, no quote, no ``;``).

    Raises:
        OSError: the file cannot be read.
        ValueError: its contents are not such a key (the message omits them).
    """
    key = Path(path).read_text(encoding='ascii', errors='replace').strip()
    if len(key) < KEY_MIN_LENGTH or not set(key) <= KEY_ALPHABET:
        raise ValueError(
            f'{path}: not a key (one line of at least {KEY_MIN_LENGTH} '
            'characters A-Z a-z 0-9 - _)'
        )
    return key


def from_proxy(peer: object, config: Config) -> bool:
    """True when ``peer`` is one of ``FORWARDED_ALLOW_IPS`` (nginx's address).

    A peer that is no IP address (a unix socket) is trusted: the socket's
    permissions decide who connects.
    """
    try:
        address = ipaddress.ip_address(str(peer))
    except ValueError:
        return True
    for entry in config.forwarded_allow_ips.split(','):
        entry = entry.strip()
        if entry == '*':
            return True
        try:
            if address in ipaddress.ip_network(entry, strict=False):
                return True
        except ValueError:
            continue
    return False


def open_body(path: str, body_dir: Path) -> tuple[int, int]:
    """Open nginx's body file; return ``(fd, size)``.

    Raises:
        BadRequest: the path is not a regular file directly in ``body_dir``.
    """
    real_dir = os.path.realpath(body_dir)
    if (
        not os.path.isabs(path)
        or os.path.dirname(path) != real_dir
        or os.path.realpath(path) != path
    ):
        logger.warning('refused %s %r: not in %s', BODY_FILE, path, real_dir)
        raise BadRequest(NOT_OURS)
    try:
        fd = os.open(path, _OPEN)
    except OSError as exc:
        logger.warning('refused %s %r: %s', BODY_FILE, path, exc.strerror)
        raise BadRequest(NOT_OURS) from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise BadRequest(NOT_OURS)
    return fd, st.st_size


def check_size(req: falcon.Request, size: int, config: Config) -> None:
    """The file holds what nginx announced, within the store's limit."""
    limit = config.max_upload_bytes
    if limit and size > limit:
        raise TooLarge(f'the body exceeds the limit of {limit} bytes', limit=limit)
    announced = req.get_header(BODY_LENGTH)
    if announced and announced.isdigit() and int(announced) != size:
        raise IncompleteBody(
            f'the body ended after {size} of the {announced} announced bytes',
            received=size,
            expected=int(announced),
        )


def adopt(
    fd: int, size: int, backend: Backend, expect: Sequence[Expectation]
) -> PutResult:
    """Make the raw body in ``fd`` an object: linked (fs) or streamed from the file."""
    extra = [e.algorithm for e in expect if e.algorithm != backend.algorithm]
    link = getattr(backend, 'adopt', None)
    staged = None
    if link is not None:
        try:
            staged = link(fd, extra_algorithms=extra)
        except OSError as exc:
            if exc.errno not in _NOT_LINKABLE:
                raise
            logger.info('cannot link the body file (%s): copying it', exc.strerror)
    if staged is None:
        source = FileBody(fd)
        return backend.put(source, expect=expect, length=size, max_bytes=0)
    try:
        check_expectations(staged, expect, backend.algorithm)
        return backend.commit(staged)
    finally:
        if not staged.done:
            backend.discard(staged)


class FileBody:
    """``read(n)`` over an open file descriptor (not closed here)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.offset = 0

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            size = max(os.fstat(self.fd).st_size - self.offset, 0)
        data = os.pread(self.fd, size, self.offset)
        self.offset += len(data)
        return data


def receive(
    req: falcon.Request,
    path: str,
    backend: Backend,
    config: Config,
    expect: Sequence[Expectation],
) -> PutResult:
    """Store the body nginx wrote to ``path`` (its file part, for multipart)."""
    from wsgi_store.http import uploads

    assert config.nginx_body_dir is not None
    fd, size = open_body(path, config.nginx_body_dir)
    try:
        check_size(req, size, config)
        # The uploaded-bytes metric counts what the app reads from req.stream.
        uploads._credit(req.stream, size)
        content_type = (req.content_type or '').lower()
        if not content_type.startswith('multipart/form-data'):
            return adopt(fd, size, backend, expect)
        body = uploads.BodyReader(FileBody(fd), size, config.max_upload_bytes)
        of_part = [e for e in expect if e.source not in uploads.DIGEST_HEADERS]
        of_body = [e for e in expect if e.source in uploads.DIGEST_HEADERS]
        hashing = uploads.HashingReader(body, of_body)
        return uploads._receive_multipart(req, hashing, backend, config, of_part)
    finally:
        os.close(fd)

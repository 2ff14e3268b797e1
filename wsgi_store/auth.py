"""Bearer tokens: the tokens file, constant-time checks and the Falcon middleware.

The tokens file has one ``TOKEN SCOPES`` entry per line; scopes are separated by
commas or spaces and are ``read``, ``write``, ``delete`` and ``metrics``. ``#``
starts a comment (a whole line, or a field of its own after the scopes)::

    # CI uploader
    3q2+7w-Xy9_kL0pQzT4a  read,write
    Ops-Dashboard-Token-0001  metrics

Tokens are RFC 6750 ``b64token`` strings of at least :data:`MIN_TOKEN_LENGTH`
characters. A malformed file is a startup error (:class:`TokensFileError`); the
message names the file and line, never the token.

Reloading: gunicorn's HUP replaces every worker and each new worker builds the
app again, which re-reads the file. That is not enough on its own (with
``preload_app`` the app is not rebuilt, and a typo at HUP makes the new workers
fail to boot), so :class:`TokenAuth` also re-reads the file when its identity
(inode, size, mtime) changes; a malformed edit is logged and the tokens already
loaded stay in force.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import falcon

from .config import Config, ConfigError
from .resources import HealthResource, ReadyResource

logger = logging.getLogger(__name__)

SCOPES = frozenset({'read', 'write', 'delete', 'metrics'})
MIN_TOKEN_LENGTH = 16
METRICS_PATH = '/metrics'
LISTING_PATH = '/files'  # GET lists every hash
LOOKUP_PATHS = frozenset({'/files/missing'})  # POST, but only reads
RELOAD_CHECK_SECONDS = 1.0  # how often a worker looks at the file's mtime
REALM = 'wsgi-store'
# RFC 6750 section 2.1: b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" /
# "+" / "/" ) *"="
_B64TOKEN = re.compile(r'[A-Za-z0-9\-._~+/]+=*')
_METHOD_SCOPES = {
    'GET': 'read',
    'HEAD': 'read',
    'POST': 'write',
    'PUT': 'write',
    'DELETE': 'delete',
}


class TokensFileError(ConfigError):
    """The tokens file cannot be used (unreadable, malformed, empty)."""


@dataclass(frozen=True)
class Grant:
    """One token, kept only as its SHA-256 digest, and the scopes it grants."""

    digest: bytes
    scopes: frozenset[str]
    line: int


def token_digest(token: str) -> bytes:
    """The fixed-length digest tokens are compared by (hides their length)."""
    return hashlib.sha256(token.encode('utf-8')).digest()


def parse_tokens(text: str, source: str = 'tokens file') -> tuple[Grant, ...]:
    """Parse the tokens file's text.

    Args:
        text: the file's content.
        source: how to name the file in error messages.

    Returns:
        One :class:`Grant` per token line.

    Raises:
        TokensFileError: on any malformed line, a duplicate token or no tokens.
    """
    grants: list[Grant] = []
    seen: set[bytes] = set()
    for number, raw in enumerate(text.splitlines(), start=1):
        grant = _parse_line(raw, number, source)
        if grant is None:
            continue
        if grant.digest in seen:
            raise TokensFileError(f'{source} line {number}: a token is listed twice')
        seen.add(grant.digest)
        grants.append(grant)
    if not grants:
        raise TokensFileError(f'{source} has no tokens: every request would fail')
    return tuple(grants)


def _parse_line(raw: str, number: int, source: str) -> Grant | None:
    fields = raw.split()
    for index, value in enumerate(fields):
        if value.startswith('#'):
            fields = fields[:index]
            break
    if not fields:
        return None
    where = f'{source} line {number}'
    token, scope_text = fields[0], ' '.join(fields[1:])
    if not _B64TOKEN.fullmatch(token):
        raise TokensFileError(
            f'{where}: the token has characters outside RFC 6750 b64token '
            '(letters, digits, - . _ ~ + / and trailing =)'
        )
    if len(token) < MIN_TOKEN_LENGTH:
        raise TokensFileError(
            f'{where}: the token is shorter than {MIN_TOKEN_LENGTH} characters'
        )
    scopes = frozenset(s for s in re.split(r'[\s,]+', scope_text) if s)
    if not scopes:
        raise TokensFileError(f'{where}: no scopes (use {", ".join(sorted(SCOPES))})')
    unknown = sorted(scopes - SCOPES)
    if unknown:
        raise TokensFileError(
            f'{where}: unknown scope {", ".join(unknown)} '
            f'(use {", ".join(sorted(SCOPES))})'
        )
    return Grant(token_digest(token), scopes, number)


def load_tokens(path: Path) -> tuple[Grant, ...]:
    """Read and parse a tokens file (:class:`TokensFileError` when unusable)."""
    try:
        text = path.read_text(encoding='utf-8')
    except (OSError, UnicodeDecodeError) as exc:
        raise TokensFileError(f'cannot read the tokens file {path}: {exc}') from None
    _warn_if_readable_by_others(path)
    return parse_tokens(text, f'tokens file {path}')


def _warn_if_readable_by_others(path: Path) -> None:
    try:
        mode = path.stat().st_mode
    except OSError:
        return
    if mode & 0o004:
        logger.warning(
            'the tokens file %s is readable by every local user; chmod 600 it', path
        )


def find_grant(grants: tuple[Grant, ...], token: str) -> Grant | None:
    """The grant of ``token``, comparing against every token in constant time.

    Every entry is compared (no early exit) with :func:`hmac.compare_digest` on
    fixed-length digests, so the time taken reveals neither which token matched
    nor how long the presented one is.
    """
    presented = token_digest(token)
    found: Grant | None = None
    for grant in grants:
        if hmac.compare_digest(presented, grant.digest):
            found = grant
    return found


def bearer_token(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer`` header; None when there is none.

    Raises:
        falcon.HTTPUnauthorized: a Bearer header whose token is malformed.
    """
    if not header:
        return None
    scheme, _, value = header.strip().partition(' ')
    if scheme.lower() != 'bearer':
        return None  # another scheme: RFC 6750 treats it as no credentials
    token = value.strip()
    if not token:
        return None
    if not _B64TOKEN.fullmatch(token):
        raise _unauthorized('the bearer token is malformed', 'invalid_token')
    return token


class TokenStore:
    """The loaded tokens, re-read when the file changes (thread-safe)."""

    def __init__(
        self,
        path: Path,
        *,
        check_interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = path
        self.check_interval = check_interval
        self._clock = clock
        self._lock = threading.Lock()
        self._identity = _identity(path)
        self.grants = load_tokens(path)  # a startup error when malformed
        self._checked = clock()

    def current(self) -> tuple[Grant, ...]:
        """The tokens in force, after re-reading the file if it changed."""
        now = self._clock()
        if now - self._checked >= self.check_interval:
            with self._lock:
                if now - self._checked >= self.check_interval:
                    self._checked = now
                    self._reload_if_changed()
        return self.grants

    def _reload_if_changed(self) -> None:
        identity = _identity(self.path)
        if identity == self._identity:
            return
        self._identity = identity
        try:
            self.grants = load_tokens(self.path)
        except TokensFileError as exc:
            logger.error('%s; the previous tokens stay in force', exc)
            return
        logger.info('reloaded %d token(s) from %s', len(self.grants), self.path)


def _identity(path: Path) -> tuple[int, int, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


class TokenAuth:
    """Falcon middleware: require a bearer token with the route's scope.

    * ``/healthz`` and ``/readyz``: open.
    * ``/metrics``: scope ``metrics``.
    * ``GET /files`` (the listing): ``read``, even with ``public_read``.
    * ``POST /files/missing`` (a lookup): ``read`` (open with ``public_read``).
    * every other route: GET/HEAD ``read`` (open with ``public_read``),
      POST/PUT ``write``, DELETE ``delete``; other methods reach the router's
      405 without a token.

    No token: 401 with ``WWW-Authenticate: Bearer realm="wsgi-store"``. An
    unknown or malformed token: 401 with ``error="invalid_token"`` (RFC 6750
    section 3.1). A known token without the scope: 403 with
    ``error="insufficient_scope"``.
    """

    def __init__(self, config: Config, *, check_interval: float | None = None) -> None:
        if config.tokens_file is None:
            raise TokensFileError('TokenAuth needs config.tokens_file')
        self.public_read = config.public_read
        interval = RELOAD_CHECK_SECONDS if check_interval is None else check_interval
        self.tokens = TokenStore(config.tokens_file, check_interval=interval)

    def process_resource(
        self,
        req: falcon.Request,
        resp: falcon.Response,
        resource: object,
        params: dict,
    ) -> None:
        scope = self.required_scope(req, resource)
        if scope is None:
            return
        token = bearer_token(req.get_header('Authorization'))
        if token is None:
            raise _unauthorized('this request needs a bearer token')
        grant = find_grant(self.tokens.current(), token)
        if grant is None:
            raise _unauthorized('the bearer token is not valid', 'invalid_token')
        if scope not in grant.scopes:
            raise falcon.HTTPForbidden(
                description=f'the token lacks the "{scope}" scope',
                headers={
                    'WWW-Authenticate': _challenge('insufficient_scope', scope=scope)
                },
            )

    def required_scope(self, req: falcon.Request, resource: object) -> str | None:
        """The scope a request needs, or None when it is open."""
        if isinstance(resource, (HealthResource, ReadyResource)):
            return None
        if req.path == METRICS_PATH:
            return 'metrics'
        if req.path == LISTING_PATH and req.method in ('GET', 'HEAD'):
            # NOTE: with public reads a hash works like an unguessable link; a
            # listing would hand out every link, so it always needs a token.
            return 'read'
        scope = 'read' if req.path in LOOKUP_PATHS else _METHOD_SCOPES.get(req.method)
        if scope == 'read' and self.public_read:
            return None
        return scope


def _challenge(error: str | None = None, **params: str) -> str:
    parts = [f'realm="{REALM}"']
    if error:
        parts.append(f'error="{error}"')
    parts.extend(f'{k}="{v}"' for k, v in params.items())
    return 'Bearer ' + ', '.join(parts)


def _unauthorized(
    description: str, error: str | None = None
) -> falcon.HTTPUnauthorized:
    return falcon.HTTPUnauthorized(
        description=description, challenges=[_challenge(error)]
    )


def network_warning(config: Config) -> str | None:
    """The warning to print when the service is reachable and unprotected.

    Returns:
        The text when the service binds a non-loopback address without a
        tokens file, else None.
    """
    if config.tokens_file is not None or _is_loopback(config.host):
        return None
    return (
        f'WARNING: listening on {config.host}:{config.port} without a tokens file: '
        'anyone who can reach this address can read, write and delete every '
        'object. Give --tokens FILE (and --public-read for open downloads), or '
        'bind to 127.0.0.1 behind a proxy that authenticates.'
    )


def _is_loopback(host: str) -> bool:
    if host == 'localhost':
        return True
    try:
        address = ipaddress.ip_address(host.strip('[]'))
    except ValueError:
        return False  # a host name: it may resolve to anything
    mapped = getattr(address, 'ipv4_mapped', None)
    return bool(address.is_loopback or (mapped is not None and mapped.is_loopback))


def check_tokens_file(config: Config) -> None:
    """Fail early (before daemonizing) when the tokens file is unusable."""
    if config.tokens_file is not None:
        load_tokens(config.tokens_file)


__all__ = [
    'METRICS_PATH',
    'SCOPES',
    'Grant',
    'TokenAuth',
    'TokenStore',
    'TokensFileError',
    'bearer_token',
    'check_tokens_file',
    'find_grant',
    'load_tokens',
    'network_warning',
    'parse_tokens',
]

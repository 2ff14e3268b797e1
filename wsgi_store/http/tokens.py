"""The tokens file: its format, parsing, loading and hot reload.

The tokens file has one ``TOKEN SCOPES`` entry per line; scopes are separated by
commas or spaces and are ``read``, ``write``, ``delete`` and ``metrics``. ``#``
starts a comment (a whole line, or a field of its own after the scopes)::

    # CI uploader
    3q2+7w-Xy9_kL0pQzT4a  read,write
    Ops-Dashboard-Token-0001  metrics

Tokens are RFC 6750 ``b64token`` strings of at least :data:`MIN_TOKEN_LENGTH`
characters; a shorter one makes the file malformed. Error messages name the
file and line, never the token.

Start and change (issue 11 item 2, "revoking fails closed"):

* At start a missing, empty or malformed file is an error
  (:class:`TokensFileError`): the service does not start.
* After a successful start, a missing (deleted) or empty file means *no token
  is valid*: every request that needs a scope is refused, and one log line per
  process says why.
* After start, a file that does not parse keeps the last good set, and an
  error is logged at each reload (each change of the file, each HUP).

Reloading: gunicorn's HUP replaces every worker, and each new worker builds the
app again. The master loads the file in ``on_starting`` and ``on_reload``
(:func:`load_in_master`) and workers inherit that set by fork, so a worker
that finds a broken file at boot serves the inherited set instead of failing
(a failed boot would take gunicorn down). Each worker's :class:`TokenStore`
also re-reads the file when its identity (inode, size, mtime) changes.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from wsgi_store.config import Config, ConfigError

logger = logging.getLogger(__name__)

SCOPES = frozenset({'read', 'write', 'delete', 'metrics'})
MIN_TOKEN_LENGTH = 16
# RFC 6750 section 2.1: b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" /
# "+" / "/" ) *"="
B64TOKEN = re.compile(r'[A-Za-z0-9\-._~+/]+=*')
NO_TOKENS_REASON = 'no token is valid: every request that needs a scope is refused'


class TokensFileError(ConfigError):
    """The tokens file cannot be used (unreadable, malformed, empty)."""


class NoTokensError(TokensFileError):
    """The tokens file is missing or lists no token: a start error, and after
    start the revocation of every token."""


@dataclass(frozen=True)
class Grant:
    """One token, kept only as its SHA-256 digest, and the scopes it grants."""

    digest: bytes
    scopes: frozenset[str]
    line: int


def token_digest(token: str) -> bytes:
    """The fixed-length digest tokens are compared by (hides their length)."""
    return hashlib.sha256(token.encode('utf-8')).digest()


def parse_tokens(
    text: str, source: str = 'tokens file', *, allow_empty: bool = False
) -> tuple[Grant, ...]:
    """Parse the tokens file's text.

    Args:
        text: the file's content.
        source: how to name the file in error messages.
        allow_empty: return ``()`` for a file without tokens instead of raising
            (e.g. for a tool that revokes the last token).

    Returns:
        One :class:`Grant` per token line.

    Raises:
        NoTokensError: no tokens (unless ``allow_empty``).
        TokensFileError: on any malformed line or a duplicate token.
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
    if not grants and not allow_empty:
        raise NoTokensError(f'{source} has no tokens: every request would fail')
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
    if not B64TOKEN.fullmatch(token):
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
    """Read and parse a tokens file.

    Raises:
        NoTokensError: the file does not exist or lists no token.
        TokensFileError: it cannot be read or does not parse.
    """
    try:
        text = path.read_text(encoding='utf-8')
    except FileNotFoundError:
        raise NoTokensError(f'the tokens file {path} does not exist') from None
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


# The last good set the gunicorn master loaded, per file; inherited by fork.
_inherited: dict[Path, tuple[Grant, ...]] = {}


def load_in_master(config: Config, *, starting: bool) -> None:
    """Load the tokens file in the gunicorn master (``on_starting``, ``on_reload``).

    Workers forked afterwards inherit the set (see :class:`TokenStore`).

    Raises:
        TokensFileError: only when ``starting``: the file is unusable at start.
    """
    path = config.tokens_file
    if path is None:
        return
    try:
        grants = load_tokens(path)
    except NoTokensError as exc:
        if starting:
            raise
        logger.error('%s: %s', exc, NO_TOKENS_REASON)
        grants = ()
    except TokensFileError as exc:
        if starting:
            raise
        logger.error('%s; the previous tokens stay in force', exc)
        return
    _inherited[path] = grants


def check_tokens_file(config: Config) -> None:
    """Fail early (before daemonizing) when the tokens file is unusable."""
    if config.tokens_file is not None:
        load_tokens(config.tokens_file)


class TokenStore:
    """The tokens in force for one file, re-read when it changes (thread-safe).

    Args:
        path: the tokens file.
        check_interval: how often (seconds) to look at the file's identity.
        clock: a monotonic clock (tests inject one).

    Raises:
        TokensFileError: the file is unusable and no set was inherited from
            the gunicorn master (a start error).
    """

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
        self.grants: tuple[Grant, ...] = ()
        try:
            self.grants = load_tokens(path)
        except TokensFileError as exc:
            if path not in _inherited:
                raise  # nothing loaded yet: the service must not start
            self._apply_error(exc, _inherited[path])
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
            grants = load_tokens(self.path)
        except TokensFileError as exc:
            self._apply_error(exc, self.grants)
            return
        self.grants = grants
        logger.info('reloaded %d token(s) from %s', len(grants), self.path)

    def _apply_error(self, exc: TokensFileError, previous: tuple[Grant, ...]) -> None:
        # NOTE: revocation fails closed: a missing or empty file empties the
        # set; only a file that does not parse keeps the previous one.
        if isinstance(exc, NoTokensError):
            self.grants = ()
            logger.error('%s: %s', exc, NO_TOKENS_REASON)
        else:
            self.grants = previous
            logger.error('%s; the previous tokens stay in force', exc)


def _identity(path: Path) -> tuple[int, int, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


__all__ = [
    'MIN_TOKEN_LENGTH',
    'SCOPES',
    'Grant',
    'NoTokensError',
    'TokenStore',
    'TokensFileError',
    'check_tokens_file',
    'find_grant',
    'load_in_master',
    'load_tokens',
    'parse_tokens',
]

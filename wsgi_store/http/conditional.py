"""Conditional requests (RFC 9110 section 13): one evaluation for every path.

The app is the only place these are decided. The generated nginx site sends
every request carrying a precondition to the app (see :mod:`wsgi_store.ops.nginx`),
and the app hands nginx an ``X-Accel-Redirect`` only for requests nginx would
answer the same way (none of :data:`PRECONDITIONS`), so the answer never depends on
which path served it.
"""

from __future__ import annotations

import email.utils
import functools
from collections.abc import Callable, Mapping

from wsgi_store.backends.base import Backend
from wsgi_store.errors import NotFound, StoreError

PRECONDITIONS = (
    'If-Match',
    'If-None-Match',
    'If-Modified-Since',
    'If-Unmodified-Since',
    'If-Range',
)
READS = ('GET', 'HEAD')
# The WSGI environ keys of PRECONDITIONS (how Falcon's get_header finds them).
_ENV_KEYS = tuple((n, 'HTTP_' + n.upper().replace('-', '_')) for n in PRECONDITIONS)


PRECONDITION_DETAIL = 'a precondition in the request does not hold'


class PreconditionFailed(StoreError):
    """412: a precondition did not hold (nothing was changed)."""

    status, slug, title = 412, 'precondition-failed', 'Precondition Failed'

    def __init__(self) -> None:
        # One text, so nginx's direct path can answer its own 412 identically.
        super().__init__(PRECONDITION_DETAIL)


def http_date(timestamp: float) -> str:
    """An IMF-fixdate (RFC 9110 5.6.7) for a POSIX time, whole seconds."""
    return _http_date(int(timestamp))


@functools.lru_cache(maxsize=4096)
def _http_date(seconds: int) -> str:
    # Per GET (Last-Modified) and the same few mtimes again and again.
    return email.utils.formatdate(seconds, usegmt=True)


def parse_http_date(value: str | None) -> int | None:
    """Seconds since the epoch for an HTTP-date; None when absent or invalid."""
    if not value or ',' in value.partition(',')[2]:  # more than one member
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if parsed.tzinfo is None:
        return None  # "-0000" or no zone: not an HTTP-date
    return int(parsed.timestamp())


def _tags(header: str) -> list[str]:
    """The members of an entity-tag list (commas inside quotes kept)."""
    tags, current, quoted = [], [], False
    for char in header:
        if char == '"':
            quoted = not quoted
        if char == ',' and not quoted:
            tags.append(''.join(current).strip())
            current = []
        else:
            current.append(char)
    tags.append(''.join(current).strip())
    return [t for t in tags if t]


def strong_match(header: str, etag: str) -> bool:
    """If-Match: ``*`` or a list; strong comparison (a ``W/`` tag never matches)."""
    if header.strip() == '*':
        return True
    return etag in _tags(header)


def weak_match(header: str, etag: str) -> bool:
    """If-None-Match: ``*`` or a list; weak comparison."""
    if header.strip() == '*':
        return True
    return etag in (t.removeprefix('W/') for t in _tags(header))


def evaluate(
    method: str, headers: Mapping[str, str], etag: str | None, mtime: float
) -> int | None:
    """The status a precondition forces, or None to go on (RFC 9110 13.2.2).

    ``etag`` is None when the object does not exist (PUT of a new object): then
    ``If-Match`` fails and ``If-None-Match: *`` passes. A GET or HEAD of a
    missing object never reaches here: it is 404 whatever the conditions.
    """
    last_modified = int(mtime)
    if_match = headers.get('If-Match')
    if if_match is not None:
        if etag is None or not strong_match(if_match, etag):
            return 412
    elif etag is not None:
        since = parse_http_date(headers.get('If-Unmodified-Since'))
        if since is not None and last_modified > since:
            return 412
    if_none_match = headers.get('If-None-Match')
    if if_none_match is not None:
        if etag is not None and weak_match(if_none_match, etag):
            return 304 if method in READS else 412
    elif method in READS and etag is not None:
        since = parse_http_date(headers.get('If-Modified-Since'))
        if since is not None and last_modified <= since:
            return 304
    return None


def if_range_allows(value: str | None, etag: str, mtime: float) -> bool:
    """True when a Range may be honoured given ``If-Range`` (RFC 9110 13.1.5).

    An entity-tag must match strongly; a date must equal Last-Modified exactly.
    """
    if value is None:
        return True
    value = value.strip()
    if value.startswith(('"', 'W/')):
        return value == etag
    return parse_http_date(value) == int(mtime)


def request_preconditions(get_header: Callable[[str], str | None]) -> dict[str, str]:
    """The conditional headers a request carries, by name."""
    found = {name: get_header(name) for name in PRECONDITIONS}
    return {name: value for name, value in found.items() if value is not None}


def preconditions_in(env: Mapping[str, str]) -> dict[str, str]:
    """:func:`request_preconditions` read straight from a WSGI environ.

    The same answer, without five ``get_header`` calls on every GET.
    """
    return {name: env[key] for name, key in _ENV_KEYS if key in env}


def check_write(
    method: str,
    get_header: Callable[[str], str | None],
    backend: Backend,
    hex_hash: str,
) -> None:
    """Raise 412 before a PUT or DELETE whose preconditions fail.

    A DELETE of a missing object stays 404 (RFC 9110 13.2.1: preconditions are
    ignored when the answer without them would not be 2xx); for a PUT a missing
    object has no ETag, so ``If-Match`` fails and ``If-None-Match: *`` holds.
    """
    conditions = request_preconditions(get_header)
    if not conditions:
        return
    try:
        info = backend.stat(hex_hash)
    except NotFound:
        if method == 'DELETE':
            raise
        etag, mtime = None, 0.0
    else:
        etag, mtime = f'"{info.hash}"', info.mtime
    if evaluate(method, conditions, etag, mtime) is not None:
        raise PreconditionFailed()

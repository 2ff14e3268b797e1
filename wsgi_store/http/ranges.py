"""The ``Range`` header (RFC 9110 14.2): one reading for every path.

Chosen answers where the RFC allows several (the same through nginx, which
sends every ranged request to the app):

* a single range, suffix or open-ended: ``206`` with ``Content-Range``;
* a range starting at or past the end, or ``bytes=-0``: ``416`` with
  ``Content-Range: bytes */N``;
* anything else (several ranges, another unit, bad syntax, last < first), a
  Range on the empty object, or a Range on HEAD: the header is ignored and
  the whole object is answered ``200`` (RFC 9110 14.2 lets a server ignore it).
"""

from __future__ import annotations

import re

from wsgi_store.errors import RangeNotSatisfiable

# One range, no spaces: exactly what nginx's own parser reads the same way.
SINGLE = re.compile(
    r'bytes=(?:(?P<first>[0-9]+)-(?P<last>[0-9]*)|-(?P<suffix>[0-9]+))', re.IGNORECASE
)


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """Parse a ``Range`` header into ``(start, end_exclusive)``.

    Returns None (serve the whole object) for an absent, malformed or
    multi-range header and for the empty object; raises
    ``RangeNotSatisfiable`` when the range lies outside the object.
    """
    if not header or size == 0:
        return None
    match = SINGLE.fullmatch(header.strip())
    if match is None:
        return None
    if match['suffix'] is not None:  # the last N bytes
        length = int(match['suffix'])
        if length == 0:
            raise RangeNotSatisfiable('a zero-length suffix range', size=size)
        return max(0, size - length), size
    start = int(match['first'])
    if match['last'] and int(match['last']) < start:
        return None  # invalid: ignore the header
    if start >= size:
        raise RangeNotSatisfiable(f'the object has {size} bytes', size=size)
    end = min(int(match['last']) + 1, size) if match['last'] else size
    return start, end

"""Hash algorithms, hash validation, RFC 9530 digest headers, hash-and-copy.

Everything that reads an upload goes through :func:`copy_stream`: one pass that
reads large chunks, feeds every hasher, writes, counts and enforces the limits.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from wsgi_store.errors import BadRequest, InvalidHash

_HEX = re.compile(r'[0-9a-f]+')
# RFC 9530 algorithm names -> hashlib names (only the ones we can compute).
RFC9530_ALGORITHMS = {
    'sha-256': 'sha256',
    'sha-512': 'sha512',
    'md5': 'md5',
    'sha': 'sha1',
}


class Hasher(Protocol):
    def update(self, data: Any, /) -> None: ...
    def digest(self) -> bytes: ...
    def hexdigest(self) -> str: ...


class Readable(Protocol):
    def read(self, size: int = ..., /) -> bytes: ...


@functools.cache
def available_algorithms() -> list[str]:
    """Names usable as a store's hash: hashlib's guaranteed ones (fixed length),
    plus ``blake3`` when that package is installed."""
    names = sorted(
        a for a in hashlib.algorithms_guaranteed if not a.startswith('shake')
    )
    try:
        import blake3  # noqa: F401
    except ImportError:
        return names
    return sorted([*names, 'blake3'])


def new_hasher(name: str) -> Hasher:
    """Create a hasher by algorithm name (``ValueError`` when unknown)."""
    return _constructor(name)()


@functools.cache
def _constructor(name: str) -> Callable[[], Hasher]:
    # Resolved once per name: this runs for every upload and every hash check.
    if name == 'blake3':
        try:
            from blake3 import blake3
        except ImportError:
            raise ValueError('blake3 needs the "blake3" package installed') from None
        return functools.partial(blake3, max_threads=1)  # type: ignore[return-value]
    if name not in available_algorithms():
        raise ValueError(
            f'unknown hash algorithm {name!r}; use one of: '
            + ', '.join(available_algorithms())
        )
    return getattr(hashlib, name, functools.partial(hashlib.new, name))


@functools.cache
def hex_length(name: str) -> int:
    """Length of the algorithm's hex digest."""
    return len(new_hasher(name).hexdigest())


def normalize_hash(value: object, length: int) -> str:
    """Validate an untrusted hash: exactly ``length`` hex digits (any case).

    Raises :class:`InvalidHash` with a reason. Never touches the filesystem.
    """
    if value is None:
        raise InvalidHash('the file_hash parameter is missing')
    if isinstance(value, list):
        raise InvalidHash('the file_hash parameter is given more than once')
    if not isinstance(value, str) or value == '':
        raise InvalidHash('the file_hash parameter is empty')
    if len(value) != length:
        raise InvalidHash(
            f'file_hash must be exactly {length} hex digits, '
            f'got {len(value)} characters'
        )
    lowered = value.lower()
    if not _HEX.fullmatch(lowered):
        raise InvalidHash('file_hash must contain only hex digits 0-9 and a-f')
    return lowered


def is_object_name(name: str, length: int) -> bool:
    """True for a stored object's name: exactly ``length`` lowercase hex digits."""
    return len(name) == length and _HEX.fullmatch(name) is not None


@dataclass(frozen=True)
class Expectation:
    """A digest the client announced; the upload is refused if it differs."""

    algorithm: str  # hashlib name
    digest: bytes
    source: str  # where it came from, for the error message


def parse_digest_header(value: str, header: str) -> list[Expectation]:
    """Parse an RFC 9530 ``Content-Digest``/``Repr-Digest`` dictionary.

    Algorithms we cannot compute are ignored (RFC 9530 allows it); a malformed
    member of an algorithm we know is a 400.
    """
    found = []
    for member in value.split(','):
        name, sep, rest = member.strip().partition('=')
        algorithm = RFC9530_ALGORITHMS.get(name.strip().lower())
        if algorithm is None:
            continue
        rest = rest.strip()
        if not sep or len(rest) < 2 or rest[0] != ':' or rest[-1] != ':':
            raise BadRequest(f'{header}: {name} must be a byte sequence (:base64:)')
        try:
            digest = base64.b64decode(rest[1:-1], validate=True)
        except (binascii.Error, ValueError):
            raise BadRequest(f'{header}: {name} is not valid base64') from None
        if len(digest) != hashlib.new(algorithm).digest_size:
            raise BadRequest(f'{header}: {name} has the wrong length for {name}')
        found.append(Expectation(algorithm, digest, header))
    return found

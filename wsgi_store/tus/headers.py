"""tus 1.0.0 header parsing and the headers every tus answer carries.

All protocol header handling lives here, so that another protocol version (the
IETF resumable-upload draft) or CORS can be added in one place.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from email.utils import formatdate

from wsgi_store.errors import BadRequest, StoreError

TUS_VERSION = '1.0.0'
EXTENSIONS = (
    'creation',
    'creation-with-upload',
    'creation-defer-length',
    'termination',
    'expiration',
    'checksum',
    'concatenation',
)
# Upload-Checksum algorithm names (tus: lower-case hashlib-style names).
CHECKSUM_ALGORITHMS = ('sha1', 'sha256', 'sha512', 'md5')
OFFSET_TYPE = 'application/offset+octet-stream'
HASH_HEADER = 'Upload-File-Hash'  # the stored object's hash once complete
# Headers a browser must be allowed to read (for CORS, later).
EXPOSED = (
    'Location',
    'Upload-Offset',
    'Upload-Length',
    'Upload-Metadata',
    'Upload-Defer-Length',
    'Upload-Expires',
    'Upload-Concat',
    'Tus-Resumable',
    'Tus-Version',
    'Tus-Extension',
    'Tus-Max-Size',
    'Tus-Checksum-Algorithm',
    'Content-Location',
    HASH_HEADER,
    'Upload-Complete',  # the IETF draft's
    'Upload-Limit',
    'Upload-Draft-Interop-Version',
)
MAX_METADATA_CHARS = 8192
_KEY = re.compile(r'[!-~]+')  # ASCII without spaces (and no commas: split on them)
_DIGITS = re.compile(r'[0-9]{1,19}')
_ID = re.compile(r'[A-Za-z0-9_-]{32}')


class PreconditionFailed(StoreError):
    status, slug, title = 412, 'tus-version', 'Unsupported tus version'


class Conflict(StoreError):
    status, slug, title = 409, 'offset-mismatch', 'Upload-Offset mismatch'


class Gone(StoreError):
    status, slug, title = 410, 'upload-expired', 'Upload expired'
    first_seen = False  # True for the first request (any process) to see it expire


class Locked(StoreError):
    status, slug, title = 423, 'upload-locked', 'Upload busy'


class UnsupportedType(StoreError):
    status, slug, title = 415, 'unsupported-media-type', 'Unsupported Media Type'


class ForbiddenPatch(StoreError):
    status, slug, title = 403, 'upload-final', 'Forbidden'


class ChecksumMismatch(StoreError):
    status, slug, title = 460, 'checksum-mismatch', 'Checksum Mismatch'


@dataclass(frozen=True)
class Checksum:
    """An ``Upload-Checksum``: the algorithm and the expected raw digest."""

    algorithm: str
    digest: bytes


def check_version(value: str | None) -> None:
    """412 unless the client speaks tus 1.0.0 (``Tus-Resumable``)."""
    if value is None:
        raise PreconditionFailed('this request needs Tus-Resumable: 1.0.0')
    if value.strip() != TUS_VERSION:
        raise PreconditionFailed(
            f'Tus-Resumable {value.strip()!r} is not supported; use {TUS_VERSION}'
        )


def require_version(req: object, resp: object, resource: object, params: dict) -> None:
    """Falcon ``before`` hook: :func:`check_version` after authentication.

    A request of the IETF draft (``Upload-Draft-Interop-Version``) needs no
    ``Tus-Resumable``; :mod:`.draft` checks its version.
    """
    if req.get_header('Upload-Draft-Interop-Version') is not None:  # type: ignore[attr-defined]
        return
    check_version(req.get_header('Tus-Resumable'))  # type: ignore[attr-defined]


def parse_count(value: str | None, name: str) -> int | None:
    """A non-negative integer header (``Upload-Length``, ``Upload-Offset``)."""
    if value is None:
        return None
    text = value.strip()
    if not _DIGITS.fullmatch(text):
        raise BadRequest(f'{name} must be a non-negative integer, not {value!r}')
    return int(text)


def parse_metadata(value: str | None) -> dict[str, str | None]:
    """``Upload-Metadata``: ``key base64,key base64,key`` -> {key: text or None}.

    Values are kept as their base64 text (echoed by ``HEAD`` unchanged);
    :func:`metadata_text` decodes one.
    """
    if value is None or not value.strip():
        return {}
    if len(value) > MAX_METADATA_CHARS:
        raise BadRequest(f'Upload-Metadata is longer than {MAX_METADATA_CHARS}')
    found: dict[str, str | None] = {}
    for pair in value.split(','):
        parts = pair.strip().split(' ')
        key = parts[0]
        if not _KEY.fullmatch(key) or len(parts) > 2:
            raise BadRequest(f'Upload-Metadata has a malformed pair {pair.strip()!r}')
        if key in found:
            raise BadRequest(f'Upload-Metadata has the key {key!r} twice')
        encoded = parts[1] if len(parts) == 2 else None
        if encoded is not None:
            _b64(encoded, f'Upload-Metadata value of {key!r}')
        found[key] = encoded
    return found


def format_metadata(meta: dict[str, str | None]) -> str:
    """The ``Upload-Metadata`` header value for stored metadata."""
    return ','.join(k if v is None else f'{k} {v}' for k, v in meta.items())


def metadata_text(meta: dict[str, str | None], key: str) -> str | None:
    """A metadata value decoded as UTF-8 (None when absent)."""
    encoded = meta.get(key)
    if encoded is None:
        return None
    try:
        return _b64(encoded, key).decode('utf-8')
    except UnicodeDecodeError:
        raise BadRequest(f'Upload-Metadata {key!r} is not UTF-8') from None


def parse_checksum(value: str | None) -> Checksum | None:
    """``Upload-Checksum: sha1 <base64>``; 400 for an unknown algorithm."""
    if value is None:
        return None
    name, _, encoded = value.strip().partition(' ')
    name = name.lower()
    if name not in CHECKSUM_ALGORITHMS:
        raise BadRequest(
            f'Upload-Checksum algorithm {name!r} is not supported; use one of '
            + ', '.join(CHECKSUM_ALGORITHMS)
        )
    return Checksum(name, _b64(encoded.strip(), 'Upload-Checksum'))


def parse_concat(value: str | None) -> tuple[str, list[str]] | None:
    """``Upload-Concat``: ``('partial', [])`` or ``('final', [url, ...])``."""
    if value is None:
        return None
    text = value.strip()
    if text == 'partial':
        return 'partial', []
    kind, sep, urls = text.partition(';')
    if kind != 'final' or not sep or not urls.split():
        raise BadRequest('Upload-Concat must be "partial" or "final;URL URL..."')
    return 'final', urls.split()


def upload_id_from(url: str) -> str:
    """The upload id at the end of a partial upload's URL (absolute or not)."""
    path = url.split('?', 1)[0].rstrip('/')
    marker = '/uploads/'
    where = path.rfind(marker)
    upload_id = path[where + len(marker) :] if where >= 0 else ''
    if not is_upload_id(upload_id):
        raise BadRequest(f'Upload-Concat names {url!r}, not an upload of this server')
    return upload_id


def is_upload_id(value: str) -> bool:
    """True for a well-formed upload id (checked before touching the disk)."""
    return _ID.fullmatch(value) is not None


def http_date(timestamp: float) -> str:
    """An RFC 9110 IMF-fixdate (``Upload-Expires``)."""
    return formatdate(timestamp, usegmt=True)


def _b64(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest(f'{what} is not valid base64') from None

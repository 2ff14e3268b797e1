"""Download names: ``?filename=NAME`` and ``?inline=1`` (RFC 6266, RFC 8187).

The app builds the header on every path (nginx never sees a request with a
query beyond ``file_hash``), so a name can never inject a header: the
``filename*`` form percent-encodes every byte outside RFC 8187's attr-char,
and the quoted ASCII fallback replaces anything but plain printable ASCII.
"""

from __future__ import annotations

import mimetypes
import re
import urllib.parse

from wsgi_store.errors import BadRequest

MAX_NAME_BYTES = 255  # NAME_MAX on Linux: the longest name a client can save
ATTR_CHARS = '!#$&+-.^_`|~'  # RFC 8187 attr-char besides ALPHA / DIGIT
_UNSAFE_FALLBACK = re.compile(r'[^A-Za-z0-9 !#$&\'()*+,\-.:<=>?@\[\]^_`{|}~]')
# The bidirectional embeddings, overrides and isolates: "invoice\u202efdp.exe"
# shows as "invoiceexe.pdf" in a download bar. Refused; the marks (LRM, RLM,
# ALM) that right-to-left names carry are kept, and control characters are only
# encoded (the header stays safe; a browser drops them when saving).
BIDI = re.compile('[\u202a-\u202e\u2066-\u2069]')
# Types a browser would run as active content on the store's origin: never
# served under their own type, so ?inline=1 can't host a script (stored XSS).
ACTIVE = frozenset(
    {
        'text/html',
        'application/xhtml+xml',
        'image/svg+xml',
        'text/xml',
        'application/xml',
        'text/javascript',
        'application/javascript',
        'text/xsl',
        'application/x-shockwave-flash',
        'message/rfc822',  # .mht/.mhtml/.eml: MHTML, rendered as HTML by IE/Edge
    }
)
_TYPES = mimetypes.MimeTypes()  # Python's built-in table: the same on every host
DEFAULT_TYPE = 'application/octet-stream'


def validate_name(name: str) -> str:
    """The name as given, or ``BadRequest`` when it cannot be offered."""
    if not name:
        raise BadRequest('filename must not be empty')
    if len(name.encode('utf-8', 'surrogatepass')) > MAX_NAME_BYTES:
        raise BadRequest(f'filename is longer than {MAX_NAME_BYTES} bytes (UTF-8)')
    if BIDI.search(name):
        raise BadRequest('filename has bidirectional formatting characters')
    return name


def content_disposition(name: str, *, inline: bool = False) -> str:
    """``attachment; filename="ascii"; filename*=UTF-8''pct`` for ``name``."""
    kind = 'inline' if inline else 'attachment'
    fallback = _UNSAFE_FALLBACK.sub('_', name)
    encoded = urllib.parse.quote(name.encode('utf-8', 'surrogatepass'), safe=ATTR_CHARS)
    return f'{kind}; filename="{fallback}"; filename*=UTF-8\'\'{encoded}'


def content_type(name: str) -> str:
    """The media type for a name's extension (octet-stream when unknown or active)."""
    stem, dot, ext = name.rpartition('.')
    if not (stem and dot and ext.isascii() and ext.isalnum()):
        return DEFAULT_TYPE
    guessed, _ = _TYPES.guess_type('name.' + ext.lower(), strict=True)
    if guessed is None or guessed in ACTIVE:
        return DEFAULT_TYPE
    return guessed

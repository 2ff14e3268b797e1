"""The store's metadata document and shards, the same for every backend.

``wsgi-store.json`` at the root of a store records the hash algorithm and the
layout version it was created with; a backend writes it on first use and checks
it on every start.
"""

from __future__ import annotations

import json
import time
from typing import Any

from wsgi_store.errors import StoreMismatch

LAYOUT_VERSION = 1
META_NAME = 'wsgi-store.json'
#: Objects live under the first two hex digits of their hash, in every backend.
SHARDS = [f'{i:02x}' for i in range(256)]


def new_document(algorithm: str) -> bytes:
    """The metadata document of a store created now with ``algorithm``."""
    doc = {
        'algorithm': algorithm,
        'layout': LAYOUT_VERSION,
        'created': time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()),
    }
    return (json.dumps(doc, indent=1) + '\n').encode()


def parse_document(raw: bytes, name: str) -> dict[str, Any]:
    """The parsed document; ``StoreMismatch`` when ``raw`` is not one."""
    try:
        meta = json.loads(raw)
    except ValueError:
        meta = None
    if not isinstance(meta, dict):
        raise StoreMismatch(f'{name} is not a wsgi-store metadata document')
    return meta


def check_document(
    meta: dict[str, Any], algorithm: str, where: str, other: str
) -> None:
    """Raise ``StoreMismatch`` unless the store at ``where`` matches our settings.

    Args:
        meta: the parsed metadata document.
        algorithm: the algorithm this instance hashes with.
        where: the store, as the message names it.
        other: what the user could use instead (``another prefix``).
    """
    found = meta.get('algorithm')
    if found != algorithm:
        raise StoreMismatch(
            f'the store at {where} uses {found}, not {algorithm}; '
            f'start with --hash {found} or use {other}'
        )
    if meta.get('layout') != LAYOUT_VERSION:
        raise StoreMismatch(
            f'the store at {where} has layout {meta.get("layout")}, this version '
            f'reads {LAYOUT_VERSION}'
        )

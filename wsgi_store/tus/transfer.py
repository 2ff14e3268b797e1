"""One ``PATCH`` (or a creation-with-upload body): stream it into a locked upload.

The bytes go straight from the request stream to the data file in
``chunk_bytes`` pieces (flat memory whatever the size), hashed on the way for
``Upload-Checksum`` (and for the whole file when the request starts at offset
0). The offset is committed (data flushed, then the offset record) before the
caller answers.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable

from wsgi_store.errors import IncompleteBody, StoreError, TooLarge
from wsgi_store.hashing import Readable, new_hasher
from wsgi_store.tus.headers import Checksum, ChecksumMismatch
from wsgi_store.tus.sessions import Writer


def append(
    writer: Writer,
    source: Readable,
    *,
    limit: int | None,
    checksum: Checksum | None,
    algorithms: Iterable[str] = (),
    chunk_bytes: int = 1 << 20,
) -> dict[str, bytes]:
    """Append ``source`` to the upload and commit; return the digests computed.

    Args:
        writer: the locked upload.
        source: the request body (already bounded by its Content-Length).
        limit: bytes the upload may still take (None: unknown length).
        checksum: the ``Upload-Checksum`` of this request's body, if any.
        algorithms: more hashlib names to compute over the body.
        chunk_bytes: read size.

    Raises:
        TooLarge: more than ``limit`` bytes arrived; nothing of this request kept.
        ChecksumMismatch: the body differs from ``Upload-Checksum``; nothing kept.
        IncompleteBody: the client went away; without a checksum the bytes that
            arrived are kept and committed (tus: store as much as possible).
    """
    names = list(
        dict.fromkeys([*algorithms, *([checksum.algorithm] if checksum else [])])
    )
    hashers = {name: new_hasher(name) for name in names}
    updates = [h.update for h in hashers.values()]
    try:
        while data := _read(source, chunk_bytes):
            if limit is not None and writer.written + len(data) > limit:
                raise TooLarge(
                    f"the body goes past the upload's length ({limit} bytes left)",
                    limit=limit,
                )
            view = memoryview(data)
            for update in updates:
                update(view)
            writer.write(view)
    except IncompleteBody:
        if checksum is not None:
            writer.rollback()  # unverifiable
        else:
            writer.commit()
        raise
    except BaseException:
        writer.rollback()
        raise
    digests = {name: h.digest() for name, h in hashers.items()}
    if checksum is not None and not hmac.compare_digest(
        digests[checksum.algorithm], checksum.digest
    ):
        writer.rollback()
        raise ChecksumMismatch(
            f'the body does not match its Upload-Checksum ({checksum.algorithm}); '
            'its bytes were discarded',
            algorithm=checksum.algorithm,
        )
    writer.commit()
    return digests


def _read(source: Readable, size: int) -> bytes:
    try:
        return source.read(size)
    except StoreError:
        raise
    except Exception as exc:  # the connection broke mid-body
        raise IncompleteBody(
            f'the request body could not be read: {type(exc).__name__}'
        ) from exc

"""Request bodies that misbehave, for upload failure tests."""

from __future__ import annotations

import io
import os


class BreakingStream:
    """Delivers ``good`` (bytes, or that many random bytes), then fails like a
    client that went away mid-upload."""

    def __init__(self, good: bytes | int) -> None:
        self._left = good if isinstance(good, int) else len(good)
        self._buf = io.BytesIO(b'' if isinstance(good, int) else good)

    def read(self, size: int = -1) -> bytes:
        if self._left <= 0:
            raise ConnectionResetError('the client went away')
        size = self._left if size is None or size < 0 else min(size, self._left)
        self._left -= size
        return self._buf.read(size) or os.urandom(size)

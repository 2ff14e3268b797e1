"""The S3 backend's byte carriers: the buffered upload part and the download reader."""

from __future__ import annotations

import bisect
import io
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

#: ``translate(action)``: a context manager turning botocore's errors into ours.
Translate = Callable[[str], AbstractContextManager[None]]


class _Chunks(io.RawIOBase):
    """A seekable read-only file over buffered chunks, without joining them.

    botocore reads a part twice (to sign it, then to send it) and rewinds it on a
    retry; joining the chunks into one ``bytes`` would hold the part twice.
    """

    def __init__(self, views: list[memoryview]) -> None:
        super().__init__()
        self._views = views
        self._starts: list[int] = []
        total = 0
        for view in views:
            self._starts.append(total)
            total += len(view)
        self._size = total
        self._pos = 0

    def __len__(self) -> int:
        return self._size - self._pos

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer: Any) -> int:
        if self._pos >= self._size:
            return 0
        index = bisect.bisect_right(self._starts, self._pos) - 1
        view = self._views[index][self._pos - self._starts[index] :]
        count = min(len(view), len(buffer))
        buffer[:count] = view[:count]
        self._pos += count
        return count


@dataclass
class _Upload:
    """``Staged.handle`` of the S3 backend: where a staged body is."""

    temp_key: str = ''  # set once a multipart upload began
    upload_id: str = ''  # set while the multipart upload is not completed
    parts: list[dict[str, Any]] = field(default_factory=list)
    buffer: list[memoryview] = field(default_factory=list)  # not yet sent
    buffered: int = 0


class S3Reader:
    """A downloaded object (or range) streamed from GetObject's body."""

    def __init__(self, body: Any, translate: Translate) -> None:
        self._body = body
        self._translate = translate
        self.closed = False

    def read(self, size: int = -1) -> bytes:
        """Read up to ``size`` bytes (all that is left when negative)."""
        if self._body is None:
            return b''
        with self._translate('read the object'):
            data: bytes = self._body.read(None if size < 0 else size)
        return data

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        """Release the connection (back to the pool when the body was read)."""
        if self._body is not None:
            self._body.close()
        self.closed = True

    def __enter__(self) -> S3Reader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def total_size(reply: dict[str, Any]) -> int:
    """The object's size from a (possibly partial) GetObject reply."""
    content_range = reply.get('ContentRange', '')  # bytes 0-99/1234
    if '/' in content_range:
        return int(content_range.rpartition('/')[2])
    return int(reply['ContentLength'])

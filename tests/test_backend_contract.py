"""The backend contract, run over every backend (filesystem and S3)."""

from __future__ import annotations

import hashlib
import io
import os

import pytest

from tests.streams import BreakingStream
from wsgi_store.backends.base import Backend
from wsgi_store.errors import DigestMismatch, IncompleteBody, NotFound, TooLarge
from wsgi_store.hashing import Expectation

DATA = b'contract data\n' * 100
H = hashlib.sha256(DATA).hexdigest()


def leftovers(backend: Backend) -> list[str]:
    """Temp uploads the backend still holds (must be none after any failure)."""
    return backend.temp_names()


def test_put_get_round_trip(backend: Backend) -> None:
    result = backend.put(io.BytesIO(DATA))
    assert (result.hash, result.size, result.created) == (H, len(DATA), True)
    assert backend.stat(H).size == len(DATA)
    with backend.open(H) as f:
        assert f.read() == DATA
    assert backend.exists(H)


def test_empty_object(backend: Backend) -> None:
    result = backend.put(io.BytesIO(b''))
    assert result.hash == hashlib.sha256(b'').hexdigest() and result.size == 0
    with backend.open(result.hash) as f:
        assert f.read() == b''


def test_dedupe(backend: Backend) -> None:
    assert backend.put(io.BytesIO(DATA)).created is True
    again = backend.put(io.BytesIO(DATA))
    assert again.created is False and again.hash == H
    assert list(backend.iter_hashes()) == [H]
    assert leftovers(backend) == []


def test_open_range(backend: Backend) -> None:
    backend.put(io.BytesIO(DATA))
    with backend.open(H, 10, 30) as f:
        assert f.read(20) == DATA[10:30]


def test_get_gives_info(backend: Backend) -> None:
    backend.put(io.BytesIO(DATA))
    dl = backend.get(H, inline_limit=0)
    try:
        assert dl.info.size == len(DATA) and dl.info.hash == H
    finally:
        dl.close()


def test_missing_object(backend: Backend) -> None:
    missing = 'ab' * 32
    for call in (backend.stat, backend.open, backend.delete, backend.get):
        with pytest.raises(NotFound):
            call(missing)
    assert not backend.exists(missing)


def test_delete(backend: Backend) -> None:
    backend.put(io.BytesIO(DATA))
    backend.delete(H)
    assert not backend.exists(H)
    with pytest.raises(NotFound):
        backend.delete(H)


def test_iter_hashes_sorted_and_after(backend: Backend) -> None:
    hashes = sorted(backend.put(io.BytesIO(os.urandom(10))).hash for _ in range(12))
    assert list(backend.iter_hashes()) == hashes
    assert list(backend.iter_hashes(after=hashes[5])) == hashes[6:]


def test_broken_stream_leaves_nothing(backend: Backend) -> None:
    with pytest.raises(IncompleteBody):
        backend.put(BreakingStream(DATA))
    assert list(backend.iter_hashes()) == []
    assert leftovers(backend) == []


def test_short_body_leaves_nothing(backend: Backend) -> None:
    with pytest.raises(IncompleteBody):
        backend.put(io.BytesIO(DATA), length=len(DATA) + 1)
    assert list(backend.iter_hashes()) == [] and leftovers(backend) == []


def test_too_large_leaves_nothing(backend: Backend) -> None:
    with pytest.raises(TooLarge):
        backend.put(io.BytesIO(DATA), max_bytes=len(DATA) - 1)
    assert list(backend.iter_hashes()) == [] and leftovers(backend) == []


def test_digest_mismatch_leaves_nothing(backend: Backend) -> None:
    wrong = Expectation('sha256', b'\0' * 32, 'test')
    with pytest.raises(DigestMismatch):
        backend.put(io.BytesIO(DATA), expect=[wrong])
    other = Expectation('sha512', hashlib.sha512(b'x').digest(), 'header')
    with pytest.raises(DigestMismatch):
        backend.put(io.BytesIO(DATA), expect=[other])
    assert list(backend.iter_hashes()) == [] and leftovers(backend) == []


def test_matching_expectations_store(backend: Backend) -> None:
    good = [
        Expectation('sha256', bytes.fromhex(H), 'q'),
        Expectation('sha512', hashlib.sha512(DATA).digest(), 'h'),
    ]
    assert backend.put(io.BytesIO(DATA), expect=good).hash == H


def test_stage_then_discard(backend: Backend) -> None:
    staged = backend.stage(io.BytesIO(DATA))
    assert staged.hash == H
    assert not backend.exists(H)  # never visible before commit
    backend.discard(staged)
    backend.discard(staged)  # idempotent
    assert leftovers(backend) == [] and not backend.exists(H)


def test_sweep_temp(backend: Backend) -> None:
    # Larger than one S3 part: smaller S3 bodies are staged in memory, not on S3.
    body = os.urandom(getattr(backend, 'part_bytes', 0) + 1)
    staged = backend.stage(io.BytesIO(body))
    assert leftovers(backend) != []
    # As if its writer had died: a filesystem temp file is then no longer locked
    # (a live one never is swept: tests/test_live_temp.py).
    if hasattr(staged.handle, 'close'):
        staged.handle.close()
    assert backend.sweep_temp(0) >= 1
    assert leftovers(backend) == []
    backend.discard(staged)

"""S3Backend against a real S3 server (Ceph RGW in CI; see tests/s3env.py)."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import multiprocessing
import os
import socket
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator

import pytest

from tests import s3env
from tests.streams import BreakingStream
from wsgi_store.backends.s3 import S3Backend
from wsgi_store.errors import (
    BackendUnavailable,
    DigestMismatch,
    IncompleteBody,
    NotFound,
    StoreMismatch,
)
from wsgi_store.hashing import Expectation
from wsgi_store.maintenance.verify import hash_object

pytestmark = pytest.mark.s3

MiB = 1 << 20
PART = 5 * MiB  # S3's minimum part size, so that multipart bodies stay small


@pytest.fixture
def prefix(request: pytest.FixtureRequest) -> Iterator[str]:
    yield from s3env.prefix_fixture(request)


@pytest.fixture
def backend(prefix: str) -> Iterator[S3Backend]:
    config = s3env.s3_config(prefix, s3_part_bytes=PART, chunk_bytes=256 * 1024)
    store = S3Backend.from_config(config)
    yield store
    store.close()


@pytest.fixture
def calls(backend: S3Backend) -> Counter[str]:
    """Count the S3 operations the backend sends (a spy on the real client)."""
    seen: Counter[str] = Counter()

    def count(model: object, **_: object) -> None:
        seen[model.name] += 1  # type: ignore[attr-defined]

    backend.client.get().meta.events.register('before-call.s3', count)
    return seen


def leftovers(backend: S3Backend) -> tuple[list[str], list[dict]]:
    """Keys other than the metadata, and pending multipart uploads."""
    keys = [k for k in s3env.list_keys(backend.prefix) if k != backend.meta_key]
    return keys, s3env.list_uploads(backend.prefix)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize('size', [0, 1, MiB, 2 * PART + 3])
def test_round_trip(backend: S3Backend, calls: Counter[str], size: int) -> None:
    data = os.urandom(size)
    result = backend.put(io.BytesIO(data), length=size)
    assert (result.hash, result.size, result.created) == (sha256(data), size, True)
    assert backend.stat(result.hash).size == size
    assert backend.stat(result.hash).mtime > time.time() - 3600
    with backend.open(result.hash) as f:
        assert f.read() == data
    assert hash_object(backend, result.hash) == (result.hash, size)
    assert leftovers(backend) == ([backend.key_for(result.hash)], [])
    if size > PART:
        assert calls['UploadPart'] == 3 and calls['CopyObject'] == 1
        assert calls['DeleteObject'] == 1  # the temporary key
    else:
        assert calls['UploadPart'] == 0 and calls['PutObject'] == 1


@pytest.mark.parametrize('size', [10, 2 * PART + 3])
def test_existing_content_is_not_stored_twice(
    backend: S3Backend, calls: Counter[str], size: int
) -> None:
    data = os.urandom(size)
    first = backend.put(io.BytesIO(data))
    calls.clear()
    second = backend.put(io.BytesIO(data))
    assert first.created and not second.created
    assert second.hash == first.hash
    assert calls['PutObject'] == calls['CopyObject'] == 0
    assert leftovers(backend) == ([backend.key_for(first.hash)], [])


def test_range_reads(backend: S3Backend, calls: Counter[str]) -> None:
    data = os.urandom(MiB)
    digest = backend.put(io.BytesIO(data)).hash
    cases = [(10, 20), (0, 1), (MiB - 1, MiB), (123_456, None), (0, MiB)]
    for start, end in cases:
        with backend.open(digest, start, end) as f:
            assert f.read() == data[start:end]
    calls.clear()
    with backend.open(digest, 5, 5) as f:
        assert f.read() == b''
    assert calls['GetObject'] == 0  # an empty range needs no transfer
    with backend.open(digest) as f:  # reads in pieces, as the server does
        pieces = iter(lambda: f.read(64 * 1024), b'')
        assert b''.join(pieces) == data


def test_absent_objects_are_not_found(backend: S3Backend) -> None:
    absent = sha256(b'never stored')
    assert not backend.exists(absent)
    for call in (backend.stat, backend.open, backend.delete, backend.quarantine):
        with pytest.raises(NotFound):
            call(absent)
    with pytest.raises(NotFound):
        backend.open(absent, 0, 0)


def test_delete(backend: S3Backend) -> None:
    kept = backend.put(io.BytesIO(b'kept')).hash
    gone = backend.put(io.BytesIO(b'gone')).hash
    backend.delete(gone)
    assert not backend.exists(gone) and backend.exists(kept)
    with pytest.raises(NotFound):
        backend.delete(gone)
    assert leftovers(backend) == ([backend.key_for(kept)], [])


def test_iter_hashes_in_order_after_and_skipping_other_keys(backend: S3Backend) -> None:
    hashes = sorted(backend.put(io.BytesIO(b'%d' % i)).hash for i in range(12))
    s3 = s3env.client()
    junk = ['ab/not-a-hash', f'{hashes[0][:2]}/{hashes[0][:-1]}', 'tmp/x', 'zz', 'a']
    junk.append(f'00/{hashes[1]}')  # right length, wrong shard
    for name in junk:
        s3.put_object(Bucket=backend.bucket, Key=backend.prefix + name, Body=b'x')
    assert list(backend.iter_hashes()) == hashes
    assert list(backend.iter_hashes(hashes[4])) == hashes[5:]
    assert list(backend.iter_hashes(hashes[4][:1])) == [
        h for h in hashes if h > hashes[4][:1]
    ]
    assert list(backend.iter_hashes('f' * 64)) == []


@pytest.mark.parametrize('good', [0, MiB, 2 * PART + 5])
def test_a_broken_stream_leaves_nothing(backend: S3Backend, good: int) -> None:
    with pytest.raises(IncompleteBody):
        backend.put(BreakingStream(good))
    assert leftovers(backend) == ([], [])
    assert list(backend.iter_hashes()) == []


@pytest.mark.parametrize('size', [100, 2 * PART + 3])
def test_a_short_body_leaves_nothing(backend: S3Backend, size: int) -> None:
    with pytest.raises(IncompleteBody):
        backend.put(io.BytesIO(os.urandom(size)), length=size + 1)
    assert leftovers(backend) == ([], [])


@pytest.mark.parametrize('size', [100, 2 * PART + 3])
def test_a_digest_mismatch_leaves_nothing(backend: S3Backend, size: int) -> None:
    data = os.urandom(size)
    wrong = Expectation('sha256', hashlib.sha256(b'other').digest(), 'test')
    with pytest.raises(DigestMismatch):
        backend.put(io.BytesIO(data), expect=[wrong])
    assert leftovers(backend) == ([], [])
    assert not backend.exists(sha256(data))
    right = Expectation('md5', hashlib.md5(data).digest(), 'test')
    assert backend.put(io.BytesIO(data), expect=[right]).created


def test_discard_is_idempotent(backend: S3Backend) -> None:
    staged = backend.stage(io.BytesIO(os.urandom(2 * PART + 1)))
    assert len(leftovers(backend)[0]) == 1  # the temporary key
    backend.discard(staged)
    backend.discard(staged)
    assert leftovers(backend) == ([], [])


def test_metadata_recorded_and_checked(prefix: str, backend: S3Backend) -> None:
    s3 = s3env.client()
    meta = json.loads(
        s3.get_object(Bucket=backend.bucket, Key=backend.meta_key)['Body'].read()
    )
    assert (meta['algorithm'], meta['layout']) == ('sha256', 1)
    S3Backend.from_config(s3env.s3_config(prefix)).close()  # same settings: fine
    with pytest.raises(StoreMismatch, match='sha256'):
        S3Backend.from_config(s3env.s3_config(prefix, hash='sha512'))
    s3.put_object(Bucket=backend.bucket, Key=backend.meta_key, Body=b'[1]')
    with pytest.raises(StoreMismatch):
        S3Backend.from_config(s3env.s3_config(prefix))


def test_sweep_temp(backend: S3Backend) -> None:
    s3 = s3env.client()
    s3.put_object(Bucket=backend.bucket, Key=backend.prefix + 'tmp/left', Body=b'x')
    s3.create_multipart_upload(Bucket=backend.bucket, Key=backend.prefix + 'tmp/up')
    kept = backend.put(io.BytesIO(b'kept')).hash
    other = s3env.new_prefix('sweep-other')
    try:
        s3.create_multipart_upload(Bucket=backend.bucket, Key=other + '/tmp/up')
        assert backend.sweep_temp(max_age=3600) == 0
        assert len(leftovers(backend)[0]) == 2 and len(leftovers(backend)[1]) == 1
        assert backend.sweep_temp(max_age=0) == 2
        assert leftovers(backend) == ([backend.key_for(kept)], [])
        assert len(s3env.list_uploads(other)) == 1  # another prefix: untouched
    finally:
        s3env.cleanup(other)


def test_large_objects_use_a_multipart_copy(
    backend: S3Backend, calls: Counter[str]
) -> None:
    backend.writer.copy_limit = PART  # stands in for CopyObject's 5 GiB limit
    data = os.urandom(2 * PART + 3)
    digest = backend.put(io.BytesIO(data)).hash
    assert calls['UploadPartCopy'] >= 2 and calls['CopyObject'] == 0
    with backend.open(digest) as f:
        assert f.read() == data
    assert leftovers(backend) == ([backend.key_for(digest)], [])


def test_quarantine_moves_the_object_aside(backend: S3Backend) -> None:
    digest = backend.put(io.BytesIO(b'suspect')).hash
    where = backend.quarantine(digest)
    assert not backend.exists(digest)
    key = where.removeprefix(f's3://{backend.bucket}/')
    assert key.startswith(f'{backend.prefix}quarantine/{digest}.')
    assert leftovers(backend) == ([key], [])
    assert digest not in list(backend.iter_hashes())
    s3env.client().put_object(
        Bucket=backend.bucket, Key=backend.key_for(digest), Body=b'2'
    )
    second = backend.quarantine(digest)  # within the same second: both are kept
    assert second != where and len(leftovers(backend)[0]) == 2


def test_presigned_url_serves_the_object(backend: S3Backend) -> None:
    digest = backend.put(io.BytesIO(b'direct from S3')).hash
    with urllib.request.urlopen(backend.presign_get(digest), timeout=10) as reply:
        assert reply.read() == b'direct from S3'


def test_ready_check(backend: S3Backend) -> None:
    [check] = backend.ready_checks()
    assert check.name == 's3' and check.ok and backend.bucket in check.detail


def _child_uses_own_client(backend: S3Backend, parent_client: int, digest: str) -> None:
    own = backend.client.get()
    os._exit(0 if id(own) != parent_client and backend.exists(digest) else 1)


def test_a_forked_process_gets_its_own_client(backend: S3Backend) -> None:
    digest = backend.put(io.BytesIO(b'shared')).hash
    parent = id(backend.client.get())
    child = multiprocessing.get_context('fork').Process(
        target=_child_uses_own_client, args=(backend, parent, digest)
    )
    child.start()
    child.join(30)
    assert child.exitcode == 0
    assert backend.exists(digest)  # the parent's client still works


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def test_an_unreachable_endpoint_is_unavailable_quickly(prefix: str) -> None:
    config = s3env.s3_config(
        prefix,
        s3_endpoint_url=f'http://127.0.0.1:{closed_port()}',
        s3_max_attempts=1,
        s3_connect_timeout=1.0,
        s3_read_timeout=1.0,
    )
    began = time.monotonic()
    store = S3Backend.from_config(config)  # starts anyway; /readyz tells
    for call in (store.stat, lambda h: store.put(io.BytesIO(b'x'))):
        with pytest.raises(BackendUnavailable, match='unavailable'):
            call('0' * 64)
    [check] = store.ready_checks()
    assert not check.ok
    assert time.monotonic() - began < 10


def test_bad_credentials_are_a_logged_configuration_error(
    prefix: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    secret = 'wrong-secret-' + 'x' * 20
    monkeypatch.setenv('AWS_SECRET_ACCESS_KEY', secret)
    caplog.set_level(logging.ERROR, logger='wsgi_store.backends.s3')
    config = s3env.s3_config(prefix, s3_max_attempts=1)
    store = S3Backend.from_config(config)
    with pytest.raises(BackendUnavailable, match='SignatureDoesNotMatch'):
        store.stat('0' * 64)
    assert not store.ready_checks()[0].ok
    assert 'S3 configuration error' in caplog.text
    assert secret not in caplog.text


def test_part_size_grows_to_fit_the_part_limit(backend: S3Backend) -> None:
    assert backend.writer.part_limit(0) == backend.writer.part_limit(1999) == PART
    assert backend.writer.part_limit(2000) == 2 * PART


@pytest.mark.parametrize('size', [0, 1, 1000, 1001, MiB])
def test_get_inlines_small_objects_with_one_request(
    backend: S3Backend, calls: Counter[str], size: int
) -> None:
    data = os.urandom(size)
    digest = backend.put(io.BytesIO(data)).hash
    calls.clear()
    download = backend.get(digest, inline_limit=1000)
    assert download.info.size == size and download.file is None
    assert download.data == (data if size <= 1000 else None)
    if size:
        assert calls == Counter({'GetObject': 1})
    assert backend.get(digest).data is None
    with pytest.raises(NotFound):
        backend.get(sha256(b'absent'), inline_limit=1000)


def test_sweep_keeps_an_old_upload_that_still_receives_parts(
    backend: S3Backend,
) -> None:
    s3 = s3env.client()
    key = backend.prefix + 'tmp/slow'
    upload_id = s3.create_multipart_upload(Bucket=backend.bucket, Key=key)['UploadId']
    time.sleep(2)
    s3.upload_part(
        Bucket=backend.bucket, Key=key, UploadId=upload_id, PartNumber=1, Body=b'x'
    )
    assert backend.sweep_temp(max_age=1.5) == 0  # started long ago, but active
    assert len(leftovers(backend)[1]) == 1
    time.sleep(2)
    assert backend.sweep_temp(max_age=1.5) == 1
    assert leftovers(backend) == ([], [])


def test_temp_names_lists_temp_keys_and_pending_uploads(backend: S3Backend) -> None:
    assert backend.temp_names() == []
    staged = backend.stage(io.BytesIO(os.urandom(2 * PART + 1)))
    [temp] = backend.temp_names()
    assert temp.startswith('tmp/')
    backend.discard(staged)
    s3env.client().create_multipart_upload(
        Bucket=backend.bucket, Key=backend.prefix + 'tmp/pending'
    )
    assert backend.temp_names() == ['upload:tmp/pending']
    small = backend.stage(io.BytesIO(b'small'))  # held in memory: nothing remote
    assert backend.temp_names() == ['upload:tmp/pending']
    backend.discard(small)


def test_the_writer_and_the_lister_work_without_the_backend(prefix: str) -> None:
    """The collaborators need only a client wrapper: no S3Backend, no metadata."""
    from wsgi_store.backends.s3_client import S3Client
    from wsgi_store.backends.s3_listing import S3Lister
    from wsgi_store.backends.s3_writes import S3Writer

    client = S3Client(s3env.bucket(), lambda kind: s3env.client())
    where = prefix + '/'
    writer = S3Writer(
        client,
        prefix=where,
        algorithm='sha256',
        part_bytes=PART,
        chunk_bytes=MiB,
        copy_limit=PART,
    )
    lister = S3Lister(client, prefix=where, hex_length=64)
    small, large = b'small', os.urandom(PART + 1)
    staged = writer.stage(io.BytesIO(large))
    assert lister.temp_names()  # the multipart upload's temporary key
    results = [writer.commit(staged), writer.commit(writer.stage(io.BytesIO(small)))]
    assert [r.hash for r in results] == [sha256(large), sha256(small)]
    assert list(lister.iter_hashes()) == sorted(r.hash for r in results)
    assert lister.temp_names() == [] and lister.sweep_temp(0) == 0
    assert s3env.list_keys(prefix) == sorted(writer.key_for(r.hash) for r in results)
    client.close()

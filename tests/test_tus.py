"""tus 1.0.0 on the filesystem backend: protocol details through WebTest."""

from __future__ import annotations

import base64
import hashlib
import os
import time
from pathlib import Path

import pytest
import webtest

from tests.conftest import sha256
from wsgi_store.app import create_app
from wsgi_store.config import Config
from wsgi_store.tus.sessions import DATA, OFFSET, UploadStore

TUS = {'Tus-Resumable': '1.0.0'}
OCTETS = 'application/offset+octet-stream'


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def create(app: webtest.TestApp, length: int | None = None, **headers: str) -> str:
    sent = {**TUS, **headers}
    if length is not None:
        sent['Upload-Length'] = str(length)
    resp = app.post('/uploads', headers=sent, status=201)
    return resp.headers['Location']


def patch(
    app: webtest.TestApp, url: str, offset: int, body: bytes, status: int = 204, **hdr
) -> webtest.TestResponse:
    headers = {**TUS, 'Upload-Offset': str(offset), 'Content-Type': OCTETS, **hdr}
    return app.patch(url, body, headers=headers, status=status)


def offset_of(app: webtest.TestApp, url: str) -> int:
    return int(app.head(url, headers=TUS, status=200).headers['Upload-Offset'])


def upload_dir(store_dir: Path, url: str) -> Path:
    return store_dir / 'uploads' / url.rsplit('/', 1)[1]


def test_options_announces_version_extensions_checksums_and_max_size(make_app):
    resp = make_app(max_upload_bytes=1000).options('/uploads', status=204)
    assert resp.headers['Tus-Version'] == '1.0.0'
    extensions = set(resp.headers['Tus-Extension'].split(','))
    assert extensions == {
        'creation',
        'creation-with-upload',
        'creation-defer-length',
        'termination',
        'expiration',
        'checksum',
        'concatenation',
    }
    assert {'sha1', 'sha256'} <= set(resp.headers['Tus-Checksum-Algorithm'].split(','))
    assert resp.headers['Tus-Max-Size'] == '1000'
    assert 'Tus-Resumable' not in resp.headers


@pytest.mark.parametrize('version', [None, '0.2.2', '1.0'])
def test_unsupported_tus_resumable_is_412_with_tus_version(app, store_dir, version):
    headers = {'Upload-Length': '3'}
    if version:
        headers['Tus-Resumable'] = version
    resp = app.post('/uploads', headers=headers, status=412)
    assert resp.headers['Tus-Version'] == '1.0.0'
    assert resp.headers['Tus-Resumable'] == '1.0.0'
    assert resp.content_type == 'application/problem+json'
    assert not (store_dir / 'uploads').exists()  # nothing was created


def test_every_tus_answer_carries_tus_resumable_errors_included(app):
    url = create(app, 5)
    answers = [
        app.head(url, headers=TUS),
        patch(app, url, 0, b'ab'),
        patch(app, url, 0, b'ab', status=409),
        app.head('/uploads/' + 'x' * 32, headers=TUS, status=404),
        app.post('/uploads', headers={**TUS, 'Upload-Length': 'x'}, status=400),
        app.delete(url, headers=TUS, status=204),
    ]
    assert all(a.headers['Tus-Resumable'] == '1.0.0' for a in answers)


def test_two_patches_store_the_object_with_content_location_and_hash(app):
    data = b'hello, resumable world'
    meta = f'filename {b64(b"a b.txt")},kind'
    url = create(app, len(data), **{'Upload-Metadata': meta})
    assert url.startswith('/uploads/')
    first = patch(app, url, 0, data[:7])
    assert first.headers['Upload-Offset'] == '7'
    assert 'Content-Location' not in first.headers
    last = patch(app, url, 7, data[7:])
    assert last.headers['Upload-Offset'] == str(len(data))
    digest = sha256(data)
    assert last.headers['Upload-File-Hash'] == digest
    assert last.headers['Content-Location'] == f'/files/{digest}?filename=a%20b.txt'
    assert app.get(f'/files/{digest}').body == data
    head = app.head(url, headers=TUS)
    assert head.headers['Content-Location'] == last.headers['Content-Location']
    assert head.headers['Upload-File-Hash'] == digest
    assert head.headers['Upload-Metadata'] == meta


def test_head_reports_offset_length_metadata_expiry_and_no_store(app):
    url = create(app, 10, **{'Upload-Metadata': 'filename ' + b64(b'x')})
    patch(app, url, 0, b'abc')
    head = app.head(url, headers=TUS)
    assert head.headers['Upload-Offset'] == '3'
    assert head.headers['Upload-Length'] == '10'
    assert head.headers['Upload-Metadata'] == 'filename ' + b64(b'x')
    assert head.headers['Cache-Control'] == 'no-store'
    expires = time.mktime(
        time.strptime(head.headers['Upload-Expires'][5:], '%d %b %Y %H:%M:%S GMT')
    )
    assert 86000 < expires - time.mktime(time.gmtime()) <= 86400


def test_patch_at_a_stale_offset_is_409_and_keeps_the_bytes(app):
    url = create(app, 6)
    patch(app, url, 0, b'abc')
    resp = patch(app, url, 0, b'xyz', status=409)
    assert resp.headers['Upload-Offset'] == '3'
    assert offset_of(app, url) == 3


def test_patch_without_offset_octet_stream_type_is_415(app):
    url = create(app, 3)
    headers = {**TUS, 'Upload-Offset': '0', 'Content-Type': 'text/plain'}
    app.patch(url, b'abc', headers=headers, status=415)
    assert offset_of(app, url) == 0


def test_checksum_mismatch_is_460_and_discards_the_bytes(app):
    url = create(app, 6)
    wrong = 'sha1 ' + b64(hashlib.sha1(b'abd').digest())
    resp = patch(app, url, 0, b'abc', status=460, **{'Upload-Checksum': wrong})
    assert resp.status == '460 Checksum Mismatch'
    assert offset_of(app, url) == 0
    right = 'sha256 ' + b64(hashlib.sha256(b'abc').digest())
    assert (
        patch(app, url, 0, b'abc', **{'Upload-Checksum': right}).headers[
            'Upload-Offset'
        ]
        == '3'
    )


def test_unsupported_checksum_algorithm_is_400(app):
    url = create(app, 3)
    resp = patch(app, url, 0, b'abc', status=400, **{'Upload-Checksum': 'crc32 AAAA'})
    assert 'sha1' in resp.json['detail']


def test_creation_with_upload_answers_the_offset(app):
    resp = app.post(
        '/uploads',
        b'abcd',
        headers={**TUS, 'Upload-Length': '10', 'Content-Type': OCTETS},
        status=201,
    )
    assert resp.headers['Upload-Offset'] == '4'
    assert offset_of(app, resp.headers['Location']) == 4


def test_creation_with_the_whole_upload_stores_it_at_once(app):
    data = b'all in one go'
    resp = app.post(
        '/uploads',
        data,
        headers={**TUS, 'Upload-Length': str(len(data)), 'Content-Type': OCTETS},
        status=201,
    )
    assert resp.headers['Upload-File-Hash'] == sha256(data)
    assert app.get(resp.headers['Content-Location']).body == data


def test_deferred_length_is_set_by_a_later_patch(app):
    url = create(app, **{'Upload-Defer-Length': '1'})
    head = app.head(url, headers=TUS)
    assert head.headers['Upload-Defer-Length'] == '1'
    assert 'Upload-Length' not in head.headers
    patch(app, url, 0, b'abc')
    patch(app, url, 3, b'de', status=400, **{'Upload-Length': '2'})  # < offset
    done = patch(app, url, 3, b'de', **{'Upload-Length': '5'})
    assert done.headers['Upload-File-Hash'] == sha256(b'abcde')


def test_a_known_upload_length_cannot_change(app):
    url = create(app, 5)
    patch(app, url, 0, b'ab', status=400, **{'Upload-Length': '6'})
    assert offset_of(app, url) == 0


@pytest.mark.parametrize(
    'headers',
    [
        {},
        {'Upload-Length': '-1'},
        {'Upload-Length': '3', 'Upload-Defer-Length': '1'},
        {'Upload-Defer-Length': '2'},
        {'Upload-Length': '3', 'Upload-Metadata': 'bad key value'},
        {'Upload-Length': '3', 'Upload-Metadata': 'k not*base64'},
        {'Upload-Length': '3', 'Upload-Metadata': 'k YQ==,k YQ=='},
        {'Upload-Length': '3', 'Upload-Concat': 'final;'},
        {'Upload-Length': '3', 'Upload-Metadata': 'file_hash ' + b64(b'nothex')},
    ],
)
def test_malformed_creation_headers_are_400_problems(app, headers):
    resp = app.post('/uploads', headers={**TUS, **headers}, status=400)
    assert resp.content_type == 'application/problem+json'


def test_upload_length_over_max_upload_bytes_is_413_at_creation(make_app, store_dir):
    app = make_app(max_upload_bytes=100)
    app.post('/uploads', headers={**TUS, 'Upload-Length': '101'}, status=413)
    assert not (store_dir / 'uploads').exists()  # nothing was created
    create(app, 100)


def test_a_deferred_upload_cannot_grow_past_max_upload_bytes(make_app):
    app = make_app(max_upload_bytes=5)
    url = create(app, **{'Upload-Defer-Length': '1'})
    patch(app, url, 0, b'abc')
    patch(app, url, 3, b'def', status=413)
    assert offset_of(app, url) == 3


def test_patch_past_the_length_is_413_and_keeps_the_offset(app):
    url = create(app, 4)
    patch(app, url, 0, b'ab')
    patch(app, url, 2, b'cdef', status=413)
    assert offset_of(app, url) == 2


def test_delete_terminates_the_upload(app, store_dir):
    url = create(app, 4)
    patch(app, url, 0, b'ab')
    app.delete(url, headers=TUS, status=204)
    app.head(url, headers=TUS, status=404)
    patch(app, url, 2, b'cd', status=404)
    assert not upload_dir(store_dir, url).exists()


def test_expired_upload_is_410_and_swept(app, store_dir):
    url = create(app, 4)
    offset_file = upload_dir(store_dir, url) / OFFSET
    past = time.time() - 86401
    os.utime(offset_file, (past, past))
    app.head(url, headers=TUS, status=410)
    patch(app, url, 0, b'ab', status=410)
    store = UploadStore(str(store_dir / 'uploads'), 86400)
    assert store.sweep() == 1
    app.head(url, headers=TUS, status=404)


def test_sweep_skips_an_expired_upload_a_writer_holds(app, store_dir):
    url = create(app, 4)
    store = UploadStore(str(store_dir / 'uploads'), 0)
    with store.locked(url.rsplit('/', 1)[1]):
        assert store.sweep(time.time() + 1) == 0
    assert store.sweep(time.time() + 1) == 1


def test_bytes_past_the_committed_offset_are_dropped(app, store_dir):
    """A crash mid-PATCH leaves unacknowledged bytes after the offset: cut them."""
    url = create(app, 6)
    patch(app, url, 0, b'abc')
    with open(upload_dir(store_dir, url) / DATA, 'ab') as f:
        f.write(b'GARBAGE')
    assert offset_of(app, url) == 3
    done = patch(app, url, 3, b'def')
    assert done.headers['Upload-File-Hash'] == sha256(b'abcdef')


def test_file_hash_mismatch_at_completion_stores_nothing(app, store_dir):
    wrong = sha256(b'something else')
    url = create(app, 3, **{'Upload-Metadata': 'file_hash ' + b64(wrong.encode())})
    resp = patch(app, url, 0, b'abc', status=400)
    assert resp.json['expected'] == wrong
    assert resp.json['actual'] == sha256(b'abc')
    app.get(f'/files/{sha256(b"abc")}', status=404)
    app.head(url, headers=TUS, status=404)


def test_repr_digest_at_creation_is_checked_over_the_whole_upload(app):
    data = b'checked whole'
    digest = b64(hashlib.sha512(data).digest())
    url = create(app, len(data), **{'Repr-Digest': f'sha-512=:{digest}:'})
    patch(app, url, 0, data[:4])
    done = patch(app, url, 4, data[4:])
    assert done.headers['Upload-File-Hash'] == sha256(data)


def test_same_bytes_twice_dedupe_to_one_object(app):
    urls = [create(app, 3), create(app, 3)]
    hashes = {patch(app, u, 0, b'xyz').headers['Upload-File-Hash'] for u in urls}
    assert hashes == {sha256(b'xyz')}
    assert app.get(f'/files/{sha256(b"xyz")}').body == b'xyz'


def test_concatenation_stores_only_the_final_upload(app, store_dir):
    parts = [b'first part|', b'second part']
    urls = []
    for part in parts:
        url = create(app, len(part), **{'Upload-Concat': 'partial'})
        done = patch(app, url, 0, part)
        assert 'Upload-File-Hash' not in done.headers  # a partial is no object
        urls.append(url)
    app.get(f'/files/{sha256(parts[0])}', status=404)
    final = app.post(
        '/uploads',
        headers={**TUS, 'Upload-Concat': 'final;' + ' '.join(urls)},
        status=201,
    )
    whole = b''.join(parts)
    assert final.headers['Upload-File-Hash'] == sha256(whole)
    assert app.get(f'/files/{sha256(whole)}').body == whole
    head = app.head(final.headers['Location'], headers=TUS)
    assert head.headers['Upload-Concat'] == 'final;' + ' '.join(urls)
    assert head.headers['Upload-Length'] == str(len(whole))
    patch(app, final.headers['Location'], len(whole), b'', status=403)


def test_final_upload_of_an_unfinished_partial_is_400(app):
    url = create(app, 5, **{'Upload-Concat': 'partial'})
    patch(app, url, 0, b'ab')
    app.post('/uploads', headers={**TUS, 'Upload-Concat': f'final;{url}'}, status=400)
    plain = create(app, 2)
    patch(app, plain, 0, b'ab')
    app.post('/uploads', headers={**TUS, 'Upload-Concat': f'final;{plain}'}, status=400)


def test_malformed_upload_ids_are_404(app):
    for upload_id in ('..', 'short', 'x' * 33, '%2E%2E'):
        app.head(f'/uploads/{upload_id}', headers=TUS, status=404)


WRITER = 'tus-writer-token-00000000001'
OTHER = 'tus-other-writer-0000000002'
READER = 'tus-reader-token-00000000003'


@pytest.fixture
def auth_app(tmp_path: Path, store_dir: Path) -> webtest.TestApp:
    tokens = tmp_path / 'tokens'
    tokens.write_text(f'{WRITER} write\n{OTHER} write\n{READER} read\n')
    config = Config(store_dir=store_dir, tokens_file=tokens)
    return webtest.TestApp(
        create_app(config), extra_environ={'wsgi.input_terminated': True}
    )


def bearer(token: str) -> dict[str, str]:
    return {**TUS, 'Authorization': f'Bearer {token}'}


def test_authentication_comes_before_the_tus_version_check(auth_app):
    auth_app.post('/uploads', headers={'Upload-Length': '3'}, status=401)
    auth_app.head('/uploads/' + 'x' * 32, status=401)


def test_uploads_need_write_and_belong_to_the_creating_token(auth_app, store_dir):
    auth_app.post('/uploads', headers={**TUS, 'Upload-Length': '3'}, status=401)
    auth_app.post(
        '/uploads', headers={**bearer(READER), 'Upload-Length': '3'}, status=403
    )
    resp = auth_app.post('/uploads', headers={**bearer(WRITER), 'Upload-Length': '3'})
    url = resp.headers['Location']
    upload_id = url.rsplit('/', 1)[1]
    assert len(base64.urlsafe_b64decode(upload_id)) * 8 >= 128
    auth_app.head(url, headers=bearer(READER), status=403)
    auth_app.head(url, headers=bearer(OTHER), status=404)
    auth_app.delete(url, headers=bearer(OTHER), status=404)
    headers = {**bearer(OTHER), 'Upload-Offset': '0', 'Content-Type': OCTETS}
    auth_app.patch(url, b'abc', headers=headers, status=404)
    info = (upload_dir(store_dir, url) / 'info.json').read_text()
    assert WRITER not in info and hashlib.sha256(WRITER.encode()).hexdigest() in info
    headers['Authorization'] = f'Bearer {WRITER}'
    auth_app.patch(url, b'abc', headers=headers, status=204)
    auth_app.options('/uploads', status=204)  # discovery needs no token


def test_head_finishes_an_upload_whose_commit_was_interrupted(app, store_dir):
    """kill -9 after the last byte was flushed but before the object existed."""
    url = create(app, 3)
    store = UploadStore(str(store_dir / 'uploads'), 86400)
    with store.locked(url.rsplit('/', 1)[1]) as writer:
        writer.write(memoryview(b'abc'))
        writer.commit()  # the bytes are in; finish() never ran
    head = app.head(url, headers=TUS)
    assert head.headers['Upload-File-Hash'] == sha256(b'abc')
    assert app.get(head.headers['Content-Location']).body == b'abc'


def test_head_records_an_object_renamed_before_a_crash(app, store_dir):
    """kill -9 between the rename into the shard and the info update."""
    url = create(app, 3)
    upload_id = url.rsplit('/', 1)[1]
    store = UploadStore(str(store_dir / 'uploads'), 86400)
    with store.locked(upload_id) as writer:
        writer.write(memoryview(b'xyz'))
        writer.commit()
    digest = sha256(b'xyz')
    info = store.load(upload_id, '')
    info.pending_hash = digest
    store.save(info)
    os.rename(store.path(upload_id, DATA), store_dir / digest[:2] / digest)
    head = app.head(url, headers=TUS)
    assert head.headers['Upload-File-Hash'] == digest
    assert app.get(f'/files/{digest}').body == b'xyz'


def test_a_busy_upload_is_423_for_a_second_writer_and_for_delete(
    app, store_dir, monkeypatch
):
    from wsgi_store.tus import sessions

    monkeypatch.setattr(sessions, 'LOCK_WAIT', 0.2)
    url = create(app, 4)
    store = UploadStore(str(store_dir / 'uploads'), 86400)
    with store.locked(url.rsplit('/', 1)[1]):
        patch(app, url, 0, b'ab', status=423)
        app.delete(url, headers=TUS, status=423)
    assert patch(app, url, 0, b'ab').headers['Upload-Offset'] == '2'

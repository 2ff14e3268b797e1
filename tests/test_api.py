"""The HTTP contract, row by row, over a real filesystem store (WebTest)."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os

import pytest
import webtest

from tests.conftest import sha256

DATA = b'hello, store\n'
H = sha256(DATA)


def stored_files(store_dir) -> list[str]:
    return sorted(p.name for p in store_dir.glob('[0-9a-f][0-9a-f]/*'))


def temp_files(store_dir) -> list[str]:
    return sorted(p.name for p in (store_dir / 'tmp').iterdir())


def post_raw(app, body: bytes, content_type: str, **kw):
    """POST exactly these bytes (WebTest's post() re-encodes multipart bodies)."""
    return app.request('/', method='POST', body=body, content_type=content_type, **kw)


def raw_call(
    app,
    stream: io.BytesIO,
    content_length: int | None = None,
    path: str = '/',
    method: str = 'POST',
):
    """Call the WSGI app with exactly this input and framing (WebTest would fix
    Content-Length up): a chunked body has no CONTENT_LENGTH at all."""
    req = webtest.TestRequest.blank(path, method=method)
    req.environ['wsgi.input'] = stream
    req.environ['wsgi.input_terminated'] = True
    req.environ.pop('CONTENT_LENGTH', None)
    if content_length is None:
        req.environ['HTTP_TRANSFER_ENCODING'] = 'chunked'
    else:
        req.environ['CONTENT_LENGTH'] = str(content_length)
    return req.get_response(app.app)


# -- uploads -------------------------------------------------------------------
@pytest.mark.parametrize('path', ['/', '/files'])
def test_raw_upload_answers_hash_as_text(app, store_dir, path):
    resp = app.post(path, DATA, content_type='application/octet-stream')
    assert resp.status_int == 200
    assert resp.content_type == 'text/plain'
    assert resp.text == H + '\n'
    assert (store_dir / H[:2] / H).read_bytes() == DATA
    assert resp.headers['Location'] == f'/files/{H}'


def test_upload_json_answer_and_idempotence(app, store_dir):
    first = app.post('/', DATA, headers={'Accept': 'application/json'}).json
    assert first == {
        'hash': H,
        'algorithm': 'sha256',
        'size': len(DATA),
        'created': True,
    }
    mtime = (store_dir / H[:2] / H).stat().st_mtime_ns
    again = app.post('/', DATA, headers={'Accept': 'application/json'})
    assert again.status_int == 200 and again.json['created'] is False
    assert (store_dir / H[:2] / H).stat().st_mtime_ns == mtime  # nothing rewritten
    assert stored_files(store_dir) == [H]


def test_any_content_type_but_multipart_is_raw(app):
    resp = app.post('/', DATA, content_type='application/x-www-form-urlencoded')
    assert resp.text == H + '\n'


def test_empty_upload(app):
    assert app.post('/', b'').text == sha256(b'') + '\n'


def test_multipart_file_field(app, store_dir):
    resp = app.post('/', upload_files=[('file', 'photo.jpg', DATA)])
    assert resp.text == H + '\n'
    assert temp_files(store_dir) == []


def test_multipart_only_file_part_with_other_name(app):
    resp = app.post('/', {'note': 'x'}, upload_files=[('upload', 'a.bin', DATA)])
    assert resp.text == H + '\n'


def test_multipart_file_field_wins_over_other_file_parts(app):
    resp = app.post(
        '/', upload_files=[('other', 'b.bin', b'other'), ('file', 'a.bin', DATA)]
    )
    assert resp.text == H + '\n'


def test_multipart_several_file_parts_is_400(app, store_dir):
    resp = app.post(
        '/', upload_files=[('a', 'a.bin', DATA), ('b', 'b.bin', b'x')], status=400
    )
    assert 'several file parts' in resp.json['detail']
    assert stored_files(store_dir) == [] and temp_files(store_dir) == []


def test_multipart_two_file_fields_is_400(app, store_dir):
    app.post(
        '/', upload_files=[('file', 'a.bin', DATA), ('file', 'b.bin', b'x')], status=400
    )
    assert stored_files(store_dir) == [] and temp_files(store_dir) == []


def test_multipart_without_file_part_is_400(app):
    resp = app.post('/', {'note': 'x'}, content_type='multipart/form-data', status=400)
    assert resp.json['status'] == 400


def test_multipart_without_boundary_is_400(app):
    post_raw(app, b'--x\r\n', 'multipart/form-data', status=400)


def test_multipart_malformed_is_400(app, store_dir):
    body = (
        b'--XX\r\nContent-Disposition: form-data; name="file"; filename="a"\r\n\r\nabc'
    )
    post_raw(app, body, 'multipart/form-data; boundary=XX', status=400)
    assert stored_files(store_dir) == [] and temp_files(store_dir) == []


def test_multipart_too_many_parts_is_400(app):
    parts = b''.join(
        b'--XX\r\nContent-Disposition: form-data; name="f%d"\r\n\r\nv\r\n' % i
        for i in range(1000)
    )
    body = parts + b'--XX--\r\n'
    resp = post_raw(app, body, 'multipart/form-data; boundary=XX', status=400)
    assert 'maximum number of form body parts' in resp.json['detail']


def test_multipart_huge_part_header_is_400(app):
    body = (
        b'--XX\r\nContent-Disposition: form-data; name="file"; filename="a"\r\n'
        b'X-Pad: ' + b'a' * (1 << 20) + b'\r\n\r\nabc\r\n--XX--\r\n'
    )
    resp = post_raw(app, body, 'multipart/form-data; boundary=XX', status=400)
    assert 'headers' in resp.json['detail']


def test_chunked_upload_is_not_empty(app):
    """No Content-Length: the body is read to its end (never the empty hash)."""
    resp = raw_call(app, io.BytesIO(DATA))
    assert resp.status_int == 200 and resp.text == H + '\n'


def test_short_body_is_refused(app, store_dir):
    resp = raw_call(app, io.BytesIO(DATA[:5]), len(DATA))
    assert resp.status_int == 400
    assert resp.json['type'].endswith('/incomplete-body')
    assert stored_files(store_dir) == [] and temp_files(store_dir) == []


def test_longer_body_than_content_length_stores_only_the_announced_bytes(app):
    resp = raw_call(app, io.BytesIO(DATA + b'trailing'), len(DATA))
    assert resp.text == H + '\n'


# -- expected digests ----------------------------------------------------------
def test_post_with_matching_file_hash(app):
    assert app.post(f'/?file_hash={H.upper()}', DATA).text == H + '\n'


def test_post_with_wrong_file_hash_stores_nothing(app, store_dir):
    resp = app.post('/?file_hash=' + '0' * 64, DATA, status=400)
    assert resp.json['type'].endswith('/digest-mismatch')
    assert stored_files(store_dir) == [] and temp_files(store_dir) == []


def test_put_files_hash(app):
    assert app.put(f'/files/{H}', DATA).text == H + '\n'
    app.put('/files/' + 'f' * 64, DATA, status=400)
    # not a hash: a named upload (curl -T FILE http://host/files/), see
    # test_curl_habits::test_put_files_name_is_a_named_upload
    assert app.put('/files/nothex', DATA).location.endswith('?filename=nothex')


@pytest.mark.parametrize('header', ['Content-Digest', 'Repr-Digest'])
def test_rfc9530_digest_headers(app, store_dir, header):
    good = base64.b64encode(hashlib.sha256(DATA).digest()).decode()
    assert app.post('/', DATA, headers={header: f'sha-256=:{good}:'}).status_int == 200
    sha512 = base64.b64encode(hashlib.sha512(b'other').digest()).decode()
    app.post('/', b'new', headers={header: f'sha-512=:{sha512}:'}, status=400)
    assert stored_files(store_dir) == [H]
    app.post('/', b'new', headers={header: 'sha-256=:notbase64!:'}, status=400)
    # unknown algorithms are ignored, as RFC 9530 allows
    assert app.post('/', b'new', headers={header: 'id-xyz=:AAAA:'}).status_int == 200


# -- downloads -----------------------------------------------------------------
@pytest.fixture
def stored(app):
    app.post('/', DATA)
    return H


@pytest.mark.parametrize('url', ['/?file_hash={h}', '/files/{h}', '/?file_hash={H}'])
def test_get_returns_bytes_and_headers(app, stored, url):
    resp = app.get(url.format(h=stored, H=stored.upper()))
    assert resp.body == DATA
    assert resp.headers['Content-Type'] == 'application/octet-stream'
    assert resp.headers['Content-Length'] == str(len(DATA))
    assert resp.headers['ETag'] == f'"{stored}"'
    assert resp.headers['Cache-Control'] == 'public, max-age=31536000, immutable'
    assert resp.headers['Accept-Ranges'] == 'bytes'


@pytest.mark.parametrize('url', ['/?file_hash={h}', '/files/{h}'])
def test_head(app, stored, url):
    resp = app.head(url.format(h=stored))
    assert resp.status_int == 200 and resp.body == b''
    assert resp.headers['Content-Length'] == str(len(DATA))
    assert resp.headers['ETag'] == f'"{stored}"'


def test_large_object_streams(app):
    data = os.urandom(3 * 1024 * 1024 + 7)
    h = app.post('/', data).text.strip()
    resp = app.get(f'/files/{h}')
    assert resp.body == data


@pytest.mark.parametrize(
    ('rng', 'status', 'body', 'crange'),
    [
        ('bytes=0-4', 206, DATA[:5], f'bytes 0-4/{len(DATA)}'),
        ('bytes=7-', 206, DATA[7:], f'bytes 7-{len(DATA) - 1}/{len(DATA)}'),
        (
            'bytes=-3',
            206,
            DATA[-3:],
            f'bytes {len(DATA) - 3}-{len(DATA) - 1}/{len(DATA)}',
        ),
        ('bytes=5-1000', 206, DATA[5:], f'bytes 5-{len(DATA) - 1}/{len(DATA)}'),
        ('bytes=0-1,3-4', 200, DATA, None),  # multi-range: whole object
        ('items=0-1', 200, DATA, None),
        ('bytes=abc', 200, DATA, None),
    ],
)
def test_range(app, stored, rng, status, body, crange):
    resp = app.get(f'/files/{stored}', headers={'Range': rng})
    assert resp.status_int == status
    assert resp.body == body
    assert resp.headers.get('Content-Range') == crange


def test_range_on_large_file_object(app):
    data = os.urandom(200 * 1024)
    h = app.post('/', data).text.strip()
    resp = app.get(f'/files/{h}', headers={'Range': 'bytes=100000-150000'})
    assert resp.status_int == 206 and resp.body == data[100000:150001]


def test_range_not_satisfiable(app, stored):
    resp = app.get(f'/files/{stored}', headers={'Range': 'bytes=1000-'}, status=416)
    assert resp.headers['Content-Range'] == f'bytes */{len(DATA)}'


def test_if_range_mismatch_serves_whole(app, stored):
    resp = app.get(
        f'/files/{stored}', headers={'Range': 'bytes=0-1', 'If-Range': '"x"'}
    )
    assert resp.status_int == 200 and resp.body == DATA


@pytest.mark.parametrize('inm', ['"{h}"', 'W/"{h}"', '"a", "{h}"', '*'])
def test_if_none_match(app, stored, inm):
    resp = app.get(
        f'/files/{stored}', headers={'If-None-Match': inm.format(h=stored)}, status=304
    )
    assert resp.body == b'' and resp.headers['ETag'] == f'"{stored}"'


def test_if_none_match_other_etag(app, stored):
    assert app.get(f'/files/{stored}', headers={'If-None-Match': '"x"'}).body == DATA


@pytest.mark.parametrize('url', ['/?file_hash={h}', '/files/{h}'])
def test_unknown_hash_is_404(app, url):
    resp = app.get(url.format(h='a' * 64), status=404)
    assert resp.content_type == 'application/problem+json'
    assert resp.json['status'] == 404
    app.head(url.format(h='a' * 64), status=404)


# -- delete --------------------------------------------------------------------
@pytest.mark.parametrize('url', ['/?file_hash={h}', '/files/{h}'])
def test_delete(app, stored, store_dir, url):
    assert app.delete(url.format(h=stored)).status_int == 200
    assert stored_files(store_dir) == []
    app.delete(url.format(h=stored), status=404)
    app.get(url.format(h=stored), status=404)


def test_delete_json(app, stored):
    resp = app.delete(f'/files/{stored}', headers={'Accept': 'application/json'})
    assert resp.json == {'hash': stored, 'deleted': True}


# -- bad hashes ----------------------------------------------------------------
BAD = [
    '../../etc/passwd',
    '.',
    '..',
    '%2e%2e%2f%2e%2e%2fetc%2fpasswd',
    'a' * 300,
    'a' * 5000,
    'a' * 63 + '%00',
    'a=b',
    '',
    'g' * 64,
    ' ' + 'a' * 63,
    '..%2f' * 13,
    '%252e%252e%252f',
    'a' * 63 + '/',
    'A' * 65,
]


@pytest.mark.parametrize('value', BAD)
@pytest.mark.parametrize('method', ['GET', 'HEAD', 'DELETE', 'POST'])
def test_bad_file_hash_is_400(app, store_dir, value, method, tmp_path):
    before = sorted(os.listdir(tmp_path))
    resp = app.request(f'/?file_hash={value}', method=method, status=400)
    if method != 'HEAD':
        assert resp.json['type'].endswith('/invalid-hash')
        assert resp.json['detail']
    assert sorted(os.listdir(tmp_path)) == before


def test_missing_file_hash_is_400(app):
    resp = app.get('/', status=400)
    assert 'missing' in resp.json['detail']
    app.delete('/', status=400)


def test_repeated_file_hash_is_400(app):
    resp = app.get(f'/?file_hash={H}&file_hash={H}', status=400)
    assert 'more than once' in resp.json['detail']


@pytest.mark.parametrize(
    'value', ['..', '%2e%2e', '..%2f..%2fetc%2fpasswd', 'x' * 5000]
)
def test_bad_path_hash_is_400_or_404(app, value):
    resp = app.get(f'/files/{value}', expect_errors=True)
    assert resp.status_int in (400, 404)


def test_malformed_query_strings(app):
    for qs in ['file_hash', '&&&', '=', 'file_hash=%zz', '%ff%fe=1', 'file_hash=%00']:
        resp = app.get(f'/?{qs}', status=400)
        assert resp.json['status'] == 400


def test_text_plain_errors_when_asked(app):
    resp = app.get('/?file_hash=zz', headers={'Accept': 'text/plain'}, status=400)
    assert resp.content_type == 'text/plain'
    assert resp.text.startswith('400 Invalid file_hash:')


# -- methods, limits -----------------------------------------------------------
@pytest.mark.parametrize('method', ['PATCH', 'OPTIONS', 'TRACE', 'PUT'])
def test_other_methods_405_on_seed_route(app, method):
    resp = app.request('/', method=method, status=405)
    assert set(resp.headers['Allow'].split(', ')) == {'GET', 'HEAD', 'POST', 'DELETE'}


def test_405_on_rest_routes(app):
    resp = app.request('/files', method='DELETE', status=405)
    assert 'POST' in resp.headers['Allow']
    resp = app.request(f'/files/{H}', method='POST', status=405)
    assert set(resp.headers['Allow'].split(', ')) == {'GET', 'HEAD', 'PUT', 'DELETE'}


def test_max_upload_bytes_from_content_length(make_app, store_dir):
    app = make_app(max_upload_bytes=10)
    resp = app.post('/', b'x' * 11, status=413)
    assert resp.json['type'].endswith('/too-large')
    assert app.post('/', b'x' * 10).status_int == 200
    assert temp_files(store_dir) == []


def test_max_upload_bytes_while_streaming(make_app, store_dir):
    app = make_app(max_upload_bytes=1000)
    assert raw_call(app, io.BytesIO(b'x' * 5000)).status_int == 413
    assert temp_files(store_dir) == [] and stored_files(store_dir) == []


def test_disk_full_is_507(app, store_dir, monkeypatch):
    import errno

    real_write = os.write

    def full(fd, data):
        if isinstance(data, memoryview):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    monkeypatch.setattr(os, 'write', full)
    resp = app.post('/', DATA, status=507)
    assert resp.json['type'].endswith('/insufficient-storage')
    assert temp_files(store_dir) == [] and stored_files(store_dir) == []


def test_unexpected_error_is_500_without_traceback(app, monkeypatch, caplog):
    from wsgi_store.backends.fs import FilesystemBackend

    def boom(self, *a, **kw):
        raise RuntimeError('secret internals')

    monkeypatch.setattr(FilesystemBackend, 'get', boom)
    resp = app.get(f'/files/{H}', status=500)
    assert 'secret' not in resp.text and 'Traceback' not in resp.text
    assert resp.json['status'] == 500
    assert 'secret internals' in caplog.text


def test_health_and_ready(app):
    assert app.get('/healthz').json == {'status': 'ok'}
    ready = app.get('/readyz').json
    assert ready['status'] == 'ok'
    assert set(ready['checks']) == {'writable', 'free_bytes', 'free_inodes'}


def test_readyz_503_when_thresholds_not_met(make_app):
    app = make_app(readyz_min_free_bytes=1 << 62)
    resp = app.get('/readyz', status=503)
    assert resp.json['failed'] == ['free_bytes']


def test_unknown_route_404_problem(app):
    resp = app.get('/nope', status=404)
    assert resp.content_type == 'application/problem+json'
    assert json.loads(resp.text)['status'] == 404


def test_md5_store_uses_seed_naming(make_app):
    app = make_app(hash='md5')
    h = hashlib.md5(DATA).hexdigest()
    assert app.post('/', DATA).text == h + '\n'
    assert app.get(f'/?file_hash={h}').body == DATA
    app.get('/?file_hash=' + 'a' * 64, status=400)


def test_accel_redirect(make_app):
    app = make_app(accel_redirect='/_store')
    data = os.urandom(100 * 1024)
    h = app.post('/', data).text.strip()
    resp = app.get(f'/files/{h}')
    assert resp.headers['X-Accel-Redirect'] == f'/_store/{h[:2]}/{h}'
    assert resp.body == b''
    app.get('/files/' + 'b' * 64, status=404)


def test_verify_reads_cuts_corrupt_download(make_app, store_dir):
    app = make_app(verify_reads=True)
    h = app.post('/', DATA).text.strip()
    assert app.get(f'/files/{h}').body == DATA
    (store_dir / h[:2] / h).write_bytes(b'corrupted!!!!')
    with pytest.raises(OSError, match='failed verification'):
        app.get(f'/files/{h}')

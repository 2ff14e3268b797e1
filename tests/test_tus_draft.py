"""The IETF draft "Resumable Uploads for HTTP" on /uploads: raw requests
(WebTest) and tus-js-client's ``ietf-draft-05``/``ietf-draft-03`` modes (npm,
run by node) against real gunicorn."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import pytest
import requests
import webtest

from tests.jsclients import last, run_node
from tests.servers import Server, start_gunicorn
from tests.test_tus_e2e import make_file

MiB = 1 << 20
V6 = {'Upload-Draft-Interop-Version': '6'}
PARTIAL = 'application/partial-upload'
IANA = 'https://iana.org/assignments/http-problem-types#'


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def create(app: webtest.TestApp, body: bytes, complete: bool, **headers: str):
    sent = {**V6, 'Upload-Complete': '?1' if complete else '?0', **headers}
    return app.post('/uploads', body, headers=sent, status=201)


def append(app, url, offset, body, complete, status=204, **headers):
    sent = {
        **V6,
        'Upload-Offset': str(offset),
        'Upload-Complete': '?1' if complete else '?0',
        'Content-Type': PARTIAL,
        **headers,
    }
    return app.patch(url, body, headers=sent, status=status)


def test_draft_creation_with_the_whole_body_stores_it(app):
    body = b'one request, whole'
    resp = create(app, body, True, **{'Content-Type': 'text/plain'})
    assert resp.headers['Location'].startswith('/uploads/')
    assert resp.headers['Upload-Complete'] == '?1'
    assert resp.headers['Upload-Offset'] == str(len(body))
    assert resp.headers['Upload-File-Hash'] == sha(body)
    assert resp.headers['Content-Location'] == f'/files/{sha(body)}'
    assert resp.headers['Upload-Draft-Interop-Version'] == '6'
    assert 'Tus-Resumable' not in resp.headers
    assert app.get(f'/files/{sha(body)}').body == body


def test_draft_incomplete_creation_head_appends_and_completion(app):
    parts = [b'first ', b'second ', b'third']
    meta = 'filename ' + base64.b64encode(b'd.txt').decode()
    resp = create(app, parts[0], False, **{'Upload-Metadata': meta})
    url = resp.headers['Location']
    assert resp.headers['Upload-Complete'] == '?0'
    assert resp.headers['Upload-Offset'] == '6'
    head = app.head(url, headers=V6, status=204)
    assert head.headers['Upload-Offset'] == '6'
    assert head.headers['Upload-Complete'] == '?0'
    assert head.headers['Cache-Control'] == 'no-store'
    assert 'Upload-Length' not in head.headers  # still open
    resp = append(app, url, 6, parts[1], False)
    assert resp.headers['Upload-Offset'] == '13'
    assert resp.headers['Upload-Complete'] == '?0'
    done = append(app, url, 13, parts[2], True, status=200)
    whole = b''.join(parts)
    assert done.headers['Upload-Complete'] == '?1'
    assert done.headers['Upload-File-Hash'] == sha(whole)
    assert done.headers['Content-Location'] == f'/files/{sha(whole)}?filename=d.txt'
    assert done.json['hash'] == sha(whole)
    head = app.head(url, headers=V6, status=204)
    assert head.headers['Upload-Complete'] == '?1'
    assert head.headers['Upload-Length'] == str(len(whole))
    assert head.headers['Upload-File-Hash'] == sha(whole)
    assert app.get(f'/files/{sha(whole)}').body == whole


def test_draft_upload_length_at_creation_completes_at_that_length(app):
    resp = create(app, b'', False, **{'Upload-Length': '4'})
    url = resp.headers['Location']
    assert app.head(url, headers=V6, status=204).headers['Upload-Length'] == '4'
    append(app, url, 0, b'ab', False)
    done = append(app, url, 2, b'cd', True, status=200)
    assert done.headers['Upload-File-Hash'] == sha(b'abcd')


def test_draft_wrong_offset_is_409_mismatching_upload_offset(app):
    url = create(app, b'abc', False).headers['Location']
    resp = append(app, url, 1, b'zz', False, status=409)
    assert resp.json['type'] == IANA + 'mismatching-upload-offset'
    assert resp.json['expected-offset'] == 3
    assert resp.json['provided-offset'] == 1
    assert app.head(url, headers=V6, status=204).headers['Upload-Offset'] == '3'


def test_draft_append_to_a_completed_upload_is_400_completed_upload(app):
    url = create(app, b'done', True).headers['Location']
    resp = append(app, url, 4, b'more', True, status=400)
    assert resp.json['type'] == IANA + 'completed-upload'


def test_draft_inconsistent_lengths_are_400_and_store_nothing(app):
    resp = app.post(
        '/uploads',
        b'12345',
        headers={**V6, 'Upload-Complete': '?1', 'Upload-Length': '9'},
        status=400,
    )
    assert resp.json['type'] == IANA + 'inconsistent-upload-length'
    url = create(app, b'', False, **{'Upload-Length': '10'}).headers['Location']
    resp = append(app, url, 0, b'abc', True, status=400)
    assert resp.json['type'] == IANA + 'inconsistent-upload-length'
    assert app.head(url, headers=V6, status=204).headers['Upload-Offset'] == '0'
    app.get(f'/files/{sha(b"abc")}', status=404)


def test_draft_6_append_needs_partial_upload_media_type(app):
    url = create(app, b'a', False).headers['Location']
    append(app, url, 1, b'b', False, status=415, **{'Content-Type': 'text/plain'})


def test_draft_interop_4_speaks_upload_incomplete(app):
    v4 = {'Upload-Draft-Interop-Version': '4'}
    resp = app.post(
        '/uploads', b'ab', headers={**v4, 'Upload-Incomplete': '?1'}, status=201
    )
    url = resp.headers['Location']
    assert resp.headers['Upload-Draft-Interop-Version'] == '4'
    done = app.patch(
        url,
        b'cd',
        headers={**v4, 'Upload-Offset': '2', 'Upload-Incomplete': '?0'},
        status=200,
    )
    assert done.headers['Upload-File-Hash'] == sha(b'abcd')


def test_draft_delete_cancels_the_upload(app):
    url = create(app, b'abc', False).headers['Location']
    app.delete(url, headers=V6, status=204)
    app.head(url, headers=V6, status=404)


@pytest.mark.parametrize('value', ['2', '7', 'six', ''])
def test_unsupported_interop_version_is_400(app, value):
    resp = app.post(
        '/uploads',
        b'x',
        headers={'Upload-Draft-Interop-Version': value, 'Upload-Complete': '?1'},
        status=400,
    )
    assert 'Upload-Draft-Interop-Version' in resp.json['detail']


def test_draft_missing_upload_complete_is_400(app):
    app.post('/uploads', b'x', headers=V6, status=400)


def test_draft_repr_digest_mismatch_at_completion_stores_nothing(app):
    wrong = base64.b64encode(hashlib.sha256(b'other').digest()).decode()
    resp = app.post(
        '/uploads',
        b'body',
        headers={**V6, 'Upload-Complete': '?1', 'Repr-Digest': f'sha-256=:{wrong}:'},
        status=400,
    )
    assert resp.json['type'].endswith('digest-mismatch')
    app.get(f'/files/{sha(b"body")}', status=404)


def test_draft_uploads_count_in_metrics(app):
    url = create(app, b'ab', False).headers['Location']
    append(app, url, 2, b'cd', True, status=200)
    text = app.get('/metrics').text
    assert 'wsgi_store_tus_uploads_created_total 1.0' in text
    assert 'wsgi_store_tus_uploads_completed_total 1.0' in text
    assert 'wsgi_store_tus_upload_bytes_total 4.0' in text


# -- tus-js-client (npm) in its IETF-draft modes, real gunicorn ---------------------
@pytest.fixture(scope='module')
def server(tmp_path_factory: pytest.TempPathFactory):
    work = tmp_path_factory.mktemp('tusdraft')
    srv = start_gunicorn(work, work / 'store', workers=1, threads=4)
    yield srv
    srv.stop()


def node_upload(server: Server, path: Path, **options: object) -> list[dict]:
    return run_node(
        'tus-upload.mjs',
        {'endpoint': server.url + '/uploads', 'file': str(path), **options},
    )


def check_stored(server: Server, success: dict, path: Path, digest: str) -> None:
    assert success['hash'] == digest
    assert success['contentLocation'] == f'/files/{digest}?filename={path.name}'
    head = requests.head(success['url'], headers=V6, timeout=30)
    assert head.status_code == 204
    assert head.headers['Upload-Complete'] == '?1'
    got = requests.get(server.url + success['contentLocation'], timeout=60)
    assert hashlib.sha256(got.content).hexdigest() == digest


@pytest.mark.e2e
@pytest.mark.parametrize('protocol', ['ietf-draft-05', 'ietf-draft-03'])
def test_tus_js_client_ietf_draft_round_trip(
    server: Server, tmp_path: Path, protocol: str
) -> None:
    path = tmp_path / f'{protocol}.bin'
    digest = make_file(path, 3 * MiB + 11)
    events = node_upload(server, path, chunkSize=MiB, protocol=protocol)
    check_stored(server, last(events, 'success'), path, digest)
    accepted = [e['accepted'] for e in events if e['event'] == 'chunk']
    assert accepted == [MiB, 2 * MiB, 3 * MiB, 3 * MiB + 11]


@pytest.mark.e2e
def test_tus_js_client_ietf_draft_05_cut_then_resumed_by_a_new_process(
    server: Server, tmp_path: Path
) -> None:
    path = tmp_path / 'draft-half.bin'
    digest = make_file(path, 4 * MiB)
    storage = tmp_path / 'draft-urls.json'
    options = {'chunkSize': MiB, 'protocol': 'ietf-draft-05'}
    first = node_upload(
        server, path, urlStorage=str(storage), stopAtBytes=2 * MiB, **options
    )
    cut = last(first, 'aborted')
    head = requests.head(cut['url'], headers=V6, timeout=30)
    assert (head.headers['Upload-Offset'], head.headers['Upload-Complete']) == (
        str(2 * MiB),
        '?0',
    )
    second = node_upload(server, path, urlStorage=str(storage), **options)
    assert last(second, 'resuming')['count'] == 1
    assert [e['accepted'] for e in second if e['event'] == 'chunk'] == [
        3 * MiB,
        4 * MiB,
    ]
    success = last(second, 'success')
    assert success['url'] == cut['url']
    check_stored(server, success, path, digest)

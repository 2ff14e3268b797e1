"""RFC 9530 digests on a multipart upload cover the whole request (issue 11 #9)."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import pytest
import webtest

from tests.conftest import sha256

DATA = b'the file part\n'
BOUNDARY = 'xYzZy'


def multipart(data: bytes, *, epilogue: bytes = b'') -> bytes:
    return (
        (
            f'--{BOUNDARY}\r\n'
            'Content-Disposition: form-data; name="note"\r\n\r\nhello\r\n'
            f'--{BOUNDARY}\r\n'
            'Content-Disposition: form-data; name="file"; filename="a.txt"\r\n'
            'Content-Type: text/plain\r\n\r\n'
        ).encode()
        + data
        + f'\r\n--{BOUNDARY}--\r\n'.encode()
        + epilogue
    )


def digest(algorithm: str, data: bytes) -> str:
    raw = hashlib.new(algorithm.replace('-', ''), data).digest()
    return f'{algorithm}=:{base64.b64encode(raw).decode()}:'


def post(app: webtest.TestApp, body: bytes, status: int, **headers: str):
    headers['Content-Type'] = f'multipart/form-data; boundary={BOUNDARY}'
    return app.post('/', body, headers=headers, status=status)


def stored(store_dir: Path) -> list[str]:
    return sorted(p.name for p in store_dir.glob('??/*'))


@pytest.mark.parametrize('header', ['Content-Digest', 'Repr-Digest'])
@pytest.mark.parametrize('algorithm', ['sha-256', 'sha-512'])
def test_multipart_digest_header_is_checked_over_the_whole_body(
    app: webtest.TestApp, store_dir: Path, header: str, algorithm: str
) -> None:
    body = multipart(DATA, epilogue=b'trailing epilogue\r\n')
    resp = post(app, body, 200, **{header: digest(algorithm, body)})
    assert resp.text == sha256(DATA) + '\n'
    assert stored(store_dir) == [sha256(DATA)]


@pytest.mark.parametrize('header', ['Content-Digest', 'Repr-Digest'])
def test_multipart_digest_of_the_file_part_alone_is_refused(
    app: webtest.TestApp, store_dir: Path, header: str
) -> None:
    resp = post(app, multipart(DATA), 400, **{header: digest('sha-256', DATA)})
    assert resp.json['type'].endswith('/digest-mismatch')
    assert 'whole multipart body' in resp.json['detail']
    assert stored(store_dir) == []


def test_multipart_digest_covers_the_epilogue(
    app: webtest.TestApp, store_dir: Path
) -> None:
    body = multipart(DATA, epilogue=b'epilogue')
    without = multipart(DATA)
    post(app, body, 400, **{'Content-Digest': digest('sha-256', without)})
    assert stored(store_dir) == []


def test_multipart_file_hash_still_names_the_part(
    app: webtest.TestApp, store_dir: Path
) -> None:
    body = multipart(DATA)
    app.post(
        f'/?file_hash={sha256(DATA)}',
        body,
        headers={
            'Content-Type': f'multipart/form-data; boundary={BOUNDARY}',
            'Content-Digest': digest('sha-256', body),
        },
    )
    wrong = sha256(b'other')
    resp = app.post(
        f'/?file_hash={wrong}',
        body,
        headers={'Content-Type': f'multipart/form-data; boundary={BOUNDARY}'},
        status=400,
    )
    assert resp.json['type'].endswith('/digest-mismatch')
    assert stored(store_dir) == [sha256(DATA)]


def test_raw_upload_digest_still_covers_the_stored_bytes(
    app: webtest.TestApp, store_dir: Path
) -> None:
    app.post('/', DATA, headers={'Content-Digest': digest('sha-256', DATA)})
    app.post('/', b'x', headers={'Content-Digest': digest('sha-256', DATA)}, status=400)
    assert stored(store_dir) == [sha256(DATA)]

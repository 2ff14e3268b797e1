"""Preconditions, ranges, validators and download names in the app (issue 12,
issue 11 items 5 and 8). The same rows through nginx: test_parity.py."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
import webtest

from tests.conftest import sha256
from wsgi_store.app import create_app
from wsgi_store.backends.fs import FilesystemBackend
from wsgi_store.config import Config
from wsgi_store.http.conditional import evaluate, http_date, parse_http_date
from wsgi_store.http.disposition import content_disposition, content_type
from wsgi_store.http.downloads import VerifyingReader, cache_control

DATA = b'0123456789' * 10
H = sha256(DATA)
ETAG = f'"{H}"'
IMMUTABLE = 'public, max-age=31536000, immutable'
PROBLEM = 'application/problem+json'


@pytest.fixture
def stored(app) -> str:
    app.post('/', DATA)
    return H


def mtime_of(store_dir: Path, digest: str = H) -> float:
    return (store_dir / digest[:2] / digest).stat().st_mtime


def assert_no_validators(resp) -> None:
    assert 'ETag' not in resp.headers
    assert 'Last-Modified' not in resp.headers
    assert resp.headers.get('Cache-Control') != IMMUTABLE


# -- the order of RFC 9110 13.2.2 ------------------------------------------------
LM = 1_700_000_000
PAST, LATER = http_date(LM - 60), http_date(LM + 60)


@pytest.mark.parametrize(
    ('method', 'headers', 'exists', 'expected'),
    [
        ('GET', {}, True, None),
        ('GET', {'If-Match': ETAG}, True, None),
        ('GET', {'If-Match': '"x", ' + ETAG}, True, None),
        ('GET', {'If-Match': 'W/' + ETAG}, True, 412),  # strong comparison
        ('GET', {'If-Match': '*'}, True, None),
        ('PUT', {'If-Match': '*'}, False, 412),
        ('GET', {'If-Unmodified-Since': PAST}, True, 412),
        ('GET', {'If-Unmodified-Since': LATER}, True, None),
        ('GET', {'If-Match': ETAG, 'If-Unmodified-Since': PAST}, True, None),
        ('GET', {'If-None-Match': 'W/' + ETAG}, True, 304),  # weak comparison
        ('HEAD', {'If-None-Match': '*'}, True, 304),
        ('DELETE', {'If-None-Match': ETAG}, True, 412),
        ('PUT', {'If-None-Match': '*'}, False, None),
        ('GET', {'If-Modified-Since': http_date(LM)}, True, 304),
        ('GET', {'If-Modified-Since': PAST}, True, None),
        ('DELETE', {'If-Modified-Since': LATER}, True, None),  # GET/HEAD only
        ('GET', {'If-Modified-Since': LATER, 'If-None-Match': '"x"'}, True, None),
        ('GET', {'If-Match': '"x"', 'If-None-Match': ETAG}, True, 412),
        ('GET', {'If-Modified-Since': 'not a date'}, True, None),
    ],
)
def test_preconditions_in_rfc_order(method, headers, exists, expected) -> None:
    assert evaluate(method, headers, ETAG if exists else None, LM) == expected


def test_http_dates() -> None:
    assert http_date(LM) == 'Tue, 14 Nov 2023 22:13:20 GMT'
    assert parse_http_date('Tue, 14 Nov 2023 22:13:20 GMT') == LM
    assert parse_http_date('Sunday, 06-Nov-94 08:49:37 GMT') == 784111777
    for bad in ('', 'yesterday', 'Tue, 14 Nov 2023 22:13:20 GMT, Tue, 14 Nov 2023'):
        assert parse_http_date(bad) is None


# -- GET / HEAD ----------------------------------------------------------------
def test_last_modified_is_the_objects_mtime(app, stored, store_dir) -> None:
    resp = app.get(f'/files/{stored}')
    assert resp.headers['Last-Modified'] == http_date(mtime_of(store_dir))
    again = app.get(
        f'/files/{stored}',
        headers={'If-Modified-Since': resp.headers['Last-Modified']},
        status=304,
    )
    assert again.body == b''


def test_304_repeats_etag_cache_control_and_last_modified(app, stored) -> None:
    full = app.get(f'/files/{stored}')
    resp = app.get(f'/files/{stored}', headers={'If-None-Match': ETAG}, status=304)
    for name in ('ETag', 'Cache-Control', 'Last-Modified'):
        assert resp.headers[name] == full.headers[name]


def test_gone_object_is_404_never_304(app, stored) -> None:
    app.delete(f'/files/{stored}')
    for headers in ({'If-None-Match': '*'}, {'If-None-Match': ETAG}):
        resp = app.get(f'/files/{stored}', headers=headers, status=404)
        assert resp.content_type == PROBLEM
        assert_no_validators(resp)


def test_412_is_problem_json_without_validators(app, stored) -> None:
    resp = app.get(f'/files/{stored}', headers={'If-Match': '"0000"'}, status=412)
    assert resp.content_type == PROBLEM and resp.json['status'] == 412
    assert_no_validators(resp)


def test_416_carries_size_and_no_validators(app, stored) -> None:
    resp = app.get(f'/files/{stored}', headers={'Range': 'bytes=100-'}, status=416)
    assert resp.headers['Content-Range'] == f'bytes */{len(DATA)}'
    assert resp.content_type == PROBLEM
    assert_no_validators(resp)


@pytest.mark.parametrize('rng', ['bytes=-5', 'bytes=0-0', 'bytes=0-', 'bytes=-0'])
def test_range_on_the_empty_object_is_200(app, rng) -> None:
    """Issue 11 item 8: never a 206 (`bytes 0--1/0` is not valid) for 0 bytes."""
    empty = app.post('/', b'').text.strip()
    resp = app.get(f'/files/{empty}', headers={'Range': rng})
    assert resp.status_int == 200 and resp.body == b''
    assert 'Content-Range' not in resp.headers


def test_head_ignores_range(app, stored) -> None:
    resp = app.head(f'/files/{stored}', headers={'Range': 'bytes=0-9'})
    assert resp.status_int == 200
    assert resp.headers['Content-Length'] == str(len(DATA))


def test_if_range_by_date(app, stored, store_dir) -> None:
    same = {'Range': 'bytes=0-9', 'If-Range': http_date(mtime_of(store_dir))}
    assert app.get(f'/files/{stored}', headers=same).status_int == 206
    old = {'Range': 'bytes=0-9', 'If-Range': http_date(mtime_of(store_dir) - 5)}
    assert app.get(f'/files/{stored}', headers=old).body == DATA


# -- DELETE / PUT preconditions -------------------------------------------------
@pytest.mark.parametrize('url', ['/files/{h}', '/?file_hash={h}'])
@pytest.mark.parametrize(
    'headers', [{'If-Match': '"0000"'}, {'If-Unmodified-Since': PAST}]
)
def test_delete_precondition_failed_deletes_nothing(
    app, stored, store_dir, url, headers
) -> None:
    resp = app.delete(url.format(h=stored), headers=headers, status=412)
    assert resp.content_type == PROBLEM
    assert_no_validators(resp)
    assert (store_dir / H[:2] / H).read_bytes() == DATA


def test_delete_with_own_etag_deletes(app, stored, store_dir) -> None:
    resp = app.delete(f'/files/{stored}', headers={'If-Match': ETAG})
    assert resp.status_int == 200 and 'ETag' not in resp.headers
    assert 'Cache-Control' not in resp.headers
    assert not (store_dir / H[:2] / H).exists()


def test_delete_missing_with_if_match_is_404(app) -> None:
    app.delete(f'/files/{H}', headers={'If-Match': '*'}, status=404)


def test_put_preconditions(app, store_dir) -> None:
    app.put(f'/files/{H}', DATA, headers={'If-Match': '*'}, status=412)
    assert not (store_dir / H[:2] / H).exists()  # nothing stored
    assert (
        app.put(f'/files/{H}', DATA, headers={'If-None-Match': '*'}).status_int == 200
    )
    app.put(f'/files/{H}', DATA, headers={'If-None-Match': '*'}, status=412)
    resp = app.put(f'/files/{H}', DATA, headers={'If-Match': ETAG})
    assert resp.status_int == 200 and 'ETag' not in resp.headers


# -- names ---------------------------------------------------------------------
def test_content_disposition_is_encoded_and_safe() -> None:
    evil = 'a"b;c\r\nSet-Cookie: x=1\\.txt'
    header = content_disposition(evil)
    assert '\r' not in header and '\n' not in header
    assert header == (
        'attachment; filename="a_b_c__Set-Cookie: x=1_.txt"; '
        "filename*=UTF-8''a%22b%3Bc%0D%0ASet-Cookie%3A%20x%3D1%5C.txt"
    )
    assert content_disposition('naïve.png', inline=True) == (
        'inline; filename="na_ve.png"; filename*=UTF-8\'\'na%C3%AFve.png'
    )


@pytest.mark.parametrize(
    ('name', 'expected'),
    [
        ('a.PDF', 'application/pdf'),
        ('photo.jpg', 'image/jpeg'),
        ('x.html', 'application/octet-stream'),  # never active content
        ('x.svg', 'application/octet-stream'),
        ('archive.tar.gz', 'application/octet-stream'),
        ('noext', 'application/octet-stream'),
        ('.png', 'application/octet-stream'),
    ],
)
def test_content_type_from_extension(name, expected) -> None:
    assert content_type(name) == expected


def test_filename_names_the_download_and_keeps_the_etag(app, stored) -> None:
    plain = app.get(f'/files/{stored}')
    named = app.get(f'/?file_hash={stored}&filename=r%C3%A9sum%C3%A9.pdf')
    assert named.headers['Content-Disposition'].startswith('attachment; filename=')
    assert named.headers['Content-Type'] == 'application/pdf'
    assert named.headers['ETag'] == plain.headers['ETag']
    inline = app.get(f'/files/{stored}?filename=a.txt&inline=1')
    assert inline.headers['Content-Disposition'].startswith('inline; ')


@pytest.mark.parametrize(
    'query', ['filename=', 'filename=' + 'a' * 256, 'filename=a&inline=2']
)
def test_bad_names_are_400(app, stored, query) -> None:
    resp = app.get(f'/files/{stored}?{query}', status=400)
    assert resp.content_type == PROBLEM
    assert_no_validators(resp)


def test_255_byte_name_is_accepted(app, stored) -> None:
    app.get(f'/files/{stored}?filename=' + 'a' * 251 + '.txt')


# -- caching of token-protected reads ---------------------------------------------
def test_token_reads_are_private(tmp_path: Path) -> None:
    config = Config(store_dir=tmp_path)
    assert cache_control(config) == IMMUTABLE
    tokens = tmp_path / 'tokens'
    assert cache_control(config.replace(tokens_file=tokens)).startswith('private, ')
    public = config.replace(tokens_file=tokens, public_read=True)
    assert cache_control(public) == IMMUTABLE


# -- VERIFY_READS reads the file it opened (issue 11 item 5) ------------------------
def test_verifying_reader_survives_unlink(tmp_path: Path) -> None:
    backend = FilesystemBackend(tmp_path / 'store', 'sha256', chunk_bytes=4096)
    data = os.urandom(100_000)
    digest = backend.put(io.BytesIO(data)).hash
    dl = backend.get(digest)
    backend.delete(digest)  # the name is gone before the first byte is sent
    reader = VerifyingReader(backend, dl, 10, len(data), 4096)
    assert b''.join(reader) == data[10:]
    reader.close()
    assert dl.file is None or dl.file.closed


# -- the same on every backend (S3's Last-Modified is its LastModified) -----------
def test_validators_and_preconditions_on_every_backend(backend, tmp_path) -> None:
    app = webtest.TestApp(
        create_app(Config(store_dir=tmp_path / 'unused'), backend=backend),
        extra_environ={'wsgi.input_terminated': True},
    )
    data = os.urandom(100_000)  # above the inline limit: streamed
    digest = app.post('/', data).text.strip()
    resp = app.get(f'/files/{digest}')
    assert resp.body == data
    assert resp.headers['Last-Modified'] == http_date(backend.stat(digest).mtime)
    assert resp.headers['ETag'] == f'"{digest}"'
    lm = {'If-Modified-Since': resp.headers['Last-Modified']}
    app.get(f'/files/{digest}', headers=lm, status=304)
    app.get(f'/files/{digest}', headers={'If-Match': '"0"'}, status=412)
    ranged = app.get(f'/files/{digest}', headers={'Range': 'bytes=-10'})
    assert ranged.status_int == 206 and ranged.body == data[-10:]
    app.delete(f'/files/{digest}', headers={'If-Match': '"0"'}, status=412)
    assert backend.exists(digest)
    app.delete(f'/files/{digest}', headers={'If-Match': f'"{digest}"'})
    assert not backend.exists(digest)

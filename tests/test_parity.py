"""One HTTP face on every read path (issue 12): the same request answered by the
app (gunicorn alone), by nginx after the app's X-Accel-Redirect, and by nginx's
direct reads gives the same status, bytes and header values.

Every row also names the status the contract (docs/api.md, "The HTTP contract") asks
for, so three paths that agree on a wrong answer still fail.
"""

from __future__ import annotations

import hashlib
import json
import os
import urllib.parse
from collections.abc import Iterator

import pytest

from tests.servers import wait_until
from tests.three_paths import PATHS, Answer, KiB, MiB, ThreePaths, three_paths
from wsgi_store.http.conditional import http_date

pytestmark = pytest.mark.e2e
COMPARED = (
    'ETag',
    'Last-Modified',
    'Content-Length',
    'Content-Range',
    'Content-Type',
    'Content-Disposition',
    'Cache-Control',
    'Accept-Ranges',
)
IMMUTABLE = 'public, max-age=31536000, immutable'
MISSING = hashlib.sha256(b'never stored').hexdigest()
UNICODE = 'résumé ☃ 2024.pdf'
EVIL = 'a"b;c\r\nX-Injected: 1\\d%e.txt'


def q(name: str) -> str:
    return urllib.parse.quote(name, safe='')


# (id, method, target, headers, expected status). {big} {small} {empty} are the
# 1 MiB, 1 KiB and 0 B objects; {etag} and {lm} are the 1 MiB object's
# validators; {past} is before any object was stored, {future} after.
ROWS: list[tuple[str, str, str, dict[str, str], int]] = [
    # plain reads, both URL forms, every size
    *[
        (f'{m}-{obj}-{form}', m, url.format(obj='{' + obj + '}'), {}, 200)
        for m in ('GET', 'HEAD')
        for obj in ('empty', 'small', 'big')
        for form, url in (('path', '/files/{obj}'), ('query', '/?file_hash={obj}'))
    ],
    ('get-upper-case', 'GET', '/files/{BIG}', {}, 200),
    ('get-missing-path', 'GET', f'/files/{MISSING}', {}, 404),
    ('get-missing-query', 'GET', f'/?file_hash={MISSING}', {}, 404),
    ('head-missing', 'HEAD', f'/files/{MISSING}', {}, 404),
    ('bad-hash-short', 'GET', '/files/xyz', {}, 400),
    ('bad-hash-query', 'GET', '/?file_hash=abc', {}, 400),
    ('bad-hash-nonhex', 'GET', '/files/' + 'g' * 64, {}, 400),
    ('no-hash', 'GET', '/?x=1', {}, 400),
    # If-Match (strong comparison)
    ('if-match-own', 'GET', '/files/{big}', {'If-Match': '{etag}'}, 200),
    ('if-match-other', 'GET', '/files/{big}', {'If-Match': '"0000"'}, 412),
    ('if-match-star', 'GET', '/files/{big}', {'If-Match': '*'}, 200),
    ('if-match-list', 'GET', '/files/{big}', {'If-Match': '"a", {etag}'}, 200),
    ('if-match-weak', 'GET', '/files/{big}', {'If-Match': 'W/{etag}'}, 412),
    ('if-match-missing', 'GET', f'/files/{MISSING}', {'If-Match': '*'}, 404),
    ('if-match-head', 'HEAD', '/?file_hash={big}', {'If-Match': '"0000"'}, 412),
    # an empty field slips past nginx's map: its own 412 gives the app's body
    ('if-match-empty', 'GET', '/files/{big}', {'If-Match': ''}, 412),
    ('range-empty-field', 'GET', '/files/{big}', {'Range': ''}, 200),
    # If-None-Match (weak comparison)
    ('inm-own', 'GET', '/files/{big}', {'If-None-Match': '{etag}'}, 304),
    ('inm-own-query', 'GET', '/?file_hash={big}', {'If-None-Match': '{etag}'}, 304),
    ('inm-star', 'GET', '/files/{big}', {'If-None-Match': '*'}, 304),
    ('inm-list', 'GET', '/files/{big}', {'If-None-Match': '"x", {etag}'}, 304),
    ('inm-weak', 'GET', '/files/{big}', {'If-None-Match': 'W/{etag}'}, 304),
    ('inm-other', 'GET', '/files/{big}', {'If-None-Match': '"x"'}, 200),
    ('inm-head', 'HEAD', '/files/{small}', {'If-None-Match': '{etag_small}'}, 304),
    ('inm-missing', 'GET', f'/files/{MISSING}', {'If-None-Match': '*'}, 404),
    # If-Modified-Since / If-Unmodified-Since
    ('ims-same', 'GET', '/files/{big}', {'If-Modified-Since': '{lm}'}, 304),
    ('ims-past', 'GET', '/files/{big}', {'If-Modified-Since': '{past}'}, 200),
    ('ims-invalid', 'GET', '/files/{big}', {'If-Modified-Since': 'yesterday'}, 200),
    (
        'ims-ignored-with-inm',
        'GET',
        '/files/{big}',
        {'If-Modified-Since': '{lm}', 'If-None-Match': '"x"'},
        200,
    ),
    ('ius-past', 'GET', '/files/{big}', {'If-Unmodified-Since': '{past}'}, 412),
    ('ius-same', 'GET', '/files/{big}', {'If-Unmodified-Since': '{lm}'}, 200),
    ('ius-invalid', 'GET', '/files/{big}', {'If-Unmodified-Since': 'never'}, 200),
    (
        'if-match-before-ius',
        'GET',
        '/files/{big}',
        {'If-Match': '{etag}', 'If-Unmodified-Since': '{past}'},
        200,
    ),
    # Range
    ('range-first', 'GET', '/files/{big}', {'Range': 'bytes=0-99'}, 206),
    ('range-open', 'GET', '/files/{big}', {'Range': 'bytes=1000-'}, 206),
    ('range-suffix', 'GET', '/?file_hash={big}', {'Range': 'bytes=-100'}, 206),
    ('range-one-byte', 'GET', '/files/{big}', {'Range': 'bytes=0-0'}, 206),
    ('range-past-end', 'GET', '/files/{big}', {'Range': 'bytes=5-99999999'}, 206),
    ('range-whole', 'GET', '/files/{big}', {'Range': 'bytes=0-'}, 206),
    ('range-small', 'GET', '/files/{small}', {'Range': 'bytes=10-19'}, 206),
    ('range-unsatisfiable', 'GET', '/files/{big}', {'Range': f'bytes={MiB}-'}, 416),
    ('range-suffix-zero', 'GET', '/files/{big}', {'Range': 'bytes=-0'}, 416),
    ('range-multi', 'GET', '/files/{big}', {'Range': 'bytes=0-1,5-6'}, 200),
    ('range-malformed', 'GET', '/files/{big}', {'Range': 'bytes=abc'}, 200),
    ('range-reversed', 'GET', '/files/{big}', {'Range': 'bytes=9-3'}, 200),
    ('range-other-unit', 'GET', '/files/{big}', {'Range': 'items=0-1'}, 200),
    ('range-huge-number', 'GET', '/files/{big}', {'Range': 'bytes=0-' + '9' * 30}, 206),
    ('range-empty-first', 'GET', '/files/{empty}', {'Range': 'bytes=0-0'}, 200),
    ('range-empty-suffix', 'GET', '/files/{empty}', {'Range': 'bytes=-5'}, 200),
    ('range-empty-open', 'GET', '/files/{empty}', {'Range': 'bytes=0-'}, 200),
    ('range-head', 'HEAD', '/files/{big}', {'Range': 'bytes=0-99'}, 200),
    ('range-missing', 'GET', f'/files/{MISSING}', {'Range': 'bytes=0-1'}, 404),
    (
        'if-range-etag',
        'GET',
        '/files/{big}',
        {'Range': 'bytes=0-9', 'If-Range': '{etag}'},
        206,
    ),
    (
        'if-range-other',
        'GET',
        '/files/{big}',
        {'Range': 'bytes=0-9', 'If-Range': '"x"'},
        200,
    ),
    (
        'if-range-weak',
        'GET',
        '/files/{big}',
        {'Range': 'bytes=0-9', 'If-Range': 'W/{etag}'},
        200,
    ),
    (
        'if-range-date',
        'GET',
        '/files/{big}',
        {'Range': 'bytes=0-9', 'If-Range': '{lm}'},
        206,
    ),
    (
        'if-range-old-date',
        'GET',
        '/files/{big}',
        {'Range': 'bytes=0-9', 'If-Range': '{past}'},
        200,
    ),
    (
        'inm-beats-range',
        'GET',
        '/files/{big}',
        {'Range': f'bytes={MiB}-', 'If-None-Match': '{etag}'},
        304,
    ),
    # download names
    ('name-path', 'GET', '/files/{big}?filename=report.txt', {}, 200),
    ('name-query', 'GET', '/?file_hash={big}&filename=photo.jpg', {}, 200),
    ('name-inline', 'GET', '/files/{big}?filename=doc.pdf&inline=1', {}, 200),
    ('name-small', 'GET', '/files/{small}?filename=a.json', {}, 200),
    ('name-head', 'HEAD', '/files/{big}?filename=a.png', {}, 200),
    ('name-unicode', 'GET', f'/files/{{big}}?filename={q(UNICODE)}', {}, 200),
    ('name-injection', 'GET', f'/files/{{big}}?filename={q(EVIL)}', {}, 200),
    ('name-html-inline', 'GET', '/files/{big}?filename=x.html&inline=1', {}, 200),
    ('name-1000', 'GET', '/files/{big}?filename=' + 'a' * 1000, {}, 400),
    ('name-1000-unicode', 'GET', '/files/{big}?filename=' + q('é' * 1000), {}, 400),
    ('name-empty', 'GET', '/files/{big}?filename=', {}, 400),
    ('name-bad-inline', 'GET', '/files/{big}?filename=a&inline=yes', {}, 400),
    (
        'name-with-range',
        'GET',
        '/files/{big}?filename=a.bin',
        {'Range': 'bytes=0-9'},
        206,
    ),
    (
        'name-with-inm',
        'GET',
        '/files/{big}?filename=a.bin',
        {'If-None-Match': '{etag}'},
        304,
    ),
    ('name-missing', 'GET', f'/files/{MISSING}?filename=a.txt', {}, 404),
    # writes: preconditions fail before anything changes
    ('delete-if-match-other', 'DELETE', '/files/{big}', {'If-Match': '"0000"'}, 412),
    (
        'delete-query-if-match',
        'DELETE',
        '/?file_hash={big}',
        {'If-Match': '"0000"'},
        412,
    ),
    (
        'delete-ius-past',
        'DELETE',
        '/files/{big}',
        {'If-Unmodified-Since': '{past}'},
        412,
    ),
    ('put-if-match-other', 'PUT', '/files/{small}', {'If-Match': '"0000"'}, 412),
    ('put-inm-star', 'PUT', '/files/{small}', {'If-None-Match': '*'}, 412),
    ('put-existing', 'PUT', '/files/{small}', {}, 200),
    ('put-if-match-own', 'PUT', '/files/{small}', {'If-Match': '{etag_small}'}, 200),
]


@pytest.fixture(scope='module')
def paths() -> Iterator[ThreePaths]:
    with three_paths() as started:
        yield started


def names(paths: ThreePaths) -> dict[str, str]:
    by_size = {len(data): h for h, data in paths.objects.items()}
    big, small, empty = by_size[MiB], by_size[KiB], by_size[0]
    mtime = (paths.store / big[:2] / big).stat().st_mtime
    return {
        'big': big,
        'BIG': big.upper(),
        'small': small,
        'empty': empty,
        'etag': f'"{big}"',
        'etag_small': f'"{small}"',
        'lm': http_date(mtime),
        'past': http_date(mtime - 86400),
        'future': http_date(mtime + 86400),
    }


def ask(paths: ThreePaths, path: str, row) -> Answer:
    _, method, target, headers, _ = row
    values = names(paths)
    body = paths.objects[values['small']] if method == 'PUT' else None
    return paths.request(
        path,
        target.format(**values),
        method,
        {k: v.format(**values) for k, v in headers.items()},
        body,
    )


def face(answer: Answer) -> dict[str, object]:
    """What a client can observe, minus Date/Server/connection details."""
    seen: dict[str, object] = {'status': answer.status, 'body': answer.body}
    for name in COMPARED:
        values = answer.all(name)
        seen[name] = values[0] if len(values) == 1 else values or None
    return seen


@pytest.mark.parametrize('row', ROWS, ids=[r[0] for r in ROWS])
def test_same_answer_on_every_path(paths: ThreePaths, row) -> None:
    answers = {path: ask(paths, path, row) for path in PATHS}
    faces = {path: face(a) for path, a in answers.items()}
    assert faces['app']['status'] == row[4]
    assert faces['accel'] == faces['app']
    assert faces['direct'] == faces['app']
    check_contract(answers['app'], row)


def check_contract(answer: Answer, row) -> None:
    """The rules every answer follows, whichever row it is."""
    status, method = answer.status, row[1]
    assert len(answer.all('Accept-Ranges')) <= 1
    if status >= 400 or method in ('PUT', 'DELETE'):
        assert answer.get('ETag') is None
        assert answer.get('Cache-Control') != IMMUTABLE
    if status >= 400 and method != 'HEAD':
        assert answer.get('Content-Type') == 'application/problem+json'
        assert json.loads(answer.body)['status'] == status
    if status == 416:
        size = answer.get('Content-Range')
        assert size is not None and size.startswith('bytes */')
    if status == 304:
        assert answer.get('ETag') and answer.get('Cache-Control') == IMMUTABLE
        assert answer.body == b''
    if status in (200, 206) and method in ('GET', 'HEAD'):
        assert answer.get('Last-Modified') and answer.get('ETag')
    if status == 206:
        crange = answer.get('Content-Range') or ''
        first, last = crange.removeprefix('bytes ').split('/')[0].split('-')
        assert int(first) <= int(last)


def test_names_are_safe_and_encoded(paths: ThreePaths) -> None:
    values = names(paths)
    for path in PATHS:
        evil = paths.request(path, f'/files/{values["big"]}?filename={q(EVIL)}')
        assert evil.status == 200 and evil.get('X-Injected') is None
        disposition = evil.get('Content-Disposition')
        assert disposition is not None and '\r' not in disposition
        assert disposition.startswith(
            'attachment; filename="a_b_c__X-Injected: 1_d_e.txt"'
        )
        assert disposition.endswith("filename*=UTF-8''" + q(EVIL).replace('%7E', '~'))
        uni = paths.request(path, f'/?file_hash={values["big"]}&filename={q(UNICODE)}')
        assert uni.get('Content-Disposition') == (
            'attachment; filename="r_sum_ _ 2024.pdf"; '
            "filename*=UTF-8''r%C3%A9sum%C3%A9%20%E2%98%83%202024.pdf"
        )
        assert uni.get('Content-Type') == 'application/pdf'
        assert uni.get('ETag') == f'"{values["big"]}"'  # the name changes nothing
        assert uni.body == paths.objects[values['big']]
        shown = paths.request(path, f'/files/{values["big"]}?filename=a.png&inline=1')
        assert shown.get(
            'Content-Disposition',
        ).startswith('inline; ')
        assert shown.get('Content-Type') == 'image/png'


def test_delete_with_own_etag_deletes_on_every_path(paths: ThreePaths) -> None:
    for path in PATHS:
        data = os.urandom(2 * KiB) + path.encode()
        digest = paths.upload(data)
        refused = paths.request(path, f'/files/{digest}', 'DELETE', {'If-Match': '"0"'})
        assert refused.status == 412
        assert (paths.store / digest[:2] / digest).exists()  # nothing deleted
        done = paths.request(
            path, f'/files/{digest}', 'DELETE', {'If-Match': f'"{digest}"'}
        )
        assert done.status == 200 and done.get('ETag') is None
        assert done.get('Cache-Control') is None
        assert not (paths.store / digest[:2] / digest).exists()
        gone = paths.request(path, f'/files/{digest}', 'GET', {'If-None-Match': '*'})
        assert gone.status == 404  # never a 304 for an object that is gone


def test_each_path_is_the_one_it_claims(paths: ThreePaths) -> None:
    """The direct site serves plain reads itself and the accel site by
    X-Accel-Redirect, and neither logs an error (404s, uninitialised variables)."""
    big = names(paths)['big']
    marks = {}  # request id -> (site, request): the log line names its rid
    for path in ('accel', 'direct'):
        for kind, headers in (('plain', {}), ('range', {'Range': 'bytes=0-9'})):
            rid = f'claims-{path}-{kind}-{os.getpid()}'
            marks[rid] = path
            got = paths.request(
                path, f'/files/{big}', 'GET', {'X-Request-ID': rid, **headers}
            )
            assert got.status in (200, 206)
        paths.request(path, f'/files/{MISSING}', 'GET')

    def line(rid: str) -> str:
        found = [x for x in paths.access_log(marks[rid]).splitlines() if rid in x]
        return found[-1] if found else ''

    wait_until(lambda: all(line(rid) for rid in marks), 10, 'nginx did not log')
    pid = os.getpid()
    assert 'upstream=- accel=-' in line(f'claims-direct-plain-{pid}')
    for rid in (f'claims-accel-plain-{pid}', f'claims-accel-range-{pid}'):
        assert f'accel=/_store/{big[:2]}/{big}' in line(rid)
    # A ranged read on the direct site is the app's to decide, then nginx's to send.
    assert f'accel=/_store/{big[:2]}/{big}' in line(f'claims-direct-range-{pid}')
    for path in ('accel', 'direct'):
        log = paths.error_log(path)
        assert '[error]' not in log and 'uninitialized' not in log, log[-2000:]

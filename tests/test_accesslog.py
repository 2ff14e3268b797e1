"""The access log: one line per request, secrets redacted, request ids echoed."""

from __future__ import annotations

import json
import logging

import pytest

from tests.conftest import sha256
from wsgi_store.http.accesslog import (
    AccessLog,
    escape,
    is_secret,
    redact_target,
    request_id,
)

DATA = b'access log\n'
H = sha256(DATA)
ACCESS = 'wsgi_store.access'


@pytest.fixture
def lines(caplog):
    """The access log messages written during the test, in order."""
    caplog.set_level(logging.INFO, logger=ACCESS)

    def read() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.name == ACCESS]

    return read


def test_one_text_line_per_request(app, lines):
    app.post('/files', DATA, headers={'User-Agent': 'tester/1.0'})
    app.get(f'/files/{H}')
    app.get('/files/' + 'b' * 64, status=404)
    post, get, miss = lines()
    assert '"POST /files HTTP/1.0" 200 65 ' in post
    assert f'"GET /files/{H} HTTP/1.0" 200 {len(DATA)} ' in get
    assert '" 404 ' in miss
    assert post.endswith('"tester/1.0"')
    assert ' rid=' in post and 'ms rid=' in post


def test_json_format_is_one_object_per_line(make_app, lines):
    app = make_app(log_format='json')
    resp = app.get(
        f'/?file_hash={H}&token=s3cr3t', headers={'X-Request-ID': 'abc-123'}, status=404
    )
    (line,) = lines()
    assert '\n' not in line
    doc = json.loads(line)
    assert set(doc) == {
        'time',
        'remote',
        'method',
        'path',
        'protocol',
        'status',
        'bytes',
        'duration_ms',
        'request_id',
        'user_agent',
    }
    assert doc['method'] == 'GET' and doc['status'] == 404
    assert doc['path'] == f'/?file_hash={H}&token=REDACTED'
    assert doc['request_id'] == 'abc-123' == resp.headers['X-Request-ID']
    assert doc['bytes'] == len(resp.body)
    assert doc['duration_ms'] >= 0
    assert doc['time'].endswith('Z')


@pytest.mark.parametrize(
    ('target', 'expected'),
    [
        ('/files/abc', '/files/abc'),
        ('/?file_hash=ab', '/?file_hash=ab'),
        ('/?token=xyz', '/?token=REDACTED'),
        ('/?a=1&access_token=xyz&b=2', '/?a=1&access_token=REDACTED&b=2'),
        ('/?signature=xyz', '/?signature=REDACTED'),
        ('/?X-Amz-Signature=s&X-Amz-Credential=c', None),
        ('/?%74oken=xyz', '/?%74oken=REDACTED'),  # an encoded name is still secret
        ('/?TOKEN=xyz', '/?TOKEN=REDACTED'),
        ('/?token', '/?token'),
        ('/?password=p&api_key=k', '/?password=REDACTED&api_key=REDACTED'),
        ('/?', '/?'),
    ],
)
def test_redact_target(target, expected):
    result = redact_target(target)
    if expected is None:
        assert 's&' not in result and not result.endswith('=c')
        assert result.count('REDACTED') == 2
    else:
        assert result == expected


def test_file_hash_is_not_a_secret():
    assert not is_secret('file_hash') and not is_secret('after')
    assert is_secret('refresh_token') and is_secret('client_secret')


def test_query_secrets_and_authorization_never_reach_the_log(make_app, lines):
    for log_format in ('text', 'json'):
        app = make_app(log_format=log_format)
        app.get(
            '/files?access_token=SECRET1&limit=5',
            headers={'Authorization': 'Bearer SECRET2', 'Cookie': 'x=SECRET3'},
        )
    text, js = lines()
    for line in (text, js):
        assert 'SECRET' not in line
        assert 'access_token=REDACTED&limit=5' in line


def test_request_id_echoed_when_sane(app, lines):
    resp = app.get('/healthz', headers={'X-Request-ID': 'nginx.Req-42_x'})
    assert resp.headers['X-Request-ID'] == 'nginx.Req-42_x'
    assert 'rid=nginx.Req-42_x ' in lines()[0]


@pytest.mark.parametrize(
    'given',
    [None, '', 'a' * 129, 'has space', 'quote"d', 'new\\nline', 'é', 'a/b'],
)
def test_request_id_generated_when_absent_or_insane(app, lines, given):
    headers = {} if given is None else {'X-Request-ID': given}
    resp = app.get('/healthz', headers=headers)
    rid = resp.headers['X-Request-ID']
    assert rid != given
    assert len(rid) == 32 and int(rid, 16) >= 0
    assert f'rid={rid} ' in lines()[0]


def test_request_ids_differ_between_requests(app):
    ids = {app.get('/healthz').headers['X-Request-ID'] for _ in range(20)}
    assert len(ids) == 20


def test_request_id_on_error_answers(app):
    resp = app.get('/?file_hash=zz', headers={'X-Request-ID': 'e-1'}, status=400)
    assert resp.headers['X-Request-ID'] == 'e-1'
    resp = app.request('/files/missing', method='GET', status=405)
    assert len(resp.headers['X-Request-ID']) == 32
    resp = app.get('/no/such/route', status=404)
    assert 'X-Request-ID' in resp.headers


def test_request_id_length_limit():
    assert request_id('a' * 128) == 'a' * 128
    assert request_id('a' * 129) != 'a' * 129


def test_head_and_not_modified_log_zero_bytes(app, lines):
    app.post('/files', DATA)
    app.head(f'/files/{H}')
    app.get(f'/files/{H}', headers={'If-None-Match': f'"{H}"'}, status=304)
    _, head, cached = lines()
    assert '" 200 0 ' in head and '" 304 0 ' in cached


def test_control_characters_are_escaped_in_text_lines(app, lines):
    app.get('/healthz', headers={'User-Agent': 'evil\x1b[31m"\\ é'})
    (line,) = lines()
    assert '\x1b' not in line and 'é' not in line
    assert r'"evil\x1b[31m\x22\x5c \xc3\xa9"' in line


def test_escape_keeps_plain_text():
    assert escape('curl/8.5.0 (x86_64)') == 'curl/8.5.0 (x86_64)'
    assert escape('a\nb') == r'a\x0ab'


def test_disabled_logger_still_echoes_request_id(app, caplog):
    caplog.set_level(logging.WARNING, logger=ACCESS)
    resp = app.get('/healthz', headers={'X-Request-ID': 'still-here'})
    assert resp.headers['X-Request-ID'] == 'still-here'
    assert not [r for r in caplog.records if r.name == ACCESS]


def test_unknown_format_is_refused():
    with pytest.raises(ValueError, match='log_format'):
        AccessLog('xml')


def test_access_log_setting_turns_the_lines_off_but_keeps_request_ids():
    """WSGI_STORE_ACCESS_LOG=0 (nginx keeps the access log): no app lines."""
    from wsgi_store.config import Config
    from wsgi_store.ops.logs import logconfig_dict

    on = logconfig_dict(Config.from_env({}))
    off = logconfig_dict(Config.from_env({'WSGI_STORE_ACCESS_LOG': '0'}))
    assert on['loggers']['wsgi_store.access']['level'] == 'INFO'
    assert off['loggers']['wsgi_store.access']['level'] == 'WARNING'


def test_app_log_lines_carry_the_request_id(tmp_path):
    """An error logged while handling a request names that request's id, so it
    can be matched with the access line."""
    import logging.config

    import webtest

    from wsgi_store.app import create_app
    from wsgi_store.backends.fs import FilesystemBackend
    from wsgi_store.config import Config
    from wsgi_store.ops.logs import logconfig_dict

    config = Config(store_dir=tmp_path / 'store', logfile=tmp_path / 'log').resolved()
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    logging.config.dictConfig(logconfig_dict(config))
    try:

        class Broken(FilesystemBackend):
            def get(self, *args, **kwargs):
                raise RuntimeError('disk on fire')

        backend = Broken(config.store_dir)
        app = webtest.TestApp(create_app(config, backend=backend))
        app.get('/files/' + 'a' * 64, headers={'X-Request-ID': 'trace-42'}, status=500)
        for handler in logging.getLogger().handlers:
            handler.flush()
        text = (tmp_path / 'log').read_text()
        assert 'disk on fire' in text
        line = next(x for x in text.splitlines() if 'unexpected error' in x)
        assert line.endswith('rid=trace-42')
    finally:
        for handler in root.handlers:
            handler.close()
        handlers, level = saved
        root.handlers[:] = handlers
        root.setLevel(level)
        for name in ('gunicorn.error', 'gunicorn.access', 'wsgi_store.access'):
            logging.getLogger(name).handlers.clear()
            logging.getLogger(name).propagate = True
            logging.getLogger(name).setLevel(logging.NOTSET)


@pytest.mark.parametrize('status', [200, 404])
def test_log_lines_after_a_request_carry_no_request_id(app, status):
    """The request id is reset when the answer is done: a line logged between
    requests (a sweep, a reload) says ``rid=-``, not the last request's id."""
    from wsgi_store.http.accesslog import current_request_id
    from wsgi_store.ops.logs import RequestIdFilter

    path = '/healthz' if status == 200 else '/files/' + 'b' * 64
    app.get(path, headers={'X-Request-ID': 'stale-id'}, status=status)
    record = logging.LogRecord('wsgi_store', logging.INFO, '', 0, 'idle', (), None)
    RequestIdFilter().filter(record)
    assert record.request_id == '-'
    assert current_request_id.get() == '-'


def test_a_streamed_answer_keeps_its_request_id_until_it_is_closed(
    make_app, store_dir, caplog
):
    """A line logged while a body streams (a corrupt object found by the
    verifying reader) names its request; once the body is closed: ``rid=-``."""
    from wsgi_store.http.accesslog import current_request_id
    from wsgi_store.ops.logs import RequestIdFilter

    app = make_app(verify_reads=True)
    digest = app.post('/', DATA).text.strip()
    (store_dir / digest[:2] / digest).write_bytes(b'corrupted!!!!')
    caplog.set_level(logging.ERROR, logger='wsgi_store.http.downloads')
    caplog.handler.addFilter(RequestIdFilter())  # reads the id as it is logged
    with pytest.raises(OSError, match='failed verification'):
        app.get(f'/files/{digest}', headers={'X-Request-ID': 'streaming-7'})
    [record] = [r for r in caplog.records if 'is corrupt' in r.getMessage()]
    assert record.request_id == 'streaming-7'
    assert current_request_id.get() == '-'

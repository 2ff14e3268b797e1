"""Per-request work on the small-GET path, counted (never timed): issue 15.

Each test pins one saving: work that used to be repeated on every request and
is now done once (per process, per mtime) or read more directly, while what it
produces stays the same.
"""

from __future__ import annotations

import email.utils
import logging
import os
import socket
import threading
import time
from types import SimpleNamespace

import falcon.testing
import pytest
import webtest
from gunicorn.http.body import ChunkedReader, LengthReader
from gunicorn.workers.gthread import ThreadWorker

from tests.conftest import sha256
from wsgi_store.app import create_app
from wsgi_store.backends.base import Download, ObjectInfo
from wsgi_store.backends.fs import FilesystemBackend
from wsgi_store.config import Config
from wsgi_store.http import conditional
from wsgi_store.http.accesslog import AccessLog
from wsgi_store.http.smallobjects import SmallObjects
from wsgi_store.ops.clientsocket import DeadlineSocket
from wsgi_store.ops.workers import StoreWorker

DATA = b'request cost\n'
H = sha256(DATA)
ACCESS = 'wsgi_store.access'


def test_access_lines_build_no_log_record_field_by_field(app, caplog, monkeypatch):
    caplog.set_level(logging.INFO, logger=ACCESS)
    app.post('/files', DATA)
    caplog.clear()
    built = []
    original = logging.LogRecord.__init__

    def counting(self: logging.LogRecord, *args: object, **kwargs: object) -> None:
        built.append(args[0] if args else kwargs.get('name'))
        original(self, *args, **kwargs)

    monkeypatch.setattr(logging.LogRecord, '__init__', counting)
    for _ in range(20):
        app.get(f'/files/{H}')
    lines = [r for r in caplog.records if r.name == ACCESS]
    assert len(lines) == 20
    assert built.count(ACCESS) <= 1  # the prototype, once per process


def test_access_record_carries_every_standard_field():
    log = logging.getLogger('wsgi_store.test_request_cost')
    reference = log.makeRecord(log.name, logging.INFO, '', 0, 'x', (), None)
    record = AccessLog(log=log)._records.make('GET / 200')
    assert set(record.__dict__) == set(reference.__dict__)
    assert isinstance(record, logging.LogRecord)
    assert record.getMessage() == 'GET / 200'
    assert (record.levelno, record.levelname, record.name) == (20, 'INFO', log.name)
    assert record.thread == threading.get_ident()
    assert abs(record.created - time.time()) < 60
    assert 0 <= record.msecs < 1000
    fmt = logging.Formatter('%(asctime)s %(process)d %(threadName)s %(message)s')
    assert fmt.format(record).endswith(f' {os.getpid()} MainThread GET / 200')


def test_access_record_of_a_forked_child_names_the_child(monkeypatch):
    records = AccessLog()._records
    assert records.make('a').process == os.getpid()
    monkeypatch.setattr(os, 'getpid', lambda: 424242)
    assert records.make('b').process == 424242


@pytest.mark.parametrize(
    'headers',
    [
        {},
        {'If-None-Match': '"abc"'},
        {'If-Match': '*', 'If-Range': 'W/"x"', 'Range': 'bytes=0-1'},
        {
            'If-Modified-Since': 'Sun, 06 Nov 1994 08:49:37 GMT',
            'If-Unmodified-Since': 'Sun, 06 Nov 1994 08:49:37 GMT',
            'Accept': '*/*',
        },
        {'if-none-match': ''},
    ],
)
def test_preconditions_read_from_the_environ_match_get_header(headers):
    req = falcon.testing.create_req(headers=headers)
    expected = conditional.request_preconditions(req.get_header)
    assert conditional.preconditions_in(req.env) == expected


def test_last_modified_is_formatted_once_per_mtime(monkeypatch):
    calls = []
    original = email.utils.formatdate

    def counting(*args: object, **kwargs: object) -> str:
        calls.append(args)
        return original(*args, **kwargs)

    monkeypatch.setattr(email.utils, 'formatdate', counting)
    mtime = 1_700_000_000.25 + (os.getpid() % 1000)  # not cached by another test
    first = [conditional.http_date(mtime) for _ in range(5)]
    assert first == [original(int(mtime), usegmt=True)] * 5
    assert len(calls) == 1


@pytest.fixture
def counted(store_dir, monkeypatch):
    """An app over a real store whose backend counts its ``get`` and ``stat`` calls."""
    backend = FilesystemBackend(store_dir, 'sha256', chunk_bytes=64 * 1024)
    calls: list[str] = []
    for verb in ('get', 'stat'):
        original = getattr(backend, verb)

        def counting(*args: object, _verb: str = verb, _f=original, **kw: object):
            calls.append(_verb)
            return _f(*args, **kw)

        monkeypatch.setattr(backend, verb, counting)

    def make(**settings: object) -> webtest.TestApp:
        config = Config(store_dir=store_dir).replace(**settings)
        app = create_app(config, backend=backend)
        return webtest.TestApp(app, extra_environ={'wsgi.input_terminated': True})

    return backend, calls, make


def test_a_small_object_is_served_from_memory_after_one_stat(counted):
    _, calls, make = counted
    app = make()
    app.post('/files', DATA)
    first = app.get(f'/files/{H}')
    calls.clear()
    again = [app.get(f'/files/{H}') for _ in range(3)]
    assert calls == ['stat'] * 3  # no open + fstat + read + close
    for resp in again:
        assert resp.body == DATA
        assert resp.headers['Last-Modified'] == first.headers['Last-Modified']
        assert resp.headers['ETag'] == first.headers['ETag']


def test_a_cached_object_deleted_by_another_process_is_404(counted):
    backend, _, make = counted
    app = make()
    app.post('/files', DATA)
    app.get(f'/files/{H}')
    os.unlink(backend.path_for(H))  # as another worker or `gc` would
    app.get(f'/files/{H}', status=404)


def test_a_cached_object_whose_size_changed_is_read_again(counted):
    backend, calls, make = counted
    app = make()
    app.post('/files', DATA)
    app.get(f'/files/{H}')
    with open(backend.path_for(H), 'wb') as f:  # damaged on disk
        f.write(b'other')
    calls.clear()
    assert app.get(f'/files/{H}').body == b'other'  # what the disk holds, as before
    assert calls == ['stat', 'get']


def test_verified_reads_never_use_the_memory(counted):
    _, calls, make = counted
    app = make(verify_reads=True)
    app.post('/files', DATA)
    calls.clear()
    app.get(f'/files/{H}')
    app.get(f'/files/{H}')
    assert calls == ['get', 'get']


def test_head_and_ranges_answer_as_before_from_memory(counted):
    _, _, make = counted
    app = make()
    app.post('/files', DATA)
    app.get(f'/files/{H}')
    assert app.head(f'/files/{H}').headers['Content-Length'] == str(len(DATA))
    part = app.get(f'/files/{H}', headers={'Range': 'bytes=2-5'}, status=206)
    assert part.body == DATA[2:6]
    app.get(f'/files/{H}', headers={'If-None-Match': f'"{H}"'}, status=304)


def test_memory_is_bounded_by_entries_and_object_size():
    backend = _FakeBackend({f'{i:064x}': b'x' * 10 for i in range(20)})
    backend.objects['big'] = b'y' * 100
    cache = SmallObjects(max_object=50, max_entries=4)
    for name in backend.objects:
        assert cache.get(backend, name, 1000).data == backend.objects[name]
    assert len(cache) == 4
    assert 'big' not in cache._data
    assert list(cache._data) == [f'{i:064x}' for i in range(16, 20)]  # newest kept


class _FakeBackend:
    def __init__(self, objects: dict[str, bytes]) -> None:
        self.objects = objects

    def stat(self, hex_hash: str) -> ObjectInfo:
        return ObjectInfo(hex_hash, len(self.objects[hex_hash]), 0.0)

    def get(self, hex_hash: str, *, inline_limit: int = 0) -> Download:
        return Download(self.stat(hex_hash), data=self.objects[hex_hash])


@pytest.mark.parametrize('io_timeout', [None, 2.5])
def test_client_socket_mode_switches_only_when_it_changes(monkeypatch, io_timeout):
    switches: list[object] = []
    for name in ('setblocking', 'settimeout'):
        original = getattr(socket.socket, name)

        def counting(self: socket.socket, value: object, _f=original) -> None:
            switches.append(value)
            _f(self, value)

        monkeypatch.setattr(socket.socket, name, counting)
    a, b = socket.socketpair()
    with a, b:
        client = DeadlineSocket(fileno=a.detach())
        with client:
            client.io_timeout = io_timeout
            # what gthread and the poller do around one kept-alive request
            for flag in (False, False, True, True, False, False, True):
                client.setblocking(flag)
                assert client.gettimeout() == (io_timeout if flag else 0.0)
            assert len(switches) == 4  # None -> 0.0 -> on -> 0.0 -> on: 4 of 7


def _conn_with_body(reader: object, failed: bool = False) -> SimpleNamespace:
    body = SimpleNamespace(reader=reader, failed=failed)
    return SimpleNamespace(parser=SimpleNamespace(mesg=SimpleNamespace(body=body)))


@pytest.mark.parametrize(
    ('reader', 'failed', 'drained'),
    [
        (LengthReader(None, 0), False, False),  # read to its end: nothing to drain
        (LengthReader(None, 5), False, True),  # unread bytes: gthread drains them
        (LengthReader(None, 0), True, True),  # a failed read: gthread closes
        (ChunkedReader(SimpleNamespace(), None), False, True),
    ],
)
def test_keepalive_drains_only_a_body_not_read_to_its_end(
    monkeypatch, reader, failed, drained
):
    calls = []

    def drain(self: object, conn: object, keepalive: bool) -> bool:
        calls.append(keepalive)
        return keepalive

    monkeypatch.setattr(ThreadWorker, '_keepalive_after', drain)
    worker = object.__new__(StoreWorker)
    assert worker._keepalive_after(_conn_with_body(reader, failed), True) is True
    assert calls == ([True] if drained else [])
    assert worker._keepalive_after(_conn_with_body(reader, failed), False) is False

"""Per-request work on the small-GET path, counted (never timed): issue 15.

Each test pins one saving: work that used to be repeated on every request and
is now done once (per process, per mtime) or read more directly, while what it
produces stays the same.
"""

from __future__ import annotations

import email.utils
import logging
import os
import threading
import time

import falcon.testing
import pytest

from tests.conftest import sha256
from wsgi_store.http import conditional
from wsgi_store.http.accesslog import AccessLog

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

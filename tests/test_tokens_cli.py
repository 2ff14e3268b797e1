"""``filestorectl tokens add|list|revoke`` through the real console script.

The last test starts the real daemon with the file and shows that a token
added (or revoked) while it runs is honoured without a restart.
"""

from __future__ import annotations

import re
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.servers import Daemon, filestorectl, start_daemon, wait_until
from wsgi_store.http.tokens import parse_tokens, token_digest


def add(path: Path, scopes: str) -> str:
    result = filestorectl('tokens', 'add', '--scopes', scopes, '--tokens', str(path))
    assert result.returncode == 0, result.stderr
    token = result.stdout.strip()
    return token


def fingerprint(token: str) -> str:
    return token_digest(token).hex()[:16]


def test_add_prints_a_256_bit_url_safe_token_and_creates_the_file_0600(
    tmp_path: Path,
) -> None:
    path = tmp_path / 'tokens'
    token = add(path, 'read,write')
    assert re.fullmatch(r'[A-Za-z0-9_-]{43}', token)  # 32 bytes, base64url
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    (grant,) = parse_tokens(path.read_text())
    assert grant.digest == token_digest(token)
    assert grant.scopes == {'read', 'write'}
    other = add(path, 'metrics')
    assert other != token
    assert [g.scopes for g in parse_tokens(path.read_text())] == [
        {'read', 'write'},
        {'metrics'},
    ]


def test_add_appends_after_a_last_line_without_newline(tmp_path: Path) -> None:
    path = tmp_path / 'tokens'
    path.write_text('# ops\nOps-Dashboard-Token-0001 metrics')
    token = add(path, 'read')
    text = path.read_text()
    assert text.startswith('# ops\nOps-Dashboard-Token-0001 metrics\n')
    assert len(parse_tokens(text)) == 2 and token in text


def test_list_shows_scopes_and_fingerprints_never_the_token(tmp_path: Path) -> None:
    path = tmp_path / 'tokens'
    first, second = add(path, 'read,write'), add(path, 'delete')
    result = filestorectl('tokens', 'list', '--tokens', str(path))
    assert result.returncode == 0, result.stderr
    assert first not in result.stdout and second not in result.stdout
    lines = result.stdout.splitlines()
    assert lines[0].split() == [fingerprint(first), 'read,write', 'line', '1']
    assert lines[1].split() == [fingerprint(second), 'delete', 'line', '2']


def test_revoke_removes_only_that_token_and_keeps_the_mode(tmp_path: Path) -> None:
    path = tmp_path / 'tokens'
    path.write_text('# keep this comment\n')
    path.chmod(0o600)
    first, second = add(path, 'read'), add(path, 'write')
    result = filestorectl('tokens', 'revoke', fingerprint(first), '--tokens', str(path))
    assert result.returncode == 0, result.stderr
    text = path.read_text()
    assert first not in text and second in text and '# keep this comment' in text
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_revoke_of_an_unknown_fingerprint_is_one_line_exit_1(tmp_path: Path) -> None:
    path = tmp_path / 'tokens'
    add(path, 'read')
    result = filestorectl('tokens', 'revoke', '0123456789abcdef', '--tokens', str(path))
    assert result.returncode == 1 and 'Traceback' not in result.stderr
    assert result.stderr == (
        f'filestorectl: tokens revoke: no token with fingerprint 0123456789abcdef in '
        f'{path} (filestorectl tokens list shows them)\n'
    )


def test_unknown_scope_and_missing_file_are_usage_errors(tmp_path: Path) -> None:
    path = tmp_path / 'tokens'
    result = filestorectl(
        'tokens', 'add', '--scopes', 'read,admin', '--tokens', str(path)
    )
    assert result.returncode == 2 and 'Traceback' not in result.stderr
    assert result.stderr.strip() == (
        "filestorectl: tokens add: --scopes 'read,admin': unknown scope admin "
        '(use delete,metrics,read,write)'
    )
    assert not path.exists()
    result = filestorectl('tokens', 'list')
    assert result.returncode == 2
    assert result.stderr.strip() == (
        'filestorectl: tokens: no tokens file: give --tokens FILE '
        '(or set WSGI_STORE_TOKENS_FILE)'
    )


def test_add_refuses_to_append_to_a_malformed_file(tmp_path: Path) -> None:
    path = tmp_path / 'tokens'
    path.write_text('short read\n')
    result = filestorectl('tokens', 'add', '--scopes', 'read', '--tokens', str(path))
    assert result.returncode == 1 and 'Traceback' not in result.stderr
    assert 'line 1: the token is shorter than 16 characters' in result.stderr
    assert path.read_text() == 'short read\n'


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[tuple[Daemon, Path]]:
    tokens = tmp_path / 'tokens'
    add(tokens, 'metrics')  # the service refuses to start without a token
    d = start_daemon(tmp_path / 'svc', '--tokens', str(tokens))
    try:
        yield d, tokens
    finally:
        d.cleanup()


@pytest.mark.e2e
def test_running_service_honours_added_and_revoked_tokens(
    daemon: tuple[Daemon, Path],
) -> None:
    d, tokens = daemon

    def upload_status(token: str) -> int:
        headers = {'Authorization': f'Bearer {token}'}
        return requests.post(
            d.url + '/', data=b'x', headers=headers, timeout=10
        ).status_code

    token = add(tokens, 'read,write')
    wait_until(lambda: upload_status(token) == 200, 15, 'the added token never worked')
    result = filestorectl(
        'tokens', 'revoke', fingerprint(token), '--tokens', str(tokens)
    )
    assert result.returncode == 0, result.stderr
    wait_until(lambda: upload_status(token) == 401, 15, 'the revoked token still works')

"""filestorectl's answers to a user's mistakes: one line, the right exit code.

Every test runs the installed console script in a subprocess and checks the
exit code (2 usage, 1 runtime), that stderr is one line naming the flag or
variable the user gave, and that no traceback leaks out.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from tests.servers import ROOT, VENV_BIN, ctl_env, filestorectl, free_port

FILESTORECTL = str(VENV_BIN / 'filestorectl')


def one_line_error(result: subprocess.CompletedProcess[str], code: int) -> str:
    """The single stderr line of a refused command (asserting its shape)."""
    assert 'Traceback' not in result.stderr, result.stderr
    assert result.returncode == code, (result.returncode, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith('filestorectl: '), lines[0]
    return lines[0]


def ctl(*args: str, cwd: Path | None = None, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [FILESTORECTL, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=ctl_env(**env),
        cwd=cwd,
        stdin=subprocess.DEVNULL,
    )


def make_store(path: Path, algorithm: str) -> None:
    from wsgi_store.backends.fs import FilesystemBackend

    FilesystemBackend(path, algorithm).close()


def test_start_with_out_of_range_port_is_a_usage_error_naming_port(
    tmp_path: Path,
) -> None:
    line = one_line_error(ctl('start', '--port', '99999', cwd=tmp_path), 2)
    assert line == 'filestorectl: --port: must be a TCP port, 1-65535, not 99999'
    assert list(tmp_path.iterdir()) == []  # nothing created


def test_port_abc_names_the_flag_and_is_not_called_a_byte_count(
    tmp_path: Path,
) -> None:
    line = one_line_error(ctl('start', '--port', 'abc', cwd=tmp_path), 2)
    assert line == "filestorectl: --port: not a whole number: 'abc'"
    assert 'byte count' not in line and 'WSGI_STORE' not in line


def test_bad_size_names_the_flag_when_given_as_a_flag(tmp_path: Path) -> None:
    line = one_line_error(ctl('start', '--max-size', '10X', cwd=tmp_path), 2)
    assert line == "filestorectl: --max-size: not a byte count: '10X'"


def test_bad_size_names_the_variable_when_set_in_the_environment(
    tmp_path: Path,
) -> None:
    result = ctl('start', cwd=tmp_path, WSGI_STORE_MAX_UPLOAD_BYTES='10X')
    line = one_line_error(result, 2)
    assert line == "filestorectl: WSGI_STORE_MAX_UPLOAD_BYTES: not a byte count: '10X'"
    result = ctl('status', WSGI_STORE_PORT='70000')
    assert 'WSGI_STORE_PORT: must be a TCP port' in one_line_error(result, 2)


@pytest.mark.parametrize('command', ['stats', 'verify', 'gc', 'start', 'run'])
def test_s3_without_bucket_is_a_usage_error_for_every_command(
    command: str, tmp_path: Path
) -> None:
    port = ['--port', str(free_port())] if command in ('start', 'run') else []
    result = ctl(command, '--backend', 's3', *port, cwd=tmp_path)
    line = one_line_error(result, 2)
    assert line == (
        'filestorectl: --backend s3 needs a bucket: give --s3-bucket BUCKET '
        '(or set WSGI_STORE_S3_BUCKET)'
    )
    assert list(tmp_path.iterdir()) == []


def test_s3_without_bucket_from_the_environment_names_the_variable() -> None:
    line = one_line_error(ctl('stats', WSGI_STORE_BACKEND='s3'), 2)
    assert line.startswith('filestorectl: WSGI_STORE_BACKEND=s3 needs a bucket')


def test_migrate_from_s3_without_bucket_names_the_flag(tmp_path: Path) -> None:
    line = one_line_error(ctl('migrate', '--from', 's3', '--to', str(tmp_path)), 2)
    assert line.startswith('filestorectl: --from s3 needs a bucket')


def test_migrate_from_a_missing_store_creates_nothing(tmp_path: Path) -> None:
    result = ctl('migrate', '--from', 'fs:nope', '--to', 'fs:out', cwd=tmp_path)
    line = one_line_error(result, 2)
    assert line == f'filestorectl: --from fs:nope: {tmp_path / "nope"} does not exist'
    assert list(tmp_path.iterdir()) == []


def test_store_made_with_another_algorithm_is_one_line_for_start_and_migrate(
    tmp_path: Path,
) -> None:
    store = tmp_path / 'store512'
    make_store(store, 'sha512')
    result = ctl(
        'start', '--store', str(store), '--port', str(free_port()), cwd=tmp_path
    )
    line = one_line_error(result, 1)
    assert f'the store at {store} uses sha512, not sha256' in line
    source = tmp_path / 'src'
    make_store(source, 'sha256')
    result = ctl('migrate', '--from', f'fs:{source}', '--to', f'fs:{store}')
    # migrate: the store named by --to/--from cannot be used: a usage error (2),
    # like a --from that holds no store (issue 11 item 10)
    assert f'the store at {store} uses sha512, not sha256' in one_line_error(result, 2)


def test_store_that_is_a_file_says_it_is_a_file(tmp_path: Path) -> None:
    photo = tmp_path / 'photo.jpg'
    photo.write_bytes(b'\xff\xd8')
    result = ctl(
        'start', '--store', str(photo), '--port', str(free_port()), cwd=tmp_path
    )
    line = one_line_error(result, 1)
    assert line.startswith(f'filestorectl: store {photo} is a file, not a directory')
    assert 'Errno' not in line


def test_read_only_store_says_what_is_wrong(tmp_path: Path) -> None:
    store = tmp_path / 'ro'
    store.mkdir()
    port = str(free_port())
    args = [FILESTORECTL, 'start', '--store', str(store), '--port', port]
    if os.geteuid() == 0:  # root writes through modes: a read-only bind mount
        unshare = shutil.which('unshare')
        assert unshare, 'unshare (util-linux) is needed to test a read-only store'
        script = (
            f'mount --bind {store} {store} && mount -o remount,bind,ro {store} '
            '&& exec "$@"'
        )
        args = [unshare, '--mount', 'sh', '-c', script, 'sh', *args]
        expected = f'filestorectl: store {store} is on a read-only filesystem'
    else:
        store.chmod(0o500)
        expected = f'filestorectl: store {store} is not writable by user '
    result = subprocess.run(
        args, capture_output=True, text=True, timeout=120, env=ctl_env(), cwd=tmp_path
    )
    line = one_line_error(result, 1)
    assert line.startswith(expected) and 'tmp' not in line.removeprefix(expected)
    assert 'Permission denied' not in line


def test_start_on_a_busy_port_creates_no_store(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(('127.0.0.1', 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = ctl('start', '--port', str(port), cwd=tmp_path)
    line = one_line_error(result, 1)
    assert line.startswith(f'filestorectl: cannot listen on 127.0.0.1:{port}')
    assert list(tmp_path.iterdir()) == []  # no ./store, no ./wsgi-store.log


def test_typo_in_a_flag_shows_the_subcommands_usage() -> None:
    result = filestorectl('status', '--prot', '9000')
    assert result.returncode == 2 and 'Traceback' not in result.stderr
    assert result.stderr.startswith('usage: filestorectl status ')
    assert 'filestorectl status: error: unrecognized arguments: --prot' in result.stderr


@pytest.mark.parametrize('command', ['status', 'get_pid', 'reload'])
def test_status_get_pid_and_reload_do_not_offer_wait(command: str) -> None:
    result = filestorectl(command, '--help')
    assert result.returncode == 0
    assert '--wait' not in result.stdout and 'SIGKILL' not in result.stdout


def test_stop_explains_its_wait() -> None:
    result = filestorectl('stop', '--help')
    assert 'seconds to wait before SIGKILL' in ' '.join(result.stdout.split())


@pytest.mark.parametrize('command', ['verify', 'gc', 'stats'])
@pytest.mark.parametrize('flag', ['--no-fsync', '--s3-redirect', '--public-read'])
def test_maintenance_commands_refuse_server_only_flags(command: str, flag: str) -> None:
    result = filestorectl(command, flag)
    assert result.returncode == 2 and 'Traceback' not in result.stderr
    assert f'filestorectl {command}: error: unrecognized arguments: {flag}' in (
        result.stderr
    )


def test_verify_without_a_terminal_prints_clean_lines(tmp_path: Path) -> None:
    store = tmp_path / 'store'
    make_store(store, 'sha256')
    shard = store / 'ab'
    (shard / ('ab' + '0' * 62)).write_bytes(b'not its hash')
    result = filestorectl('verify', '--store', str(store))
    assert result.returncode == 1
    assert result.stderr == ''  # no progress bar in a pipe
    assert '\r' not in result.stdout and '\x1b' not in result.stdout
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f'CORRUPT ab{"0" * 62}: its bytes hash to ')
    assert lines[-1].startswith('verified 1 object(s)')


def test_bin_filestorectl_uses_the_clones_venv() -> None:
    # Run with a PATH whose python3 cannot import wsgi_store (the system's).
    env = ctl_env(PATH='/usr/bin:/bin')
    result = subprocess.run(
        [str(ROOT / 'bin' / 'filestorectl'), 'status', '--help'],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith('usage: filestorectl status')


def test_unknown_hash_is_a_usage_error_naming_the_flag_or_variable(
    tmp_path: Path,
) -> None:
    line = one_line_error(ctl('stats', '--hash', 'foo', cwd=tmp_path), 2)
    assert line.startswith("filestorectl: --hash: unknown hash algorithm 'foo' (use ")
    result = ctl('start', '--port', str(free_port()), cwd=tmp_path, WSGI_STORE_HASH='x')
    assert one_line_error(result, 2).startswith(
        "filestorectl: WSGI_STORE_HASH: unknown hash algorithm 'x'"
    )
    assert list(tmp_path.iterdir()) == []


def test_missing_config_file_and_negative_age_are_usage_errors(tmp_path: Path) -> None:
    missing = tmp_path / 'gunicorn.conf.py'
    result = ctl(
        'start', '--config', str(missing), '--port', str(free_port()), cwd=tmp_path
    )
    assert (
        one_line_error(result, 2) == f'filestorectl: --config {missing}: no such file'
    )
    assert list(tmp_path.iterdir()) == []
    result = ctl('gc', '--older-than', '-5', cwd=tmp_path)
    line = one_line_error(result, 2)
    assert line == 'filestorectl: --older-than: must not be negative, not -5'

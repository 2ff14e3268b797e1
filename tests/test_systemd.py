"""The generated systemd unit: `systemd-analyze verify`, and Type=notify for real.

`systemd-analyze verify` parses the unit and checks that ExecStart's binary
exists and is executable; it does not look the User= up (a missing user only
fails at start), so the test needs no account. It exits 0 even for unknown
keys or bad values, printing a warning: the test requires silence, and a unit
with a typo proves that the check notices.
"""

from __future__ import annotations

import shlex
import socket
import subprocess
from pathlib import Path

import pytest
import requests

from tests.docs import documented_command
from tests.servers import (
    ROOT,
    VENV_BIN,
    ctl_env,
    filestorectl,
    free_port,
    require_binary,
    stop_process,
    wait_http,
)

FILESTORECTL = str(VENV_BIN / 'filestorectl')
FLAGS = [
    '--port', '9001', '--store', '/srv/wsgi-store', '--workers', '4',
    '--logfile', '/var/log/wsgi-store/wsgi-store.log', '--accel-redirect', '/_store',
]  # fmt: skip


def generate(*extra: str) -> str:
    result = filestorectl('systemd-unit', *FLAGS, '--exec', FILESTORECTL, *extra)
    assert result.returncode == 0, result.stderr
    return result.stdout


def verify(unit_dir: Path, text: str) -> subprocess.CompletedProcess[str]:
    tool = require_binary('systemd-analyze', '/usr/bin/systemd-analyze')
    unit = unit_dir / 'wsgi-store.service'
    unit.write_text(text)
    return subprocess.run(
        [tool, 'verify', str(unit)], capture_output=True, text=True, timeout=60
    )


def test_generated_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    text = generate()
    result = verify(tmp_path, text)
    assert result.returncode == 0, result.stdout + result.stderr
    assert 'wsgi-store.service' not in result.stdout + result.stderr


def test_verify_notices_a_broken_unit(tmp_path: Path) -> None:
    broken = generate().replace('Type=notify', 'Type=notfy')
    result = verify(tmp_path, broken)
    assert 'Failed to parse service type' in result.stdout + result.stderr


def test_unit_settings(tmp_path: Path) -> None:
    lines = generate('--user', 'store').splitlines()
    exec_start = next(x for x in lines if x.startswith('ExecStart='))
    words = shlex.split(exec_start.removeprefix('ExecStart='))
    assert words[:2] == [FILESTORECTL, 'run']
    assert pairs(words[2:]) == pairs(FLAGS)
    for expected in (
        'Type=notify',
        'ExecReload=/bin/kill -HUP $MAINPID',
        'KillMode=mixed',
        'Restart=on-failure',
        'User=store',
        'Group=store',
        'NoNewPrivileges=yes',
        'ProtectSystem=strict',
        'ReadWritePaths=/srv/wsgi-store /var/log/wsgi-store',
        'PrivateTmp=yes',
        'ProtectHome=yes',
        'LimitNOFILE=65536',
    ):
        assert expected in lines


def pairs(flags: list[str]) -> dict[str, str]:
    return dict(zip(flags[::2], flags[1::2], strict=True))


def test_install_writes_the_unit_and_says_what_next(tmp_path: Path) -> None:
    target = tmp_path / 'system' / 'wsgi-store.service'
    result = filestorectl(
        'systemd-unit', *FLAGS, '--exec', FILESTORECTL,
        '--install', '--unit-path', str(target),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert target.read_text() == generate()
    assert target.stat().st_mode & 0o777 == 0o644
    for step in (
        'useradd --system',
        'install -d -o wsgi-store -g wsgi-store -m 0750 /srv/wsgi-store',
        'systemctl daemon-reload',
        'systemctl enable --now wsgi-store',
    ):
        assert step in result.stdout


@pytest.mark.e2e
def test_run_notifies_systemd_when_ready(tmp_path: Path) -> None:
    """What Type=notify relies on: `run` sends READY=1 to $NOTIFY_SOCKET."""
    notify = tmp_path / 'notify.sock'
    port = free_port()
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(notify))
        sock.settimeout(30)
        log = tmp_path / 'run.log'
        with open(log, 'wb') as out:
            proc = subprocess.Popen(
                [FILESTORECTL, 'run', '--port', str(port), '--store',
                 str(tmp_path / 'store')],
                env=ctl_env(NOTIFY_SOCKET=str(notify)),
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )  # fmt: skip
        try:
            message = sock.recv(4096).decode()
            assert 'READY=1' in message.splitlines()
            wait_http(f'http://127.0.0.1:{port}/healthz', 30, proc, log)
            assert requests.get(f'http://127.0.0.1:{port}/healthz', timeout=5).ok
        finally:
            stop_process(proc, 30)
    assert proc.returncode == 0, log.read_text()  # SIGTERM: a clean stop


def test_shipped_unit_is_the_generated_one() -> None:
    """contrib/systemd/wsgi-store.service: what docs/deploy.md says makes it."""
    shipped = ROOT / 'contrib' / 'systemd' / 'wsgi-store.service'
    result = filestorectl(*documented_command('contrib/systemd/wsgi-store.service'))
    assert result.returncode == 0, result.stderr
    assert shipped.read_text() == result.stdout


def test_default_unit_lists_its_store_in_read_write_paths() -> None:
    result = filestorectl('systemd-unit', '--exec', FILESTORECTL)
    assert result.returncode == 0 and result.stderr == ''
    assert 'ReadWritePaths=/var/lib/wsgi-store\n' in result.stdout
    assert '--store /var/lib/wsgi-store' in result.stdout


def test_unit_warns_about_stores_the_sandbox_hides(tmp_path: Path) -> None:
    store = tmp_path / 'store'  # under /tmp: PrivateTmp=yes hides it
    result = filestorectl('systemd-unit', '--store', str(store), '--exec', FILESTORECTL)
    assert result.returncode == 0
    assert result.stderr.splitlines() == [
        f'filestorectl: warning: the store {store} does not exist: create it before '
        'starting',
        f'filestorectl: warning: the store {store} is under /tmp, which the unit '
        'hides from the service (PrivateTmp=yes): use a directory such as '
        '/var/lib/wsgi-store or /srv',
    ]
    home = filestorectl(
        'systemd-unit', '--store', '/home/alice/store', '--exec', FILESTORECTL
    )
    assert (
        'is under /home, which the unit hides from the service (ProtectHome=yes)'
        in (home.stderr)
    )
    assert f'ReadWritePaths={store}\n' in result.stdout  # stdout is the unit only


def test_unit_and_site_write_absolute_paths(tmp_path: Path) -> None:
    (tmp_path / 'store').mkdir()
    env = ctl_env()
    unit = subprocess.run(
        [FILESTORECTL, 'systemd-unit', '--store', 'store', '--tokens', 'tokens',
         '--exec', 'venv/bin/filestorectl'],
        capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert unit.returncode == 0, unit.stderr
    exec_start = next(x for x in unit.stdout.splitlines() if x.startswith('ExecStart='))
    words = shlex.split(exec_start.removeprefix('ExecStart='))
    assert words[0] == str(tmp_path / 'venv/bin/filestorectl')
    assert words[words.index('--store') + 1] == str(tmp_path / 'store')
    assert words[words.index('--tokens') + 1] == str(tmp_path / 'tokens')
    site = subprocess.run(
        [FILESTORECTL, 'nginx-config', '--store', 'missing', '--accel-redirect',
         '/_store', '--access-log', 'logs/access.log'],
        capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert site.returncode == 0
    assert f'access_log {tmp_path}/logs/access.log ' in site.stdout
    assert f'alias "{tmp_path}/missing/";' in site.stdout
    assert site.stderr == (
        f'filestorectl: warning: the store {tmp_path}/missing does not exist: '
        'create it before starting\n'
    )

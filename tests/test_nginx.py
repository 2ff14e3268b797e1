"""Real nginx from `filestorectl nginx-config` in front of the real daemon.

Two sites over one daemon: "public" (the generated default: nginx serves public
reads from the store itself) and "accel" (``--no-direct-reads``: every read goes
to the app, which answers with X-Accel-Redirect). nginx's access log uses the
site's ``wsgi_store`` format, which records ``$upstream_addr`` and
``$upstream_http_x_accel_redirect``: the proof of who served each request.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tests.docs import documented_command
from tests.servers import (
    ROOT,
    Daemon,
    Server,
    children_of,
    filestorectl,
    free_port,
    require_binary,
    start_daemon,
    start_nginx,
    wait_until,
)

pytestmark = pytest.mark.e2e
MiB = 1024 * 1024
MAX_SIZE = 512 * MiB


@dataclass
class Site:
    nginx: Server
    access_log: Path

    @property
    def url(self) -> str:
        return self.nginx.url

    def log_line(self, needle: str) -> str:
        """The last access-log line containing ``needle`` (nginx logs at close)."""
        found: list[str] = []

        def logged() -> bool:
            found[:] = [
                x for x in self.access_log.read_text().splitlines() if needle in x
            ]
            return bool(found)

        wait_until(logged, 10, f'no nginx access log line with {needle!r}')
        return found[-1]


@dataclass
class Stack:
    daemon: Daemon
    public: Site
    accel: Site


def start_site(daemon: Daemon, workdir: Path, *extra: str) -> Site:
    port = free_port()
    access_log = workdir / f'site-{port}.log'
    generated = filestorectl(
        'nginx-config',
        *daemon.args(),
        '--accel-redirect', '/_store',
        '--max-size', str(MAX_SIZE),
        '--listen-port', f'127.0.0.1:{port}',
        '--access-log', str(access_log),
        *extra,
    )  # fmt: skip
    assert generated.returncode == 0, generated.stderr
    return Site(start_nginx(workdir, generated.stdout, port), access_log)


def share_store_with(nginx: Server, store: Path) -> None:
    """Let nginx's workers read the store, as the Deploy guide's group step does.

    Run as root, nginx's workers drop to an unprivileged user: give the store to
    their group (setgid directories, so new objects inherit it; objects are
    0640). Run as a normal user, the workers are us and nothing is needed.
    """
    workers = children_of(nginx.proc.pid)
    assert workers, 'nginx has no worker'
    status = Path(f'/proc/{workers[0]}/status').read_text().splitlines()
    gid = int(next(x for x in status if x.startswith('Gid:')).split()[1])
    if os.geteuid() != 0 or gid == os.getgid():
        return
    for directory, _, files in os.walk(store):
        os.chown(directory, -1, gid)
        os.chmod(directory, 0o2750)
        for name in files:
            os.chown(os.path.join(directory, name), -1, gid)


@pytest.fixture(scope='module')
def stack() -> Iterator[Stack]:
    require_binary('nginx', '/usr/sbin/nginx')
    # Not under pytest's tmp dir (mode 0700): nginx's workers must reach the store.
    work = Path(tempfile.mkdtemp(prefix='wsgi-store-nginx-'))
    work.chmod(0o755)
    sites: list[Site] = []
    daemon: Daemon | None = None
    try:
        daemon = start_daemon(
            work / 'svc', '--accel-redirect', '/_store', '--max-size', str(MAX_SIZE)
        )
        sites.append(start_site(daemon, work))
        sites.append(start_site(daemon, work, '--no-direct-reads'))
        share_store_with(sites[0].nginx, daemon.store)
        yield Stack(daemon, *sites)
    finally:
        for site in sites:
            site.nginx.stop()
        if daemon is not None:
            daemon.cleanup()
        shutil.rmtree(work, ignore_errors=True)


def upload(url: str, data: bytes) -> str:
    resp = requests.post(url + '/', data=data, timeout=60)
    assert resp.status_code == 200, resp.text
    return resp.text.strip()


def test_whole_api_through_nginx(stack: Stack) -> None:
    url = stack.public.url
    data = os.urandom(150_000)
    digest = upload(url, data)
    assert digest == hashlib.sha256(data).hexdigest()
    assert requests.get(f'{url}/?file_hash={digest}', timeout=30).content == data
    assert requests.get(f'{url}/files/{digest}', timeout=30).content == data
    head = requests.head(f'{url}/files/{digest}', timeout=30)
    assert head.status_code == 200 and head.headers['Content-Length'] == str(len(data))
    other = os.urandom(1000)
    put = requests.put(
        f'{url}/files/{hashlib.sha256(other).hexdigest()}', data=other, timeout=30
    )
    assert put.status_code == 200, put.text
    assert requests.delete(f'{url}/files/{digest}', timeout=30).status_code == 200
    assert requests.get(f'{url}/files/{digest}', timeout=30).status_code == 404
    assert requests.delete(f'{url}/?file_hash={digest}', timeout=30).status_code == 404


def test_bad_hashes_get_the_apps_400(stack: Stack) -> None:
    for path in ('/files/xyz', '/?file_hash=abc', '/files/' + 'g' * 64, '/?x=1'):
        resp = requests.get(stack.public.url + path, timeout=30)
        assert resp.status_code == 400, path
        assert resp.headers['Content-Type'] == 'application/problem+json'
        assert resp.json()['title'] == 'Invalid file_hash'
        assert 'upstream=127.0.0.1:' in stack.public.log_line(f'"GET {path} ')


def test_streamed_256_mib_upload(stack: Stack) -> None:
    hasher = hashlib.sha256()

    def body() -> Iterator[bytes]:
        block = os.urandom(MiB)
        for i in range(256):
            chunk = block[i:] + block[:i]  # 256 distinct MiB, one MiB in memory
            hasher.update(chunk)
            yield chunk

    resp = requests.post(stack.public.url + '/', data=body(), timeout=300)
    assert resp.status_code == 200, resp.text
    digest = resp.text.strip()
    assert digest == hasher.hexdigest()
    assert (stack.daemon.store / digest[:2] / digest).stat().st_size == 256 * MiB


def test_upload_over_the_limit_is_refused_by_nginx(stack: Stack) -> None:
    conn = http.client.HTTPConnection('127.0.0.1', stack.public.nginx.port, timeout=30)
    try:
        conn.putrequest('POST', '/')
        conn.putheader('Content-Length', str(MAX_SIZE + 1))
        conn.endheaders()
        resp = conn.getresponse()
        assert resp.status == 413
        assert resp.getheader('Content-Type') == 'application/problem+json'
        assert json.loads(resp.read())['status'] == 413
    finally:
        conn.close()


def test_download_by_x_accel_redirect_with_range(stack: Stack) -> None:
    data = os.urandom(3 * MiB)
    digest = upload(stack.accel.url, data)
    resp = requests.get(f'{stack.accel.url}/files/{digest}', timeout=30)
    assert resp.status_code == 200 and resp.content == data
    assert 'X-Accel-Redirect' not in resp.headers
    assert resp.headers['ETag'] == f'"{digest}"'  # the app's validator, via nginx
    line = stack.accel.log_line(f'"GET /files/{digest} ')
    assert f'accel=/_store/{digest[:2]}/{digest}' in line
    assert 'upstream=127.0.0.1:' in line
    cached = requests.get(
        f'{stack.accel.url}/files/{digest}',
        headers={'If-None-Match': f'"{digest}"'},
        timeout=30,
    )
    assert cached.status_code == 304 and cached.content == b''

    ranged = requests.get(
        f'{stack.accel.url}/?file_hash={digest}',
        headers={'Range': 'bytes=1000-1999'},
        timeout=30,
    )
    assert ranged.status_code == 206 and ranged.content == data[1000:2000]
    assert ranged.headers['Content-Range'] == f'bytes 1000-1999/{len(data)}'
    assert 'accel=/_store/' in stack.accel.log_line(f'"GET /?file_hash={digest} ')
    # An upper-case hash on the public site is the app's to normalise: accel too.
    upper = requests.get(f'{stack.public.url}/files/{digest.upper()}', timeout=30)
    assert upper.status_code == 200 and upper.content == data
    assert 'accel=/_store/' in stack.public.log_line(digest.upper())


def test_plain_public_reads_never_reach_the_app(stack: Stack) -> None:
    data = os.urandom(200_000)
    digest = upload(stack.public.url, data)
    site = stack.public
    got = requests.get(f'{site.url}/files/{digest}', timeout=30)
    assert got.status_code == 200 and got.content == data
    assert got.headers['Cache-Control'] == 'public, max-age=31536000, immutable'
    assert got.headers['ETag'] == f'"{digest}"'  # the same validator as the app's
    ranged = requests.get(
        f'{site.url}/?file_hash={digest}', headers={'Range': 'bytes=-100'}, timeout=30
    )
    assert ranged.status_code == 206 and ranged.content == data[-100:]
    head = requests.head(f'{site.url}/?file_hash={digest}', timeout=30)
    assert head.headers['Content-Length'] == str(len(data))
    assert 'upstream=- accel=-' in site.log_line(f'GET /files/{digest} ')
    assert 'upstream=- accel=-' in site.log_line(f'HEAD /?file_hash={digest} ')
    # A Range (or a precondition) is the app's to decide; nginx then sends
    # the bytes by X-Accel-Redirect (see test_parity.py).
    ranged_line = site.log_line(f'GET /?file_hash={digest} ')
    assert f'accel=/_store/{digest[:2]}/{digest}' in ranged_line
    # The app's own log has the upload but none of those reads.
    wait_until(  # the app flushes access lines within a second
        lambda: '"POST / HTTP/1.1" 200' in stack.daemon.logfile.read_text(),
        10,
        'the upload is not in the app log',
    )
    app_log = stack.daemon.logfile.read_text()
    assert f'/files/{digest}' not in app_log
    assert f'HEAD /?file_hash={digest}' not in app_log


def test_missing_object_404_matches_the_app(stack: Stack) -> None:
    missing = hashlib.sha256(b'never stored').hexdigest()
    from_app = requests.get(f'{stack.daemon.url}/files/{missing}', timeout=30)
    for path in (f'/files/{missing}', f'/?file_hash={missing}'):
        resp = requests.get(stack.public.url + path, timeout=30)
        assert resp.status_code == 404
        assert resp.headers['Content-Type'] == from_app.headers['Content-Type']
        assert resp.json() == from_app.json()
        assert 'upstream=- accel=-' in stack.public.log_line(f'"GET {path} ')


def test_shipped_site_is_the_generated_one() -> None:
    """contrib/nginx/wsgi-store.conf is what the command in docs/deploy.md prints."""
    shipped = ROOT / 'contrib' / 'nginx' / 'wsgi-store.conf'
    result = filestorectl(*documented_command('contrib/nginx/wsgi-store.conf'))
    assert result.returncode == 0, result.stderr
    assert shipped.read_text() == result.stdout


@pytest.mark.parametrize(
    ('settings', 'direct'),
    [
        ({}, True),
        ({'tokens_file': '/etc/wsgi-store/tokens'}, False),
        ({'tokens_file': '/etc/wsgi-store/tokens', 'public_read': True}, True),
        ({'verify_reads': True}, False),
        ({'backend': 's3'}, False),
    ],
)
def test_direct_reads_only_when_reads_are_public(
    settings: dict[str, object], direct: bool
) -> None:
    from wsgi_store.config import Config
    from wsgi_store.ops.nginx import site_config

    config = Config(store_dir=Path('/srv/store'), accel_redirect='/_store')
    text = site_config(config.replace(**settings))
    assert ('location /_wsgi_store_public/' in text) is direct
    assert ('location /_store/ {' in text) is (settings.get('backend') != 's3')


def test_tokens_through_nginx_and_internal_location_stays_internal() -> None:
    """With tokens, nginx passes Authorization through, serves reads only after
    the app checked the token (X-Accel-Redirect), and its internal location
    cannot be requested directly."""
    require_binary('nginx', '/usr/sbin/nginx')
    work = Path(tempfile.mkdtemp(prefix='wsgi-store-nginx-auth-'))
    work.chmod(0o755)
    tokens = work / 'tokens'
    tokens.write_text(
        'reader-token-0123456789 read\nwriter-token-0123456789 read,write,delete\n'
    )
    tokens.chmod(0o600)
    daemon: Daemon | None = None
    site: Site | None = None
    try:
        daemon = start_daemon(
            work / 'svc', '--accel-redirect', '/_store', '--tokens', str(tokens)
        )
        site = start_site(daemon, work, '--tokens', str(tokens))
        share_store_with(site.nginx, daemon.store)
        writer = {'Authorization': 'Bearer writer-token-0123456789'}
        reader = {'Authorization': 'Bearer reader-token-0123456789'}
        data = os.urandom(100_000)
        denied = requests.post(site.url + '/', data=data, timeout=30)
        assert denied.status_code == 401
        assert denied.headers['WWW-Authenticate'].startswith('Bearer')
        post = requests.post(site.url + '/', data=data, headers=reader, timeout=30)
        assert post.status_code == 403
        digest = requests.post(
            site.url + '/', data=data, headers=writer, timeout=30
        ).text.strip()
        assert digest == hashlib.sha256(data).hexdigest()
        url = f'{site.url}/files/{digest}'
        assert requests.get(url, timeout=30).status_code == 401  # no direct read
        got = requests.get(url, headers=reader, timeout=30)
        assert got.status_code == 200 and got.content == data
        assert f'accel=/_store/{digest[:2]}/{digest}' in site.log_line(digest)
        internal = requests.get(
            f'{site.url}/_store/{digest[:2]}/{digest}', headers=reader, timeout=30
        )
        assert internal.status_code != 200 and internal.content != data
    finally:
        if site is not None:
            site.nginx.stop()
        if daemon is not None:
            daemon.cleanup()
        shutil.rmtree(work, ignore_errors=True)


@pytest.mark.parametrize(('backend', 'offloaded'), [('fs', True), ('s3', False)])
def test_body_offload_site_keeps_uploads_location_streaming(
    backend: str, offloaded: bool
) -> None:
    """--body-offload: bodies go to STORE/tmp/nginx-body, the client's
    X-Body-File is replaced everywhere, and /uploads (tus) still streams."""
    from wsgi_store.config import Config
    from wsgi_store.ops.nginx import site_config

    config = Config(store_dir=Path('/srv/store'), backend=backend)
    text = site_config(config, body_offload=True)
    server, _, uploads = text.partition('location ^~ /uploads {')
    uploads = uploads.partition('}')[0]
    assert ('client_body_temp_path "/srv/store/tmp/nginx-body";' in server) is (
        offloaded
    )
    assert ('proxy_set_header X-Body-File $request_body_file;' in server) is offloaded
    assert ('proxy_request_buffering off;' in server) is not offloaded
    assert 'proxy_request_buffering off;' in uploads
    if offloaded:
        assert 'client_body_in_file_only off;' in uploads
        assert "proxy_set_header X-Body-File '';" in uploads
        assert 'proxy_pass_request_body on;' in uploads
    assert site_config(config) == site_config(config, body_offload=False)
    assert 'nginx-body' not in site_config(config)

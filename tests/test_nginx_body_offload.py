"""``nginx-config --body-offload``: nginx receives the body, the app adopts the file.

Real nginx (the generated site) in front of real gunicorn started with
``WSGI_STORE_NGINX_BODY_DIR``. Every upload, refusal and forged header is
checked against the store afterwards: the object (or none), nothing left in
``tmp/`` and nothing left in nginx's body directory.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
import webtest

from tests.servers import (
    Server,
    children_of,
    filestorectl,
    free_port,
    require_binary,
    start_gunicorn,
    start_nginx,
    wait_until,
)
from tests.test_nginx import share_store_with

pytestmark = pytest.mark.e2e
MiB = 1024 * 1024
MAX_SIZE = 16 * MiB
WRITER = 'writer-token-0000000000000002'
AUTH = {'Authorization': f'Bearer {WRITER}'}


@dataclass
class Offload:
    app: Server
    nginx: Server
    store: Path
    work: Path
    key_file: Path

    @property
    def bodies(self) -> Path:
        return self.store / 'tmp' / 'nginx-body'

    def leftovers(self) -> list[str]:
        """Temp files of ours or nginx's still present (none once answered)."""
        ours = [p.name for p in (self.store / 'tmp').iterdir() if p.is_file()]
        return ours + (os.listdir(self.bodies) if self.bodies.is_dir() else [])

    def settle(self) -> None:
        """nginx removes its body file as the request ends (maybe just after)."""
        wait_until(lambda: not self.leftovers(), 10, f'leftovers {self.leftovers()}')


@pytest.fixture(scope='module')
def site() -> Iterator[Offload]:
    require_binary('nginx', '/usr/sbin/nginx')
    # Not under pytest's tmp dir (mode 0700): nginx's workers must reach the store.
    work = Path(tempfile.mkdtemp(prefix='wsgi-store-offload-'))
    work.chmod(0o755)
    store = work / 'store'
    tokens = work / 'tokens'
    tokens.write_text(f'{WRITER} write\n')
    tokens.chmod(0o600)
    key_file = work / 'body.key'  # nginx-config creates it (the app reads it later)
    servers: list[Server] = []
    try:
        app = start_gunicorn(
            work,
            store,
            nginx_body_dir=store / 'tmp' / 'nginx-body',
            nginx_body_key_file=key_file,
            tokens_file=tokens,
            public_read='true',
            max_upload_bytes=MAX_SIZE,
        )
        servers.append(app)
        port = free_port()
        generated = filestorectl(
            'nginx-config',
            '--store', str(store),
            '--port', str(app.port),
            '--max-size', str(MAX_SIZE),
            '--listen-port', f'127.0.0.1:{port}',
            '--access-log', str(work / 'access.log'),
            '--body-offload',
            '--body-key-file', str(key_file),
        )  # fmt: skip
        assert generated.returncode == 0, generated.stderr
        assert f'created the body offload key {key_file}' in generated.stderr
        nginx = start_nginx(work, generated.stdout, port)
        servers.append(nginx)
        share_store_with(nginx, store)
        yield Offload(app, nginx, store, work, key_file)
    finally:
        for server in reversed(servers):
            server.stop()
        shutil.rmtree(work, ignore_errors=True)


def site_key(site: Offload) -> dict[str, str]:
    """The header the nginx site adds (the key nginx-config wrote)."""
    return {'X-Body-Offload-Key': site.key_file.read_text().strip()}


def nginx_uid(site: Offload) -> int:
    worker = children_of(site.nginx.proc.pid)[0]
    status = Path(f'/proc/{worker}/status').read_text().splitlines()
    return int(next(x for x in status if x.startswith('Uid:')).split()[1])


def stored(site: Offload, hex_hash: str) -> Path:
    return site.store / hex_hash[:2] / hex_hash


@pytest.mark.parametrize('size', [0, 1024, 10 * MiB])
def test_upload_is_adopted_from_nginx_body_file(site: Offload, size: int) -> None:
    body = os.urandom(size)
    want = hashlib.sha256(body).hexdigest()
    resp = requests.post(site.nginx.url + '/files', data=body, headers=AUTH, timeout=60)
    assert resp.status_code == 200, resp.text
    assert resp.text.strip() == want
    path = stored(site, want)
    assert path.read_bytes() == body
    # The object is nginx's own file (linked, not copied) when its user differs.
    if nginx_uid(site) != os.geteuid():
        assert path.stat().st_uid == nginx_uid(site)
    assert path.stat().st_mode & 0o777 == 0o640
    site.settle()


def test_chunked_upload_is_adopted(site: Offload) -> None:
    body = os.urandom(300_000)
    chunks = (body[i : i + 65536] for i in range(0, len(body), 65536))
    resp = requests.post(site.nginx.url + '/', data=chunks, headers=AUTH, timeout=60)
    assert resp.status_code == 200, resp.text
    assert stored(site, resp.text.strip()).read_bytes() == body
    site.settle()


def test_digest_mismatch_is_400_and_nothing_stays(site: Offload) -> None:
    body = os.urandom(4096)
    wrong = hashlib.sha256(b'other').hexdigest()
    url = f'{site.nginx.url}/?file_hash={wrong}'
    resp = requests.post(url, data=body, headers=AUTH, timeout=60)
    assert resp.status_code == 400, resp.text
    assert resp.headers['Content-Type'] == 'application/problem+json'
    assert not stored(site, hashlib.sha256(body).hexdigest()).exists()
    assert not stored(site, wrong).exists()
    site.settle()


def test_content_digest_is_checked_over_the_file(site: Offload) -> None:
    body = b'checked by Content-Digest'
    good = base64.b64encode(hashlib.sha512(body).digest()).decode()
    bad = base64.b64encode(hashlib.sha512(b'x').digest()).decode()
    url = site.nginx.url + '/files'
    for digest, status in ((bad, 400), (good, 200)):
        headers = {**AUTH, 'Content-Digest': f'sha-512=:{digest}:'}
        resp = requests.post(url, data=body, headers=headers, timeout=60)
        assert resp.status_code == status, resp.text
    site.settle()


def test_too_large_is_413_before_nginx_writes(site: Offload) -> None:
    with socket.create_connection(('127.0.0.1', site.nginx.port), timeout=10) as sock:
        sock.sendall(
            b'POST /files HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer '
            + WRITER.encode()
            + f'\r\nContent-Length: {MAX_SIZE + 1}\r\n\r\n'.encode()
            + b'x' * 1000
        )
        answer = sock.recv(65536).decode('latin-1')
    assert answer.startswith('HTTP/1.1 413'), answer
    assert 'application/problem+json' in answer
    site.settle()


def test_no_token_is_401_and_nothing_stays(site: Offload) -> None:
    body = os.urandom(2048)
    resp = requests.post(site.nginx.url + '/files', data=body, timeout=60)
    assert resp.status_code == 401, resp.text
    assert not stored(site, hashlib.sha256(body).hexdigest()).exists()
    site.settle()


def test_dedupe_answers_created_false(site: Offload) -> None:
    body = os.urandom(5000)
    headers = {**AUTH, 'Accept': 'application/json'}
    url = site.nginx.url + '/files'
    first = requests.post(url, data=body, headers=headers, timeout=60).json()
    again = requests.post(url, data=body, headers=headers, timeout=60).json()
    assert (first['created'], again['created']) == (True, False)
    assert again['hash'] == hashlib.sha256(body).hexdigest()
    site.settle()


def test_multipart_file_part_is_read_from_the_body_file(site: Offload) -> None:
    part = os.urandom(70_000)
    files = {'file': ('a.bin', part), 'note': (None, 'ignored')}
    resp = requests.post(
        site.nginx.url + '/files', files=files, headers=AUTH, timeout=60
    )
    assert resp.status_code == 200, resp.text
    assert resp.text.strip() == hashlib.sha256(part).hexdigest()
    assert stored(site, resp.text.strip()).read_bytes() == part
    site.settle()


def test_client_x_body_file_through_nginx_is_replaced(site: Offload) -> None:
    secret = site.work / 'secret'
    secret.write_bytes(b'never stored')
    secret.chmod(0o644)
    headers = {**AUTH, 'X-Body-File': str(secret), 'X-Body-Length': '12'}
    resp = requests.post(
        site.nginx.url + '/files', data=b'the real body', headers=headers, timeout=60
    )
    assert resp.status_code == 200, resp.text
    assert resp.text.strip() == hashlib.sha256(b'the real body').hexdigest()
    assert not stored(site, hashlib.sha256(b'never stored').hexdigest()).exists()
    site.settle()


def test_client_x_body_file_direct_to_gunicorn_is_400(site: Offload) -> None:
    """Straight to gunicorn (offload on), even with the site's key: a path
    outside nginx's directory, a traversal out of it, or a symlink in it is
    refused and never read."""
    secret = site.work / 'secret2'
    secret.write_bytes(b'never stored either')
    site.bodies.mkdir(exist_ok=True)
    link = site.bodies / '0000999999'
    link.symlink_to(secret)
    try:
        for forged in (
            str(secret),
            f'{site.bodies}/../../secret2',
            f'{site.bodies}/../nginx-body/0000999999',
            str(link),
            'relative/0000000001',
        ):
            headers = {**AUTH, **site_key(site), 'X-Body-File': forged}
            resp = requests.post(site.app.url + '/files', headers=headers, timeout=30)
            assert resp.status_code == 400, (forged, resp.text)
            assert resp.headers['Content-Type'] == 'application/problem+json'
    finally:
        link.unlink()
    assert not stored(site, hashlib.sha256(b'never stored either').hexdigest()).exists()
    assert not site.leftovers()


def test_tus_upload_still_streams_through_offload_site(site: Offload) -> None:
    body = os.urandom(1000)
    tus = {**AUTH, 'Tus-Resumable': '1.0.0'}
    url = site.nginx.url
    made = requests.post(
        url + '/uploads', headers={**tus, 'Upload-Length': '1000'}, timeout=30
    )
    assert made.status_code == 201, made.text
    patch = requests.patch(
        url + made.headers['Location'],
        data=body,
        headers={
            **tus,
            'Upload-Offset': '0',
            'Content-Type': 'application/offset+octet-stream',
        },
        timeout=30,
    )
    assert patch.status_code == 204, patch.text
    assert patch.headers['Upload-Offset'] == '1000'
    wait_until(
        lambda: stored(site, hashlib.sha256(body).hexdigest()).exists(), 10, 'object'
    )


def test_header_ignored_without_offload_setting(tmp_path: Path) -> None:
    from wsgi_store.app import create_app
    from wsgi_store.config import Config

    secret = tmp_path / 'secret'
    secret.write_bytes(b'not the body')
    app = webtest.TestApp(create_app(Config(store_dir=tmp_path / 'store')))
    resp = app.post('/files', b'the body', headers={'X-Body-File': str(secret)})
    assert resp.text.strip() == hashlib.sha256(b'the body').hexdigest()


def test_sweep_removes_only_old_nginx_bodies(tmp_path: Path) -> None:
    from wsgi_store.backends.fs import NGINX_BODY_MIN_AGE, FilesystemBackend

    backend = FilesystemBackend(tmp_path / 'store')
    bodies = backend.tmp / 'nginx-body'
    bodies.mkdir()
    old, young = bodies / '0000000001', bodies / '0000000002'
    old.write_bytes(b'crashed')
    young.write_bytes(b'in flight')
    past = time.time() - NGINX_BODY_MIN_AGE - 60
    os.utime(old, (past, past))
    assert backend.sweep_temp(0) == 1  # a start-up sweep: by age all the same
    assert sorted(os.listdir(bodies)) == ['0000000002']


KEY = 'k' * 20 + 'the-site-key_0123456789'
KEYED = {'X-Body-Offload-Key': KEY}  # what the nginx site adds to each request


def offload_app(tmp_path: Path) -> tuple[webtest.TestApp, Path]:
    from wsgi_store.app import create_app
    from wsgi_store.config import Config

    bodies = tmp_path / 'store' / 'tmp' / 'nginx-body'
    key_file = tmp_path / 'body.key'
    key_file.write_text(KEY + '\n')
    config = Config(
        store_dir=tmp_path / 'store',
        nginx_body_dir=bodies,
        nginx_body_key_file=key_file,
    )
    app = webtest.TestApp(create_app(config))
    bodies.mkdir()
    return app, bodies


def test_raw_body_file_is_linked_not_copied(tmp_path: Path) -> None:
    app, bodies = offload_app(tmp_path)
    body = bodies / '0000000007'
    body.write_bytes(b'linked')
    headers = {**KEYED, 'X-Body-File': str(body), 'X-Body-Length': '6'}
    resp = app.post('/files', b'', headers=headers)
    want = hashlib.sha256(b'linked').hexdigest()
    assert resp.text.strip() == want
    obj = tmp_path / 'store' / want[:2] / want
    assert obj.stat().st_ino == body.stat().st_ino
    assert os.listdir(tmp_path / 'store' / 'tmp') == ['nginx-body']


def test_body_file_is_copied_when_it_cannot_be_linked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from wsgi_store.backends.fs import FilesystemBackend

    def cross_device(self: object, fd: int, **kwargs: object) -> None:
        raise OSError(18, 'Invalid cross-device link')

    monkeypatch.setattr(FilesystemBackend, 'adopt', cross_device)
    app, bodies = offload_app(tmp_path)
    body = bodies / '0000000008'
    body.write_bytes(b'copied instead')
    resp = app.post('/files', b'', headers={**KEYED, 'X-Body-File': str(body)})
    want = hashlib.sha256(b'copied instead').hexdigest()
    assert resp.text.strip() == want
    obj = tmp_path / 'store' / want[:2] / want
    assert obj.read_bytes() == b'copied instead'
    assert obj.stat().st_ino != body.stat().st_ino


def test_body_length_differing_from_the_file_is_400(tmp_path: Path) -> None:
    app, bodies = offload_app(tmp_path)
    body = bodies / '0000000009'
    body.write_bytes(b'short')
    headers = {**KEYED, 'X-Body-File': str(body), 'X-Body-Length': '6'}
    resp = app.post('/files', b'', headers=headers, expect_errors=True)
    assert resp.status_int == 400
    short = hashlib.sha256(b'short').hexdigest()
    assert not (tmp_path / 'store' / short[:2] / short).exists()
    assert os.listdir(tmp_path / 'store' / 'tmp') == ['nginx-body']


def test_body_file_from_an_untrusted_peer_is_400(tmp_path: Path) -> None:
    """Only a FORWARDED_ALLOW_IPS peer (nginx) may name a body file."""
    app, bodies = offload_app(tmp_path)
    body = bodies / '0000000010'
    body.write_bytes(b'from afar')
    resp = app.post(
        '/files',
        b'',
        headers={**KEYED, 'X-Body-File': str(body)},
        extra_environ={'REMOTE_ADDR': '192.0.2.7'},
        expect_errors=True,
    )
    assert resp.status_int == 400
    assert resp.content_type == 'application/problem+json'
    far = hashlib.sha256(b'from afar').hexdigest()
    assert not (tmp_path / 'store' / far[:2] / far).exists()


def test_adopted_body_is_flushed_renamed_and_its_shard_flushed_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The adopted file takes the streamed path's durable sequence: data
    flushed, rename, shard directory flushed; nginx's name stays its own."""
    from wsgi_store.backends import dirsync
    from wsgi_store.backends.fs import FilesystemBackend

    events: list[str] = []
    real_fdatasync, real_replace = os.fdatasync, os.replace
    real_fsync_dir = dirsync.fsync_dir

    def fdatasync(fd: int) -> None:
        events.append('fdatasync')
        real_fdatasync(fd)

    def replace(src: str, dst: str) -> None:
        events.append('rename')
        real_replace(src, dst)

    def fsync_dir(path: str) -> None:
        events.append(f'fsync_dir {Path(path).name}')
        real_fsync_dir(path)

    backend = FilesystemBackend(tmp_path / 'store')
    body = backend.tmp / 'nginx-body' / '0000000011'
    body.parent.mkdir()
    body.write_bytes(b'durable from nginx')
    monkeypatch.setattr(os, 'fdatasync', fdatasync)
    monkeypatch.setattr(os, 'replace', replace)
    monkeypatch.setattr(dirsync, 'fsync_dir', fsync_dir)
    fd = os.open(body, os.O_RDONLY)
    try:
        result = backend.commit(backend.adopt(fd))
    finally:
        os.close(fd)
    name = hashlib.sha256(b'durable from nginx').hexdigest()
    assert (result.hash, result.created) == (name, True)
    assert events == ['fdatasync', 'rename', f'fsync_dir {name[:2]}']
    assert body.exists()  # nginx removes its own name (client_body_in_file_only clean)
    assert backend.temp_names() == []  # nginx's directory is not counted


def test_adopted_body_counts_in_upload_bytes_metric(tmp_path: Path) -> None:
    from tests.test_metrics import scrape, value

    app, bodies = offload_app(tmp_path)
    body = bodies / '0000000012'
    body.write_bytes(b'x' * 1234)
    app.post('/files', b'', headers={**KEYED, 'X-Body-File': str(body)})
    assert value(scrape(app), 'wsgi_store_upload_bytes_total') == 1234


def test_body_file_without_the_site_key_is_400_and_never_read(tmp_path: Path) -> None:
    """A loopback peer naming a real body file is refused without the exact key."""
    app, bodies = offload_app(tmp_path)
    body = bodies / '0000000013'
    body.write_bytes(b'another client')
    for sent in (
        {},
        {'X-Body-Offload-Key': KEY[:-1] + 'X'},
        {'X-Body-Offload-Key': ''},
    ):
        headers = {**sent, 'X-Body-File': str(body)}
        resp = app.post('/files', b'', headers=headers, expect_errors=True)
        assert resp.status_int == 400, (sent, resp.text)
        assert resp.content_type == 'application/problem+json'
        assert KEY not in resp.text
    other = hashlib.sha256(b'another client').hexdigest()
    assert not (tmp_path / 'store' / other[:2] / other).exists()
    resp = app.post('/files', b'', headers={**KEYED, 'X-Body-File': str(body)})
    assert resp.text.strip() == other  # the same request with the key: adopted


def test_body_file_is_refused_when_no_key_file_is_configured(tmp_path: Path) -> None:
    from wsgi_store.app import create_app
    from wsgi_store.config import Config

    bodies = tmp_path / 'store' / 'tmp' / 'nginx-body'
    config = Config(store_dir=tmp_path / 'store', nginx_body_dir=bodies)
    app = webtest.TestApp(create_app(config))
    bodies.mkdir()
    body = bodies / '0000000014'
    body.write_bytes(b'no key anywhere')
    for sent in ({}, {'X-Body-Offload-Key': ''}, KEYED):
        headers = {**sent, 'X-Body-File': str(body)}
        resp = app.post('/files', b'', headers=headers, expect_errors=True)
        assert resp.status_int == 400, (sent, resp.text)
    assert os.listdir(tmp_path / 'store' / 'tmp') == ['nginx-body']


def test_nginx_config_creates_a_0600_key_and_puts_it_only_in_the_site(
    tmp_path: Path,
) -> None:
    key_file = tmp_path / 'body.key'
    args = ('nginx-config', '--store', str(tmp_path / 'store'), '--body-offload')
    made = filestorectl(*args, '--body-key-file', str(key_file))
    assert made.returncode == 0, made.stderr
    key = key_file.read_text().strip()
    assert len(key) >= 32
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert f'created the body offload key {key_file}' in made.stderr
    assert key not in made.stderr
    assert f'proxy_set_header X-Body-Offload-Key "{key}";' in made.stdout
    uploads = made.stdout.partition('location ^~ /uploads {')[2].partition('}')[0]
    assert "proxy_set_header X-Body-Offload-Key '';" in uploads
    again = filestorectl(*args, '--body-key-file', str(key_file))  # kept, not new
    assert again.returncode == 0, again.stderr
    assert 'created' not in again.stderr
    assert f'"{key}";' in again.stdout
    key_file.write_text('short $bad;\n')
    bad = filestorectl(*args, '--body-key-file', str(key_file))
    assert bad.returncode == 2
    assert 'not a key' in bad.stderr
    assert '$bad' not in bad.stderr + bad.stdout

"""Headless Chromium (Debian's, driven by Playwright from PyPI) against real gunicorn.

- the upload page on ``GET /``: two files, a reload mid-upload (uploads slowed by
  Chromium's own network throttling), the same files picked again go on where
  they stopped, the hashes shown match hashlib, one file downloaded by its link;
  a token asked for after a 401; keyboard and narrow-screen checks.
- Uppy (npm, its prebuilt bundle served by the test's own static server on
  another port) with its tus plugin uploads to ``filestorectl start
  --cors-origin ORIGIN``; the same page from an origin not allowed fails.

Chromium runs as root here, hence ``--no-sandbox``; it gets a fresh profile in
tmp_path and no network but loopback.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from tests.jsclients import need, node_modules
from tests.servers import (
    Daemon,
    free_port,
    require_binary,
    start_daemon,
    start_gunicorn,
)

pytestmark = pytest.mark.e2e
KiB = 1024
MiB = 1 << 20
CHROMIUM_ARGS = [
    '--no-sandbox',
    '--headless',
    '--disable-gpu',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
    '--no-first-run',
]
TOKEN = 'page-writer-token-0000000000001'


def playwright_api():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        need(False, 'playwright is not installed (pip install -e .[test])')
    return sync_playwright


@pytest.fixture
def browser_context(tmp_path: Path) -> Iterator:
    """A Chromium context with a fresh user-data-dir in tmp_path."""
    executable = require_binary('chromium', '/usr/bin/chromium')
    sync_playwright = playwright_api()
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path / 'profile'),
            executable_path=executable,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={'width': 900, 'height': 900},
        )
        try:
            yield context
        finally:
            context.close()


def random_file(path: Path, size: int) -> str:
    data = os.urandom(size)
    path.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def throttle(page, upload_bytes_per_second: float | None, cdp=None):
    """Chromium's DevTools network throttling (None: off); returns the session."""
    if cdp is None:
        cdp = page.context.new_cdp_session(page)
        cdp.send('Network.enable')
    cdp.send(
        'Network.emulateNetworkConditions',
        {
            'offline': False,
            'latency': 0,
            'downloadThroughput': -1,
            'uploadThroughput': upload_bytes_per_second or -1,
        },
    )
    return cdp


def shown(page) -> dict[str, str]:
    """File name -> hash shown by the page."""
    return page.evaluate(
        """() => Object.fromEntries([...document.querySelectorAll('#queue li')]
            .filter((li) => li.dataset.hash)
            .map((li) => [li.querySelector('.name').textContent,
                          li.querySelector('code.hash').textContent]))"""
    )


def test_page_uploads_two_files_resumes_after_reload_and_hashes_match(
    browser_context, tmp_path: Path
) -> None:
    server = start_gunicorn(tmp_path, tmp_path / 'store', workers=1, threads=4)
    try:
        files = {'first.bin': 3 * MiB, 'second file.bin': 2 * MiB + 1}
        digests = {n: random_file(tmp_path / n, s) for n, s in files.items()}
        paths = [str(tmp_path / n) for n in files]
        page = browser_context.new_page()
        errors: list[str] = []
        page.on('pageerror', lambda exc: errors.append(str(exc)))
        page.goto(server.url + '/?chunk=131072')
        cdp = throttle(page, 512 * KiB)
        page.set_input_files('#files', paths)
        # both under way (two chunks acknowledged and stored), neither finished
        page.wait_for_function(
            """() => { const p = [...document.querySelectorAll('#queue progress')];
                return p.length === 2
                    && p.every((x) => Number(x.dataset.bytes || 0) >= 262144); }""",
            timeout=30_000,
        )
        assert shown(page) == {}, 'finished before the reload: throttling had no effect'
        page.reload()
        pending = page.locator('#pending li')
        pending.first.wait_for(timeout=10_000)
        assert pending.count() == 2
        throttle(page, None, cdp)
        page.set_input_files('#files', paths)
        page.wait_for_function(
            "() => document.querySelectorAll('#queue li[data-hash]').length === 2",
            timeout=60_000,
        )
        assert shown(page) == digests
        resumed = page.eval_on_selector_all(
            '#queue li', 'els => els.map((li) => Number(li.dataset.resumedAt || 0))'
        )
        assert all(at > 0 for at in resumed), resumed
        assert page.locator('#pending-box').is_hidden()
        # download the second file by its link
        link = page.locator('#queue li', has_text='second file.bin').locator(
            'a.download'
        )
        href = link.get_attribute('href')
        assert href.endswith('?filename=second%20file.bin')
        with page.expect_download(timeout=30_000) as info:
            link.click()
        download = info.value
        assert download.suggested_filename == 'second file.bin'
        data = Path(download.path()).read_bytes()
        assert hashlib.sha256(data).hexdigest() == digests['second file.bin']
        assert errors == []
        page.set_viewport_size({'width': 360, 'height': 800})  # a phone
        width = page.evaluate('() => document.documentElement.scrollWidth')
        assert width <= 360, f'the page scrolls sideways on a narrow screen: {width}'
    finally:
        server.stop()


def test_page_asks_for_a_token_after_a_401_and_uploads_with_it(
    browser_context, tmp_path: Path
) -> None:
    tokens = tmp_path / 'tokens'
    tokens.write_text(f'{TOKEN} read,write\n')
    tokens.chmod(0o600)
    server = start_gunicorn(
        tmp_path, tmp_path / 'store', workers=1, threads=4, tokens_file=tokens
    )
    try:
        path = tmp_path / 'secret.txt'
        digest = random_file(path, 10_000)
        page = browser_context.new_page()
        page.goto(server.url + '/')
        assert page.locator('#token-box').is_hidden()
        page.set_input_files('#files', [str(path)])
        page.locator('#token-box').wait_for(state='visible', timeout=10_000)
        assert page.evaluate('() => document.activeElement.id') == 'token'
        page.keyboard.type(TOKEN)
        page.keyboard.press('Enter')  # the keyboard alone
        page.wait_for_selector('#queue li[data-hash]', timeout=30_000)
        assert shown(page) == {'secret.txt': digest}
        token = page.evaluate("() => sessionStorage.getItem('wsgi-store:token')")
        assert token == TOKEN
    finally:
        server.stop()


def test_page_is_usable_with_the_keyboard(browser_context, tmp_path: Path) -> None:
    server = start_gunicorn(tmp_path, tmp_path / 'store', workers=1, threads=2)
    try:
        page = browser_context.new_page()
        page.goto(server.url + '/')
        focused = []
        for _ in range(4):
            page.keyboard.press('Tab')
            focused.append(page.evaluate('() => document.activeElement.id'))
        assert 'files' in focused  # the file picker is reachable by Tab
        label = page.evaluate(
            "() => document.getElementById('files').labels[0].innerText"
        )
        assert 'Choose files' in label
    finally:
        server.stop()


def progress(page, index: int = 0) -> int:
    """Bytes the page shows as sent for the INDEXth upload."""
    return page.evaluate(
        "(i) => Number(document.querySelectorAll('#queue progress')[i].dataset.bytes"
        ' || 0)',
        index,
    )


def test_page_pauses_and_resumes_with_the_keyboard(
    browser_context, tmp_path: Path
) -> None:
    server = start_gunicorn(tmp_path, tmp_path / 'store', workers=1, threads=4)
    try:
        path = tmp_path / 'paused.bin'
        digest = random_file(path, 2 * MiB)
        page = browser_context.new_page()
        page.goto(server.url + '/?chunk=131072')
        cdp = throttle(page, 512 * KiB)
        page.set_input_files('#files', [str(path)])
        page.wait_for_function(
            "() => Number(document.querySelector('#queue progress').dataset.bytes"
            ' || 0) >= 262144',
            timeout=30_000,
        )
        button = page.locator('#queue li button', has_text='Pause')
        button.focus()
        page.keyboard.press('Enter')
        status = page.locator('#queue .status')
        status.filter(has_text='Paused at').wait_for(timeout=10_000)
        at = progress(page)
        page.wait_for_timeout(1500)
        assert progress(page) == at and shown(page) == {}  # nothing moves
        throttle(page, None, cdp)
        resume = page.locator('#queue li button', has_text='Resume')
        resume.focus()
        page.keyboard.press(' ')
        page.wait_for_selector('#queue li[data-hash]', timeout=30_000)
        assert shown(page) == {'paused.bin': digest}
    finally:
        server.stop()


def test_page_goes_on_after_a_lost_connection(browser_context, tmp_path: Path) -> None:
    server = start_gunicorn(tmp_path, tmp_path / 'store', workers=1, threads=4)
    try:
        path = tmp_path / 'offline.bin'
        digest = random_file(path, 2 * MiB)
        page = browser_context.new_page()
        page.goto(server.url + '/?chunk=131072')
        cdp = throttle(page, 512 * KiB)
        page.set_input_files('#files', [str(path)])
        page.wait_for_function(
            "() => Number(document.querySelector('#queue progress').dataset.bytes"
            ' || 0) >= 262144',
            timeout=30_000,
        )
        cdp.send(
            'Network.emulateNetworkConditions',
            {
                'offline': True,
                'latency': 0,
                'downloadThroughput': -1,
                'uploadThroughput': -1,
            },
        )
        status = page.locator('#queue .status')
        status.filter(has_text='Connection lost').wait_for(timeout=15_000)
        throttle(page, None, cdp)  # back online: the page retries by itself
        page.wait_for_selector('#queue li[data-hash]', timeout=60_000)
        assert shown(page) == {'offline.bin': digest}
    finally:
        server.stop()


def test_page_stores_an_empty_file(browser_context, tmp_path: Path) -> None:
    server = start_gunicorn(tmp_path, tmp_path / 'store', workers=1, threads=2)
    try:
        path = tmp_path / 'empty.txt'
        path.write_bytes(b'')
        page = browser_context.new_page()
        page.goto(server.url + '/')
        page.set_input_files('#files', [str(path)])
        page.wait_for_selector('#queue li[data-hash]', timeout=30_000)
        assert shown(page) == {'empty.txt': hashlib.sha256(b'').hexdigest()}
    finally:
        server.stop()


# -- Uppy on another origin ---------------------------------------------------------
UPPY_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Uppy</title>
<script src="/uppy.min.js"></script></head>
<body><input type="file" id="f">
<script>
const { Uppy, Tus } = globalThis.Uppy;
const uppy = new Uppy({ autoProceed: false }).use(Tus, {
  endpoint: ENDPOINT, chunkSize: 262144, retryDelays: [],
});
document.getElementById('f').addEventListener('change', async (ev) => {
  const file = ev.target.files[0];
  uppy.addFile({ name: file.name, type: file.type, data: file });
  try {
    const result = await uppy.upload();
    const ok = result.successful[0];
    let hash = null;
    if (ok) {
      const head = await fetch(ok.uploadURL || ok.tus.uploadUrl,
        { method: 'HEAD', headers: { 'Tus-Resumable': '1.0.0' } });
      hash = head.headers.get('Upload-File-Hash');
    }
    window.outcome = { ok: Boolean(ok), failed: result.failed.length, hash };
  } catch (err) {
    window.outcome = { ok: false, failed: 1, hash: null, error: String(err) };
  }
});
</script></body></html>
"""


def serve_uppy_page(endpoint: str) -> tuple[ThreadingHTTPServer, str]:
    """The test's own static server: the page and Uppy's bundle from node_modules."""
    bundle = (node_modules('uppy') / 'uppy' / 'dist' / 'uppy.min.js').read_bytes()
    page = UPPY_PAGE.replace('ENDPOINT', repr(endpoint)).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body, kind = (
                (bundle, 'text/javascript')
                if self.path == '/uppy.min.js'
                else (page, 'text/html; charset=utf-8')
            )
            self.send_response(200)
            self.send_header('Content-Type', kind)
            self.send_header('Content-Length', str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(('127.0.0.1', free_port()), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd, f'http://127.0.0.1:{httpd.server_address[1]}'


def uppy_upload(context, page_url: str, path: Path) -> dict:
    page = context.new_page()
    page.goto(page_url)
    page.set_input_files('#f', [str(path)])
    page.wait_for_function('() => window.outcome !== undefined', timeout=60_000)
    return page.evaluate('() => window.outcome')


@pytest.fixture
def uppy_pages(tmp_path: Path) -> Iterator[tuple[Daemon, str, str]]:
    """``filestorectl start --cors-origin`` one origin; pages there and elsewhere."""
    node_modules('uppy')
    api_port = free_port()
    endpoint = f'http://127.0.0.1:{api_port}/uploads'
    allowed, allowed_url = serve_uppy_page(endpoint)
    other, other_url = serve_uppy_page(endpoint)
    server = None
    try:
        server = start_daemon(
            tmp_path, '--cors-origin', allowed_url, '--workers', '1', port=api_port
        )
        yield server, allowed_url, other_url
    finally:
        if server is not None:
            server.cleanup()
        for httpd in (allowed, other):
            httpd.shutdown()
            httpd.server_close()


def test_uppy_on_an_allowed_origin_uploads_through_cors(
    browser_context, uppy_pages, tmp_path: Path
) -> None:
    server, allowed_url, _ = uppy_pages
    path = tmp_path / 'from-uppy.bin'
    digest = random_file(path, MiB + 123)
    outcome = uppy_upload(browser_context, allowed_url + '/', path)
    assert outcome == {'ok': True, 'failed': 0, 'hash': digest}
    stored = requests.get(f'{server.url}/files/{digest}', timeout=30)
    assert hashlib.sha256(stored.content).hexdigest() == digest


def test_uppy_on_an_origin_not_allowed_fails(
    browser_context, uppy_pages, tmp_path: Path
) -> None:
    server, _, other_url = uppy_pages
    path = tmp_path / 'refused.bin'
    digest = random_file(path, 50_000)
    outcome = uppy_upload(browser_context, other_url + '/', path)
    assert outcome['ok'] is False and outcome['failed'] == 1
    assert requests.head(f'{server.url}/files/{digest}', timeout=30).status_code == 404
    assert not list((server.store / 'uploads').glob('*'))  # not even created

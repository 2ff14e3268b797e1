"""The nginx site's part for ``nginx-config --body-offload`` (see bodyfile.py).

nginx receives every upload body (but resumable ones) whole into
``STORE/tmp/nginx-body/`` and passes the app only its name; ``/uploads`` keeps
streaming, since tus acknowledges only offsets the app has flushed.

The site carries the secret of ``--body-key-file`` in ``X-Body-Offload-Key``:
without it the app adopts no file, so only this nginx site can name one. The
site's text therefore holds a secret: write it with mode 0640 (``umask 027``).
"""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

from wsgi_store.backends.fs import NGINX_BODY_DIR
from wsgi_store.config import Config, ConfigError
from wsgi_store.http.bodyfile import KEY_HEADER, read_key

# Under the store: the same filesystem (the app links the file into place).
BODY_DIR = f'tmp/{NGINX_BODY_DIR}'
_BUFFERING = (
    '    proxy_request_buffering off;       # uploads stream through to the app\n'
)
_OFFLOAD = """
    # --body-offload: nginx receives each body (whole) into the store's own
    # tmp/ and hands the app its name; the app hashes it and links it into place
    # (wsgi_store/http/bodyfile.py). The app needs WSGI_STORE_NGINX_BODY_DIR set to
    # this path, and nginx's workers must run as the store's user. A client's
    # X-Body-File is always replaced. gc removes bodies a crash left (> 1 h old).
    client_body_temp_path "{body_dir}";
    client_body_in_file_only clean;    # nginx removes its name after the answer
    client_body_buffer_size 1m;        # written in 1 MiB blocks, not 16 KiB
    proxy_request_buffering on;
    proxy_pass_request_body off;
    proxy_set_header Content-Length '';
    proxy_set_header X-Body-File $request_body_file;
    proxy_set_header X-Body-Length $content_length;
    proxy_set_header {key_header} "{key}";  # secret: keep this file 0640
"""
# /uploads keeps streaming (offsets are acknowledged as flushed); a location
# with its own proxy_set_header inherits none, hence the whole list again.
_UPLOADS_OFFLOAD = """\
        client_body_in_file_only off;
        proxy_pass_request_body on;
        proxy_set_header Connection '';
        proxy_set_header Host $host;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_set_header X-Forwarded-Proto $scheme;
        proxy_set_header X-Forwarded-Host $host;
        proxy_set_header X-Request-ID ${name}_request_id;
        proxy_set_header X-Body-File '';
        proxy_set_header {key_header} '';
"""


def offload_server(store: str, key: str) -> str:
    """The server-level directives (the body directory under ``store``)."""
    return _OFFLOAD.format(
        body_dir=f'{store}/{BODY_DIR}', key_header=KEY_HEADER, key=key
    )


def offload_uploads(name: str) -> str:
    """The ``/uploads`` location's overrides (it streams as before)."""
    return _UPLOADS_OFFLOAD.format(name=name, key_header=KEY_HEADER)


def offload_key(config: Config) -> str:
    """The key of ``config.nginx_body_key_file``, created (0600) if missing.

    Without a key file the site sends an empty key: the app then adopts no
    body file at all (it fails closed), and this says so on stderr.

    Raises:
        ConfigError: the key file holds no usable key or cannot be created.
    """
    path = config.nginx_body_key_file
    if path is None:
        print(
            'filestorectl: warning: --body-offload without --body-key-file FILE '
            '(or WSGI_STORE_NGINX_BODY_KEY_FILE): the app will refuse every '
            'body file this site names',
            file=sys.stderr,
        )
        return ''
    if _create_key(Path(path)):
        # NOTE: the message names the file, never the key.
        print(
            f'filestorectl: created the body offload key {path} (mode 0600); '
            'start the app with the same --body-key-file',
            file=sys.stderr,
        )
    try:
        return read_key(Path(path))
    except (OSError, ValueError) as exc:
        raise ConfigError(f'--body-key-file: {exc}') from None


def _create_key(path: Path) -> bool:
    """Write a new random key to ``path`` unless it exists; True if written."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        return False
    except OSError as exc:
        raise ConfigError(f'--body-key-file: cannot create {path}: {exc}') from None
    with os.fdopen(fd, 'w', encoding='ascii') as out:
        out.write(secrets.token_urlsafe(32) + '\n')
        out.flush()
        os.fsync(out.fileno())
    return True


def without_streaming(text: str) -> str:
    """Drop the server's ``proxy_request_buffering off`` (the offload turns it on)."""
    if _BUFFERING not in text:
        raise AssertionError('the site template changed its buffering line')
    return text.replace(_BUFFERING, '', 1)

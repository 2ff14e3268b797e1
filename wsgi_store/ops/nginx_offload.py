"""The nginx site's part for ``nginx-config --body-offload`` (see bodyfile.py).

nginx receives every upload body (but resumable ones) whole into
``STORE/tmp/nginx-body/`` and passes the app only its name; ``/uploads`` keeps
streaming, since tus acknowledges only offsets the app has flushed.
"""

from __future__ import annotations

from wsgi_store.backends.fs import NGINX_BODY_DIR

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
"""


def offload_server(store: str) -> str:
    """The server-level directives (the body directory under ``store``)."""
    return _OFFLOAD.format(body_dir=f'{store}/{BODY_DIR}')


def offload_uploads(name: str) -> str:
    """The ``/uploads`` location's overrides (it streams as before)."""
    return _UPLOADS_OFFLOAD.format(name=name)


def without_streaming(text: str) -> str:
    """Drop the server's ``proxy_request_buffering off`` (the offload turns it on)."""
    if _BUFFERING not in text:
        raise AssertionError('the site template changed its buffering line')
    return text.replace(_BUFFERING, '', 1)

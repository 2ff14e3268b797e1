"""nginx configuration for the bench: the store site, static files and WebDAV.

The store site is the shipped one (``wsgi_store.ops.nginx.site_config``, what
``filestorectl nginx-config`` prints), access log included; the static and
WebDAV servers are the limits it is compared with (no access log).
"""

from __future__ import annotations

import os
from pathlib import Path


def main_conf(prefix: Path, servers: list[str]) -> str:
    """A complete nginx.conf whose every path lies under ``prefix``."""
    user = 'user root root;\n' if os.geteuid() == 0 else ''
    temp = '\n'.join(
        f'    {kind}_temp_path {prefix / kind};'
        for kind in ('client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi')
    )
    body = '\n'.join(servers)
    return f"""{user}worker_processes auto;
pid {prefix / 'nginx.pid'};
error_log {prefix / 'error.log'} warn;
events {{ worker_connections 4096; }}
http {{
{temp}
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_requests 1000000;
    keepalive_timeout 65s;
    default_type application/octet-stream;
    client_max_body_size 0;
{body}
}}
"""


def static_site(port: int, store: Path) -> str:
    """The GET limit: ``/static/ab/H`` is ``STORE/ab/H``, a plain prefix alias."""
    return f"""    server {{
        listen 127.0.0.1:{port};
        location /static/ {{ alias {store}/; }}
    }}"""


def dav_site(port: int, root: Path) -> str:
    """The PUT/DELETE peer: nginx's WebDAV module (no fsync, like nginx does)."""
    return f"""    server {{
        listen 127.0.0.1:{port};
        location /dav/ {{
            root {root};
            client_body_temp_path {root / 'dav-tmp'};
            dav_methods PUT DELETE;
            dav_access user:rw group:r;
            create_full_put_path on;
        }}
    }}"""


def store_site(port: int, upstream_port: int, store: Path, prefix: Path) -> str:
    """The store behind nginx, exactly as ``filestorectl nginx-config`` ships it."""
    from wsgi_store.config import Config
    from wsgi_store.ops.nginx import site_config

    config = Config(store_dir=store, host='127.0.0.1', port=upstream_port).resolved()
    return site_config(
        config, listen=f'127.0.0.1:{port}', access_log=str(prefix / 'site.access.log')
    )

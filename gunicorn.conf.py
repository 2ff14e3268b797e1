"""gunicorn settings for wsgi-store: server settings only.

    gunicorn -c gunicorn.conf.py

runs the service with the defaults. Every value comes from the same
``WSGI_STORE_*`` environment the app reads (see wsgi_store/config.py), through
the one function filestorectl uses too (wsgi_store/ops/server.py), so both ways of
running the store get the same settings:

    bind               WSGI_STORE_HOST:WSGI_STORE_PORT   (127.0.0.1:9000)
    backlog            WSGI_STORE_BACKLOG                (filestorectl --listen)
    worker_class       wsgi_store.ops.workers.StoreWorker: gthread plus deadlines
                       for slow clients (WSGI_STORE_HEADER_TIMEOUT,
                       WSGI_STORE_BODY_IDLE_TIMEOUT, WSGI_STORE_BODY_BUFFER_BYTES,
                       WSGI_STORE_UPLOAD_THREADS)
    workers, threads   WSGI_STORE_WORKERS, WSGI_STORE_THREADS   (2 x 8)
    timeout, graceful_timeout, keepalive   WSGI_STORE_TIMEOUT ... (seconds)
    sendfile           gunicorn's default: on (downloads leave through sendfile)
    limit_request_*    8190-byte request line and header fields, 100 fields
    forwarded_allow_ips  WSGI_STORE_FORWARDED_ALLOW_IPS (nginx on loopback)
    loglevel, logconfig_dict   WSGI_STORE_LOG_LEVEL, WSGI_STORE_LOGFILE
    hooks              on_starting (sweeps stale temp uploads), on_reload,
                       child_exit: wsgi_store/ops/hooks.py

To change one setting for this run, set it below the update, e.g.
``workers = 4``; `filestorectl start --config FILE` reads such a file too
(its settings override the flags, and it is read again on `reload`).
"""

from wsgi_store.config import Config
from wsgi_store.ops.server import gunicorn_settings

wsgi_app = 'wsgi_store.wsgi:app'

globals().update(gunicorn_settings(Config.from_env()))

"""gunicorn settings for wsgi-store: server settings only.

``gunicorn -c gunicorn.conf.py`` runs the service with the defaults; every value
comes from the same ``WSGI_STORE_*`` environment the app reads (see
wsgi_store/config.py), so one place configures both.
"""

from wsgi_store import hooks
from wsgi_store.config import Config
from wsgi_store.logs import logconfig_dict

_config = Config.from_env()

wsgi_app = 'wsgi_store.wsgi:app'
bind = [
    f'[{_config.host}]:{_config.port}'
    if ':' in _config.host
    else f'{_config.host}:{_config.port}'
]
backlog = _config.backlog
# gthread: measured on a 2-core machine, 2 workers x 8 threads served large files
# at nginx's sendfile rate and small requests best.
worker_class = 'gthread'
workers = _config.workers
threads = _config.threads
timeout = _config.timeout
graceful_timeout = _config.graceful_timeout
keepalive = _config.keepalive
sendfile = True
# A request line or header block larger than this is refused by gunicorn (400).
limit_request_line = 8190
limit_request_fields = 100
limit_request_field_size = 8190
forwarded_allow_ips = _config.forwarded_allow_ips
loglevel = _config.log_level.lower()
accesslog = str(_config.logfile) if _config.logfile else '-'
access_log_format = '%(h)s "%(r)s" %(s)s %(B)s %(M)sms "%(a)s"'
logconfig_dict = logconfig_dict(_config)
proc_name = 'wsgi-store'


def on_starting(server):
    hooks.on_starting(_config, server)


def post_fork(server, worker):
    hooks.post_fork(_config, server, worker)


def child_exit(server, worker):
    hooks.child_exit(_config, server, worker)

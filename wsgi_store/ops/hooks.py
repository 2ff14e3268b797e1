"""gunicorn server hooks, shared by gunicorn.conf.py and filestorectl's embedded server.

Each hook takes the resolved :class:`Config` first; gunicorn.conf.py and
``server.py`` bind it with ``functools.partial`` or a small wrapper.

Metrics: prometheus-client's multiprocess mode needs one directory per service
run, known to every worker before it imports prometheus-client. The master makes
it in :func:`on_starting` and exports ``PROMETHEUS_MULTIPROC_DIR`` so that every
worker forked afterwards inherits it.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import tempfile
from pathlib import Path

from wsgi_store.config import MULTIPROC_ENV, Config
from wsgi_store.maintenance.tasks import sweep_on_start
from wsgi_store.ops.pidfile import alive

logger = logging.getLogger(__name__)

METRICS_DIR_PREFIX = 'wsgi-store-metrics-'


def on_starting(config: Config, server: object) -> None:
    """In the master, before any worker forks: sweep dead temp uploads (never a
    live one of another instance on the same store), set up metrics."""
    _load_tokens(config, starting=True)  # a missing/empty/broken file: no start
    sweep_on_start(config)
    if config.metrics:
        prepare_metrics_dir(config)


def on_reload(config: Config, server: object) -> None:
    """In the master on HUP, before new workers fork: reload the tokens file."""
    _load_tokens(config, starting=False)


def _load_tokens(config: Config, *, starting: bool) -> None:
    # NOTE: workers inherit the master's last good set by fork, so a broken
    # file at HUP cannot stop new workers from booting (issue 11 item 2).
    from wsgi_store.http.tokens import TokensFileError, load_in_master

    try:
        load_in_master(config, starting=starting)
    except TokensFileError as exc:
        raise RuntimeError(str(exc)) from None  # gunicorn: one line, exit 1


def child_exit(config: Config, server: object, worker: object) -> None:
    """In the master, after a worker exited: retire its live metrics files."""
    path = os.environ.get(MULTIPROC_ENV)
    pid = getattr(worker, 'pid', None)
    if config.metrics and path and pid:
        # Imported here: only after on_starting exported the directory.
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid, path)


def prepare_metrics_dir(config: Config) -> Path:
    """Create (or empty) this run's multiprocess directory and export it.

    ``config.metrics_dir`` when set: created if needed, its ``*.db`` files from a
    previous run removed (the directory itself is kept). Otherwise a fresh
    private directory ``$TMPDIR/wsgi-store-metrics-<port>-<pid>-*``, removed
    when the master exits; ones left by a master that died are swept first.
    """
    if config.metrics_dir is not None:
        path = config.metrics_dir
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        for stale in path.glob('*.db'):
            stale.unlink(missing_ok=True)
    else:
        prefix = f'{METRICS_DIR_PREFIX}{config.port}-'
        _sweep_dead_dirs(Path(tempfile.gettempdir()), prefix)
        path = Path(tempfile.mkdtemp(prefix=f'{prefix}{os.getpid()}-'))
        atexit.register(_remove_dir, path, os.getpid())
    # NOTE: an inherited PROMETHEUS_MULTIPROC_DIR is replaced on purpose: values
    # left there by another run would be summed into this one's.
    os.environ[MULTIPROC_ENV] = str(path)
    logger.info('metrics: multiprocess directory %s', path)
    return path


def _remove_dir(path: Path, owner: int) -> None:
    # NOTE: workers are forked from the master and inherit its atexit handlers;
    # only the master that made the directory may remove it.
    if os.getpid() == owner:
        shutil.rmtree(path, ignore_errors=True)


def _sweep_dead_dirs(parent: Path, prefix: str) -> None:
    """Remove metrics directories whose master (the pid in the name) is gone."""
    for entry in parent.glob(f'{prefix}*'):
        pid_text = entry.name[len(prefix) :].partition('-')[0]
        if pid_text.isdigit() and not alive(int(pid_text)) and entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)

"""Versions and machine facts printed under the table."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path
from typing import Any


def _first_line(argv: list[str]) -> str:
    try:
        proc = subprocess.run(
            argv, capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return 'unavailable'
    text = (proc.stdout + proc.stderr).strip().splitlines()
    return text[0].strip() if text else 'unavailable'


def loadavg() -> str:
    """/proc/loadavg's three averages."""
    try:
        return ' '.join(Path('/proc/loadavg').read_text().split()[:3])
    except OSError:
        return 'unavailable'


def _cpu() -> str:
    try:
        for line in Path('/proc/cpuinfo').read_text().splitlines():
            if line.startswith('model name'):
                return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or 'unknown'


def versions(nginx: str) -> dict[str, Any]:
    """Versions of everything in the measurement."""
    import falcon
    import gunicorn

    return {
        'python': platform.python_version(),
        'falcon': falcon.__version__,
        'gunicorn': gunicorn.__version__,
        'nginx': _first_line([nginx, '-v']).removeprefix('nginx version: '),
        'wrk': _first_line(['wrk', '-v']).split(' [')[0],
        'kernel': platform.release(),
        'cpu': f'{os.cpu_count()} x {_cpu()}',
    }


def worker_label(workers: int, threads: int) -> str:
    """The gunicorn worker class gunicorn.conf.py selects, and its counts."""
    from wsgi_store.config import Config
    from wsgi_store.ops.server import gunicorn_settings

    cls = gunicorn_settings(Config.from_env())['worker_class']
    kind = cls if isinstance(cls, str) else f'{cls.__module__}.{cls.__qualname__}'
    return f'{kind}, {workers} workers x {threads} threads'


def s3_versions() -> dict[str, Any]:
    """boto3 and botocore, for the S3 rows."""
    import boto3
    import botocore

    return {'boto3': boto3.__version__, 'botocore': botocore.__version__}

"""Logging setup shared by gunicorn.conf.py and filestorectl."""

from __future__ import annotations

from typing import Any

from .config import Config

TEXT_FORMAT = '%(asctime)s [%(process)d] [%(levelname)s] %(name)s: %(message)s'


def logconfig_dict(config: Config) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` for the app's loggers and gunicorn's."""
    target = str(config.logfile) if config.logfile else None
    handler: dict[str, Any] = (
        {'class': 'logging.FileHandler', 'filename': target, 'formatter': 'text'}
        if target
        else {
            'class': 'logging.StreamHandler',
            'stream': 'ext://sys.stderr',
            'formatter': 'text',
        }
    )
    access: dict[str, Any] = dict(handler, formatter='access')
    return {
        'version': 1,
        'disable_existing_loggers': False,
        'formatters': {
            'text': {'format': TEXT_FORMAT},
            'access': {'format': '%(message)s'},
        },
        'handlers': {'main': handler, 'access': access},
        'root': {'level': config.log_level.upper(), 'handlers': ['main']},
        'loggers': {
            'gunicorn.error': {
                'level': config.log_level.upper(),
                'handlers': ['main'],
                'propagate': False,
            },
            # The app's middleware writes the access log (request id, redaction);
            # gunicorn's own access lines are dropped so nothing is logged twice.
            'gunicorn.access': {'handlers': [], 'propagate': False},
            'wsgi_store.access': {
                'level': 'INFO',
                'handlers': ['access'],
                'propagate': False,
            },
        },
    }

"""Configuration, resolved once: defaults < environment (``WSGI_STORE_*``) < flags.

Every field of :class:`Config` can be set from the environment as
``WSGI_STORE_<FIELD NAME IN UPPER CASE>`` (``WSGI_STORE_STORE_DIR``,
``WSGI_STORE_HASH``, ``WSGI_STORE_MAX_UPLOAD_BYTES`` ...). Command-line flags are
applied on top with :meth:`Config.replace`.
"""

from __future__ import annotations

import dataclasses
import os
import re
import typing
from collections.abc import Mapping
from pathlib import Path

ENV_PREFIX = 'WSGI_STORE_'
#: prometheus-client's multiprocess directory: set by the master (hooks), read
#: by the workers' metrics.
MULTIPROC_ENV = 'PROMETHEUS_MULTIPROC_DIR'
MiB = 1024 * 1024

_TRUE = frozenset({'1', 'true', 'yes', 'on'})
_FALSE = frozenset({'0', 'false', 'no', 'off', ''})


class ConfigError(ValueError):
    """A setting has a value that cannot be used."""


class FieldError(ConfigError):
    """One field's value cannot be used; ``problem`` says why, without a name.

    The message names the field; ``Config.from_env`` renames it to the
    environment variable and the CLI to the flag the user typed.
    """

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f'{field}: {problem}')
        self.field, self.problem = field, problem


def parse_count(value: str) -> int:
    """Parse a whole number that is not a byte count (a port, a worker count)."""
    try:
        number = int(value.strip())
    except ValueError:
        raise ConfigError(f'not a whole number: {value!r}') from None
    if number < 0:
        raise ConfigError(f'cannot be negative: {value!r}')
    return number


def parse_bool(value: str) -> bool:
    """Parse a boolean setting (1/0, true/false, yes/no, on/off)."""
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ConfigError(f'not a boolean: {value!r}')


def parse_size(value: str) -> int:
    """Parse a byte count: a plain integer or one with a K/M/G/T suffix (binary)."""
    text = value.strip().upper().removesuffix('B').removesuffix('I')
    factor = 1
    for suffix, mult in (
        ('K', 1 << 10),
        ('M', 1 << 20),
        ('G', 1 << 30),
        ('T', 1 << 40),
    ):
        if text.endswith(suffix):
            text, factor = text[:-1], mult
            break
    try:
        number = int(text) * factor
    except ValueError:
        raise ConfigError(f'not a byte count: {value!r}') from None
    if number < 0:
        raise ConfigError(f'a byte count cannot be negative: {value!r}')
    return number


def human_bytes(count: int) -> str:
    """Format a byte count for people (the inverse of :func:`parse_size`):
    ``1536`` -> ``'1.5 KiB'``."""
    value = float(count)
    for unit in ('B', 'KiB', 'MiB', 'GiB', 'TiB'):
        if value < 1024 or unit == 'TiB':
            return f'{value:.0f} {unit}' if unit == 'B' else f'{value:.1f} {unit}'
        value /= 1024
    return f'{value:.1f} TiB'


GROUP_COMMIT_MODES = ('syncfs', 'files', 'off')


@dataclasses.dataclass(frozen=True)
class Config:
    """All settings of the service, the daemon and the backends.

    Paths are made absolute by :meth:`resolved` (the daemon changes directory
    to ``/`` after it detaches).
    """

    # -- storage -----------------------------------------------------------
    store_dir: Path = Path('store')
    hash: str = 'sha256'
    backend: str = 'fs'
    fsync: bool = True
    # How concurrent durable uploads share device flushes (backends/groupcommit.py):
    # 'syncfs' one syncfs(2) per round, 'files' one fdatasync per file and one
    # fsync per shard directory, 'off' every upload flushes alone.
    group_commit: str = 'syncfs'
    max_upload_bytes: int = 0  # 0 = unlimited
    chunk_bytes: int = MiB
    temp_max_age: int = 3600  # seconds; gc removes older temp files
    upload_expiry: int = 86400  # seconds a resumable upload lives after its last byte
    verify_reads: bool = False
    # -- S3 backend ----------------------------------------------------------
    s3_endpoint_url: str = ''
    s3_bucket: str = ''
    s3_prefix: str = 'wsgi-store'
    s3_region: str = ''
    s3_addressing_style: str = 'path'
    s3_part_bytes: int = 16 * MiB
    s3_redirect: bool = False
    s3_presign_seconds: int = 300
    s3_connect_timeout: float = 5.0
    s3_read_timeout: float = 60.0
    s3_max_attempts: int = 3
    # -- HTTP behaviour ------------------------------------------------------
    accel_redirect: str = ''  # nginx internal location prefix, '' = off
    # nginx in front writes request bodies here (`nginx-config --body-offload`)
    # and names them in X-Body-File; None = never read a file a header names.
    nginx_body_dir: Path | None = None
    # The secret nginx sends in X-Body-Offload-Key with each X-Body-File; the
    # app adopts no file without it (wsgi_store/http/bodyfile.py).
    nginx_body_key_file: Path | None = None
    tokens_file: Path | None = None
    public_read: bool = False
    # Origins (scheme://host[:port]) whose pages may call the upload and object
    # routes from a browser (CORS, wsgi_store/http/cors.py); () = none.
    cors_origins: tuple[str, ...] = ()
    readyz_min_free_bytes: int = 64 * MiB
    readyz_min_free_inodes: int = 1000
    metrics: bool = True
    access_log: bool = True  # the app's access log (nginx may keep its own)
    metrics_dir: Path | None = None
    max_multipart_parts: int = 64
    max_multipart_header_bytes: int = 8192
    # -- server (gunicorn / filestorectl) ------------------------------------
    host: str = '127.0.0.1'
    port: int = 9000
    backlog: int = 2048
    workers: int = 2
    threads: int = 8
    timeout: int = 120
    graceful_timeout: int = 60
    keepalive: int = 5
    # Slow clients (wsgi_store/ops/workers.py): seconds to send a whole request
    # head, seconds of silence allowed in a body, bodies gathered before a
    # thread is taken, the slowest body accepted (0 = no floor), threads for
    # bodies still arriving (0 = THREADS).
    header_timeout: int = 30
    body_idle_timeout: int = 60
    body_buffer_bytes: int = 64 * 1024
    body_min_rate_bytes: int = 1024  # per second, averaged after BODY_IDLE_TIMEOUT
    upload_threads: int = 0
    log_level: str = 'INFO'
    log_format: str = 'text'
    logfile: Path | None = None
    pidfile: Path = Path('wsgi-store.pid')
    forwarded_allow_ips: str = '127.0.0.1,::1'

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Config:
        """Build a config from defaults overridden by ``WSGI_STORE_*`` variables."""
        environ = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for field in dataclasses.fields(cls):
            raw = environ.get(ENV_PREFIX + field.name.upper())
            if raw is not None:
                values[field.name] = _coerce(field.name, raw)
        try:
            return cls(**values).resolved()  # type: ignore[arg-type]
        except FieldError as exc:
            if exc.field not in values:
                raise
            name = ENV_PREFIX + exc.field.upper()
            raise ConfigError(f'{name}: {exc.problem}') from None

    def replace(self, **changes: object) -> Config:
        """Return a copy with ``changes`` applied (``None`` values are ignored)."""
        given = {k: v for k, v in changes.items() if v is not None}
        for name, value in list(given.items()):
            if isinstance(value, str) and _field_type(name) is not str:
                given[name] = _coerce(name, value)
        return dataclasses.replace(self, **given).resolved()  # type: ignore[arg-type]

    def resolved(self) -> Config:
        """Validate the settings and make every path absolute."""
        changes: dict[str, object] = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, Path) and not value.is_absolute():
                changes[field.name] = Path(os.path.abspath(value))
        if self.backend not in ('fs', 's3'):
            raise FieldError('backend', f'must be "fs" or "s3", not {self.backend!r}')
        if self.group_commit not in GROUP_COMMIT_MODES:
            raise FieldError(
                'group_commit',
                f'must be one of {", ".join(GROUP_COMMIT_MODES)}, '
                f'not {self.group_commit!r}',
            )
        if self.chunk_bytes < 1:
            raise FieldError('chunk_bytes', 'must be at least 1')
        if self.log_format not in ('text', 'json'):
            raise FieldError('log_format', 'must be "text" or "json"')
        origins = _origins(self.cors_origins)
        if origins != self.cors_origins:
            changes['cors_origins'] = origins
        if self.accel_redirect and not self.accel_redirect.startswith('/'):
            raise FieldError('accel_redirect', 'must be a location path: /NAME')
        if not 1 <= self.port <= 65535:
            raise FieldError('port', f'must be a TCP port, 1-65535, not {self.port}')
        for name in ('header_timeout', 'body_idle_timeout'):
            if getattr(self, name) < 1:
                raise FieldError(name, 'must be at least 1 second')
        for name in ('workers', 'threads'):
            if getattr(self, name) < 1:
                raise FieldError(name, 'must be at least 1')
        return dataclasses.replace(self, **changes) if changes else self  # type: ignore[arg-type]


def _field_type(name: str) -> object:
    hints = typing.get_type_hints(Config)
    return hints[name]


def _coerce(name: str, raw: str) -> object:
    kind = _field_type(name)
    try:
        if kind is bool:
            return parse_bool(raw)
        if kind is int:
            return parse_size(raw) if name.endswith('_bytes') else parse_count(raw)
        if kind is float:
            return float(raw)
        if kind == tuple[str, ...]:
            try:
                return _origins(raw)
            except FieldError as exc:
                raise ValueError(exc.problem) from None
        if kind in (Path, Path | None):
            return Path(raw) if raw else None
    except (ConfigError, ValueError) as exc:
        raise ConfigError(f'{ENV_PREFIX}{name.upper()}: {exc}') from None
    return raw


_ORIGIN = re.compile(r'https?://[^/?#\s@]+', re.IGNORECASE)


def _origins(value: str | typing.Iterable[str]) -> tuple[str, ...]:
    """CORS origins from a comma-separated string or a sequence, validated.

    An origin is ``scheme://host[:port]``, exactly as a browser sends it in
    ``Origin`` (no path, no trailing slash); the scheme and host are lower-cased.
    """
    items = value.split(',') if isinstance(value, str) else list(value)
    found: list[str] = []
    for item in items:
        text = str(item).strip()
        if not text:
            continue
        if not _ORIGIN.fullmatch(text):
            raise FieldError(
                'cors_origins',
                f'{text!r} is not an origin: use scheme://host[:port], no path',
            )
        if text.lower() not in found:
            found.append(text.lower())
    return tuple(found)

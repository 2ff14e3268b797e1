"""``filestorectl``: parse the command line and hand over to the module that acts.

Settings: defaults < ``WSGI_STORE_*`` environment < flags, resolved once into a
:class:`Config`. This module parses only; daemon.py, systemd.py, nginx.py,
maintenance.py and migrate.py do the work.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from .config import Config, ConfigError

# flag -> Config field, for every flag that sets a Config field.
STORAGE_FLAGS = {
    '--store': 'store_dir',
    '--hash': 'hash',
    '--backend': 'backend',
    '--buffer': 'chunk_bytes',
    '--log': 'log_level',
    '--s3-endpoint-url': 's3_endpoint_url',
    '--s3-bucket': 's3_bucket',
    '--s3-prefix': 's3_prefix',
    '--s3-region': 's3_region',
}
SERVER_FLAGS = {
    '--host': 'host',
    '--port': 'port',
    '--listen': 'backlog',
    '--workers': 'workers',
    '--threads': 'threads',
    '--max-size': 'max_upload_bytes',
    '--pidfile': 'pidfile',
    '--logfile': 'logfile',
    '--accel-redirect': 'accel_redirect',
    '--tokens': 'tokens_file',
    '--log-format': 'log_format',
}
SWITCHES = {  # flag -> (Config field, value when given)
    '--public-read': ('public_read', True),
    '--verify-reads': ('verify_reads', True),
    '--no-fsync': ('fsync', False),
    '--s3-redirect': ('s3_redirect', True),
}
HELP = {
    '--store': 'store directory (fs backend)',
    '--hash': 'hash algorithm of the store (sha256)',
    '--backend': 'fs or s3',
    '--no-fsync': 'do not fsync uploads (faster, not durable)',
    '--public-read': 'reads need no token even with --tokens',
    '--verify-reads': 're-hash objects while sending them',
    '--log-format': 'text or json',
    '--s3-redirect': 'answer GET with a redirect to a presigned S3 URL',
    '--listen': "gunicorn's listen backlog",
    '--buffer': 'streaming chunk size in bytes (K/M suffixes allowed)',
    '--log': 'log level (debug, info, warning, error)',
    '--max-size': 'largest upload in bytes, 0 = unlimited',
    '--logfile': 'log file (start: default wsgi-store.log next to the pidfile)',
    '--accel-redirect': 'nginx internal location for X-Accel-Redirect, e.g. /_store',
    '--tokens': 'file of bearer tokens required to write (and read)',
}


def _storage_parent() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(add_help=False)
    for flag, field in STORAGE_FLAGS.items():
        parser.add_argument(flag, dest=field, help=HELP.get(flag))
    _add_switches(parser, '--no-fsync', '--s3-redirect')
    return parser


def _add_switches(parser: argparse.ArgumentParser, *flags: str) -> None:
    """Flags without a value that set one setting (``SWITCHES``)."""
    for flag in flags:
        field, value = SWITCHES[flag]
        parser.add_argument(
            flag, dest=field, action='store_const', const=value, help=HELP.get(flag)
        )


def _server_parent() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(add_help=False, parents=[_storage_parent()])
    for flag, field in SERVER_FLAGS.items():
        parser.add_argument(flag, dest=field, help=HELP.get(flag))
    _add_switches(parser, '--public-read', '--verify-reads')
    parser.add_argument(
        '--config',
        dest='settings_file',
        type=Path,
        help='a gunicorn.conf.py whose settings override these (re-read on reload)',
    )
    return parser


def _control_parent() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(add_help=False)
    for flag in ('--pidfile', '--host', '--port', '--log'):
        parser.add_argument(flag, dest=SERVER_FLAGS.get(flag) or STORAGE_FLAGS[flag])
    parser.add_argument('--wait', type=float, help='seconds to wait (stop: SIGKILL)')
    return parser


def build_parser() -> argparse.ArgumentParser:
    """The whole ``filestorectl`` command line."""
    parser = argparse.ArgumentParser(
        prog='filestorectl', description='Run and manage the wsgi-store service.'
    )
    sub = parser.add_subparsers(dest='command', required=True, metavar='COMMAND')
    server, control, storage = _server_parent(), _control_parent(), _storage_parent()
    for name, text in (
        ('start', 'start the daemon; returns once it answers /healthz'),
        ('restart', 'stop, then start with these flags'),
    ):
        cmd = sub.add_parser(name, parents=[server], help=text)
        cmd.add_argument('--wait', type=float, help='seconds to wait for /healthz')
    sub.add_parser('run', parents=[server], help='serve in the foreground (systemd)')
    for name, text in (
        ('stop', 'SIGTERM, wait for the graceful stop, then SIGKILL'),
        ('reload', 'SIGHUP: re-read settings, replace workers gracefully'),
        ('status', 'LSB status: 0 running, 1 dead with pidfile, 3 stopped'),
        ('get_pid', 'print the pid of the running service'),
    ):
        sub.add_parser(name, parents=[control], help=text)
    unit = sub.add_parser('systemd-unit', parents=[server], help='print the unit')
    unit.add_argument('--user', default='wsgi-store', help='service user and group')
    unit.add_argument('--install', action='store_true', help='write the unit file')
    unit.add_argument('--unit-path', type=Path, help='where --install writes')
    unit.add_argument('--exec', dest='exec_path', help='path of filestorectl')
    site = sub.add_parser('nginx-config', parents=[server], help='print the site')
    site.add_argument(
        '--listen-port', default='80', help="nginx's listen: PORT or ADDR:PORT"
    )
    site.add_argument('--server-name', default='_')
    site.add_argument(
        '--upstream', action='append', help='HOST:PORT of a backend (repeatable)'
    )
    site.add_argument('--access-log', help='nginx access log path')
    site.add_argument(
        '--no-direct-reads',
        dest='direct_reads',
        action='store_false',
        help='send every read to the app (no public read path in nginx)',
    )
    verify = sub.add_parser('verify', parents=[storage], help='re-hash every object')
    verify.add_argument('--repair', action='store_true', help='quarantine bad ones')
    gc = sub.add_parser('gc', parents=[storage], help='remove stale temp uploads')
    gc.add_argument('--older-than', type=float, help='seconds (default temp_max_age)')
    stats = sub.add_parser('stats', parents=[storage], help='count objects and bytes')
    stats.add_argument('--json', action='store_true', help='print JSON')
    migrate = sub.add_parser('migrate', parents=[storage], help='copy every object')
    migrate.add_argument('--from', dest='source', required=True, metavar='SPEC')
    migrate.add_argument('--to', dest='target', required=True, metavar='SPEC')
    return parser


def config_from(args: argparse.Namespace, base: Config | None = None) -> Config:
    """Apply the parsed flags on top of the environment's configuration."""
    fields = {*STORAGE_FLAGS.values(), *SERVER_FLAGS.values()}
    fields |= {field for field, _ in SWITCHES.values()}
    changes = {
        f: getattr(args, f) for f in fields if getattr(args, f, None) is not None
    }
    return (base or Config.from_env()).replace(**changes)


def given_flags(args: argparse.Namespace, config: Config) -> list[str]:
    """The server flags given on this command line, paths made absolute.

    Used for the systemd unit's ExecStart: the unit runs with ``/`` as its
    working directory, so relative paths are replaced by resolved ones.
    """
    out: list[str] = []
    for flag, field in {**STORAGE_FLAGS, **SERVER_FLAGS}.items():
        value = getattr(args, field, None)
        if value is not None:
            resolved = getattr(config, field)
            out += [flag, str(resolved if isinstance(resolved, Path) else value)]
    for flag, (field, _) in SWITCHES.items():
        if getattr(args, field, None) is not None:
            out.append(flag)
    if getattr(args, 'settings_file', None) is not None:
        out += ['--config', str(args.settings_file.absolute())]
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``filestorectl`` (console script and bin/filestorectl)."""
    args = build_parser().parse_args(argv)
    try:
        config = config_from(args)
    except (ConfigError, ValueError) as exc:
        print(f'filestorectl: {exc}', file=sys.stderr)
        return 2
    try:
        return dispatch(args, config)
    except ConfigError as exc:
        print(f'filestorectl: {exc}', file=sys.stderr)
        return 2


def dispatch(args: argparse.Namespace, config: Config) -> int:
    """Run the subcommand; modules are imported only when needed."""
    command = args.command
    if command in ('start', 'restart', 'run'):
        _warn_if_open(config)
    if command in ('start', 'restart', 'run', 'stop', 'reload', 'status', 'get_pid'):
        return _control(args, config)
    if command == 'systemd-unit':
        return _systemd_unit(args, config)
    if command == 'nginx-config':
        from .nginx import site_config

        print(site_config(config, **_site_options(args)), end='')
        return 0
    if command == 'migrate':
        return _migrate(args, config)
    from . import maintenance

    if command == 'verify':
        return maintenance.verify(config, repair=args.repair)
    if command == 'gc':
        return maintenance.gc(config, older_than=args.older_than)
    return maintenance.stats(config, as_json=args.json)


def _warn_if_open(config: Config) -> None:
    from .auth import network_warning

    warning = network_warning(config)
    if warning:
        print(f'filestorectl: {warning}', file=sys.stderr)


def _control(args: argparse.Namespace, config: Config) -> int:
    from . import daemon

    wait = getattr(args, 'wait', None)
    start_wait = daemon.START_TIMEOUT if wait is None else wait
    settings = getattr(args, 'settings_file', None)
    command = args.command
    if command == 'start':
        return daemon.start(config, settings, start_wait)
    if command == 'restart':
        return daemon.restart(config, settings, start_wait)
    if command == 'run':
        explicit = args.pidfile is not None or 'WSGI_STORE_PIDFILE' in os.environ
        return daemon.run(config, settings, config.pidfile if explicit else None)
    if command == 'stop':
        return daemon.stop(config, wait)
    if command == 'reload':
        return daemon.reload(config)
    if command == 'status':
        return daemon.status(config)
    return daemon.get_pid(config)


def _systemd_unit(args: argparse.Namespace, config: Config) -> int:
    from . import systemd

    if args.store_dir is None:
        config = config.replace(store_dir=systemd.STATE_DIR)
    text = systemd.unit_text(
        config,
        run_flags=given_flags(args, config),
        exec_path=args.exec_path or systemd.default_exec_path(),
        user=args.user,
    )
    if not args.install:
        print(text, end='')
        return 0
    path = args.unit_path or systemd.UNIT_PATH
    try:
        steps = systemd.install(text, path, config, args.user)
    except OSError as exc:
        print(f'filestorectl: cannot write {path}: {exc}', file=sys.stderr)
        return 1
    print(f'wrote {path}; next, as root:\n' + '\n'.join(f'  {s}' for s in steps))
    return 0


def _site_options(args: argparse.Namespace) -> dict[str, object]:
    return {
        'listen': args.listen_port,
        'server_name': args.server_name,
        'upstreams': args.upstream,
        'access_log': args.access_log,
        'direct_reads': args.direct_reads,
    }


def _migrate(args: argparse.Namespace, config: Config) -> int:
    from .backends import make_backend
    from .errors import StoreError
    from .migrate import migrate

    source = make_backend(backend_config(config, args.source))
    target = make_backend(backend_config(config, args.target))
    try:
        summary = migrate(source, target, progress=True)
    except StoreError as exc:
        print(f'filestorectl: migrate: {exc.detail}', file=sys.stderr)
        return 1
    finally:
        source.close()
        target.close()
    for hex_hash, reason in summary.failures.items():
        print(f'failed {hex_hash}: {reason}')
    print(summary)
    return 0 if summary.ok else 1


def backend_config(config: Config, spec: str) -> Config:
    """The config for the backend ``spec`` names.

    ``fs:DIR`` or ``DIR``: a filesystem store; ``s3``: the S3 settings as
    configured; ``s3://BUCKET[/PREFIX]``: those settings with another bucket.
    """
    if spec == 's3':
        return config.replace(backend='s3')
    if spec.startswith('s3://'):
        bucket, _, prefix = spec.removeprefix('s3://').partition('/')
        if not bucket:
            raise ConfigError(f'no bucket in {spec!r}')
        return config.replace(backend='s3', s3_bucket=bucket, s3_prefix=prefix)
    return config.replace(backend='fs', store_dir=Path(spec.removeprefix('fs:')))


if __name__ == '__main__':
    sys.exit(main())

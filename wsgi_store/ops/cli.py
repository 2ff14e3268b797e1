"""``filestorectl``: parse the command line and hand over to the module that acts.

Settings: defaults < ``WSGI_STORE_*`` environment < flags, resolved once into a
:class:`Config`. This module parses and reports; daemon.py, systemd.py,
nginx.py, maintenance.py, migrate.py and tokens_cli.py do the work.

A user's mistake is one line on stderr naming the flag (or the environment
variable) and exit 2 (usage) or 1 (runtime, as LSB says), never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from wsgi_store.config import ENV_PREFIX, Config, ConfigError, FieldError
from wsgi_store.errors import StoreError
from wsgi_store.ops.cli_parser import FLAG_FIELDS, SWITCHES, build_parser, subparser

__all__ = ['backend_config', 'build_parser', 'config_from', 'given_flags', 'main']

LOG_NAME = 'wsgi-store.log'
SERVICE_COMMANDS = ('start', 'restart', 'run')
CONTROL_COMMANDS = ('stop', 'reload', 'status', 'get_pid')


class UsageError(ConfigError):
    """The command line (or environment) asks for something impossible: exit 2."""


def config_from(args: argparse.Namespace, base: Config | None = None) -> Config:
    """Apply the parsed flags on top of the environment's configuration.

    Raises:
        UsageError: a flag's value is unusable; the message names the flag.
    """
    config = base or Config.from_env()
    for flag, field in FLAG_FIELDS.items():
        value = getattr(args, field, None)
        if value is not None:
            config = _apply(config, flag, field, value)
    for field, _ in SWITCHES.values():
        value = getattr(args, field, None)
        if value is not None:
            config = config.replace(**{field: value})
    return config


def _apply(config: Config, flag: str, field: str, value: object) -> Config:
    try:
        return config.replace(**{field: value})
    except FieldError as exc:
        raise UsageError(f'{flag}: {exc.problem}') from None
    except ConfigError as exc:
        problem = str(exc).removeprefix(f'{ENV_PREFIX}{field.upper()}: ')
        raise UsageError(f'{flag}: {problem}') from None


def given_flags(args: argparse.Namespace, config: Config) -> list[str]:
    """The server flags given on this command line, paths made absolute.

    Used for the systemd unit's ExecStart: the unit runs with ``/`` as its
    working directory, so relative paths are replaced by resolved ones.
    """
    out: list[str] = []
    for flag, field in FLAG_FIELDS.items():
        value = getattr(args, field, None)
        if value is not None:
            resolved = getattr(config, field)
            if isinstance(value, list):  # a repeatable flag (--cors-origin)
                out += [part for item in value for part in (flag, str(item))]
                continue
            out += [flag, str(resolved if isinstance(resolved, Path) else value)]
    for flag, (field, _) in SWITCHES.items():
        if getattr(args, field, None) is not None:
            out.append(flag)
    if getattr(args, 'settings_file', None) is not None:
        out += ['--config', str(args.settings_file.absolute())]
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``filestorectl`` (console script and bin/filestorectl)."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # a typo'd flag: show the subcommand's usage, not the top level's
        subparser(parser, args).error(f'unrecognized arguments: {" ".join(extra)}')
    try:
        if args.command == 'tokens':
            return _tokens(args)
        config = _defaults(args, config_from(args))
        return dispatch(args, config)
    except ConfigError as exc:  # UsageError, FieldError, TokensFileError...
        _err(str(exc))
        return 2
    except StoreError as exc:  # StoreMismatch, BackendUnavailable...
        _err(exc.detail)
        return 1
    except OSError as exc:
        _err(f'{exc.strerror or exc}: {exc.filename}' if exc.filename else str(exc))
        return 1
    except KeyboardInterrupt:
        _err('interrupted')
        return 130


def _err(message: str) -> None:
    print(f'filestorectl: {message}', file=sys.stderr, flush=True)


def _explicit(args: argparse.Namespace, flag_field: str) -> bool:
    env = ENV_PREFIX + flag_field.upper()
    return getattr(args, flag_field, None) is not None or env in os.environ


def _defaults(args: argparse.Namespace, config: Config) -> Config:
    """The per-user pidfile (and ./wsgi-store.log) unless a pidfile was given."""
    if args.command not in (*SERVICE_COMMANDS, *CONTROL_COMMANDS):
        return config
    if _explicit(args, 'pidfile'):
        return config
    from wsgi_store.ops.pidfile import default_pidfile

    config = config.replace(pidfile=default_pidfile(config.port))
    if config.logfile is None and args.command in ('start', 'restart'):
        config = config.replace(logfile=Path(LOG_NAME).absolute())
    return config


def dispatch(args: argparse.Namespace, config: Config) -> int:
    """Run the subcommand; modules are imported only when needed."""
    command = args.command
    check_arguments(args, config)
    if command not in (*CONTROL_COMMANDS, 'migrate', 'nginx-config'):
        check_backend(args, config)  # nginx's site needs no bucket
    if command in SERVICE_COMMANDS:
        _warn_if_open(config)
    if command in (*SERVICE_COMMANDS, *CONTROL_COMMANDS):
        return _control(args, config)
    if command in ('systemd-unit', 'nginx-config'):
        from wsgi_store.ops.generators import nginx_config, systemd_unit

        return (systemd_unit if command == 'systemd-unit' else nginx_config)(
            args, config, given_flags(args, config)
        )
    if command == 'migrate':
        return _migrate(args, config)
    from wsgi_store.maintenance import tasks as maintenance

    if command == 'verify':
        # The progress bar only on a terminal: a log or a pipe gets findings
        # and the summary as plain lines.
        progress = sys.stderr.isatty()
        return maintenance.verify(config, repair=args.repair, progress=progress)
    if command == 'gc':
        return maintenance.gc(config, older_than=args.older_than)
    return maintenance.stats(config, as_json=args.json)


def check_arguments(args: argparse.Namespace, config: Config) -> None:
    """Values argparse cannot check alone: the hash, --config, --older-than."""
    if args.command not in CONTROL_COMMANDS:
        from wsgi_store.hashing import available_algorithms

        known = available_algorithms()
        if config.hash not in known:
            given = '--hash' if args.hash is not None else f'{ENV_PREFIX}HASH'
            raise UsageError(
                f'{given}: unknown hash algorithm {config.hash!r} '
                f'(use one of {", ".join(known)})'
            )
    settings = getattr(args, 'settings_file', None)
    if settings is not None and not settings.is_file():
        raise UsageError(f'--config {settings}: no such file')
    older_than = getattr(args, 'older_than', None)
    if older_than is not None and older_than < 0:
        raise UsageError(f'--older-than: must not be negative, not {older_than:g}')


def check_backend(args: argparse.Namespace, config: Config, what: str = '') -> None:
    """The S3 backend needs a bucket: say so before anything connects."""
    if config.backend != 's3' or config.s3_bucket:
        return
    if not what:
        given_as_flag = getattr(args, 'backend', None) is not None
        what = '--backend s3' if given_as_flag else f'{ENV_PREFIX}BACKEND=s3'
    raise UsageError(
        f'{what} needs a bucket: give --s3-bucket BUCKET (or set {ENV_PREFIX}S3_BUCKET)'
    )


def _warn_if_open(config: Config) -> None:
    from wsgi_store.ops.netwarn import network_warning

    warning = network_warning(config)
    if warning:
        _err(warning)


def _control(args: argparse.Namespace, config: Config) -> int:
    from wsgi_store.ops import daemon

    wait = getattr(args, 'wait', None)
    start_wait = daemon.START_TIMEOUT if wait is None else wait
    settings = getattr(args, 'settings_file', None)
    command = args.command
    if command in ('start', 'restart') and not _explicit(args, 'pidfile'):
        from wsgi_store.ops.pidfile import make_private_dir

        make_private_dir(config.pidfile.parent)
    if command == 'start':
        return daemon.start(config, settings, start_wait)
    if command == 'restart':
        return daemon.restart(config, settings, start_wait)
    if command == 'run':
        explicit = _explicit(args, 'pidfile')
        return daemon.run(config, settings, config.pidfile if explicit else None)
    if command == 'stop':
        return daemon.stop(config, wait)
    if command == 'reload':
        return daemon.reload(config)
    if command == 'status':
        return daemon.status(config)
    return daemon.get_pid(config)


def _migrate(args: argparse.Namespace, config: Config) -> int:
    from wsgi_store.maintenance.migrate import migrate, open_source, open_target

    source_config = backend_config(config, args.source, '--from')
    target_config = backend_config(config, args.target, '--to')
    source = open_source(source_config, f'--from {args.source}')
    try:
        target = open_target(target_config, f'--to {args.target}')
    except BaseException:
        source.close()
        raise
    try:
        summary = migrate(source, target, progress=sys.stderr.isatty())
    except StoreError as exc:
        _err(f'migrate: {exc.detail}')
        return 1
    finally:
        source.close()
        target.close()
    for hex_hash, reason in summary.failures.items():
        print(f'failed {hex_hash}: {reason}')
    print(summary)
    return 0 if summary.ok else 1


def backend_config(config: Config, spec: str, flag: str = '--from') -> Config:
    """The config for the backend ``spec`` names.

    ``fs:DIR`` or ``DIR``: a filesystem store; ``s3``: the S3 settings as
    configured; ``s3://BUCKET[/PREFIX]``: those settings with another bucket.
    """
    if spec == 's3':
        result = config.replace(backend='s3')
        check_backend(argparse.Namespace(), result, f'{flag} s3')
        return result
    if spec.startswith('s3://'):
        bucket, _, prefix = spec.removeprefix('s3://').partition('/')
        if not bucket:
            raise UsageError(f'{flag} {spec}: no bucket (s3://BUCKET[/PREFIX])')
        return config.replace(backend='s3', s3_bucket=bucket, s3_prefix=prefix)
    path = spec.removeprefix('fs:')
    if not path:
        raise UsageError(f'{flag} {spec}: no directory (fs:DIR)')
    return config.replace(backend='fs', store_dir=Path(path))


def _tokens(args: argparse.Namespace) -> int:
    from wsgi_store.ops.tokens_cli import main as tokens_main

    raw = args.tokens_file or os.environ.get(f'{ENV_PREFIX}TOKENS_FILE') or None
    options = {
        k: getattr(args, k) for k in ('scopes', 'fingerprint') if hasattr(args, k)
    }
    path = Path(raw).absolute() if raw else None
    return tokens_main(args.tokens_command, path, **options)


if __name__ == '__main__':
    sys.exit(main())

"""``filestorectl``'s command line: the parser and the flag -> setting tables.

Each subcommand accepts only the flags it uses: maintenance commands
(``verify``, ``gc``, ``stats``) take the storage flags, not the server's;
``status``, ``get_pid`` and ``reload`` take no ``--wait``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

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
    '--cors-origin': 'cors_origins',
    '--body-key-file': 'nginx_body_key_file',
}
REPEATABLE = frozenset({'--cors-origin'})  # each use adds one value (a list)
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
    '--max-size': 'largest upload in bytes (K/M/G suffixes), 0 = unlimited',
    '--pidfile': 'pidfile (default: $XDG_RUNTIME_DIR/wsgi-store/PORT.pid, '
    'else ~/.local/state/wsgi-store/PORT.pid)',
    '--logfile': 'log file (start: default ./wsgi-store.log, or wsgi-store.log '
    'next to a --pidfile)',
    '--accel-redirect': 'nginx internal location for X-Accel-Redirect, e.g. /_store',
    '--tokens': 'file of bearer tokens required to write (and read)',
    '--body-key-file': 'the secret nginx sends with each body file it names '
    '(--body-offload; nginx-config creates it, mode 0600, if missing)',
    '--cors-origin': 'an origin (scheme://host[:port]) whose web pages may upload '
    'and read through CORS (repeatable)',
}
FLAG_FIELDS = {**STORAGE_FLAGS, **SERVER_FLAGS}


def _add_switches(parser: argparse.ArgumentParser, *flags: str) -> None:
    """Flags without a value that set one setting (``SWITCHES``)."""
    for flag in flags:
        field, value = SWITCHES[flag]
        parser.add_argument(
            flag, dest=field, action='store_const', const=value, help=HELP.get(flag)
        )


def _storage_parent() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(add_help=False)
    for flag, field in STORAGE_FLAGS.items():
        parser.add_argument(flag, dest=field, help=HELP.get(flag))
    return parser


def _server_parent() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(add_help=False, parents=[_storage_parent()])
    for flag, field in SERVER_FLAGS.items():
        action = 'append' if flag in REPEATABLE else None
        parser.add_argument(flag, dest=field, action=action, help=HELP.get(flag))
    _add_switches(parser, *SWITCHES)
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
        parser.add_argument(flag, dest=FLAG_FIELDS[flag], help=HELP.get(flag))
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
        ('restart', 'check the new settings, stop, then start with them'),
    ):
        cmd = sub.add_parser(name, parents=[server], help=text)
        cmd.add_argument('--wait', type=float, help='seconds to wait for /healthz')
    sub.add_parser('run', parents=[server], help='serve in the foreground (systemd)')
    stop = sub.add_parser(
        'stop', parents=[control], help='SIGTERM, wait for the graceful stop, SIGKILL'
    )
    stop.add_argument('--wait', type=float, help='seconds to wait before SIGKILL')
    for name, text in (
        ('reload', 'SIGHUP: re-read settings, replace workers gracefully'),
        ('status', 'LSB: 0 running, 1 dead with pidfile, 3 stopped, 4 unknown'),
        ('get_pid', 'print the pid of the running service'),
    ):
        sub.add_parser(name, parents=[control], help=text)
    _add_generators(sub, server)
    verify = sub.add_parser('verify', parents=[storage], help='re-hash every object')
    verify.add_argument('--repair', action='store_true', help='quarantine bad ones')
    gc = sub.add_parser('gc', parents=[storage], help='remove stale temp uploads')
    gc.add_argument('--older-than', type=float, help='seconds (default temp_max_age)')
    stats = sub.add_parser('stats', parents=[storage], help='count objects and bytes')
    stats.add_argument('--json', action='store_true', help='print JSON')
    migrate = sub.add_parser('migrate', parents=[storage], help='copy every object')
    _add_switches(migrate, '--no-fsync')
    migrate.add_argument('--from', dest='source', required=True, metavar='SPEC')
    migrate.add_argument('--to', dest='target', required=True, metavar='SPEC')
    _add_tokens(sub)
    return parser


def _add_generators(
    sub: argparse._SubParsersAction, server: argparse.ArgumentParser
) -> None:
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
    site.add_argument(
        '--body-offload',
        action='store_true',
        help='nginx receives upload bodies into STORE/tmp/nginx-body and the app '
        'adopts the file (start the app with WSGI_STORE_NGINX_BODY_DIR and the '
        'same --body-key-file)',
    )


def _add_tokens(sub: argparse._SubParsersAction) -> None:
    tokens = sub.add_parser('tokens', help='add, list and revoke bearer tokens')
    actions = tokens.add_subparsers(
        dest='tokens_command', required=True, metavar='ACTION'
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        '--tokens',
        dest='tokens_file',
        help='the tokens file (default: $WSGI_STORE_TOKENS_FILE)',
    )
    add = actions.add_parser(
        'add', parents=[common], help='append a new random token, print it'
    )
    add.add_argument(
        '--scopes', required=True, help='comma-separated: read,write,delete,metrics'
    )
    actions.add_parser(
        'list', parents=[common], help='scopes and fingerprints (never the tokens)'
    )
    revoke = actions.add_parser(
        'revoke', parents=[common], help='remove the token with this fingerprint'
    )
    revoke.add_argument('fingerprint', metavar='FINGERPRINT')


def subparser(
    parser: argparse.ArgumentParser, args: argparse.Namespace
) -> argparse.ArgumentParser:
    """The innermost subcommand's parser (for its usage line in errors)."""
    current = parser
    for dest in ('command', 'tokens_command'):
        name = getattr(args, dest, None)
        action = next(
            (
                a
                for a in current._actions
                if isinstance(a, argparse._SubParsersAction) and a.dest == dest
            ),
            None,
        )
        if name is None or action is None:
            break
        current = action.choices[name]
    return current

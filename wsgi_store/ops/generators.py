"""``filestorectl systemd-unit`` and ``nginx-config``: print (or install) the text.

Every path written is absolute (nginx and systemd do not run in the caller's
directory). Warnings go to stderr, so stdout stays exactly the file: a store
that does not exist yet, and for the unit a store under ``/home``, ``/root``
or ``/tmp``, which ``ProtectHome=yes`` and ``PrivateTmp=yes`` hide from the
service.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from wsgi_store.config import Config

HIDDEN_BY_UNIT = {  # directory -> the unit setting that hides it from the service
    Path('/home'): 'ProtectHome=yes',
    Path('/root'): 'ProtectHome=yes',
    Path('/run/user'): 'ProtectHome=yes',
    Path('/tmp'): 'PrivateTmp=yes',
    Path('/var/tmp'): 'PrivateTmp=yes',
}


def _warn(message: str) -> None:
    print(f'filestorectl: warning: {message}', file=sys.stderr, flush=True)


def store_warnings(config: Config, created_by: Path | None = None) -> list[str]:
    """What is wrong with the store for a generated file (empty when fine)."""
    if config.backend != 'fs':
        return []
    store = config.store_dir
    if created_by is not None and store.is_relative_to(created_by):
        return []  # systemd's StateDirectory= creates it
    if not store.exists():
        return [f'the store {store} does not exist: create it before starting']
    if not store.is_dir():
        return [f'the store {store} is not a directory']
    return []


def hidden_warnings(config: Config) -> list[str]:
    """Paths of the unit that its sandbox hides from the service."""
    paths = {'store': config.store_dir} if config.backend == 'fs' else {}
    if config.logfile is not None:
        paths['log file'] = config.logfile
    if config.tokens_file is not None:
        paths['tokens file'] = config.tokens_file
    out = []
    for what, path in paths.items():
        for directory, setting in HIDDEN_BY_UNIT.items():
            if path.is_relative_to(directory):
                out.append(
                    f'the {what} {path} is under {directory}, which the unit hides '
                    f'from the service ({setting}): use a directory such as '
                    '/var/lib/wsgi-store or /srv'
                )
    return out


def systemd_unit(args: argparse.Namespace, config: Config, flags: list[str]) -> int:
    """Print the unit, or write it with ``--install``."""
    from wsgi_store.ops import systemd

    if args.store_dir is None and 'WSGI_STORE_STORE_DIR' not in os.environ:
        config = config.replace(store_dir=systemd.STATE_DIR)
    exec_path = args.exec_path or systemd.default_exec_path()
    if not exec_path.startswith('/'):
        exec_path = os.path.abspath(exec_path)
    text = systemd.unit_text(
        config, run_flags=flags, exec_path=exec_path, user=args.user
    )
    for warning in [
        *store_warnings(config, systemd.STATE_DIR),
        *hidden_warnings(config),
    ]:
        _warn(warning)
    if not args.install:
        print(text, end='')
        return 0
    path = (args.unit_path or systemd.UNIT_PATH).absolute()
    try:
        steps = systemd.install(text, path, config, args.user)
    except OSError as exc:
        print(
            f'filestorectl: cannot write {path}: {exc.strerror or exc}', file=sys.stderr
        )
        return 1
    print(f'wrote {path}; next, as root:\n' + '\n'.join(f'  {s}' for s in steps))
    return 0


def nginx_config(args: argparse.Namespace, config: Config, flags: list[str]) -> int:
    """Print the nginx site (text for inside ``http {}``)."""
    from wsgi_store.ops.nginx import reads_are_public, site_config

    del flags  # the site needs the settings, not the command line
    serves_files = bool(config.accel_redirect) or (
        args.direct_reads and reads_are_public(config)
    )
    if serves_files:  # nginx reads the store itself
        for warning in store_warnings(config):
            _warn(warning)
    access_log = args.access_log
    if access_log and not access_log.startswith('/'):
        access_log = os.path.abspath(access_log)
    text = site_config(
        config,
        listen=args.listen_port,
        server_name=args.server_name,
        upstreams=args.upstream,
        access_log=access_log,
        direct_reads=args.direct_reads,
        body_offload=args.body_offload,
    )
    print(text, end='')
    return 0

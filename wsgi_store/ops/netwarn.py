"""The warning ``filestorectl`` prints when the service is reachable and open."""

from __future__ import annotations

import ipaddress

from wsgi_store.config import Config


def network_warning(config: Config) -> str | None:
    """The warning to print when the service is reachable and unprotected.

    Returns:
        The text when the service binds a non-loopback address without a
        tokens file, else None.
    """
    if config.tokens_file is not None or _is_loopback(config.host):
        return None
    return (
        f'WARNING: listening on {config.host}:{config.port} without a tokens file: '
        'anyone who can reach this address can read, write and delete every '
        'object. Give --tokens FILE (and --public-read for open downloads), or '
        'bind to 127.0.0.1 behind a proxy that authenticates.'
    )


def _is_loopback(host: str) -> bool:
    if host == 'localhost':
        return True
    try:
        address = ipaddress.ip_address(host.strip('[]'))
    except ValueError:
        return False  # a host name: it may resolve to anything
    mapped = getattr(address, 'ipv4_mapped', None)
    return bool(address.is_loopback or (mapped is not None and mapped.is_loopback))


__all__ = ['network_warning']

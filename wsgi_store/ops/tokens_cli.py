"""``filestorectl tokens add|list|revoke``: manage the bearer tokens file.

The file format is the service's (``TOKEN SCOPES`` per line, see
:mod:`wsgi_store.http.auth`); this module only edits it. A token is shown once,
when ``add`` makes it; afterwards it is named by its fingerprint: the first
16 hex digits of its SHA-256, which identify it without revealing it.

The running service notices the change by itself (it re-reads the file when
its inode, size or mtime change): ``add`` appends one line in one write,
``revoke`` writes a new file beside the old one and renames it over it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

TOKEN_BYTES = 32  # 256 random bits, 43 URL-safe base64 characters
FINGERPRINT_CHARS = 16


class TokensCommandError(Exception):
    """The command cannot be done; the message says why (exit 1)."""


class TokensUsageError(TokensCommandError):
    """The command line is wrong (exit 2)."""


def _auth() -> ModuleType:
    """The module that owns the file format (imported when needed)."""
    from wsgi_store.http import tokens

    return tokens


def fingerprint(digest: bytes) -> str:
    """The public name of a token: the start of its SHA-256, in hex."""
    return digest.hex()[:FINGERPRINT_CHARS]


def new_token() -> str:
    """A random token: 256 bits, URL-safe base64 (an RFC 6750 b64token)."""
    token = secrets.token_urlsafe(TOKEN_BYTES)
    while len(token) < _auth().MIN_TOKEN_LENGTH:  # pragma: no cover - 43 > 16
        token += secrets.token_urlsafe(TOKEN_BYTES)
    return token


def parse_scopes(text: str) -> list[str]:
    """``read,write`` -> ``['read', 'write']``; unknown scopes are an error."""
    scopes = [s for s in text.replace(' ', ',').split(',') if s]
    known = _auth().SCOPES
    unknown = sorted(set(scopes) - known)
    if not scopes or unknown:
        problem = f'unknown scope {", ".join(unknown)}' if unknown else 'no scope'
        raise TokensUsageError(
            f'--scopes {text!r}: {problem} (use {",".join(sorted(known))})'
        )
    return list(dict.fromkeys(scopes))


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Serialise concurrent ``tokens`` commands on the same file."""
    lock = path.with_name(f'.{path.name}.lock')
    fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding='utf-8')
    except FileNotFoundError:
        return ''
    except (OSError, UnicodeDecodeError) as exc:
        raise TokensCommandError(f'cannot read the tokens file {path}: {exc}') from None


def _grants(text: str, path: Path) -> tuple:
    """The file's grants; a file without tokens is fine here (not for start)."""
    auth = _auth()
    try:
        return auth.parse_tokens(text, f'tokens file {path}', allow_empty=True)
    except auth.TokensFileError as exc:
        raise TokensCommandError(str(exc)) from None


def add(path: Path, scopes_text: str) -> int:
    """Append a new token with ``scopes``; print it (once) on stdout."""
    scopes = parse_scopes(scopes_text)
    if not path.parent.is_dir():
        raise TokensCommandError(f'the directory of {path} does not exist')
    token = new_token()
    line = f'{token} {",".join(scopes)}\n'
    with _locked(path):
        text = _read(path)
        _grants(text, path)  # never append to a file the service rejects
        if text and not text.endswith('\n'):
            line = '\n' + line
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, line.encode())
            os.fsync(fd)
        finally:
            os.close(fd)
    digest = _auth().token_digest(token)
    print(token)
    print(
        f'added token {fingerprint(digest)} ({",".join(scopes)}) to {path}; '
        'it is shown only now',
        file=sys.stderr,
    )
    return 0


def list_tokens(path: Path) -> int:
    """Print one line per token: fingerprint, scopes, line number."""
    if not path.exists():
        raise TokensCommandError(f'no tokens file {path}')
    grants = _grants(_read(path), path)
    if not grants:
        print(f'filestorectl: tokens list: no tokens in {path}', file=sys.stderr)
    for grant in grants:
        scopes = ','.join(sorted(grant.scopes))
        print(f'{fingerprint(grant.digest)}  {scopes:<28} line {grant.line}')
    return 0


def revoke(path: Path, wanted: str) -> int:
    """Remove the token whose fingerprint is ``wanted``."""
    wanted = wanted.strip().lower()
    with _locked(path):
        text = _read(path)
        if not text:
            raise TokensCommandError(f'no tokens file {path}')
        grants = _grants(text, path)
        matches = [g for g in grants if fingerprint(g.digest) == wanted]
        if not matches:
            raise TokensCommandError(
                f'no token with fingerprint {wanted} in {path} '
                '(filestorectl tokens list shows them)'
            )
        lines = text.splitlines(keepends=True)
        del lines[matches[0].line - 1]
        _replace(path, ''.join(lines))
    print(f'revoked {wanted} from {path}')
    if len(grants) == 1:
        print(
            f'filestorectl: warning: that was the last token in {path}: the running '
            'service now refuses every request that needs one, and a start with '
            'this file fails until a token is added',
            file=sys.stderr,
        )
    return 0


def _replace(path: Path, text: str) -> None:
    """Write ``text`` beside ``path`` with its mode, fsync, rename over it."""
    mode = path.stat().st_mode & 0o777
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f'.{path.name}.')
    try:
        os.fchmod(fd, mode)
        os.write(fd, text.encode())
        os.fsync(fd)
        os.close(fd)
        fd = -1
        os.replace(tmp, path)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def main(command: str, tokens_file: Path | None, **options: str) -> int:
    """Run ``tokens COMMAND``; errors are one line on stderr and exit 1."""
    if tokens_file is None:
        print(
            'filestorectl: tokens: no tokens file: give --tokens FILE '
            '(or set WSGI_STORE_TOKENS_FILE)',
            file=sys.stderr,
        )
        return 2
    try:
        if command == 'add':
            return add(tokens_file, options['scopes'])
        if command == 'list':
            return list_tokens(tokens_file)
        return revoke(tokens_file, options['fingerprint'])
    except (TokensCommandError, OSError) as exc:
        print(f'filestorectl: tokens {command}: {exc}', file=sys.stderr)
        return 2 if isinstance(exc, TokensUsageError) else 1

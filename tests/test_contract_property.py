"""Property-based test of the backend contract against a model dictionary.

Hypothesis drives any sequence of put / put-that-fails / get / open / stat /
exists / delete / iter_hashes against a backend and a plain ``dict`` and checks
that they always agree, and that no temporary upload is ever left behind. The
test is parametrised over :data:`FACTORIES`: each run (example) gets a fresh,
empty backend from its factory and cleans it up afterwards, so no state leaks
from one example into the next (hypothesis replays and shrinks them).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from tests import s3env
from tests.streams import BreakingStream
from wsgi_store.backends.base import Backend
from wsgi_store.backends.fs import FilesystemBackend
from wsgi_store.errors import DigestMismatch, IncompleteBody, NotFound
from wsgi_store.hashing import Expectation

# A few fixed bodies so that the same content comes back (dedupe paths).
POOL = [b'', b'a', b'hello store\n', bytes(range(256)) * 40]
CONTENTS = st.one_of(st.sampled_from(POOL), st.binary(max_size=12_000))
ABSENT = st.binary(min_size=32, max_size=32).map(bytes.hex)
EXAMPLES = {'fs': 50, 's3': 8}  # network backends: fewer, slower examples

# A factory makes a fresh, empty backend under ``base`` and returns it with the
# function that removes everything it made.
Factory = Callable[[Path], tuple[Backend, Callable[[], None]]]


def fs_factory(base: Path) -> tuple[Backend, Callable[[], None]]:
    root = Path(tempfile.mkdtemp(dir=base))
    # fsync off: the contract is the same, and durability has its own tests.
    backend = FilesystemBackend(root / 'store', chunk_bytes=4096, fsync=False)
    return backend, lambda: shutil.rmtree(root, ignore_errors=True)


def s3_factory(base: Path) -> tuple[Backend, Callable[[], None]]:
    stack = contextlib.ExitStack()
    backend = stack.enter_context(s3env.s3_backend('property', chunk_bytes=4096))
    return backend, stack.close


FACTORIES: dict[str, Factory] = {'fs': fs_factory, 's3': s3_factory}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def machine_for(factory: Factory, base: Path) -> type[RuleBasedStateMachine]:
    """A state machine class whose every run uses a fresh backend from ``factory``."""

    class ContractMachine(RuleBasedStateMachine):
        hashes = Bundle('hashes')

        def __init__(self) -> None:
            super().__init__()
            self.backend, self._cleanup = factory(base)
            self.model: dict[str, bytes] = {}

        def teardown(self) -> None:
            self._cleanup()

        @initialize()
        def starts_empty(self) -> None:
            assert list(self.backend.iter_hashes()) == []

        @rule(target=hashes, data=CONTENTS)
        def put(self, data: bytes) -> str:
            name = sha256(data)
            result = self.backend.put(io.BytesIO(data))
            assert (result.hash, result.size) == (name, len(data))
            assert result.created is (name not in self.model)
            self.model[name] = data
            return name

        @rule(target=hashes, data=CONTENTS)
        def put_with_expected_hash(self, data: bytes) -> str:
            name = sha256(data)
            expect = [Expectation('sha256', bytes.fromhex(name), 'test')]
            result = self.backend.put(io.BytesIO(data), expect=expect)
            assert result.hash == name
            self.model[name] = data
            return name

        @rule(data=CONTENTS, wrong=ABSENT)
        def put_with_wrong_hash_stores_nothing(self, data: bytes, wrong: str) -> None:
            expect = [Expectation('sha256', bytes.fromhex(wrong), 'test')]
            with pytest.raises(DigestMismatch):
                self.backend.put(io.BytesIO(data), expect=expect)

        @rule(data=CONTENTS)
        def put_from_a_client_that_goes_away(self, data: bytes) -> None:
            with pytest.raises(IncompleteBody):
                self.backend.put(BreakingStream(data))

        @rule(data=CONTENTS)
        def put_shorter_than_announced(self, data: bytes) -> None:
            with pytest.raises(IncompleteBody):
                self.backend.put(io.BytesIO(data), length=len(data) + 1)

        @rule(name=st.one_of(hashes, ABSENT), inline=st.sampled_from([0, 1 << 20]))
        def get(self, name: str, inline: int) -> None:
            if name not in self.model:
                with pytest.raises(NotFound):
                    self.backend.get(name, inline_limit=inline)
                return
            download = self.backend.get(name, inline_limit=inline)
            try:
                assert download.info.size == len(self.model[name])
                if download.data is not None:
                    body = download.data
                elif download.file is not None:
                    body = download.file.read()
                else:
                    with self.backend.open(name) as f:
                        body = f.read()
            finally:
                download.close()
            assert body == self.model[name]

        @rule(name=hashes, start=st.integers(0, 13_000), size=st.integers(0, 5000))
        def open_range(self, name: str, start: int, size: int) -> None:
            if name not in self.model:
                with pytest.raises(NotFound):
                    self.backend.open(name)
                return
            data = self.model[name]
            start = min(start, max(len(data) - 1, 0))
            end = min(start + size, len(data))
            with self.backend.open(name, start, end) as f:
                got = f.read(end - start) if end > start else b''
            assert got == data[start:end]

        @rule(name=st.one_of(hashes, ABSENT))
        def stat_and_exists(self, name: str) -> None:
            assert self.backend.exists(name) is (name in self.model)
            if name in self.model:
                assert self.backend.stat(name).size == len(self.model[name])
            else:
                with pytest.raises(NotFound):
                    self.backend.stat(name)

        @rule(name=consumes(hashes))
        def delete(self, name: str) -> None:
            if name in self.model:
                self.backend.delete(name)
                del self.model[name]
            else:
                with pytest.raises(NotFound):
                    self.backend.delete(name)
            assert not self.backend.exists(name)

        @rule(name=ABSENT)
        def delete_absent(self, name: str) -> None:
            with pytest.raises(NotFound):
                self.backend.delete(name)

        @rule(after=st.one_of(st.just(''), hashes, ABSENT))
        def iter_hashes(self, after: str) -> None:
            expected = sorted(h for h in self.model if h > after)
            assert list(self.backend.iter_hashes(after)) == expected

        @invariant()
        def no_temporary_uploads_left(self) -> None:
            assert self.backend.temp_names() == []

    return ContractMachine


@pytest.mark.parametrize('name', sorted(FACTORIES))
def test_backend_contract_matches_a_dict(name: str, tmp_path: Path) -> None:
    if name == 's3':
        s3env.require_s3()  # skip locally, fail under CI=true
    run_state_machine_as_test(
        machine_for(FACTORIES[name], tmp_path),
        settings=settings(
            max_examples=EXAMPLES.get(name, 8),
            stateful_step_count=40,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
            database=None,
        ),
    )


@pytest.mark.parametrize('fsync', [True, False])
def test_fs_durability_order(tmp_path: Path, monkeypatch, fsync: bool) -> None:
    """With fsync on, put returns only after: data flushed, rename, directory
    flushed - in that order. With fsync off, neither flush happens."""
    from wsgi_store.backends import dirsync

    events: list[str] = []
    real_fdatasync, real_replace = os.fdatasync, os.replace
    real_fsync_dir = dirsync.fsync_dir

    def fdatasync(fd: int) -> None:
        events.append('fdatasync')
        real_fdatasync(fd)

    def replace(src, dst) -> None:
        events.append('rename')
        real_replace(src, dst)

    def fsync_dir(path) -> None:
        events.append(f'fsync_dir {Path(path).name}')
        real_fsync_dir(path)

    backend = FilesystemBackend(tmp_path / 'store', fsync=fsync)
    monkeypatch.setattr(os, 'fdatasync', fdatasync)
    monkeypatch.setattr(os, 'replace', replace)
    monkeypatch.setattr(dirsync, 'fsync_dir', fsync_dir)
    name = backend.put(io.BytesIO(b'durable')).hash
    if fsync:
        assert events == ['fdatasync', 'rename', f'fsync_dir {name[:2]}']
    else:
        assert events == ['rename']

"""Shared fixtures: a real filesystem store on tmp_path and WebTest apps over it."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import pytest
import webtest

from wsgi_store.app import create_app
from wsgi_store.backends.fs import FilesystemBackend
from wsgi_store.config import Config


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def store_dir(tmp_path: Path) -> Path:
    return tmp_path / 'store'


@pytest.fixture
def make_app(store_dir: Path) -> Callable[..., webtest.TestApp]:
    """Build a WebTest app over a real filesystem store; settings as keywords."""

    def factory(**settings: object) -> webtest.TestApp:
        config = Config(store_dir=store_dir).replace(**settings)
        app = create_app(config)
        # gunicorn marks its input as terminated; WebTest's is a BytesIO too.
        return webtest.TestApp(app, extra_environ={'wsgi.input_terminated': True})

    return factory


@pytest.fixture
def app(make_app: Callable[..., webtest.TestApp]) -> webtest.TestApp:
    return make_app()


@pytest.fixture
def fs_backend(store_dir: Path) -> FilesystemBackend:
    return FilesystemBackend(store_dir, 'sha256', chunk_bytes=64 * 1024)


@pytest.fixture(params=['fs', 's3'])
def backend(request: pytest.FixtureRequest, tmp_path: Path):
    """Every backend, for the contract suite (S3 from the environment's server)."""
    if request.param == 'fs':
        backend = FilesystemBackend(tmp_path / 'store', 'sha256', chunk_bytes=4096)
        yield backend
        backend.close()
        return
    from tests import s3env

    with s3env.s3_backend() as backend:
        yield backend

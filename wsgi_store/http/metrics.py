"""Prometheus metrics: a Falcon middleware that counts, and ``GET /metrics``.

Under gunicorn every worker is its own process, so the counters live in
prometheus-client's multiprocess mode: :mod:`wsgi_store.ops.hooks` creates a fresh
directory in the master and exports ``PROMETHEUS_MULTIPROC_DIR`` before the
workers fork; each worker writes its values to memory-mapped files there, and a
scrape (served by any worker) sums the files of every worker, live or dead.
Without that variable (WebTest, a single process) the metrics live in a
registry of their own, one per :class:`Metrics`.

Free bytes and free inodes of the store are read with ``statvfs`` when scraped,
never per request.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from time import perf_counter
from typing import Any

import falcon
from prometheus_client import CollectorRegistry, Counter, Histogram, values
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from wsgi_store.config import MULTIPROC_ENV, Config
from wsgi_store.errors import DigestMismatch
from wsgi_store.http.problems import PROBLEM_JSON

UNMATCHED = 'unmatched'
METHODS = frozenset({'GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'OPTIONS', 'PATCH'})
# Small objects are answered in ~0.1-0.5 ms; large transfers take seconds.
BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
    0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)  # fmt: skip
UPLOADS = frozenset({('POST', '/'), ('POST', '/files'), ('PUT', '/files/{file_hash}')})
DOWNLOADS = frozenset({('GET', '/'), ('GET', '/files/{file_hash}')})
DELETES = frozenset({('DELETE', '/'), ('DELETE', '/files/{file_hash}')})
TUS_ROUTES = frozenset({'/uploads', '/uploads/{upload_id}'})
_BODY_METHODS = frozenset(method for method, _ in UPLOADS)


def multiprocess_dir() -> str | None:
    """The multiprocess directory from the environment, or None."""
    return os.environ.get(MULTIPROC_ENV) or None


class StoreSpaceCollector(Collector):
    """Free bytes and inodes of the filesystem holding ``path``, read per scrape."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def collect(self) -> Iterator[Metric]:
        try:
            st = os.statvfs(self.path)
        except OSError:
            return  # a missing store shows as absent series; /readyz says why
        yield GaugeMetricFamily(
            'wsgi_store_free_bytes',
            'Bytes available to the service on the store filesystem.',
            value=st.f_bavail * st.f_frsize,
        )
        yield GaugeMetricFamily(
            'wsgi_store_free_inodes',
            'Inodes available on the store filesystem (0 where not accounted).',
            value=st.f_favail,
        )


class WorkerFilesCollector(MultiProcessCollector):
    """prometheus-client's multiprocess collector, safe while a worker boots."""

    def collect(self) -> Iterable[Metric]:
        # NOTE: a booting worker creates its file empty and only then sizes it;
        # the stock collector fails the whole scrape (500) if it reads the file
        # in between. An empty file holds no values yet: skip it.
        files = []
        for path in glob.glob(os.path.join(self._path, '*.db')):
            with contextlib.suppress(OSError):
                if os.stat(path).st_size >= 8:
                    files.append(path)
        return self.merge(files, accumulate=True)


class Metrics:
    """The metric objects of one app and the registry a scrape renders.

    Args:
        store_dir: the filesystem store to report free space of, or None (S3).
        multiproc_dir: prometheus-client's multiprocess directory, or None for
            a private in-process registry.
    """

    def __init__(self, store_dir: Path | None, multiproc_dir: str | None) -> None:
        _sync_value_class(multiproc_dir)
        self.multiprocess = multiproc_dir is not None
        self.registry = CollectorRegistry()
        # NOTE: in multiprocess mode the live objects must not be registered
        # where a scrape collects, or every value would count twice.
        own = None if self.multiprocess else self.registry
        if multiproc_dir is not None:
            WorkerFilesCollector(self.registry, path=multiproc_dir)
        if store_dir is not None:
            self.registry.register(StoreSpaceCollector(store_dir))
        self.requests = Counter(
            'wsgi_store_http_requests',
            'HTTP requests answered, by route template, method and status.',
            ['route', 'method', 'status'],
            registry=own,
        )
        self.duration = Histogram(
            'wsgi_store_http_request_duration_seconds',
            'Time to handle a request, up to the first byte of a streamed body.',
            ['route', 'method'],
            buckets=BUCKETS,
            registry=own,
        )
        self.uploaded = _counter(
            'upload_bytes', 'Request body bytes read by uploads.', own
        )
        self.downloaded = _counter(
            'download_bytes', 'Object bytes answered to GET (Content-Length).', own
        )
        self.created = _counter(
            'objects_created', 'Uploads that stored new objects.', own
        )
        self.deduplicated = _counter(
            'objects_deduplicated', 'Uploads of content already stored.', own
        )
        self.deleted = _counter('objects_deleted', 'Objects deleted.', own)
        self.mismatches = _counter(
            'digest_mismatches', 'Uploads refused: body differs from its digest.', own
        )
        self.tus = TusCounters(own)

    @classmethod
    def from_config(cls, config: Config) -> Metrics:
        """Metrics for an app built from ``config`` (mode from the environment)."""
        store = config.store_dir if config.backend == 'fs' else None
        return cls(store, multiprocess_dir())

    def render(self, accept: str | None) -> tuple[bytes, str]:
        """The exposition for a scrape: body and Content-Type (negotiated)."""
        encoder, content_type = choose_encoder(accept or '')
        return encoder(self.registry), content_type


class TusCounters:
    """Resumable uploads (``/uploads``): created, completed, expired, bytes.

    ``expired`` counts the uploads the service saw expire: the first request (in
    any worker) that finds an upload past ``Upload-Expires`` answers ``410`` and
    counts it once. ``filestorectl gc`` runs in a process of its own and prints
    how many it removed; an upload nobody asked about again is not counted here.
    """

    def __init__(self, registry: CollectorRegistry | None) -> None:
        self.created = _counter(
            'tus_uploads_created', 'Resumable uploads created.', registry
        )
        self.completed = _counter(
            'tus_uploads_completed',
            'Resumable uploads whose last byte arrived and became an object.',
            registry,
        )
        self.expired = _counter(
            'tus_uploads_expired',
            'Resumable uploads the service found expired (counted once each).',
            registry,
        )
        self.bytes = _counter(
            'tus_upload_bytes',
            'Bytes appended to resumable uploads (acknowledged offsets).',
            registry,
        )

    def count(self, resp: falcon.Response) -> None:
        """Count what the tus resource marked on ``resp.context``."""
        context = resp.context
        if getattr(context, 'tus_created', False):
            self.created.inc()
        if getattr(context, 'tus_completed', False):
            self.completed.inc()
        if getattr(context, 'tus_expired', False):
            self.expired.inc()
        appended = getattr(context, 'tus_bytes', 0)
        if appended:
            self.bytes.inc(appended)


def _counter(name: str, doc: str, registry: CollectorRegistry | None) -> Counter:
    return Counter(f'wsgi_store_{name}', doc, registry=registry)


def _sync_value_class(multiproc_dir: str | None) -> None:
    # NOTE: prometheus-client picks its value storage once, at import time. If
    # it was imported before the master exported the directory (or a test left
    # the variable behind), metrics made now would silently use the other mode.
    multiprocess = getattr(values.ValueClass, '_multiprocess', False)
    if (multiproc_dir is not None) != multiprocess:
        values.ValueClass = values.get_value_class()


class _CountingStream:
    """``req.stream`` for uploads: counts the body bytes the app reads."""

    __slots__ = ('_stream', 'count')

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read(size)
        self.count += len(data)
        return data

    def readline(self, size: int = -1) -> bytes:
        data = self._stream.readline(size)
        self.count += len(data)
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


class MetricsMiddleware:
    """Counts every request; cheap on the hot path (one cached child per key)."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        req.context.metrics_start = perf_counter()
        if req.method in _BODY_METHODS:  # the route is not known yet
            req.stream = _CountingStream(req.stream)

    def process_response(
        self,
        req: falcon.Request,
        resp: falcon.Response,
        resource: object,
        req_succeeded: bool,
    ) -> None:
        start = getattr(req.context, 'metrics_start', None)
        elapsed = perf_counter() - start if start is not None else 0.0
        route = req.uri_template or UNMATCHED
        method = req.method if req.method in METHODS else 'other'
        status = resp.status_code
        key = (route, method, status)
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = (
                self.metrics.requests.labels(route, method, str(status)),
                self.metrics.duration.labels(route, method),
            )
        children[0].inc()
        children[1].observe(elapsed)
        op = (method, route)
        if op in DOWNLOADS:
            self._count_download(resp, status)
        elif op in UPLOADS:
            self._count_upload(req, resp, status)
        elif op in DELETES and status == 200:
            self.metrics.deleted.inc()
        elif route in TUS_ROUTES:
            self.metrics.tus.count(resp)

    def _count_download(self, resp: falcon.Response, status: int) -> None:
        length = resp.content_length if status in (200, 206) else None
        if length:
            self.metrics.downloaded.inc(int(length))

    def _count_upload(
        self, req: falcon.Request, resp: falcon.Response, status: int
    ) -> None:
        if isinstance(req.stream, _CountingStream) and req.stream.count:
            self.metrics.uploaded.inc(req.stream.count)
        if status == 200:
            created = upload_created(resp)
            if created is True:
                self.metrics.created.inc()
            elif created is False:
                self.metrics.deduplicated.inc()
        elif status == 400 and problem_slug(resp) == DigestMismatch.slug:
            self.metrics.mismatches.inc()


def upload_created(resp: falcon.Response) -> bool | None:
    """Whether a successful upload stored a new object (None when unknown).

    Prefers ``resp.context.put_result`` (the backend's ``PutResult``, when the
    resource records it); otherwise reads the JSON answer's ``created``.
    """
    result = getattr(resp.context, 'put_result', None)
    if result is not None:
        return bool(result.created)
    if resp.content_type == falcon.MEDIA_JSON and resp.text:
        try:
            return bool(json.loads(resp.text)['created'])
        except (ValueError, KeyError, TypeError):
            return None
    return None


def problem_slug(resp: falcon.Response) -> str | None:
    """The slug of the problem an error answer carries (JSON or text/plain)."""
    text = resp.text or ''
    if resp.content_type == PROBLEM_JSON:
        try:
            return str(json.loads(text)['type']).rsplit('/', 1)[-1]
        except (ValueError, KeyError, TypeError):
            return None
    if text.startswith(f'400 {DigestMismatch.title}:'):
        return DigestMismatch.slug
    return None


class MetricsResource:
    """``GET /metrics``: the Prometheus text format (OpenMetrics when asked)."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.data, resp.content_type = self.metrics.render(req.get_header('Accept'))
        resp.cache_control = ['no-store']

    on_head = on_get

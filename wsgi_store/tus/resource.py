"""Falcon resources for tus 1.0.0: ``/uploads`` and ``/uploads/{upload_id}``.

For metrics, answers mark ``resp.context.tus_created``, ``tus_completed`` (an
object was stored), ``tus_bytes`` (bytes appended by this request) and
``tus_expired`` (the first answer, in any process, that found the upload expired).

Thin responders: parse the headers (:mod:`.headers`), act on the upload state
(:mod:`.core`, :mod:`.sessions`, :mod:`.complete`), set the answer; a request of the
IETF draft goes to :mod:`.draft`. The
headers every tus answer carries, ``OPTIONS`` and the version check are in
:class:`~wsgi_store.tus.protocol.TusMiddleware`.
"""

from __future__ import annotations

import falcon

from wsgi_store.errors import BadRequest
from wsgi_store.tus import headers as h
from wsgi_store.tus.complete import concatenate, finish
from wsgi_store.tus.core import Tus, new_upload
from wsgi_store.tus.draft import interop_version
from wsgi_store.tus.sessions import DATA, UploadInfo

__all__ = ['Tus', 'UploadResource', 'UploadsResource', 'new_upload']


@falcon.before(h.require_version)
class UploadsResource:
    """``/uploads``: ``POST`` creates an upload (tus creation, concatenation)."""

    def __init__(self, tus: Tus) -> None:
        self.tus = tus

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        tus = self.tus
        version = interop_version(req)
        if version is not None:
            tus.draft.create(req, resp, version)
            return
        concat = h.parse_concat(req.get_header('Upload-Concat'))
        if concat and not tus.uploads.concatenation:
            raise BadRequest('concatenation is not available on this backend')
        info = new_upload(
            tus,
            req,
            self._length(req, final=concat is not None and concat[0] == 'final'),
            concat[0] if concat else None,
        )
        if info.concat == 'final':
            self._final(req, resp, info, concat[1] if concat else [])
            return
        tus.uploads.create(info)
        resp.context.tus_created = True  # for metrics
        resp.status = falcon.HTTP_201
        resp.location = f'/uploads/{info.id}'
        if (req.content_type or '').split(';')[0].strip() == h.OFFSET_TYPE:
            tus.patch(req, resp, info, 0)  # creation-with-upload
        else:
            tus.describe(resp, info, head=False)

    def _length(self, req: falcon.Request, final: bool) -> int | None:
        length = h.parse_count(req.get_header('Upload-Length'), 'Upload-Length')
        defer = req.get_header('Upload-Defer-Length')
        if final:
            if length is not None or defer is not None:
                raise BadRequest('a final upload (Upload-Concat) takes no length')
            return None
        if defer is not None and (defer.strip() != '1' or length is not None):
            raise BadRequest('send Upload-Length, or Upload-Defer-Length: 1 alone')
        if length is None and defer is None:
            raise BadRequest('Upload-Length (or Upload-Defer-Length: 1) is required')
        if length is not None:
            self.tus.check_size(length)
        return length

    def _final(
        self, req: falcon.Request, resp: falcon.Response, info: UploadInfo, urls: list
    ) -> None:
        """Concatenate complete partial uploads into a new (complete) upload."""
        uploads = self.tus.uploads
        info.parts = [h.upload_id_from(url) for url in urls]
        total = 0
        for part_id in info.parts:
            part = uploads.load_live(part_id, info.owner)
            if part.concat != 'partial':
                raise BadRequest(f'/uploads/{part_id} is not a partial upload')
            if part.length is None or uploads.offset(part_id) != part.length:
                raise BadRequest(f'the partial upload /uploads/{part_id} is unfinished')
            total += part.length
        self.tus.check_size(total)
        info.length = total
        uploads.create(info)
        resp.context.tus_created = True
        resp.context.tus_completed = True
        with uploads.locked(info.id) as writer:
            concatenate([uploads.path(p, DATA) for p in info.parts], writer)
            finish(uploads, self.tus.backend, info, writer)
        for part_id in info.parts:
            uploads.remove(part_id, wait=0)  # tus allows it; saves their space
        resp.status = falcon.HTTP_201
        resp.location = f'/uploads/{info.id}'
        resp.set_header('Upload-Offset', str(total))
        self.tus.describe(resp, info, head=False)


@falcon.before(h.require_version)
class UploadResource:
    """``/uploads/{upload_id}``: ``HEAD`` (offset), ``PATCH`` (bytes), ``DELETE``."""

    def __init__(self, tus: Tus) -> None:
        self.tus = tus

    def on_head(
        self, req: falcon.Request, resp: falcon.Response, upload_id: str
    ) -> None:
        version = interop_version(req)
        if version is not None:
            self.tus.draft.head(req, resp, upload_id)
            return
        info = self.tus.settle(self.tus.load_live(req, resp, upload_id))
        resp.cache_control = ['no-store']
        self.tus.describe(resp, info, head=True)

    def on_patch(
        self, req: falcon.Request, resp: falcon.Response, upload_id: str
    ) -> None:
        version = interop_version(req)
        if version is not None:
            self.tus.draft.append(req, resp, upload_id, version)
            return
        content_type = (req.content_type or '').split(';')[0].strip().lower()
        if content_type != h.OFFSET_TYPE:
            raise h.UnsupportedType(f'PATCH needs Content-Type: {h.OFFSET_TYPE}')
        offset = h.parse_count(req.get_header('Upload-Offset'), 'Upload-Offset')
        if offset is None:
            raise BadRequest('PATCH needs an Upload-Offset header')
        info = self.tus.load_live(req, resp, upload_id)
        if info.concat == 'final':
            raise h.ForbiddenPatch('a final (concatenated) upload cannot be patched')
        self.tus.patch(req, resp, info, offset)
        resp.status = falcon.HTTP_204

    def on_delete(
        self, req: falcon.Request, resp: falcon.Response, upload_id: str
    ) -> None:
        info = self.tus.uploads.load(upload_id, self.tus.owner(req))
        if not self.tus.uploads.remove(info.id):
            raise h.Locked('another request is writing to this upload')
        resp.status = falcon.HTTP_204

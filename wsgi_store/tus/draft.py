"""The IETF draft "Resumable Uploads for HTTP" on the tus upload resources.

draft-ietf-httpbis-resumable-upload, interop versions 3 to 6 (the header
``Upload-Draft-Interop-Version``; tus-js-client 4 sends ``5`` in its
``ietf-draft-03`` mode and ``6`` in ``ietf-draft-05``). A request carrying that
header speaks the draft instead of tus 1.0.0, on the same ``/uploads`` routes and
the same upload state, so one upload could even be resumed in the other
protocol:

- ``POST /uploads`` creates an upload; its body (any media type) is the first
  bytes. ``Upload-Complete: ?1`` (versions 5, 6; ``Upload-Incomplete: ?0`` in 3,
  4) says the body is the whole representation; ``Upload-Length`` announces
  the length; without either the length stays open until a request says
  complete. The answer is ``201`` with ``Location``, ``Upload-Offset`` and
  ``Upload-Complete``. The interim ``104`` is not sent (optional).
- ``HEAD /uploads/{id}``: ``204`` with ``Upload-Offset``, ``Upload-Complete``,
  ``Upload-Length`` when known, ``Upload-Limit``, ``Cache-Control: no-store``.
- ``PATCH /uploads/{id}`` with ``Upload-Offset`` (and in version 6
  ``Content-Type: application/partial-upload``) appends; a wrong offset is
  ``409`` with the ``mismatching-upload-offset`` problem type, a request to a
  completed upload ``400`` ``completed-upload``, lengths that disagree ``400``
  ``inconsistent-upload-length``. ``204`` while incomplete; the completing
  answer is ``200``.
- ``DELETE /uploads/{id}`` cancels (``204``), as in tus.

Once complete, answers carry ``Content-Location`` and ``Upload-File-Hash`` like
tus answers do (tus-only headers such as ``Upload-Expires`` stay too).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import falcon

from wsgi_store.errors import BadRequest, StoreError
from wsgi_store.tus import headers as h

if TYPE_CHECKING:
    from wsgi_store.tus.core import Tus
    from wsgi_store.tus.sessions import UploadInfo

INTEROP_HEADER = 'Upload-Draft-Interop-Version'
INTEROP_VERSIONS = (3, 4, 5, 6)
PARTIAL_UPLOAD_TYPE = 'application/partial-upload'
IANA_PROBLEMS = 'https://iana.org/assignments/http-problem-types#'


class MismatchingOffset(StoreError):
    status, slug, title = 409, 'mismatching-upload-offset', 'Mismatching upload offset'


class CompletedUpload(StoreError):
    status, slug, title = 400, 'completed-upload', 'Upload is already completed'


class InconsistentLength(StoreError):
    status, slug, title = 400, 'inconsistent-upload-length', 'Inconsistent length'


def problem(cls: type[StoreError], detail: str, **extra: object) -> StoreError:
    """A draft error with its registered problem type (not the store's own)."""
    return cls(detail, type=IANA_PROBLEMS + cls.slug, **extra)


def interop_version(req: falcon.Request) -> int | None:
    """The draft's interop version the request speaks, or None (tus 1.0.0)."""
    value = req.get_header(INTEROP_HEADER)
    if value is None:
        return None
    text = value.strip()
    if not text.isdigit() or int(text) not in INTEROP_VERSIONS:
        supported = ', '.join(map(str, INTEROP_VERSIONS))
        raise BadRequest(
            f'{INTEROP_HEADER} {value!r} is not supported; use one of {supported}'
        )
    return int(text)


def _sf_boolean(value: str, name: str) -> bool:
    item = value.split(';', 1)[0].strip()  # parameters are allowed, ignored
    if item not in ('?0', '?1'):
        raise BadRequest(f'{name} must be a structured boolean (?0 or ?1)')
    return item == '?1'


def completeness(req: falcon.Request, version: int) -> bool:
    """Whether this request's content ends the upload (it must say)."""
    if version >= 5:
        value = req.get_header('Upload-Complete')
        if value is None:
            raise BadRequest('this request needs an Upload-Complete header')
        return _sf_boolean(value, 'Upload-Complete')
    value = req.get_header('Upload-Incomplete')
    return not _sf_boolean(value, 'Upload-Incomplete') if value is not None else True


def respond(req: falcon.Request, resp: falcon.Response, version: int) -> None:
    """Headers every draft answer carries (from the tus middleware)."""
    resp.set_header(INTEROP_HEADER, str(version))


class Draft:
    """The draft's creation, offset retrieval and append on the shared state."""

    def __init__(self, tus: Tus) -> None:
        self.tus = tus

    def create(self, req: falcon.Request, resp: falcon.Response, version: int) -> None:
        from wsgi_store.tus.core import new_upload

        complete = completeness(req, version)
        length = h.parse_count(req.get_header('Upload-Length'), 'Upload-Length')
        sent = req.content_length
        if complete and sent is not None:
            if length is not None and length != sent:
                raise problem(
                    InconsistentLength,
                    f'Upload-Length {length} differs from the complete content '
                    f'of {sent} bytes',
                )
            length = sent
        if length is not None:
            self.tus.check_size(length)
        info = new_upload(self.tus, req, length)
        self.tus.uploads.create(info)
        resp.context.tus_created = True  # for metrics
        resp.status = falcon.HTTP_201
        resp.location = f'/uploads/{info.id}'
        self._append(req, resp, info, 0, complete)
        resp.status = falcon.HTTP_201

    def head(self, req: falcon.Request, resp: falcon.Response, upload_id: str) -> None:
        tus = self.tus
        info = tus.settle(tus.load_live(req, resp, upload_id))
        resp.status = falcon.HTTP_204
        resp.cache_control = ['no-store']
        tus.describe(resp, info, head=True)
        offset = tus.uploads.offset(info.id)
        self._complete_header(resp, info, offset)
        limit = tus.config.max_upload_bytes
        if limit:
            resp.set_header('Upload-Limit', f'max-size={limit}')

    def append(
        self, req: falcon.Request, resp: falcon.Response, upload_id: str, version: int
    ) -> None:
        if version >= 6:
            content_type = (req.content_type or '').split(';')[0].strip().lower()
            if content_type != PARTIAL_UPLOAD_TYPE:
                raise h.UnsupportedType(
                    f'an append needs Content-Type: {PARTIAL_UPLOAD_TYPE}'
                )
        offset = h.parse_count(req.get_header('Upload-Offset'), 'Upload-Offset')
        if offset is None:
            raise BadRequest('an append needs an Upload-Offset header')
        complete = completeness(req, version)
        info = self.tus.load_live(req, resp, upload_id)
        if info.concat == 'final':
            raise h.ForbiddenPatch('a final (concatenated) upload cannot be appended')
        self._append(req, resp, info, offset, complete)

    # -- shared --------------------------------------------------------------------
    def _append(
        self,
        req: falcon.Request,
        resp: falcon.Response,
        info: UploadInfo,
        offset: int,
        complete: bool,
    ) -> None:
        """Append through tus's own path; map its answers to the draft's."""
        tus = self.tus
        if info.result is not None:
            raise problem(CompletedUpload, 'this upload is already complete')
        sent = req.content_length
        if (
            complete
            and sent is not None
            and info.length is not None
            and offset + sent != info.length
            and offset == tus.uploads.offset(info.id)  # else: 409 below
        ):
            raise problem(
                InconsistentLength,
                f'the upload is {info.length} bytes; {offset} + {sent} differs',
            )
        try:
            done = tus.patch(req, resp, info, offset, complete=complete)
        except h.Conflict:
            current = tus.uploads.offset(info.id)
            raise problem(
                MismatchingOffset,
                f'Upload-Offset is {offset} but the upload is at {current}',
                **{'expected-offset': current, 'provided-offset': offset},
            ) from None
        resp.status = falcon.HTTP_200 if done is not None else falcon.HTTP_204
        if done is not None:
            resp.media = done
        self._complete_header(resp, done, None)

    @staticmethod
    def _complete_header(
        resp: falcon.Response, info: UploadInfo | dict | None, offset: int | None
    ) -> None:
        if isinstance(info, dict) or info is None:
            finished = info is not None
        else:
            finished = info.result is not None or (
                info.length is not None and offset == info.length
            )
        resp.set_header('Upload-Complete', '?1' if finished else '?0')

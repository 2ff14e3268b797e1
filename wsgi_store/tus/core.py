"""The state both tus resources share (:class:`Tus`) and the upload operations
the tus 1.0.0 and IETF-draft answers are built from: appending a request body,
settling an interrupted completion, describing an upload in headers.

For metrics, answers mark ``resp.context.tus_created``, ``tus_completed`` (an
object was stored), ``tus_bytes`` (bytes appended by this request) and
``tus_expired`` (the first answer, in any process, that found the upload expired).
"""

from __future__ import annotations

import hashlib
import os
import secrets
import time
from typing import TYPE_CHECKING
from urllib.parse import quote

import falcon

from wsgi_store.backends.base import Backend
from wsgi_store.config import Config
from wsgi_store.errors import BadRequest, TooLarge
from wsgi_store.hashing import hex_length, normalize_hash, parse_digest_header
from wsgi_store.http.disposition import validate_name
from wsgi_store.http.uploads import body_reader
from wsgi_store.tus import headers as h
from wsgi_store.tus.complete import finish, needed_algorithms
from wsgi_store.tus.draft import Draft, InconsistentLength, problem
from wsgi_store.tus.sessions import UploadInfo, UploadStore
from wsgi_store.tus.transfer import append

if TYPE_CHECKING:
    from wsgi_store.tus.s3uploads import S3UploadStore


class Tus:
    """What both resources share: the backend, the settings, the upload state."""

    def __init__(self, backend: Backend, config: Config) -> None:
        self.backend = backend
        self.config = config
        self.uploads: UploadStore | S3UploadStore
        if backend.name == 's3':  # the state in the bucket: any node resumes
            from wsgi_store.tus.s3uploads import S3UploadStore

            self.uploads = S3UploadStore(backend, config.upload_expiry)  # type: ignore[arg-type]
        else:
            self.uploads = UploadStore(
                os.path.join(config.store_dir, 'uploads'),
                config.upload_expiry,
                fsync=config.fsync,
            )
        self.draft = Draft(self)

    def owner(self, req: falcon.Request) -> str:
        """The creating token's fingerprint ('' when the store has no tokens)."""
        if self.config.tokens_file is None:
            return ''
        scheme, _, token = (req.get_header('Authorization') or '').partition(' ')
        if scheme.lower() != 'bearer' or not token.strip():
            return ''
        return hashlib.sha256(token.strip().encode()).hexdigest()

    def check_size(self, length: int) -> None:
        limit = self.config.max_upload_bytes
        if limit and length > limit:
            raise TooLarge(
                f'Upload-Length {length} exceeds the limit of {limit} bytes',
                limit=limit,
            )

    def expectations(self, req: falcon.Request, meta: dict) -> dict[str, str]:
        """Hashes announced at creation: metadata ``file_hash``, ``Repr-Digest``."""
        found: dict[str, str] = {}
        given = h.metadata_text(meta, 'file_hash')
        if given is not None:
            algorithm = self.backend.algorithm
            found[algorithm] = normalize_hash(given, hex_length(algorithm))
        value = req.get_header('Repr-Digest')
        for exp in parse_digest_header(value, 'Repr-Digest') if value else []:
            if found.get(exp.algorithm, exp.digest.hex()) != exp.digest.hex():
                raise BadRequest(f'two different {exp.algorithm} hashes announced')
            found[exp.algorithm] = exp.digest.hex()
        return found

    def load_live(
        self, req: falcon.Request, resp: falcon.Response, upload_id: str
    ) -> UploadInfo:
        """The caller's live upload; marks the first 410 of each for metrics."""
        try:
            return self.uploads.load_live(upload_id, self.owner(req))
        except h.Gone as gone:
            resp.context.tus_expired = gone.first_seen
            raise

    # -- answers -----------------------------------------------------------------
    def patch(
        self,
        req: falcon.Request,
        resp: falcon.Response,
        info: UploadInfo,
        offset: int,
        *,
        complete: bool | None = None,
    ) -> dict | None:
        """Append the request body at ``offset`` and answer with the new offset.

        ``complete`` (the IETF draft's ``Upload-Complete``): this body ends the
        upload, which fixes an open length. Returns the stored object's result
        when this request completed the upload.
        """
        checksum = h.parse_checksum(req.get_header('Upload-Checksum'))
        new_length = h.parse_count(req.get_header('Upload-Length'), 'Upload-Length')
        with self.uploads.locked(info.id) as writer:
            info = self.uploads.load(info.id, info.owner)  # fresh, under the lock
            if writer.offset != offset:
                resp.set_header('Upload-Offset', str(writer.offset))
                raise h.Conflict(
                    f'Upload-Offset is {offset} but the upload is at {writer.offset}'
                )
            if new_length is not None and info.length is None:
                self._set_length(info, new_length, offset)
            elif new_length is not None and new_length != info.length:
                raise BadRequest(f'Upload-Length is {info.length}; it cannot change')
            limit = self._room(info, offset)
            algorithms = needed_algorithms(info, self.backend) if offset == 0 else []
            digests = append(
                writer,
                body_reader(req, self.config),
                limit=limit,
                checksum=checksum,
                algorithms=algorithms,
                chunk_bytes=self.config.chunk_bytes,
            )
            resp.set_header('Upload-Offset', str(writer.offset))
            resp.context.tus_bytes = writer.offset - offset  # for metrics
            if complete:
                self._complete(info, writer.offset)
            done = info.length is not None and writer.offset == info.length
            result = None
            if done:
                result = finish(self.uploads, self.backend, info, writer, digests)
                resp.context.tus_completed = result is not None
        self.describe(resp, info, head=False)
        return result

    def _complete(self, info: UploadInfo, offset: int) -> None:
        """The client said the upload ends at ``offset``."""
        if info.length is None:
            info.length = offset
            self.uploads.save(info)
        elif info.length != offset:
            raise problem(
                InconsistentLength,
                f'the upload is {info.length} bytes but ended at {offset}; '
                'the bytes were kept',
            )

    def settle(self, info: UploadInfo) -> UploadInfo:
        """Finish an upload whose last byte is in but whose commit never ended.

        A worker killed while hashing or committing leaves the full offset
        acknowledged-or-not and no object; the next ``HEAD`` completes it (so a
        client that sees the full offset also finds the object).
        """
        if info.result is not None or info.concat == 'partial' or info.length is None:
            return info
        if self.uploads.offset(info.id) != info.length:
            return info
        pending = info.pending_hash
        if pending and not self.uploads.has_data(info.id):
            if self.backend.exists(pending):  # renamed, not yet recorded
                info.result = {'hash': pending, 'size': info.length, 'created': True}
                info.pending_hash = None
                self.uploads.save(info)
            return info
        with self.uploads.locked(info.id) as writer:
            info = self.uploads.load(info.id, info.owner)
            finish(self.uploads, self.backend, info, writer)
        return info

    def _room(self, info: UploadInfo, offset: int) -> int | None:
        """Bytes the upload may still take (a deferred one: up to the limit)."""
        if info.length is not None:
            return info.length - offset
        cap = self.config.max_upload_bytes
        return max(cap - offset, 0) if cap else None

    def _set_length(self, info: UploadInfo, length: int, offset: int) -> None:
        self.check_size(length)
        if length < offset:
            raise BadRequest(f'Upload-Length {length} is below the offset {offset}')
        info.length = length
        self.uploads.save(info)

    def describe(self, resp: falcon.Response, info: UploadInfo, head: bool) -> None:
        """Length, metadata, expiry and (once stored) where the object is."""
        if head:
            resp.set_header('Upload-Offset', str(self.uploads.offset(info.id)))
            if info.length is None:
                resp.set_header('Upload-Defer-Length', '1')
            if info.metadata:
                resp.set_header('Upload-Metadata', h.format_metadata(info.metadata))
            if info.concat == 'partial':
                resp.set_header('Upload-Concat', 'partial')
            elif info.concat == 'final':
                urls = ' '.join(f'/uploads/{p}' for p in info.parts)
                resp.set_header('Upload-Concat', f'final;{urls}')
        if info.length is not None:
            resp.set_header('Upload-Length', str(info.length))
        if info.result is None:
            expires = self.uploads.expires(info.id)
            resp.set_header('Upload-Expires', h.http_date(expires))
            return
        location = f'/files/{info.result["hash"]}'
        name = h.metadata_text(info.metadata, 'filename')
        if name:
            location += '?filename=' + quote(name, safe='')
        resp.set_header('Content-Location', location)
        resp.set_header(h.HASH_HEADER, info.result['hash'])


def new_upload(
    tus: Tus, req: falcon.Request, length: int | None, concat: str | None = None
) -> UploadInfo:
    """A new upload's state from its creation request (not yet stored)."""
    meta = h.parse_metadata(req.get_header('Upload-Metadata'))
    name = h.metadata_text(meta, 'filename')
    if name is not None:
        # It becomes the finished upload's ?filename= link: checked as that is
        # (else the link it hands out is a 400, or a spoofed download name).
        try:
            validate_name(name)
        except BadRequest as exc:
            raise BadRequest(f'Upload-Metadata filename: {exc}') from None
    return UploadInfo(
        id=secrets.token_urlsafe(24),  # 192 random bits
        owner=tus.owner(req),
        length=length,
        metadata=meta,
        concat=concat,
        expect=tus.expectations(req, meta),
        created=time.time(),
    )

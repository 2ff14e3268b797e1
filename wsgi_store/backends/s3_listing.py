"""The S3 backend's lister: stored hashes, temporary uploads, and their sweep."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

from wsgi_store.backends.s3_client import LOGGER_NAME, S3Client
from wsgi_store.errors import NotFound

logger = logging.getLogger(LOGGER_NAME)


class S3Lister:
    """Lists what is under ``PREFIX/`` and sweeps stale uploads; testable on its own.

    Args:
        client: the backend's :class:`~.s3_client.S3Client`.
        prefix: the store's key prefix (``''`` or ending in ``/``).
        hex_length: the length of a hash in hex digits (of the store's algorithm).
    """

    def __init__(self, client: S3Client, *, prefix: str, hex_length: int) -> None:
        self.client = client
        self.bucket = client.bucket
        self.prefix = prefix
        self.hex_length = hex_length

    def __repr__(self) -> str:
        return f's3://{self.bucket}/{self.prefix}'

    def iter_hashes(self, after: str = '') -> Iterator[str]:
        # Keys sort like their hashes (the shard is the hash's first two digits).
        start = f'{self.prefix}{after[:2]}/{after}' if len(after) >= 2 else ''
        start = start or self.prefix + after
        paginator = self.client.use().get_paginator('list_objects_v2')
        pages = paginator.paginate(
            Bucket=self.bucket, Prefix=self.prefix, StartAfter=start
        )
        with self.client.errors('list objects'):
            for page in pages:
                for item in page.get('Contents', ()):
                    name = item['Key'][len(self.prefix) :]
                    if name[:3] > 'ff/':
                        return  # past the shards: tmp/, quarantine/, metadata
                    shard, _, hex_hash = name.partition('/')
                    if self._is_object(shard, hex_hash) and hex_hash > after:
                        yield hex_hash

    def _is_object(self, shard: str, hex_hash: str) -> bool:
        return (
            len(hex_hash) == self.hex_length
            and hex_hash[:2] == shard
            and all(c in '0123456789abcdef' for c in hex_hash)
        )

    def sweep_temp(self, max_age: float) -> int:
        """Abort uploads and delete temporary keys idle for over ``max_age`` seconds.

        An upload counts as idle from its last part (a slow upload still sending
        is kept). NOTE: the nodes of a scale-out setup share the prefix, so outside
        tests pass the configured ``temp_max_age``, never 0 (that would abort the
        uploads other nodes are receiving).
        """
        limit = time.time() - max_age
        with self.client.errors('sweep temporary uploads'):
            removed = self._sweep_uploads(limit) + self._sweep_temp_keys(limit)
        if removed:
            logger.info('removed %d stale temporary upload(s) under %s', removed, self)
        return removed

    def _sweep_uploads(self, limit: float) -> int:
        removed = 0
        pages = (
            self.client.use()
            .get_paginator('list_multipart_uploads')
            .paginate(Bucket=self.bucket, Prefix=self.prefix)
        )
        tus = self.prefix + 'uploads/'  # resumable uploads: they expire on their own
        for page in pages:
            for item in page.get('Uploads', ()):
                if item['Initiated'].timestamp() > limit or item['Key'].startswith(tus):
                    continue
                if self._last_activity(item['Key'], item['UploadId']) <= limit:
                    self.client.abort_quietly(item['Key'], item['UploadId'])
                    removed += 1
        return removed

    def _last_activity(self, key: str, upload_id: str) -> float:
        """When an upload last received a part (0 when none; inf when gone)."""
        newest = 0.0
        try:
            with self.client.errors('list the parts of an upload', missing='gone'):
                pages = (
                    self.client.use()
                    .get_paginator('list_parts')
                    .paginate(Bucket=self.bucket, Key=key, UploadId=upload_id)
                )
                for page in pages:
                    for part in page.get('Parts', ()):
                        newest = max(newest, part['LastModified'].timestamp())
        except NotFound:
            return float('inf')  # completed or aborted meanwhile
        return newest

    def _sweep_temp_keys(self, limit: float) -> int:
        removed = 0
        client = self.client.use()
        pages = client.get_paginator('list_objects_v2').paginate(
            Bucket=self.bucket, Prefix=self.prefix + 'tmp/'
        )
        for page in pages:
            for item in page.get('Contents', ()):
                if item['LastModified'].timestamp() <= limit:
                    client.delete_object(Bucket=self.bucket, Key=item['Key'])
                    removed += 1
        return removed

    def temp_names(self) -> list[str]:
        """Temporary keys (``tmp/...``) and pending multipart uploads (``upload:...``).

        A staged body smaller than one part lives in the staging process's memory
        only, so it is not listed (and nothing of it can leak).
        """
        client = self.client.use()
        cut = len(self.prefix)
        names = []
        with self.client.errors('list temporary uploads'):
            pages = client.get_paginator('list_objects_v2').paginate(
                Bucket=self.bucket, Prefix=self.prefix + 'tmp/'
            )
            for page in pages:
                names += [item['Key'][cut:] for item in page.get('Contents', ())]
            pages = client.get_paginator('list_multipart_uploads').paginate(
                Bucket=self.bucket, Prefix=self.prefix
            )
            for page in pages:
                names += [f'upload:{it["Key"][cut:]}' for it in page.get('Uploads', ())]
        return sorted(names)

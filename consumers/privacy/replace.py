"""Replace an archive object under its own name, so no reader ever sees a half-written file.

* Local directory: ``LocalStore.put`` already writes a dot-prefixed temp file,
  fsyncs it, renames it over the name and fsyncs the directory: a reader opens
  the old file or the new one.
* S3: the new content goes to a temporary object under ``_privacy/tmp/``, then a
  server-side copy puts it under the name (an S3 object is replaced whole, a
  reader gets the old or the new version), then the temporary object is
  deleted. A crash leaves at most a temporary object, which the next run of the
  same request removes; the data object is never missing.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from consumers.archiver.store import S3Store, Store

TMP_PREFIX = "_privacy/tmp/"


def replace(store: Store, key: str, data: pa.Buffer | bytes, request_id: str) -> None:
    if not isinstance(store, S3Store):
        store.put(key, data)
        return
    temporary = f"{TMP_PREFIX}{request_id}/{key}"
    store.put(temporary, data)
    client: Any = store.client
    client.copy({"Bucket": store.bucket, "Key": store._key(temporary)}, store.bucket, store._key(key))
    client.delete_object(Bucket=store.bucket, Key=store._key(temporary))


def remove_temporaries(store: Store, request_id: str) -> int:
    """Temporary objects an interrupted run of this request left behind (S3 only); returns how many."""
    if not isinstance(store, S3Store):
        return 0
    left = store.list(f"{TMP_PREFIX}{request_id}/")
    for key in left:
        store.client.delete_object(Bucket=store.bucket, Key=store._key(key))
    return len(left)

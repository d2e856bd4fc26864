"""A store that keeps working when the object store does not: writes fall back to a local directory.

Used for runs whose store is remote. Once a write to the primary store fails (after its own retries with
backoff), the run is *degraded*: this and every later write go to the local directory, so nothing computed
is lost, and the command says where the files are and exits non-zero. Every write is also journaled in the
local directory, so the local copy of a run is complete even when the outage began halfway through it. ``orchestrator report RUN --store
<local dir> --upload <uri>`` publishes them later.
"""
from __future__ import annotations

from workers.storage import LocalStore, Store, StorageError


class FallbackStore(Store):
    """``primary`` with ``fallback`` taking every write once ``primary`` fails.

    ``journal`` (remote stores): every write also goes to ``fallback`` first. Without it (a local store whose
    disk may fill up or turn read-only mid-run) writes go to ``fallback`` only once ``primary`` has failed:
    what was written before stays in ``primary``, readable; the store's own local paths are used while it is
    sound (``local_path``, ``root``).

    A journaled (remote) primary that failed is not asked again in this run: reads answer from the local copy,
    which holds every write of the run, so an outage costs its retries with backoff once, not on every later
    list or read. A local primary that refused a write stays readable and is still read."""

    def __init__(self, primary: Store, fallback: LocalStore, journal: bool = True):
        self.primary, self.fallback, self.journal = primary, fallback, journal
        self.uri = primary.uri
        self.degraded = False
        self.error: StorageError | None = None

    def __getattr__(self, name: str):
        if name in ("local_path", "root") and not self.__dict__.get("journal", True):
            return getattr(self.__dict__["primary"], name)
        raise AttributeError(name)

    def put_bytes(self, key: str, data: bytes, content_type: str | None = None) -> None:
        # Journaled: every write is kept locally first, so the local copy is complete whenever the primary fails.
        if self.journal or self.degraded:
            self.fallback.put_bytes(key, data, content_type)
        if not self.degraded:
            try:
                self.primary.put_bytes(key, data, content_type)
            except StorageError as err:
                self.degraded, self.error = True, err
                if not self.journal:
                    self.fallback.put_bytes(key, data, content_type)

    def put_file(self, key: str, path, content_type: str | None = None) -> None:
        # Journaled like ``put_bytes``; the primary gets the file through its own (managed, multipart) upload.
        with open(path, "rb") as fh:
            self.fallback.put_bytes(key, fh.read(), content_type)
        if not self.degraded:
            try:
                self.primary.put_file(key, path, content_type)
            except StorageError as err:
                self.degraded, self.error = True, err

    def _primary_gone(self) -> bool:
        return self.degraded and self.journal

    def get_bytes(self, key: str) -> bytes:
        if self.fallback.exists(key):
            return self.fallback.get_bytes(key)
        if self._primary_gone():
            raise StorageError(f"{key} is not in the local copy, and the store is not asked again: {self.error}")
        try:
            return self.primary.get_bytes(key)
        except StorageError as err:
            self.degraded, self.error = True, err
            raise

    def exists(self, key: str) -> bool:
        if self.fallback.exists(key):
            return True
        if self._primary_gone():
            return False
        try:
            return self.primary.exists(key)
        except StorageError:
            return False

    def list(self, prefix: str = "") -> list[str]:
        keys = set(self.fallback.list(prefix))
        if self._primary_gone():
            return sorted(keys)
        try:
            keys |= set(self.primary.list(prefix))
        except StorageError as err:
            self.degraded, self.error = True, err
        return sorted(keys)

    def delete(self, key: str) -> None:
        """Delete locally and, unless degraded, in the primary store; a primary that fails degrades the run
        (like a failed write) rather than raising."""
        if self.fallback.exists(key):
            self.fallback.delete(key)
        if not self.degraded:
            try:
                self.primary.delete(key)
            except StorageError as err:
                self.degraded, self.error = True, err

    def url(self, key: str) -> str:
        return self.fallback.url(key) if self.fallback.exists(key) and self.degraded else self.primary.url(key)

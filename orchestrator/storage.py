"""Object storage: one interface, a local-directory backend (default) and S3 through boto3 (any endpoint).

Keys are ``/``-separated relative paths. Writes are atomic from a reader's point of view: the local store
renames a finished temporary file into place; S3 makes an object visible only when its PUT completes.
Credentials come from the standard AWS places (environment, profile, instance role) and are never logged.
"""
from __future__ import annotations

import os
import re
import tempfile
import time
from pathlib import Path, PurePosixPath
from typing import Iterator
from urllib.parse import urlparse

_SAFE_KEY = re.compile(r"^[A-Za-z0-9_.=+@ ,-]+$")


class StorageError(RuntimeError):
    """The store could not be reached or refused an operation."""


def check_key(key: str) -> str:
    """Reject keys that could escape the store (absolute paths, ``..``, odd characters)."""
    parts = PurePosixPath(key).parts
    if not parts or key.startswith("/") or any(p in ("..", ".") or not _SAFE_KEY.match(p) for p in parts):
        raise ValueError(f"unsafe storage key '{key}'")
    return "/".join(parts)


class Store:
    """Interface of a store. ``uri`` names its root; ``url(key)`` names one object for humans."""

    uri: str

    def put_bytes(self, key: str, data: bytes, content_type: str | None = None) -> None:
        raise NotImplementedError

    def get_bytes(self, key: str) -> bytes:
        raise NotImplementedError

    def exists(self, key: str) -> bool:
        raise NotImplementedError

    def list(self, prefix: str = "") -> list[str]:
        raise NotImplementedError

    def delete(self, key: str) -> None:
        raise NotImplementedError

    def url(self, key: str) -> str:
        return f"{self.uri.rstrip('/')}/{key}"

    def put_text(self, key: str, text: str, content_type: str = "text/plain; charset=utf-8") -> None:
        self.put_bytes(key, text.encode("utf-8"), content_type)

    def get_text(self, key: str) -> str:
        return self.get_bytes(key).decode("utf-8")

    def put_file(self, key: str, path: str | Path, content_type: str | None = None) -> None:
        self.put_bytes(key, Path(path).read_bytes(), content_type)

    def download_prefix(self, prefix: str, dest: str | Path) -> Path:
        """Copy every object under ``prefix`` into the local folder ``dest`` (keeping relative paths)."""
        dest = Path(dest)
        prefix = prefix.rstrip("/") + "/" if prefix else ""
        for key in self.list(prefix):
            target = dest / key[len(prefix):]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(self.get_bytes(key))
        return dest


class LocalStore(Store):
    """A directory on local disk."""

    def __init__(self, root: str | Path):
        self.root = Path(root).expanduser().resolve()
        self.uri = str(self.root)

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def put_bytes(self, key: str, data: bytes, content_type: str | None = None) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def get_bytes(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise KeyError(key) from None

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list(self, prefix: str = "") -> list[str]:
        base = self.root
        if not base.exists():
            return []
        out = []
        for path in base.rglob("*"):
            if path.is_file() and not path.name.endswith(".part"):
                rel = path.relative_to(base).as_posix()
                if rel.startswith(prefix):
                    out.append(rel)
        return sorted(out)

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def local_path(self, key: str) -> Path:
        return self._path(key)


class S3Store(Store):
    """An S3 bucket/prefix through boto3; ``endpoint_url`` selects MinIO, GCS interoperability, moto, ..."""

    def __init__(self, uri: str, endpoint_url: str | None = None, region: str | None = None,
                 retries: int = 4, backoff_s: float = 0.5, connect_timeout_s: float = 5.0):
        import boto3
        from botocore.config import Config

        parsed = urlparse(uri)
        if parsed.scheme != "s3" or not parsed.netloc:
            raise ValueError(f"storage.uri: '{uri}' is not an s3://bucket/prefix URI")
        self.bucket = parsed.netloc
        self.prefix = parsed.path.strip("/")
        self.uri = f"s3://{self.bucket}/{self.prefix}".rstrip("/")
        self.endpoint_url = endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        self.retries = retries
        self.backoff_s = backoff_s
        self.region, self.connect_timeout_s = region, connect_timeout_s
        config = Config(connect_timeout=connect_timeout_s, read_timeout=30, retries={"max_attempts": 1})
        self.client = boto3.session.Session().client("s3", endpoint_url=self.endpoint_url, region_name=region, config=config)

    def __getstate__(self):
        # The boto3 client is rebuilt after unpickling; credentials are never part of the pickled state.
        return {"uri": self.uri, "endpoint_url": self.endpoint_url, "region": self.region, "retries": self.retries,
                "backoff_s": self.backoff_s, "connect_timeout_s": self.connect_timeout_s}

    def __setstate__(self, state):
        self.__init__(**state)

    def _key(self, key: str) -> str:
        key = check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _retry(self, what: str, fn):
        from botocore.exceptions import BotoCoreError, ClientError

        delay = self.backoff_s
        for attempt in range(self.retries + 1):
            try:
                return fn()
            except ClientError as err:
                code = err.response.get("Error", {}).get("Code", "")
                if code in ("NoSuchKey", "404", "NoSuchBucket", "AccessDenied", "403") or attempt == self.retries:
                    raise StorageError(f"{what} failed on {self.uri}: {code or err}") from None
            except BotoCoreError as err:
                if attempt == self.retries:
                    raise StorageError(f"{what} failed on {self.uri}: {type(err).__name__}: {err}") from None
            time.sleep(delay)
            delay *= 2

    def put_bytes(self, key: str, data: bytes, content_type: str | None = None) -> None:
        extra = {"ContentType": content_type} if content_type else {}
        self._retry(f"upload of {key}", lambda: self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, **extra))

    def get_bytes(self, key: str) -> bytes:
        from botocore.exceptions import ClientError

        try:
            return self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                raise KeyError(key) from None
            return self._retry(f"download of {key}", lambda: self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read())

    def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(key))
            return True
        except ClientError:
            return False

    def _iter_keys(self, prefix: str) -> Iterator[str]:
        full = (f"{self.prefix}/" if self.prefix else "") + prefix
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=full):
            for obj in page.get("Contents", []):
                yield obj["Key"][len(self.prefix) + 1:] if self.prefix else obj["Key"]

    def list(self, prefix: str = "") -> list[str]:
        return sorted(self._retry(f"listing of {prefix or '/'}", lambda: list(self._iter_keys(prefix))))

    def delete(self, key: str) -> None:
        self._retry(f"delete of {key}", lambda: self.client.delete_object(Bucket=self.bucket, Key=self._key(key)))


def open_store(uri: str, endpoint_url: str | None = None, region: str | None = None) -> Store:
    """``s3://bucket/prefix`` opens an S3Store; anything else is a local directory."""
    if uri.startswith("s3://"):
        return S3Store(uri, endpoint_url=endpoint_url, region=region)
    if "://" in uri:
        raise ValueError(f"storage.uri: unsupported scheme in '{uri}' (use a local directory or s3://bucket/prefix)")
    return LocalStore(uri)

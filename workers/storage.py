"""Object storage: one interface, a local-directory backend (default) and S3 through boto3 (any endpoint).

Keys are ``/``-separated relative paths. Writes are atomic from a reader's point of view: the local store
renames a finished temporary file into place; S3 makes an object visible only when its PUT completes.
Credentials come from the standard AWS places (boto3's default chain: environment, shared credentials/config
file and profile, web identity, container and instance roles); only ``endpoint_url`` and ``region`` are ours.
They are never logged, put in error messages or pickled. Transfers are boto3's managed transfers
(``upload_file``/``download_file`` with a ``TransferConfig``: multipart and concurrent above
``MULTIPART_THRESHOLD``); calls that fail for a transient reason (connection refused, timeout, throttling, 5xx)
are retried by botocore's ``standard`` retry mode (exponential backoff with jitter) and then raise
``StorageError``.
"""
from __future__ import annotations

import io
import logging
import os
import re
import tempfile
from pathlib import Path, PurePosixPath
from typing import Iterator
from urllib.parse import urlparse

from workers.settings import s3_endpoint

_SAFE_KEY = re.compile(r"^[A-Za-z0-9_.=+@ ,-]+$")
_URL_USERINFO = re.compile(r"(?<=://)[^/@\s\"']+@")
_NOT_FOUND = {"NoSuchKey", "404", "NotFound"}
MULTIPART_THRESHOLD = 16 * 1024 * 1024  # objects above this go in concurrent multipart parts of this size


class StorageError(RuntimeError):
    """The store could not be reached or refused an operation."""


def _redact(text: str) -> str:
    """Drop ``user:password@`` from any URL in ``text``."""
    return _URL_USERINFO.sub("***@", text)


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

    def get_file(self, key: str, path: str | Path) -> Path:
        """Download ``key`` to the local file ``path`` (written beside it and renamed into place)."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.part")
        try:
            self._fetch_to(key, tmp)
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        return target

    def _fetch_to(self, key: str, tmp: Path) -> None:
        tmp.write_bytes(self.get_bytes(key))

    def download_prefix(self, prefix: str, dest: str | Path) -> Path:
        """Copy every object under ``prefix`` into the local folder ``dest`` (keeping relative paths)."""
        dest = Path(dest)
        prefix = prefix.rstrip("/") + "/" if prefix else ""
        for key in self.list(prefix):
            self.get_file(key, dest / check_key(key[len(prefix):]))
        return dest


class LocalStore(Store):
    """A directory on local disk."""

    def __init__(self, root: str | Path):
        self.root = Path(root).expanduser().resolve()
        self.uri = str(self.root)

    def __repr__(self) -> str:
        return f"LocalStore({self.uri!r})"

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def put_bytes(self, key: str, data: bytes, content_type: str | None = None) -> None:
        """Write atomically; a disk that is full, read-only or otherwise refuses is a ``StorageError`` (so a run
        falls back to its local journal as it does when an object store goes down)."""
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # Written beside the target and renamed into place: a reader sees the old file or the whole new one.
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
        except OSError as err:
            raise StorageError(f"writing {key} failed on {self.uri}: {err.strerror or err}") from None
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file the mode open() would
            os.replace(tmp, path)
        except OSError as err:
            Path(tmp).unlink(missing_ok=True)
            raise StorageError(f"writing {key} failed on {self.uri}: {err.strerror or err}") from None
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
        # Walk only the folder the prefix names (``a/b/c`` -> ``a/b``), then filter by plain string prefix as S3 does.
        folder = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        try:
            base = self._path(folder) if folder else self.root
        except ValueError:
            return []
        if not base.is_dir():
            return []
        out = []
        for dirpath, _dirs, files in os.walk(base):
            for name in files:
                if name.startswith(".") and name.endswith(".part"):
                    continue  # a write in progress
                rel = Path(dirpath, name).relative_to(self.root).as_posix()
                if rel.startswith(prefix):
                    out.append(rel)
        return sorted(out)

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def local_path(self, key: str) -> Path:
        return self._path(key)


class S3Store(Store):
    """An S3 bucket/prefix through boto3; ``endpoint_url`` selects MinIO, GCS interoperability, moto, ...

    ``retries`` is how many times botocore's ``standard`` retry mode tries a call again after a transient
    failure (so ``retries + 1`` attempts in all)."""

    def __init__(self, uri: str, endpoint_url: str | None = None, region: str | None = None,
                 retries: int = 4, connect_timeout_s: float = 5.0, read_timeout_s: float = 60.0,
                 max_concurrency: int = 8):
        import boto3
        from boto3.s3.transfer import TransferConfig
        from botocore.config import Config

        parsed = urlparse(uri)
        if parsed.scheme != "s3" or not parsed.netloc:
            raise ValueError(f"storage.uri: '{uri}' is not an s3://bucket/prefix URI")
        self.bucket = parsed.netloc
        self.prefix = parsed.path.strip("/")
        self.uri = f"s3://{self.bucket}/{self.prefix}".rstrip("/")
        self.endpoint_url = s3_endpoint(endpoint_url)
        self.retries, self.max_concurrency = retries, max_concurrency
        self.region, self.connect_timeout_s, self.read_timeout_s = region, connect_timeout_s, read_timeout_s
        _quiet_sdk_loggers()
        config = Config(connect_timeout=connect_timeout_s, read_timeout=read_timeout_s,
                        retries={"mode": "standard", "total_max_attempts": retries + 1},
                        max_pool_connections=max(10, max_concurrency + 2))
        self.transfer = TransferConfig(multipart_threshold=MULTIPART_THRESHOLD, multipart_chunksize=MULTIPART_THRESHOLD,
                                       max_concurrency=max_concurrency, num_download_attempts=retries + 1)
        # Credentials: boto3's default chain (never passed in, never stored on this object).
        self.client = boto3.session.Session().client("s3", endpoint_url=self.endpoint_url, region_name=region,
                                                     config=config)

    def __repr__(self) -> str:
        endpoint = f", endpoint_url={_redact(self.endpoint_url)!r}" if self.endpoint_url else ""
        return f"S3Store({self.uri!r}{endpoint})"

    def __getstate__(self):
        # The boto3 client is rebuilt after unpickling; credentials are never part of the pickled state.
        return {"uri": self.uri, "endpoint_url": self.endpoint_url, "region": self.region, "retries": self.retries,
                "connect_timeout_s": self.connect_timeout_s, "read_timeout_s": self.read_timeout_s,
                "max_concurrency": self.max_concurrency}

    def __setstate__(self, state):
        self.__init__(**state)

    def _key(self, key: str) -> str:
        key = check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _call(self, what: str, fn, missing=None):
        """``fn()`` (botocore retries transient errors itself); its failure as a one-line ``StorageError``,
        ``missing()`` answering a not-found error."""
        from boto3.exceptions import S3TransferFailedError, S3UploadFailedError
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return fn()
        except ClientError as err:
            code = str(err.response.get("Error", {}).get("Code", ""))
            meta = err.response.get("ResponseMetadata", {})
            if missing is not None and code in _NOT_FOUND:
                return missing()
            attempts = int(meta.get("RetryAttempts") or 0) + 1
            tries = f" after {attempts} attempts" if attempts > 1 else ""
            raise StorageError(_redact(f"{what} failed on {self.uri}{tries}: "
                                       f"{code or meta.get('HTTPStatusCode') or 'error'}")) from None
        except (BotoCoreError, S3UploadFailedError, S3TransferFailedError) as err:
            # Connection refused/reset, timeouts and broken responses were retried by botocore (standard mode).
            detail = str(err).replace("An error occurred ", "")
            raise StorageError(_redact(f"{what} failed on {self.uri} (up to {self.retries + 1} attempts): "
                                       f"{type(err).__name__}: {detail}")) from None

    def put_bytes(self, key: str, data: bytes, content_type: str | None = None) -> None:
        extra = {"ContentType": content_type} if content_type else None
        full = self._key(key)
        self._call(f"upload of {key}", lambda: self.client.upload_fileobj(
            io.BytesIO(data), self.bucket, full, ExtraArgs=extra, Config=self.transfer))

    def put_file(self, key: str, path: str | Path, content_type: str | None = None) -> None:
        extra = {"ContentType": content_type} if content_type else None
        full = self._key(key)
        self._call(f"upload of {key}", lambda: self.client.upload_file(
            str(path), self.bucket, full, ExtraArgs=extra, Config=self.transfer))

    def _missing(self, key: str):
        def missing():
            raise KeyError(key) from None

        return missing

    def get_bytes(self, key: str) -> bytes:
        full = self._key(key)

        def download() -> bytes:
            buf = io.BytesIO()
            self.client.download_fileobj(self.bucket, full, buf, Config=self.transfer)
            return buf.getvalue()

        return self._call(f"download of {key}", download, self._missing(key))

    def _fetch_to(self, key: str, tmp: Path) -> None:
        full = self._key(key)
        self._call(f"download of {key}", lambda: self.client.download_file(
            self.bucket, full, str(tmp), Config=self.transfer), self._missing(key))

    def exists(self, key: str) -> bool:
        full = self._key(key)

        def head():
            self.client.head_object(Bucket=self.bucket, Key=full)
            return True

        return self._call(f"lookup of {key}", head, lambda: False)

    def _iter_keys(self, prefix: str) -> Iterator[str]:
        full = (f"{self.prefix}/" if self.prefix else "") + prefix
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=full):
            for obj in page.get("Contents", []):
                yield obj["Key"][len(self.prefix) + 1:] if self.prefix else obj["Key"]

    def list(self, prefix: str = "") -> list[str]:
        return sorted(self._call(f"listing of {prefix or '/'}", lambda: list(self._iter_keys(prefix))))

    def delete(self, key: str) -> None:
        full = self._key(key)
        self._call(f"delete of {key}", lambda: self.client.delete_object(Bucket=self.bucket, Key=full))


def _read_umask() -> int:
    try:  # Linux: read it without changing it
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _read_umask()


def _quiet_sdk_loggers() -> None:
    """At DEBUG, botocore logs signed request headers; keep its loggers at INFO unless someone set them."""
    for name in ("botocore", "boto3", "s3transfer"):
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET:
            logger.setLevel(logging.INFO)


def check_store_uri(uri: str) -> str:
    """``uri`` if it names a store this product can open (a local directory or ``s3://bucket[/prefix]``);
    ``ValueError`` naming what would be valid otherwise."""
    valid = "use a local directory or s3://bucket/prefix"
    if not uri or not uri.strip() or "\x00" in uri:
        raise ValueError(f"storage.uri: empty or invalid ({valid})")
    if uri.startswith("s3://"):
        if not urlparse(uri).netloc:
            raise ValueError(f"storage.uri: '{uri}' names no bucket ({valid})")
        return uri
    if "://" in uri:
        raise ValueError(f"storage.uri: unsupported scheme in '{uri}' ({valid})")
    return uri


def check_endpoint_url(url: str, field: str = "endpoint_url") -> str:
    """``url`` if it is an ``http(s)://host[:port][/path]`` endpoint without credentials; ``ValueError`` naming
    ``field`` and what would be valid otherwise (user info in a URL would be printed and stored)."""
    valid = "give http(s)://host[:port]"
    try:
        parsed = urlparse(url)
        parsed.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        raise ValueError(f"{field}: not a URL ({valid})") from None
    if parsed.scheme not in ("http", "https") or not parsed.hostname or any(c.isspace() for c in url):
        raise ValueError(f"{field}: '{_redact(url)}' is not an http(s) URL ({valid})")
    if parsed.username is not None or parsed.password is not None or "@" in parsed.netloc:
        raise ValueError(f"{field}: must not hold credentials (user info in the URL); boto3 reads them from "
                         "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or a profile instead")
    return url


def open_store(uri: str, endpoint_url: str | None = None, region: str | None = None) -> Store:
    """``s3://bucket/prefix`` opens an S3Store; anything else is a local directory."""
    check_store_uri(uri)
    if uri.startswith("s3://"):
        return S3Store(uri, endpoint_url=endpoint_url, region=region)
    return LocalStore(uri)

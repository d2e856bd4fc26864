"""Object storage: LocalStore and S3Store (through the moto S3 endpoint) pass the same contract; local writes are
atomic; S3 goes through boto3's managed transfers (multipart above a threshold) and botocore's standard retry
mode, gives up quickly on an unreachable endpoint with StorageError, takes credentials from boto3's default chain and never pickles or prints them."""
from __future__ import annotations

import os
import pickle
import socket
import threading
import time

import pytest

import workers.storage as storage_mod
from workers.storage import LocalStore, S3Store, StorageError, check_key, open_store

UNSAFE_KEYS = ["../x", "a/../../x", "a/..", "/etc/passwd", "", "..", "a\\b", "~/x", "a/b\x00c", "a/$(id)", "a/*"]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path):
    if request.param == "local":
        return LocalStore(tmp_path / "store")
    bucket = request.getfixturevalue("s3_bucket")
    endpoint = request.getfixturevalue("s3_endpoint")
    return S3Store(f"s3://{bucket}/some/prefix", endpoint_url=endpoint)


# ------------------------------------------------------------------------------------------ shared contract
def test_put_get_overwrite(store):
    store.put_bytes("exp/run/a.bin", b"\x00\x01binary")
    assert store.get_bytes("exp/run/a.bin") == b"\x00\x01binary"
    store.put_text("exp/run/t.txt", "héllo ✓")
    assert store.get_text("exp/run/t.txt") == "héllo ✓"
    store.put_bytes("exp/run/a.bin", b"new")
    assert store.get_bytes("exp/run/a.bin") == b"new"
    store.put_bytes("empty", b"")
    assert store.get_bytes("empty") == b""


def test_missing_key_is_a_key_error(store):
    with pytest.raises(KeyError):
        store.get_bytes("nope/missing.json")


def test_exists_and_delete(store):
    assert not store.exists("k/v.json")
    store.put_text("k/v.json", "{}")
    assert store.exists("k/v.json")
    assert not store.exists("k")  # a "folder" is not an object
    store.delete("k/v.json")
    assert not store.exists("k/v.json")
    store.delete("k/v.json")  # deleting a missing key is not an error


def test_list_by_prefix(store):
    keys = ["a/b/1.json", "a/b/2.json", "a/c/3.txt", "ab/x", "z"]
    for key in keys:
        store.put_text(key, key)
    assert store.list() == sorted(keys)
    assert store.list("a/") == ["a/b/1.json", "a/b/2.json", "a/c/3.txt"]
    assert store.list("a/b/") == ["a/b/1.json", "a/b/2.json"]
    assert store.list("a") == ["a/b/1.json", "a/b/2.json", "a/c/3.txt", "ab/x"]  # plain string prefix, as S3
    assert store.list("a/b/1") == ["a/b/1.json"]
    assert store.list("nothing/") == []


@pytest.mark.parametrize("key", UNSAFE_KEYS)
def test_unsafe_keys_are_rejected(store, key, tmp_path):
    for op in (lambda: store.put_bytes(key, b"x"), lambda: store.get_bytes(key), lambda: store.exists(key),
               lambda: store.delete(key)):
        with pytest.raises(ValueError, match="unsafe storage key"):
            op()
    assert not (tmp_path / "x").exists()


def test_check_key_normalises_safe_keys():
    assert check_key("a//b/./c.json") == "a/b/c.json"
    key = "exp/run-1/trials/cnn-e2-cpu-r0-abc/record.json"
    assert check_key(key) == key


def test_download_prefix_and_url(store, tmp_path):
    store.put_text("run/report/index.html", "<html>")
    store.put_bytes("run/report/plots/a.png", b"png")
    store.put_text("run/other.txt", "x")
    dest = store.download_prefix("run/report", tmp_path / "dl")
    assert (dest / "index.html").read_text() == "<html>" and (dest / "plots/a.png").read_bytes() == b"png"
    assert not (dest / "other.txt").exists()
    assert store.url("run/report/index.html") == f"{store.uri}/run/report/index.html"


def test_pickled_store_still_works(store):
    store.put_text("p/q.txt", "before")
    clone = pickle.loads(pickle.dumps(store))
    assert clone.get_text("p/q.txt") == "before"
    clone.put_text("p/r.txt", "after")
    assert store.get_text("p/r.txt") == "after"


def test_open_store_dispatches_on_the_uri(tmp_path, s3_endpoint):
    assert isinstance(open_store(str(tmp_path)), LocalStore)
    assert isinstance(open_store("s3://bucket/p", endpoint_url=s3_endpoint), S3Store)
    with pytest.raises(ValueError, match="unsupported scheme"):
        open_store("gs://bucket/p")


# ------------------------------------------------------------------------------------------------ local only
def _part_files(root):
    return [p for p in root.rglob("*") if p.name.endswith(".part")]


def test_local_writes_leave_no_part_files_and_follow_the_umask(tmp_path):
    store = LocalStore(tmp_path / "s")
    for i in range(20):
        store.put_bytes(f"d/{i % 3}.bin", os.urandom(1000))
    assert _part_files(tmp_path) == []
    mask = os.umask(0o022)
    os.umask(mask)
    assert (tmp_path / "s/d/0.bin").stat().st_mode & 0o777 == 0o666 & ~mask


def test_local_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    store = LocalStore(tmp_path / "s")
    store.put_text("k.json", "old")

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(storage_mod.os, "replace", broken_replace)
    with pytest.raises(storage_mod.StorageError, match="disk full"):  # a run then falls back to local disk
        store.put_text("k.json", "new")
    monkeypatch.undo()
    assert store.get_text("k.json") == "old"
    assert _part_files(tmp_path) == [] and store.list() == ["k.json"]


def test_local_reader_never_sees_a_half_written_file(tmp_path):
    store = LocalStore(tmp_path / "s")
    size = 2 << 20
    payloads = [b"a" * size, b"b" * size]
    store.put_bytes("big.bin", payloads[0])
    stop = threading.Event()

    def writer():
        i = 0
        while not stop.is_set():
            store.put_bytes("big.bin", payloads[i % 2])
            i += 1

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        seen = set()
        deadline = time.monotonic() + 1.5
        reads = 0
        while time.monotonic() < deadline:
            data = store.get_bytes("big.bin")
            assert data in payloads, f"torn read: {len(data)} bytes"
            assert store.list() == ["big.bin"]  # a write in progress is never listed
            seen.add(data[:1])
            reads += 1
    finally:
        stop.set()
        thread.join()
    assert reads > 5 and seen == {b"a", b"b"}
    assert _part_files(tmp_path) == []


# ------------------------------------------------------------------------------------------------ S3 only
def test_s3_objects_land_under_the_prefix(s3_endpoint, s3_bucket):
    import boto3

    store = S3Store(f"s3://{s3_bucket}/studies/x/", endpoint_url=s3_endpoint)
    assert store.uri == f"s3://{s3_bucket}/studies/x"
    store.put_text("exp/run/report/index.html", "<html>", "text/html; charset=utf-8")
    client = boto3.client("s3", endpoint_url=s3_endpoint)
    head = client.head_object(Bucket=s3_bucket, Key="studies/x/exp/run/report/index.html")
    assert head["ContentType"] == "text/html; charset=utf-8"
    client.put_object(Bucket=s3_bucket, Key="studies/xyz/outside", Body=b"1")  # a sibling prefix is not listed
    assert store.list() == ["exp/run/report/index.html"]


def test_s3_credentials_come_from_the_default_chain(s3_endpoint, s3_bucket, monkeypatch, tmp_path):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAENVIRONMENT0001")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "env-secret-value-0001")
    store = S3Store(f"s3://{s3_bucket}/p", endpoint_url=s3_endpoint)
    assert store.client._get_credentials().access_key == "AKIAENVIRONMENT0001"
    store.put_text("a", "1")

    # No environment keys: the shared credentials file (a profile) is used.
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    creds = tmp_path / "credentials"
    creds.write_text("[study]\naws_access_key_id = AKIAPROFILE00000002\naws_secret_access_key = profile-secret-2\n")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(creds))
    monkeypatch.setenv("AWS_PROFILE", "study")
    store = S3Store(f"s3://{s3_bucket}/p", endpoint_url=s3_endpoint)
    assert store.client._get_credentials().access_key == "AKIAPROFILE00000002"
    assert store.get_text("a") == "1"


def test_s3_pickle_and_repr_carry_no_credentials(s3_endpoint, s3_bucket, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIASHOULDNOTLEAK123")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "very-secret-should-not-leak")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "session-token-should-not-leak")
    store = S3Store(f"s3://{s3_bucket}/p", endpoint_url=s3_endpoint)
    blob = pickle.dumps(store)
    for secret in (b"AKIASHOULDNOTLEAK123", b"very-secret-should-not-leak", b"session-token-should-not-leak"):
        assert secret not in blob
        assert secret.decode() not in repr(store) and secret.decode() not in str(vars(pickle.loads(blob)).get("uri"))
    clone = pickle.loads(blob)
    assert (clone.uri, clone.endpoint_url, clone.retries) == (store.uri, store.endpoint_url, store.retries)
    clone.put_text("x", "y")
    assert store.get_text("x") == "y"


def test_s3_unreachable_endpoint_fails_quickly_after_botocores_retries():
    store = S3Store("s3://bucket/prefix", endpoint_url=f"http://127.0.0.1:{_closed_port()}")
    sent: list[str] = []
    store.client.meta.events.register("before-send.s3", lambda request, **kw: sent.append(request.method))
    start = time.monotonic()
    with pytest.raises(StorageError, match=r"upload of k.json failed on s3://bucket/prefix \(up to 5 attempts\)") as err:
        store.put_text("k.json", "{}")
    assert time.monotonic() - start < 60  # botocore's standard backoff (jittered, capped): seconds, not minutes
    assert "EndpointConnectionError" in str(err.value)
    assert len(sent) == 5  # retries=4 (the default): botocore's standard mode tried 5 times


def test_s3_every_operation_on_an_unreachable_endpoint_raises_storage_error():
    store = S3Store("s3://bucket/prefix", endpoint_url=f"http://127.0.0.1:{_closed_port()}", retries=1)
    for op in (lambda: store.put_bytes("a", b"x"), lambda: store.get_bytes("a"), lambda: store.exists("a"),
               lambda: store.list("a/"), lambda: store.delete("a"), lambda: store.put_file("a", __file__)):
        with pytest.raises(StorageError, match="up to 2 attempts"):
            op()


def _serve(status_for_request):
    """A local HTTP endpoint answering every request with ``status_for_request(n)`` (an S3 error body)."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    calls = {"n": 0}

    class Handler(BaseHTTPRequestHandler):
        def _answer(self):
            calls["n"] += 1
            status = status_for_request(calls["n"])
            body = (f"<Error><Code>{'SlowDown' if status == 503 else 'InternalError'}</Code>"
                    "<Message>try again</Message></Error>").encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_PUT = do_HEAD = do_POST = do_DELETE = _answer

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, calls


def test_s3_throttling_is_retried_by_botocore_then_reported_with_the_attempts():
    server, calls = _serve(lambda n: 503)
    try:
        store = S3Store("s3://bucket/p", endpoint_url=f"http://127.0.0.1:{server.server_address[1]}", retries=2)
        with pytest.raises(StorageError, match="listing of a/ failed on s3://bucket/p after 3 attempts: SlowDown"):
            store.list("a/")
        assert calls["n"] == 3
    finally:
        server.shutdown()


def test_s3_large_objects_go_in_concurrent_multipart_transfers(s3_endpoint, s3_bucket, tmp_path):
    import boto3

    store = S3Store(f"s3://{s3_bucket}/p", endpoint_url=s3_endpoint)
    big = os.urandom(storage_mod.MULTIPART_THRESHOLD + 1024)
    source = tmp_path / "shard.bin"
    source.write_bytes(big)
    store.put_file("cache/shard.bin", source, "application/octet-stream")
    head = boto3.client("s3", endpoint_url=s3_endpoint).head_object(Bucket=s3_bucket, Key="p/cache/shard.bin")
    assert head["ETag"].strip('"').endswith("-2")  # a multipart upload of two parts
    assert store.get_file("cache/shard.bin", tmp_path / "back.bin").read_bytes() == big
    assert store.get_bytes("cache/shard.bin") == big


def test_s3_permanent_errors_fail_at_once(s3_endpoint):
    store = S3Store("s3://no-such-bucket-here/p", endpoint_url=s3_endpoint)
    sent: list[str] = []
    store.client.meta.events.register("before-send.s3", lambda request, **kw: sent.append(request.method))
    with pytest.raises(StorageError, match="NoSuchBucket"):
        store.put_text("a", "b")
    assert len(sent) == 1


def test_s3_error_messages_hide_credentials_in_the_endpoint():
    store = S3Store("s3://bucket/p", endpoint_url=f"http://user:hunter2pass@127.0.0.1:{_closed_port()}", retries=0)
    with pytest.raises(StorageError) as err:
        store.get_bytes("k")
    assert "hunter2pass" not in str(err.value) and "hunter2pass" not in repr(store)

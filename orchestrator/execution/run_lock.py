"""One driver per run: a lock object in the run's store, taken before Ray starts and given back at the end.

Two drivers writing one run (``submit --run-id twins`` twice, or a ``resume`` while the run still goes) would
train the same trials twice and overwrite each other's records. The first driver writes
``<experiment>/<run_id>/driver.lock`` (host, pid, start time); a second one finds it and is refused with one
line while the holder is alive. A lock left by a driver that died on this host (its pid is gone) is taken
over; one held from another host is only given up by deleting it, as the error says.
"""
from __future__ import annotations

import json
import os
import socket
import time

from orchestrator.errors import RunBusy
from orchestrator.run_store import RunPaths
from workers.storage import Store

LOCK_NAME = "driver.lock"


def lock_key(paths: RunPaths) -> str:
    return f"{paths.root}/{LOCK_NAME}"


def _alive(holder: dict) -> bool:
    """Whether the lock's holder may still be running (certain only on this host)."""
    if holder.get("host") != socket.gethostname():
        return True
    try:
        os.kill(int(holder.get("pid", -1)), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError, TypeError):
        return True
    return True


def _read(store: Store, key: str) -> dict | None:
    try:
        holder = json.loads(store.get_text(key))
    except (KeyError, ValueError):
        return None
    return holder if isinstance(holder, dict) else None


class RunLock:
    """The lock of one run, held by this process until ``release``."""

    def __init__(self, store: Store, paths: RunPaths):
        self.store, self.paths, self.key = store, paths, lock_key(paths)
        self.mine = {"host": socket.gethostname(), "pid": os.getpid(), "since": time.time(),
                     "token": os.urandom(8).hex()}
        self.held = False

    def acquire(self) -> "RunLock":
        """Take the lock, or ``RunBusy`` naming the driver that holds it; nothing else is written first."""
        holder = _read(self.store, self.key) if self.store.exists(self.key) else None
        if holder is not None and _alive(holder):
            raise RunBusy(f"run {self.paths.run_id} is being run by another driver (pid {holder.get('pid')} on "
                          f"{holder.get('host')}); wait for it to end, or if it is gone delete "
                          f"{self.store.url(self.key)}")
        self._write()
        if (_read(self.store, self.key) or {}).get("token") != self.mine["token"]:  # another driver won the race
            holder = _read(self.store, self.key) or {}
            raise RunBusy(f"run {self.paths.run_id} was just taken by another driver (pid {holder.get('pid')} on "
                          f"{holder.get('host')}); nothing was started")
        self.held = True
        return self

    def _write(self) -> None:
        data = json.dumps(self.mine).encode()
        path = getattr(self.store, "local_path", None)
        if path is None:
            self.store.put_bytes(self.key, data, "application/json")
            return
        target = path(self.key)
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():  # a dead driver's lock (checked above): taken over
            target.unlink(missing_ok=True)
        try:
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return  # another driver created it between the check and here: acquire() sees its token
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)

    def release(self) -> None:
        """Give the lock back (only if it is still this process's)."""
        if self.held and (_read(self.store, self.key) or {}).get("token") == self.mine["token"]:
            try:
                self.store.delete(self.key)
            except Exception:  # noqa: BLE001 - a store gone down: the next driver takes over a dead lock
                pass
            path = getattr(self.store, "local_path", None)
            if path is not None:  # a run that wrote nothing else leaves no empty folders behind
                for folder in (path(self.paths.root), path(self.paths.experiment), self.store.root):
                    try:
                        folder.rmdir()
                    except OSError:
                        break
        self.held = False

"""Sharing the test machine between the suite's processes (pytest-xdist, ``-n 2``): a pytest plugin
(``tests/conftest.py`` loads it).

A module marked ``alone`` needs the machine to itself: the local multi-node cluster of ``test_cluster_trust.py``
(five raylets on a 2-core machine) once lost its simulated gpu node, marked dead for missed health checks, while
the other process ran Ray trials beside it. From the first test of such a module to the end of its last (module
fixtures included) no ``slow`` test runs in another process; slow tests wait, fast tests go on. In a run of one
process nothing runs beside anything and none of this takes a lock.

Two ``flock`` files in the run's temp dir, which every worker's temp dir lies below: a gate, which the ``alone``
module takes first so that no new slow test starts while it waits for the running ones, and the machine lock
(exclusive for the ``alone`` module, shared by slow tests).
"""
from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from pathlib import Path

import pytest

_held: dict[str, tuple[int, int]] = {}  # module nodeid -> fds of (gate, lock) while this process holds the machine alone


def _lock_files(config: pytest.Config) -> tuple[Path, Path] | None:
    """(gate, lock) shared by the run's worker processes; None in a run of one process."""
    workerinput = getattr(config, "workerinput", None)
    if workerinput is None or not config.option.basetemp:
        return None
    shared = Path(config.option.basetemp).parent  # xdist gives worker gwN the temp dir <run's basetemp>/gwN
    uid = workerinput["testrunuid"]
    return shared / f"machine-{uid}.gate", shared / f"machine-{uid}.lock"


def _flock(path: Path, mode: int) -> int:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, mode)
    return fd


def _module(item: pytest.Item | None) -> str | None:
    return None if item is None else item.nodeid.split("::", 1)[0]


def run_order(items: list[pytest.Item]) -> list[pytest.Item]:
    """The order that keeps both processes busy: ``alone`` modules first (while one process runs them, the other
    runs files without slow tests), then the files with slow tests, most slow tests first (the long ones start
    early, the short ones even out the end). Each file stays whole (``--dist loadfile`` sends whole files)."""
    by_file: dict[str, list[pytest.Item]] = {}
    for item in items:
        by_file.setdefault(_module(item), []).append(item)

    def rank(tests: list[pytest.Item]) -> tuple[int, int]:
        slow = sum(1 for t in tests if t.get_closest_marker("slow"))
        return (0 if any(t.get_closest_marker("alone") for t in tests) else 1 if slow == 0 else 2, -slow)

    return [item for tests in sorted(by_file.values(), key=rank) for item in tests]


@contextmanager
def shared_fairly(item: pytest.Item, nextitem: pytest.Item | None):
    """Around one test's setup, call and teardown: hold the machine alone for an ``alone`` module (taken at its
    first test, given back after its last), or wait for that to end before a ``slow`` test."""
    files = _lock_files(item.config)
    module = _module(item)
    if files is None or not (item.get_closest_marker("slow") or item.get_closest_marker("alone")):
        yield
        return
    gate, lock = files
    if item.get_closest_marker("alone"):
        if module not in _held:
            gate_fd = _flock(gate, fcntl.LOCK_EX)
            _held[module] = (gate_fd, _flock(lock, fcntl.LOCK_EX))
        try:
            yield
        finally:
            if _module(nextitem) != module:
                for fd in _held.pop(module):
                    os.close(fd)  # closing releases the lock
        return
    gate_fd = _flock(gate, fcntl.LOCK_SH)
    try:
        lock_fd = _flock(lock, fcntl.LOCK_SH)
    finally:
        os.close(gate_fd)
    try:
        yield
    finally:
        os.close(lock_fd)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if hasattr(config, "workerinput"):  # each worker collects; the scheduler takes the workers' order
        items[:] = run_order(items)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None):
    with shared_fairly(item, nextitem):
        return (yield)

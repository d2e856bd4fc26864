"""Interrupting a run the way a user does: Ctrl+C (SIGINT to this process) once its first trial record is stored."""
from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Callable, TypeVar

T = TypeVar("T")


def interrupted_after_first_record(run: Callable[[], T], experiment_root: Path, deadline_s: float = 180) -> T:
    """``run()`` with a SIGINT sent once a ``record.json`` appears under ``experiment_root`` (or after
    ``deadline_s``); returns what ``run`` returned. A stray second signal does not end pytest."""

    def interrupt():
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline and not list(experiment_root.glob("*/trials/*/record.json")):
            time.sleep(0.2)
        os.kill(os.getpid(), signal.SIGINT)

    previous = signal.signal(signal.SIGINT, lambda *_: None)
    try:
        watcher = threading.Thread(target=interrupt, daemon=True)
        watcher.start()
        result = run()
        watcher.join()
    finally:
        signal.signal(signal.SIGINT, previous)
    return result

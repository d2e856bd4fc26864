"""One line out of an error: what records, probes and the command line show (driver and workers alike)."""
from __future__ import annotations


def last_line(error: BaseException | str, default: str = "", limit: int | None = None) -> str:
    """The last non-empty line of an error's text (a traceback's ``TypeError: ...``), stripped, at most ``limit``
    characters; ``default`` when there is none."""
    lines = [ln.strip() for ln in str(error).strip().splitlines() if ln.strip()]
    line = lines[-1] if lines else default
    return line[:limit] if limit is not None else line

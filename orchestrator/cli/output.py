"""The command line's two consoles: results on stdout, progress and errors on stderr."""
from __future__ import annotations

import sys

from rich.console import Console

err = Console(stderr=True, highlight=False)
out = Console(highlight=False, width=None if sys.stdout.isatty() else 200)


def print_json(data) -> None:
    """``data`` as one JSON document on stdout (what ``--json`` prints; NaN becomes null)."""
    import json
    import math

    def clean(v):
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, dict):
            return {str(k): clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        return v

    sys.stdout.write(json.dumps(clean(data), indent=1, default=str) + "\n")
    sys.stdout.flush()


def json_arg(parser) -> None:
    """The ``--json`` option of a command that lists or reports."""
    parser.add_argument("--json", action="store_true", help="print the result as JSON on stdout (for scripts)")


def say(message: str) -> None:
    """A progress line on stderr."""
    err.print(message, soft_wrap=True)


def error_line(message: str) -> None:
    """The one line a failed command prints."""
    err.print(f"[bold red]error:[/] {message}", soft_wrap=True, markup=True, highlight=False)

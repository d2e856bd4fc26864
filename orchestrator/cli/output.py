"""The command line's two consoles: results on stdout, progress and errors on stderr."""
from __future__ import annotations

import sys

from rich.console import Console

err = Console(stderr=True, highlight=False)
out = Console(highlight=False, width=None if sys.stdout.isatty() else 200)


def say(message: str) -> None:
    """A progress line on stderr."""
    err.print(message, soft_wrap=True)


def error_line(message: str) -> None:
    """The one line a failed command prints."""
    err.print(f"[bold red]error:[/] {message}", soft_wrap=True, markup=True, highlight=False)

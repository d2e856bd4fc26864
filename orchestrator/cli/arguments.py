"""The command line's parser and argument types: every refusal is one line (exit 2), usage stays in ``--help``.

argparse prints its usage and then the error (two lines or more); ``OneLineParser.error`` prints the error
alone, naming the command. The types refuse empty strings and numbers that are not finite or out of range.
"""
from __future__ import annotations

import argparse
import math
import sys


class OneLineParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line on stderr (and exit 2); ``--help`` still shows usage."""

    def error(self, message: str):  # argparse's hook for every parse error
        from orchestrator.cli.output import error_line

        error_line(f"{self.prog}: {message} (see '{self.prog} --help')")
        sys.exit(2)


def text(value: str) -> str:
    """A non-empty string without control characters."""
    if not value.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    if any(ord(c) < 32 for c in value):
        raise argparse.ArgumentTypeError("must not hold control characters")
    return value


def number(low: float | None = None, high: float | None = None, *, whole: bool = False, low_open: bool = False):
    """A finite number (an integer with ``whole``) in [low, high] (``low_open``: above low)."""

    def parse(value: str):
        try:
            parsed = int(value) if whole else float(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{value}' is not a {'whole number' if whole else 'number'}") from None
        if not math.isfinite(parsed):
            raise argparse.ArgumentTypeError(f"'{value}' is not a finite number")
        if low is not None and (parsed <= low if low_open else parsed < low):
            raise argparse.ArgumentTypeError(f"must be {'above' if low_open else 'at least'} {low:g}, got {value}")
        if high is not None and parsed > high:
            raise argparse.ArgumentTypeError(f"must be at most {high:g}, got {value}")
        return parsed

    parse.__name__ = "whole number" if whole else "number"  # what argparse names in "invalid <type> value"
    return parse

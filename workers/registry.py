"""One generic name -> entry registry, used for architectures, dataset sources and device kinds.

In the style of timm's ``register_model`` and SkyPilot's cloud registry: an entry is registered once under a
name (a second registration of the name is refused), names are listed sorted, and an unknown name is one line
naming what it is and every valid name.
"""
from __future__ import annotations

import fnmatch
from typing import Generic, Iterator, TypeVar

T = TypeVar("T")


class UnknownName(KeyError):
    """A name no entry is registered under; ``str()`` is the one-line message."""

    def __str__(self) -> str:
        return str(self.args[0])


class Registry(Generic[T]):
    """Entries of one kind (``what``: "architecture", "dataset source", "device kind") by name, in the order
    they were registered."""

    def __init__(self, what: str) -> None:
        self.what = what
        self._entries: dict[str, T] = {}

    def add(self, name: str, entry: T) -> T:
        """Register ``entry`` under ``name``; a name registered already is refused (``ValueError``)."""
        if name in self._entries:
            raise ValueError(f"{self.what} '{name}' is registered twice")
        self._entries[name] = entry
        return entry

    def get(self, name: str) -> T:
        """The entry of ``name``; ``UnknownName`` (one line listing the valid names) when there is none."""
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownName(f"unknown {self.what} '{name}' (valid: {', '.join(self.names())})") from None

    def names(self, pattern: str = "*") -> list[str]:
        """Registered names matching a shell-style wildcard, sorted."""
        return sorted(n for n in self._entries if fnmatch.fnmatch(n, pattern))

    def entries(self) -> list[T]:
        """Every entry, in registration order."""
        return list(self._entries.values())

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

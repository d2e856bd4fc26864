"""Reading experiment YAML strictly: safe types only, no duplicate keys, bounded alias expansion and nesting.

``yaml.safe_load`` accepts a mapping that names a key twice (the last one silently wins), expands aliases
without limit (a "billion laughs" document takes gigabytes) and recurses once per nesting level (a deeply
nested list ends in a RecursionError). All are refused here with one line, and ``read_input_file`` refuses
what is not a regular file (a FIFO, ``/dev/zero``, a folder) before opening it.
"""
from __future__ import annotations

import os
import stat
from pathlib import Path

import yaml

MAX_ALIASES = 100           # alias uses in one document
MAX_EXPANDED_VALUES = 100_000  # values in the document with every alias expanded
MAX_DOCUMENT_BYTES = 1_000_000
MAX_DEPTH = 32              # nesting of lists and mappings (experiment files use 4)


class YAMLInputError(ValueError):
    """A document that is not acceptable as an experiment file (message names the line where it can)."""


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys and counts alias uses."""

    def __init__(self, stream):
        super().__init__(stream)
        self._aliases = 0
        self._depth = 0

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                mark = self.peek_event().start_mark
                raise YAMLInputError(f"more than {MAX_ALIASES} YAML aliases (line {mark.line + 1}); "
                                     "write the values out instead")
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise YAMLInputError(f"nested more than {MAX_DEPTH} levels deep (line {mark.line + 1})")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node, deep=False):
        seen = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise YAMLInputError(f"key '{key}' appears twice in one mapping (lines {seen[key] + 1} and "
                                     f"{key_node.start_mark.line + 1}); keep one")
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


def read_input_file(path: str | Path, what: str = "experiment file", max_bytes: int = MAX_DOCUMENT_BYTES) -> bytes:
    """The bytes of a regular file of at most ``max_bytes``; ``YAMLInputError`` for anything else (a FIFO, a
    device, a folder, a missing file), decided from ``stat`` before the file is opened."""
    try:
        info = os.stat(path)
    except OSError as err:
        raise YAMLInputError(f"cannot read {what} ({err.strerror})") from None
    if not stat.S_ISREG(info.st_mode):
        kind = ("a folder" if stat.S_ISDIR(info.st_mode) else "a FIFO" if stat.S_ISFIFO(info.st_mode)
                else "a device" if stat.S_ISCHR(info.st_mode) or stat.S_ISBLK(info.st_mode) else "a socket")
        raise YAMLInputError(f"not a regular file (it is {kind}); "
                             f"nothing was read")
    if info.st_size > max_bytes:
        raise YAMLInputError(f"the {what} is larger than {max_bytes // 1000} kB")
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as fh:
            data = fh.read(max_bytes + 1)
    except OSError as err:
        raise YAMLInputError(f"cannot read {what} ({err.strerror})") from None
    if len(data) > max_bytes:
        raise YAMLInputError(f"the {what} is larger than {max_bytes // 1000} kB")
    return data


def load_yaml(text: str | bytes):
    """Parse one YAML document strictly; ``YAMLInputError`` or ``yaml.YAMLError`` on bad input."""
    if isinstance(text, bytes):
        if len(text) > MAX_DOCUMENT_BYTES:
            raise YAMLInputError(f"the file is larger than {MAX_DOCUMENT_BYTES // 1000} kB")
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise YAMLInputError("not a text file (it is not UTF-8); an experiment file is YAML text") from None
    if "\x00" in text:
        raise YAMLInputError("not a text file (it contains NUL bytes); an experiment file is YAML text")
    data = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    _check_expanded_size(data)
    return data


def _check_expanded_size(data) -> None:
    """Refuse a document whose aliases expand to more than ``MAX_EXPANDED_VALUES`` values (counted with every
    shared reference expanded, as a consumer that copies the data would)."""
    count, stack = 0, [data]
    while stack:
        value = stack.pop()
        count += 1
        if count > MAX_EXPANDED_VALUES:
            raise YAMLInputError(f"the document expands to more than {MAX_EXPANDED_VALUES:,} values through YAML "
                                 "aliases; write the values out instead")
        if isinstance(value, dict):
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)

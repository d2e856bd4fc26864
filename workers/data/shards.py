"""Prepared data on disk as shards: uncompressed ``.npy`` image shards (memory-mappable) plus a small JSON index.

A prepared setting is one folder::

    index.json                 format, image shape, class names, meta, per-file sha256 and size, split layout
    train-00000.npy ...        uint8 (n, H, W, 3) images, ``rows_per_shard`` rows each (the last may be shorter)
    train-labels.npy ...       int64 labels of every split
    ids.json                   image ids of every split

``index.json`` is written last, so a folder with an index is complete. ``ShardWriter`` writes a folder from
chunks of rows (it buffers one shard per split, never the data set); ``open_sharded`` opens one, verifying
every file's checksum; readers read just the rows they need through the operating system's page cache, which
every trial on a node shares (the shards can also be memory-mapped with ``np.load(..., mmap_mode="r")``).

Rows are shuffled per epoch by ``epoch_order``: blocks of ``shuffle_block`` rows in a seeded random order,
rows mixed within windows of a few blocks. Shards hold a whole number of blocks, so the order (and a trial's
result) does not depend on how many shards the rows were cut into.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from workers.data.sources import DatasetError

FORMAT = "skinlesion-shards"
FORMAT_VERSION = 1
INDEX = "index.json"
SPLITS = ("train", "val", "test")
SHARD_BYTES = 128 * 2**20  # target size of one image shard
SHUFFLE_BLOCK = 64  # rows read together when shuffling; shards hold a multiple of it
SHUFFLE_WINDOW = 8  # blocks whose rows are mixed with each other


class ShardError(DatasetError):
    """A prepared-data folder that is missing, incomplete or corrupt (the message names the file)."""


class DiskSpaceError(OSError):
    """Not enough free disk for prepared data (the message names the path)."""


def rows_per_shard_for(image_shape: tuple[int, ...], shuffle_block: int = SHUFFLE_BLOCK,
                       shard_bytes: int = SHARD_BYTES) -> int:
    """Rows of one shard: about ``shard_bytes``, a whole number of shuffle blocks (at least one)."""
    row = int(np.prod(image_shape))
    return max(1, shard_bytes // (row * shuffle_block)) * shuffle_block


def check_free_space(directory: str | Path, needed_bytes: int) -> None:
    """Raise ``DiskSpaceError`` (one line naming the path) when ``directory``'s disk has less than needed free."""
    probe = Path(directory)
    while not probe.exists():
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if free < needed_bytes:
        raise DiskSpaceError(f"not enough disk space for prepared data at '{directory}': needs "
                             f"{needed_bytes / 1e9:.2f} GB, {free / 1e9:.2f} GB free")


def sha256_file(path: Path, block: int = 8 * 2**20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(block):
            digest.update(chunk)
    return digest.hexdigest()


class _HashingFile:
    """A write-only file object that hashes what passes through it."""

    def __init__(self, fh):
        self.fh, self.digest, self.size = fh, hashlib.sha256(), 0

    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        self.digest.update(view)
        self.size += len(view)
        return self.fh.write(view)


def _save_npy(path: Path, array: np.ndarray) -> dict:
    """Write ``array`` as ``.npy``; returns its index entry (sha256, bytes)."""
    with open(path, "wb") as fh:
        out = _HashingFile(fh)
        np.lib.format.write_array(out, np.ascontiguousarray(array), allow_pickle=False)
    return {"sha256": out.digest.hexdigest(), "bytes": out.size}


def shard_name(split: str, k: int) -> str:
    """File name of ``split``'s ``k``-th image shard."""
    return f"{split}-{k:05d}.npy"


def write_shard(directory: str | Path, name: str, images: np.ndarray) -> dict:
    """Write one image shard (``images`` uint8 (n, H, W, 3)) into ``directory``; returns its index entry. Any
    process that sees ``directory`` can write a shard, so shards are written in parallel."""
    return _save_npy(Path(directory) / name, images) | {"rows": int(len(images))}


@dataclass
class _SplitBuffer:
    """Rows of one split waiting for their shard to fill."""

    images: np.ndarray
    filled: int = 0
    shards: list[str] = field(default_factory=list)
    labels: list[np.ndarray] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)


class ShardWriter:
    """Write a prepared-data folder from chunks of rows, split by split, holding at most one shard per split."""

    def __init__(self, directory: str | Path, image_shape: tuple[int, ...], *, expected_rows: int,
                 rows_per_shard: int | None = None, shuffle_block: int = SHUFFLE_BLOCK):
        self.directory = Path(directory)
        self.image_shape = tuple(int(v) for v in image_shape)
        self.shuffle_block = int(shuffle_block)
        self.rows_per_shard = int(rows_per_shard or rows_per_shard_for(self.image_shape, self.shuffle_block))
        if self.rows_per_shard % self.shuffle_block:
            raise ValueError(f"rows_per_shard {self.rows_per_shard} is not a multiple of shuffle_block {shuffle_block}")
        row_bytes = int(np.prod(self.image_shape))
        check_free_space(self.directory, int(expected_rows * (row_bytes + 256) * 1.02) + 2**20)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.files: dict[str, dict] = {}
        self._splits: dict[str, _SplitBuffer] = {}

    def append(self, split: str, images: np.ndarray, labels: np.ndarray, ids: list[str]) -> None:
        """Add rows (in order) to ``split``; full shards are written at once."""
        if split not in SPLITS:
            raise ValueError(f"unknown split '{split}'")
        if tuple(images.shape[1:]) != self.image_shape or images.dtype != np.uint8:
            raise ValueError(f"rows of shape {images.shape[1:]} {images.dtype}; expected {self.image_shape} uint8")
        buf = self._splits.setdefault(split, _SplitBuffer(np.empty((self.rows_per_shard, *self.image_shape), np.uint8)))
        buf.labels.append(np.asarray(labels, dtype=np.int64))
        buf.ids += [str(i) for i in ids]
        done = 0
        while done < len(images):
            take = min(len(images) - done, self.rows_per_shard - buf.filled)
            buf.images[buf.filled:buf.filled + take] = images[done:done + take]
            buf.filled += take
            done += take
            if buf.filled == self.rows_per_shard:
                self._flush(split, buf)

    def _flush(self, split: str, buf: _SplitBuffer) -> None:
        if not buf.filled:
            return
        name = shard_name(split, len(buf.shards))
        self.files[name] = write_shard(self.directory, name, buf.images[:buf.filled])
        buf.shards.append(name)
        buf.filled = 0

    def add_written(self, split: str, shards: list[tuple[str, dict]], labels: np.ndarray, ids: list[str]) -> None:
        """Record a split's shards written elsewhere by ``write_shard`` ((name, entry) in row order; each full
        but the last) with the split's labels and ids, instead of ``append``-ing its rows."""
        if split in self._splits:
            raise ValueError(f"split '{split}' already has rows")
        if [name for name, _ in shards] != [shard_name(split, k) for k in range(len(shards))] or \
                any(e["rows"] != self.rows_per_shard for _, e in shards[:-1]) or \
                sum(e["rows"] for _, e in shards) != len(labels) or len(labels) != len(ids):
            raise ValueError(f"shards of split '{split}' do not match its {len(labels)} rows")
        buf = self._splits[split] = _SplitBuffer(np.empty((0, *self.image_shape), np.uint8))
        buf.shards, buf.labels, buf.ids = [n for n, _ in shards], [np.asarray(labels, np.int64)], [str(i) for i in ids]
        self.files.update(dict(shards))

    def finish(self, class_names: list[str], meta: dict[str, Any]) -> dict:
        """Write the last shards, labels, ids and (last) the index; returns the index."""
        layout, ids = {}, {}
        for split in SPLITS:
            buf = self._splits.get(split) or _SplitBuffer(np.empty((0, *self.image_shape), np.uint8))
            self._flush(split, buf)
            labels = np.concatenate(buf.labels) if buf.labels else np.zeros(0, np.int64)
            label_file = f"{split}-labels.npy"
            self.files[label_file] = _save_npy(self.directory / label_file, labels)
            layout[split] = {"n": int(len(labels)), "shards": buf.shards, "labels": label_file}
            ids[split] = buf.ids
        ids_bytes = json.dumps(ids).encode()
        (self.directory / "ids.json").write_bytes(ids_bytes)
        self.files["ids.json"] = {"sha256": hashlib.sha256(ids_bytes).hexdigest(), "bytes": len(ids_bytes)}
        index = {"format": FORMAT, "version": FORMAT_VERSION, "image_shape": list(self.image_shape), "dtype": "uint8",
                 "rows_per_shard": self.rows_per_shard, "shuffle_block": self.shuffle_block,
                 "class_names": list(class_names), "meta": meta, "splits": layout, "files": self.files}
        (self.directory / INDEX).write_text(json.dumps(index, indent=1, default=_json_default))
        return index


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def read_index(directory: str | Path) -> dict:
    """The index of a prepared-data folder (``ShardError`` when absent or not this format)."""
    path = Path(directory) / INDEX
    try:
        index = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ShardError(f"prepared data: cannot read '{path}': {err}") from None
    if index.get("format") != FORMAT or index.get("version") != FORMAT_VERSION:
        raise ShardError(f"prepared data: '{path}' is not a {FORMAT} v{FORMAT_VERSION} index")
    return index


def verify_shards(directory: str | Path, index: dict | None = None, *, checksums: bool = True) -> list[str]:
    """Problems with the files an index lists (missing, wrong size, wrong sha256); empty when all are sound."""
    directory = Path(directory)
    index = index or read_index(directory)
    problems = []
    for name, entry in index["files"].items():
        path = directory / name
        if not path.is_file():
            problems.append(f"'{path}' is missing")
        elif path.stat().st_size != entry["bytes"]:
            problems.append(f"'{path}' has {path.stat().st_size} bytes, the index says {entry['bytes']}")
        elif checksums and sha256_file(path) != entry["sha256"]:
            problems.append(f"'{path}' does not match its sha256 checksum")
    return problems


def epoch_order(n: int, seed: int, epoch: int, block: int = SHUFFLE_BLOCK, window: int = SHUFFLE_WINDOW) -> np.ndarray:
    """Row order of one epoch: blocks of ``block`` rows in a random order, rows shuffled within each run of
    ``window`` consecutive blocks. Depends only on (n, seed, epoch, block, window)."""
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    rng = np.random.default_rng([int(seed) % 2**32, int(epoch)])
    blocks = rng.permutation(math.ceil(n / block))
    rows = (blocks[:, None] * block + np.arange(block)[None, :]).ravel()
    window_of = np.repeat(np.arange(len(blocks)) // window, block)
    keep = rows < n
    rows, window_of = rows[keep], window_of[keep]
    return rows[np.lexsort((rng.random(len(rows)), window_of))]


def _data_offset(path: Path) -> int:
    """Byte offset of the array data in an ``.npy`` file."""
    with open(path, "rb") as fh:
        version = np.lib.format.read_magic(fh)
        readers = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
        if version not in readers:
            raise ShardError(f"prepared data: '{path}' is an .npy of version {version}, not 1.0 or 2.0")
        readers[version](fh)
        return fh.tell()


class ShardedSplit:
    """The images of one split, read from its shards by global row index with positioned reads (``os.preadv``)
    through the operating system's page cache: a reader holds only the rows it asked for, and every process on
    the node shares the cached file pages."""

    def __init__(self, directory: Path, shards: list[str], n: int, rows_per_shard: int, image_shape: tuple):
        self.n, self.rows_per_shard, self.image_shape = n, rows_per_shard, tuple(image_shape)
        self.row_bytes = int(np.prod(self.image_shape))
        self._paths = [directory / name for name in shards]
        self._offsets = [_data_offset(path) for path in self._paths]
        self._fds: list[int] | None = None

    def __len__(self) -> int:
        return self.n

    def __del__(self):
        for fd in self._fds or []:
            os.close(fd)

    def _read(self, shard: int, first_row: int, out: np.ndarray) -> None:
        """Read ``len(out)`` consecutive rows of ``shard`` from ``first_row`` into ``out``."""
        if self._fds is None:
            self._fds = [os.open(path, os.O_RDONLY) for path in self._paths]
        view = memoryview(out).cast("B")
        offset = self._offsets[shard] + first_row * self.row_bytes
        while len(view):
            got = os.preadv(self._fds[shard], [view], offset)
            if got <= 0:
                raise ShardError(f"prepared data: '{self._paths[shard]}' ends early")
            view, offset = view[got:], offset + got

    def take(self, rows: np.ndarray) -> np.ndarray:
        """Images at global row positions ``rows`` (in that order); runs of consecutive rows are read at once."""
        rows = np.asarray(rows, dtype=np.int64)
        out = np.empty((len(rows), *self.image_shape), dtype=np.uint8)
        shard_of, offset = np.divmod(rows, self.rows_per_shard)
        starts = np.flatnonzero(np.r_[True, (np.diff(rows) != 1) | (np.diff(shard_of) != 0)]) if len(rows) else []
        for a, b in zip(starts, list(starts[1:]) + [len(rows)]):
            self._read(int(shard_of[a]), int(offset[a]), out[a:b])
        return out

    def read_all(self) -> np.ndarray:
        """Every image of the split as one in-memory array."""
        return self.take(np.arange(self.n))


class ShardedDataset:
    """Prepared train / validation / test data read from a shard folder (labels and ids in memory, images read
    row by row when asked for). Offers the same trial-facing methods as ``PreparedData``."""

    def __init__(self, directory: str | Path, index: dict):
        self.directory, self.index = Path(directory), index
        self.class_names: list[str] = list(index["class_names"])
        self.meta: dict[str, Any] = index.get("meta") or {}
        self.image_shape = tuple(index["image_shape"])
        self.shuffle_block = int(index["shuffle_block"])
        ids = json.loads((self.directory / "ids.json").read_text())
        for split in SPLITS:
            layout = index["splits"][split]
            images = ShardedSplit(self.directory, layout["shards"], layout["n"], index["rows_per_shard"], self.image_shape)
            setattr(self, f"images_{split}", images)
            setattr(self, f"y_{split}", np.load(self.directory / layout["labels"]))
            setattr(self, f"ids_{split}", list(ids[split]))

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def split_images(self, split: str) -> ShardedSplit:
        return getattr(self, f"images_{split}")

    def fit_inputs(self, batch_size: int, seed: int, start_epoch: int = 0, rows: np.ndarray | None = None) -> dict:
        """Keyword arguments for ``model.fit``: a stream of shuffled training batches (of ``rows`` only, when
        given) and its epoch length."""
        from workers.data.stream import TrainStream

        stream = TrainStream(self.images_train, self.y_train, batch_size, seed=seed, start_epoch=start_epoch,
                             block=self.shuffle_block, keep=rows)
        return {"x": stream, "steps_per_epoch": stream.steps_per_epoch}

    def predict_inputs(self, split: str, batch_size: int, devices: int = 1):
        """What ``model.predict`` reads for ``split``: its images in order, streamed, the last batch padded to a
        multiple of ``devices`` (the stream's ``n_rows`` is the split's size)."""
        from workers.data.stream import PredictStream

        return PredictStream(self.split_images(split), batch_size, devices)


def open_sharded(directory: str | Path, *, verify: bool = True) -> ShardedDataset:
    """Open a prepared-data folder; with ``verify`` every file's sha256 is checked first (``ShardError`` names
    the first missing or corrupt file)."""
    index = read_index(directory)
    problems = verify_shards(directory, index, checksums=verify)
    if problems:
        raise ShardError(f"prepared data: {problems[0]}" + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""))
    return ShardedDataset(directory, index)

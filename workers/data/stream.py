"""Keras input streams over image shards (``keras.utils.PyDataset``, so every backend reads them).

``TrainStream`` is endless: batch ``i`` belongs to epoch ``start_epoch + i // steps_per_epoch`` and its rows
follow ``epoch_order`` of that epoch, so the batches (and a resumed trial's) depend only on the index, never on
thread timing. A read-ahead thread copies the next batches out of the page cache while the device trains.
"""
from __future__ import annotations

import math
import threading
from concurrent.futures import Future, ThreadPoolExecutor

import keras
import numpy as np

from workers.data.shards import SHUFFLE_BLOCK, ShardedSplit, epoch_order


class _ReadAhead:
    """Computes ``load(i)`` for the next ``depth`` indices in a background thread while ``i`` is consumed."""

    def __init__(self, load, depth: int):
        self.load, self.depth = load, depth
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shard-readahead")
        self._pending: dict[int, Future] = {}
        self._lock = threading.Lock()

    def get(self, i: int):
        with self._lock:
            for stale in [k for k in self._pending if k < i or k > i + self.depth]:
                self._pending.pop(stale).cancel()
            for ahead in range(i + 1, i + 1 + self.depth):
                if ahead not in self._pending:
                    self._pending[ahead] = self._pool.submit(self.load, ahead)
            future = self._pending.pop(i, None)
        return future.result() if future is not None else self.load(i)


class TrainStream(keras.utils.PyDataset):
    """Shuffled (images, labels) training batches, epoch after epoch, read from the shards."""

    def __init__(self, images: ShardedSplit, labels: np.ndarray, batch_size: int, *, seed: int, start_epoch: int = 0,
                 block: int = SHUFFLE_BLOCK, keep: np.ndarray | None = None, read_ahead: int = 4):
        super().__init__(workers=1, use_multiprocessing=False)
        self.images, self.labels, self.batch_size = images, np.asarray(labels), int(batch_size)
        self.seed, self.start_epoch, self.block = int(seed), int(start_epoch), int(block)
        self._dropped = None if keep is None or len(keep) == len(self.labels) else \
            np.setdiff1d(np.arange(len(self.labels)), keep)
        self.n = len(self.labels) - (0 if self._dropped is None else len(self._dropped))
        self.steps_per_epoch = max(1, math.ceil(self.n / self.batch_size))
        self._order: tuple[int, np.ndarray] | None = None
        self._order_lock = threading.Lock()
        self._reader = _ReadAhead(self._batch, read_ahead)

    @property
    def num_batches(self):
        return None  # endless: fit() is given steps_per_epoch

    def order(self, epoch: int) -> np.ndarray:
        """Row order of ``epoch``, rows not kept left out (the last epoch's order is cached)."""
        with self._order_lock:
            if self._order is None or self._order[0] != epoch:
                order = epoch_order(len(self.labels), self.seed, epoch, self.block)
                if self._dropped is not None:
                    order = order[~np.isin(order, self._dropped)]
                self._order = (epoch, order)
            return self._order[1]

    def rows(self, i: int) -> np.ndarray:
        """Global rows of batch ``i``."""
        epoch, step = divmod(i, self.steps_per_epoch)
        return self.order(self.start_epoch + epoch)[step * self.batch_size:(step + 1) * self.batch_size]

    def _batch(self, i: int):
        rows = self.rows(i)
        return self.images.take(rows), self.labels[rows]

    def __getitem__(self, i: int):
        return self._reader.get(int(i))


class PredictStream(keras.utils.PyDataset):
    """A split's images in order, batch by batch (for ``model.predict``); the last batch is padded with blank
    images to a multiple of ``devices`` (predictions past ``n_rows`` are padding)."""

    def __init__(self, images: ShardedSplit, batch_size: int, devices: int = 1, read_ahead: int = 2):
        super().__init__(workers=1, use_multiprocessing=False)
        self.images, self.batch_size, self.devices = images, int(batch_size), int(devices)
        self.n_rows = len(images)
        self._reader = _ReadAhead(self._batch, read_ahead)

    @property
    def num_batches(self) -> int:
        return math.ceil(len(self.images) / self.batch_size)

    def _batch(self, i: int):
        start = i * self.batch_size
        x = self.images.take(np.arange(start, min(start + self.batch_size, len(self.images))))
        pad = (-len(x)) % self.devices
        return (np.concatenate([x, np.zeros((pad, *x.shape[1:]), x.dtype)]) if pad else x,)

    def __getitem__(self, i: int):
        if not 0 <= i < self.num_batches:
            raise IndexError(i)
        return self._reader.get(int(i))

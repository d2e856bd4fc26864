"""Prepare a trial's data: load, split FIRST, then augment only the training split.

``prepare_data`` depends only on (dataset, split, augmentation stage and settings): ``preparation_key``
hashes exactly those, so prepared arrays can be cached and shared by every trial that needs them.
"""
from __future__ import annotations

import functools
import hashlib
import io
import json
import os
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.model_selection import train_test_split

from workers.augment import augmentor_rebalance
from workers.data.sources import DatasetError, load_dataset

PREPARATION_VERSION = 1


@dataclass
class PreparedData:
    """Train / validation / test arrays (uint8 images, int labels, ids) and what was done to them."""

    x_train: np.ndarray
    y_train: np.ndarray
    ids_train: list[str]
    x_val: np.ndarray
    y_val: np.ndarray
    ids_val: list[str]
    x_test: np.ndarray
    y_test: np.ndarray
    ids_test: list[str]
    class_names: list[str]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        arrays = {k: getattr(self, k) for k in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")}
        header = {k: getattr(self, k) for k in ("ids_train", "ids_val", "ids_test", "class_names", "meta")}
        np.savez(buf, header=np.frombuffer(json.dumps(header).encode(), dtype=np.uint8), **arrays)
        return buf.getvalue()

    @classmethod
    def from_file(cls, path) -> "PreparedData":
        """Load from an ``.npz`` on disk without holding the file's bytes beside the arrays."""
        with np.load(path) as z:
            header = json.loads(z["header"].tobytes().decode())
            return cls(**{k: z[k] for k in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")}, **header)

    @classmethod
    def from_bytes(cls, data: bytes) -> "PreparedData":
        with np.load(io.BytesIO(data)) as z:
            header = json.loads(z["header"].tobytes().decode())
            return cls(**{k: z[k] for k in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")}, **header)


_SYNTHETIC_ONLY = ("samples_per_class", "synthetic_seed")


@functools.lru_cache(maxsize=64)
def dataset_fingerprint(path: str | None) -> str | None:
    """Names, sizes and modification times of the files under a local dataset path (stat only, no reads), so
    prepared data is recomputed when the files change. None for s3:// or paths this process cannot see."""
    if not path or "://" in path or not os.path.exists(path):
        return None
    digest = hashlib.sha256()
    entries = [path] if os.path.isfile(path) else sorted(
        os.path.join(root, name) for root, _, files in os.walk(path) for name in files)
    for entry in entries:
        st = os.stat(entry)
        digest.update(f"{os.path.relpath(entry, path)}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def preparation_key(dataset: dict, split: dict, augmentation: str, augmentation_settings: dict) -> str:
    """Content address of prepared data: a hash of every setting that changes it, and of the local data files."""
    if dataset.get("source") != "synthetic":
        dataset = {k: v for k, v in dataset.items() if k not in _SYNTHETIC_ONLY}
    relevant = {
        "v": PREPARATION_VERSION,
        "dataset": dataset,
        "files": dataset_fingerprint(dataset.get("path")),
        "split": split,
        # random augmentation happens on the device, so it prepares the same arrays as "none"
        "augmentor": augmentation_settings.get("augmentor_samples_per_class") if augmentation == "augmentor" else None,
    }
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:24]


def _split_indices(labels: np.ndarray, fraction: float, seed: int, idx: np.ndarray,
                   groups: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(rest, held-out) positions of ``idx``: stratified when every class can be, grouped when ``groups`` is set."""
    if groups is not None:
        return _group_split(labels, fraction, seed, idx, groups)
    counts = np.bincount(labels[idx])
    stratify = labels[idx] if counts[counts > 0].min() >= 2 else None
    try:
        return train_test_split(idx, test_size=fraction, random_state=seed, stratify=stratify)
    except ValueError:
        pass  # e.g. fewer held-out images than classes: fall back to an unstratified split
    try:
        return train_test_split(idx, test_size=fraction, random_state=seed)
    except ValueError as err:
        raise DatasetError(f"split: cannot hold out {fraction:.0%} of {len(idx)} image(s) ({err}); "
                           "use more images or change split fractions") from None


def _group_split(labels: np.ndarray, fraction: float, seed: int, idx: np.ndarray,
                 groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Stratified split that keeps each group (lesion) on one side: one fold of ``StratifiedGroupKFold``.

    The held-out share is 1/k for the k nearest to 1/fraction, so it approximates ``fraction``.
    """
    import warnings

    from sklearn.model_selection import StratifiedGroupKFold

    g = np.asarray(groups)[idx]
    n_groups = len(np.unique(g))
    if n_groups < 2:
        raise DatasetError(f"split: the {len(idx)} image(s) to split belong to {n_groups} lesion group(s); "
                           "a grouped split needs at least two")
    held_out_small = fraction <= 0.5
    k = max(2, min(n_groups, round(1 / (fraction if held_out_small else 1 - fraction))))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "least populated class has only n members"
        folds = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed % (2**32))
        big, small = next(folds.split(np.zeros(len(idx)), labels[idx], g))
    rest, held = (big, small) if held_out_small else (small, big)
    return idx[rest], idx[held]


def split_dataset(labels: np.ndarray, source_split: np.ndarray | None, split: dict,
                  groups: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices of train / validation / test: stratified with a fixed seed, or the source's own test split.

    With ``groups`` (e.g. HAM10000 lesion ids) the random splits are grouped stratified splits: no group has
    images on two sides.
    """
    all_idx = np.arange(len(labels))
    if len(all_idx) == 0:
        raise DatasetError("split: the dataset holds no images")
    seed = int(split.get("seed", 0))
    if split.get("use_source_test") and source_split is not None and (source_split == "test").any():
        test = all_idx[source_split == "test"]
        rest = all_idx[source_split != "test"]
    else:
        rest, test = _split_indices(labels, float(split.get("test_fraction", 0.2)), seed, all_idx, groups)
    val_fraction = float(split.get("val_fraction", 0.1))
    if val_fraction > 0:
        if len(rest) < 2:
            raise DatasetError(f"split: {len(rest)} image(s) left after the test split; cannot also hold out "
                               "validation images (use more images or set split.val_fraction: 0)")
        # val_fraction is a share of the whole data set; with the source's own test split it is a share of the rest
        of_rest = val_fraction if split.get("use_source_test") and len(rest) < len(all_idx) else \
            val_fraction / (1 - float(split.get("test_fraction", 0.2)))
        train, val = _split_indices(labels, of_rest, seed + 1, rest, groups)
    else:
        train, val = rest, np.array([], dtype=int)
    return np.sort(train), np.sort(val), np.sort(test)


def prepare_data(dataset: dict, split: dict, augmentation: str, augmentation_settings: dict) -> PreparedData:
    """Load, split, and (for the ``augmentor`` stage) rebalance the training split only."""
    t0 = time.perf_counter()
    data = load_dataset(dataset)
    t_load = time.perf_counter() - t0
    train, val, test = split_dataset(data.labels, data.source_split, split, data.groups)
    checks = [("train", train), ("test", test)] + ([("validation", val)] if float(split.get("val_fraction", 0.1)) > 0 else [])
    for name, idx in checks:
        if len(idx) == 0:
            raise DatasetError(f"split: the {name} split is empty; use more images or change split fractions")
    empty = [data.class_names[c] for c in range(len(data.class_names)) if not (data.labels[train] == c).any()]
    if empty:
        raise DatasetError(f"dataset: class '{empty[0]}' has no training images after the split")
    ids = np.asarray(data.ids, dtype=object)
    x_train, y_train, ids_train = data.images[train], data.labels[train], list(ids[train])
    before = np.bincount(y_train, minlength=len(data.class_names)).tolist()
    t1 = time.perf_counter()
    if augmentation == "augmentor":
        x_train, y_train, ids_train = augmentor_rebalance(
            x_train, y_train, ids_train,
            samples_per_class=int(augmentation_settings.get("augmentor_samples_per_class", 500)),
            seed=int(split.get("seed", 0)),
        )
    t_aug = time.perf_counter() - t1
    meta = {
        "synthetic": data.synthetic,
        "skipped_images": data.skipped,
        "n_loaded": int(len(data.labels)),
        "train_counts_before_augmentation": before,
        "train_counts": np.bincount(y_train, minlength=len(data.class_names)).tolist(),
        "n_val": int(len(val)),
        "n_test": int(len(test)),
        "grouped_split": data.groups is not None,
        "load_s": t_load,
        "augment_s": t_aug,
        "augmented_images": int(len(y_train) - len(train)),
    }
    return PreparedData(
        x_train=x_train, y_train=y_train, ids_train=ids_train,
        x_val=data.images[val], y_val=data.labels[val], ids_val=list(ids[val]),
        x_test=data.images[test], y_test=data.labels[test], ids_test=list(ids[test]),
        class_names=data.class_names, meta=meta,
    )

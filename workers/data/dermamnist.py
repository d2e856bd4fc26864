"""DermaMNIST (MedMNIST v2): one ``.npz`` with train/val/test images and labels, at 28, 64, 128 or 224 pixels.

``dataset.path`` names the ``.npz`` file (or a folder holding exactly one, or ``dermamnist*.npz``). Images may be
grayscale (N, H, W) / (N, H, W, 1) or RGB (N, H, W, 3); they are resized to ``dataset.image_size``. The
source's own split is kept in ``source_split`` ("train" / "val" / "test"), so ``split.use_source_test``
evaluates on the official test images.
"""
from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from workers.data.sources import DatasetError, LoadedDataset, register_source

# HAM10000 order, as MedMNIST's INFO["dermamnist"]["label"] lists them.
DERMAMNIST_CLASSES = [
    "actinic keratoses and intraepithelial carcinoma",
    "basal cell carcinoma",
    "benign keratosis-like lesions",
    "dermatofibroma",
    "melanoma",
    "melanocytic nevi",
    "vascular lesions",
]
SPLITS = ("train", "val", "test")


def _find_npz(path: Path) -> Path:
    if path.is_file():
        return path
    if path.is_dir():
        found = sorted(path.glob("*.npz"))
        named = [p for p in found if p.name.lower().startswith("dermamnist")]
        if len(named) == 1 or len(found) == 1:
            return (named or found)[0]
        if found:
            raise DatasetError(f"dataset.path: '{path}' holds several .npz files ({', '.join(p.name for p in found)}); "
                               "name the DermaMNIST file itself")
    raise DatasetError(f"dataset.path: '{path}' is not a DermaMNIST .npz file (e.g. dermamnist.npz, dermamnist_128.npz)")


def _to_rgb(images: np.ndarray, split: str, source: Path) -> np.ndarray:
    if images.ndim == 4 and images.shape[-1] == 1:
        images = images[..., 0]
    if images.ndim == 3:
        images = np.repeat(images[..., None], 3, axis=-1)
    if images.ndim != 4 or images.shape[-1] != 3 or min(images.shape[1:3]) < 1:
        raise DatasetError(f"dataset.path: '{source}' key {split}_images has shape {images.shape}; expected "
                           "(N, H, W) grayscale or (N, H, W, 3) RGB")
    if images.dtype != np.uint8:
        if np.issubdtype(images.dtype, np.floating) and images.size and float(np.nanmax(images)) <= 1.0:
            images = images * 255.0
        images = np.clip(np.nan_to_num(images), 0, 255).astype(np.uint8)
    return images


def _resize(images: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    if images.shape[1:3] == tuple(size):
        return np.ascontiguousarray(images)
    out = np.empty((len(images), size[0], size[1], 3), dtype=np.uint8)
    for i, img in enumerate(images):
        out[i] = np.asarray(Image.fromarray(img).resize((size[1], size[0]), Image.BILINEAR), dtype=np.uint8)
    return out


@register_source("dermamnist", classes=DERMAMNIST_CLASSES, images=10015)
def load_dermamnist(settings: dict[str, Any]) -> LoadedDataset:
    """All three splits of the file, resized, with their origin in ``source_split``."""
    source = _find_npz(Path(settings["path"]))
    size = tuple(settings.get("image_size", (32, 32)))
    try:
        archive = np.load(source, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
        raise DatasetError(f"dataset.path: cannot read '{source}' as an .npz file: {err}") from None
    images, labels, ids, split = [], [], [], []
    with archive:
        missing = [f"{s}_{k}" for s in SPLITS for k in ("images", "labels") if f"{s}_{k}" not in archive.files]
        if missing:
            raise DatasetError(f"dataset.path: '{source}' has no key '{missing[0]}' (a MedMNIST file holds "
                               "train_images, train_labels, val_images, val_labels, test_images, test_labels)")
        shape = None
        for name in SPLITS:
            try:
                x, y = archive[f"{name}_images"], archive[f"{name}_labels"]
            except (ValueError, OSError, zipfile.BadZipFile) as err:
                raise DatasetError(f"dataset.path: cannot read '{name}' arrays of '{source}': {err}") from None
            x = _to_rgb(x, name, source)
            if shape is not None and x.shape[1:] != shape:
                raise DatasetError(f"dataset.path: '{source}' {name}_images are {x.shape[1:]} but earlier splits are "
                                   f"{shape}; all splits must share one image size")
            shape = x.shape[1:]
            if y.ndim == 2 and y.shape[1] == 1:
                y = y[:, 0]
            if y.ndim != 1 or len(y) != len(x):
                raise DatasetError(f"dataset.path: '{source}' {name}_labels has shape {y.shape}; expected "
                                   f"({len(x)},) or ({len(x)}, 1) to match {name}_images")
            if not np.issubdtype(y.dtype, np.integer):
                if not np.issubdtype(y.dtype, np.floating) or not np.all(np.equal(np.mod(y, 1), 0)):
                    raise DatasetError(f"dataset.path: '{source}' {name}_labels must be integer class indices")
            y = y.astype(np.int64)
            if len(y) and (y.min() < 0 or y.max() >= len(DERMAMNIST_CLASSES)):
                raise DatasetError(f"dataset.path: '{source}' {name}_labels hold {int(y.min())}..{int(y.max())}; "
                                   f"DermaMNIST labels are 0..{len(DERMAMNIST_CLASSES) - 1}")
            images.append(_resize(x, size))
            labels.append(y)
            ids += [f"{name}/{i}" for i in range(len(y))]
            split += [name] * len(y)
    if not ids:
        raise DatasetError(f"dataset.path: '{source}' holds no images")
    return LoadedDataset(
        images=np.concatenate(images),
        labels=np.concatenate(labels),
        class_names=list(DERMAMNIST_CLASSES),
        ids=ids,
        source_split=np.asarray(split),
    )

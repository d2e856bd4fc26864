"""Dataset sources: each turns a dataset setting into decoded, resized uint8 images with labels.

A source is a function registered with ``@register_source(name)``; it receives the ``dataset`` block of the
experiment file (a dict) and returns a ``LoadedDataset``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
from PIL import Image, UnidentifiedImageError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff"}


class DatasetError(ValueError):
    """A dataset that cannot be used, phrased for the user in one line."""


@dataclass
class LoadedDataset:
    """Images (N, H, W, 3) uint8, integer labels, class names, stable image ids.

    ``source_split`` holds "train" / "test" per image where the source ships its own split, else None.
    """

    images: np.ndarray
    labels: np.ndarray
    class_names: list[str]
    ids: list[str]
    source_split: np.ndarray | None = None
    skipped: list[str] = field(default_factory=list)
    synthetic: bool = False


_SOURCES: dict[str, Callable[[dict[str, Any]], LoadedDataset]] = {}


def register_source(name: str):
    def wrap(fn):
        _SOURCES[name] = fn
        return fn

    return wrap


def list_sources() -> list[str]:
    return sorted(_SOURCES)


def load_dataset(settings: dict[str, Any]) -> LoadedDataset:
    """Load the dataset a spec's ``dataset`` block describes, then apply its class mapping."""
    source = settings.get("source", "synthetic")
    if source not in _SOURCES:
        raise DatasetError(f"dataset.source: unknown source '{source}' (valid: {', '.join(list_sources())})")
    data = _SOURCES[source](settings)
    return apply_class_mapping(data, settings.get("classes", "all"), settings.get("drop_classes") or [])


def decode_image(path: Path | str, size: tuple[int, int], raw: bytes | None = None) -> np.ndarray | None:
    """Decode one image to RGB uint8 resized to ``size`` (H, W); None when unreadable or corrupt."""
    import io

    try:
        with Image.open(io.BytesIO(raw) if raw is not None else path) as img:
            img = img.convert("RGB").resize((size[1], size[0]), Image.BILINEAR)
            return np.asarray(img, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        return None


def stack(images: list[np.ndarray], size: tuple[int, int]) -> np.ndarray:
    if not images:
        return np.zeros((0, size[0], size[1], 3), dtype=np.uint8)
    return np.stack(images).astype(np.uint8, copy=False)


def apply_class_mapping(data: LoadedDataset, classes: str | list[str], drop: list[str]) -> LoadedDataset:
    """Full multi-class ("all"), binary melanoma vs rest, or a chosen subset of classes (others dropped)."""
    names = list(data.class_names)
    for name in drop:
        if name not in names:
            raise DatasetError(f"dataset.drop_classes: class '{name}' is not in the data (classes: {', '.join(names)})")
    keep_names = [n for n in names if n not in drop]
    if isinstance(classes, list):
        for name in classes:
            if name not in names:
                raise DatasetError(f"dataset.classes: class '{name}' is not in the data (classes: {', '.join(names)})")
        keep_names = [n for n in keep_names if n in classes]
    keep_idx = [names.index(n) for n in keep_names]
    mask = np.isin(data.labels, keep_idx)
    remap = {old: new for new, old in enumerate(keep_idx)}
    labels = np.array([remap[int(label)] for label in data.labels[mask]], dtype=np.int64)
    out = LoadedDataset(
        images=data.images[mask],
        labels=labels,
        class_names=keep_names,
        ids=[i for i, m in zip(data.ids, mask) if m],
        source_split=None if data.source_split is None else data.source_split[mask],
        skipped=data.skipped,
        synthetic=data.synthetic,
    )
    if classes == "binary_melanoma":
        mel = [i for i, n in enumerate(out.class_names) if n.lower() in {"melanoma", "mel"}]
        if not mel:
            raise DatasetError("dataset.classes: binary_melanoma needs a class named 'melanoma' or 'MEL' in the data")
        out.labels = (out.labels == mel[0]).astype(np.int64)
        out.class_names = ["other", "melanoma"]
    return out


def _folder_classes(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def read_class_folders(root: Path, size: tuple[int, int], class_names: list[str], split_name: str):
    """Read ``root/<class>/*`` images. Returns images, labels, ids, skipped file names."""
    images, labels, ids, skipped = [], [], [], []
    for label, name in enumerate(class_names):
        folder = root / name
        if not folder.is_dir():
            continue
        for path in sorted(folder.iterdir()):
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            img = decode_image(path, size)
            if img is None:
                skipped.append(str(path.relative_to(root.parent)))
                continue
            images.append(img)
            labels.append(label)
            ids.append(f"{split_name}/{name}/{path.stem}")
    return images, labels, ids, skipped


@register_source("isic_folder")
def load_isic_folder(settings: dict[str, Any]) -> LoadedDataset:
    """Kaggle "Skin cancer ISIC" layout: ``Train/<class>/*`` and ``Test/<class>/*`` (either may be lower-case)."""
    root = Path(settings["path"])
    if not root.is_dir():
        raise DatasetError(f"dataset.path: folder '{root}' does not exist (expected Train/<class>/ and Test/<class>/)")
    size = tuple(settings.get("image_size", (32, 32)))
    parts = {p.name.lower(): p for p in root.iterdir() if p.is_dir()}
    if "train" not in parts:
        raise DatasetError(f"dataset.path: '{root}' has no Train/ folder (expected Train/<class>/ and Test/<class>/)")
    class_names = _folder_classes(parts["train"])
    if not class_names:
        raise DatasetError(f"dataset.path: '{parts['train']}' has no class folders")
    images, labels, ids, skipped, split = [], [], [], [], []
    for split_name in ("train", "test"):
        if split_name not in parts:
            continue
        imgs, labs, idents, skip = read_class_folders(parts[split_name], size, class_names, split_name)
        images += imgs
        labels += labs
        ids += idents
        skipped += skip
        split += [split_name] * len(imgs)
    if not images:
        raise DatasetError(f"dataset.path: no readable images under '{root}'")
    return LoadedDataset(
        images=stack(images, size),
        labels=np.asarray(labels, dtype=np.int64),
        class_names=class_names,
        ids=ids,
        source_split=np.asarray(split),
        skipped=skipped,
        synthetic=bool(settings.get("_synthetic", False)),
    )

"""What can be checked about a dataset by listing alone, before anything starts: the folder is there, has the
layout its source expects, holds images, and has every class the spec names. Nothing is decoded or written.

Remote (``s3://``) datasets are checked when their data is prepared.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from workers.data.sources import IMAGE_SUFFIXES, DatasetError

CLASS_LISTS: dict[str, Callable[[dict[str, Any]], list[str]]] = {}


def _lists_classes(source: str):
    def wrap(fn):
        CLASS_LISTS[source] = fn
        return fn

    return wrap


def _has_images(folder: Path) -> bool:
    return any(p.suffix.lower() in IMAGE_SUFFIXES and p.is_file() for p in folder.rglob("*"))


@_lists_classes("isic_folder")
def _isic_folder_classes(settings: dict[str, Any]) -> list[str]:
    root = Path(settings["path"])
    expected = "expected Train/<class>/ and Test/<class>/ folders of images"
    parts = {p.name.lower(): p for p in root.iterdir() if p.is_dir()}
    if "train" not in parts:
        raise DatasetError(f"dataset.path: '{root}' has no Train/ folder ({expected})")
    classes = sorted(p.name for p in parts["train"].iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DatasetError(f"dataset.path: '{parts['train']}' has no class folders ({expected})")
    if not _has_images(parts["train"]):
        raise DatasetError(f"dataset.path: no images under '{parts['train']}' ({expected})")
    return classes


@_lists_classes("ham10000")
def _ham10000_classes(settings: dict[str, Any]) -> list[str]:
    from workers.data.ham10000 import HAM10000_CLASSES

    return list(HAM10000_CLASSES)


@_lists_classes("isic2019")
def _isic2019_classes(settings: dict[str, Any]) -> list[str]:
    from workers.data.isic2019 import ISIC2019_CLASSES

    return list(ISIC2019_CLASSES)


@_lists_classes("synthetic")
def _synthetic_classes(settings: dict[str, Any]) -> list[str]:
    from workers.data.synthetic import ISIC_CLASSES

    return list(ISIC_CLASSES)


def check_dataset_layout(settings: dict[str, Any]) -> None:
    """Raise ``DatasetError`` (one line naming the field) for a dataset that cannot work, found by listing."""
    path = settings.get("path")
    if path and "://" not in path:
        root = Path(path)
        if not root.exists():
            raise DatasetError(f"dataset.path: '{path}' does not exist")
        if root.is_dir() and not any(root.iterdir()):
            raise DatasetError(f"dataset.path: folder '{path}' is empty")
    elif path:
        return
    lister = CLASS_LISTS.get(settings.get("source", "synthetic"))
    if lister is None or (path and not Path(path).is_dir()):
        return
    available = lister(settings)
    for key in ("classes", "drop_classes"):
        wanted = settings.get(key)
        for name in wanted if isinstance(wanted, list) else []:
            if name not in available:
                raise DatasetError(f"dataset.{key}: class '{name}' is not in the data (classes: {', '.join(available)})")

"""What can be checked about a dataset before anything starts, without decoding or writing anything: the folder
is there and has the layout its source expects, holds no special files (FIFOs, devices, sockets, symlink loops
or dangling links), its label file parses strictly, every image's header is readable, every class the spec
names exists, and the split the spec asks for can be made (``check_dataset_contents``).

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
    from workers.data.sources import _folder_classes

    classes = _folder_classes(parts["train"])
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
    if path and not Path(path).is_dir() and settings.get("source") in ("isic_folder", "ham10000", "isic2019"):
        raise DatasetError(f"dataset.path: '{path}' is a file; source '{settings['source']}' reads a folder")
    lister = CLASS_LISTS.get(settings.get("source", "synthetic"))
    if lister is None or (path and not Path(path).is_dir()):
        return
    available = lister(settings)
    for key in ("classes", "drop_classes"):
        wanted = settings.get(key)
        for name in wanted if isinstance(wanted, list) else []:
            if name not in available:
                raise DatasetError(f"dataset.{key}: class '{name}' is not in the data (classes: {', '.join(available)})")
    drop = settings.get("drop_classes") or []
    if settings.get("classes") == "all" and len([c for c in available if c not in drop]) < 2:
        raise DatasetError("dataset.drop_classes: leaves fewer than two classes; a classification needs two or more")


MAX_SCANNED_FILES = 2_000_000


def _content_checks() -> dict[str, Callable[[dict[str, Any]], None]]:
    from workers.data.ham10000 import check_ham10000
    from workers.data.isic2019 import check_isic2019
    from workers.data.sources import check_isic_folder

    return {"isic_folder": check_isic_folder, "ham10000": check_ham10000, "isic2019": check_isic2019}


class _Lazy(dict):
    def get(self, key, default=None):
        if not self:
            self.update(_content_checks())
        return super().get(key, default)


CONTENT_CHECKS: dict[str, Callable[[dict[str, Any]], None]] = _Lazy()  # each source's own content check


def check_special_files(root: Path, field: str = "dataset.path") -> None:
    """Refuse, by ``lstat`` alone (nothing is opened), a folder holding FIFOs, devices or sockets, a symlink that
    loops or dangles, or a symlinked folder leading back into itself; symlinks to regular files and folders
    elsewhere are followed."""
    import os
    import stat

    def refuse(path: str, what: str) -> None:
        raise DatasetError(f"{field}: '{path}' is {what}; remove it from the dataset folder (nothing was read)")

    seen, count = set(), 0
    for top, dirs, files in os.walk(root, followlinks=True):
        real = os.path.realpath(top)
        seen.add(real)
        for name in dirs + files:
            count += 1
            if count > MAX_SCANNED_FILES:
                raise DatasetError(f"{field}: more than {MAX_SCANNED_FILES:,} files under '{root}'")
            full = os.path.join(top, name)
            try:
                mode = os.lstat(full).st_mode
                if stat.S_ISLNK(mode):
                    mode = os.stat(full).st_mode
            except OSError as err:
                refuse(full, "a symlink loop" if err.errno == 40 else "a dangling symlink"
                       if err.errno == 2 else f"unreadable ({err.strerror})")
            if stat.S_ISFIFO(mode):
                refuse(full, "a FIFO (named pipe)")
            if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
                refuse(full, "a device")
            if stat.S_ISSOCK(mode):
                refuse(full, "a socket")
        keep = []
        for d in dirs:
            target = os.path.realpath(os.path.join(top, d))
            if real == target or real.startswith(target.rstrip(os.sep) + os.sep):
                refuse(os.path.join(top, d), "a symlink loop (a folder that leads back to one above it)")
            if target not in seen:  # a second link to a folder already walked is not walked again
                keep.append(d)
        dirs[:] = keep


def readable_headers(paths: list, workers: int = 8) -> list[bool]:
    """Whether each image file's header can be read (Pillow opens it lazily: no pixels are decoded)."""
    from concurrent.futures import ThreadPoolExecutor

    from PIL import Image

    def ok(path) -> bool:
        try:
            with Image.open(path) as img:
                return img.size[0] > 0 and img.size[1] > 0
        except Exception:  # noqa: BLE001 - any failure means "not an image we can read"
            return False

    if len(paths) < 64:
        return [ok(p) for p in paths]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(ok, paths))


def check_dataset_contents(settings: dict[str, Any], split: dict[str, Any]) -> None:
    """Everything knowable about a local dataset before Ray starts (``DatasetError``, one line, names the field
    or file): the layout (``check_dataset_layout``), special files, the source's label file parsed strictly (by
    its own loader), every image header readable, at least two classes left after the class mapping, and the
    split the spec asks for (test, validation, training images of every class) possible with these images."""
    from workers.data.sources import ImageListing, keep_decoded, list_dataset

    check_dataset_layout(settings)
    path = settings.get("path")
    if settings.get("source", "synthetic") == "synthetic" or not path or "://" in path:
        return  # generated data is valid by construction; remote data is checked when prepared
    check_special_files(Path(path))
    source_check = CONTENT_CHECKS.get(settings.get("source"))
    if source_check is not None:
        source_check(settings)
    csv = settings.get("metadata_csv")
    if csv and "://" not in csv and Path(csv).is_absolute() and Path(csv).is_dir():
        raise DatasetError(f"dataset.metadata_csv: '{csv}' is a folder; name the CSV file")
    listing = list_dataset(settings)
    if isinstance(listing, ImageListing):
        listing = keep_decoded(listing, readable_headers(listing.paths))
    if len(listing.class_names) < 2:
        raise DatasetError(f"dataset.classes: the data leaves {len(listing.class_names)} class(es) "
                           f"({', '.join(listing.class_names)}); a classification needs at least two")
    check_split_possible(listing, split)


def check_split_possible(data, split: dict[str, Any]) -> None:
    """The split ``split`` asks for, made on ``data``'s labels (and lesion groups) exactly as the preparation will
    make it: every part non-empty and every class in the training part."""
    from workers.data.prepare import _check_split, split_dataset

    train, val, test = split_dataset(data.labels, data.source_split, split, data.groups)
    _check_split(split, train, val, test, data)

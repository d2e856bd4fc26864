"""What can be checked about a dataset before anything starts, without decoding or writing anything: the folder
is there and has the layout its source expects, holds no special files (FIFOs, devices, sockets, symlink loops
or dangling links), its label file parses strictly, every image's header is readable, every class the spec
names exists, and the split the spec asks for can be made (``check_dataset_contents``).

Remote (``s3://``) datasets are checked when their data is prepared.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from workers.data.sources import DatasetError, source_entry


def check_dataset_layout(settings: dict[str, Any]) -> None:
    """Raise ``DatasetError`` (one line naming the field) for a dataset that cannot work, found by listing:
    an unknown source, a missing or empty folder (or a file where the source reads a folder), a layout the
    source's class lister refuses, a class the spec names that is not there, fewer than two classes left;
    then the source's own ``check`` (its content validation), if it has one."""
    entry = source_entry(settings.get("source", "synthetic"))
    path = settings.get("path")
    if path and "://" not in path:
        root = Path(path)
        if not root.exists():
            raise DatasetError(f"dataset.path: '{path}' does not exist")
        if root.is_dir() and not any(root.iterdir()):
            raise DatasetError(f"dataset.path: folder '{path}' is empty")
        if not root.is_dir() and entry.name in ("isic_folder", "ham10000", "isic2019"):
            raise DatasetError(f"dataset.path: '{path}' is a file; source '{entry.name}' reads a folder")
    elif path:
        return
    if entry.list_classes is not None and not (path and not Path(path).is_dir()):
        available = entry.list_classes(settings)
        for key in ("classes", "drop_classes"):
            wanted = settings.get(key)
            for name in wanted if isinstance(wanted, list) else []:
                if name not in available:
                    raise DatasetError(f"dataset.{key}: class '{name}' is not in the data "
                                       f"(classes: {', '.join(available)})")
        drop = settings.get("drop_classes") or []
        if settings.get("classes") == "all" and len([c for c in available if c not in drop]) < 2:
            raise DatasetError("dataset.drop_classes: leaves fewer than two classes; a classification needs two "
                               "or more")
    if entry.check is not None:
        entry.check(settings)


MAX_SCANNED_FILES = 2_000_000


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
    or file): special files (first, by ``lstat``), the layout and the source's own ``check`` (its label file
    parsed strictly: ``check_dataset_layout``), every image header readable, at least two classes left after
    the class mapping, and the split the spec asks for (test, validation, training images of every class)
    possible with these images."""
    from workers.data.sources import ImageListing, keep_decoded, list_dataset

    path = settings.get("path")
    local = bool(path) and "://" not in path
    if local and Path(path).is_dir():
        check_special_files(Path(path))  # before anything under it is opened
    check_dataset_layout(settings)
    if not local or not source_entry(settings.get("source", "synthetic")).needs_path:
        return  # generated data is valid by construction; remote data is checked when prepared
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

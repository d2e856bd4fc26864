"""Dataset sources: each turns a dataset setting into decoded, resized uint8 images with labels.

A source is a function registered with ``@register_source(name)``; it receives the ``dataset`` block of the
experiment file (a dict) and returns a ``LoadedDataset``.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
from PIL import Image, UnidentifiedImageError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff"}

log = logging.getLogger(__name__)


class DatasetError(ValueError):
    """A dataset that cannot be used, phrased for the user in one line."""


@dataclass
class LoadedDataset:
    """Images (N, H, W, 3) uint8, integer labels, class names, stable image ids.

    ``source_split`` holds "train" / "val" / "test" per image where the source ships its own split, else None.
    ``groups`` holds a group id per image (e.g. HAM10000's ``lesion_id``) where several images show the same
    lesion; the split then keeps every group on one side. ``skipped`` names unreadable or missing images.
    """

    images: np.ndarray
    labels: np.ndarray
    class_names: list[str]
    ids: list[str]
    source_split: np.ndarray | None = None
    skipped: list[str] = field(default_factory=list)
    synthetic: bool = False
    groups: np.ndarray | None = None


_SOURCES: dict[str, Callable[[dict[str, Any]], LoadedDataset]] = {}


def register_source(name: str):
    def wrap(fn):
        _SOURCES[name] = fn
        return fn

    return wrap


def list_sources() -> list[str]:
    return sorted(_SOURCES)


def load_dataset(settings: dict[str, Any]) -> LoadedDataset:
    """Load the dataset a spec's ``dataset`` block describes, then apply its class mapping.

    A ``path`` (or ``metadata_csv``) starting with ``s3://`` is first mirrored to the local cache
    (``mirror_s3``) through the object store, using ``endpoint_url`` when given; the source then reads the
    local copy. Every class left after the mapping must hold at least one image.
    """
    source = settings.get("source", "synthetic")
    if source not in _SOURCES:
        raise DatasetError(f"dataset.source: unknown source '{source}' (valid: {', '.join(list_sources())})")
    settings, s3_skipped = _localise_s3_paths(settings)
    data = _SOURCES[source](settings)
    data.skipped = list(data.skipped) + s3_skipped
    out = apply_class_mapping(data, settings.get("classes", "all"), settings.get("drop_classes") or [])
    counts = np.bincount(out.labels, minlength=len(out.class_names))
    empty = [name for name, n in zip(out.class_names, counts) if n == 0]
    if empty:
        raise DatasetError(
            f"dataset: class '{empty[0]}' has no readable images"
            + (f" ({len(out.skipped)} image(s) were skipped as unreadable or missing)" if out.skipped else "")
            + "; add it to dataset.drop_classes or supply images for it"
        )
    if out.skipped:
        log.warning("dataset: skipped %d unreadable or missing image(s), e.g. %s", len(out.skipped), out.skipped[0])
    return out


def decode_image(path: Path | str, size: tuple[int, int], raw: bytes | None = None) -> np.ndarray | None:
    """Decode one image to RGB uint8 resized to ``size`` (H, W); None when unreadable or corrupt."""
    import io

    try:
        with Image.open(io.BytesIO(raw) if raw is not None else path) as img:
            img = img.convert("RGB").resize((size[1], size[0]), Image.BILINEAR)
            return np.asarray(img, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return None


def decode_many(paths: list[Path], size: tuple[int, int], workers: int | None = None) -> list[np.ndarray | None]:
    """``decode_image`` over many files with a thread pool (Pillow releases the GIL while decoding and resizing)."""
    workers = workers or min(8, os.cpu_count() or 1)
    if len(paths) < 16 or workers <= 1:
        return [decode_image(p, size) for p in paths]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda p: decode_image(p, size), paths))


def index_images(root: Path) -> dict[str, Path]:
    """Image stem -> path for every image file under ``root`` (recursively; the first in sorted order wins)."""
    out: dict[str, Path] = {}
    for path in sorted(root.rglob("*")):
        if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file() and not path.name.startswith("."):
            out.setdefault(path.stem, path)
    return out


def find_file(root: Path, explicit: str | None, names: Iterable[str], pattern: str, what: str) -> Path:
    """The CSV a source needs: ``explicit`` (absolute or relative to ``root``), a well-known name, or a glob."""
    if explicit:
        given = Path(explicit)
        candidates = [given] if given.is_absolute() else [root / given, given]
        for candidate in candidates:
            if candidate.is_file():
                return candidate
        raise DatasetError(f"dataset.metadata_csv: file '{explicit}' does not exist"
                           + ("" if given.is_absolute() else f" (looked under '{root}' and the working folder)"))
    for name in names:
        if (root / name).is_file():
            return root / name
    found = sorted(p for p in root.rglob(pattern) if p.is_file())
    if not found:
        raise DatasetError(f"dataset.path: no {what} found under '{root}' (expected {' or '.join(names)}; "
                           "or set dataset.metadata_csv)")
    return found[0]


# ---------------------------------------------------------------------------------------------------------
# s3:// datasets: mirrored once to the local cache, then read by the ordinary loaders.


def _resolved_endpoint(endpoint_url: str | None) -> str | None:
    from workers.settings import s3_endpoint

    return s3_endpoint(endpoint_url)


def s3_cache_dir(uri: str, endpoint_url: str | None = None) -> Path:
    """Local folder a mirrored ``s3://`` URI lives in: ``<cache root>/s3/<hash of endpoint and uri>``."""
    from workers.data.synthetic import default_cache_root

    ident = json.dumps({"uri": uri.rstrip("/"), "endpoint": _resolved_endpoint(endpoint_url) or ""}, sort_keys=True)
    return default_cache_root() / "s3" / hashlib.sha256(ident.encode()).hexdigest()[:16]


def _s3_objects(uri: str, endpoint: str | None, where: str):
    """(store, object keys, single file name or "") under an ``s3://bucket/prefix``, or the one object it names."""
    from workers.storage import StorageError, open_store

    try:
        store = open_store(uri.rstrip("/"), endpoint_url=endpoint)
        keys = [k for k in store.list("") if not k.endswith("/")]
        single = ""
        if not keys:
            parent, _, name = uri.rstrip("/").rpartition("/")
            if name and parent.count("/") >= 2:  # s3://bucket[/prefix]/name
                parent_store = open_store(parent, endpoint_url=endpoint)
                if parent_store.exists(name):
                    store, keys, single = parent_store, [name], name
    except (StorageError, ValueError) as err:
        raise DatasetError(f"dataset.path: cannot read {where}: {err}") from None
    except Exception as err:  # botocore connection errors and the like
        raise DatasetError(f"dataset.path: cannot read {where}: {type(err).__name__}: {err}") from None
    if not keys:
        raise DatasetError(f"dataset.path: no objects under {where}")
    return store, keys, single


def mirror_s3(uri: str, endpoint_url: str | None = None) -> tuple[Path, list[str]]:
    """Copy every object under an ``s3://bucket/prefix`` (or the single object ``s3://bucket/key``) to local disk.

    Returns the local folder (or file) and the object keys that were not copied (unsafe names). The copy is
    built in a temporary folder whose ``.complete`` marker is written last, then renamed into place, so a
    finished mirror is reused by every later load (it is not refreshed when the bucket changes: delete the
    folder, or use a new prefix, for new data).
    """
    from workers.storage import check_key

    root = s3_cache_dir(uri, endpoint_url)
    marker = root / ".complete"
    if marker.is_file():
        info = json.loads(marker.read_text())
        return root / info.get("file", ""), list(info.get("not_copied", []))

    endpoint = _resolved_endpoint(endpoint_url)
    where = f"'{uri}' (endpoint {endpoint or 'AWS default'})"
    store, keys, single = _s3_objects(uri, endpoint, where)
    safe, unsafe = [], []
    for key in keys:
        try:
            safe.append(check_key(key))
        except ValueError:
            unsafe.append(key)
    tmp = root.with_name(f"{root.name}.tmp{os.getpid()}-{threading.get_ident()}")
    shutil.rmtree(tmp, ignore_errors=True)

    def fetch(key: str) -> None:
        target = tmp / key
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(store.get_bytes(key))

    try:
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(fetch, safe))
        (tmp / ".complete").write_text(json.dumps({"uri": uri, "endpoint": endpoint, "objects": len(safe),
                                                   "not_copied": unsafe, "file": single}))
    except Exception as err:
        shutil.rmtree(tmp, ignore_errors=True)
        raise DatasetError(f"dataset.path: download of {where} failed: {type(err).__name__}: {err}") from None
    try:
        tmp.rename(root)
    except OSError:  # another process finished first, or a stale unfinished copy is in the way
        if not marker.is_file():
            shutil.rmtree(root, ignore_errors=True)
            try:
                tmp.rename(root)
            except OSError:
                pass
        shutil.rmtree(tmp, ignore_errors=True)
    if unsafe:
        log.warning("dataset: %d object(s) under %s have unsupported names and were not copied, e.g. %s",
                    len(unsafe), uri, unsafe[0])
    return root / single, unsafe


def _localise_s3_paths(settings: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Replace s3:// ``path`` / ``metadata_csv`` by local mirrors; returns new settings and uncopied keys."""
    path, csv = settings.get("path"), settings.get("metadata_csv")
    if not (isinstance(path, str) and path.startswith("s3://")) and not (isinstance(csv, str) and csv.startswith("s3://")):
        return settings, []
    endpoint = settings.get("endpoint_url")
    out, skipped = dict(settings), []
    if isinstance(path, str) and path.startswith("s3://"):
        local, unsafe = mirror_s3(path, endpoint)
        out["path"] = str(local)
        skipped += [f"{path.rstrip('/')}/{k} (object name not supported, not downloaded)" for k in unsafe]
    if isinstance(csv, str) and csv.startswith("s3://"):
        prefix = path.rstrip("/") + "/" if isinstance(path, str) and path.startswith("s3://") else None
        if prefix and csv.startswith(prefix):
            out["metadata_csv"] = str(Path(out["path"]) / csv[len(prefix):])
        else:
            out["metadata_csv"] = str(mirror_s3(csv, endpoint)[0])
    return out, skipped


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
        groups=None if data.groups is None else data.groups[mask],
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
    files: list[tuple[int, str, Path]] = []
    for label, name in enumerate(class_names):
        folder = root / name
        if not folder.is_dir():
            continue
        files += [(label, name, path) for path in sorted(folder.iterdir()) if path.suffix.lower() in IMAGE_SUFFIXES]
    images, labels, ids, skipped = [], [], [], []
    for (label, name, path), img in zip(files, decode_many([f[2] for f in files], size)):
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

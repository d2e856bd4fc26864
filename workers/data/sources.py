"""Dataset sources: each turns a dataset setting into decoded, resized uint8 images with labels.

A source is one module whose loader is registered with ``@register_source(name, classes=..., images=...)``: the
loader receives the ``dataset`` block of the experiment file (a dict) and returns a ``LoadedDataset`` (or an
``ImageListing`` decoded later); the source also registers the facts others need about it (``SourceEntry``):
its class lister (the check before anything starts), its image and class counts (the plan's estimate) and a
content ``check``. ``workers/data/__init__.py`` imports the built-in sources.
"""
from __future__ import annotations

import functools
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

from workers.registry import Registry

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



@dataclass
class ImageListing:
    """What a file-based source found, before decoding: one path per image plus the same labels and ids as
    ``LoadedDataset``. ``skip_names[i]`` is how ``paths[i]`` is named in ``skipped`` when it cannot be decoded;
    ``none_readable`` is the error when no image decodes. ``size`` is the (H, W) to decode to; every path
    lies under ``root`` (on this node: ``local_root`` finds the same folder on another)."""

    paths: list[Path]
    labels: np.ndarray
    class_names: list[str]
    ids: list[str]
    size: tuple[int, int]
    root: Path
    skip_names: list[str]
    none_readable: str
    source_split: np.ndarray | None = None
    skipped: list[str] = field(default_factory=list)
    synthetic: bool = False
    groups: np.ndarray | None = None


# Per-image fields of each kind of dataset, masked together by ``select``.
_ITEM_FIELDS = {LoadedDataset: ("images",), ImageListing: ("paths", "skip_names")}


def select(data, mask: np.ndarray):
    """The images of ``data`` (a ``LoadedDataset`` or ``ImageListing``) where ``mask`` is true."""
    from dataclasses import replace

    mask = np.asarray(mask, dtype=bool)
    items = {}
    for name in _ITEM_FIELDS[type(data)]:
        value = getattr(data, name)
        items[name] = value[mask] if isinstance(value, np.ndarray) else [v for v, m in zip(value, mask) if m]
    return replace(
        data, labels=data.labels[mask], ids=[i for i, m in zip(data.ids, mask) if m],
        source_split=None if data.source_split is None else data.source_split[mask],
        groups=None if data.groups is None else data.groups[mask], **items)

@dataclass(frozen=True)
class SourceEntry:
    """A registered dataset source and what it says about itself.

    ``loader(settings)`` lists or loads the data; ``list_classes(settings)`` names the classes a dataset block
    offers, found by listing alone (``workers/data/layout.py`` checks the spec's class names against it; it
    raises ``DatasetError`` for a layout that cannot work); ``image_count(settings)`` is how many images the
    source holds before the split (the plan's estimate; None: unknown, and the plan says so);
    ``class_count`` its classes when the spec keeps them all; ``check(settings)`` validates the content before
    anything starts (raises ``DatasetError``); ``needs_path``: the block must name ``dataset.path``;
    ``lesion_ids``: where its images' lesion ids come from, for a source whose split should group lesions
    (preparation warns when a dataset of it has none)."""

    name: str
    loader: Callable[[dict[str, Any]], Any]
    list_classes: Callable[[dict[str, Any]], list[str]] | None = None
    image_count: Callable[[dict[str, Any]], float | None] | None = None
    class_count: int | None = None
    check: Callable[[dict[str, Any]], None] | None = None
    needs_path: bool = True
    lesion_ids: str | None = None


SOURCES: Registry[SourceEntry] = Registry("dataset source")


def register_source(name: str, *, classes: list[str] | Callable[[dict[str, Any]], list[str]] | None = None,
                    images: int | Callable[[dict[str, Any]], float | None] | None = None,
                    class_count: int | None = None, check: Callable[[dict[str, Any]], None] | None = None,
                    needs_path: bool = True, lesion_ids: str | None = None):
    """Decorator registering ``loader(settings)`` as source ``name``. ``classes``: its fixed class names, or
    a function listing them for a dataset block; ``images``: its image count, or a function of the block;
    ``class_count``: its classes when all are kept (default: how many ``classes`` names); ``check``: content validation run before
    anything starts (see ``SourceEntry``)."""

    def wrap(loader):
        lister = (lambda settings, names=list(classes): list(names)) if isinstance(classes, (list, tuple)) else classes
        count = (lambda settings, n=images: float(n)) if isinstance(images, (int, float)) else images
        SOURCES.add(name, SourceEntry(name, loader, lister, count,
                                      class_count if class_count is not None or not isinstance(classes, (list, tuple))
                                      else len(classes),
                                      check, needs_path, lesion_ids))
        return loader

    return wrap


def source_entry(name: str) -> SourceEntry:
    """The registered source ``name``; ``DatasetError`` naming ``dataset.source`` and the valid names if none."""
    if name not in SOURCES:
        raise DatasetError(f"dataset.source: unknown source '{name}' (valid: {', '.join(list_sources())})")
    return SOURCES.get(name)


def list_sources() -> list[str]:
    """The registered source names, sorted."""
    return SOURCES.names()


def list_dataset(settings: dict[str, Any]):
    """What a spec's ``dataset`` block names, with its class mapping applied: an ``ImageListing`` (paths, for
    file-based sources, decoded later and in parallel by the preparation) or a decoded ``LoadedDataset``.

    A ``path`` (or ``metadata_csv``) starting with ``s3://`` is first mirrored to the local cache
    (``mirror_s3``) through the object store, using ``endpoint_url`` when given; the source then reads the
    local copy."""
    entry = source_entry(settings.get("source", "synthetic"))
    settings, s3_skipped = _localise_s3_paths(settings)
    data = entry.loader(settings)
    data.skipped = list(data.skipped) + s3_skipped
    return apply_class_mapping(data, settings.get("classes", "all"), settings.get("drop_classes") or [])


@functools.lru_cache(maxsize=8)
def _local_root(settings_json: str) -> Path:
    return list_dataset(json.loads(settings_json)).root


def local_root(settings: dict[str, Any], root: str | Path) -> Path:
    """``root`` when this node sees it, else where this node holds the same data set (an s3:// mirror or the
    synthetic set is then made here, once per node)."""
    root = Path(root)
    return root if root.is_dir() else _local_root(json.dumps(settings, sort_keys=True))


def keep_decoded(listing: ImageListing, ok: np.ndarray) -> ImageListing:
    """``listing`` without the images that did not decode (``ok`` false), which are named in ``skipped``; then
    every class must still hold an image."""
    ok = np.asarray(ok, dtype=bool)
    if not ok.any():
        raise DatasetError(listing.none_readable)
    kept = select(listing, ok)
    kept.skipped = list(listing.skipped) + [n for n, good in zip(listing.skip_names, ok) if not good]
    check_classes(kept)
    return kept


def check_classes(data) -> None:
    """Every class must hold at least one image; warn about skipped ones."""
    counts = np.bincount(data.labels, minlength=len(data.class_names))
    empty = [name for name, n in zip(data.class_names, counts) if n == 0]
    if empty:
        raise DatasetError(
            f"dataset: class '{empty[0]}' has no readable images"
            + (f" ({len(data.skipped)} image(s) were skipped as unreadable or missing)" if data.skipped else "")
            + "; add it to dataset.drop_classes or supply images for it"
        )
    if data.skipped:
        log.warning("dataset: skipped %d unreadable or missing image(s), e.g. %s", len(data.skipped), data.skipped[0])


def load_dataset(settings: dict[str, Any]) -> LoadedDataset:
    """Load and decode (in this process) the dataset a spec's ``dataset`` block describes, class mapping applied.
    Every class left after the mapping must hold at least one readable image."""
    data = list_dataset(settings)
    if isinstance(data, LoadedDataset):
        check_classes(data)
        return data
    decoded = decode_many(data.paths, data.size)
    kept = keep_decoded(data, np.array([img is not None for img in decoded], dtype=bool))
    return LoadedDataset(
        images=stack([img for img in decoded if img is not None], data.size), labels=kept.labels,
        class_names=kept.class_names, ids=kept.ids, source_split=kept.source_split, skipped=kept.skipped,
        synthetic=kept.synthetic, groups=kept.groups)


def decode_image(path: Path | str, size: tuple[int, int], raw: bytes | None = None) -> np.ndarray | None:
    """Decode one image to RGB uint8 resized to ``size`` (H, W); None when unreadable or corrupt.

    A JPEG larger than the target is decoded at reduced size (``Image.draft``: 1/2, 1/4 or 1/8 scale, never
    below the target's longer side, whatever the orientation) before the resize: several times less work, and
    pixels within a few grey levels of a full decode (same file, same result on every node)."""
    import io

    try:
        with Image.open(io.BytesIO(raw) if raw is not None else path) as img:
            img.draft("RGB", (max(size), max(size)))  # JPEG: decode at reduced size when that is enough
            img = to_rgb(img).resize((size[1], size[0]), Image.BILINEAR)
            return np.asarray(img, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return None


def to_rgb(img: "Image.Image") -> "Image.Image":
    """An 8-bit RGB image as the eye sees ``img``: EXIF orientation applied (to ``img`` itself), 16-bit and 32-bit
    grey levels scaled to 0-255 (not clipped to white), an alpha channel dropped; ``img`` itself when it is RGB."""
    from PIL import ImageOps

    ImageOps.exif_transpose(img, in_place=True)
    if img.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        grey = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode.startswith("I;16") or (img.mode == "I" and grey.max(initial=0) <= 65535) else \
            max(float(grey.max(initial=1)), 1.0)
        if img.mode == "F":
            top = 1.0 if grey.max(initial=0) <= 1.0 else max(float(grey.max()), 1.0)
        img = Image.fromarray(np.clip(grey / top * 255.0 + 0.5, 0, 255).astype(np.uint8), mode="L")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        img = img.convert("RGBA")
    return img if img.mode == "RGB" else img.convert("RGB")


def decode_many(paths: list[Path], size: tuple[int, int], workers: int | None = None) -> list[np.ndarray | None]:
    """``decode_image`` over many files with a thread pool (Pillow releases the GIL while decoding and resizing)."""
    workers = workers or min(8, os.cpu_count() or 1)
    if len(paths) < 16 or workers <= 1:
        return [decode_image(p, size) for p in paths]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda p: decode_image(p, size), paths))


def index_images(root: Path) -> dict[str, Path]:
    """Image stem -> path for every image file under ``root`` (recursively, not into linked folders; the first in
    path order wins, as ``sorted(root.rglob("*"))`` orders paths)."""
    found = []
    for folder, _, names in os.walk(root):
        rel = os.path.relpath(folder, root)
        parts = () if rel == os.curdir else tuple(rel.split(os.sep))
        for name in names:
            stem, suffix = os.path.splitext(name)
            if suffix.lower() in IMAGE_SUFFIXES and not name.startswith("."):
                found.append((parts + (name,), folder, name, stem))
    found.sort()
    out: dict[str, Path] = {}
    for _, folder, name, stem in found:
        if stem not in out and os.path.isfile(path := os.path.join(folder, name)):
            out[stem] = Path(path)
    return out


def relative_name(path: Path | str, root: Path | str) -> str:
    """``path`` relative to ``root`` (a folder above it), as a string."""
    text, prefix = str(path), os.path.join(str(root), "")
    return text[len(prefix):] if text.startswith(prefix) else str(Path(path).relative_to(root))


def find_file(root: Path, explicit: str | None, names: Iterable[str], pattern: str, what: str) -> Path:
    """The CSV a source needs: ``explicit`` (absolute or relative to ``root``), a well-known name, or a glob."""
    if explicit:
        given = Path(explicit)
        candidates = [given] if given.is_absolute() else [root / given, given]
        for candidate in candidates:
            if candidate.is_file():
                return candidate
            if candidate.exists():
                raise DatasetError(f"dataset.metadata_csv: '{explicit}' is not a regular file (a folder?); name "
                                   "the CSV file")
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


def read_csv_rows(path: Path) -> list[list[str]]:
    """The rows of a label CSV: UTF-8 (a BOM is fine), comma-separated; ``DatasetError`` (one line naming the
    file) for another encoding, another delimiter, or a file that is not CSV."""
    import csv

    where = f"dataset.metadata_csv: '{path}'"
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.reader(fh, strict=True))
    except UnicodeDecodeError:
        raise DatasetError(f"{where} is not UTF-8 text (latin-1?); save it as UTF-8") from None
    except csv.Error as err:
        raise DatasetError(f"{where} is not valid CSV ({err})") from None
    except OSError as err:
        raise DatasetError(f"{where}: cannot read it ({err.strerror})") from None
    if any("\x00" in cell for row in rows[:1] for cell in row):
        raise DatasetError(f"{where} is not a text file")
    if rows and len(rows[0]) == 1 and any(d in rows[0][0] for d in ";\t|"):
        delimiter = next(d for d in ";\t|" if d in rows[0][0])
        raise DatasetError(f"{where} is separated by {delimiter!r}; the file must be comma-separated")
    return rows


def csv_data_rows(path: Path, rows: list[list[str]]) -> Iterable[tuple[str, list[str]]]:
    """``(where, cells)`` for each data row of a label CSV read by ``read_csv_rows`` (``where`` names the file and
    line for errors): blank rows are skipped, a repeated header is refused (``DatasetError``)."""
    header = [c.strip().lower() for c in rows[0]] if rows else []
    first = header[0] if header else None
    prefix = f"dataset.metadata_csv: '{path}' line "
    for line, cells in enumerate(rows[1:], start=2):
        if not any(c.strip() for c in cells):
            continue
        where = prefix + str(line)
        if cells[0].strip().lower() == first and [c.strip().lower() for c in cells] == header:
            raise DatasetError(f"{where} repeats the header; keep one header line")
        yield where, cells


# ---------------------------------------------------------------------------------------------------------
# s3:// datasets: mirrored once to the local cache, then read by the ordinary loaders.


def _resolved_endpoint(endpoint_url: str | None) -> str | None:
    from workers.settings import s3_endpoint

    return s3_endpoint(endpoint_url)


def s3_cache_dir(uri: str, endpoint_url: str | None = None) -> Path:
    """Local folder a mirrored ``s3://`` URI lives in: ``<cache root>/s3/<hash of endpoint and uri>``."""
    from workers.settings import cache_root

    ident = json.dumps({"uri": uri.rstrip("/"), "endpoint": _resolved_endpoint(endpoint_url) or ""}, sort_keys=True)
    return cache_root() / "s3" / hashlib.sha256(ident.encode()).hexdigest()[:16]


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


def apply_class_mapping(data, classes: str | list[str], drop: list[str]):
    """Full multi-class ("all"), binary melanoma vs rest, or a chosen subset of classes (others dropped), on a
    ``LoadedDataset`` or an ``ImageListing``."""
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
    out = select(data, np.isin(data.labels, keep_idx))
    remap = {old: new for new, old in enumerate(keep_idx)}
    out.labels = np.array([remap[int(label)] for label in out.labels], dtype=np.int64)
    out.class_names = keep_names
    if classes == "binary_melanoma":
        mel = [i for i, n in enumerate(out.class_names) if n.lower() in {"melanoma", "mel"}]
        if not mel:
            raise DatasetError("dataset.classes: binary_melanoma needs a class named 'melanoma' or 'MEL' in the data")
        out.labels = (out.labels == mel[0]).astype(np.int64)
        out.class_names = ["other", "melanoma"]
    return out


NOT_CLASS_FOLDERS = ("__MACOSX",)  # what archive tools leave beside the data


def _folder_classes(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir()
                  if p.is_dir() and not p.name.startswith(".") and p.name not in NOT_CLASS_FOLDERS)


def list_class_folders(root: Path, class_names: list[str], split_name: str):
    """``root/<class>/*`` image files. Returns paths, labels, ids and skip names (relative to root's parent)."""
    paths, labels, ids, names = [], [], [], []
    for label, name in enumerate(class_names):
        folder = root / name
        if not folder.is_dir():
            continue
        for path in sorted(folder.iterdir()):
            if path.suffix.lower() in IMAGE_SUFFIXES:
                paths.append(path)
                labels.append(label)
                ids.append(f"{split_name}/{name}/{path.stem}")
                names.append(str(path.relative_to(root.parent)))
    return paths, labels, ids, names


def check_isic_folder(settings: dict[str, Any]) -> None:
    """The ISIC folder layout's content check before anything starts: every class folder of ``Train/`` holds its
    images directly (images in sub-folders of a class are not read, so such a class would be empty)."""
    root = Path(settings["path"])
    parts = {p.name.lower(): p for p in root.iterdir() if p.is_dir()}
    for split_name in ("train", "test"):
        if split_name not in parts:
            continue
        for name in _folder_classes(parts[split_name]):
            folder = parts[split_name] / name
            entries = list(folder.iterdir())
            if not any(p.suffix.lower() in IMAGE_SUFFIXES for p in entries) and any(p.is_dir() for p in entries):
                raise DatasetError(f"dataset.path: '{folder}' holds folders but no images; put the class's images "
                                   "directly in it (sub-folders are not read)")


def _has_images(folder: Path) -> bool:
    return any(p.suffix.lower() in IMAGE_SUFFIXES and p.is_file() for p in folder.rglob("*"))


def isic_folder_classes(settings: dict[str, Any]) -> list[str]:
    """The class folders under ``Train/`` of an ISIC-layout folder (``DatasetError`` when the layout is wrong)."""
    root = Path(settings["path"])
    expected = "expected Train/<class>/ and Test/<class>/ folders of images"
    parts = {p.name.lower(): p for p in root.iterdir() if p.is_dir()}
    if "train" not in parts:
        raise DatasetError(f"dataset.path: '{root}' has no Train/ folder ({expected})")
    classes = _folder_classes(parts["train"])
    if not classes:
        raise DatasetError(f"dataset.path: '{parts['train']}' has no class folders ({expected})")
    if not _has_images(parts["train"]):
        raise DatasetError(f"dataset.path: no images under '{parts['train']}' ({expected})")
    return classes


# Kaggle's "Skin cancer ISIC" folder: 2357 images of 9 classes.
@register_source("isic_folder", classes=isic_folder_classes, images=2357, class_count=9,
                 check=check_isic_folder)
def load_isic_folder(settings: dict[str, Any]) -> ImageListing:
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
    paths, labels, ids, names, split = [], [], [], [], []
    for split_name in ("train", "test"):
        if split_name not in parts:
            continue
        found = list_class_folders(parts[split_name], class_names, split_name)
        for whole, part in zip((paths, labels, ids, names), found):
            whole += part
        split += [split_name] * len(found[0])
    return ImageListing(
        paths=paths, labels=np.asarray(labels, dtype=np.int64), class_names=class_names, ids=ids, size=size,
        root=root, skip_names=names, none_readable=f"dataset.path: no readable images under '{root}'",
        source_split=np.asarray(split), synthetic=bool(settings.get("_synthetic", False)),
    )

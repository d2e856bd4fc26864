"""ISIC 2019: a one-hot ground-truth CSV (image, MEL, NV, BCC, AK, BKL, DF, VASC, SCC, UNK) plus an image folder.

Class columns that no image belongs to (UNK in the training set) are dropped automatically; further
classes can be dropped with ``dataset.drop_classes``. ``dataset.metadata_csv`` overrides the ground-truth
CSV's location. When ``ISIC_2019_Training_Metadata.csv`` (image, ..., lesion_id) is present, its
``lesion_id`` groups the images so the split keeps every lesion on one side.
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np

from workers.data.sources import (DatasetError, ImageListing, find_file, index_images, register_source,
                                  relative_name)

ISIC2019_CLASSES = ["MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC", "UNK"]
GROUND_TRUTH_NAMES = ("ISIC_2019_Training_GroundTruth.csv",)
METADATA_NAMES = ("ISIC_2019_Training_Metadata.csv",)
_ONE_HOT = {"0": 0.0, "1": 1.0, "0.0": 0.0, "1.0": 1.0}


def read_ground_truth(path: Path) -> tuple[list[str], list[str], np.ndarray]:
    """Image names, class column names (CSV order) and the (N, C) one-hot matrix, checked strictly: the columns
    are ``image`` and known class names, every row has one cell per column, every class cell is 0 or 1 and every
    row names exactly one class. A file that breaks any of this is refused (``DatasetError`` naming the line),
    never trimmed: a short row would otherwise drop classes and images without a word."""
    from workers.data.sources import csv_data_rows, read_csv_rows

    rows = read_csv_rows(path)
    if not rows:
        raise DatasetError(f"dataset.metadata_csv: '{path}' is empty")
    header = [h.strip() for h in rows[0]]
    lower = [h.lower() for h in header]
    expected = f"expected image, {', '.join(ISIC2019_CLASSES)}"
    if "image" not in lower:
        raise DatasetError(f"dataset.metadata_csv: '{path}' has no 'image' column ({expected}; found "
                           f"{', '.join(header)})")
    image_col = lower.index("image")
    class_cols = [j for j in range(len(header)) if j != image_col]
    unknown = [header[j] for j in class_cols if header[j].upper() not in ISIC2019_CLASSES]
    if unknown or not class_cols:
        raise DatasetError(f"dataset.metadata_csv: '{path}' has column '{unknown[0] if unknown else ''}' that is "
                           f"not an ISIC 2019 class ({expected})")
    names, onehot, seen = [], [], {}
    for where, row in csv_data_rows(path, rows):
        if len(row) != len(header):
            raise DatasetError(f"{where} has {len(row)} cells, the header {len(header)}; every row needs an image "
                               "name and one 0/1 cell per class")
        name = row[image_col].strip()
        if not name:
            raise DatasetError(f"{where} has no image name")
        cells = []
        for j in class_cols:
            value = _ONE_HOT.get(row[j])  # the usual spellings at once; any other through float()
            if value is None:
                cell = row[j].strip()
                try:
                    value = float(cell)
                except ValueError:
                    value = None
                if value not in (0.0, 1.0):
                    raise DatasetError(f"{where}: {header[j]} is {cell!r}; class cells are 0 or 1 (one-hot)")
            cells.append(value)
        if sum(cells) != 1:
            raise DatasetError(f"{where}: the class cells of {name} sum to {sum(cells):g}; each image needs exactly "
                               "one class (one-hot)")
        if name in seen:
            if seen[name] != cells:
                raise DatasetError(f"{where}: image {name} is listed again with another class")
            continue
        seen[name] = cells
        names.append(name)
        onehot.append(cells)
    if not names:
        raise DatasetError(f"dataset.metadata_csv: '{path}' lists no images")
    return names, [header[j].upper() for j in class_cols], np.array(onehot, dtype=np.float32)


def read_lesion_ids(path: Path) -> dict[str, str]:
    """image -> lesion_id from the optional metadata CSV (empty when it has no lesion_id column)."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            return {(row.get("image") or "").strip(): (row.get("lesion_id") or "").strip() for row in reader
                    if (row.get("lesion_id") or "").strip()}
    except (OSError, UnicodeDecodeError, csv.Error):
        return {}


def read_labels(settings: dict[str, Any]) -> tuple[list[str], list[str], np.ndarray]:
    """The ground truth of an ISIC 2019 folder (``read_ground_truth`` of the CSV it holds or names)."""
    root = Path(settings["path"])
    if not root.is_dir():
        raise DatasetError(f"dataset.path: folder '{root}' does not exist (expected "
                           "ISIC_2019_Training_GroundTruth.csv and ISIC_2019_Training_Input/)")
    return read_ground_truth(find_file(root, settings.get("metadata_csv"), GROUND_TRUTH_NAMES, "*GroundTruth*.csv",
                                       "ISIC 2019 ground-truth CSV"))


def check_isic2019(settings: dict[str, Any]) -> None:
    """ISIC 2019's content check before anything starts: its ground-truth CSV parses strictly (one-hot rows)."""
    read_labels(settings)


# 25331 training images; no image is labelled UNK, so 8 classes are present.
@register_source("isic2019", classes=ISIC2019_CLASSES, images=25331, class_count=8, check=check_isic2019,
                 lesion_ids="ISIC_2019_Training_Metadata.csv with a lesion_id column")
def load_isic2019(settings: dict[str, Any]) -> ImageListing:
    """Every labelled image of the ground-truth CSV (missing ones are skipped and counted; unreadable ones when decoded)."""
    root = Path(settings["path"])
    size = tuple(settings.get("image_size", (32, 32)))
    names, columns, onehot = read_labels(settings)
    positive = onehot >= 0.5
    used = positive.any(axis=0)
    class_idx = np.flatnonzero(used)  # all-zero columns (UNK) are dropped here
    class_names = [columns[j] for j in class_idx]
    positive = positive[:, class_idx]
    lesions = {}
    meta = [p for n in METADATA_NAMES if (p := root / n).is_file()] or sorted(root.rglob("*Metadata*.csv"))
    if meta:
        lesions = read_lesion_ids(meta[0])
    files = index_images(root)
    if not files:
        raise DatasetError(f"dataset.path: no images under '{root}' (expected <image>.jpg files)")

    wanted, skipped, seen = [], [], set()
    hits, first = positive.sum(axis=1).tolist(), positive.argmax(axis=1).tolist()
    for name, n_hits, label in zip(names, hits, first):
        if not name or name in seen:
            continue
        seen.add(name)
        if n_hits != 1:
            skipped.append(f"{name} ({'no' if n_hits == 0 else 'several'} class labels)")
            continue
        if name not in files:
            skipped.append(f"{name} (missing)")
            continue
        wanted.append((name, label, files[name]))

    return ImageListing(
        paths=[w[2] for w in wanted], labels=np.asarray([w[1] for w in wanted], dtype=np.int64),
        class_names=class_names, ids=[w[0] for w in wanted], size=size, root=root,
        skip_names=[f"{relative_name(w[2], root)} (unreadable)" for w in wanted],
        none_readable=f"dataset.path: none of the {len(seen)} images in the ground-truth CSV could be read "
                      f"under '{root}' ({len(skipped) + len(wanted)} missing, unlabelled or unreadable)",
        skipped=skipped,
        groups=np.asarray([lesions.get(w[0]) or w[0] for w in wanted], dtype=str) if lesions else None,
    )

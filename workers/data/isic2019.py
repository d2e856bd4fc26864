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

from workers.data.sources import DatasetError, ImageListing, find_file, index_images, register_source

ISIC2019_CLASSES = ["MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC", "UNK"]
GROUND_TRUTH_NAMES = ("ISIC_2019_Training_GroundTruth.csv",)
METADATA_NAMES = ("ISIC_2019_Training_Metadata.csv",)


def _float(value: str) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def read_ground_truth(path: Path) -> tuple[list[str], list[str], np.ndarray]:
    """Image names, class column names (CSV order) and the (N, C) one-hot matrix."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.reader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise DatasetError(f"dataset.metadata_csv: cannot read '{path}': {err}") from None
    if not rows:
        raise DatasetError(f"dataset.metadata_csv: '{path}' is empty")
    header = [h.strip() for h in rows[0]]
    body = [r for r in rows[1:] if any(cell.strip() for cell in r)]
    lower = [h.lower() for h in header]
    if "image" not in lower:
        raise DatasetError(f"dataset.metadata_csv: '{path}' has no 'image' column "
                           f"(expected image, {', '.join(ISIC2019_CLASSES)}; found {', '.join(header)})")
    if not body:
        raise DatasetError(f"dataset.metadata_csv: '{path}' lists no images")
    image_col = lower.index("image")
    class_cols = [
        j for j, _ in enumerate(header)
        if j != image_col and all(_float(r[j] if j < len(r) else "") is not None for r in body)
    ]
    if not class_cols:
        raise DatasetError(f"dataset.metadata_csv: '{path}' has no numeric one-hot class columns "
                           f"(expected {', '.join(ISIC2019_CLASSES)})")
    onehot = np.array([[_float(r[j]) for j in class_cols] for r in body], dtype=np.float32)
    return [r[image_col].strip() for r in body], [header[j] for j in class_cols], onehot


def read_lesion_ids(path: Path) -> dict[str, str]:
    """image -> lesion_id from the optional metadata CSV (empty when it has no lesion_id column)."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            return {(row.get("image") or "").strip(): (row.get("lesion_id") or "").strip() for row in reader
                    if (row.get("lesion_id") or "").strip()}
    except (OSError, UnicodeDecodeError, csv.Error):
        return {}


# 25331 training images; no image is labelled UNK, so 8 classes are present.
@register_source("isic2019", classes=ISIC2019_CLASSES, images=25331, class_count=8)
def load_isic2019(settings: dict[str, Any]) -> ImageListing:
    """Every labelled image of the ground-truth CSV (missing ones are skipped and counted; unreadable ones when decoded)."""
    root = Path(settings["path"])
    if not root.is_dir():
        raise DatasetError(f"dataset.path: folder '{root}' does not exist (expected "
                           "ISIC_2019_Training_GroundTruth.csv and ISIC_2019_Training_Input/)")
    size = tuple(settings.get("image_size", (32, 32)))
    names, columns, onehot = read_ground_truth(
        find_file(root, settings.get("metadata_csv"), GROUND_TRUTH_NAMES, "*GroundTruth*.csv", "ISIC 2019 ground-truth CSV"))
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
    for name, row in zip(names, positive):
        if not name or name in seen:
            continue
        seen.add(name)
        hits = np.flatnonzero(row)
        if len(hits) != 1:
            skipped.append(f"{name} ({'no' if len(hits) == 0 else 'several'} class labels)")
            continue
        if name not in files:
            skipped.append(f"{name} (missing)")
            continue
        wanted.append((name, int(hits[0]), files[name]))

    return ImageListing(
        paths=[w[2] for w in wanted], labels=np.asarray([w[1] for w in wanted], dtype=np.int64),
        class_names=class_names, ids=[w[0] for w in wanted], size=size, root=root,
        skip_names=[f"{w[2].relative_to(root)} (unreadable)" for w in wanted],
        none_readable=f"dataset.path: none of the {len(seen)} images in the ground-truth CSV could be read "
                      f"under '{root}' ({len(skipped) + len(wanted)} missing, unlabelled or unreadable)",
        skipped=skipped,
        groups=np.asarray([lesions.get(w[0]) or w[0] for w in wanted], dtype=str) if lesions else None,
    )

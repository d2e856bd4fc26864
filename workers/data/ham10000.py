"""HAM10000: ``HAM10000_metadata.csv`` (lesion_id, image_id, dx, ...) plus one or more image folders.

The images may sit in ``HAM10000_images_part_1/`` and ``HAM10000_images_part_2/`` (the ISIC / Harvard
Dataverse layout) or in any folder under ``dataset.path``: every ``<image_id>.jpg`` below it is found.
``dataset.metadata_csv`` overrides where the CSV is (absolute, or relative to ``dataset.path``).

Several images of HAM10000 show the same lesion; ``groups`` carries each image's ``lesion_id`` so the split
keeps every lesion on one side (a lesion in both train and test would inflate test scores).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from workers.data.sources import (DatasetError, ImageListing, find_file, index_images, register_source,
                                  relative_name)

HAM10000_CLASSES = ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"]
HAM10000_CLASS_DESCRIPTIONS = {
    "akiec": "actinic keratoses and intraepithelial carcinoma",
    "bcc": "basal cell carcinoma",
    "bkl": "benign keratosis-like lesions",
    "df": "dermatofibroma",
    "mel": "melanoma",
    "nv": "melanocytic nevi",
    "vasc": "vascular lesions",
}
METADATA_NAMES = ("HAM10000_metadata.csv", "HAM10000_metadata")


def read_metadata(path: Path) -> list[dict[str, str]]:
    """Rows of the metadata CSV with lower-cased column names; needs image_id and dx. Rows without an image id,
    with fewer cells than the header, or naming one image with two diagnoses are refused, not skipped."""
    from workers.data.sources import csv_data_rows, read_csv_rows

    table = read_csv_rows(path)
    columns = [c.strip().lower() for c in (table[0] if table else [])]
    missing = [c for c in ("image_id", "dx") if c not in columns]
    if missing:
        raise DatasetError(f"dataset.metadata_csv: '{path}' has no column '{missing[0]}' "
                           f"(expected lesion_id, image_id, dx, ...; found {', '.join(columns) or 'nothing'})")
    rows, dx_of = [], {}
    for where, cells in csv_data_rows(path, table):
        if len(cells) < len(columns):
            raise DatasetError(f"{where} has {len(cells)} cells, the header {len(columns)}")
        row = {k: v.strip() for k, v in zip(columns, cells) if k}
        if not row["image_id"]:
            raise DatasetError(f"{where} has no image_id")
        if dx_of.setdefault(row["image_id"], row["dx"]) != row["dx"]:
            raise DatasetError(f"{where}: image {row['image_id']} is listed again with another dx")
        rows.append(row)
    if not rows:
        raise DatasetError(f"dataset.metadata_csv: '{path}' lists no images")
    return rows


def read_labels(settings: dict[str, Any]) -> list[dict[str, str]]:
    """The metadata rows of a HAM10000 folder, every ``dx`` a HAM10000 class (``DatasetError`` otherwise)."""
    root = Path(settings["path"])
    if not root.is_dir():
        raise DatasetError(f"dataset.path: folder '{root}' does not exist (expected HAM10000_metadata.csv and "
                           "HAM10000_images_part_1/, HAM10000_images_part_2/)")
    rows = read_metadata(find_file(root, settings.get("metadata_csv"), METADATA_NAMES, "*metadata*.csv",
                                   "HAM10000 metadata CSV"))
    unknown = sorted({r["dx"] for r in rows} - set(HAM10000_CLASSES))
    if unknown:
        raise DatasetError(f"dataset.metadata_csv: unknown dx '{unknown[0]}' (valid: {', '.join(HAM10000_CLASSES)})")
    return rows


def check_ham10000(settings: dict[str, Any]) -> None:
    """HAM10000's content check before anything starts: its metadata CSV parses strictly (``read_labels``)."""
    read_labels(settings)


@register_source("ham10000", classes=HAM10000_CLASSES, images=10015, check=check_ham10000,
                 lesion_ids="HAM10000_metadata.csv lesion_id")
def load_ham10000(settings: dict[str, Any]) -> ImageListing:
    """Every image the metadata lists (missing ones are skipped and counted; unreadable ones when decoded)."""
    root = Path(settings["path"])
    size = tuple(settings.get("image_size", (32, 32)))
    rows = read_labels(settings)
    files = index_images(root)
    if not files:
        raise DatasetError(f"dataset.path: no images under '{root}' (expected <image_id>.jpg files)")

    seen: set[str] = set()
    wanted, skipped = [], []
    for row in rows:
        image_id = row["image_id"]
        if not image_id or image_id in seen:
            continue
        seen.add(image_id)
        if image_id not in files:
            skipped.append(f"{image_id} (missing)")
            continue
        wanted.append((row, files[image_id]))

    return ImageListing(
        paths=[p for _, p in wanted], labels=np.asarray([HAM10000_CLASSES.index(r["dx"]) for r, _ in wanted], dtype=np.int64),
        class_names=list(HAM10000_CLASSES), ids=[r["image_id"] for r, _ in wanted], size=size, root=root,
        skip_names=[f"{relative_name(p, root)} (unreadable)" for _, p in wanted],
        none_readable=f"dataset.path: none of the {len(seen)} images listed in the metadata could be read "
                      f"under '{root}' ({len(skipped) + len(wanted)} missing or unreadable)",
        skipped=skipped, groups=np.asarray([r.get("lesion_id") or r["image_id"] for r, _ in wanted], dtype=str),
    )

"""What can be checked about a dataset by listing alone, before anything starts: the folder is there, has the
layout its source expects, holds images, and has every class the spec names. Nothing is decoded or written.

Remote (``s3://``) datasets are checked when their data is prepared.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from workers.data.sources import DatasetError, source_entry

def check_dataset_layout(settings: dict[str, Any]) -> None:
    """Raise ``DatasetError`` (one line naming the field) for a dataset that cannot work, found by listing:
    an unknown source, a missing or empty folder, a layout the source's class lister refuses, a class the
    spec names that is not there; then the source's own ``check`` (its content validation), if it has one."""
    entry = source_entry(settings.get("source", "synthetic"))
    path = settings.get("path")
    if path and "://" not in path:
        root = Path(path)
        if not root.exists():
            raise DatasetError(f"dataset.path: '{path}' does not exist")
        if root.is_dir() and not any(root.iterdir()):
            raise DatasetError(f"dataset.path: folder '{path}' is empty")
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
    if entry.check is not None:
        entry.check(settings)

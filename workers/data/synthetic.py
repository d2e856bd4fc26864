"""Built-in synthetic dataset: lesion-like blobs in the Kaggle ISIC 9-class folder layout.

Deterministic from a seed, class-imbalanced like the real set, and learnable: classes differ in the
colour, shape, border sharpness and texture of the blob, with enough per-image jitter that a model
needs several epochs to separate them. These are NOT medical images; reports say so.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from workers.data.sources import ImageListing, load_isic_folder, register_source

ISIC_CLASSES = [
    "actinic keratosis",
    "basal cell carcinoma",
    "dermatofibroma",
    "melanoma",
    "nevus",
    "pigmented benign keratosis",
    "seborrheic keratosis",
    "squamous cell carcinoma",
    "vascular lesion",
]
# Training-image counts of the Kaggle ISIC 9-class set, used for the imbalance profile.
ISIC_TRAIN_COUNTS = [114, 376, 95, 438, 357, 462, 77, 181, 139]

# Per class: RGB colour, shape irregularity (0 round .. 1 ragged), aspect, border softness, texture kind.
_CLASS_LOOKS = [
    ((200, 120, 100), 0.30, 1.0, 0.25, "speckle"),
    ((230, 170, 170), 0.05, 1.0, 0.05, "none"),
    ((150, 90, 60), 0.05, 0.6, 0.05, "none"),
    ((60, 30, 30), 0.45, 1.0, 0.05, "speckle"),
    ((120, 70, 40), 0.05, 1.0, 0.05, "none"),
    ((90, 60, 40), 0.30, 0.7, 0.30, "stripes"),
    ((160, 130, 70), 0.15, 1.0, 0.10, "stripes"),
    ((200, 100, 130), 0.45, 0.7, 0.30, "none"),
    ((180, 30, 60), 0.05, 0.8, 0.25, "speckle"),
]


def class_counts(largest: int) -> list[int]:
    """Per-class image counts scaled so the largest class has ``largest`` images (each at least 2)."""
    top = max(ISIC_TRAIN_COUNTS)
    return [max(2, round(largest * c / top)) for c in ISIC_TRAIN_COUNTS]


def render_lesion(rng: np.random.Generator, size: tuple[int, int], class_index: int) -> np.ndarray:
    """One lesion-like RGB image (H, W, 3) uint8 of the given class."""
    h, w = size
    colour, irregular, aspect, softness, texture = _CLASS_LOOKS[class_index]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    cy, cx = h / 2 + rng.normal(0, h / 10), w / 2 + rng.normal(0, w / 10)
    radius = min(h, w) * rng.uniform(0.22, 0.34)
    angle = rng.uniform(0, np.pi)
    dy, dx = yy - cy, xx - cx
    u = dx * np.cos(angle) + dy * np.sin(angle)
    v = (-dx * np.sin(angle) + dy * np.cos(angle)) / max(aspect * rng.uniform(0.85, 1.15), 0.3)
    theta = np.arctan2(v, u)
    phase = rng.uniform(0, 2 * np.pi, size=3)
    wobble = 1 + irregular * (0.25 * np.sin(3 * theta + phase[0]) + 0.15 * np.sin(5 * theta + phase[1]))
    dist = np.sqrt(u**2 + v**2) / (radius * wobble)
    edge = max(softness, 0.02) * rng.uniform(0.8, 1.2)
    mask = 1 / (1 + np.exp((dist - 1) / edge))

    skin = np.array([225, 185, 160], np.float32) + rng.normal(0, 12, 3)
    lesion = np.array(colour, np.float32) + rng.normal(0, 18, 3)
    if texture == "speckle":
        pattern = (rng.random((h, w)) < 0.12).astype(np.float32) * -45
    elif texture == "stripes":
        period = rng.uniform(3.0, 5.0)
        pattern = 30 * np.sin((u + v) / period * np.pi)
    else:
        pattern = np.zeros((h, w), np.float32)
    body = lesion[None, None, :] + pattern[..., None]
    img = skin[None, None, :] * (1 - mask[..., None]) + body * mask[..., None]
    img += rng.normal(0, 8, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def write_synthetic_isic(root: Path, *, samples_per_class: int, image_size: tuple[int, int], seed: int) -> Path:
    """Write the dataset under ``root`` as ``Train/<class>/*.jpg`` and ``Test/<class>/*.jpg``; returns root."""
    rng = np.random.default_rng(seed)
    counts = class_counts(samples_per_class)
    for split_name, fraction in (("Train", 1.0), ("Test", 0.15)):
        for ci, (name, count) in enumerate(zip(ISIC_CLASSES, counts)):
            folder = root / split_name / name
            folder.mkdir(parents=True, exist_ok=True)
            n = count if split_name == "Train" else max(1, round(count * fraction))
            for i in range(n):
                Image.fromarray(render_lesion(rng, image_size, ci)).save(folder / f"ISIC_{ci}{i:05d}.jpg", quality=95)
    return root


def default_cache_root() -> Path:
    """This node's disk cache (``workers.settings.cache_root``)."""
    from workers.settings import cache_root

    return cache_root()


def synthetic_images(settings: dict[str, Any]) -> float:
    """Images the generator writes for a dataset block (its train classes plus about 15 % test images)."""
    return sum(class_counts(int(settings.get("samples_per_class", 40)))) * 1.15


@register_source("synthetic", classes=ISIC_CLASSES, images=synthetic_images, needs_path=False)
def load_synthetic(settings: dict[str, Any]) -> ImageListing:
    """Generate (once, cached on local disk) and list the built-in synthetic ISIC-layout dataset."""
    size = tuple(settings.get("image_size", (32, 32)))
    params = {"n": int(settings.get("samples_per_class", 40)), "size": list(size), "seed": int(settings.get("synthetic_seed", 0)), "v": 1}
    key = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:16]
    root = default_cache_root() / "synthetic" / key
    if not (root / ".complete").exists():
        tmp = root.with_name(f"{key}.tmp{os.getpid()}")
        write_synthetic_isic(tmp, samples_per_class=params["n"], image_size=size, seed=params["seed"])
        (tmp / ".complete").write_text("ok")
        try:
            tmp.rename(root)
        except OSError:  # another process finished first
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
    return load_isic_folder({**settings, "path": str(root), "_synthetic": True})

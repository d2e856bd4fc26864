"""Split-then-augment: the Augmentor stage (per class, in seeded chunks) on the training split, and on-device random
augmentation.

Only ever call these on the training split: ``workers.data.prepare`` splits first.
"""
from __future__ import annotations

import random
from typing import Any

import numpy as np


def chunk_seed(seed: int, class_index: int, chunk_index: int) -> int:
    """The seed of one augmentation chunk: a function of (seed, class, chunk) only, never of the worker."""
    return int(np.random.SeedSequence([int(seed) % 2**32, int(class_index), int(chunk_index)]).generate_state(1)[0])


def augment_chunk(images: np.ndarray, count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``count`` images generated from ``images`` (one class's training images) by an Augmentor pipeline
    (rotate, flip, zoom), seeded by ``seed``. Returns the images and, per image, the position in ``images`` of
    the training image it came from."""
    import Augmentor

    random.seed(seed)
    np.random.seed(seed % (2**32))
    # Labels are positions in ``images``: Augmentor returns each sample's source with it.
    pipeline = Augmentor.DataPipeline([[img] for img in images], labels=list(range(len(images))))
    pipeline.rotate(probability=0.7, max_left_rotation=10, max_right_rotation=10)
    pipeline.flip_left_right(probability=0.5)
    pipeline.flip_top_bottom(probability=0.5)
    pipeline.zoom_random(probability=0.5, percentage_area=0.8)
    generated, sources = pipeline.sample(int(count)) if count else ([], [])
    out = np.empty((len(generated), *images.shape[1:]), dtype=np.uint8)
    for k, group in enumerate(generated):
        out[k] = np.asarray(group[0], dtype=np.uint8).reshape(images.shape[1:])
    return out, np.asarray(sources, dtype=np.int64)


def random_augmentation_layers(settings: dict[str, Any], seed: int):
    """Keras preprocessing layers for on-the-fly flips, rotations and zooms (active only while training)."""
    from keras import layers

    out = []
    if settings.get("flip", True):
        out.append(layers.RandomFlip("horizontal_and_vertical", seed=seed, name="aug_flip"))
    if settings.get("rotation", 0):
        out.append(layers.RandomRotation(settings["rotation"], seed=seed + 1, name="aug_rotate"))
    if settings.get("zoom", 0):
        out.append(layers.RandomZoom(settings["zoom"], seed=seed + 2, name="aug_zoom"))
    return out

"""Split-then-augment: Augmentor class rebalancing of the training split, and on-device random augmentation.

Only ever call these on the training split: ``workers.data.prepare`` splits first.
"""
from __future__ import annotations

import random
from typing import Any

import numpy as np


def augmentor_rebalance(
    images: np.ndarray, labels: np.ndarray, ids: list[str], *, samples_per_class: int, seed: int
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Top every class up to ``samples_per_class`` images with an Augmentor pipeline (rotate, flip, zoom).

    Returns the original images followed by the generated ones; a generated id is ``aug:<source id>:<k>``,
    so every augmented image names the training image it came from.
    Classes that already hold enough images are left as they are.
    """
    import Augmentor

    random.seed(seed)
    np.random.seed(seed % (2**32))
    new_images, new_labels, new_ids = [], [], []
    for cls in np.unique(labels):
        members = np.flatnonzero(labels == cls)
        missing = samples_per_class - len(members)
        if missing <= 0:
            continue
        # Labels are positions in ``members``: Augmentor returns each sample's source, kept in its id.
        pipeline = Augmentor.DataPipeline([[images[i]] for i in members], labels=list(range(len(members))))
        pipeline.rotate(probability=0.7, max_left_rotation=10, max_right_rotation=10)
        pipeline.flip_left_right(probability=0.5)
        pipeline.flip_top_bottom(probability=0.5)
        pipeline.zoom_random(probability=0.5, percentage_area=0.8)
        generated, sources = pipeline.sample(missing)
        for k, (group, source) in enumerate(zip(generated, sources)):
            new_images.append(np.asarray(group[0], dtype=np.uint8).reshape(images.shape[1:]))
            new_labels.append(int(cls))
            new_ids.append(f"aug:{ids[members[source]]}:{k}")
    if not new_images:
        return images, labels, list(ids)
    return (
        np.concatenate([images, np.stack(new_images)]),
        np.concatenate([labels, np.asarray(new_labels, dtype=labels.dtype)]),
        list(ids) + new_ids,
    )


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

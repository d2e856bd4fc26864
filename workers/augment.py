"""Split-then-augment: the Augmentor stage (per class, in seeded chunks) on the training split, and on-device random
augmentation.

Only ever call these on the training split: ``workers.data.prepare`` splits first.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import numpy as np


AUGMENTOR_MODES = ("top_up", "add")


@dataclass(frozen=True)
class AugmentorSettings:
    """The Augmentor stage: ``top_up`` every training class to ``samples_per_class`` images (classes that hold
    enough are left alone), or ``add`` ``samples_per_class`` generated images to every class (seed 000)."""

    mode: str = "top_up"
    samples_per_class: int = 500

    @classmethod
    def from_settings(cls, augmentation_settings: dict[str, Any]) -> "AugmentorSettings":
        """From a trial's ``augmentation_settings`` (``augmentor: {mode, samples_per_class}``)."""
        block = augmentation_settings.get("augmentor") or {}
        return cls(mode=str(block.get("mode", "top_up")), samples_per_class=int(block.get("samples_per_class", 500)))

    def to_generate(self, counts: list[int]) -> list[int]:
        """Images to generate per class, given the training images per class."""
        if self.mode == "add":
            return [self.samples_per_class for _ in counts]
        return [max(0, self.samples_per_class - int(n)) for n in counts]


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

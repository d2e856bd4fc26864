"""A trained model as a folder anyone can use: ``model.keras`` (Keras' native format: architecture, weights,
the in-model preprocessing such as the 0..1 rescaling) and ``model.json`` (what feeding it needs: class names
in output order, the image size, how images are decoded, and the trial it comes from).

Images are fed as the training pipeline fed them (``workers.data.sources.decode_image``): decoded to RGB,
resized bilinearly to ``image_size`` (height, width), uint8. Runs without Ray.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

MODEL_FILE = "model.keras"
META_FILE = "model.json"
MODEL_FILES = (MODEL_FILE, META_FILE)
DECODING = "RGB, resized bilinearly to image_size (height, width), uint8 0..255; scaling is inside the model"


def model_meta(config: dict, class_names: list[str], image_shape: tuple[int, ...]) -> dict[str, Any]:
    """``model.json``'s content for a trial's model (``config`` is the trial's ``TrialConfig`` dict)."""
    return {"trial_id": config.get("trial_id"), "architecture": config.get("architecture"),
            "framework": config.get("framework"), "epochs": config.get("epochs"),
            "class_names": list(class_names), "image_size": [int(v) for v in image_shape[:2]],
            "channels": int(image_shape[2]) if len(image_shape) > 2 else 3, "input_dtype": "uint8",
            "decoding": DECODING}


def save_model(model, folder: str | Path, meta: dict[str, Any]) -> Path:
    """Write ``model.keras`` and ``model.json`` into ``folder``; returns the folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model.save(str(folder / MODEL_FILE))
    (folder / META_FILE).write_text(json.dumps(meta, indent=1))
    return folder


@dataclass
class LoadedModel:
    """A kept model ready to predict: the Keras model and its ``model.json``."""

    model: Any
    meta: dict[str, Any]

    @property
    def class_names(self) -> list[str]:
        return list(self.meta["class_names"])

    def predict_arrays(self, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """Class probabilities (float32, one row per image) of uint8 images shaped like the training images."""
        return np.asarray(self.model.predict(images, batch_size=batch_size, verbose=0), dtype=np.float32)

    def predict_folder(self, folder: str | Path, batch_size: int = 64) -> tuple[list[str], np.ndarray, list[str]]:
        """(image paths relative to ``folder``, probabilities, unreadable files) for every image file under
        ``folder`` (recursively, sorted), decoded as in training."""
        from workers.data.sources import IMAGE_SUFFIXES, decode_image

        root = Path(folder)
        files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                       and not p.name.startswith("."))
        size = tuple(self.meta["image_size"])
        names, images, unreadable = [], [], []
        for path in files:
            image = decode_image(path, size)
            rel = path.relative_to(root).as_posix()
            if image is None:
                unreadable.append(rel)
                continue
            names.append(rel)
            images.append(image)
        if not images:
            return [], np.zeros((0, len(self.class_names)), dtype=np.float32), unreadable
        return names, self.predict_arrays(np.stack(images), batch_size), unreadable


def load_model(folder: str | Path) -> LoadedModel:
    """The model saved by ``save_model`` in ``folder``. The format is backend-neutral: Keras is imported here
    with this process's backend (``KERAS_BACKEND``, default TensorFlow), whichever one trained it."""
    import os

    from workers.device import activate_backend

    folder = Path(folder)
    meta = json.loads((folder / META_FILE).read_text())
    keras = activate_backend(os.environ.get("KERAS_BACKEND", "tensorflow"))
    import workers.models.soft_attention_layer  # noqa: F401  (registers the custom layer for deserialising)

    return LoadedModel(keras.saving.load_model(str(folder / MODEL_FILE), compile=False), meta)


def predictions_table(names: list[str], probs: np.ndarray, class_names: list[str]) -> str:
    """CSV text: ``image,predicted_class,p_<class>...`` per image."""
    import csv
    import io

    from workers.metrics import format_probability

    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["image", "predicted_class"] + [f"p_{c}" for c in class_names])
    for name, p in zip(names, probs):
        writer.writerow([name, class_names[int(np.argmax(p))]] + [format_probability(v) for v in p])
    return buf.getvalue()

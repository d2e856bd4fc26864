"""Architecture registry in the style of timm: ``@register_model`` / ``create_model`` / ``list_models``.

Adding an architecture is one module that registers its builder (imported by ``workers/models/__init__.py``,
or by whoever registers it, e.g. a plug-in or a test)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from workers.registry import Registry


@dataclass(frozen=True)
class ModelEntry:
    """A registered architecture: its builder and what it needs from the input. ``preprocessing`` maps a kind of
    pretrained weights (``imagenet``) to the input those weights expect (``caffe``: BGR, ImageNet mean
    subtracted, as keras.applications' ``preprocess_input``); without pretrained weights the input is min-max
    scaled to [0, 1]."""

    name: str
    builder: Callable[..., Any]
    min_input_size: int
    seed: str
    description: str
    has_lstm: bool = False
    preprocessing: dict[str, str] = field(default_factory=dict)

    def preprocessing_for(self, weights: str) -> str | None:
        """The input preprocessing the ``weights`` expect, None for the default min-max scaling."""
        return self.preprocessing.get(weights)


ARCHITECTURES: Registry[ModelEntry] = Registry("architecture")

def register_model(name: str, *, min_input_size: int = 8, seed: str = "", has_lstm: bool = False,
                   preprocessing: dict[str, str] | None = None):
    """Decorator: register ``builder(input_shape, num_classes, **params) -> keras.Model``. An architecture with
    ``preprocessing`` (weights -> input they expect) takes ``preprocessing=`` from ``create_model``."""

    def wrap(builder: Callable[..., Any]) -> Callable[..., Any]:
        doc = (builder.__doc__ or "").strip().splitlines()
        ARCHITECTURES.add(name, ModelEntry(name, builder, min_input_size, seed, doc[0] if doc else "", has_lstm,
                                           dict(preprocessing or {})))
        return builder

    return wrap


def list_models(pattern: str = "*") -> list[str]:
    """Registered architecture names matching a shell-style wildcard, sorted."""
    return ARCHITECTURES.names(pattern)


def model_entry(name: str) -> ModelEntry:
    """The registered architecture ``name``; ``KeyError`` (one line listing the valid names) when unknown."""
    return ARCHITECTURES.get(name)


def create_model(name: str, *, input_shape: tuple[int, int, int], num_classes: int, weights: str = "none",
                 **params: Any):
    """Build an uncompiled Keras model. Inputs are raw pixels in [0, 255]; scaling is inside the model: the
    preprocessing the registry entry declares for ``weights`` (e.g. ImageNet's for ``imagenet``), else [0, 1]."""
    entry = model_entry(name)
    if entry.preprocessing_for(weights):
        params["preprocessing"] = entry.preprocessing_for(weights)
    if min(input_shape[:2]) < entry.min_input_size:
        raise ValueError(
            f"architecture '{name}' needs images of at least {entry.min_input_size}x{entry.min_input_size}, "
            f"got {input_shape[0]}x{input_shape[1]}"
        )
    return entry.builder(input_shape=input_shape, num_classes=num_classes, **params)

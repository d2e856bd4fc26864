"""Architecture registry in the style of timm: ``@register_model`` / ``create_model`` / ``list_models``.

Adding an architecture is one module that registers its builder (imported by ``workers/models/__init__.py``,
or by whoever registers it, e.g. a plug-in or a test)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from workers.registry import Registry


@dataclass(frozen=True)
class ModelEntry:
    """A registered architecture: its builder and what it needs from the input."""

    name: str
    builder: Callable[..., Any]
    min_input_size: int
    seed: str
    description: str
    has_lstm: bool = False


ARCHITECTURES: Registry[ModelEntry] = Registry("architecture")

def register_model(name: str, *, min_input_size: int = 8, seed: str = "", has_lstm: bool = False):
    """Decorator: register ``builder(input_shape, num_classes, **params) -> keras.Model``."""

    def wrap(builder: Callable[..., Any]) -> Callable[..., Any]:
        doc = (builder.__doc__ or "").strip().splitlines()
        ARCHITECTURES.add(name, ModelEntry(name, builder, min_input_size, seed, doc[0] if doc else "", has_lstm))
        return builder

    return wrap


def list_models(pattern: str = "*") -> list[str]:
    """Registered architecture names matching a shell-style wildcard, sorted."""
    return ARCHITECTURES.names(pattern)


def model_entry(name: str) -> ModelEntry:
    """The registered architecture ``name``; ``KeyError`` (one line listing the valid names) when unknown."""
    return ARCHITECTURES.get(name)


def create_model(name: str, *, input_shape: tuple[int, int, int], num_classes: int, **params: Any):
    """Build an uncompiled Keras model. Inputs are raw pixels in [0, 255]; scaling is inside the model."""
    entry = model_entry(name)
    if min(input_shape[:2]) < entry.min_input_size:
        raise ValueError(
            f"architecture '{name}' needs images of at least {entry.min_input_size}x{entry.min_input_size}, "
            f"got {input_shape[0]}x{input_shape[1]}"
        )
    return entry.builder(input_shape=input_shape, num_classes=num_classes, **params)

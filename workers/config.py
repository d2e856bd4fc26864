"""What a worker is told: the typed settings of one trial, shared with the experiment-file schema.

The experiment file's per-trial parts (dataset, split, augmentation, training, model) are defined here, once,
with their defaults; ``orchestrator.spec`` builds the whole file's schema from them, and a ``TrialConfig``
carries them to a worker as validated, JSON-serialisable data.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatasetSpec(_Strict):
    """Where the images come from and how classes are mapped."""

    source: str = Field(default="synthetic", description="a registered dataset source (workers.data.sources)")
    path: str | None = None
    image_size: tuple[int, int] = (32, 32)
    classes: Literal["all", "binary_melanoma"] | list[str] = "all"
    drop_classes: list[str] = Field(default_factory=list)
    samples_per_class: int = Field(default=40, ge=2, le=5000,
                                   description="synthetic only: images of the largest class (at most 5000)")
    synthetic_seed: int = 0
    metadata_csv: str | None = None
    endpoint_url: str | None = None

    @field_validator("image_size")
    @classmethod
    def _size_positive(cls, v: tuple[int, int]) -> tuple[int, int]:
        if min(v) < 8 or max(v) > 1024:
            raise ValueError("image_size must be two integers between 8 and 1024, e.g. [120, 120]")
        return v

    @model_validator(mode="after")
    def _path_required(self) -> "DatasetSpec":
        if self.path and (".." in Path(self.path).parts):
            raise ValueError("dataset.path must not contain '..'")
        return self


class SplitSpec(_Strict):
    """Stratified split; augmentation only ever touches the training part."""

    test_fraction: float = Field(default=0.2, gt=0, lt=1)
    val_fraction: float = Field(default=0.1, ge=0, lt=1)
    use_source_test: bool = False
    seed: int = 0

    @model_validator(mode="after")
    def _fractions_fit(self) -> "SplitSpec":
        if self.test_fraction + self.val_fraction >= 0.9:
            raise ValueError("split.test_fraction + split.val_fraction must be below 0.9")
        return self


class RandomAugmentSpec(_Strict):
    flip: bool = True
    rotation: float = Field(default=0.1, ge=0, le=0.5)
    zoom: float = Field(default=0.1, ge=0, le=0.5)


class AugmentorSpec(_Strict):
    """The ``augmentor`` stage: ``top_up`` every training class to ``samples_per_class`` images (classes that
    hold enough are left alone), or ``add`` ``samples_per_class`` generated images to every class (seed 000's
    "added 500 samples per class")."""

    mode: Literal["top_up", "add"] = "top_up"
    samples_per_class: int = Field(default=500, ge=1, le=100_000)

    def to_generate(self, counts: list[int]) -> list[int]:
        """Images to generate per class, given the training images per class."""
        if self.mode == "add":
            return [self.samples_per_class for _ in counts]
        return [max(0, self.samples_per_class - int(n)) for n in counts]


class AugmentationSpec(_Strict):
    augmentor: AugmentorSpec = AugmentorSpec()
    random: RandomAugmentSpec = RandomAugmentSpec()

    @model_validator(mode="before")
    @classmethod
    def _older_samples_per_class(cls, data: Any) -> Any:
        """The older ``augmentor_samples_per_class: N`` means ``augmentor: {mode: top_up, samples_per_class: N}``."""
        if isinstance(data, dict) and "augmentor_samples_per_class" in data:
            if "augmentor" in data:
                raise ValueError("give augmentation.augmentor or the older augmentor_samples_per_class, not both")
            data = dict(data)
            data["augmentor"] = {"mode": "top_up", "samples_per_class": data.pop("augmentor_samples_per_class")}
        return data


class TrainingSpec(_Strict):
    """Hyperparameters shared by every trial unless a search or model override changes them."""

    batch_size: int = Field(default=32, ge=1, le=65536)
    learning_rate: float = Field(default=1e-3, gt=0, le=10)
    optimizer: Literal["adam", "sgd", "rmsprop", "adamw"] = "adam"
    dropout: float | None = Field(default=None, ge=0, lt=1)
    class_weights: bool = False
    mixed_precision: Literal["auto", "off", "bfloat16"] = "auto"
    steps_per_execution: int | None = Field(default=None, ge=1, le=10000, description=(
        "training steps per compiled call; unset: one value for the study (orchestrator/spec/stack.py)"))
    jit_compile: bool | None = Field(default=None, description=(
        "XLA compilation; unset: one setting for the study (orchestrator/spec/stack.py)"))


class ModelSpec(_Strict):
    """Per-architecture settings (pretrained weights and builder keyword arguments)."""

    weights: Literal["none", "imagenet"] = "none"
    weights_path: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _weights_need_path(self) -> "ModelSpec":
        if self.weights == "imagenet" and not self.weights_path:
            raise ValueError(
                "weights: imagenet needs weights_path (a local file or s3:// URI); "
                "nothing is downloaded at run time. Use weights: none to train from scratch"
            )
        return self


class TrialConfig(_Strict):
    """Everything a worker needs to run one trial (the spec's typed parts plus the grid point)."""

    trial_id: str
    experiment: str
    architecture: str
    epochs: int = Field(ge=1)
    node_type: str
    augmentation: Literal["none", "random", "augmentor"]
    framework: str
    repeat: int = 0
    seed: int = 0
    dataset: DatasetSpec = DatasetSpec()
    split: SplitSpec = SplitSpec()
    training: TrainingSpec = TrainingSpec()
    augmentation_settings: AugmentationSpec = AugmentationSpec()
    model: ModelSpec = ModelSpec()
    resources: dict[str, float] = Field(default_factory=dict)
    accelerator: str | None = None
    price_per_hour: float | None = None
    overrides: dict[str, Any] = Field(default_factory=dict)
    allow_device_mismatch: bool = False

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data (what crosses to Ray workers and into records)."""
        return self.model_dump(mode="json")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrialConfig":
        return cls.model_validate(data)

    def replace(self, **changes: Any) -> "TrialConfig":
        """A copy with ``changes`` applied and validated."""
        return TrialConfig.model_validate({**self.to_dict(), **changes})

    def hparam(self, name: str) -> Any:
        """A training hyperparameter, with search overrides taking precedence over the spec's value."""
        if name in self.overrides:
            return self.overrides[name]
        return getattr(self.training, name)

    def preparation_args(self) -> tuple[dict, dict, str, dict]:
        """(dataset, split, augmentation stage, augmentation settings) as the data layer takes them."""
        return (self.dataset.model_dump(mode="json"), self.split.model_dump(mode="json"), self.augmentation,
                self.augmentation_settings.model_dump(mode="json"))

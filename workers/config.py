"""What a worker is told: the typed settings of one trial, shared with the experiment-file schema.

The experiment file's per-trial parts (dataset, split, augmentation, training, model) are defined here, once,
with their defaults; ``orchestrator.spec`` builds the whole file's schema from them, and a ``TrialConfig``
carries them to a worker as validated, JSON-serialisable data.
"""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (AfterValidator, BaseModel, ConfigDict, Field, Strict, StrictBool, StrictInt, field_validator,
                      model_validator)

# Numbers as the experiment file must give them: a float field takes a finite number (an int is fine, a bool,
# a string or NaN/inf is not); whole-number fields take whole numbers only (``true`` is not 1).
Real = Annotated[float, Strict(), Field(allow_inf_nan=False)]
Seed = Annotated[StrictInt, Field(ge=0, le=2**32 - 1)]


def _endpoint_url(v: str | None) -> str | None:
    from workers.storage import check_endpoint_url

    try:
        return None if v is None else check_endpoint_url(v, "endpoint_url")
    except ValueError as err:
        raise ValueError(str(err).removeprefix("endpoint_url: ")) from None


EndpointUrl = Annotated[str | None, AfterValidator(_endpoint_url)]  # an S3-compatible endpoint, no credentials in it


AugmentationStage = Literal["none", "random", "augmentor", "augmentor_random"]
AUGMENTATION_STAGES = ("none", "random", "augmentor", "augmentor_random")


def uses_augmentor(stage: str) -> bool:
    """Whether ``stage`` runs the Augmentor class rebalancing on the training split at preparation."""
    return stage in ("augmentor", "augmentor_random")


def uses_random_layers(stage: str) -> bool:
    """Whether ``stage`` puts random flips/rotations/zooms in front of the model (during training only)."""
    return stage in ("random", "augmentor_random")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def no_duplicates(values: list, field: str) -> list:
    """``values`` unless one appears twice (a grid list naming a value twice would run the same trials twice)."""
    seen = set()
    for v in values:
        key = repr(v)
        if key in seen:
            raise ValueError(f"{field} lists {v!r} twice; give each value once")
        seen.add(key)
    return values


class DatasetSpec(_Strict):
    """Where the images come from and how classes are mapped."""

    source: str = Field(default="synthetic", description="a registered dataset source (workers.data.sources)")
    path: str | None = None
    image_size: tuple[StrictInt, StrictInt] = (32, 32)
    classes: Literal["all", "binary_melanoma"] | list[str] = "all"
    drop_classes: list[str] = Field(default_factory=list)
    samples_per_class: StrictInt = Field(default=40, ge=2, le=5000,
                                   description="synthetic only: images of the largest class (at most 5000)")
    synthetic_seed: Seed = 0
    metadata_csv: str | None = None
    endpoint_url: EndpointUrl = None

    @field_validator("image_size")
    @classmethod
    def _size_positive(cls, v: tuple[int, int]) -> tuple[int, int]:
        if min(v) < 8 or max(v) > 1024:
            raise ValueError("image_size must be two integers between 8 and 1024, e.g. [120, 120]")
        return v

    @field_validator("classes")
    @classmethod
    def _class_list(cls, v):
        if isinstance(v, list):
            if any(not name.strip() for name in v):
                raise ValueError("class names must not be empty")
            no_duplicates(v, "dataset.classes")
            if len(v) < 2:
                raise ValueError(f"a classification needs at least two classes, got {v!r} (or use 'all' or "
                                 "'binary_melanoma')")
        return v

    @field_validator("drop_classes")
    @classmethod
    def _drop_list(cls, v: list[str]) -> list[str]:
        return no_duplicates(v, "dataset.drop_classes")

    @model_validator(mode="after")
    def _path_required(self) -> "DatasetSpec":
        for name in ("path", "metadata_csv"):
            value = getattr(self, name)
            if value is None:
                continue
            if not value.strip() or "\x00" in value:
                raise ValueError(f"dataset.{name} must not be empty")
            if "://" in value and not value.startswith("s3://"):
                raise ValueError(f"dataset.{name}: '{value.split('://')[0]}://' is not supported (give a local "
                                 "folder or s3://bucket/prefix; http URLs are not downloaded)")
            if ".." in Path(value).parts:
                raise ValueError(f"dataset.{name} must not contain '..'")
        if isinstance(self.classes, list):
            left = [c for c in self.classes if c not in self.drop_classes]
            if len(left) < 2:
                raise ValueError(f"dataset.drop_classes leaves {len(left)} of the classes listed in dataset.classes; "
                                 "a classification needs at least two")
        return self


class SplitSpec(_Strict):
    """Stratified split; augmentation only ever touches the training part. Exact and near-duplicate images
    (perceptual hash) are found first: ``duplicates: group`` keeps each set of copies on one side (with the
    source's lesion groups), ``refuse`` stops preparation when copies would lie across the split."""

    test_fraction: Real = Field(default=0.2, gt=0, lt=1)
    val_fraction: Real = Field(default=0.1, ge=0, lt=1)
    use_source_test: StrictBool = False
    seed: Seed = 0
    duplicates: Literal["group", "refuse"] = "group"
    near_duplicate_distance: StrictInt = Field(default=4, ge=0, le=32, description=(
        "images whose 64-bit perceptual hashes differ in at most this many bits count as near duplicates"))

    @model_validator(mode="after")
    def _fractions_fit(self) -> "SplitSpec":
        if self.test_fraction + self.val_fraction >= 0.9:
            raise ValueError("split.test_fraction + split.val_fraction must be below 0.9")
        return self


class RandomAugmentSpec(_Strict):
    flip: StrictBool = True
    rotation: Real = Field(default=0.1, ge=0, le=0.5)
    zoom: Real = Field(default=0.1, ge=0, le=0.5)


class AugmentorSpec(_Strict):
    """The ``augmentor`` stage: ``top_up`` every training class to ``samples_per_class`` images (classes that
    hold enough are left alone), or ``add`` ``samples_per_class`` generated images to every class (seed 000's
    "added 500 samples per class")."""

    mode: Literal["top_up", "add"] = "top_up"
    samples_per_class: StrictInt = Field(default=500, ge=1, le=100_000)

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

    batch_size: StrictInt = Field(default=32, ge=1, le=65536)
    learning_rate: Real = Field(default=1e-3, gt=0, le=10)
    optimizer: Literal["adam", "sgd", "rmsprop", "adamw"] = "adam"
    dropout: Real | None = Field(default=None, ge=0, lt=1)
    class_weights: StrictBool = False
    mixed_precision: Literal["auto", "off", "bfloat16"] = "auto"
    steps_per_execution: StrictInt | None = Field(default=None, ge=1, le=10000, description=(
        "training steps per compiled call; unset: one value for the study (orchestrator/spec/stack.py)"))
    jit_compile: StrictBool | None = Field(default=None, description=(
        "XLA compilation; unset: one setting for the study (orchestrator/spec/stack.py)"))


class ModelSpec(_Strict):
    """Per-architecture settings (pretrained weights and builder keyword arguments)."""

    weights: Literal["none", "imagenet"] = "none"
    weights_path: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _weights_need_path(self) -> "ModelSpec":
        path = self.weights_path
        if path is not None and (not path.strip() or ("://" in path and not path.startswith("s3://"))):
            raise ValueError("weights_path must be a local file or an s3:// URI (nothing is downloaded over http)")
        if self.weights == "imagenet" and not self.weights_path:
            raise ValueError(
                "weights: imagenet needs weights_path (a local file or s3:// URI); "
                "nothing is downloaded at run time. Use weights: none to train from scratch"
            )
        return self


# an ``overrides`` key: each epoch trains on that many batches at most (a calibration trial)
STEPS_PER_EPOCH = "steps_per_epoch"


class TrialConfig(_Strict):
    """Everything a worker needs to run one trial (the spec's typed parts plus the grid point)."""

    trial_id: str
    experiment: str
    architecture: str
    epochs: int = Field(ge=1)
    node_type: str
    augmentation: AugmentationStage
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

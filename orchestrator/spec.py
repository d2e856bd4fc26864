"""Experiment file schema: typed, validated, one clear error line per problem.

An experiment file is YAML. ``load_spec(path)`` returns an ``ExperimentSpec`` or raises
``SpecError`` whose message names the file, the field and what would be valid.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
NODE_TYPES = ("cpu", "gpu", "tpu")
FRAMEWORKS = ("auto", "tensorflow", "jax", "torch")
AUGMENTATIONS = ("none", "random", "augmentor")
DATASET_SOURCES = ("synthetic", "isic_folder", "ham10000", "isic2019", "dermamnist")
OPTIMIZERS = ("adam", "sgd", "rmsprop", "adamw")


class SpecError(ValueError):
    """A problem with an experiment file, phrased for the user in one line."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatasetSpec(_Strict):
    """Where the images come from and how classes are mapped."""

    source: Literal["synthetic", "isic_folder", "ham10000", "isic2019", "dermamnist"] = "synthetic"
    path: str | None = None
    image_size: tuple[int, int] = (32, 32)
    classes: Literal["all", "binary_melanoma"] | list[str] = "all"
    drop_classes: list[str] = Field(default_factory=list)
    samples_per_class: int = Field(default=40, ge=2, description="synthetic only: images of the largest class")
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
        if self.source != "synthetic" and not self.path:
            raise ValueError(f"dataset.path is required for source '{self.source}'")
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


class AugmentationSpec(_Strict):
    augmentor_samples_per_class: int = Field(default=500, ge=1)
    random: RandomAugmentSpec = RandomAugmentSpec()


class TrainingSpec(_Strict):
    """Hyperparameters shared by every trial unless a search or model override changes them."""

    batch_size: int = Field(default=32, ge=1, le=65536)
    learning_rate: float = Field(default=1e-3, gt=0, le=10)
    optimizer: Literal["adam", "sgd", "rmsprop", "adamw"] = "adam"
    dropout: float | None = Field(default=None, ge=0, lt=1)
    class_weights: bool = False
    mixed_precision: Literal["auto", "off", "bfloat16"] = "auto"


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


class NodeTypeSpec(_Strict):
    """How a node type maps to Ray resources, its default Keras backend and its price."""

    resources: dict[str, float]
    framework: Literal["tensorflow", "jax", "torch"] = "tensorflow"
    price_per_hour: float = Field(default=0.0, ge=0)
    accelerator: str | None = None


DEFAULT_NODE_TYPES: dict[str, NodeTypeSpec] = {
    "cpu": NodeTypeSpec(resources={"CPU": 1}, framework="tensorflow", price_per_hour=0.19),
    "gpu": NodeTypeSpec(resources={"CPU": 1, "GPU": 1}, framework="jax", price_per_hour=2.48),
    "tpu": NodeTypeSpec(resources={"CPU": 1, "TPU": 1}, framework="jax", price_per_hour=1.20),
}


class GridSpec(_Strict):
    """The axes the study crosses; every combination becomes trials (x repeats)."""

    architectures: list[str] = Field(min_length=1)
    epochs: list[int] = Field(min_length=1)
    node_types: list[str] = Field(default_factory=lambda: ["cpu"], min_length=1)
    augmentation: list[Literal["none", "random", "augmentor"]] = Field(default_factory=lambda: ["none"], min_length=1)
    frameworks: list[Literal["auto", "tensorflow", "jax", "torch"]] = Field(default_factory=lambda: ["auto"], min_length=1)
    repeats: int = Field(default=1, ge=1, le=100)

    @field_validator("epochs")
    @classmethod
    def _epochs_positive(cls, v: list[int]) -> list[int]:
        bad = [e for e in v if e <= 0]
        if bad:
            raise ValueError(f"every epoch count must be a positive integer, got {bad[0]}")
        return v


class ExecutionSpec(_Strict):
    max_retries: int = Field(default=1, ge=0, le=10)
    max_concurrent_trials: int | None = Field(default=None, ge=1)
    exclusive_nodes: bool = False
    cpus_per_trial: float | None = Field(default=None, gt=0)
    trial_timeout_s: float | None = Field(default=None, gt=0)


class StorageSpec(_Strict):
    uri: str = "results"
    endpoint_url: str | None = None
    region: str | None = None


class ExperimentSpec(_Strict):
    """A whole experiment file."""

    name: str
    description: str = ""
    seed: int = 0
    dataset: DatasetSpec = DatasetSpec()
    split: SplitSpec = SplitSpec()
    augmentation: AugmentationSpec = AugmentationSpec()
    training: TrainingSpec = TrainingSpec()
    grid: GridSpec
    models: dict[str, ModelSpec] = Field(default_factory=dict)
    node_types: dict[str, NodeTypeSpec] = Field(default_factory=dict)
    execution: ExecutionSpec = ExecutionSpec()
    storage: StorageSpec = StorageSpec()
    search: dict[str, Any] | None = None

    @field_validator("name")
    @classmethod
    def _safe_name(cls, v: str) -> str:
        if not SAFE_NAME.match(v):
            raise ValueError("name may hold only letters, digits, '_', '-', '.' (1-64 chars, no '/')")
        return v

    @model_validator(mode="after")
    def _known_names(self) -> "ExperimentSpec":
        known_archs = _known_architectures()
        for i, arch in enumerate(self.grid.architectures):
            if arch not in known_archs:
                raise _FieldError(f"grid.architectures[{i}]", f"unknown architecture '{arch}' (valid: {', '.join(known_archs)})")
        for name in self.models:
            if name not in known_archs:
                raise _FieldError(f"models.{name}", f"unknown architecture (valid: {', '.join(known_archs)})")
        from workers.models import model_entry

        for arch in self.grid.architectures:
            need = model_entry(arch).min_input_size
            if min(self.dataset.image_size) < need:
                raise _FieldError("dataset.image_size", f"architecture '{arch}' needs images of at least {need}x{need}, "
                                  f"got {self.dataset.image_size[0]}x{self.dataset.image_size[1]}")
        node_types = self.resolved_node_types()
        for i, nt in enumerate(self.grid.node_types):
            if nt not in node_types:
                raise _FieldError(f"grid.node_types[{i}]", f"unknown node type '{nt}' (valid: {', '.join(node_types)})")
        return self

    def resolved_node_types(self) -> dict[str, NodeTypeSpec]:
        """Built-in node types overlaid with the ones this file declares."""
        return {**DEFAULT_NODE_TYPES, **self.node_types}

    def model_spec(self, arch: str) -> ModelSpec:
        return self.models.get(arch, ModelSpec())


class _FieldError(ValueError):
    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def _known_architectures() -> list[str]:
    from workers.models import list_models

    return list_models()


def _format_validation_error(err: ValidationError) -> str:
    first = err.errors()[0]
    loc = ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in first["loc"]).replace(".[", "[")
    ctx_err = first.get("ctx", {}).get("error")
    if isinstance(ctx_err, _FieldError):
        return f"{ctx_err.field}: {ctx_err.message}"
    msg = first["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    if first["type"] == "extra_forbidden":
        msg = "unknown key (check the spelling)"
    if first["type"] == "literal_error":
        msg = f"got {first.get('input')!r}; " + msg.lower()
    if first["type"] == "missing":
        msg = "required field is missing"
    return f"{loc}: {msg}" if loc else msg


def parse_spec(data: Any, source: str = "<spec>") -> ExperimentSpec:
    """Validate a decoded YAML document; raise ``SpecError`` with one line on failure."""
    if not isinstance(data, dict):
        raise SpecError(f"{source}: the experiment file must be a YAML mapping with at least 'name' and 'grid'")
    try:
        return ExperimentSpec.model_validate(data)
    except ValidationError as err:
        raise SpecError(f"{source}: {_format_validation_error(err)}") from None


def load_spec(path: str | Path) -> ExperimentSpec:
    """Read and validate an experiment file."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise SpecError(f"{path}: cannot read experiment file ({err.strerror})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or "invalid YAML"
        raise SpecError(f"{path}: YAML syntax error{where}: {problem}") from None
    return parse_spec(data, str(path))


def spec_to_yaml(spec: ExperimentSpec) -> str:
    return yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False)

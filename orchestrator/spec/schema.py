"""Experiment file schema: typed, validated, one clear error line per problem.

An experiment file is YAML. ``load_spec(path)`` returns an ``ExperimentSpec`` or raises
``SpecError`` whose message names the file, the field and what would be valid.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (AfterValidator, BaseModel, ConfigDict, Field, StrictBool, StrictInt, ValidationError,
                      ValidationInfo, field_validator, model_validator)

from orchestrator.errors import SpecError
from orchestrator.spec.yaml_loader import YAMLInputError, load_yaml, read_input_file
from workers.accelerators import ACCELERATORS, accelerator
from workers.config import (AUGMENTATION_STAGES, AugmentationSpec, AugmentationStage, DatasetSpec,  # noqa: F401
                            EndpointUrl, ModelSpec, RandomAugmentSpec, Real, Seed, SplitSpec, TrainingSpec, _Strict,
                            no_duplicates)

MAX_EPOCHS = 10_000  # per trial; the seed studies use 10-100
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")  # used with fullmatch: no trailing newline
AUGMENTATIONS = AUGMENTATION_STAGES  # augmentor_random: Augmentor rebalancing, then random layers (seed 000)
OPTIMIZERS = ("adam", "sgd", "rmsprop", "adamw")


class NodeTypeSpec(_Strict):
    """How a node type maps to Ray resources, its default Keras backend and its price.

    ``instance`` names a machine type of the price table (``orchestrator/data/prices.json``: provider, region, date); its
    price is the node type's ``price_per_hour`` unless the file gives its own."""

    resources: dict[str, Real]
    # Its own stack, only when set (see spec/stack.py); unset: the study's one stack.
    framework: Literal["auto", "tensorflow", "jax", "torch"] | None = None
    mixed_precision: Literal["off", "bfloat16"] | None = None
    jit_compile: StrictBool | None = None
    steps_per_execution: StrictInt | None = Field(default=None, ge=1, le=10000)
    price_per_hour: Real | None = Field(default=None, ge=0, description="USD per node-hour; unknown when unset")
    accelerator: str | None = None
    instance: str | None = Field(default=None, description="a machine type of the price table (orchestrator/data/prices.json)")

    @model_validator(mode="after")
    def _price_from_table(self) -> "NodeTypeSpec":
        if self.instance is None:
            return self
        from orchestrator.spec.prices import instance_price

        try:
            price = instance_price(self.instance)["usd_per_hour"]
        except ValueError as err:
            raise ValueError(f"instance: {err}") from None
        if self.price_per_hour is None:
            object.__setattr__(self, "price_per_hour", price)  # frozen: set once, while validating
        return self

    @property
    def price_source(self) -> str | None:
        """Where ``price_per_hour`` comes from: the price table's entry, the file, or nowhere."""
        from orchestrator.spec.prices import instance_price, price_source

        if self.instance and self.price_per_hour == instance_price(self.instance)["usd_per_hour"]:
            return price_source(self.instance)
        return "the experiment file" if self.price_per_hour is not None else None

    @field_validator("resources")
    @classmethod
    def _sane_resources(cls, v: dict[str, float]) -> dict[str, float]:
        return check_resources(v)


NODE_TYPE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,31}")  # fullmatch; part of Ray resource names and paths
MAX_RESOURCE = 1_000_000  # units of one resource a node type may ask for
TRACKING_SCHEMES = ("http", "https", "file", "sqlite", "postgresql", "mysql", "mssql", "databricks")


def check_resources(resources: dict[str, float], field: str = "resources") -> dict[str, float]:
    """Resource amounts finite, non-negative and bounded, names safe, at least one CPU when CPU is given."""
    for key, amount in resources.items():
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_:-]{0,63}", key):
            raise ValueError(f"{field}: resource name {key!r} must be ASCII letters, digits, '_', ':' or '-'")
        if not 0 <= amount <= MAX_RESOURCE:
            raise ValueError(f"{field}.{key}: must be between 0 and {MAX_RESOURCE:,}, got {amount:g}")
    if "CPU" in resources and resources["CPU"] < 1:
        raise ValueError(f"{field}.CPU: a trial needs at least 1 CPU, got {resources['CPU']:g}")
    return resources


def check_tracking_uri(uri: str) -> str:
    """An MLflow tracking URI: a scheme MLflow serves (http(s) with a host, file:, a database, databricks) or a
    local path; never with credentials in it."""
    from urllib.parse import urlsplit

    if not uri.strip() or any(c.isspace() or ord(c) < 32 for c in uri):
        raise ValueError("must be a tracking URI such as http://host:5000 or a local folder, got an empty or "
                         "blank value")
    try:
        parts = urlsplit(uri)
        parts.port  # noqa: B018 - a port that is not a number raises here
    except ValueError:
        raise ValueError(f"'{uri}' is not a URI (e.g. http://host:5000)") from None
    if "://" in uri and parts.scheme.split("+")[0] not in TRACKING_SCHEMES:
        raise ValueError(f"scheme '{parts.scheme}' is not an MLflow tracking URI (valid: "
                         f"{', '.join(TRACKING_SCHEMES)}, or a local folder)")
    if parts.scheme in ("http", "https") and not parts.hostname:
        raise ValueError(f"'{uri}' names no host (e.g. http://host:5000)")
    if parts.username or parts.password:
        raise ValueError("must not hold credentials; set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD "
                         "(or MLFLOW_TRACKING_TOKEN) in the environment instead")
    return uri


def default_node_types() -> dict[str, NodeTypeSpec]:
    """The built-in node types: one per registered device kind that defines one (``Accelerator.node_type``),
    named after the kind, sorted by name; priced from the price table (``data/prices.json``) by ``instance``."""
    return {name: NodeTypeSpec(**accelerator(name).node_type) for name in ACCELERATORS.names()
            if accelerator(name).node_type is not None}



class GridSpec(_Strict):
    """The axes the study crosses; every combination becomes trials (x repeats)."""

    architectures: list[str] = Field(min_length=1)
    epochs: list[StrictInt] = Field(min_length=1)
    node_types: list[str] = Field(default_factory=lambda: ["cpu"], min_length=1)
    augmentation: list[AugmentationStage] = Field(default_factory=lambda: ["none"], min_length=1)
    frameworks: list[Literal["auto", "tensorflow", "jax", "torch"]] = Field(default_factory=lambda: ["auto"], min_length=1)
    repeats: StrictInt = Field(default=1, ge=1, le=100)
    repeats_vary: Literal["init", "init_and_split"] = Field(default="init", description=(
        "init: repeats differ in the initialisation seed only (one split); init_and_split: repeat r also uses "
        "split seed split.seed + r (a new train/validation/test split and Augmentor seed per repeat)"))

    @field_validator("architectures", "epochs", "node_types", "augmentation", "frameworks")
    @classmethod
    def _each_once(cls, v: list, info: ValidationInfo) -> list:
        return no_duplicates(v, f"grid.{info.field_name}")

    @field_validator("epochs")
    @classmethod
    def _epochs_positive(cls, v: list[int]) -> list[int]:
        bad = [e for e in v if not 1 <= e <= MAX_EPOCHS]
        if bad:
            raise ValueError(f"every epoch count must be a whole number from 1 to {MAX_EPOCHS}, got {bad[0]}")
        return v


class ExecutionSpec(_Strict):
    max_retries: StrictInt = Field(default=1, ge=0, le=10)
    max_concurrent_trials: StrictInt | None = Field(default=None, ge=1, le=100_000)
    exclusive_nodes: StrictBool = False
    isolated_timing: StrictBool = Field(default=False, description=(
        "one timed trial per node at a time, so hardware figures are never taken beside other trials: the whole "
        "node_kind_<type> unit per trial where nodes advertise it, else trials one at a time"))
    cpus_per_trial: Real | None = Field(default=None, ge=1, le=4096)
    trial_timeout_s: Real | None = Field(default=None, gt=0, le=30 * 86400, description=(
        "a study trial still running this many seconds after it started is stopped and recorded failed (timed out); "
        "a search bounds its trials with search.time_budget_s"))
    allow_device_mismatch: StrictBool = False
    budget_usd: Real | None = Field(default=None, gt=0, description="refuse a study whose estimated cost exceeds it")
    lost_node_timeout_s: Real = Field(default=120, gt=0, le=86400, description=(
        "how long a trial waits once no live node (and no autoscaler node type) can run it any more, e.g. after "
        "the only node of its kind was lost; then it is recorded failed with the reason and the study ends"))


# Per-epoch history columns a time-to-target may use, and whether higher values are better.
TARGET_METRICS = {"val_balanced_accuracy": "max", "val_accuracy": "max", "val_f1_macro": "max", "val_loss": "min"}


class TargetSpec(_Strict):
    """The quality a trial must reach on the validation split for its time to target (MLPerf-style)."""

    metric: Literal["val_balanced_accuracy", "val_accuracy", "val_f1_macro", "val_loss"] = "val_balanced_accuracy"
    value: Real = 0.75

    @property
    def mode(self) -> str:
        return TARGET_METRICS[self.metric]


class ReportSpec(_Strict):
    target: TargetSpec = TargetSpec()


class PlanSpec(_Strict):
    """``plan:``: how a study's time and cost are estimated before it runs (``execution/plan.py``)."""

    calibrate: bool = Field(default=False, description=(
        "before the study, run a short calibration trial per distinct (architecture, node type, stack) on the "
        "cluster (cached in the store by setting) and estimate from those measurements; `submit --calibrate`"))
    calibration_epochs: int = Field(default=2, ge=2, le=5, description=(
        "epochs of a calibration trial: the first holds compilation, the later ones give the steady throughput"))
    calibration_steps: int = Field(default=200, ge=5, le=100000, description=(
        "training steps per calibration epoch at most (each still validates on the whole validation split); a "
        "bigger training split is estimated from the images per second those steps ran at"))


class StorageSpec(_Strict):
    """Where a run's records and report go; ``local_dir`` keeps Tune state of embedded runs with a remote store
    and everything a remote store could not take."""

    uri: str = "results"
    endpoint_url: EndpointUrl = None
    region: str | None = Field(default=None, pattern=r"^[a-z0-9-]{1,32}$")
    local_dir: str = Field(default="results-local", min_length=1)
    keep_models: Literal["best", "all", "none"] = Field(default="best", description=(
        "trained models kept in the store (Keras .keras file with its preprocessing and class names): the best "
        "trial by the validation metric of report.target, every completed trial, or none"))

    @field_validator("uri")
    @classmethod
    def _known_scheme(cls, v: str) -> str:
        from workers.storage import check_store_uri

        try:
            return check_store_uri(v)
        except ValueError as err:
            raise ValueError(str(err).removeprefix("storage.uri: ")) from None


class MlflowSpec(_Strict):
    """``tracking.mlflow``: log every trial as an MLflow run under one parent run per study.

    ``uri`` falls back to the standard ``MLFLOW_TRACKING_URI``; credentials come only from MLflow's own
    environment variables (``MLFLOW_TRACKING_TOKEN``, ``MLFLOW_TRACKING_USERNAME``/``PASSWORD``), never from here.
    """

    uri: str | None = None
    experiment: str | None = Field(default=None, min_length=1, max_length=256,
                                   description="MLflow experiment; default: the study's name")
    request_timeout_s: Real = Field(default=10, gt=0, le=600)
    request_retries: StrictInt = Field(default=2, ge=0, le=10)

    @field_validator("uri")
    @classmethod
    def _tracking_uri(cls, v: str | None) -> str | None:
        return None if v is None else check_tracking_uri(v)


class TrackingSpec(_Strict):
    """Where researchers watch a study: MLflow (optional extra) and per-trial TensorBoard event files."""

    mlflow: MlflowSpec | None = None
    tensorboard: StrictBool = True


SEARCH_TRAINING_SETTINGS = ("learning_rate", "batch_size", "dropout", "optimizer", "augmentation", "class_weights",
                            "mixed_precision")
PRECISIONS = ("auto", "off", "bfloat16")
# What a multi-objective search may optimise: validation metrics at a trial's last epoch, and the time and cost to
# reach ``report.target`` (``orchestrator.search.objectives``).
SEARCH_OBJECTIVES = ("val_balanced_accuracy", "val_accuracy", "val_f1_macro", "val_loss", "time_to_target_s",
                     "cost_to_target_usd")
SEARCH_DISTRIBUTIONS = ("choice", "uniform", "loguniform", "grid")
_NOT_MODEL_PARAMS = ("input_shape", "num_classes", "weights_path", "dropout")


class SearchSpec(_Strict):
    """``search:`` block: a Ray Tune hyperparameter search over one architecture (``orchestrator tune FILE``).

    ``space`` maps a trial setting (a training hyperparameter, ``augmentation`` or a keyword argument of the
    architecture's builder such as ``lstm_units``) to one distribution: ``{choice: [...]}``,
    ``{uniform: [lo, hi]}``, ``{loguniform: [lo, hi]}`` or ``{grid: [...]}``. Whole-number settings sample
    whole numbers. ``architecture`` and ``epochs`` default to the first grid architecture and the largest
    grid epoch count (filled in when the file is loaded).

    ``architectures`` and ``node_types`` make the architecture and the hardware search dimensions too (each
    trial samples one and gets that node type's resources); ``objectives`` (``{name: max|min}``, two or more)
    makes the search multi-objective (the report shows the Pareto front; ``metric`` stays what ASHA compares).
    """

    space: dict[str, Any]
    architectures: list[str] | None = Field(default=None, min_length=1)
    node_types: list[str] | None = Field(default=None, min_length=1)
    objectives: dict[Literal[SEARCH_OBJECTIVES], Literal["max", "min"]] | None = None
    algorithm: Literal["random", "optuna"] = "random"
    scheduler: Literal["fifo", "asha"] = "asha"
    metric: Literal["val_f1_macro", "val_accuracy", "val_balanced_accuracy", "val_loss", "accuracy", "loss"] = \
        "val_f1_macro"
    mode: Literal["max", "min"] = "max"
    num_samples: StrictInt = Field(default=10, ge=1, le=10000)
    max_concurrent_trials: StrictInt | None = Field(default=None, ge=1)
    time_budget_s: Real | None = Field(default=None, gt=0)
    node_type: str = "cpu"
    architecture: str | None = None
    epochs: StrictInt | None = Field(default=None, ge=1, le=100000)
    grace_period: StrictInt = Field(default=1, ge=1)
    reduction_factor: Real = Field(default=2, gt=1, le=100)
    then_study_repeats: StrictInt = Field(default=1, ge=1, le=100)

    @model_validator(mode="before")
    @classmethod
    def _mode_follows_loss(cls, data: Any) -> Any:
        if isinstance(data, dict) and "mode" not in data and str(data.get("metric", "")).endswith("loss"):
            data = {**data, "mode": "min"}
        return data

    @model_validator(mode="after")
    def _check_space(self) -> "SearchSpec":
        if self.objectives is not None and len(self.objectives) < 2:
            raise _FieldError("search.objectives", "needs two or more objectives (for one, use metric and mode)")
        if not self.space:
            raise _FieldError("search.space",
                              "needs at least one setting, e.g. learning_rate: {loguniform: [0.0001, 0.01]}")
        for name, dist in self.space.items():
            field = f"search.space.{name}"
            kind, values = _distribution(field, dist)
            if self.algorithm == "optuna" and kind == "grid":
                raise _FieldError(field, "grid is not supported with algorithm: optuna (use choice)")
            if name in SEARCH_TRAINING_SETTINGS:
                _check_training_values(field, name, kind, values)
        return self

    def resolved(self, name: str) -> tuple[str, list]:
        """(distribution kind, values) of one setting of the space."""
        return _distribution(f"search.space.{name}", self.space[name])

    def architecture_choices(self) -> list[str]:
        return list(self.architectures or [self.architecture])

    def node_type_choices(self) -> list[str]:
        return list(self.node_types or [self.node_type])

    @property
    def objective_metrics(self) -> list[str]:
        """What the searcher optimises: the objectives' names, or the one ``metric``."""
        return list(self.objectives) if self.objectives else [self.metric]

    @property
    def objective_modes(self) -> list[str]:
        return list(self.objectives.values()) if self.objectives else [self.mode]


def _distribution(field: str, dist: Any) -> tuple[str, list]:
    """``{kind: values}`` -> (kind, values), with the bounds of ranges checked."""
    shapes = "{choice: [...]}, {uniform: [lo, hi]}, {loguniform: [lo, hi]} or {grid: [...]}"
    if not isinstance(dist, dict) or len(dist) != 1:
        raise _FieldError(field, f"expected one of {shapes}, got {dist!r}")
    kind, values = next(iter(dist.items()))
    if kind not in SEARCH_DISTRIBUTIONS:
        raise _FieldError(field, f"unknown distribution '{kind}' (valid: {', '.join(SEARCH_DISTRIBUTIONS)})")
    if kind in ("choice", "grid"):
        if not isinstance(values, list) or not values:
            raise _FieldError(field, f"{kind} needs a non-empty list of values, got {values!r}")
        return kind, values
    if (not isinstance(values, list) or len(values) != 2
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)):
        raise _FieldError(field, f"{kind} needs [lo, hi] (two numbers), got {values!r}")
    lo, hi = values
    if not lo < hi:
        raise _FieldError(field, f"{kind} needs lo < hi, got [{lo}, {hi}]")
    if kind == "loguniform" and lo <= 0:
        raise _FieldError(field, f"loguniform needs lo > 0, got [{lo}, {hi}]")
    return kind, values


def _check_training_values(field: str, name: str, kind: str, values: list) -> None:
    ranged = kind in ("uniform", "loguniform")
    named = {"optimizer": OPTIMIZERS, "augmentation": AUGMENTATIONS, "class_weights": (True, False),
             "mixed_precision": PRECISIONS}
    if name in named:
        if ranged:
            raise _FieldError(field, f"takes choice or grid of values, not {kind}")
        bad = [v for v in values if v not in named[name] or (name == "class_weights") != isinstance(v, bool)]
        if bad:
            raise _FieldError(field, f"invalid value {bad[0]!r} (valid: {', '.join(map(str, named[name]))})")
        return
    if name == "batch_size" and not ranged and any(isinstance(v, bool) or not isinstance(v, int) for v in values):
        raise _FieldError(field, f"batch sizes must be whole numbers, got {values!r}")
    if any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in values):
        raise _FieldError(field, f"values must be numbers, got {values!r}")
    lo, hi = min(values), max(values)
    if name == "learning_rate" and not (lo > 0 and hi <= 10):
        raise _FieldError(field, f"learning rates must be in (0, 10], got {values!r}")
    if name == "batch_size" and not (lo >= 1 and hi <= 65536):
        raise _FieldError(field, f"batch sizes must be between 1 and 65536, got {values!r}")
    if name == "dropout" and not (lo >= 0 and hi < 1):
        raise _FieldError(field, f"dropout must be in [0, 1), got {values!r}")


def model_search_params(architecture: str) -> dict[str, Any]:
    """Builder keyword arguments of an architecture that a search may set, with their defaults."""
    import inspect

    from workers.models import model_entry

    signature = inspect.signature(model_entry(architecture).builder)
    return {n: p.default for n, p in signature.parameters.items()
            if n not in _NOT_MODEL_PARAMS and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def _resolve_search(search: SearchSpec | None, info: ValidationInfo) -> SearchSpec | None:
    """Check a search block against the rest of the file and fill in its architecture and epochs."""
    if search is None:
        return None
    grid = info.data.get("grid")
    if grid is None:
        return search
    known = _known_architectures()
    archs = search.architectures or [search.architecture or grid.architectures[0]]
    for i, name in enumerate(archs):
        if name not in known:
            field = f"search.architectures[{i}]" if search.architectures else "search.architecture"
            raise _FieldError(field, f"unknown architecture '{name}' (valid: {', '.join(known)})")
    arch = archs[0]
    node_types = {**default_node_types(), **(info.data.get("node_types") or {})}
    for i, name in enumerate(search.node_types or [search.node_type]):
        if name not in node_types:
            field = f"search.node_types[{i}]" if search.node_types else "search.node_type"
            raise _FieldError(field, f"unknown node type '{name}' (valid: {', '.join(node_types)})")
    epochs = search.epochs or max(grid.epochs)
    if search.grace_period > epochs:
        raise _FieldError("search.grace_period",
                          f"must not exceed the epochs per trial ({epochs}), got {search.grace_period}")
    split = info.data.get("split")
    if search.metric.startswith("val_") and split is not None and split.val_fraction <= 0:
        raise _FieldError("search.metric", f"{search.metric} needs a validation split (split.val_fraction > 0)")
    if search.objectives:
        for name in search.objectives:
            if name.startswith("val_") and split is not None and split.val_fraction <= 0:
                raise _FieldError(f"search.objectives.{name}", "needs a validation split (split.val_fraction > 0)")
    model_params: dict[str, Any] = {}
    for name in reversed(archs):  # a builder argument of any searched architecture (applied where it exists)
        model_params.update(model_search_params(name))
    unknown = [n for n in search.space if n not in SEARCH_TRAINING_SETTINGS and n not in model_params]
    if unknown:
        label = f"architecture '{arch}'" if len(archs) == 1 else f"architectures {', '.join(archs)}"
        raise _FieldError("search.space", f"unknown setting(s) {', '.join(unknown)} for {label} "
                                          f"(valid: {', '.join(SEARCH_TRAINING_SETTINGS + tuple(model_params))})")
    for name in search.space:
        if name in model_params:
            default = model_params[name]
            kind, values = search.resolved(name)
            numeric = default is None or (isinstance(default, (int, float)) and not isinstance(default, bool))
            if kind in ("uniform", "loguniform") and not numeric:
                raise _FieldError(f"search.space.{name}", f"takes choice or grid of values, not {kind}")
            whole = isinstance(default, int) and not isinstance(default, bool)
            fractional = any(isinstance(v, bool) or not isinstance(v, int) for v in values)
            if whole and kind in ("choice", "grid") and fractional:
                raise _FieldError(f"search.space.{name}", f"values must be whole numbers, got {values!r}")
    return search.model_copy(update={"architecture": arch, "epochs": epochs,
                                     "node_type": (search.node_types or [search.node_type])[0]})


class ExperimentSpec(_Strict):
    """A whole experiment file."""

    name: str
    description: str = ""
    seed: Seed = 0
    dataset: DatasetSpec = DatasetSpec()
    split: SplitSpec = SplitSpec()
    augmentation: AugmentationSpec = AugmentationSpec()
    training: TrainingSpec = TrainingSpec()
    grid: GridSpec
    models: dict[str, ModelSpec] = Field(default_factory=dict)
    node_types: dict[str, NodeTypeSpec] = Field(default_factory=dict)
    execution: ExecutionSpec = ExecutionSpec()
    storage: StorageSpec = StorageSpec()
    report: ReportSpec = ReportSpec()
    plan: PlanSpec = PlanSpec()
    tracking: TrackingSpec = TrackingSpec()
    search: Annotated[SearchSpec | None, AfterValidator(_resolve_search)] = None

    @field_validator("dataset")
    @classmethod
    def _known_source(cls, v: DatasetSpec) -> DatasetSpec:
        from workers.data.sources import SOURCES  # importing workers.data registers the sources (numpy, PIL)

        if v.source not in SOURCES:
            raise _FieldError("dataset.source", f"unknown source '{v.source}' (valid: {', '.join(SOURCES.names())})")
        if SOURCES.get(v.source).needs_path and not v.path:
            raise _FieldError("dataset.path", f"is required for source '{v.source}'")
        return v

    @field_validator("name")
    @classmethod
    def _safe_name(cls, v: str) -> str:
        if not SAFE_NAME.fullmatch(v):
            raise ValueError("name may hold only letters, digits, '_', '-', '.' (1-64 chars, no '/')")
        return v

    @field_validator("node_types")
    @classmethod
    def _safe_node_type_names(cls, v: dict[str, NodeTypeSpec]) -> dict[str, NodeTypeSpec]:
        for name in v:
            if not NODE_TYPE_NAME.fullmatch(name):
                raise _FieldError(f"node_types.{name!r}", "a node type name may hold only ASCII letters, digits, "
                                  "'_' and '-' (1-32 chars, starting with a letter); it names Ray resources and folders")
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
        _check_devices(self)
        return self

    def resolved_node_types(self) -> dict[str, NodeTypeSpec]:
        """Built-in node types overlaid with the ones this file declares."""
        return {**default_node_types(), **self.node_types}

    def model_spec(self, arch: str) -> ModelSpec:
        return self.models.get(arch, ModelSpec())


def _check_devices(spec: "ExperimentSpec") -> None:
    """Every trial's global batch splits evenly over the devices its node type gives it, and PyTorch (one
    device per trial) is never asked to use several."""
    from workers.distribution import accelerator_count, batch_split_problem

    node_types = spec.resolved_node_types()
    used = [(name, spec.training.batch_size, "training.batch_size") for name in spec.grid.node_types]
    if spec.search is not None and "batch_size" in spec.search.space:
        kind, values = spec.search.resolved("batch_size")
        if kind in ("choice", "grid"):
            used += [(nt, int(v), "search.space.batch_size") for v in values for nt in spec.search.node_type_choices()]
    elif spec.search is not None:
        used += [(nt, spec.training.batch_size, "training.batch_size") for nt in spec.search.node_type_choices()]
    for name, batch, field in used:
        devices = accelerator_count(node_types[name].resources)
        problem = batch_split_problem(batch, devices, f"a '{name}' trial ({_resources_text(node_types[name])})")
        if problem:
            raise _FieldError(field, problem)
    for name in dict.fromkeys(spec.grid.node_types):
        nt = node_types[name]
        torch = "torch" in spec.grid.frameworks or ("auto" in spec.grid.frameworks and nt.framework == "torch")
        if torch and accelerator_count(nt.resources) > 1:
            raise _FieldError("grid.frameworks", f"torch trains on one device, but node type '{name}' gives "
                              f"{accelerator_count(nt.resources)} ({_resources_text(nt)}); use jax or tensorflow")


def _resources_text(nt: NodeTypeSpec) -> str:
    return ", ".join(f"{k}: {v:g}" for k, v in nt.resources.items())


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
        raw = read_input_file(path, "experiment file")
    except YAMLInputError as err:
        raise SpecError(f"{path}: {err}") from None
    return parse_spec(parse_yaml(raw, str(path)), str(path))


def parse_yaml(raw: str | bytes, source: str):
    """A YAML document read strictly (see ``spec.yaml_loader``); one-line ``SpecError`` on bad input."""
    try:
        return load_yaml(raw)
    except YAMLInputError as err:
        raise SpecError(f"{source}: {err}") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or "invalid YAML"
        raise SpecError(f"{source}: YAML syntax error{where}: {problem}") from None


def spec_to_yaml(spec: ExperimentSpec) -> str:
    return yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False)

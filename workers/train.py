"""One trial as a plain function: data -> model -> fit -> evaluate -> timings, on the device it was given.

Runs without Ray. The Ray trainable (``orchestrator.execution.trainable``) calls ``run_trial`` with an ``on_epoch``
callback that reports to Tune and checkpoints.
"""
from __future__ import annotations

import csv
import io
import json
import logging
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from workers.config import STEPS_PER_EPOCH, TrialConfig, uses_random_layers
from workers.records import DeviceInfo, Timings, TrialRecord, TrialStatus
from workers.device import (activate_backend, device_problem, device_record, expected_kind, resolve_backend,
                            restrict_devices)
from workers.accelerators import ACCELERATORS
from workers.distribution import (DevicePlan, accelerator_count, data_parallel, jit_compile, plan_devices,
                                  predict_sharded, shardable_rows, steps_per_execution)



@dataclass(frozen=True)
class TrialResult:
    """What ``run_trial`` returns: the trial's record, its test predictions (``predictions.csv`` text), its
    validation predictions (``val_predictions.csv``, same format; empty without a validation split) and the
    trained Keras model (None when nothing was trained)."""

    record: TrialRecord
    predictions_csv: str
    val_predictions_csv: str = ""
    model: Any = None


EpochCallback = Callable[[dict, Callable[[str], None]], None]
log = logging.getLogger(__name__)


def _optimizer(keras, name: str, lr: float):
    registry = {
        "adam": keras.optimizers.Adam,
        "adamw": keras.optimizers.AdamW,
        "sgd": lambda learning_rate: keras.optimizers.SGD(learning_rate=learning_rate, momentum=0.9),
        "rmsprop": keras.optimizers.RMSprop,
    }
    return registry[name](learning_rate=lr)


def _mixed_precision(keras, setting: str, device_kind: str, backend: str) -> str:
    """Set and return the Keras policy: bfloat16 when asked, for ``auto`` the device kind's default for the
    backend (``Accelerator.mixed_precision``), else float32."""
    policy = "float32"
    auto = ACCELERATORS.get(device_kind).mixed_precision.get(backend) if device_kind in ACCELERATORS else None
    if setting == "bfloat16":
        policy = "mixed_bfloat16"
    elif setting == "auto" and auto:
        policy = auto
    keras.mixed_precision.set_global_policy(policy)
    return policy


def class_weight_map(y: np.ndarray, num_classes: int) -> dict[int, float]:
    """Balanced class weights (seed 004): n_samples / (n_classes * count)."""
    from sklearn.utils.class_weight import compute_class_weight

    present = np.unique(y)
    weights = compute_class_weight("balanced", classes=present, y=y)
    out = {int(c): 1.0 for c in range(num_classes)}
    out.update({int(c): float(w) for c, w in zip(present, weights)})
    return out


def build_model(keras, config: TrialConfig, input_shape, num_classes: int, weights_path: str | None = None):
    """The registered architecture, with on-device random augmentation in front for the ``random`` and
    ``augmentor_random`` stages (Keras random layers act in training only)."""
    from workers.augment import random_augmentation_layers
    from workers.models import create_model

    params = dict(config.model.params)
    params.update(config.overrides.get("model_params") or {})
    dropout = config.hparam("dropout")
    if dropout is not None:
        params.setdefault("dropout", dropout)
    if weights_path:
        params["weights_path"] = weights_path
    base = create_model(config.architecture, input_shape=input_shape, num_classes=num_classes,
                        weights=config.model.weights, **params)
    if not uses_random_layers(config.augmentation):
        return base
    inputs = keras.Input(shape=input_shape, name="image")
    x = inputs
    for layer in random_augmentation_layers(config.augmentation_settings.random.model_dump(), config.seed):
        x = layer(x)
    return keras.Model(inputs, base(x), name=f"{base.name}_randaug")


class _EpochMonitor:
    """Times each epoch's training pass, then validates and hands the epoch's metrics to ``on_epoch``."""

    def __init__(self, keras, data, plan: DevicePlan, on_epoch: EpochCallback | None, save_checkpoint,
                 history: list[dict], clock: Callable[[], float]):
        from workers.metrics import compute_metrics

        self.compute_metrics = compute_metrics
        self.data, self.plan, self.on_epoch = data, plan, on_epoch
        self.save_checkpoint, self.history, self.clock = save_checkpoint, history, clock
        monitor = self

        class _Callback(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                monitor._t0 = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                monitor.epoch_end(self.model, epoch, logs or {})

        self.callback = _Callback()

    def epoch_end(self, model, epoch: int, logs: dict) -> None:
        train_s = time.perf_counter() - self._t0
        row = {"epoch": epoch + 1, "loss": float(logs.get("loss", np.nan)), "accuracy": float(logs.get("accuracy", np.nan)),
               "epoch_train_s": train_s}
        if len(self.data.y_val):
            t = time.perf_counter()
            probs = _predict(model, self.data, "val", self.plan)
            m = self.compute_metrics(self.data.y_val, probs, self.data.class_names, confidence_intervals=False)
            eps = 1e-7
            row.update({
                "val_loss": float(-np.mean(np.log(np.clip(probs[np.arange(len(probs)), self.data.y_val], eps, 1)))),
                "val_accuracy": m["accuracy"],
                "val_balanced_accuracy": (m["isic"] or {}).get("balanced_multiclass_accuracy"),
                "val_f1_macro": m["f1_macro"],
                "val_s": time.perf_counter() - t,
            })
        row["wall_s"] = self.clock()  # since the trial started, validation of this epoch included
        row["cpu_load_1m"] = _load_average()  # what else the node was doing during this epoch
        self.history.append(row)
        if self.on_epoch is not None:
            self.on_epoch(row, self.save_checkpoint)


def _load_average() -> float | None:
    """The node's 1-minute CPU load average (None where the OS has none)."""
    try:
        return float(os.getloadavg()[0])
    except (AttributeError, OSError):
        return None


def _predictions_csv(ids: list[str], y_true: np.ndarray, probs: np.ndarray, class_names: list[str]) -> str:
    """One row per image of the split; probabilities at full float32 precision, so that
    ``workers.metrics.rescore_predictions_csv`` gives back exactly the record's metrics."""
    from workers.metrics import format_probability

    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["image_id", "true_class", "predicted_class"] + [f"p_{c}" for c in class_names])
    for image_id, t, p in zip(ids, y_true, probs):
        writer.writerow([image_id, class_names[int(t)], class_names[int(np.argmax(p))]]
                        + [format_probability(v) for v in p])
    return buf.getvalue()


def run_trial(
    config: TrialConfig,
    *,
    data=None,
    on_epoch: EpochCallback | None = None,
    checkpoint_dir: str | Path | None = None,
    resume_dir: str | Path | None = None,
    weights_path: str | None = None,
    data_timings: dict | None = None,
    started: float | None = None,
) -> "TrialResult":
    """Train, evaluate and time one trial; return its record (metrics, history, timings, device) and the
    test predictions as CSV.

    ``data`` is a ``PreparedData`` (prepared here when None) or a ``ShardedDataset`` (streamed from shards).
    ``on_epoch(row, save)`` is called after every epoch; calling ``save(dir)`` writes a checkpoint there.
    ``resume_dir`` continues from such a checkpoint.
    A trial whose device is not the kind its node type asks for trains nothing: its record has status
    ``misconfigured`` and the reason (see ``workers.device.device_problem``). With several devices it trains
    data parallel over all of them, ``training.batch_size`` being the global batch.
    ``started`` is the ``time.perf_counter()`` reading when the trial's clock started (default: now). Callers
    start it at the same point for every trial: once the node holds the prepared data (staging a node's cache
    is on no trial's clock; MLPerf lets data start on any durable storage). Every history row's ``wall_s`` and
    ``timings.total_s`` (the basis of the trial's cost) count from it, so time to target and cost share one
    clock. A resumed trial's clock goes on from the ``wall_s`` of its last checkpointed epoch. Every epoch
    records the node's 1-minute CPU load average (``cpu_load_1m``; ``timings.cpu_load_1m`` is their mean).
    """
    t_start = time.perf_counter()
    started = t_start if started is None else started
    timings: dict[str, float] = dict(data_timings or {})
    keras, backend = _start_backend(config)
    data = _ensure_data(config, data, timings)
    device = device_record(config.node_type, backend, config.resources)
    problem = device_problem(device, config.allow_device_mismatch)
    if problem:
        record = TrialRecord(trial_id=config.trial_id, config=config.to_dict(), status=TrialStatus.MISCONFIGURED,
                             error=problem, device=DeviceInfo(**device), pid=os.getpid())
        return TrialResult(record, "")
    plan = plan_devices(keras, backend, device["used"]["kind"], config.resources,
                        int(config.hparam("batch_size")))
    with data_parallel(keras, plan):
        trained = _train(keras, config, data, plan, device, timings, on_epoch, resume_dir, weights_path, started)
        t = time.perf_counter()
        probs = np.asarray(_predict(trained.model, data, "test", plan),
                           dtype=np.float32)  # the values predictions.csv stores, so rescoring it is exact
        timings["eval_s"] = time.perf_counter() - t
        val_probs = np.asarray(_predict(trained.model, data, "val", plan), dtype=np.float32) \
            if len(data.y_val) else None
        if checkpoint_dir:
            trained.save_checkpoint(str(checkpoint_dir))
    timings["total_s"] = trained.clock_base + time.perf_counter() - started
    loads = [row["cpu_load_1m"] for row in trained.history if row.get("cpu_load_1m") is not None]
    timings.update({"cpu_load_1m": float(np.mean(loads)) if loads else _load_average(), "node_cpus": os.cpu_count()})
    return _completed_record(config, data, trained, probs, val_probs, timings, device, plan)


def _start_backend(config: TrialConfig):
    """Hide devices a cpu trial must not touch, resolve ``auto``, and make that the Keras backend."""
    restrict_devices(config.resources)
    backend = resolve_backend(config.framework, expected_kind(config.resources), accelerator_count(config.resources))
    keras = activate_backend(backend)
    warnings.filterwarnings("ignore", module="keras")
    keras.utils.set_random_seed(config.seed)
    return keras, backend


def _ensure_data(config: TrialConfig, data, timings: dict):
    if data is None:
        from workers.data import prepare_data

        t = time.perf_counter()
        data = prepare_data(*config.preparation_args())
        timings["prepare_s"] = time.perf_counter() - t
    timings.setdefault("data_load_s", float(data.meta.get("load_s", 0.0)))
    timings.setdefault("augment_s", float(data.meta.get("augment_s", 0.0)))
    return data


@dataclass
class _Trained:
    model: Any
    history: list[dict]
    start_epoch: int
    save_checkpoint: Callable[[str], None]
    settings: dict
    n_train: int  # training rows each epoch trains on
    clock_base: float = 0.0  # seconds on the trial's clock before this attempt (a resumed trial's checkpoint)
    n_split: int = 0  # training rows of the split (all but those left out for sharding)


def compile_model(keras, config: TrialConfig, model, plan: DevicePlan) -> dict:
    """Compile ``model`` with the trial's optimizer, ``steps_per_execution`` and XLA setting; return those."""
    jit = config.hparam("jit_compile")  # the study's one setting (orchestrator/spec/stack.py), else per device
    settings = {"steps_per_execution": steps_per_execution(config.hparam("steps_per_execution"), plan.kind),
                "jit_compile": jit_compile(plan.backend, plan.kind) if jit is None else bool(jit)}
    model.compile(
        optimizer=_optimizer(keras, config.hparam("optimizer"), float(config.hparam("learning_rate"))),
        loss="sparse_categorical_crossentropy", metrics=["accuracy"], **settings,
    )
    return settings | {"jit_compile": bool(model.jit_compile)}


def _build(keras, config: TrialConfig, data, plan: DevicePlan, device: dict, weights_path, resume_dir):
    """Model built and compiled (inside the caller's data-parallel scope), resumed from ``resume_dir``."""
    policy = _mixed_precision(keras, config.hparam("mixed_precision"), device["used"]["kind"], plan.backend)
    input_shape = data.image_shape
    model = build_model(keras, config, input_shape, data.num_classes, weights_path)
    settings = compile_model(keras, config, model, plan) | {"precision_policy": policy}
    history: list[dict] = []
    start_epoch = 0
    if resume_dir and (Path(resume_dir) / "state.json").exists():
        state = json.loads((Path(resume_dir) / "state.json").read_text())
        model.load_weights(str(Path(resume_dir) / "model.weights.h5"))
        history, start_epoch = state["history"], int(state["epoch"])

    def save_checkpoint(directory: str) -> None:
        Path(directory).mkdir(parents=True, exist_ok=True)
        model.save_weights(str(Path(directory) / "model.weights.h5"))
        (Path(directory) / "state.json").write_text(json.dumps({"epoch": len(history), "history": history}))

    return _Trained(model, history, start_epoch, save_checkpoint, settings, int(len(data.y_train)))


def _train(keras, config, data, plan: DevicePlan, device, timings, on_epoch, resume_dir, weights_path,
           started: float) -> _Trained:
    """Build, compile and fit over every device of ``plan``; fills ``timings`` (build, fit, throughput).
    Each history row's ``wall_s`` counts from ``started`` (a resumed trial's from its checkpoint's clock)."""
    t = time.perf_counter()
    trained = _build(keras, config, data, plan, device, weights_path, resume_dir)
    timings["build_s"] = time.perf_counter() - t
    rows = shardable_rows(len(data.y_train), plan.count, config.seed)  # every batch splits over the devices
    trained.n_split = int(len(rows))
    cap = config.overrides.get(STEPS_PER_EPOCH)  # a calibration trial's bound: that many steps of each epoch
    if cap and int(cap) * plan.global_batch < len(rows):
        rows = rows[np.random.default_rng(config.seed).permutation(len(rows))[: int(cap) * plan.global_batch]]
        rows.sort()
    trained.n_train = int(len(rows))
    clock_base = float(trained.history[-1].get("wall_s") or 0.0) if trained.history else 0.0
    trained.clock_base = clock_base
    monitor = _EpochMonitor(keras, data, plan, on_epoch, trained.save_checkpoint, trained.history,
                            clock=lambda: clock_base + time.perf_counter() - started)
    class_weight = class_weight_map(data.y_train[rows], data.num_classes) if config.hparam("class_weights") else None
    t = time.perf_counter()
    if trained.start_epoch < config.epochs:
        trained.model.fit(
            **data.fit_inputs(plan.global_batch, config.seed, trained.start_epoch, rows), epochs=config.epochs,
            initial_epoch=trained.start_epoch, verbose=0, callbacks=[monitor.callback], class_weight=class_weight,
        )
    timings["fit_s"] = time.perf_counter() - t
    start, history = trained.start_epoch, trained.history
    epoch_times = [row["epoch_train_s"] for row in history[start:]] if start < len(history) else []
    timings.update(_throughput(epoch_times, trained.n_train, start))
    return trained


def _completed_record(config: TrialConfig, data, trained: _Trained, probs, val_probs, timings: dict, device: dict,
                      plan: DevicePlan) -> "TrialResult":
    """The record: test metrics (with bootstrap intervals) and, under ``metrics.validation``, the final model's
    validation metrics, which are what anything that chooses between trials ranks on."""
    from workers.metrics import compute_metrics

    metrics = compute_metrics(data.y_test, probs, data.class_names)
    if val_probs is not None:
        metrics["validation"] = compute_metrics(data.y_val, val_probs, data.class_names, confidence_intervals=False)

    device = device | plan.as_record() | {k: trained.settings[k] for k in ("steps_per_execution", "jit_compile")}
    record = TrialRecord(
        trial_id=config.trial_id, config=config.to_dict(), status=TrialStatus.COMPLETED,
        metrics=metrics, history=trained.history,
        timings=Timings(**timings), device=DeviceInfo(**device), precision_policy=trained.settings["precision_policy"],
        class_names=data.class_names, n_params=int(trained.model.count_params()), data=_data_summary(data, trained),
        pid=os.getpid())
    val_csv = _predictions_csv(data.ids_val, data.y_val, val_probs, data.class_names) if val_probs is not None else ""
    return TrialResult(record, _predictions_csv(data.ids_test, data.y_test, probs, data.class_names), val_csv,
                       trained.model)


def _predict(model, data, split: str, plan: DevicePlan) -> np.ndarray:
    """Class probabilities of ``split``'s images: in-memory arrays padded to whole device batches, or streamed
    from shards (the stream pads its last batch itself)."""
    x = data.predict_inputs(split, plan.global_batch, plan.count)
    if isinstance(x, np.ndarray):
        return predict_sharded(model, x, plan.global_batch, plan.count)
    return model.predict(x, verbose=0)[:x.n_rows]


def _data_summary(data, trained: _Trained) -> dict[str, Any]:
    keys = ("synthetic", "n_loaded", "train_counts", "train_counts_before_augmentation", "n_val", "n_test",
            "augmented_images", "augmentor", "grouped_split", "grouped_by_lesion", "leakage", "split_warnings")
    return {k: data.meta.get(k) for k in keys} | {
        "n_train": trained.n_train, "train_rows_left_out_for_sharding": int(len(data.y_train)) - trained.n_split,
        "n_train_split": trained.n_split,
        "skipped_images": len(data.meta.get("skipped_images") or [])}


def _throughput(epoch_times: list[float], n_train: int, start_epoch: int) -> dict[str, float | None]:
    """First epoch (compile + warm-up) separately from steady-state epochs; images/s from steady state only."""
    if not epoch_times:
        return {"first_epoch_s": None, "steady_epoch_s": None, "images_per_s": None, "throughput_includes_warmup": False}
    first = epoch_times[0] if start_epoch == 0 else None
    steady = epoch_times[1:] if start_epoch == 0 else epoch_times
    warm = not steady
    per_epoch = float(np.median(steady)) if steady else epoch_times[0]
    return {
        "first_epoch_s": first,
        "steady_epoch_s": per_epoch,
        "images_per_s": n_train / per_epoch if per_epoch > 0 else None,
        "throughput_includes_warmup": warm,
    }

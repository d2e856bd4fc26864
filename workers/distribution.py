"""Data parallelism over the devices a trial holds, and the execution settings of the device kind that computes
(read from its entry in ``workers/accelerators.py``).

``training.batch_size`` is the GLOBAL batch: a trial holding N accelerators splits every batch into N equal
shards, one per device (JAX: ``keras.distribution.DataParallel``; TensorFlow: ``tf.distribute.MirroredStrategy``).
The PyTorch backend trains on one device; node types giving it more are refused when the spec is validated.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from workers.accelerators import accelerator, device_count

MULTI_DEVICE_BACKENDS = ("jax", "tensorflow")


def accelerator_count(resources: dict) -> int:
    """How many devices a trial with ``resources`` computes on (``workers.accelerators.device_count``)."""
    return device_count(resources)


def batch_split_problem(global_batch: int, devices: int, holder: str = "this trial") -> str | None:
    """Why ``global_batch`` cannot be split evenly over ``devices``, or None when it can."""
    if global_batch % devices:
        return (f"{global_batch} does not divide by the {devices} devices {holder} holds; use a multiple of "
                f"{devices} (the global batch is split evenly over the devices)")
    return None


@dataclass(frozen=True)
class DevicePlan:
    """The devices one trial trains on and how its global batch is split over them."""

    backend: str
    kind: str
    devices: tuple[str, ...]
    global_batch: int

    @property
    def count(self) -> int:
        return len(self.devices)

    @property
    def per_device_batch(self) -> int:
        return self.global_batch // self.count

    def as_record(self) -> dict:
        return {"devices_used": self.count, "device_names": list(self.devices), "global_batch": self.global_batch,
                "per_device_batch": self.per_device_batch, "data_parallel": self.count > 1}


def _jax_devices(keras, kind: str) -> list[str]:
    return list(keras.distribution.list_devices(kind))


def _tensorflow_devices(keras, kind: str) -> list[str]:
    import tensorflow as tf

    return [d.name for d in tf.config.list_logical_devices(kind.upper())]


def _torch_devices(keras, kind: str) -> list[str]:
    return ["cuda:0" if kind == "gpu" else "cpu:0"]


VISIBLE_DEVICES = {"jax": _jax_devices, "tensorflow": _tensorflow_devices, "torch": _torch_devices}


def plan_devices(keras, backend: str, kind: str, resources: dict, global_batch: int) -> DevicePlan:
    """Use as many of the backend's ``kind`` devices as the trial's resources give it (at most what it sees).

    Raises ``ValueError`` (one line) when the global batch does not split evenly over them."""
    wanted = accelerator_count(resources) if backend in MULTI_DEVICE_BACKENDS else 1
    visible = VISIBLE_DEVICES[backend](keras, kind) or [f"{kind}:0"]
    devices = tuple(visible[:wanted])
    problem = batch_split_problem(global_batch, len(devices))
    if problem:
        raise ValueError(f"training.batch_size: {problem}")
    return DevicePlan(backend=backend, kind=kind, devices=devices, global_batch=global_batch)


@contextlib.contextmanager
def _jax_data_parallel(keras, plan: DevicePlan) -> Iterator[None]:
    previous = keras.distribution.distribution()
    keras.distribution.set_distribution(keras.distribution.DataParallel(devices=list(plan.devices)))
    try:
        yield
    finally:
        keras.distribution.set_distribution(previous)


@contextlib.contextmanager
def _tensorflow_mirrored(keras, plan: DevicePlan) -> Iterator[None]:
    import tensorflow as tf

    with tf.distribute.MirroredStrategy(devices=list(plan.devices)).scope():
        yield


DATA_PARALLEL = {"jax": _jax_data_parallel, "tensorflow": _tensorflow_mirrored}


def data_parallel(keras, plan: DevicePlan):
    """Context in which a model is built, compiled and trained over all of ``plan``'s devices."""
    if plan.count == 1:
        return contextlib.nullcontext()
    if plan.backend not in DATA_PARALLEL:
        raise ValueError(f"framework '{plan.backend}' trains on one device; this trial holds {plan.count}")
    return DATA_PARALLEL[plan.backend](keras, plan)


def shardable_rows(n_rows: int, devices: int, seed: int) -> np.ndarray:
    """Indices of the training rows kept so every batch (the last one too) splits evenly over ``devices``:
    all but ``n_rows % devices`` rows, the left-out ones drawn with ``seed``."""
    left_out = n_rows % devices
    if not left_out:
        return np.arange(n_rows)
    keep = np.random.default_rng(seed).choice(n_rows, n_rows - left_out, replace=False)
    return np.sort(keep)


def predict_sharded(model, x: np.ndarray, batch_size: int, devices: int) -> np.ndarray:
    """``model.predict`` on rows padded to a multiple of ``devices`` (so every batch shards), padding dropped."""
    pad = (-len(x)) % devices
    if pad:
        x = np.concatenate([x, np.zeros((pad,) + x.shape[1:], dtype=x.dtype)])
    probs = model.predict(x, batch_size=batch_size, verbose=0)
    return probs[: len(x) - pad]


def steps_per_execution(setting: int | None, kind: str) -> int:
    """The spec's ``training.steps_per_execution``, else the device kind's default (many on TPUs, which pay a
    host round trip per execution; one on CPUs and GPUs, which keeps per-epoch timings and callbacks exact)."""
    return int(setting) if setting else accelerator(kind).steps_per_execution


def jit_compile(backend: str, kind: str) -> bool | str:
    """XLA compilation where the kind's entry says the backend compiles reliably (JAX everywhere, TensorFlow
    on accelerators); elsewhere Keras's own choice ("auto": eager PyTorch, no XLA for TensorFlow on CPUs)."""
    return True if backend in accelerator(kind).jit_backends else "auto"

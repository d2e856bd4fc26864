"""Keras backend selection per trial, device placement, and a record of the device that really ran."""
from __future__ import annotations

import os
import platform
import sys

from workers.settings import simulated_device

BACKEND_MODULES = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}


class BackendUnavailable(RuntimeError):
    """The Keras backend a trial asked for is not installed on this worker."""


def expected_kind(resources: dict) -> str:
    """The device kind a resource request asks for: tpu if it asks for TPUs, gpu for GPUs, else cpu."""
    if resources.get("TPU", 0):
        return "tpu"
    if resources.get("GPU", 0):
        return "gpu"
    return "cpu"


def restrict_devices(resources: dict) -> None:
    """Before any framework import: a trial that asked for no GPU or TPU must not touch one."""
    if expected_kind(resources) == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
        os.environ["JAX_PLATFORMS"] = "cpu"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def activate_backend(name: str):
    """Make ``name`` the Keras backend of this process and return the ``keras`` module.

    Keras reads KERAS_BACKEND at first import; a process that already imported Keras with another backend
    (a reused Ray actor) switches with ``keras.config.set_backend``.
    """
    import importlib.util

    if name not in BACKEND_MODULES:
        raise BackendUnavailable(f"framework '{name}' is not one of {', '.join(BACKEND_MODULES)}")
    if importlib.util.find_spec(BACKEND_MODULES[name]) is None:
        raise BackendUnavailable(
            f"framework '{name}' is not installed on this worker (pip install '.[{'jax' if name == 'jax' else name}]')"
        )
    if "keras" not in sys.modules:
        os.environ["KERAS_BACKEND"] = name
        import keras

        return keras
    import keras

    if keras.backend.backend() != name:
        keras.config.set_backend(name)
        import keras  # noqa: F811  (set_backend reloads the package)
    return keras


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def detect_device(backend: str) -> dict:
    """What the backend will actually compute on: kind (cpu/gpu/tpu), name, count."""
    kind, names = "cpu", []
    try:
        if backend == "tensorflow":
            import tensorflow as tf

            gpus = tf.config.list_logical_devices("GPU")
            tpus = tf.config.list_logical_devices("TPU")
            if tpus:
                kind, names = "tpu", [d.name for d in tpus]
            elif gpus:
                kind = "gpu"
                names = [tf.config.experimental.get_device_details(g).get("device_name", g.name)
                         for g in tf.config.list_physical_devices("GPU")]
        elif backend == "jax":
            import jax

            devices = jax.devices()
            if devices and devices[0].platform in ("gpu", "tpu"):
                kind, names = devices[0].platform, [d.device_kind for d in devices]
        elif backend == "torch":
            import torch

            if torch.cuda.is_available():
                kind = "gpu"
                names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    except Exception as err:  # detection must never fail a trial
        return {"kind": "unknown", "name": f"detection failed: {err}", "count": 0}
    if kind == "cpu":
        return {"kind": "cpu", "name": _cpu_model(), "count": os.cpu_count() or 1}
    return {"kind": kind, "name": names[0] if names else kind, "count": len(names)}


def device_record(node_type: str, backend: str, resources: dict | None = None) -> dict:
    """Requested node type next to the device that really ran, with a loud mismatch flag.

    The expected device kind comes from the trial's resource request, so custom node type names
    (``a100``, ``cpu-large``) are judged by what they ask for."""
    used = detect_device(backend)
    want = expected_kind(resources) if resources is not None else node_type
    simulated = simulated_device()
    return {
        "requested": node_type,
        "expected_kind": want,
        "used": used,
        "backend": backend,
        "simulated": simulated or None,
        "mismatch": used["kind"] != want,
        "host": platform.node(),
    }

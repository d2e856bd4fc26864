"""Keras backend selection per trial, device placement, and a record of the device that really ran."""
from __future__ import annotations

import os
import platform
import sys

from workers.error_text import last_line
from workers.settings import simulated_device

BACKEND_MODULES = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}


# ``framework: auto``: the installed backends tried, in order, for each device kind; the first that sees the
# kind wins. Only JAX drives TPUs here; PyTorch trains on one device, so it is never chosen for several.
AUTO_BACKENDS = {"gpu": ("jax", "tensorflow", "torch"), "tpu": ("jax",), "cpu": ("tensorflow", "jax", "torch")}
SINGLE_DEVICE_BACKENDS = ("torch",)
INSTALL_HINT = {"gpu": "pip install '.[gpu]' (CUDA build of JAX) on the node, with NVIDIA drivers",
                "tpu": "pip install '.[tpu]' (JAX for TPU) on the TPU VM", "cpu": "pip install '.[jax]'"}


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
        return {"kind": "unknown", "name": f"detection failed: {err}", "count": 0, "names": []}
    if kind == "cpu":
        return {"kind": "cpu", "name": _cpu_model(), "count": os.cpu_count() or 1, "names": [_cpu_model()]}
    return {"kind": kind, "name": names[0] if names else kind, "count": len(names), "names": names}


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


def installed(backend: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(BACKEND_MODULES[backend]) is not None


def resolve_backend(framework: str, kind: str, devices: int = 1) -> str:
    """``framework`` itself, or for ``auto`` the first installed backend (``AUTO_BACKENDS`` order) that sees
    a ``kind`` device on this node; when none does, the first installed one (the device check then says so)."""
    if framework != "auto":
        return framework
    candidates = [b for b in AUTO_BACKENDS.get(kind, AUTO_BACKENDS["cpu"])
                  if installed(b) and not (devices > 1 and b in SINGLE_DEVICE_BACKENDS)]
    if not candidates:
        raise BackendUnavailable(f"framework 'auto': no installed Keras backend can drive a {kind} "
                                 f"({INSTALL_HINT.get(kind, INSTALL_HINT['cpu'])})")
    return next((b for b in candidates if detect_device(b)["kind"] == kind), candidates[0])


def device_problem(device: dict, allow_mismatch: bool = False) -> str | None:
    """Why a trial must not train on the device it got (one line), or None: a wrong device kind is an error
    unless the spec allows it or the node simulates its accelerator (the local test cluster)."""
    if not device["mismatch"] or device["simulated"] or allow_mismatch:
        return None
    want, used, backend = device["expected_kind"], device["used"], device["backend"]
    if want == "tpu" and backend != "jax":
        return (f"TPU trials run on the jax backend; framework '{backend}' cannot drive a TPU here "
                "(use frameworks: [auto] or [jax])")
    return (f"node type '{device['requested']}' asks for a {want} but backend '{backend}' computes on "
            f"{used['kind']} ({used['name']}) on {device['host']}; {INSTALL_HINT.get(want, '')}, or set "
            "execution.allow_device_mismatch: true to train anyway")


def probe_devices(node_type: str, framework: str, resources: dict, allow_mismatch: bool = False) -> dict:
    """Pre-flight check of one node, run where a trial of ``resources`` would run (no Ray needed): does the
    backend import, which device kind does it see, how many, their names, and what is wrong (``error``)."""
    from workers.distribution import accelerator_count

    restrict_devices(resources)
    want, wanted = expected_kind(resources), accelerator_count(resources)
    out = {"node_type": node_type, "framework": framework, "backend": None, "ok": False, "expected_kind": want, "kind": None, "count": 0,
           "names": [], "simulated": os.environ.get("SKINLESION_SIMULATED_DEVICE") or None, "host": platform.node(),
           "error": None}
    try:
        backend = resolve_backend(framework, want, wanted)
        if not installed(backend):
            raise BackendUnavailable(f"framework '{backend}' is not installed on this node")
        __import__(BACKEND_MODULES[backend])
    except Exception as err:  # an import that fails is the finding, not a crash
        return out | {"error": last_line(err, type(err).__name__)}
    seen = detect_device(backend)
    out.update(backend=backend, kind=seen["kind"], count=seen["count"], names=seen.get("names", []))
    record = {"requested": node_type, "expected_kind": want, "used": seen, "backend": backend,
              "simulated": out["simulated"], "mismatch": seen["kind"] != want, "host": out["host"]}
    out["error"] = device_problem(record, allow_mismatch)
    if not out["error"] and not out["simulated"] and want != "cpu" and seen["kind"] == want and seen["count"] < wanted:
        out["error"] = f"backend '{backend}' sees {seen['count']} {want}(s) but the node type asks for {wanted}"
    out["ok"] = out["error"] is None
    return out

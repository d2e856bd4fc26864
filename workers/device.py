"""Keras backend selection per trial, device placement, and a record of the device that really ran."""
from __future__ import annotations

import os
import platform
import sys

from workers.accelerators import ACCELERATORS, CPU, accelerator, device_count, kind_of, visible_kind
from workers.error_text import last_line
from workers.settings import simulated_device

BACKEND_MODULES = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}

# ``framework: auto`` tries the installed backends of the device kind's entry (``workers/accelerators.py``) in
# order; the first that sees the kind wins. PyTorch trains on one device, so it is never chosen for several.
SINGLE_DEVICE_BACKENDS = ("torch",)
NOT_PROBED = "not probed"  # the status of a probe that could not run (no node of its type)


class BackendUnavailable(RuntimeError):
    """The Keras backend a trial asked for is not installed on this worker."""


def expected_kind(resources: dict) -> str:
    """The device kind a resource request asks for (``workers.accelerators.kind_of``)."""
    return kind_of(resources)


def restrict_devices(resources: dict) -> None:
    """Before any framework import: set the kind's ``isolation_env`` (a cpu trial must not touch an accelerator)."""
    os.environ.update(accelerator(kind_of(resources)).isolation_env)
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
    """What the backend will actually compute on: kind (a registered device kind), name, count."""
    try:
        kind, names = visible_kind(backend)
    except Exception as err:  # detection must never fail a trial
        return {"kind": "unknown", "name": f"detection failed: {err}", "count": 0, "names": []}
    if kind == CPU:
        return {"kind": CPU, "name": _cpu_model(), "count": os.cpu_count() or 1, "names": [_cpu_model()]}
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
    """``framework`` itself, or for ``auto`` the first installed backend (the kind's ``backends`` order) that
    sees a ``kind`` device on this node; when none does, the first installed one (the device check then says so)."""
    if framework != "auto":
        return framework
    entry = accelerator(kind)
    candidates = [b for b in entry.backends if installed(b) and not (devices > 1 and b in SINGLE_DEVICE_BACKENDS)]
    if not candidates:
        raise BackendUnavailable(f"framework 'auto': no installed Keras backend can drive a {kind} "
                                 f"({entry.install_hint})")
    return next((b for b in candidates if detect_device(b)["kind"] == kind), candidates[0])


def device_problem(device: dict, allow_mismatch: bool = False) -> str | None:
    """Why a trial must not train on the device it got (one line), or None: a wrong device kind is an error
    unless the spec allows it or the node simulates its accelerator (the local test cluster)."""
    if not device["mismatch"] or device["simulated"] or allow_mismatch:
        return None
    want, used, backend = device["expected_kind"], device["used"], device["backend"]
    entry = ACCELERATORS.get(want) if want in ACCELERATORS else None
    if entry is not None and backend not in entry.backends:
        return (f"{want.upper()} trials run on the {' or '.join(entry.backends)} backend; framework '{backend}' "
                f"cannot drive a {want.upper()} here (use frameworks: [auto] or [{entry.backends[0]}])")
    return (f"node type '{device['requested']}' asks for a {want} but backend '{backend}' computes on "
            f"{used['kind']} ({used['name']}) on {device['host']}; {entry.install_hint if entry else ''}, or set "
            "execution.allow_device_mismatch: true to train anyway")


def probe_devices(node_type: str, framework: str, resources: dict, allow_mismatch: bool = False) -> dict:
    """Pre-flight check of one node, run where a trial of ``resources`` would run (no Ray needed): does the
    backend import, which device kind does it see, how many, their names, and what is wrong (``error``)."""
    restrict_devices(resources)
    want, wanted = expected_kind(resources), device_count(resources)
    out = {"node_type": node_type, "framework": framework, "backend": None, "ok": False, "expected_kind": want, "kind": None, "count": 0,
           "names": [], "simulated": simulated_device(), "host": platform.node(),
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
    if not out["error"] and not out["simulated"] and want != CPU and seen["kind"] == want and seen["count"] < wanted:
        out["error"] = f"backend '{backend}' sees {seen['count']} {want}(s) but the node type asks for {wanted}"
    out["ok"] = out["error"] is None
    return out


def probe_summary(probe: dict) -> str:
    """One line per probe, for the console and the report header."""
    where = f"{probe['node_type']} / {probe['framework']}"
    if probe.get("status") == NOT_PROBED:
        return f"{where}: not probed ({probe.get('note')})"
    if not probe.get("ok"):
        return f"{where}: FAILED - {probe.get('error')}"
    names = ", ".join(dict.fromkeys(probe.get("names") or [])) or "?"
    simulated = f" (simulated {probe['simulated']})" if probe.get("simulated") else ""
    return f"{where}: ok - {probe.get('backend')} sees {probe.get('count')} {probe.get('kind')}: {names}{simulated}"

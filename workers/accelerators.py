"""Device kinds: one entry per kind (cpu, gpu, tpu) holding every fact the product needs about it.

An entry names its Ray resource, the variable that selects visible devices, how each Keras backend detects it,
the backends that can drive it (in the order ``framework: auto`` tries them), the install hint, its default
execution settings (precision, XLA, steps per execution), the built-in node type derived from it and the key of
its figures in the plan's reference file. ``kind_of(resources)`` is the one precedence order deriving a kind
from a resource request: the accelerator kinds in registration order, then cpu.

Adding a kind (AMD GPUs, Trainium's ``neuron_cores``) is one ``register_accelerator(...)`` call plus the infra
files that start such nodes. Nothing here imports a framework until a detection runs.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from workers.registry import Registry

Detector = Callable[[], list[str]]  # names of the devices of this kind a backend sees (empty: none)


@dataclass(frozen=True)
class Accelerator:
    """One device kind. ``resource``: the Ray resource a node offers and a trial asks for (None for cpu,
    which every trial gets); ``visibility_env``: the variable Ray sets to the devices a worker may use;
    ``isolation_env``: set before any framework import in a trial of this kind (cpu trials hide accelerators);
    ``detect``: per backend, the names of this kind's devices it sees; ``backends``: those that can drive the
    kind, in ``auto`` order; ``mixed_precision``: per backend, the Keras policy ``mixed_precision: auto``
    picks (float32 otherwise); ``jit_backends``: backends that XLA-compile here (others: Keras's "auto");
    ``node_type``: resources and priced instance (``orchestrator/data/prices.json``) of the built-in node type
    named after the kind (None: no built-in one); ``reference_key``: the ``device`` of its entries in the reference throughput."""

    name: str
    resource: str | None
    install_hint: str
    backends: tuple[str, ...]
    detect: dict[str, Detector] = field(default_factory=dict)
    visibility_env: str | None = None
    isolation_env: dict[str, str] = field(default_factory=dict)
    mixed_precision: dict[str, str] = field(default_factory=dict)
    jit_backends: tuple[str, ...] = ()
    steps_per_execution: int = 1
    node_type: dict | None = None
    reference_key: str | None = None

    @property
    def reference(self) -> str:
        return self.reference_key or self.name


ACCELERATORS: Registry[Accelerator] = Registry("device kind")
CPU = "cpu"


def register_accelerator(entry: Accelerator) -> Accelerator:
    """Register a device kind (a name registered already is refused)."""
    if (entry.resource is None) != (entry.name == CPU):
        raise ValueError(f"device kind '{entry.name}': only cpu has no Ray resource")
    return ACCELERATORS.add(entry.name, entry)


def accelerator(name: str) -> Accelerator:
    """The entry of device kind ``name`` (``KeyError``, one line listing the kinds, when unknown)."""
    return ACCELERATORS.get(name)


def accelerator_kinds() -> list[Accelerator]:
    """The kinds with a Ray resource, in the precedence order ``kind_of`` reads them."""
    return [a for a in ACCELERATORS.entries() if a.resource is not None]


def kind_of(resources: dict) -> str:
    """The device kind a resource request asks for: the first accelerator kind whose resource it asks for
    (registration order: tpu, gpu, then kinds registered later), else cpu."""
    for entry in accelerator_kinds():
        if float(resources.get(entry.resource, 0) or 0) > 0:
            return entry.name
    return CPU


def device_count(resources: dict) -> int:
    """How many devices a trial with ``resources`` computes on: its whole accelerators of its kind, else 1."""
    kind = accelerator(kind_of(resources))
    if kind.resource is None:
        return 1
    return max(1, int(resources[kind.resource]))


def visible_kind(backend: str) -> tuple[str, list[str]]:
    """(kind, device names) of the first accelerator kind ``backend`` sees devices of, else (cpu, [])."""
    for entry in accelerator_kinds():
        detector = entry.detect.get(backend)
        names = detector() if detector else []
        if names:
            return entry.name, names
    return CPU, []


# --------------------------------------------------------------------------------------------- built-in kinds
def _tf_devices(kind: str) -> Detector:
    def detect() -> list[str]:
        import tensorflow as tf

        if kind == "GPU":
            if not tf.config.list_logical_devices("GPU"):
                return []
            return [tf.config.experimental.get_device_details(g).get("device_name", g.name)
                    for g in tf.config.list_physical_devices("GPU")]
        return [d.name for d in tf.config.list_logical_devices(kind)]

    return detect


def _jax_devices(platform: str) -> Detector:
    def detect() -> list[str]:
        import jax

        devices = jax.devices()
        return [d.device_kind for d in devices] if devices and devices[0].platform == platform else []

    return detect


def _torch_cuda() -> list[str]:
    import torch

    if not torch.cuda.is_available():
        return []
    return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]


# Registration order is the precedence order of ``kind_of``: TPU before GPU.
register_accelerator(Accelerator(
    name="tpu", resource="TPU", visibility_env="TPU_VISIBLE_CHIPS",
    install_hint="pip install '.[tpu]' (JAX for TPU) on the TPU VM",
    backends=("jax",), detect={"tensorflow": _tf_devices("TPU"), "jax": _jax_devices("tpu")},
    mixed_precision={"jax": "mixed_bfloat16"}, jit_backends=("jax", "tensorflow"),
    # TPUs pay a host round trip per execution, so many steps run per call there.
    steps_per_execution=32,
    node_type={"resources": {"CPU": 1, "TPU": 1}, "instance": "v5litepod-8"}))
register_accelerator(Accelerator(
    name="gpu", resource="GPU", visibility_env="CUDA_VISIBLE_DEVICES",
    install_hint="pip install '.[gpu]' (CUDA build of JAX) on the node, with NVIDIA drivers",
    backends=("jax", "tensorflow", "torch"),
    detect={"tensorflow": _tf_devices("GPU"), "jax": _jax_devices("gpu"), "torch": _torch_cuda},
    mixed_precision={"jax": "mixed_bfloat16"}, jit_backends=("jax", "tensorflow"),
    node_type={"resources": {"CPU": 1, "GPU": 1}, "instance": "n1-standard-8+nvidia-tesla-t4"}))
register_accelerator(Accelerator(
    name="cpu", resource=None, install_hint="pip install '.[jax]'",
    backends=("tensorflow", "jax", "torch"),
    # A trial that asked for no accelerator must not touch one.
    isolation_env={"CUDA_VISIBLE_DEVICES": "", "JAX_PLATFORMS": "cpu"},
    jit_backends=("jax",),
    node_type={"resources": {"CPU": 1}, "instance": "n2-standard-8"}))

"""One software stack per study: the backend, precision, XLA setting and steps per execution every node type of a
study computes with, so that a hardware comparison changes the hardware alone (pure functions of the spec).

The study's stack comes from ``training`` and ``grid.frameworks``; where they say ``auto`` / leave a setting
unset, ONE value is chosen for the whole study from the device kinds (``workers/accelerators.py``) of the node
types it crosses:

* backend: the first backend (in the first accelerator kind's ``auto`` order, else the cpu order) that every
  kind can drive (cpu + gpu + tpu: jax; cpu alone: tensorflow);
* precision: mixed bfloat16 when every kind's entry picks it for that backend (gpu + tpu on jax), else float32;
* XLA: on when the backend XLA-compiles on every kind (jax everywhere; tensorflow on accelerators only);
* steps per execution: the kinds' own value when they all agree (32 in an all-TPU study), else 1.

A node type gets its own stack only explicitly (its ``framework``, ``mixed_precision``, ``jit_compile`` or
``steps_per_execution``); its trials then differ from the others in the stack too, which the report says.
The global batch (``training.batch_size``) is the same for every node type; devices used and per-device batch
follow from the node type's resources.
"""
from __future__ import annotations

from orchestrator.spec.schema import ExperimentSpec, NodeTypeSpec
from workers.accelerators import CPU, Accelerator, accelerator, device_count, kind_of

STACK_FIELDS = ("framework", "mixed_precision", "jit_compile", "steps_per_execution")


def _kinds(spec: ExperimentSpec, node_types: list[str]) -> list[Accelerator]:
    types = spec.resolved_node_types()
    return [accelerator(kind_of(types[n].resources)) for n in dict.fromkeys(node_types)]


def study_backend(spec: ExperimentSpec, node_types: list[str]) -> str:
    """The one backend of ``framework: auto`` for node types ``node_types`` (see the module docstring)."""
    kinds = _kinds(spec, node_types)
    preference = next((k.backends for k in kinds if k.resource is not None), accelerator(CPU).backends)
    common = [b for b in preference if all(b in k.backends for k in kinds)]
    return common[0] if common else preference[0]


def explicit_stack(nt: NodeTypeSpec) -> dict:
    """What a node type sets of its own stack (empty: it follows the study's)."""
    return {f: getattr(nt, f) for f in STACK_FIELDS if getattr(nt, f, None) is not None}


def resolve_stack(spec: ExperimentSpec, node_type: str, framework: str, node_types: list[str] | None = None,
                  own_stack: bool = True) -> dict:
    """The stack of ``node_type``'s trials for the grid's ``framework`` value: framework, mixed_precision
    (``off`` | ``bfloat16``), jit_compile (bool) and steps_per_execution (int), each the study's unless the node
    type sets its own (``own_stack=False``: the study's alone). ``node_types``: the node types the study crosses
    (default: the grid's)."""
    node_types = list(node_types or spec.grid.node_types)
    own = explicit_stack(spec.resolved_node_types()[node_type]) if own_stack else {}
    kinds = _kinds(spec, node_types)
    # a node type's own framework wins (its own ``auto`` is resolved on the node, workers.device.resolve_backend)
    backend = own.get("framework") or (framework if framework != "auto" else study_backend(spec, node_types))
    t = spec.training
    precision = t.mixed_precision if t.mixed_precision != "auto" else (
        "bfloat16" if all(k.mixed_precision.get(backend) == "mixed_bfloat16" for k in kinds) else "off")
    jit = t.jit_compile if t.jit_compile is not None else all(backend in k.jit_backends for k in kinds)
    agreed = {k.steps_per_execution for k in kinds}
    steps = t.steps_per_execution or (agreed.pop() if len(agreed) == 1 else 1)
    stack = {"framework": backend, "mixed_precision": precision, "jit_compile": bool(jit),
             "steps_per_execution": int(steps)}
    return stack | {k: v for k, v in own.items() if k != "framework"} | {"framework": backend}


def stack_text(stack: dict, nt: NodeTypeSpec, global_batch: int) -> str:
    """``jax, float32, XLA, 4 devices x 8 per device (global 32), 1 step/execution`` for the dry run."""
    devices = device_count(nt.resources)
    precision = "mixed_bfloat16" if stack["mixed_precision"] == "bfloat16" else "float32"
    return (f"{stack['framework']}, {precision}, {'XLA' if stack['jit_compile'] else 'no XLA'}, "
            f"{devices} device{'s' if devices > 1 else ''} x {global_batch // devices} per device "
            f"(global batch {global_batch}), {stack['steps_per_execution']} steps/execution")


def stack_lines(spec: ExperimentSpec) -> list[str]:
    """One line per node type and grid framework: the stack its trials compute with, and which node types set
    their own (then their trials differ from the others in two factors)."""
    types = spec.resolved_node_types()
    lines = []
    for framework in spec.grid.frameworks:
        for name in dict.fromkeys(spec.grid.node_types):
            stack = resolve_stack(spec, name, framework)
            study = resolve_stack(spec, name, framework, own_stack=False)
            own = {k: stack[k] for k in stack if stack[k] != study[k]}
            lines.append(f"{name}: {stack_text(stack, types[name], spec.training.batch_size)}"
                         + (f"  [own stack: {', '.join(f'{k}={v}' for k, v in own.items())}; its trials differ "
                            "from the others in the stack as well as the hardware]" if own else ""))
    return lines

"""One software stack per study: the backend, precision, XLA setting and steps per execution every node type of a
study computes with, so that a hardware comparison changes the hardware alone (pure functions of the spec).

The study's stack comes from ``training`` and ``grid.frameworks``; where they say ``auto`` / leave a setting
unset, ONE value is chosen for the whole study from the node types it crosses:

* backend: the first backend (in the first accelerator node type's ``auto`` order, else the cpu order) that
  every node type of the grid can drive (cpu + gpu + tpu: jax);
* precision: mixed bfloat16 when the backend is jax and every node type computes on an accelerator, else float32;
* XLA: on with jax; with tensorflow only when every node type is an accelerator; off with torch;
* steps per execution: 32 when every node type is a TPU (a host round trip per call), else 1.

A node type gets its own stack only explicitly (its ``framework``, ``mixed_precision``, ``jit_compile`` or
``steps_per_execution``); its trials then differ from the others in the stack too, which the report says.
The global batch (``training.batch_size``) is the same for every node type; devices used and per-device batch
follow from the node type's resources.
"""
from __future__ import annotations

from orchestrator.spec.schema import ExperimentSpec, NodeTypeSpec
from workers.device import AUTO_BACKENDS, expected_kind
from workers.distribution import accelerator_count

STACK_FIELDS = ("framework", "mixed_precision", "jit_compile", "steps_per_execution")
TPU_STEPS_PER_EXECUTION = 32


def _kinds(spec: ExperimentSpec, node_types: list[str]) -> list[str]:
    types = spec.resolved_node_types()
    return [expected_kind(types[n].resources) for n in dict.fromkeys(node_types)]


def study_backend(spec: ExperimentSpec, node_types: list[str]) -> str:
    """The one backend of ``framework: auto`` for node types ``node_types`` (see the module docstring)."""
    kinds = _kinds(spec, node_types)
    preference = next((AUTO_BACKENDS[k] for k in kinds if k != "cpu"), AUTO_BACKENDS["cpu"])
    common = [b for b in preference if all(b in AUTO_BACKENDS.get(k, AUTO_BACKENDS["cpu"]) for k in kinds)]
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
    accelerators_only = all(k != "cpu" for k in kinds)
    # a node type's own framework wins (its own ``auto`` is resolved on the node, workers.device.resolve_backend)
    backend = own.get("framework") or (framework if framework != "auto" else study_backend(spec, node_types))
    t = spec.training
    precision = t.mixed_precision if t.mixed_precision != "auto" else (
        "bfloat16" if backend == "jax" and accelerators_only else "off")
    jit = t.jit_compile if t.jit_compile is not None else (
        backend == "jax" or (backend == "tensorflow" and accelerators_only))
    steps = t.steps_per_execution or (TPU_STEPS_PER_EXECUTION if all(k == "tpu" for k in kinds) else 1)
    stack = {"framework": backend, "mixed_precision": precision, "jit_compile": bool(jit),
             "steps_per_execution": int(steps)}
    return stack | {k: v for k, v in own.items() if k != "framework"} | {"framework": backend}


def stack_text(stack: dict, nt: NodeTypeSpec, global_batch: int) -> str:
    """``jax, float32, XLA, 4 devices x 8 per device (global 32), 1 step/execution`` for the dry run."""
    devices = accelerator_count(nt.resources)
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

"""Node type -> Ray resource request, and feasibility of requests against a cluster's nodes."""
from __future__ import annotations

from dataclasses import dataclass

STANDARD_RESOURCES = ("CPU", "GPU", "TPU", "memory")


@dataclass(frozen=True)
class NodeCapacity:
    """What one node (or one autoscaler node type) offers: total resources and a label."""

    name: str
    resources: dict[str, float]


def resource_request(resources: dict[str, float]) -> dict:
    """Split a resource mapping into the ``{"cpu", "gpu", <custom>...}`` form Tune's ``with_resources`` takes."""
    request: dict = {"cpu": float(resources.get("CPU", 1)), "gpu": float(resources.get("GPU", 0))}
    for key, value in resources.items():
        if key not in ("CPU", "GPU"):
            request[key] = float(value)
    return request


def infeasibility_reason(request: dict[str, float], nodes: list[NodeCapacity]) -> str | None:
    """None when at least one node can ever satisfy ``request``; otherwise why not, in one sentence."""
    if not nodes:
        return "the cluster reports no nodes"
    wanted = {k: v for k, v in request.items() if v > 0}
    for node in nodes:
        if all(node.resources.get(k, 0) >= v for k, v in wanted.items()):
            return None
    missing = sorted({k for k, v in wanted.items() if not any(n.resources.get(k, 0) >= v for n in nodes)})
    if missing:
        have = ", ".join(f"{k}={max((n.resources.get(k, 0) for n in nodes), default=0):g}" for k in missing)
        return f"no node offers {', '.join(f'{k}={wanted[k]:g}' for k in missing)} (largest on this cluster: {have})"
    return f"no single node offers all of {wanted} at once"


def cluster_nodes() -> list[NodeCapacity]:
    """Live nodes of the connected Ray cluster (requires ``ray.init`` first)."""
    import ray

    return [
        NodeCapacity(name=n.get("NodeManagerAddress", "?") + ":" + n["NodeID"][:8], resources=dict(n.get("Resources", {})))
        for n in ray.nodes()
        if n.get("Alive")
    ]


def autoscaler_node_types(cluster_config: dict) -> list[NodeCapacity]:
    """Node types an autoscaler may launch, from a ``ray up`` cluster config's ``available_node_types``."""
    out = []
    for name, nt in (cluster_config.get("available_node_types") or {}).items():
        if nt.get("max_workers", 1) == 0 and name != cluster_config.get("head_node_type"):
            continue
        out.append(NodeCapacity(name=name, resources={k: float(v) for k, v in (nt.get("resources") or {}).items()}))
    return out

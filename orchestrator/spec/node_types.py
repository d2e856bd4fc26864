"""Node type -> Ray resource request, and feasibility of requests against a cluster's nodes."""
from __future__ import annotations

from dataclasses import dataclass


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


def autoscaler_node_types(cluster_config: dict) -> list[NodeCapacity]:
    """Node types an autoscaler may launch, from a ``ray up`` cluster config's ``available_node_types``."""
    out = []
    for name, nt in (cluster_config.get("available_node_types") or {}).items():
        if nt.get("max_workers", 1) == 0 and name != cluster_config.get("head_node_type"):
            continue
        out.append(NodeCapacity(name=name, resources={k: float(v) for k, v in (nt.get("resources") or {}).items()}))
    return out


# --------------------------------------------------------------------------------------------------------------
# Node kinds: pinning trials to their node type, exclusive nodes, and the autoscaler's node types.
#
# Every node of a heterogeneous cluster (ray-cluster.yaml, infra/kuberay-raycluster.yaml, infra/local_cluster.sh)
# advertises ONE unit of a custom resource naming its kind: ``node_kind_cpu``, ``node_kind_gpu``,
# ``node_kind_tpu`` (the head: ``node_kind_head``). A trial of node type T then asks for
#   * a tiny share of ``node_kind_T`` (``pinned_request``): it can only land on a T node, so a ``cpu`` trial is
#     never timed on a GPU or TPU host's CPU, while many trials still share one node (CPUs limit them);
#   * the whole unit (``exclusive_request``, for ``execution.exclusive_nodes: true``): at most one trial holds a
#     node at a time, so two trials never share a node (fair timings, no noisy neighbour).
# On a cluster that advertises no node kinds (the embedded local Ray) requests stay as they are.
# --------------------------------------------------------------------------------------------------------------
NODE_KIND_PREFIX = "node_kind_"
PIN_SHARE = 0.001  # Ray keeps 4 decimals of a resource; 1/1000 of a node kind lets 1000 trials share a node


def node_kind_resource(node_type: str) -> str:
    """The custom resource a node of ``node_type`` advertises once: ``node_kind_<type>``."""
    return f"{NODE_KIND_PREFIX}{node_type}"


def exclusive_request(resources: dict[str, float], node_type: str) -> dict[str, float]:
    """``resources`` plus the whole ``node_kind_<type>`` unit: one trial per node at a time."""
    out = {k: float(v) for k, v in resources.items()}
    out[node_kind_resource(node_type)] = 1.0
    return out


def pinned_request(resources: dict[str, float], node_type: str, share: float = PIN_SHARE) -> dict[str, float]:
    """``resources`` plus a small share of ``node_kind_<type>``: only nodes of that kind qualify."""
    out = {k: float(v) for k, v in resources.items()}
    out[node_kind_resource(node_type)] = max(out.get(node_kind_resource(node_type), 0.0), float(share))
    return out


def advertised_node_kinds(nodes: list[NodeCapacity]) -> set[str]:
    """Node types whose ``node_kind_<type>`` resource some node (or autoscaler node type) offers."""
    return {k[len(NODE_KIND_PREFIX):] for n in nodes for k, v in n.resources.items()
            if k.startswith(NODE_KIND_PREFIX) and v > 0}


def placement_request(resources: dict[str, float], node_type: str, nodes: list[NodeCapacity], *,
                      exclusive: bool = False) -> dict[str, float]:
    """What a trial of ``node_type`` should request on a cluster with ``nodes`` (live nodes + autoscaler types).

    If the cluster labels ``node_type``'s nodes with ``node_kind_<type>``: the whole unit when ``exclusive``,
    a small share otherwise. If it does not, ``resources`` unchanged (exclusive cannot be enforced there;
    ``exclusive_unenforceable`` names such node types so the driver can say so).
    """
    if node_type in advertised_node_kinds(nodes):
        return exclusive_request(resources, node_type) if exclusive else pinned_request(resources, node_type)
    return {k: float(v) for k, v in resources.items()}


def exclusive_unenforceable(node_types: list[str], nodes: list[NodeCapacity]) -> list[str]:
    """Node types for which ``exclusive_nodes: true`` cannot be enforced (no node advertises their kind)."""
    kinds = advertised_node_kinds(nodes)
    return sorted({t for t in node_types if t not in kinds})


def load_cluster_config(path: str) -> dict:
    """A ``ray up`` cluster config (YAML), or ``ValueError`` with one line saying what is wrong."""
    import yaml

    try:
        with open(path) as fh:
            data = yaml.safe_load(fh)
    except OSError as err:
        raise ValueError(f"{path}: cannot read cluster config ({err.strerror})") from None
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: invalid YAML ({getattr(err, 'problem', None) or err})") from None
    if not isinstance(data, dict) or not isinstance(data.get("available_node_types"), dict):
        raise ValueError(f"{path}: not a Ray cluster config (no 'available_node_types' mapping)")
    return data

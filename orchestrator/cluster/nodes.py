"""Node queries on the connected Ray cluster: live nodes, and the node types its autoscaler may still launch
(from ``--cluster-config``, the head node's bootstrap config, or what the autoscaler reported to the GCS).
The pure resource arithmetic over the answers is in ``orchestrator/spec/node_types.py``."""
from __future__ import annotations

from orchestrator.spec.node_types import NodeCapacity, autoscaler_node_types, load_cluster_config


def cluster_nodes() -> list[NodeCapacity]:
    """Live nodes of the connected Ray cluster (requires ``ray.init`` first)."""
    import ray

    return [
        NodeCapacity(name=n.get("NodeManagerAddress", "?") + ":" + n["NodeID"][:8], resources=dict(n.get("Resources", {})))
        for n in ray.nodes()
        if n.get("Alive")
    ]


def only_node() -> tuple[str, str] | None:
    """(node id, address) of the connected Ray's only live node; None when it has several."""
    import ray

    alive = [n for n in ray.nodes() if n.get("Alive")]
    return (alive[0]["NodeID"], alive[0]["NodeManagerAddress"]) if len(alive) == 1 else None


BOOTSTRAP_CONFIG = "~/ray_bootstrap_config.yaml"  # where `ray up` leaves the cluster config on the head node


def head_cluster_config() -> dict | None:
    """The cluster config the autoscaler runs with, when this process is on a ``ray up`` head node.

    ``SKINLESION_CLUSTER_CONFIG`` names a file explicitly; otherwise ``~/ray_bootstrap_config.yaml`` is used
    when it exists. None elsewhere (laptops, KubeRay, the embedded local Ray).
    """
    import os

    from workers.settings import cluster_config_path

    path = cluster_config_path() or os.path.expanduser(BOOTSTRAP_CONFIG)
    if not os.path.isfile(path):
        return None
    try:
        return load_cluster_config(path)
    except ValueError:
        return None


def gcs_node_groups() -> list[NodeCapacity]:
    """Node groups the cluster's autoscaler reported to the GCS (KubeRay / autoscaler v2), if any.

    Requires ``ray.init``; best effort (an internal Ray API): an empty list when unavailable.
    """
    try:
        import ray._private.state

        config = ray._private.state.state.get_cluster_config()
    except Exception:
        return []
    if not config:
        return []
    return [NodeCapacity(name=f"autoscaler:{g.name}", resources={k: float(v) for k, v in g.resources.items()})
            for g in config.node_group_configs if g.max_count != 0 and g.resources]


def feasibility_nodes(live: list[NodeCapacity], cluster_config: dict | None = None) -> list[NodeCapacity]:
    """Everything a trial may run on: live nodes plus node types the autoscaler can still launch.

    A cluster that scales from zero has no GPU node alive when a study starts; its GPU trials are feasible
    nevertheless (the autoscaler launches a GPU node for them). Autoscaler node types come from
    ``cluster_config`` (``--cluster-config ray-cluster.yaml``), else from the head node's bootstrap config,
    else from what the autoscaler reported to the GCS.
    """
    if cluster_config is not None:
        extra = autoscaler_node_types(cluster_config)
    else:
        boot = head_cluster_config()
        extra = autoscaler_node_types(boot) if boot else gcs_node_groups()
    return list(live) + [NodeCapacity(name=f"autoscaler:{n.name}", resources=n.resources)
                         if not n.name.startswith("autoscaler:") else n for n in extra]

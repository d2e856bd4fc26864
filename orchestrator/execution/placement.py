"""Where trials may run: the cluster's nodes (live and autoscaler types), each trial's Ray bundle, and the
trials no node can ever run."""
from __future__ import annotations

from typing import Callable

from orchestrator.cluster.nodes import cluster_nodes, feasibility_nodes
from orchestrator.spec.node_types import (NodeCapacity, exclusive_unenforceable, infeasibility_reason, placement_request,
                                          resource_request)
from orchestrator.spec.schema import ExperimentSpec
from workers.config import TrialConfig


def check_feasibility(trials: list[TrialConfig], nodes: list[NodeCapacity]) -> dict[str, str]:
    """trial_id -> reason, for every trial no node of the cluster can ever run."""
    out = {}
    for trial in trials:
        reason = infeasibility_reason({k: float(v) for k, v in trial.resources.items()}, nodes)
        if reason:
            out[trial.trial_id] = f"node type '{trial.node_type}' is not runnable on this cluster: {reason}"
    return out


def place_trials(spec: ExperimentSpec, trials: list[TrialConfig], cluster_config: dict | None = None,
                 notify: Callable[[str], None] = print, live: list[NodeCapacity] | None = None):
    """Nodes a trial may run on (live + autoscaler types), trials with their placement requests (node-kind
    pinning, exclusive nodes), and trial_id -> reason for trials no node can ever run. ``live`` nodes are read
    from the connected Ray when not given."""
    nodes = feasibility_nodes(cluster_nodes() if live is None else live, cluster_config)
    from orchestrator.execution.timing import timing_notice

    exclusive = spec.execution.exclusive_nodes or spec.execution.isolated_timing
    placed = [t.replace(resources=placement_request(t.resources, t.node_type, nodes, exclusive=exclusive))
              for t in trials]
    notice = timing_notice(spec, placed, nodes)
    if notice:
        notify(notice)
    if spec.execution.exclusive_nodes:
        for node_type in exclusive_unenforceable(sorted({t.node_type for t in placed}), nodes):
            notify(f"exclusive_nodes: nodes of type '{node_type}' carry no node_kind_{node_type} resource here, "
                   "so its trials may share a node (each record notes how many did)")
    return nodes, placed, check_feasibility(placed, nodes)


def trial_bundle(resources: dict) -> dict:
    """One trial's placement-group bundle ({"CPU": .., "GPU": .., custom: ..}, zero entries dropped)."""
    req = resource_request(resources)
    bundle = {"CPU": req.pop("cpu"), "GPU": req.pop("gpu"), **req}
    return {k: v for k, v in bundle.items() if v}

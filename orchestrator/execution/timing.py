"""Timing isolation: whether trials will share a node while they are timed, and what keeps them apart.

A trial's images/s, epoch times, time to target and cost describe its node type only when nothing else ran on
the node. ``execution.isolated_timing: true`` asks for that: on a cluster whose nodes advertise their kind
(``node_kind_<type>``, see ``spec/node_types.py``) every trial holds its node's whole kind unit (one trial per
node at a time, nodes of a kind still run in parallel); where no node advertises it (the embedded local Ray, one
machine) trials run one at a time. Without it, a study whose nodes can hold several trials at once is told before
it runs that its timings will be shared (and the report marks them).
"""
from __future__ import annotations

import math

from orchestrator.spec.node_types import NodeCapacity, advertised_node_kinds
from orchestrator.spec.schema import ExperimentSpec
from workers.config import TrialConfig


def trials_per_node(resources: dict[str, float], nodes: list[NodeCapacity]) -> int:
    """The most trials asking for ``resources`` that one node of ``nodes`` can run at once."""
    best = 0
    for node in nodes:
        fits = [math.floor(node.resources.get(k, 0) / v + 1e-9) for k, v in resources.items() if v > 0]
        best = max(best, min(fits) if fits else 0)
    return best


def unenforceable(trials: list[TrialConfig], nodes: list[NodeCapacity]) -> list[str]:
    """Node types of ``trials`` whose nodes advertise no ``node_kind_<type>`` (one trial per node unenforceable)."""
    kinds = advertised_node_kinds(nodes)
    return sorted({t.node_type for t in trials} - kinds)


def concurrency_limit(spec: ExperimentSpec, trials: list[TrialConfig], nodes: list[NodeCapacity]) -> int | None:
    """``max_concurrent_trials`` for the Tuner: 1 when isolated timing is asked for but node kinds cannot enforce
    it, else the file's own setting."""
    if spec.execution.isolated_timing and unenforceable(trials, nodes):
        return 1
    return spec.execution.max_concurrent_trials


def timing_notice(spec: ExperimentSpec, trials: list[TrialConfig], nodes: list[NodeCapacity]) -> str | None:
    """What to tell the user before the trials run about shared timings (None when every timing is isolated)."""
    if not trials:
        return None
    if spec.execution.isolated_timing:
        if unenforceable(trials, nodes):
            return ("isolated_timing: no node here advertises its kind (node_kind_<type>), so trials run one at a "
                    "time for timings nobody shares")
        return None
    if spec.execution.exclusive_nodes and not unenforceable(trials, nodes):
        return None
    limit = spec.execution.max_concurrent_trials
    live = [n for n in nodes if not n.name.startswith("autoscaler:")] or nodes
    at_once = max(trials_per_node(t.resources, live) for t in trials)
    if limit is not None:
        at_once = min(at_once, limit)
    if at_once <= 1:
        return None
    where = "this machine" if len(live) == 1 else "a node"
    return (f"Timings will be shared: up to {at_once} trials run at once on {where}, so their images/s, epoch "
            "times, time to target and costs are marked 'shared node' in the report and give no speed-ups; set "
            "execution.isolated_timing: true for hardware figures (one timed trial per node at a time)")

"""What a search optimises, as pure functions of a trial's epochs: validation metrics at its last epoch, and its
time and cost to reach the target quality (``report.target``).

One definition for the whole product: the trial reports these values with every result (``objective_values`` on
the history so far), the searcher is told them, and the search report's Pareto front is computed from the stored
records with the same function. Time to target is the first epoch's ``wall_s`` (seconds since the trial started,
data loading, compilation and validation included) whose target metric reaches the target; cost to target is the
node type's price per hour times that time. A trial that has not reached the target reports ``inf`` for both
(Optuna takes it as the worst value; the report says "not reached").

Timings of trials that shared a node are not hardware figures: ``shared_node_note`` says so next to the front.
"""
from __future__ import annotations

import math

TIME_TO_TARGET = "time_to_target_s"
COST_TO_TARGET = "cost_to_target_usd"


def objective_values(history: list[dict], target: dict, price_per_hour: float | None) -> dict[str, float]:
    """``{time_to_target_s, cost_to_target_usd}`` of a trial's epochs so far (``inf`` while the target is not
    reached; the cost also ``inf`` when the node type has no price)."""
    lower = target.get("mode", "max") == "min"
    seconds = math.inf
    for row in history or []:
        value = row.get(target["metric"])
        if value is None or (isinstance(value, float) and math.isnan(value)) or row.get("wall_s") is None:
            continue
        if (value <= target["value"]) if lower else (value >= target["value"]):
            seconds = float(row["wall_s"])
            break
    cost = seconds * float(price_per_hour) / 3600 if price_per_hour is not None and math.isfinite(seconds) else math.inf
    return {TIME_TO_TARGET: seconds, COST_TO_TARGET: cost}


def trial_objectives(record: dict, objectives: dict[str, str], target: dict) -> dict[str, float | None]:
    """A stored record's value of every objective: validation metrics from its last epoch, time and cost to
    target from its whole history (``inf`` when never reached); None when the trial reported no epoch."""
    history = record.get("history") or []
    if not history:
        return {name: None for name in objectives}
    derived = objective_values(history, target, (record.get("config") or {}).get("price_per_hour"))
    last = history[-1]
    out: dict[str, float | None] = {}
    for name in objectives:
        value = derived[name] if name in derived else last.get(name)
        out[name] = None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)
    return out


def shared_node_note(records: list[dict]) -> str | None:
    """A warning when some timings behind the objectives came from trials that shared their node."""
    shared = [r["trial_id"] for r in records if (r.get("trials_sharing_node") or 0) > 1]
    if not shared:
        return None
    return (f"{len(shared)} trial(s) shared their node with other trials: their time and cost to target are "
            "shared-node timings, not hardware figures, and the Pareto front leaves them out unless no trial with "
            "isolated timings has every objective (set execution.exclusive_nodes or max_concurrent_trials: 1)")

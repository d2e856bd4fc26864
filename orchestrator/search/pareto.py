"""The Pareto front of a multi-objective search (pure): the points no other point dominates.

A point dominates another when it is at least as good in every objective and strictly better in one. ``inf``
(a target never reached) is worse than any finite value of a minimised objective; a point missing an objective
(a trial that reported nothing) is on no front.
"""
from __future__ import annotations

import math


def _oriented(point: dict, objectives: dict[str, str]) -> tuple[float, ...] | None:
    """The point's values with every objective turned into "higher is better"; None when one is missing."""
    out = []
    for name, mode in objectives.items():
        value = point.get(name)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return None
        out.append(float(value) if mode == "max" else -float(value))
    return tuple(out)


def dominates(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return all(x >= y for x, y in zip(a, b)) and any(x > y for x, y in zip(a, b))


def pareto_mask(points: list[dict], objectives: dict[str, str]) -> list[bool]:
    """For every point, whether it is on the Pareto front of ``objectives`` (``{name: "max" | "min"}``)."""
    oriented = [_oriented(p, objectives) for p in points]
    return [v is not None and not any(w is not None and dominates(w, v) for w in oriented) for v in oriented]

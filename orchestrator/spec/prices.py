"""The price table (package data ``orchestrator/data/prices.json``): USD per node-hour of named machine types, each figure with
its provider, region, date and source. A node type names one with ``instance:``; its price then comes from here."""
from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources


@lru_cache(maxsize=1)
def price_table() -> dict[str, dict]:
    """instance name -> {provider, region, date, usd_per_hour, resources, what, source}."""
    text = resources.files("orchestrator").joinpath("data", "prices.json").read_text(encoding="utf-8")
    return json.loads(text)["instances"]


def instance_price(name: str) -> dict:
    """The table's entry for ``name``; ``ValueError`` naming the known instances when it has none."""
    table = price_table()
    if name not in table:
        raise ValueError(f"unknown instance '{name}' (priced: {', '.join(sorted(table))})")
    return table[name]


def price_source(name: str) -> str:
    """``n2-standard-8, gcp us-central1, list price of 2024-06-01`` for one priced instance."""
    p = instance_price(name)
    return f"{name}, {p['provider']} {p['region']}, on-demand list price of {p['date']}"

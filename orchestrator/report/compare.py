"""Two runs side by side: per-setting metrics of run A and run B and their difference."""
from __future__ import annotations

import html

import pandas as pd

from orchestrator.records import RunPaths, read_trial_records
from orchestrator.report.tables import trial_table
from orchestrator.storage import Store

KEY = ["architecture", "epochs", "node_type", "augmentation", "framework"]
METRICS = ["accuracy", "f1_macro", "images_per_s"]


def comparison_table(records_a: list[dict], records_b: list[dict]) -> pd.DataFrame:
    """Mean metrics per setting for both runs, joined on the setting, with B - A differences."""
    def agg(records):
        df = trial_table(records)
        df = df[df["status"] == "completed"]
        return df.groupby(KEY)[METRICS].mean()

    a, b = agg(records_a), agg(records_b)
    joined = a.join(b, how="outer", lsuffix="_a", rsuffix="_b")
    for m in METRICS:
        joined[f"{m}_diff"] = joined[f"{m}_b"] - joined[f"{m}_a"]
    return joined.reset_index()


def write_comparison(store: Store, run_a: RunPaths, run_b: RunPaths) -> str:
    table = comparison_table(read_trial_records(store, run_a), read_trial_records(store, run_b))
    name = f"compare-{run_b.experiment}-{run_b.run_id}"
    title = f"{run_a.experiment}/{run_a.run_id} (A) vs {run_b.experiment}/{run_b.run_id} (B)"
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title></head><body>"
            f"<h1>{html.escape(title)}</h1>"
            + table.to_html(index=False, escape=True, na_rep="", float_format=lambda v: f"{v:.4g}") + "</body></html>")
    store.put_text(run_a.report(f"{name}.csv"), table.to_csv(index=False), "text/csv")
    store.put_text(run_a.report(f"{name}.html"), page, "text/html; charset=utf-8")
    return store.url(run_a.report(f"{name}.html"))

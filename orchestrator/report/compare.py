"""Two runs side by side: per-setting metrics of run A and run B and their B - A differences, as a
self-contained HTML page in the report's style (plus the table as CSV) under run A's ``report/`` folder."""
from __future__ import annotations

import json

import pandas as pd

from orchestrator.run_store import RunPaths, read_trial_records
from orchestrator.report.document import SYNTHETIC_NOTE, dataset_info, fmt_time
from orchestrator.report.render import Figure, Section, Table, Text, render_html
from orchestrator.report.tables import SETTING, trial_table
from workers.storage import Store

KEY = SETTING
METRICS = ["accuracy", "precision_macro", "recall_macro", "f1_macro", "steady_epoch_s", "images_per_s", "cost_usd"]
LOWER_IS_BETTER = {"steady_epoch_s", "cost_usd"}
_DIGITS = {"steady_epoch_s": 3, "images_per_s": 1}
LABELS = {"accuracy": "accuracy", "f1_macro": "F1", "precision_macro": "precision", "recall_macro": "recall",
          "steady_epoch_s": "s/epoch", "images_per_s": "images/s", "cost_usd": "cost USD"}


def comparison_table(records_a: list[dict], records_b: list[dict]) -> pd.DataFrame:
    """Mean metrics per setting of both runs (completed trials), joined on the setting, with ``<metric>_diff``
    = B - A, the trial counts, and ``present`` (``both``, ``A only``, ``B only``)."""
    def agg(records):
        df = trial_table(records)
        df = df[df["status"] == "completed"]
        if df.empty:
            return pd.DataFrame(columns=KEY + ["trials"] + METRICS + ["timing"]).set_index(KEY)
        grouped = df.groupby(KEY, dropna=False)
        out = grouped[METRICS].mean()
        out.insert(0, "trials", grouped.size())
        out["timing"] = grouped["timing"].agg(lambda t: "shared node" if (t == "shared node").any() else "isolated")
        return out

    a, b = agg(records_a), agg(records_b)
    joined = a.add_suffix("_a").join(b.add_suffix("_b"), how="outer")
    for m in METRICS:
        joined[f"{m}_diff"] = joined[f"{m}_b"] - joined[f"{m}_a"]
    joined["present"] = ["both" if pd.notna(x) and pd.notna(y) else "A only" if pd.notna(x) else "B only"
                         for x, y in zip(joined["trials_a"], joined["trials_b"])]
    joined = joined.reset_index()
    for col in ("trials_a", "trials_b"):
        joined[col] = joined[col].astype("Int64")
    cols = KEY + ["present", "trials_a", "trials_b"] + [f"{m}_{s}" for m in METRICS for s in ("a", "b", "diff")] \
        + ["timing_a", "timing_b"]
    return joined[cols]


def _better_class(metric: str):
    def style(value):
        if value is None or pd.isna(value) or value == 0:
            return None
        better = value < 0 if metric in LOWER_IS_BETTER else value > 0
        return "up" if better else "down"
    return style


def _fmt(metric: str, signed: bool = False):
    digits = _DIGITS.get(metric, 4)

    def fmt(value):
        if value is None or pd.isna(value):
            return ""
        if metric == "cost_usd":
            return f"{value:+.3g}" if signed else f"{value:.3g}"
        return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"
    return fmt


def _signed(value: float) -> str:
    return f"{round(float(value), 4) + 0.0:+.4f}"  # no "-0.0000"


def _run_facts(records: list[dict], info: dict, paths: RunPaths) -> dict:
    counts = trial_table(records)["status"].value_counts().sort_index().to_dict() if records else {}
    ds = dataset_info(records, info)
    env = info.get("environment") or {}
    return {
        "experiment": info.get("experiment") or paths.experiment, "run id": info.get("run_id") or paths.run_id,
        "started": fmt_time(info.get("started")), "finished": fmt_time(info.get("finished")),
        "dataset": f"{ds['source']}" + (f" {ds['image_size']}" if ds.get("image_size") else "")
                   + (" (SYNTHETIC)" if ds["synthetic"] else ""),
        "classes": len(ds["class_names"]) or "unknown",
        "trials": ", ".join(f"{v} {k}" for k, v in counts.items()) or "none",
        "nodes": "; ".join(str(n.get("name")) for n in info.get("nodes") or []) or "unknown",
        "git commit": env.get("git_commit") or "unknown",
        "versions": ", ".join(f"{k} {v}" for k, v in (env.get("packages") or {}).items()) or "unknown",
        "_synthetic": ds["synthetic"],
    }


def comparison_page(table: pd.DataFrame, facts_a: dict, facts_b: dict) -> str:
    """The comparison as one self-contained HTML page (pure: no store access)."""
    title = (f"Comparison: {facts_a['experiment']}/{facts_a['run id']} (A) vs "
             f"{facts_b['experiment']}/{facts_b['run id']} (B)")
    lead = []
    if facts_a["_synthetic"] or facts_b["_synthetic"]:
        which = "both runs" if facts_a["_synthetic"] and facts_b["_synthetic"] else \
            ("run A" if facts_a["_synthetic"] else "run B")
        lead.append(Text(f"{which}: {SYNTHETIC_NOTE}", "warn", strong=True))
    if facts_a["dataset"] != facts_b["dataset"] or facts_a["classes"] != facts_b["classes"]:
        lead.append(Text("The runs used different datasets; their metrics are not directly comparable.", "bad"))
    runs = pd.DataFrame([{"": k, "A": facts_a[k], "B": facts_b[k]} for k in facts_a if not k.startswith("_")])
    shared = table[table["present"] == "both"]
    if len(shared):
        wins = int((shared["f1_macro_diff"] > 0).sum())
        summary = (f"{len(shared)} setting(s) ran in both runs; B has the higher mean macro F1 in {wins}, "
                   f"mean change {_signed(shared['f1_macro_diff'].mean())}; mean accuracy change "
                   f"{_signed(shared['accuracy_diff'].mean())}.")
    else:
        summary = "No setting ran (and completed) in both runs."
    only = table[table["present"] != "both"]
    if len(only):
        summary += f" {len(only)} setting(s) completed in only one run (marked in the table)."

    sections = [Section("Runs", [Table(runs)])]
    blocks = [Text(summary), Text("Per setting: mean over completed trials of each run; Δ = B - A. Green: B better "
                                  "(higher scores and images/s, lower time and cost); red: B worse.", "note")]
    keys = [c for c in KEY if c not in ("augmentation", "framework") or table[c].nunique() > 1]
    if "framework" in keys and table.groupby("node_type")["framework"].nunique().max() <= 1:
        keys.remove("framework")  # one framework per node type: the node type says it all
    for group, metrics in (("Accuracy and macro F1", ["accuracy", "f1_macro"]),
                           ("Macro precision and recall", ["precision_macro", "recall_macro"]),
                           ("Speed and cost", ["steady_epoch_s", "images_per_s", "cost_usd"])):
        view = table[keys + ["present", "trials_a", "trials_b"]].rename(columns={"trials_a": "trials A",
                                                                                  "trials_b": "trials B"})
        formats, styles = {}, {}
        for m in metrics:
            label = LABELS[m]
            for suffix, name in (("a", f"{label} A"), ("b", f"{label} B"), ("diff", f"{label} Δ")):
                view[name] = table[f"{m}_{suffix}"]
                formats[name] = _fmt(m, signed=suffix == "diff")
            styles[f"{label} Δ"] = _better_class(m)
        if group == "Speed and cost":  # timings taken beside other trials are marked (not hardware figures)
            view["timing A"], view["timing B"] = table["timing_a"], table["timing_b"]
        rows = [None if p == "both" else "warn" for p in table["present"]]
        blocks.append(Table(view, group, row_style=rows, cell_style=styles, formats=formats,
                            empty="no completed trials in either run"))
    sections.append(Section("Differences per setting (B - A)", blocks, anchor="diff"))
    png = _diff_plot(shared)
    if png:
        sections.append(Section("Macro F1 per setting", [Figure("f1_a_vs_b.png", "Mean macro F1 of A and B per "
                                                                                   "shared setting", png)]))
    return render_html(title, "Side-by-side comparison of two runs, rebuilt from their stored trial records",
                       lead, sections, "This page loads nothing from the network.")


def _diff_plot(shared: pd.DataFrame) -> bytes | None:
    if shared.empty or shared["f1_macro_a"].isna().all():
        return None
    import numpy as np

    from orchestrator.report import plots

    @plots._plain
    def draw():
        labels = [f"{r.architecture}, {r.epochs} ep, {r.node_type}" for r in shared.itertuples()]
        x = np.arange(len(labels))
        fig, ax = plots.plt.subplots(figsize=(max(5.0, 0.6 * len(labels) + 2), 3.6))
        ax.bar(x - 0.2, shared["f1_macro_a"], 0.4, label="A")
        ax.bar(x + 0.2, shared["f1_macro_b"], 0.4, label="B")
        ax.set_xticks(x, labels, rotation=30 if len(labels) > 3 else 0, ha="right" if len(labels) > 3 else "center")
        ax.set_ylabel("macro F1")
        ax.legend()
        ax.grid(alpha=0.3, axis="y")
        return plots.png_bytes(fig)

    return draw()


def write_comparison(store: Store, run_a: RunPaths, run_b: RunPaths) -> str:
    """Compare two stored runs; writes ``compare-<experiment>-<run_id>.{html,csv}`` under run A's report."""
    rec_a, rec_b = ([r.to_dict() for r in read_trial_records(store, run)] for run in (run_a, run_b))
    info = [json.loads(store.get_text(p.run_info)) if store.exists(p.run_info) else {} for p in (run_a, run_b)]
    table = comparison_table(rec_a, rec_b)
    page = comparison_page(table, _run_facts(rec_a, info[0], run_a), _run_facts(rec_b, info[1], run_b))
    name = f"compare-{run_b.experiment}-{run_b.run_id}"
    store.put_text(run_a.report(f"{name}.csv"), table.to_csv(index=False), "text/csv")
    store.put_text(run_a.report(f"{name}.html"), page, "text/html; charset=utf-8")
    return store.url(run_a.report(f"{name}.html"))

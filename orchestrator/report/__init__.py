"""Aggregate trial records into the comparison report (HTML, Markdown, CSV, Parquet, JSON, PNG plots)."""
from __future__ import annotations

import base64
import html
import io
import json
import platform
import subprocess
from datetime import datetime, timezone
from importlib import metadata

import pandas as pd

from orchestrator.records import RunPaths, read_trial_records
from orchestrator.report import plots
from orchestrator.report.tables import (problem_trials, table_accuracy_by_epochs, table_hardware, table_scores,
                                        trial_table)
from orchestrator.storage import Store

SYNTHETIC_NOTE = ("The data are SYNTHETIC (built-in generator of lesion-like blobs), not medical images: "
                  "numbers show that the pipeline works, not how a model does on skin lesions.")
REPORT_FILES = ("index.html", "report.md", "results.csv", "results.parquet", "summary.json")
_PACKAGES = ("ray", "keras", "tensorflow-cpu", "tensorflow", "jax", "torch", "Augmentor", "scikit-learn", "numpy")


def environment_info() -> dict:
    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5,
                                cwd=__file__.rsplit("/", 3)[0]).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {"python": platform.python_version(), "packages": versions, "git_commit": commit}


def _md_table(df: pd.DataFrame, index: bool = False) -> str:
    if df is None or df.empty:
        return "_none_\n"
    frame = df.reset_index() if index else df
    cols = [str(c) for c in frame.columns]
    lines = ["| " + " | ".join(cols) + " |", "| " + " | ".join("---" for _ in cols) + " |"]
    for row in frame.itertuples(index=False):
        cells = [("" if (isinstance(v, float) and pd.isna(v)) or v is None else
                  (f"{v:.4g}" if isinstance(v, float) else str(v))).replace("|", "\\|") for v in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _html_table(df: pd.DataFrame, index: bool = False) -> str:
    if df is None or df.empty:
        return "<p><em>none</em></p>"
    return df.to_html(index=index, escape=True, na_rep="", float_format=lambda v: f"{v:.4g}", border=0, classes="t")


def _img(png: bytes | None, alt: str) -> str:
    if not png:
        return ""
    return f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}"/>' \
           f"<figcaption>{html.escape(alt)}</figcaption></figure>"


def build_report(records: list[dict], run_info: dict) -> dict[str, bytes]:
    """All report files as bytes, keyed by file name (PNG figures under ``plots/``)."""
    df = trial_table(records)
    by_id = {r["trial_id"]: r for r in records}
    synthetic = any((r.get("data") or {}).get("synthetic") for r in records) or \
        (run_info.get("dataset_source") == "synthetic")
    env = run_info.get("environment") or environment_info()
    tables = {
        "Table I - accuracy (%) by architecture x epochs": (table_accuracy_by_epochs(df), True),
        "Tables II/III - scores by node type and epoch budget (mean ± sd over repeats)": (table_scores(df), False),
        "Hardware comparison": (table_hardware(df), False),
        "Failed, infeasible and retried trials": (problem_trials(df), False),
    }
    figures: dict[str, bytes] = {}
    for name, fn in (("accuracy_vs_epochs", plots.accuracy_vs_epochs), ("time_by_hardware", plots.training_time_by_hardware),
                     ("f1_vs_cost", plots.f1_vs_cost)):
        png = fn(df)
        if png:
            figures[f"plots/{name}.png"] = png
    per_trial_figs: list[tuple[str, str]] = []
    for tid in df[df["status"] == "completed"]["trial_id"]:
        r = by_id[tid]
        curve = plots.learning_curves(r.get("history") or [], tid)
        if curve:
            figures[f"plots/curves_{tid}.png"] = curve
        cm = plots.confusion_matrix(r["metrics"]["confusion_matrix"], r.get("class_names") or [], tid)
        figures[f"plots/confusion_{tid}.png"] = cm
        per_trial_figs.append((tid, f"plots/curves_{tid}.png"))

    header = {
        "experiment": run_info.get("experiment"), "run_id": run_info.get("run_id"),
        "started": run_info.get("started"), "finished": run_info.get("finished"),
        "generated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "dataset": run_info.get("dataset_source"), "synthetic_data": synthetic,
        "nodes": run_info.get("nodes", []), "environment": env,
    }
    counts = df["status"].value_counts().to_dict()
    summary = {
        **header, "counts": counts,
        "best_by_f1": _best(df, "f1_macro"), "best_by_accuracy": _best(df, "accuracy"),
        "trials": json.loads(df.to_json(orient="records")),
    }

    md = [f"# Report: {header['experiment']} / {header['run_id']}\n"]
    if synthetic:
        md.append(f"> **{SYNTHETIC_NOTE}**\n")
    md.append(f"Started {header['started']}, finished {header['finished']}. Trials: "
              + ", ".join(f"{k} {v}" for k, v in counts.items()) + ".\n")
    md.append("Cluster nodes: " + "; ".join(f"{n['name']} {_fmt_res(n['resources'])}" for n in header["nodes"]) + "\n")
    md.append(f"Versions: python {env['python']}, " + ", ".join(f"{k} {v}" for k, v in env["packages"].items())
              + f"; git {env.get('git_commit') or 'unknown'}\n")
    for title, (table, index) in tables.items():
        md.append(f"\n## {title}\n\n" + _md_table(table, index))
    md.append("\n## All trials\n\n" + _md_table(df[["trial_id", "architecture", "epochs", "node_type", "augmentation", "status",
                                                    "accuracy", "precision_macro", "recall_macro", "f1_macro", "train_s",
                                                    "images_per_s", "device_used"]]))
    md.append("\n## Figures\n\n" + "\n".join(f"![{k}]({k})" for k in figures if not k.startswith("plots/confusion_")
                                            and not k.startswith("plots/curves_")) + "\n")

    page = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(str(header['experiment']))} {html.escape(str(header['run_id']))}</title>",
        "<style>body{font-family:sans-serif;margin:2em;max-width:1200px}table.t{border-collapse:collapse;font-size:13px}"
        "table.t td,table.t th{border:1px solid #ccc;padding:3px 6px}.warn{background:#fff3cd;padding:.6em;"
        "border:1px solid #e0c060}figure{display:inline-block;margin:6px}img{max-width:560px}"
        "details{margin:4px 0}</style></head><body>",
        f"<h1>Report: {html.escape(str(header['experiment']))} / {html.escape(str(header['run_id']))}</h1>",
    ]
    if synthetic:
        page.append(f"<p class='warn'><strong>{html.escape(SYNTHETIC_NOTE)}</strong></p>")
    page.append(f"<p>Started {html.escape(str(header['started']))}, finished {html.escape(str(header['finished']))}. "
                + html.escape(", ".join(f"{k} {v}" for k, v in counts.items())) + "</p>")
    page.append("<p>Cluster: " + html.escape("; ".join(f"{n['name']} {_fmt_res(n['resources'])}" for n in header["nodes"]))
                + "<br>Versions: " + html.escape(", ".join(f"{k} {v}" for k, v in env["packages"].items()))
                + f"; git {html.escape(str(env.get('git_commit') or 'unknown'))}</p>")
    for title, (table, index) in tables.items():
        page.append(f"<h2>{html.escape(title)}</h2>" + _html_table(table, index))
    page.append("<h2>Figures</h2>" + "".join(_img(figures.get(f"plots/{n}.png"), t) for n, t in (
        ("accuracy_vs_epochs", "Accuracy vs epochs"), ("time_by_hardware", "Training time by hardware"),
        ("f1_vs_cost", "F1 vs cost (Pareto front dashed)"))))
    page.append("<h2>All trials</h2>" + _html_table(df))
    page.append("<h2>Per-trial evidence</h2>")
    for tid, _ in per_trial_figs:
        page.append(f"<details><summary>{html.escape(tid)}</summary>"
                    + _img(figures.get(f"plots/curves_{tid}.png"), f"Learning curves {tid}")
                    + _img(figures.get(f"plots/confusion_{tid}.png"), f"Confusion matrix {tid}") + "</details>")
    page.append("</body></html>")

    parquet = io.BytesIO()
    df.astype({"simulated": "string", "reason": "string", "device_used": "string"}).to_parquet(parquet, index=False)
    files = {
        "index.html": "\n".join(page).encode(),
        "report.md": "\n".join(md).encode(),
        "results.csv": df.to_csv(index=False).encode(),
        "results.parquet": parquet.getvalue(),
        "summary.json": json.dumps(summary, indent=1, default=str).encode(),
    }
    files.update(figures)
    return files


def _fmt_res(res: dict) -> str:
    keep = {k: v for k, v in res.items() if not k.startswith("node:") and k not in ("memory", "object_store_memory")}
    return "(" + ", ".join(f"{k}={v:g}" for k, v in sorted(keep.items())) + ")"


def _best(df: pd.DataFrame, metric: str) -> dict | None:
    done = df[(df["status"] == "completed") & df[metric].notna()]
    if done.empty:
        return None
    row = done.loc[done[metric].idxmax()]
    return {"trial_id": row["trial_id"], "architecture": row["architecture"], "epochs": int(row["epochs"]),
            "node_type": row["node_type"], metric: float(row[metric])}


CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".md": "text/markdown; charset=utf-8", ".csv": "text/csv",
                 ".json": "application/json", ".png": "image/png", ".parquet": "application/octet-stream"}


def write_report(store: Store, paths: RunPaths, extra_info: dict | None = None) -> str:
    """Rebuild the report from the stored trial records alone and write it under ``report/``; returns its URL.

    Figures first, ``index.html`` last, so a reader never sees a report page whose files are missing.
    """
    records = read_trial_records(store, paths)
    run_info = json.loads(store.get_text(paths.run_info)) if store.exists(paths.run_info) else {}
    run_info.update(extra_info or {})
    files = build_report(records, run_info)
    for name in sorted(files, key=lambda n: n == "index.html"):
        ext = "." + name.rsplit(".", 1)[-1]
        store.put_bytes(paths.report(name), files[name], CONTENT_TYPES.get(ext))
    return store.url(paths.report("index.html"))

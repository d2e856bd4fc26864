"""The study report: trial records and ``run.json`` -> the report's files (HTML, Markdown, CSV, Parquet, JSON,
PNG plots), and writing them to a run's ``report/`` folder.

``build_report`` is a function of the stored records and ``run.json`` only (plus the time it was generated),
so ``orchestrator report RUN`` rebuilds the same report from object storage at any time.
"""
from __future__ import annotations

import io
import json
import math
import platform
import subprocess
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from orchestrator.run_store import RunPaths, read_trial_records
from workers.settings import submitted_commit
from orchestrator.report.document import SYNTHETIC_NOTE  # noqa: F401  (public)
from workers.storage import Store, _redact

REPORT_FILES = ("index.html", "report.md", "results.csv", "results.parquet", "summary.json")
CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".md": "text/markdown; charset=utf-8", ".csv": "text/csv",
                 ".json": "application/json", ".png": "image/png", ".parquet": "application/vnd.apache.parquet"}
_PACKAGES = ("ray", "keras", "tensorflow-cpu", "tensorflow", "jax", "torch", "Augmentor", "scikit-learn", "numpy")


def environment_info() -> dict:
    """Python and package versions and the git commit of this checkout (recorded in run.json at submit time)."""
    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5,
                                cwd=Path(__file__).resolve().parents[2]).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {"python": platform.python_version(), "packages": versions, "git_commit": commit or submitted_commit()}


def _jsonable(value):
    """NaN/NA -> null, numpy scalars -> Python, recursively."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        try:
            value = value.item()
        except (ValueError, AttributeError):
            pass
    if isinstance(value, float) and not math.isfinite(value):
        return None
    try:
        import pandas as pd

        if value is pd.NA or value is pd.NaT:
            return None
    except ImportError:
        pass
    return value


def _records_frame(df):
    return [_jsonable(r) for r in df.to_dict(orient="records")]


def _header(records: list[dict], run_info: dict, df, generated: str) -> dict:
    from orchestrator.report import document

    counts = {str(k): int(v) for k, v in df["status"].value_counts().sort_index().items()}
    experiment = run_info.get("experiment") or next(((r.get("config") or {}).get("experiment") for r in records
                                                     if (r.get("config") or {}).get("experiment")), None)
    return {
        "experiment": experiment, "run_id": run_info.get("run_id"), "started": run_info.get("started"),
        "finished": run_info.get("finished"),
        "duration": document.fmt_duration(run_info.get("started"), run_info.get("finished")),
        "generated": generated, "address": _redact(str(run_info["address"])) if run_info.get("address") else None,
        "dataset": document.dataset_info(records, run_info), "nodes": run_info.get("nodes") or [],
        "environment": run_info.get("environment") or environment_info(),
        "counts": counts, "prices": document.node_prices(records),
        "device_probes": run_info.get("device_probes") or [],
        "tracking": run_info.get("tracking") or {},
        "preparation": _preparation(run_info, document.node_prices(records)),
    }


def _preparation(run_info: dict, prices: dict[str, float]) -> dict:
    """Data preparation seconds from run.json's data cache, priced at the cpu node type (else the cheapest one)."""
    cache = run_info.get("data_cache")
    if not isinstance(cache, dict) or not cache:
        return {}
    prepared = [c for c in cache.values() if isinstance(c, dict) and not c.get("hit")]
    node = "cpu" if "cpu" in prices else min(prices, key=prices.get) if prices else None
    return {"seconds": float(sum(c.get("seconds") or 0.0 for c in prepared)), "prepared": len(prepared),
            "hits": len(cache) - len(prepared), "node_type": node, "price_per_hour": prices.get(node)}


def _content(records: list[dict], header: dict, df, run_info: dict):
    """The pure tables of the report (``report.tables``) in one ``ReportContent``."""
    import pandas as pd

    from orchestrator.report import document, statistics
    from orchestrator.report.tables import (best_trial, completed, per_class_table, problem_trials,
                                            table_accuracy_by_epochs, table_cost, table_devices, table_hardware,
                                            table_nodes, table_scores)

    by_id = {str(r.get("trial_id")): r for r in records}
    best = best_trial(df, "f1_macro")
    table_i = [(cond, table_accuracy_by_epochs(rows)) for cond, rows in statistics.conditions(completed(df))]
    return document.ReportContent(
        header=header, trials=df, accuracy_by_epochs=[(c, t) for c, t in table_i if not t.empty],
        scores=table_scores(df), splits=statistics.split_grouping(records), repeats=document.repeats_text(records),
        hardware=table_hardware(df), cost=table_cost(df), devices=table_devices(df), problems=problem_trials(df),
        nodes=table_nodes(header["nodes"], df), best=best,
        best_classes=per_class_table(by_id[best["trial_id"]]) if best else pd.DataFrame(),
        domain=_domain(records, df, by_id[best["trial_id"]] if best else None, run_info))


def _domain(records: list[dict], df, best_record: dict | None, run_info: dict):
    """ISIC metrics, time and cost to the run's target, and the stored estimate beside the actual run."""
    import pandas as pd

    from orchestrator.report import document
    from orchestrator.report.tables import (DEFAULT_TARGET, isic_per_class_table, table_estimate_vs_actual,
                                            table_isic, table_time_to_target)

    packs = [(r.get("metrics") or {}).get("isic") or {} for r in records]
    start, end = document.parse_time(run_info.get("started")), document.parse_time(run_info.get("finished"))
    seconds = (end - start).total_seconds() if start and end and (start.tzinfo is None) == (end.tzinfo is None) \
        else None
    return document.DomainContent(
        target=run_info.get("target") or DEFAULT_TARGET, time_to_target=table_time_to_target(df),
        isic=table_isic(df), best_isic=isic_per_class_table(best_record) if best_record else pd.DataFrame(),
        isic_scorer=next((p["scorer"] for p in packs if p.get("scorer")), None),
        absent_class_rule=next((p["absent_class_rule"] for p in packs if p.get("absent_class_rule")), None),
        estimate_vs_actual=table_estimate_vs_actual(run_info.get("estimate"), df, seconds))


def _add_figures(content, records: list[dict]) -> None:
    """Summary plots, and per setting its learning curves and pooled confusion matrix."""
    from orchestrator.report import document, plots

    domain = content.domain
    for name, png in (("accuracy_vs_epochs", plots.accuracy_vs_epochs(content.trials)),
                      ("time_by_hardware", plots.training_time_by_hardware(content.trials)),
                      ("time_to_target", plots.time_to_target(domain.time_to_target,
                                                              document.target_label(domain.target))),
                      ("f1_vs_cost", plots.f1_vs_cost(content.cost))):
        if png:
            content.figures[f"plots/{name}.png"] = png
    for label, group in document.group_settings(records):
        stem, keys = document.slug(label), []
        curve = plots.learning_curves([r.get("history") or [] for r in group], label)
        if curve:
            content.figures[f"plots/curves_{stem}.png"] = curve
            keys.append((f"plots/curves_{stem}.png", f"Learning curves: {label}"))
        cm = _pooled_confusion(group)
        png = plots.confusion_matrix(cm[0], cm[1], f"{label} (n={len(group)})") if cm is not None else None
        if png:
            content.figures[f"plots/confusion_{stem}.png"] = png
            keys.append((f"plots/confusion_{stem}.png", f"Confusion matrix: {label}"))
        if keys:
            content.evidence.append((f"{label} ({len(group)} trial{'s' if len(group) > 1 else ''})", keys))


def _summary(content) -> dict:
    from orchestrator.report import statistics
    from orchestrator.report.tables import best_trial, completed

    header, df, cost = content.header, content.trials, content.cost
    return {
        **{k: header[k] for k in ("experiment", "run_id", "started", "finished", "generated", "address", "nodes",
                                  "environment", "counts", "device_probes", "tracking")},
        "dataset": header["dataset"], "synthetic_data": header["dataset"]["synthetic"],
        "node_type_prices": header["prices"],
        "best_by_f1": content.best, "best_by_accuracy": best_trial(df, "accuracy"),
        "selected_on": "validation",
        "table_i_accuracy_pct": {statistics.condition_label(cond): _jsonable(t.to_dict(orient="index"))
                                 for cond, t in content.accuracy_by_epochs},
        "split": _jsonable(content.splits), "repeats": content.repeats,
        "pareto_front": _records_frame(cost[cost["pareto"]][["architecture", "epochs", "node_type", "augmentation",
                                                             "framework", "cost_per_trial_usd", "f1_macro"]])
        if not cost.empty else [],
        "device_mismatches": df.loc[df["device_check"] == "MISMATCH", "trial_id"].tolist(),
        "problems": _records_frame(content.problems[["trial_id", "status", "retries", "reason"]]),
        "n_completed": int(len(completed(df))),
        "summary_by_node_type": _records_frame(content.summary),
        "trials": _records_frame(df),
    }


def build_report(records: list[dict], run_info: dict, generated: str | None = None) -> dict[str, bytes]:
    """All report files as bytes, keyed by file name (PNG figures under ``plots/``)."""
    from orchestrator.report import document
    from orchestrator.report.render import render_html, render_markdown
    from orchestrator.report.tables import DEFAULT_TARGET, trial_table

    df = trial_table(records, run_info.get("target") or DEFAULT_TARGET)
    generated = generated or datetime.now(timezone.utc).isoformat(timespec="seconds")
    content = _content(records, _header(records, run_info, df, generated), df, run_info)
    from orchestrator.report.summary import table_summary

    content.summary = table_summary(records, df, content.domain.time_to_target, content.domain.target)
    _add_figures(content, records)
    header = content.header
    title = f"Report: {header['experiment']} / {header['run_id']}"
    subtitle = (f"{document.fmt_time(header['started'])} to {document.fmt_time(header['finished'])}"
                f" - {len(df)} trials")
    lead, body = document.lead_blocks(header, df), document.sections(content)
    footer = (f"Generated {document.fmt_time(generated)} from the stored trial records; rebuild with "
              f"'orchestrator report {header['run_id']}'. This page loads nothing from the network.")
    parquet = io.BytesIO()
    df.astype({c: "string" for c in df.columns if df[c].dtype == object}).to_parquet(parquet, index=False)
    files = {
        "index.html": render_html(title, subtitle, lead, body, footer).encode("utf-8"),
        "report.md": render_markdown(title, subtitle, lead, body, footer).encode("utf-8"),
        "results.csv": df.to_csv(index=False).encode("utf-8"),
        "results.parquet": parquet.getvalue(),
        "summary.json": json.dumps(_jsonable(_summary(content)), indent=1, default=str, allow_nan=False).encode("utf-8"),
    }
    files.update(content.figures)
    return files


def _pooled_confusion(group: list[dict]):
    """Sum of the group's confusion matrices (those with the same shape and class names as the first)."""
    import numpy as np

    total, names = None, None
    for r in group:
        cm = (r.get("metrics") or {}).get("confusion_matrix")
        if not cm:
            continue
        arr = np.asarray(cm, dtype=float)
        if total is None:
            total, names = arr, list(r.get("class_names") or [])
        elif arr.shape == total.shape and list(r.get("class_names") or []) == names:
            total = total + arr
    return None if total is None else (total.tolist(), names)


def write_report(store: Store, paths: RunPaths, extra_info: dict | None = None) -> str:
    """Rebuild the report from the stored trial records alone and write it under ``report/``; returns its URL.

    Figures and data files first, ``index.html`` last, so a reader never sees a report page whose files are
    missing; figures of an earlier build that no longer exist are removed afterwards.
    """
    records = [r.to_dict() for r in read_trial_records(store, paths)]
    run_info = json.loads(store.get_text(paths.run_info)) if store.exists(paths.run_info) else {}
    run_info.setdefault("experiment", paths.experiment)
    run_info.setdefault("run_id", paths.run_id)
    run_info.update(extra_info or {})
    files = build_report(records, run_info)
    for name in sorted(files, key=lambda n: (n == "index.html", n)):
        ext = "." + name.rsplit(".", 1)[-1]
        store.put_bytes(paths.report(name), files[name], CONTENT_TYPES.get(ext))
    stale = [k for k in store.list(paths.report("plots/")) if k[len(paths.report("")):] not in files]
    for key in stale:
        store.delete(key)
    return store.url(paths.report("index.html"))

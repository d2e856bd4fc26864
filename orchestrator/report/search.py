"""Hyperparameter-search report: trials table, best configuration, metric-vs-hyperparameter and
parallel-coordinates plots, written beside a study report under ``<experiment>/<run_id>/report/``.

Built from the stored trial records alone (``records[*]["search"]`` holds the sampled hyperparameters,
the epochs a trial ran and its last reported metrics), so ``write_search_report`` can rebuild it at any time.
"""
from __future__ import annotations

import base64
import html
import io
import json
import math
from datetime import datetime, timezone

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from orchestrator.records import RunPaths, read_trial_records  # noqa: E402
from orchestrator.report import SYNTHETIC_NOTE  # noqa: E402
from workers.storage import Store  # noqa: E402

SEARCH_FILES = ("search.html", "search.md", "trials.csv", "best.json")
CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".md": "text/markdown; charset=utf-8", ".csv": "text/csv",
                 ".json": "application/json", ".png": "image/png"}
STATUS_COLOURS = {"completed": "tab:blue", "stopped_early": "tab:orange", "stopped_budget": "tab:purple",
                  "interrupted": "tab:gray", "failed": "tab:red", "not_run": "tab:gray"}


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def _fmt(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _md_table(df: pd.DataFrame) -> str:
    if df is None or df.empty:
        return "_none_\n"
    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "| " + " | ".join("---" for _ in cols) + " |"]
    for row in df.itertuples(index=False):
        lines.append("| " + " | ".join(_fmt(v).replace("|", "\\|") for v in row) + " |")
    return "\n".join(lines) + "\n"


def _html_table(df: pd.DataFrame) -> str:
    if df is None or df.empty:
        return "<p><em>none</em></p>"
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(v))}</td>" for v in row) + "</tr>"
                   for row in df.itertuples(index=False))
    return f"<table class='t'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _img(png: bytes | None, alt: str) -> str:
    if not png:
        return ""
    return (f"<figure><img alt='{html.escape(alt)}' src='data:image/png;base64,{base64.b64encode(png).decode()}'/>"
            f"<figcaption>{html.escape(alt)}</figcaption></figure>")


def _search_info(search) -> dict:
    """The search block as a plain dict (a ``SearchSpec`` or what ``spec.yaml`` holds)."""
    return search.model_dump(mode="json") if hasattr(search, "model_dump") else dict(search or {})


def _cell(value):
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value)
    return value


def search_table(records: list[dict], search) -> pd.DataFrame:
    """One row per search trial: status, epochs run, sampled hyperparameters, last and best metric, test scores.

    ``<metric>`` is the value the trial reported at its last epoch (what ASHA and the best-configuration rule
    compare); ``best_<metric>`` is its best value over epochs, for reference.
    """
    info = _search_info(search)
    metric, mode = info.get("metric", "val_f1_macro"), info.get("mode", "max")
    names = list(info.get("space", {}))
    rows = []
    for r in records:
        s = r.get("search")
        if not s:
            continue  # not a search trial (e.g. a study record in the same run)
        history = [h for h in (r.get("history") or s.get("history") or []) if h.get(metric) is not None]
        last = s.get("last_result") or (history[-1] if history else {})
        values = [float(h[metric]) for h in history]
        best_value = (max(values) if mode == "max" else min(values)) if values else None
        m = r.get("metrics") or {}
        row = {
            "trial_id": r["trial_id"],
            "status": r.get("status"),
            "epochs_run": int(s.get("epochs_completed") or len(history)),
            **{n: _cell((s.get("hyperparameters") or {}).get(n)) for n in names},
            metric: last.get(metric),
            f"best_{metric}": best_value,
        }
        for key in ("val_accuracy", "val_f1_macro", "val_loss"):
            if key != metric:
                row[key] = last.get(key)
        row.update({
            "test_accuracy": m.get("accuracy"), "test_f1_macro": m.get("f1_macro"),
            "train_s": (r.get("timings") or {}).get("fit_s") or (
                sum(float(h.get("epoch_train_s") or 0) for h in r.get("history") or []) or None),
            "tune_trial_id": s.get("tune_trial_id"), "reason": r.get("error"),
        })
        rows.append(row)
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    df[metric] = pd.to_numeric(df[metric], errors="coerce")
    df = df.sort_values([metric, "epochs_run"], ascending=[mode == "min", False], na_position="last", kind="stable")
    ranks = pd.Series(range(1, len(df) + 1), index=df.index, dtype="Int64")
    df.insert(0, "rank", ranks.where(df[metric].notna()))
    return df.reset_index(drop=True)


def _epochs_trained(df: pd.DataFrame, info: dict) -> str:
    """Epochs the trials ran against what running every trial to the end would have cost."""
    if df.empty or not info.get("epochs"):
        return "-"
    ran, full = int(df["epochs_run"].sum()), len(df) * int(info["epochs"])
    return f"{ran} of {full} ({100 * (1 - ran / full):.0f} % saved by stopping trials early)" if full else "-"


def best_row(df: pd.DataFrame, search) -> dict | None:
    """The trial with the best last-reported metric (ties: the one that ran more epochs), as a dict.

    This is Tune's ``get_best_result(scope="last")`` rule: every trial competes with the value it
    reported last, whether it ran all epochs or was stopped early by the scheduler.
    """
    info = _search_info(search)
    metric = info.get("metric", "val_f1_macro")
    if df.empty or df[metric].notna().sum() == 0:
        return None
    return df[df[metric].notna()].iloc[0].to_dict()  # search_table sorts best first


def best_summary(records: list[dict], df: pd.DataFrame, search, run_info: dict) -> dict | None:
    """``best.json``: the best configuration, its metrics and how to re-run it."""
    info = _search_info(search)
    row = best_row(df, search)
    if row is None:
        return None
    record = next(r for r in records if r["trial_id"] == row["trial_id"])
    s = record["search"]
    cfg = record.get("config") or {}
    metric = info.get("metric", "val_f1_macro")
    return {
        "experiment": run_info.get("experiment"), "run_id": run_info.get("run_id"),
        "metric": metric, "mode": info.get("mode", "max"), "value": _num(row[metric]),
        "trial_id": row["trial_id"], "status": row["status"], "epochs_run": int(row["epochs_run"]),
        "epochs_max": info.get("epochs"), "architecture": cfg.get("architecture"), "node_type": cfg.get("node_type"),
        "framework": cfg.get("framework"),
        "hyperparameters": s.get("hyperparameters") or {},
        "overrides": cfg.get("overrides") or {}, "augmentation": cfg.get("augmentation"),
        "last_result": s.get("last_result") or {},
        "test_metrics": {k: (record.get("metrics") or {}).get(k) for k in ("accuracy", "balanced_accuracy", "f1_macro",
                                                                            "precision_macro", "recall_macro")}
        if record.get("status") == "completed" else None,
        "rule": f"highest {metric} at the trial's last reported epoch" if info.get("mode", "max") == "max"
        else f"lowest {metric} at the trial's last reported epoch",
    }


def _num(v):
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f


# ---------------------------------------------------------------------------------------------- figures

def _kind(info: dict, name: str) -> str:
    dist = info.get("space", {}).get(name) or {}
    return next(iter(dist), "choice") if isinstance(dist, dict) else "choice"


def _is_numeric(series: pd.Series) -> bool:
    values = series.dropna()
    return not values.empty and all(isinstance(v, (int, float, np.number)) and not isinstance(v, bool) for v in values)


def metric_vs_hyperparameter(df: pd.DataFrame, name: str, search) -> bytes | None:
    """The search metric against one hyperparameter; colour = status, marker size = epochs run."""
    info = _search_info(search)
    metric = info.get("metric", "val_f1_macro")
    data = df[df[metric].notna()]
    if data.empty or name not in data:
        return None
    fig, ax = plt.subplots(figsize=(5, 3.6))
    numeric = _is_numeric(data[name]) and _kind(info, name) in ("uniform", "loguniform") or (
        _is_numeric(data[name]) and data[name].nunique() > 4)
    if numeric:
        xs = data[name].astype(float)
        labels = None
    else:
        cats = sorted({str(v) for v in data[name]}, key=lambda c: (len(c), c))
        pos = {c: i for i, c in enumerate(cats)}
        jitter = np.random.default_rng(0).uniform(-0.12, 0.12, len(data))
        xs = np.array([pos[str(v)] for v in data[name]], dtype=float) + jitter
        labels = cats
    size_max = max(1, int(data["epochs_run"].max()))
    for status, colour in STATUS_COLOURS.items():
        mask = (data["status"] == status).to_numpy()
        if mask.any():
            ax.scatter(np.asarray(xs)[mask], data[metric].to_numpy()[mask], c=colour, label=status, alpha=0.8,
                       s=20 + 60 * data["epochs_run"].to_numpy()[mask] / size_max, edgecolors="k", linewidths=0.4)
    if numeric and _kind(info, name) == "loguniform":
        ax.set_xscale("log")
    if labels is not None:
        ax.set_xticks(range(len(labels)), labels)
    ax.set_xlabel(name)
    ax.set_ylabel(f"{metric} (last epoch)")
    ax.set_title(f"{metric} vs {name}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _png(fig)


def parallel_coordinates(df: pd.DataFrame, search) -> bytes | None:
    """One line per trial across every hyperparameter axis and the metric, coloured by the metric.

    Numeric axes are scaled to their min..max (log scale for loguniform settings); categorical axes place
    their values evenly. Trials stopped early are dashed.
    """
    info = _search_info(search)
    metric = info.get("metric", "val_f1_macro")
    names = [n for n in info.get("space", {}) if n in df]
    data = df[df[metric].notna()]
    if data.empty or not names:
        return None
    axes_cols = names + [metric]
    scaled = np.zeros((len(data), len(axes_cols)))
    ticks: list[list[tuple[float, str]]] = []
    for j, name in enumerate(axes_cols):
        col = data[name]
        if _is_numeric(col):
            vals = col.astype(float).to_numpy()
            log = name != metric and _kind(info, name) == "loguniform" and (vals > 0).all()
            v = np.log10(vals) if log else vals
            lo, hi = float(np.nanmin(v)), float(np.nanmax(v))
            scaled[:, j] = (v - lo) / (hi - lo) if hi > lo else 0.5
            ends = (10 ** lo, 10 ** hi) if log else (lo, hi)
            ticks.append([(0.0, f"{ends[0]:.3g}"), (1.0, f"{ends[1]:.3g}")] if hi > lo else [(0.5, f"{ends[0]:.3g}")])
        else:
            cats = sorted({str(x) for x in col}, key=lambda c: (len(c), c))
            pos = {c: (i / (len(cats) - 1) if len(cats) > 1 else 0.5) for i, c in enumerate(cats)}
            scaled[:, j] = [pos[str(x)] for x in col]
            ticks.append([(p, c) for c, p in pos.items()])
    values = data[metric].astype(float).to_numpy()
    lo, hi = float(values.min()), float(values.max())
    norm = plt.Normalize(lo, hi if hi > lo else lo + 1e-9)
    cmap = plt.get_cmap("viridis" if info.get("mode", "max") == "max" else "viridis_r")
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(axes_cols)), 4))
    x = np.arange(len(axes_cols))
    order = np.argsort(values if info.get("mode", "max") == "max" else -values)  # best drawn last (on top)
    for i in order:
        style = "-" if data["status"].iloc[i] == "completed" else "--"
        ax.plot(x, scaled[i], style, color=cmap(norm(values[i])), alpha=0.85, linewidth=1.6)
    for j, tick in enumerate(ticks):
        ax.axvline(j, color="k", linewidth=0.8)
        for pos, label in tick:
            ax.text(j + 0.03, pos, label, fontsize=7, va="center")
    ax.set_xticks(x, axes_cols, rotation=20)
    ax.set_yticks([])
    ax.set_xlim(-0.2, len(axes_cols) - 0.6)
    sm = plt.cm.ScalarMappable(norm=norm, cmap=cmap)
    fig.colorbar(sm, ax=ax, label=metric)
    ax.set_title("Parallel coordinates (dashed: stopped before the last epoch)")
    return _png(fig)


def metric_by_epoch(records: list[dict], search) -> bytes | None:
    """The metric per epoch for every trial: where the scheduler stopped trials is visible as short lines."""
    info = _search_info(search)
    metric = info.get("metric", "val_f1_macro")
    fig, ax = plt.subplots(figsize=(6, 4))
    drawn = False
    for r in records:
        s = r.get("search")
        history = [h for h in (r.get("history") or []) if h.get(metric) is not None] if s else []
        if not history:
            continue
        colour = STATUS_COLOURS.get(r.get("status"), "tab:gray")
        ax.plot([h["epoch"] for h in history], [h[metric] for h in history], marker="o", markersize=3, color=colour,
                alpha=0.7, linestyle="-" if r.get("status") == "completed" else "--")
        drawn = True
    if not drawn:
        plt.close(fig)
        return None
    for status, colour in STATUS_COLOURS.items():
        if any(r.get("status") == status and r.get("search") for r in records):
            ax.plot([], [], color=colour, label=status)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} per epoch, all trials")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _png(fig)


# ---------------------------------------------------------------------------------------------- report

def build_search_report(records: list[dict], run_info: dict, search) -> dict[str, bytes]:
    """Every search-report file as bytes, keyed by name relative to ``report/``."""
    info = _search_info(search)
    metric = info.get("metric", "val_f1_macro")
    search_records = [r for r in records if r.get("search")]
    df = search_table(search_records, info)
    best = best_summary(search_records, df, info, run_info)
    figures: dict[str, bytes] = {}
    for name in info.get("space", {}):
        png = metric_vs_hyperparameter(df, name, info) if not df.empty else None
        if png:
            figures[f"plots/search_{metric}_vs_{name}.png"] = png
    for key, png in (("plots/search_parallel_coordinates.png", None if df.empty else parallel_coordinates(df, info)),
                     ("plots/search_metric_by_epoch.png", metric_by_epoch(search_records, info))):
        if png:
            figures[key] = png
    counts = df["status"].value_counts().to_dict() if not df.empty else {}
    synthetic = run_info.get("dataset_source") == "synthetic" or any(
        (r.get("data") or {}).get("synthetic") for r in search_records)
    title = f"Search: {run_info.get('experiment')} / {run_info.get('run_id')}"
    settings = {
        "architecture": info.get("architecture"), "node type": info.get("node_type"),
        "algorithm": info.get("algorithm"), "scheduler": info.get("scheduler"),
        "metric": f"{metric} ({info.get('mode')})", "samples": info.get("num_samples"),
        "epochs per trial (max)": info.get("epochs"),
        "grace period / reduction factor": f"{info.get('grace_period')} / {info.get('reduction_factor')}"
        if info.get("scheduler") == "asha" else "-",
        "max concurrent trials": info.get("max_concurrent_trials") or "-",
        "time budget (s)": info.get("time_budget_s") or "-",
        "started": run_info.get("started"), "finished": run_info.get("finished"),
        "trials": ", ".join(f"{k} {v}" for k, v in counts.items()) or "none",
        "epochs trained": _epochs_trained(df, info),
    }
    space = pd.DataFrame([{"setting": n, "distribution": next(iter(d)), "values": json.dumps(next(iter(d.values())))}
                          for n, d in info.get("space", {}).items()])
    best_table = pd.DataFrame()
    if best:
        best_table = pd.DataFrame([{"trial": best["trial_id"], "status": best["status"],
                                    "epochs run": best["epochs_run"], metric: best["value"],
                                    **{k: _cell(v) for k, v in best["hyperparameters"].items()},
                                    **({f"test {k}": v for k, v in best["test_metrics"].items()
                                        if k in ("accuracy", "f1_macro")} if best["test_metrics"] else {})}])
    show_cols = [c for c in df.columns if c not in ("tune_trial_id",)] if not df.empty else []

    md = [f"# {title}\n"]
    if synthetic:
        md.append(f"> **{SYNTHETIC_NOTE}**\n")
    md.append("\n".join(f"- **{k}**: {v}" for k, v in settings.items()) + "\n")
    md.append("\n## Best configuration\n\n" + (_md_table(best_table) if best else "_no trial reported the metric_\n"))
    if best:
        md.append(f"\nRule: {best['rule']}. Trials stopped early compete with the value they reported last.\n")
    md.append("\n## Search space\n\n" + _md_table(space))
    md.append("\n## All trials (best first)\n\n" + _md_table(df[show_cols] if show_cols else df))
    md.append("\n## Figures\n\n" + "\n".join(f"![{k}]({k})" for k in figures) + "\n")

    page = [
        "<!doctype html><html><head><meta charset='utf-8'>", f"<title>{html.escape(title)}</title>",
        "<style>body{font-family:sans-serif;margin:2em;max-width:1200px}table.t{border-collapse:collapse;font-size:13px}"
        "table.t td,table.t th{border:1px solid #ccc;padding:3px 6px}.warn{background:#fff3cd;padding:.6em;"
        "border:1px solid #e0c060}figure{display:inline-block;margin:6px}img{max-width:560px}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    if synthetic:
        page.append(f"<p class='warn'><strong>{html.escape(SYNTHETIC_NOTE)}</strong></p>")
    page.append("<ul>" + "".join(f"<li><b>{html.escape(k)}</b>: {html.escape(str(v))}</li>"
                                 for k, v in settings.items()) + "</ul>")
    page.append("<h2>Best configuration</h2>"
                + (_html_table(best_table) if best else "<p>No trial reported the metric.</p>"))
    if best:
        page.append(f"<p>Rule: {html.escape(best['rule'])}. Trials stopped early compete with the value they reported "
                    "last.</p>")
    page.append("<h2>Search space</h2>" + _html_table(space))
    page.append("<h2>Figures</h2>" + "".join(_img(png, key.rsplit("/", 1)[-1][:-4].replace("search_", ""))
                                            for key, png in figures.items()))
    page.append("<h2>All trials (best first)</h2>" + _html_table(df[show_cols] if show_cols else df))
    page.append(f"<p>Generated {datetime.now(timezone.utc).isoformat(timespec='seconds')}.</p></body></html>")

    files = {
        "search.html": "\n".join(page).encode(),
        "search.md": "\n".join(md).encode(),
        "trials.csv": df.to_csv(index=False).encode(),
        "best.json": json.dumps(best, indent=1, default=str).encode(),
    }
    files.update(figures)
    return files


def write_search_report(store: Store, paths: RunPaths, search=None, extra_info: dict | None = None) -> str:
    """(Re)build the search report from the stored records; figures first, ``search.html`` last. Returns its URL."""
    run_info = json.loads(store.get_text(paths.run_info)) if store.exists(paths.run_info) else {}
    run_info.update(extra_info or {})
    if search is None:
        import yaml

        search = (yaml.safe_load(store.get_text(paths.spec)) or {}).get("search") or {}
    files = build_search_report([r.to_dict() for r in read_trial_records(store, paths)], run_info, search)
    for name in sorted(files, key=lambda n: n == "search.html"):
        ext = "." + name.rsplit(".", 1)[-1]
        store.put_bytes(paths.report(name), files[name], CONTENT_TYPES.get(ext))
    return store.url(paths.report("search.html"))

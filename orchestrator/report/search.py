"""Hyperparameter-search report: trials table, best configuration, metric-vs-hyperparameter and
parallel-coordinates plots, written beside a study report under ``<experiment>/<run_id>/report/``; for a
multi-objective search also the Pareto front (``front.json`` and a section with its configurations).

Built from the stored trial records alone (``records[*]["search"]`` holds the sampled hyperparameters,
the epochs a trial ran and its last reported metrics), so ``write_search_report`` can rebuild it at any time.
"""
from __future__ import annotations

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

from orchestrator.run_store import RunPaths, read_trial_records  # noqa: E402
from orchestrator.report.plots import png_bytes as _png  # noqa: E402
from orchestrator.report.document import SYNTHETIC_NOTE  # noqa: E402
from orchestrator.report.render import Figure, KeyValues, Section, Table, Text, render_html, render_markdown  # noqa: E402
from workers.storage import Store  # noqa: E402

SEARCH_FILES = ("search.html", "search.md", "trials.csv", "best.json")  # + front.json (multi-objective)
CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".md": "text/markdown; charset=utf-8", ".csv": "text/csv",
                 ".json": "application/json", ".png": "image/png"}
STATUS_COLOURS = {"completed": "tab:blue", "stopped_early": "tab:orange", "stopped_budget": "tab:purple",
                  "interrupted": "tab:gray", "failed": "tab:red", "not_run": "tab:gray", "infeasible": "tab:brown"}


def _search_info(search) -> dict:
    """The search block as a plain dict (a ``SearchSpec`` or what ``spec.yaml`` holds)."""
    return search.model_dump(mode="json") if hasattr(search, "model_dump") else dict(search or {})


def searched_names(info: dict) -> list[str]:
    """The columns a search varies: architecture and node type when it lists several, then its space."""
    dims = [name for name, key in (("architecture", "architectures"), ("node_type", "node_types"))
            if len(info.get(key) or []) > 1]
    return dims + [n for n in info.get("space", {}) if n not in dims]


def _cell(value):
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value)
    return value


def search_table(records: list[dict], search, target: dict | None = None) -> pd.DataFrame:
    """One row per search trial: status, epochs run, sampled hyperparameters, last and best metric, test scores.

    ``<metric>`` is the value the trial reported at its last epoch (what ASHA and the best-configuration rule
    compare); ``best_<metric>`` is its best value over epochs, for reference. A multi-objective search adds every
    objective (``orchestrator.search.objectives``; time and cost to ``target``, ``inf`` = not reached),
    ``timing`` (``shared node`` when the trial shared its node: ``report.comparability``) and ``pareto``: whether
    no other trial dominates the trial (``front_points``: among the trials with isolated timings when any has
    every objective).
    """
    from orchestrator.report.comparability import trial_columns
    from orchestrator.report.tables import DEFAULT_TARGET
    from orchestrator.search.objectives import trial_objectives
    from orchestrator.search.pareto import pareto_mask

    info = _search_info(search)
    metric, mode = info.get("metric", "val_f1_macro"), info.get("mode", "max")
    objectives = info.get("objectives") or {}
    names = searched_names(info)
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
            "timing": trial_columns(r)["timing"],
        })
        if objectives:
            row.update({f"objective_{k}": v for k, v in
                        trial_objectives(r, objectives, target or DEFAULT_TARGET).items()})
        rows.append(row)
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    if objectives:
        df["pareto"] = pareto_mask(front_points(rows, objectives), objectives)
    df[metric] = pd.to_numeric(df[metric], errors="coerce")
    df = df.sort_values([metric, "epochs_run"], ascending=[mode == "min", False], na_position="last", kind="stable")
    ranks = pd.Series(range(1, len(df) + 1), index=df.index, dtype="Int64")
    df.insert(0, "rank", ranks.where(df[metric].notna()))
    return df.reset_index(drop=True)


def front_points(rows: list[dict], objectives: dict[str, str]) -> list[dict]:
    """The objective values the Pareto front is taken over: a trial that shared its node has none (its times
    are shared-node timings, not hardware figures) unless no trial with isolated timings has every objective."""
    from orchestrator.report.comparability import TIMING_SHARED

    points = [{k: row.get(f"objective_{k}") for k in objectives} for row in rows]
    complete = [all(_num(v) is not None for v in p.values()) for p in points]
    if any(c and row.get("timing") != TIMING_SHARED for c, row in zip(complete, rows)):
        return [{} if row.get("timing") == TIMING_SHARED else p for p, row in zip(points, rows)]
    return points


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


def front_summary(records: list[dict], df: pd.DataFrame, search) -> list[dict]:
    """``front.json``: every trial on the Pareto front, with its configuration and objective values (best first
    by the first objective)."""
    info = _search_info(search)
    objectives = info.get("objectives") or {}
    if df.empty or "pareto" not in df:
        return []
    by_id = {r["trial_id"]: r for r in records}
    first, mode = next(iter(objectives.items()))
    front = df[df["pareto"]].sort_values(f"objective_{first}", ascending=mode == "min", kind="stable")
    out = []
    for _, row in front.iterrows():
        record = by_id[row["trial_id"]]
        cfg = record.get("config") or {}
        out.append({"trial_id": row["trial_id"], "status": row["status"], "architecture": cfg.get("architecture"),
                    "node_type": cfg.get("node_type"), "framework": cfg.get("framework"),
                    "hyperparameters": (record.get("search") or {}).get("hyperparameters") or {},
                    "objectives": {k: _objective(row[f"objective_{k}"]) for k in objectives}})
    return out


def _objective(v):
    """An objective value for JSON: a float, "inf" for a target never reached, None when missing."""
    f = _num(v)
    return "inf" if f is not None and math.isinf(f) else f


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
    names = [n for n in searched_names(info) if n in df]
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


def pareto_plot(df: pd.DataFrame, search) -> bytes | None:
    """The first two objectives of every trial that reported them (colour: node type, marker: architecture), the
    Pareto front ringed and joined; trials that never reached the target are left out (counted in the title)."""
    info = _search_info(search)
    objectives = list((info.get("objectives") or {}).items())
    if len(objectives) < 2 or df.empty or "pareto" not in df:
        return None
    (xname, xmode), (yname, ymode) = objectives[1], objectives[0]
    x, y = df[f"objective_{xname}"].astype(float), df[f"objective_{yname}"].astype(float)
    finite = np.isfinite(x) & np.isfinite(y)
    data = df[finite]
    if data.empty:
        return None
    fig, ax = plt.subplots(figsize=(6, 4))
    kinds = sorted({str(v) for v in data["node_type"]}) if "node_type" in data else ["-"]
    archs = sorted({str(v) for v in data["architecture"]}) if "architecture" in data else ["-"]
    markers = "osD^vP*X"
    for _, row in data.iterrows():
        kind = str(row.get("node_type", "-"))
        arch = str(row.get("architecture", "-"))
        ax.scatter(row[f"objective_{xname}"], row[f"objective_{yname}"], color=f"C{kinds.index(kind) % 10}",
                   marker=markers[archs.index(arch) % len(markers)], s=40, edgecolors="k", linewidths=0.4, zorder=3)
    front = data[data["pareto"]].sort_values(f"objective_{xname}")
    ax.plot(front[f"objective_{xname}"], front[f"objective_{yname}"], "k--", linewidth=1, zorder=2)
    ax.scatter(front[f"objective_{xname}"], front[f"objective_{yname}"], s=160, facecolors="none",
               edgecolors="k", linewidths=1.2, zorder=4)
    for i, kind in enumerate(kinds):
        ax.scatter([], [], color=f"C{i % 10}", label=f"node type {kind}")
    for i, arch in enumerate(archs):
        ax.scatter([], [], color="w", edgecolors="k", marker=markers[i % len(markers)], label=arch)
    ax.set_xlabel(f"{xname} ({xmode})")
    ax.set_ylabel(f"{yname} ({ymode})")
    left = int((~finite).sum())
    ax.set_title("Pareto front (ringed)" + (f"; {left} trial(s) without a finite value not shown" if left else ""),
                 fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _png(fig)


# ---------------------------------------------------------------------------------------------- report

def _figures(df: pd.DataFrame, records: list[dict], info: dict) -> dict[str, bytes]:
    metric = info.get("metric", "val_f1_macro")
    figures: dict[str, bytes] = {}
    for name in searched_names(info):
        png = metric_vs_hyperparameter(df, name, info) if not df.empty else None
        if png:
            figures[f"plots/search_{metric}_vs_{name}.png"] = png
    for key, png in (("plots/search_parallel_coordinates.png", None if df.empty else parallel_coordinates(df, info)),
                     ("plots/search_metric_by_epoch.png", metric_by_epoch(records, info)),
                     ("plots/search_pareto_front.png", pareto_plot(df, info))):
        if png:
            figures[key] = png
    return figures


def _settings(info: dict, run_info: dict, df: pd.DataFrame) -> list[tuple[str, object]]:
    counts = df["status"].value_counts().to_dict() if not df.empty else {}
    objectives = info.get("objectives") or {}
    return [
        ("architecture", ", ".join(info.get("architectures") or [info.get("architecture") or "-"])),
        ("node type", ", ".join(info.get("node_types") or [info.get("node_type") or "-"])),
        ("algorithm", info.get("algorithm")), ("scheduler", info.get("scheduler")),
        *([("objectives", ", ".join(f"{k} ({v})" for k, v in objectives.items()))] if objectives else []),
        ("metric", f"{info.get('metric', 'val_f1_macro')} ({info.get('mode')})"), ("samples", info.get("num_samples")),
        ("epochs per trial (max)", info.get("epochs")),
        ("grace period / reduction factor", f"{info.get('grace_period')} / {info.get('reduction_factor')}"
         if info.get("scheduler") == "asha" else "-"),
        ("max concurrent trials", info.get("max_concurrent_trials") or "-"),
        ("time budget (s)", info.get("time_budget_s") or "-"),
        ("started", run_info.get("started")), ("finished", run_info.get("finished")),
        ("trials", ", ".join(f"{k} {v}" for k, v in counts.items()) or "none"),
        ("epochs trained", _epochs_trained(df, info)),
    ]


def _best_table(best: dict | None, metric: str) -> pd.DataFrame:
    if not best:
        return pd.DataFrame()
    return pd.DataFrame([{"trial": best["trial_id"], "status": best["status"], "epochs run": best["epochs_run"],
                          metric: best["value"], **{k: _cell(v) for k, v in best["hyperparameters"].items()},
                          **({f"test {k}": v for k, v in best["test_metrics"].items() if k in ("accuracy", "f1_macro")}
                             if best["test_metrics"] else {})}])


def _front_section(front: list[dict], info: dict, target: dict, shared: str | None) -> Section:
    objectives = info.get("objectives") or {}
    rows = [{"trial": p["trial_id"], "architecture": p["architecture"], "node type": p["node_type"],
             "framework": p["framework"],
             **{f"{k} ({v})": ("not reached" if p["objectives"][k] == "inf" else p["objectives"][k])
                for k, v in objectives.items()},
             **{k: _cell(v) for k, v in p["hyperparameters"].items() if k not in ("architecture", "node_type")}}
            for p in front]
    blocks: list = [Text("Trials no other trial dominates (at least as good in every objective and better in one), "
                         "across the hardware and architectures searched, with their configurations. Validation "
                         "metrics are the trial's last epoch; time to target is seconds from the trial's start until "
                         f"{target['metric']} first reached {target['value']:g} (data loading, compilation and "
                         "validation included), cost to target that time at the node type's price. "
                         "`tune --then-study` re-runs these configurations as a study with repeats.", style="note"),
                    Table(pd.DataFrame(rows), empty="no trial reported every objective")]
    if shared:
        blocks.append(Text(shared, style="warn"))
    return Section("Pareto front", blocks)


def _sections(df: pd.DataFrame, info: dict, best: dict | None, figures: dict[str, bytes],
              front: list[dict] | None = None, target: dict | None = None, shared: str | None = None) -> list[Section]:
    metric = info.get("metric", "val_f1_macro")
    best_blocks: list = [Table(_best_table(best, metric), empty="no trial reported the metric")]
    if best:
        best_blocks.append(Text(f"Rule: {best['rule']}. Trials stopped early compete with the value they reported "
                                "last.", style="note"))
    space = pd.DataFrame([{"setting": n, "distribution": next(iter(d)), "values": json.dumps(next(iter(d.values())))}
                          for n, d in info.get("space", {}).items()])
    shown = df[[c for c in df.columns if c != "tune_trial_id"]] if not df.empty else df
    return [
        *([_front_section(front or [], info, target, shared)] if info.get("objectives") else []),
        Section("Best configuration", best_blocks),
        Section("Search space", [Table(space)]),
        Section("Figures", [Figure(key, key.rsplit("/", 1)[-1][:-4].replace("search_", ""), png)
                            for key, png in figures.items()]),
        Section("All trials (best first)", [Table(shown)]),
    ]


def build_search_report(records: list[dict], run_info: dict, search, target: dict | None = None) -> dict[str, bytes]:
    """Every search-report file as bytes, keyed by name relative to ``report/``; the pages are rendered by the
    same renderer as the study report (``report.render``). ``target``: the time-to-target target of the
    objectives (default: ``report.tables.DEFAULT_TARGET``)."""
    from orchestrator.report.tables import DEFAULT_TARGET
    from orchestrator.search.objectives import shared_node_note

    info = _search_info(search)
    target = target or DEFAULT_TARGET
    search_records = [r for r in records if r.get("search")]
    df = search_table(search_records, info, target)
    best = best_summary(search_records, df, info, run_info)
    front = front_summary(search_records, df, info) if info.get("objectives") else None
    figures = _figures(df, search_records, info)
    synthetic = run_info.get("dataset_source") == "synthetic" or any(
        (r.get("data") or {}).get("synthetic") for r in search_records)
    title = f"Search: {run_info.get('experiment')} / {run_info.get('run_id')}"
    lead = ([Text(SYNTHETIC_NOTE, style="warn", strong=True)] if synthetic else []) + \
        [KeyValues(_settings(info, run_info, df))]
    body = _sections(df, info, best, figures, front, target, shared_node_note(search_records))
    footer = f"Generated {datetime.now(timezone.utc).isoformat(timespec='seconds')}. This page loads nothing from the network."
    files = {
        "search.html": render_html(title, "", lead, body, footer).encode(),
        "search.md": render_markdown(title, "", lead, body, footer).encode(),
        "trials.csv": df.to_csv(index=False).encode(),
        "best.json": json.dumps(best, indent=1, default=str).encode(),
    }
    if front is not None:
        files["front.json"] = json.dumps(front, indent=1, default=str).encode()
    files.update(figures)
    return files


def write_search_report(store: Store, paths: RunPaths, search=None, extra_info: dict | None = None) -> str:
    """(Re)build the search report from the stored records; figures first, ``search.html`` last. Returns its URL."""
    run_info = json.loads(store.get_text(paths.run_info)) if store.exists(paths.run_info) else {}
    run_info.update(extra_info or {})
    import yaml

    from orchestrator.spec.schema import TARGET_METRICS

    stored = (yaml.safe_load(store.get_text(paths.spec)) or {}) if store.exists(paths.spec) else {}
    if search is None:
        search = stored.get("search") or {}
    target = ((stored.get("report") or {}).get("target")) or None
    if target:
        target = {**target, "mode": TARGET_METRICS.get(target.get("metric"), "max")}
    files = build_search_report([r.to_dict() for r in read_trial_records(store, paths)], run_info, search, target)
    for name in sorted(files, key=lambda n: n == "search.html"):
        ext = "." + name.rsplit(".", 1)[-1]
        store.put_bytes(paths.report(name), files[name], CONTENT_TYPES.get(ext))
    return store.url(paths.report("search.html"))

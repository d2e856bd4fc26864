"""What the report says and in which order: run facts and warnings, seed 000 Tables I-III, hardware and cost
comparison, devices, problems, per-setting evidence, all trials. Builds the document model of ``render``."""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import datetime

import pandas as pd

from orchestrator.report import comparability, statistics, tables
from orchestrator.report.render import Details, Figure, KeyValues, Section, Table, Text
from orchestrator.report.tables import (CHECK_MISMATCH, CHECK_OK, CHECK_SIMULATED, CHECK_UNKNOWN, SETTING,
                                        format_scores, mean_sd_text, setting_label)
from workers.device import probe_summary

SYNTHETIC_NOTE = ("The data are SYNTHETIC (built-in generator of lesion-like blobs), not medical images: "
                  "numbers show that the pipeline works, not how a model does on skin lesions.")


# ------------------------------------------------------------------------------------------------ header facts
def parse_time(value) -> datetime | None:
    try:
        return datetime.fromisoformat(str(value))
    except (TypeError, ValueError):
        return None


def fmt_time(value) -> str:
    t = parse_time(value)
    if t is None:
        return "unknown" if value in (None, "") else str(value)
    offset = t.utcoffset()
    zone = "" if offset is None else " UTC" if not offset else t.strftime(" UTC%z")
    return t.strftime("%Y-%m-%d %H:%M:%S") + zone


def fmt_duration(start, end) -> str | None:
    a, b = parse_time(start), parse_time(end)
    if a is None or b is None or (a.tzinfo is None) != (b.tzinfo is None):
        return None
    seconds = max(0, int((b - a).total_seconds()))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return (f"{h} h {m} min" if h else f"{m} min {s} s" if m else f"{s} s")


def dataset_info(records: list[dict], run_info: dict) -> dict:
    """Source, path, image size, classes and split sizes, from the trials' configs and data summaries."""
    cfg = next(((r.get("config") or {}).get("dataset") for r in records if (r.get("config") or {}).get("dataset")), {})
    data = next((r["data"] for r in records if isinstance(r.get("data"), dict)), {})
    names = next((r["class_names"] for r in records if r.get("class_names")), [])
    source = cfg.get("source") or run_info.get("dataset_source")
    synthetic = bool(source == "synthetic" or any((r.get("data") or {}).get("synthetic") for r in records)
                     or run_info.get("dataset_source") == "synthetic")
    size = cfg.get("image_size")
    return {
        "source": source, "path": cfg.get("path"), "synthetic": synthetic,
        "image_size": "x".join(str(v) for v in size) if isinstance(size, (list, tuple)) else size,
        "class_names": [str(n) for n in names],
        "n_loaded": data.get("n_loaded"), "n_train": data.get("n_train"), "n_val": data.get("n_val"),
        "n_test": data.get("n_test"), "augmented_images": data.get("augmented_images"),
        "augmentor": next((r["data"]["augmentor"] for r in records if (r.get("data") or {}).get("augmentor")), None),
    }


def node_prices(records: list[dict]) -> dict[str, float]:
    out: dict[str, float] = {}
    for r in records:
        cfg = r.get("config") or {}
        if cfg.get("node_type") is not None and cfg.get("price_per_hour") is not None:
            out.setdefault(str(cfg["node_type"]), float(cfg["price_per_hour"]))
    return dict(sorted(out.items()))


def slug(label: str) -> str:
    """A storage-safe, unique file stem for a free-text label."""
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", label).strip("._")[:60] or "x"
    return f"{stem}-{hashlib.sha1(label.encode()).hexdigest()[:6]}"


# ------------------------------------------------------------------------------------------------ sections
def _fmt_num(digits: int):
    return lambda v: "" if v is None or pd.isna(v) else f"{v:.{digits}f}"


def _fmt_usd(v) -> str:
    if v is None or pd.isna(v):
        return ""
    return f"${v:,.2f}" if abs(v) >= 1 else f"${v:.3g}"


def _check_style(check) -> str | None:
    return {CHECK_MISMATCH: "bad", CHECK_UNKNOWN: "warn", CHECK_SIMULATED: "warn"}.get(check)


def _flag_cell(value) -> str | None:
    return "flag" if value in (CHECK_MISMATCH, CHECK_UNKNOWN) else None


def lead_blocks(header: dict, df: pd.DataFrame) -> list:
    blocks: list = []
    if header["dataset"].get("synthetic"):
        blocks.append(Text(SYNTHETIC_NOTE, "warn", strong=True))
    mism = df[df["device_check"] == CHECK_MISMATCH]
    if len(mism):
        blocks.append(Text(f"DEVICE MISMATCH: {len(mism)} trial(s) ran on a different device than their node type "
                           f"asked for (e.g. {mism.iloc[0]['trial_id']} asked for {mism.iloc[0]['requested_device']}"
                           f" but ran on {mism.iloc[0]['device_kind']}: {mism.iloc[0]['device_used']}). Their timings "
                           "do not measure the requested hardware and are left out of the hardware and cost "
                           "comparison; see 'Devices'.", "bad", strong=True))
    sim = df[df["device_check"] == CHECK_SIMULATED]
    if len(sim):
        blocks.append(Text(f"{len(sim)} trial(s) ran with a SIMULATED device (a test cluster advertising "
                           "accelerators it does not have): their timings are not hardware measurements.", "warn"))
    if header.get("tracking") and not header["tracking"].get("complete", True):
        blocks.append(Text("TRACKING INCOMPLETE: " + tracking_text(header["tracking"]) + ". The stored records and "
                           "this report are complete; 'orchestrator report RUN --to-mlflow URI' publishes the run "
                           "again.", "warn", strong=True))
    blocks += fairness_blocks(df)
    counts = header["counts"]
    bad = {k: v for k, v in counts.items() if k not in ("completed",)}
    if bad:
        blocks.append(Text("Not every trial completed: " + ", ".join(f"{v} {k}" for k, v in bad.items())
                           + "; reasons under 'Failed, infeasible and retried trials'.",
                           "bad" if counts.get("failed") else "info"))
    return blocks


def tracking_text(tracking: dict) -> str:
    """One line on where the run was tracked and what could not be logged."""
    parts = []
    mlflow = tracking.get("mlflow")
    if mlflow:
        parts.append(f"MLflow {mlflow.get('uri')} experiment '{mlflow.get('experiment')}' run "
                     f"{mlflow.get('parent_run_id') or 'not created'}"
                     + (f", {mlflow['trials_incomplete']} trial(s) not fully logged" if mlflow.get("trials_incomplete")
                        else "")
                     + (f" ({mlflow['errors'][0]})" if mlflow.get("errors") else ""))
    tb = tracking.get("tensorboard")
    if tb:
        parts.append(f"TensorBoard event files under {tb.get('logdir')}/tensorboard"
                     + (f", {tb['trials_incomplete']} trial(s) incomplete" if tb.get("trials_incomplete") else ""))
    return "; ".join(parts) or "off"


def facts(header: dict) -> KeyValues:
    ds, env = header["dataset"], header["environment"] or {}
    names = ds["class_names"]
    split = ", ".join(f"{k[2:]} {ds[k]}" for k in ("n_train", "n_val", "n_test") if ds.get(k) is not None)
    rows = [
        ("Experiment", header["experiment"]), ("Run id", header["run_id"]),
        ("Started", fmt_time(header["started"])), ("Finished", fmt_time(header["finished"])),
    ]
    if header.get("duration"):
        rows.append(("Duration", header["duration"]))
    rows += [
        ("Cluster", f"{header.get('address') or 'local'}; {len(header['nodes'])} node(s)"),
        ("Dataset", (f"{ds['source']}" + (f" from {ds['path']}" if ds.get("path") else "")
                     + (f", images {ds['image_size']}" if ds.get("image_size") else "")
                     + (" (SYNTHETIC)" if ds.get("synthetic") else ""))),
        ("Classes", f"{len(names)}: " + ", ".join(names) if names else "unknown"),
    ]
    if split:
        rows.append(("Split (after augmentation)", split))
    if ds.get("augmentor"):
        aug = ds["augmentor"]
        rows.append(("Augmentor stage", f"{aug['mode']}: " + (
            f"every training class topped up to {aug['samples_per_class']} images" if aug["mode"] == "top_up"
            else f"{aug['samples_per_class']} generated images added to every training class")))
    rows += [
        ("Trials", ", ".join(f"{v} {k}" for k, v in header["counts"].items()) or "none"),
        *([("Device probes", "; ".join(probe_summary(p) for p in header["device_probes"]))]
          if header.get("device_probes") else []),
        ("Node type prices", ", ".join(f"{k} ${v:g}/h" for k, v in header["prices"].items()) or "not given"),
        ("Versions", f"python {env.get('python', '?')}, "
                     + ", ".join(f"{k} {v}" for k, v in (env.get("packages") or {}).items())),
        ("Git commit", env.get("git_commit") or "unknown"),
        ("Tracking", tracking_text(header.get("tracking") or {})),
        ("Report generated", fmt_time(header["generated"])),
    ]
    return KeyValues(rows)


@dataclass
class ReportContent:
    """Everything the report's sections show: the run header, the pure tables, figures and evidence groups."""

    header: dict
    trials: pd.DataFrame
    accuracy_by_epochs: list[tuple[dict, pd.DataFrame]]  # Table I per condition (statistics.conditions)
    scores: pd.DataFrame
    hardware: pd.DataFrame
    cost: pd.DataFrame
    devices: pd.DataFrame
    problems: pd.DataFrame
    nodes: pd.DataFrame
    best: dict | None
    best_classes: pd.DataFrame
    domain: "DomainContent | None" = None
    splits: list[dict] = field(default_factory=list)  # statistics.split_grouping
    repeats: str = ""  # repeats_text
    figures: dict[str, bytes] = field(default_factory=dict)
    evidence: list[tuple[str, list[tuple[str, str]]]] = field(default_factory=list)
    summary: pd.DataFrame = field(default_factory=pd.DataFrame)  # ``report.summary.table_summary``

    def figure(self, name: str, caption: str) -> Figure:
        return Figure(name, caption, self.figures.get(name))


def repeats_text(records: list[dict]) -> str:
    """What repeats vary: the initialisation seed only, or also the split (and Augmentor) seed
    (``grid.repeats_vary``)."""
    splits = {((r.get("config") or {}).get("split") or {}).get("seed") for r in records}
    if len(splits - {None}) > 1:
        return ("repeats vary the initialisation seed and the split seed (a new train/validation/test split and "
                "Augmentor seed per repeat), so the spread over repeats includes split variance")
    return ("repeats vary only the initialisation seed (one fixed split), so the spread over repeats leaves "
            "split variance out")


def statistics_section(c: ReportContent) -> Section:
    """Selection basis, what repeats vary, which intervals are shown, and how each dataset was split."""
    from workers.metrics import BOOTSTRAP_METHOD

    split_rows = pd.DataFrame([{
        "dataset": r["dataset"], "path": r["path"], "split seed(s)": r["split_seeds"],
        "grouped by lesion": statistics.yes_no(r["grouped_by_lesion"]),
        "grouped by duplicates": statistics.yes_no(r["grouped_by_duplicates"]),
        "duplicate groups": r["duplicate_groups"], "duplicates across split": r["duplicates_across_split"],
        "warnings": r["warnings"]} for r in c.splits])
    return Section("Selection, uncertainty and split", [
        Text(statistics.SELECTION_NOTE + " Every table's note says what it pools (mean over repeats only, "
             "unless it says otherwise).", "note"),
        KeyValues([
            ("Selection basis", "validation split (best trial by validation macro F1; ensemble --top by the "
                                "validation metric)"),
            ("Repeats", c.repeats),
            ("Per-trial intervals", f"test accuracy and macro F1 in 'All trials' (*_ci_low, *_ci_high): "
                                    f"{BOOTSTRAP_METHOD}"),
            ("Intervals of repeat means", f"Tables II/III: {statistics.T_INTERVAL_NOTE}"),
        ]),
        Table(split_rows, "How each dataset was split", empty="no dataset information"),
    ], anchor="statistics")


def _run_section(c: ReportContent) -> Section:
    return Section("Run", [facts(c.header), Table(c.nodes, "Cluster nodes (CPU, GPU, TPU counts; memory in GiB)",
                                                 formats={"memory_gib": _fmt_num(1)}, empty="no node information")])


def _table_i_section(c: ReportContent) -> Section:
    done = tables.completed(c.trials)
    blocks: list = [Text("Test accuracy (%) per architecture and epoch budget, one table per condition "
                         "(augmentation stage, node type, and framework where the grid crosses it); "
                         + pooling_note(done, ["architecture", "epochs", *statistics.CONDITION_AXES]).lower()
                         + ".", "note")]
    if not c.accuracy_by_epochs:
        blocks.append(Table(pd.DataFrame(), empty="no completed trials"))
    for condition, t1 in c.accuracy_by_epochs:
        blocks.append(Table(t1, statistics.condition_label(condition) if condition else None, index=True,
                            formats={col: _fmt_num(2) for col in t1.columns}, empty="no completed trials"))
    blocks.append(c.figure("plots/accuracy_vs_epochs.png",
                           "Accuracy vs epochs per architecture (mean ± sd over repeats)"))
    return Section("Table I: accuracy by architecture and epochs", blocks, anchor="table-i")


def pooling_note(df: pd.DataFrame, keys: list[str], what: str = "repeats") -> str:
    """``Mean over repeats only`` (or what else a table pools), from the trials it averages."""
    text = statistics.pooling_text(df, [k for k in keys if k in df.columns], what)
    return text[0].upper() + text[1:]


def _scores_section(c: ReportContent) -> Section:
    done = tables.completed(c.trials)
    blocks: list = [Text("Macro-averaged precision, recall and F1 on the held-out test split per node type, "
                         "augmentation stage, framework and epoch budget; mean ± sample standard deviation and "
                         f"the F1 mean's {statistics.T_INTERVAL_NOTE}; "
                         + pooling_note(done, ["architecture", "epochs", *statistics.CONDITION_AXES]).lower()
                         + ".", "note")]
    if c.scores.empty:
        blocks.append(Table(c.scores, empty="no completed trials"))
    else:
        shown = format_scores(c.scores)
        keys = ["node_type", "augmentation", "framework", "epochs"]
        for key, g in shown.groupby(keys, sort=True, dropna=False):
            condition = dict(zip(keys, key))
            title = (f"Node type {condition['node_type']}, augmentation {condition['augmentation']}, "
                     f"{condition['framework']}, {condition['epochs']} epochs")
            cols = ["architecture", "repeats", "accuracy", "precision", "recall", "f1", "f1 95% CI"]
            blocks.append(Table(g[cols].reset_index(drop=True), title))
    return Section("Tables II/III: scores per node type, augmentation stage and epoch budget", blocks,
                   anchor="tables-ii-iii")


STACK_FACTORS = ["backend", "precision", "jit", "global_batch", "steps_per_execution", "shared_left_out"]
FAIRNESS_NOTE = ("Speed-ups and cost ratios compare only groups of trials that differ in the node type alone "
                 "(same architecture, epochs, augmentation, backend, precision, XLA setting, global batch and steps "
                 "per execution; the stack column names them); any other pair is 'not comparable' with the factor "
                 "that differs. Timings marked 'shared node' were taken while other trials ran on the same node: "
                 "they are not hardware figures and are left out of speed-ups and the Pareto front.")


def _speedup(v) -> str:
    return "" if v is None or pd.isna(v) else f"{v:.2f}x"


def fairness_view(table: pd.DataFrame) -> pd.DataFrame:
    """A comparison table for reading: the stack named once (``stack``), its factors dropped, constant
    augmentation/framework columns dropped."""
    out = table.drop(columns=[c for c in STACK_FACTORS if c in table.columns])
    return _drop_constant(out)


def _timing_style(timing) -> str | None:
    return "warn" if isinstance(timing, str) and timing.startswith(comparability.TIMING_SHARED) else None


def _hardware_section(c: ReportContent) -> Section:
    hw, hw_view = c.hardware, c.hardware.copy()
    if not hw_view.empty:
        hw_view["steady_epoch_s"] = [mean_sd_text(m, s, 3) for m, s in zip(hw["steady_epoch_s"],
                                                                          hw["steady_epoch_s_sd"])]
        hw_view["images_per_s"] = [mean_sd_text(m, s, 1) for m, s in zip(hw["images_per_s"], hw["images_per_s_sd"])]
        hw_view = fairness_view(hw_view.drop(columns=["steady_epoch_s_sd", "images_per_s_sd", "speedup_reference"]))
    ref = hw["speedup_reference"].iloc[0] if not hw.empty else None
    return Section("Hardware comparison", [
        Text(("Seconds per epoch after the first (steady state) and training images per second (per node and per "
              "chip), mean ± sd over trials ("
              + pooling_note(measured_trials(c), tables.HARDWARE_KEYS).lower()
              + "); speed-up = images/s relative to "
              f"node type '{ref}' for the same factors, per node and per chip. "
              if ref else "No CPU-only node type completed a trial, so no speed-up against CPU is given. ")
             + FAIRNESS_NOTE
             + (" Trials that ran on other hardware than requested (MISMATCH) are left out."
                if (c.trials["device_check"] == CHECK_MISMATCH).any() else ""), "note"),
        Table(hw_view, row_style=[_timing_style(t) for t in hw.get("timing", [])],
              formats={"first_epoch_s": _fmt_num(3), "speedup_vs_cpu": _speedup, "speedup_per_chip": _speedup,
                       "images_per_s_per_chip": _fmt_num(1), "val_epoch_s": _fmt_num(3),
                       "cpu_load_1m": _fmt_num(2)}, empty="no completed trials"),
        c.figure("plots/time_by_hardware.png", "Training time per epoch by hardware (mean ± sd)"),
    ], anchor="hardware")


def _cost_section(c: ReportContent) -> Section:
    cost, cost_view = c.cost, c.cost.copy()
    if not cost_view.empty:
        cost_view["cost_per_trial_usd"] = [
            _fmt_usd(m) + (f" ± {_fmt_usd(s)}" if pd.notna(s) else "")
            for m, s in zip(cost["cost_per_trial_usd"], cost["cost_per_trial_usd_sd"])]
        cost_view["f1_macro"] = [mean_sd_text(m, s) for m, s in zip(cost["f1_macro"], cost["f1_macro_sd"])]
        cost_view = fairness_view(cost_view.drop(columns=["cost_per_trial_usd_sd", "f1_macro_sd"]))
    prep = c.header.get("preparation") or {}
    return Section("Cost and Pareto front", [
        Text("Cost = node type price_per_hour x the trial's wall time from its start (total_s: the clock of time "
             "to target, started once the node holds the prepared data; model build, training, validation and "
             "evaluation included). USD per accuracy point = cost per trial / test accuracy in percentage points; "
             "cost_vs_reference = cost per trial / the CPU reference's for the same factors. Pareto-optimal "
             "settings (no other isolated setting is at least as cheap and at least as good in mean macro F1) are "
             "highlighted; shared-node rows are never on the front. Per setting: "
             + pooling_note(measured_trials(c), tables.HARDWARE_KEYS).lower() + ". " + FAIRNESS_NOTE,
             "note"),
        Text(preparation_text(prep), "note"),
        Table(cost_view, row_style=["good" if p else _timing_style(t)
                                    for p, t in zip(cost.get("pareto", []), cost.get("timing", []))],
              formats={"price_per_hour": _fmt_usd, "usd_per_accuracy_point": _fmt_usd, "total_s": _fmt_num(1),
                       "accuracy_pct": _fmt_num(2), "cost_vs_reference": _speedup},
              empty="no completed trials"),
        c.figure("plots/f1_vs_cost.png", "Macro F1 vs cost per trial; the Pareto front is ringed and dashed"),
    ], anchor="cost")


def preparation_text(prep: dict) -> str:
    """Data preparation time and its cost, shown apart from every trial's cost (it is shared by all trials)."""
    if not prep:
        return "Data preparation: no record of it in run.json."
    seconds, price, node = prep.get("seconds") or 0.0, prep.get("price_per_hour"), prep.get("node_type")
    text = (f"Data preparation (shared by every trial, in no trial's cost): {seconds:.1f} s for "
            f"{prep.get('prepared', 0)} setting(s) prepared, {prep.get('hits', 0)} taken from the cache")
    if price is not None:
        text += f"; at the price of node type '{node}' ({_fmt_usd(price)}/h): {_fmt_usd(price * seconds / 3600)}"
    return text + "."


def fairness_blocks(df: pd.DataFrame) -> list:
    """Warnings at the top of the report: shared-node timings, collapsed models, stacks that differ by node type."""
    blocks: list = []
    done = df[df["status"] == "completed"]
    shared = done[done["timing"] == comparability.TIMING_SHARED]
    if len(shared):
        most = shared["trials_sharing_node"].max()
        blocks.append(Text(f"SHARED NODE: {len(shared)} of {len(done)} completed trial(s) shared their node with "
                           f"other trials (up to {int(most) if pd.notna(most) else '?'} of this study at once) or "
                           "ran on a node busy with other work (load average above "
                           f"{comparability.BUSY_LOAD:g} x its CPUs): their images/s, epoch times, time "
                           "to target and costs are marked 'shared node', are not hardware figures, and are left "
                           "out of speed-ups and the Pareto front. Set execution.isolated_timing: true for "
                           "hardware figures.", "warn", strong=True))
    collapsed = comparability.collapsed_trials(df)
    if len(collapsed):
        first = collapsed.iloc[0]
        blocks.append(Text(f"COLLAPSED MODELS: {len(collapsed)} trial(s) predict nearly one class for every test "
                           f"image (at least {comparability.COLLAPSE_SHARE:.0%} of predictions in one class; e.g. "
                           f"{first['trial_id']}: {first['predicted_share']:.0%}). They completed, but learned "
                           "nothing useful; they are flagged 'collapsed' in the tables.", "warn", strong=True))
    stacks = done.groupby("node_type")["stack"].agg(lambda v: tuple(sorted(set(v.dropna()))))
    if len(set(stacks)) > 1:
        blocks.append(Text("STACKS DIFFER: the node types ran with different software stacks ("
                           + "; ".join(f"{n}: {' / '.join(v) or 'unknown'}" for n, v in stacks.items())
                           + "), so their trials differ in the stack as well as the hardware: such pairs are "
                           "'not comparable' (see the comparable column).", "warn", strong=True))
    return blocks


def measured_trials(c: ReportContent) -> pd.DataFrame:
    return tables.measured(c.trials)


def _devices_section(c: ReportContent) -> Section:
    return Section("Devices: requested vs used", [
        Text("The device each trial really computed on, next to the one its node type asked for. MISMATCH rows "
             "ran on other hardware than requested (their timings do not describe the requested node type).",
             "note"),
        Table(c.devices, row_style=[_check_style(x) for x in c.devices.get("check", [])],
              cell_style={"check": _flag_cell}, empty="no trial reported its device"),
    ], anchor="devices")


def _problems_section(c: ReportContent) -> Section:
    return Section("Failed, infeasible and retried trials", [
        Table(c.problems, row_style=["bad" if s == "failed" else "warn" if s != "completed" else None
                                     for s in c.problems.get("status", [])],
              empty="none: every trial completed on its first attempt"),
    ], anchor="problems")


def _best_section(c: ReportContent) -> Section | None:
    best = c.best
    if not best:
        return Section("Best trial", [Text("No completed trial has a validation score, so none is chosen: "
                                           "choosing on the test split would overstate it. Set split.val_fraction "
                                           "above 0.", "warn")], anchor="best")
    test = f"test F1 {best['f1_macro']:.4f}" if best.get("f1_macro") is not None else "no test F1"
    return Section("Best trial", [
        Text(f"Selected on the validation split (highest validation macro F1, "
             f"{best['val_f1_macro']:.4f}): {best['trial_id']} ({best['architecture']}, {best['epochs']} epochs, "
             f"{best['node_type']}, augmentation {best['augmentation']}); on the test split, reported only: {test}"
             + (f", accuracy {best['accuracy']:.4f}" if best.get("accuracy") is not None else "") + "."),
        Table(c.best_classes, "Per-class scores on the test split", formats={
            col: _fmt_num(4) for col in ("precision", "recall", "f1")}, empty="no per-class scores recorded"),
    ], anchor="best")


def _evidence_section(c: ReportContent) -> Section | None:
    if not c.evidence:
        return None
    blocks: list = [Text("Learning curves (train and validation; mean ± sd over repeats) and confusion "
                         "matrices (test split, counts pooled over repeats) per setting.", "note")]
    for label, keys in c.evidence:
        blocks.append(Details(label, [c.figure(k, cap) for k, cap in keys]))
    return Section("Learning curves and confusion matrices", blocks, anchor="evidence")


ALL_TRIALS_COLUMNS = ["trial_id", "architecture", "epochs", "node_type", "augmentation", "framework", "repeat",
                      "status", "accuracy", "balanced_accuracy", "f1_macro", "isic_balanced_accuracy",
                      "steady_epoch_s", "images_per_s", "total_s", "time_to_target_s", "cost_usd", "device_check",
                      "collapsed", "retries"]


def _all_trials_section(c: ReportContent) -> Section:
    df = c.trials
    ran = df[df["status"] != "infeasible"]
    shown = _drop_constant(ran[[col for col in ALL_TRIALS_COLUMNS if col in ran.columns]].reset_index(drop=True))
    n_infeasible = int((df["status"] == "infeasible").sum())
    return Section("All trials", [
        Text("Click a column heading to sort (again to reverse); type in the box to show only rows containing every "
             "word. Every column of every trial is in results.csv and results.parquet"
             + (f"; the {n_infeasible} infeasible trial(s), which never ran, are listed once, under 'Failed, "
                "infeasible and retried trials'." if n_infeasible else "."), "note"),
        Table(shown, row_style=[
            "bad" if s == "failed" or chk == CHECK_MISMATCH else "warn" if s != "completed" or col is True else None
            for s, chk, col in zip(ran["status"], ran["device_check"], ran["collapsed"])],
            cell_style={"device_check": _flag_cell, "collapsed": lambda v: "flag" if v is True else None},
            formats={"cost_usd": _fmt_usd}, interactive=True, empty="no trial ran"),
    ], anchor="trials")


SUMMARY_LABELS = {"node_type": "node type", "best_architecture": "architecture", "test_accuracy": "test accuracy",
                  "test_f1_macro": "test F1", "time_to_target_s": "to target (s)",
                  "cost_to_target_usd": "cost to target", "speedup_time_to_target": "speed-up (time)",
                  "speedup_images_per_s": "speed-up (img/s)"}


def _summary_section(c: ReportContent) -> Section | None:
    """The answer first: per node type the best setting by validation, its accuracy, time and cost to target."""
    if c.domain is None:
        return None
    summary, target = c.summary, c.domain.target
    blocks: list = [Text(f"Per node type, the setting with the best validation {target['metric']} (last epoch, "
                         "mean over repeats; the test split never chooses), with its test accuracy and macro F1, "
                         f"time and cost to {target_label(target)} and its speed-ups against the CPU reference "
                         "node type for the same architecture, epochs and augmentation. Trials that ran on other "
                         "hardware than requested are left out. Times and costs of rows marked 'shared node' were "
                         "taken while other trials ran on the node: not hardware figures.", "note")]
    if summary.empty:
        blocks.append(Text("No trial completed with a validation score, so there is nothing to compare yet "
                           "(see 'Failed, infeasible and retried trials').", "info"))
        return Section("Summary", blocks, anchor="summary")
    best = summary.sort_values("validation", ascending=target.get("mode") == "min", kind="stable").iloc[0]
    blocks.insert(0, Text(f"Best by validation: {best['best_architecture']} ({best['epochs']} epochs) on "
                          f"{best['node_type']}, validation {target['metric']} {best['validation']:.4f}, test "
                          f"accuracy {best['test_accuracy']:.4f}.", strong=True))
    if summary["time_to_target_s"].isna().all():
        blocks.append(Text(f"No setting reached the target {target_label(target)}, so time and cost to target "
                           "are blank; set report.target.value to a level the trials reach (the best validation "
                           f"score here is {summary['validation'].max():.4f}).", "warn"))
    speedup = lambda v: "" if pd.isna(v) else f"{v:.2f}x"  # noqa: E731
    view = _drop_constant(summary).rename(columns=SUMMARY_LABELS)
    blocks.append(Table(view, row_style=[_timing_style(t) for t in summary.get("timing", [])], formats={
        "validation": _fmt_num(4), "test accuracy": _fmt_num(4), "test F1": _fmt_num(4),
        "to target (s)": lambda v: "not reached" if pd.isna(v) else f"{v:.1f}",
        "cost to target": lambda v: "" if pd.isna(v) else _fmt_usd(v),
        "speed-up (time)": speedup, "speed-up (img/s)": speedup}))
    return Section("Summary", blocks, anchor="summary")


def group_settings(records: list[dict]) -> list[tuple[str, list[dict]]]:
    """Completed records grouped by setting (architecture, epochs, node type, augmentation, framework), in order."""
    groups: dict[tuple, list[dict]] = {}
    for r in records:
        if r.get("status") != "completed":
            continue
        cfg = r.get("config") or {}
        groups.setdefault(tuple(str(cfg.get(k)) for k in SETTING), []).append(r)
    out = []
    for key in sorted(groups):
        row = dict(zip(SETTING, key))
        out.append((setting_label(row), sorted(groups[key], key=lambda r: str(r.get("trial_id")))))
    return out


CHECKS = (CHECK_OK, CHECK_MISMATCH, CHECK_SIMULATED, CHECK_UNKNOWN)


# ------------------------------------------------------------------------------- time to target, ISIC, plan
def _mean_sd_columns(table: pd.DataFrame, names, digits: int = 4) -> pd.DataFrame:
    """``<name>_mean`` / ``<name>_sd`` pairs -> one ``mean ± sd`` text column ``<name>``."""
    out = table.copy()
    for name in names:
        out[name] = [mean_sd_text(m, s, digits) for m, s in zip(table[f"{name}_mean"], table[f"{name}_sd"])]
        out = out.drop(columns=[f"{name}_mean", f"{name}_sd"])
    return _drop_constant(out)


def _drop_constant(table: pd.DataFrame) -> pd.DataFrame:
    return table[[c for c in table.columns if c not in ("augmentation", "framework")
                  or table[c].nunique(dropna=False) > 1]]


def target_label(target: dict) -> str:
    sign = "<=" if target.get("mode") == "min" else ">="
    return f"{target['metric']} {sign} {target['value']:g}"


@dataclass
class DomainContent:
    """The report's domain tables: ISIC metrics, time and cost to target, and the plan beside the run."""

    target: dict
    time_to_target: pd.DataFrame
    isic: pd.DataFrame
    best_isic: pd.DataFrame
    isic_scorer: str | None = None
    absent_class_rule: str | None = None
    estimate_vs_actual: pd.DataFrame = field(default_factory=pd.DataFrame)


def target_section(c: ReportContent) -> Section | None:
    if c.domain is None:
        return None
    ttt, target = c.domain.time_to_target, c.domain.target
    view = ttt.copy()
    if not view.empty:
        view["time_to_target_s"] = [mean_sd_text(m, s, 1) for m, s in zip(ttt["time_to_target_s"],
                                                                          ttt["time_to_target_s_sd"])]
        view["cost_to_target_usd"] = [_fmt_usd(m) + (f" ± {_fmt_usd(s)}" if pd.notna(s) else "")
                                      for m, s in zip(ttt["cost_to_target_usd"], ttt["cost_to_target_usd_sd"])]
        view = fairness_view(view.drop(columns=["time_to_target_s_sd", "cost_to_target_usd_sd",
                                                "speedup_reference"]))
    ref = ttt["speedup_reference"].iloc[0] if not ttt.empty else None
    speedup = lambda v: "" if pd.isna(v) else f"{v:.2f}x"  # noqa: E731
    return Section("Time and cost to target", [
        Text(f"Target: {target_label(target)} on the validation split. Time to target = wall seconds from the "
             "trial's start to the end of the first epoch that reaches it. The clock starts at the same point for "
             "every trial: once its node holds the prepared data (staging a node's data cache is on no trial's "
             "clock; MLPerf lets data start on any durable storage); model build and compilation, training, "
             "per-epoch validation and reading the data are on it. Mean ± sd over the repeats that reached it; "
             f"the MLPerf score by MLPerf Training's rules: {comparability.MLPERF_RUNS} runs per benchmark, the "
             "fastest and the slowest dropped, one run that missed the target counted as the slowest, more than "
             "one making the score invalid. The mlperf column says when there are too few runs for an MLPerf "
             "score; then the mean of the reaching runs is shown (time_to_target_s). not_reached counts repeats "
             "that never reached the target. Cost to target = price_per_hour x time to target (the clock of the "
             "cost per trial). val_epoch_s is validation time per epoch, shown apart (it is in the time to target, "
             "not in images/s). Speed-ups against node type "
             f"'{ref}' for the same factors: in images/s and in time to target (MLPerf score where there is one, "
             "else the mean). " + FAIRNESS_NOTE, "note"),
        Table(view, row_style=["warn" if n or _timing_style(t) else None
                               for n, t in zip(ttt.get("not_reached", []), ttt.get("timing", []))],
              formats={"time_to_target_mlperf_s": _fmt_num(1), "target_epoch": _fmt_num(1),
                       "val_epoch_s": _fmt_num(3), "images_per_s": _fmt_num(1), "speedup_images_per_s": speedup,
                       "speedup_time_to_target": speedup}, empty="no completed trials"),
        c.figure("plots/time_to_target.png", f"Time and cost to {target_label(target)} per architecture and node "
                 "type (largest epoch budget; mean ± sd)"),
    ], anchor="time-to-target")


def isic_section(c: ReportContent) -> Section | None:
    if c.domain is None:
        return None
    isic, best_isic = c.domain.isic, c.domain.best_isic
    scorer, absent_rule = c.domain.isic_scorer, c.domain.absent_class_rule
    blocks: list = [Text("The ISIC challenge's own metrics (definitions of its published scorer, "
                         f"{scorer or 'isic-challenge-scoring'}): balanced multiclass accuracy (its ranking metric: "
                         "mean per-class recall, tied maxima count as wrong) and macro means over classes of AUC, "
                         "AUC above 80 % sensitivity, average precision, and sensitivity and specificity of "
                         "p > 0.5; mean ± sd over repeats.", "note")]
    if absent_rule:
        blocks.append(Text(f"Some test splits lack a class: {absent_rule}.", "warn"))
    view = _mean_sd_columns(isic, tables.ISIC_TABLE) if not isic.empty else isic
    blocks.append(Table(view, empty="no trial recorded ISIC metrics"))
    if not best_isic.empty:
        blocks.append(Table(best_isic, "ISIC scores per class of the best trial (by macro F1)",
                            formats={col: _fmt_num(4) for col in best_isic.columns
                                     if col not in ("class", "in test split")}))
    return Section("ISIC challenge metrics", blocks, anchor="isic")


def estimate_section(c: ReportContent) -> Section | None:
    if c.domain is None or c.domain.estimate_vs_actual.empty:
        return None
    table = c.domain.estimate_vs_actual
    return Section("Estimate vs actual", [
        Text("The plan stored in run.json when the run started (orchestrator submit --dry-run prints the same), "
             "beside what the run took: trial-hours and cost (price_per_hour x trial wall time, trials that ran) "
             "per node type; wall hours for the whole run. The throughput source says whether the plan used "
             "a calibration just before the run (submit --calibrate), earlier measurements in the store or the "
             "reference figures; error = (estimate - actual) / actual.", "note"),
        Table(table, formats={col: _fmt_num(2) for col in table.columns if "hours" in col}
              | {col: _fmt_num(1) for col in table.columns if col.endswith("_error_pct")}
              | {col: _fmt_usd for col in table.columns if col.startswith("cost_usd")}, empty="no estimate stored"),
    ], anchor="estimate")


SECTIONS = [_summary_section, _run_section, statistics_section, _table_i_section, _scores_section, _hardware_section,
            isic_section,
            target_section, estimate_section, _cost_section, _devices_section,
            _problems_section, _best_section, _evidence_section, _all_trials_section]


def sections(content: ReportContent) -> list[Section]:
    """The report's sections in order (a builder may leave its section out when it has nothing to show)."""
    return [s for s in (build(content) for build in SECTIONS) if s is not None]

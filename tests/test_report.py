"""The comparison report: pure tables from hand-made records, rendering (escaping, self-contained HTML, files),
rebuilding from stored records, the side-by-side comparison, a headless-browser render, and one tiny real study
against the S3 endpoint."""
from __future__ import annotations

import hashlib
import io
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from orchestrator.run_store import RunPaths, write_trial_record
from orchestrator.report import REPORT_FILES, SYNTHETIC_NOTE, build_report, write_report
from orchestrator.report.compare import comparison_table, write_comparison
from orchestrator.report.tables import (cpu_reference, format_scores, pareto_front, problem_trials,
                                        table_accuracy_by_epochs, table_cost, table_devices, table_hardware,
                                        table_scores, trial_table)
from workers.records import TrialRecord
from workers.storage import LocalStore

CLASSES = ["melanoma", "nevus", "basal cell carcinoma"]
PRICES = {"cpu": 1.0, "gpu": 3.6, "a100": 7.2, "cpu-large": 2.0}
RESOURCES = {"cpu": {"CPU": 1}, "gpu": {"CPU": 1, "GPU": 1}, "a100": {"CPU": 4, "GPU": 1}, "cpu-large": {"CPU": 8}}
FIXED_TIME = "2026-01-02T03:04:05+00:00"


def make_record(arch="cnn", epochs=2, node="cpu", repeat=0, acc=0.5, f1=None, prec=None, recall=None,
                ips=100.0, epoch_s=1.0, total_s=36.0, status="completed", device_kind=None, device_name=None,
                simulated=None, reason=None, error=None, retries=0, classes=CLASSES, price="default",
                experiment="study", mismatch_flag=None, framework=None, precision=None, sharing=None,
                devices=None, val_f1=None, augmentation="none") -> dict:
    """A trial record shaped like the ones ``workers.train.run_trial`` writes (only what the report reads).
    ``framework`` (default: tensorflow on cpu node types, jax elsewhere), ``precision`` (policy), ``sharing``
    (trials on the node at once) and ``devices`` (devices used) set the trial's stack and timing isolation;
    ``val_f1`` the validation F1 that selection ranks on (default: the test F1)."""
    framework = framework or ("tensorflow" if node.startswith("cpu") else "jax")
    digest = hashlib.sha1(f"{arch}/{epochs}/{node}/{repeat}".encode()).hexdigest()[:8]
    if augmentation != "none":
        digest = hashlib.sha1(f"{arch}/{epochs}/{node}/{repeat}/{augmentation}".encode()).hexdigest()[:8]
    tid = f"{arch}-e{epochs}-{node}-{augmentation}-{framework}-r{repeat}-{digest}"
    config = {"trial_id": tid, "experiment": experiment, "architecture": arch, "epochs": epochs, "node_type": node,
              "augmentation": augmentation, "framework": framework, "repeat": repeat, "resources": RESOURCES[node],
              "price_per_hour": PRICES[node] if price == "default" else price,
              "dataset": {"source": "synthetic", "image_size": [16, 16]}}
    record = {"trial_id": tid, "config": config, "status": status, "retries": retries}
    if reason or error:
        record["error"] = reason or error
    if status != "completed":
        return record
    f1 = acc - 0.1 if f1 is None else f1
    n = len(classes)
    cm = np.full((n, n), 1) + np.diag(np.full(n, int(acc * 20)))
    kind = device_kind or ("gpu" if RESOURCES[node].get("GPU") else "cpu")
    record.update({
        "metrics": {"accuracy": acc, "balanced_accuracy": acc, "precision_macro": prec if prec is not None else acc,
                    "recall_macro": recall if recall is not None else acc, "f1_macro": f1,
                    "confusion_matrix": cm.tolist(),
                    "validation": {"accuracy": acc, "f1_macro": f1 if val_f1 is None else val_f1},
                    "ci95": {"accuracy": [acc - 0.1, acc + 0.1], "f1_macro": [f1 - 0.1, f1 + 0.1]},
                    "per_class": {c: {"precision": acc, "recall": acc, "f1": f1, "support": 5} for c in classes},
                    "isic": {"scorer": "isic-challenge-scoring 5.6.0", "balanced_multiclass_accuracy": acc,
                             "macro": {"auc": 0.9, "ap": 0.8, "auc_sens_80": 0.1, "sensitivity": acc,
                                       "specificity": 0.95},
                             "per_class": {c: {"sensitivity": acc, "specificity": 0.95, "auc": 0.9, "ap": 0.8,
                                               "auc_sens_80": 0.1} for c in classes}, "absent_classes": []}},
        "history": [{"epoch": e + 1, "accuracy": 0.3 + 0.1 * e, "loss": 2.0 - 0.2 * e, "val_accuracy": 0.25 + 0.1 * e,
                     "val_loss": 2.1 - 0.2 * e, "val_balanced_accuracy": acc * (e + 1) / epochs, "val_s": 0.1,
                     "wall_s": 5 + (e + 1) * (epoch_s + 0.1)} for e in range(epochs)],
        "timings": {"fit_s": epoch_s * epochs, "first_epoch_s": epoch_s * 2, "steady_epoch_s": epoch_s,
                    "images_per_s": ips, "total_s": total_s},
        "device": {"requested": node, "used": {"kind": kind, "name": device_name or f"Test {kind.upper()}", "count": 1},
                   "backend": framework, "simulated": simulated,
                   "mismatch": (kind != node) if mismatch_flag is None else mismatch_flag, "host": "h"},
        "class_names": list(classes),
        "data": {"synthetic": True, "n_train": 30, "n_val": 6, "n_test": 12,
                 "augmentor": {"mode": "add", "samples_per_class": 5}},
        "node_id": "abcdef0123456789",
    })
    if precision is not None:
        record["precision_policy"] = precision
    if sharing is not None:
        record["trials_sharing_node"] = sharing
    if devices is not None:
        record["device"].update({"devices_used": devices, "global_batch": 32, "per_device_batch": 32 // devices})
    return record


RUN_INFO = {"experiment": "study", "run_id": "20260101-000000-abcd", "started": "2026-01-01T00:00:00+00:00",
            "finished": "2026-01-01T00:10:00+00:00", "dataset_source": "synthetic", "address": "local",
            "nodes": [{"name": "10.0.0.1:abcdef01", "resources": {"CPU": 2.0, "GPU": 1.0, "memory": 8 * 2**30,
                                                                  "node:10.0.0.1": 1.0}}],
            "environment": {"python": "3.11", "packages": {"ray": "2.60.0", "keras": "3.15.1"},
                            "git_commit": "abc1234"},
            "target": {"metric": "val_balanced_accuracy", "value": 0.75, "mode": "max"},
            "estimate": {"rows": [{"node_type": "cpu", "trials": 5, "slots": 2, "trial_hours": 0.05, "wall_hours": 0.03,
                                   "cost_usd": 0.05, "throughput_source": "reference (5 trials)"},
                                  {"node_type": "gpu", "trials": 2, "slots": 1, "trial_hours": 0.01, "wall_hours": 0.01,
                                   "cost_usd": 0.04, "throughput_source": "reference (2 trials)"}],
                         "total": {"trials": 8, "trial_hours": 0.06, "wall_hours": 0.03, "cost_usd": 0.09}}}


def study_records() -> list[dict]:
    """cnn and lstm, 2 and 4 epochs, cpu and gpu, two repeats of cnn/2/cpu, plus failed and infeasible trials."""
    return [
        make_record("cnn", 2, "cpu", 0, acc=0.5, ips=100, epoch_s=2.0, total_s=36),
        make_record("cnn", 2, "cpu", 1, acc=0.7, ips=120, epoch_s=1.8, total_s=36),
        make_record("cnn", 4, "cpu", 0, acc=0.8, ips=110, epoch_s=1.9, total_s=72),
        make_record("cnn", 2, "gpu", 0, acc=0.6, ips=1000, epoch_s=0.2, total_s=10),
        make_record("lstm", 2, "cpu", 0, acc=0.4, ips=50, epoch_s=4.0, total_s=72),
        make_record("lstm", 4, "gpu", 0, acc=0.9, ips=400, epoch_s=0.5, total_s=20, retries=1),
        make_record("lstm", 2, "gpu", 0, status="failed", error="RuntimeError: out of memory on device 0"),
        make_record("cnn", 4, "a100", 0, status="infeasible",
                    reason="node type 'a100' is not runnable on this cluster: no node offers CPU=4"),
    ]


@pytest.fixture(scope="module")
def report_files() -> dict[str, bytes]:
    return build_report(study_records(), RUN_INFO, generated=FIXED_TIME)


# ------------------------------------------------------------------------------------------------- tables
def test_trial_table_one_typed_row_per_trial():
    df = trial_table(study_records())
    assert len(df) == 8
    assert df["epochs"].dtype == "Int64" and df["accuracy"].dtype == "float64"
    row = df[(df["architecture"] == "cnn") & (df["node_type"] == "gpu")].iloc[0]
    assert row["cost_usd"] == pytest.approx(3.6 * 10 / 3600)
    assert row["device_check"] == "ok" and not row["device_mismatch"]
    no_price = trial_table([make_record(price=None)])
    assert pd.isna(no_price["cost_usd"].iloc[0])


def test_table_i_is_mean_accuracy_percent_by_architecture_and_epochs():
    t1 = table_accuracy_by_epochs(trial_table(study_records()))
    assert list(t1.columns) == ["2 epochs (%)", "4 epochs (%)"]
    # cnn, 2 epochs: cpu repeats 0.5 and 0.7 and gpu 0.6 -> 60 %
    assert t1.loc["cnn", "2 epochs (%)"] == pytest.approx(60.0)
    assert t1.loc["cnn", "4 epochs (%)"] == pytest.approx(80.0)
    assert t1.loc["lstm", "2 epochs (%)"] == pytest.approx(40.0)  # the failed gpu trial does not count
    assert t1.loc["lstm", "4 epochs (%)"] == pytest.approx(90.0)


def test_tables_ii_iii_show_mean_and_sd_over_repeats():
    scores = table_scores(trial_table(study_records()))
    row = scores[(scores["node_type"] == "cpu") & (scores["epochs"] == 2) & (scores["architecture"] == "cnn")].iloc[0]
    assert row["repeats"] == 2
    assert row["accuracy_mean"] == pytest.approx(0.6)
    assert row["accuracy_sd"] == pytest.approx(np.std([0.5, 0.7], ddof=1))
    assert row["f1_mean"] == pytest.approx(0.5)
    shown = format_scores(scores)
    text = shown[(shown["node_type"] == "cpu") & (shown["epochs"] == 2) & (shown["architecture"] == "cnn")]
    assert text["accuracy"].iloc[0] == "0.6000 ± 0.1414"
    single = shown[(shown["node_type"] == "gpu") & (shown["architecture"] == "cnn")]
    assert single["accuracy"].iloc[0] == "0.6000"  # one repeat: no spread to show
    assert set(scores["node_type"]) == {"cpu", "gpu"}


def test_hardware_table_speedup_against_cpu_for_the_same_factors_only():
    records = [make_record("cnn", 2, "cpu", 0, ips=100, epoch_s=2.0, framework="jax"),
               make_record("cnn", 2, "cpu", 1, ips=120, epoch_s=1.8, framework="jax"),
               make_record("cnn", 4, "cpu", 0, ips=300, framework="jax"),     # other epochs: never pooled
               make_record("cnn", 2, "gpu", 0, ips=1000, framework="jax"),
               make_record("cnn", 4, "gpu", 0, ips=1200, framework="jax")]
    hw = table_hardware(trial_table(records))
    by = hw.set_index(["architecture", "epochs", "node_type"])
    assert by.loc[("cnn", 2, "cpu"), "images_per_s"] == pytest.approx(110.0)  # mean of 100 and 120
    assert by.loc[("cnn", 2, "cpu"), "speedup_vs_cpu"] == pytest.approx(1.0)
    assert by.loc[("cnn", 2, "gpu"), "speedup_vs_cpu"] == pytest.approx(1000 / 110)
    assert by.loc[("cnn", 4, "gpu"), "speedup_vs_cpu"] == pytest.approx(1200 / 300)
    assert by.loc[("cnn", 2, "cpu"), "steady_epoch_s_sd"] == pytest.approx(np.std([2.0, 1.8], ddof=1))
    assert set(hw["speedup_reference"]) == {"cpu"} and set(hw["comparable"]) == {"yes"}
    assert by.loc[("cnn", 2, "gpu"), "stack"] == "jax"


def test_speedup_reference_is_a_cpu_only_node_type_when_cpu_is_absent():
    df = trial_table([make_record("cnn", 2, "cpu-large", ips=200, framework="jax"),
                      make_record("cnn", 2, "a100", ips=2000)])
    assert cpu_reference(df) == "cpu-large"
    hw = table_hardware(df).set_index("node_type")
    assert hw.loc["a100", "speedup_vs_cpu"] == pytest.approx(10.0)
    no_cpu = table_hardware(trial_table([make_record("cnn", 2, "gpu")]))
    assert no_cpu["speedup_vs_cpu"].isna().all()


def test_cost_per_trial_per_accuracy_point_and_pareto_front():
    records = [make_record("a", 2, "cpu", acc=0.6, f1=0.5, total_s=36),    # $0.01, F1 .5  -> front
               make_record("b", 2, "cpu", acc=0.7, f1=0.6, total_s=72),    # $0.02, F1 .6  -> front
               make_record("c", 2, "cpu", acc=0.7, f1=0.55, total_s=108),  # $0.03: dominated by b
               make_record("d", 2, "cpu", acc=0.5, f1=0.4, total_s=36)]    # $0.01, worse than a
    cost = table_cost(trial_table(records)).set_index("architecture")
    assert cost.loc["a", "cost_per_trial_usd"] == pytest.approx(0.01)
    assert cost.loc["b", "cost_per_trial_usd"] == pytest.approx(0.02)
    assert cost.loc["a", "usd_per_accuracy_point"] == pytest.approx(0.01 / 60)
    assert cost["pareto"].to_dict() == {"a": True, "b": True, "c": False, "d": False}


def test_pareto_front_ignores_missing_values_and_keeps_ties():
    pts = pd.DataFrame({"cost": [1.0, 1.0, 2.0, np.nan, 0.5], "f1": [0.5, 0.5, 0.7, 0.9, np.nan]})
    assert pareto_front(pts, "cost", "f1").tolist() == [True, True, True, False, False]


def test_problem_trials_list_failed_infeasible_and_retried_with_reasons():
    problems = problem_trials(trial_table(study_records()))
    by_status = problems.groupby("status")["reason"].apply(list).to_dict()
    assert by_status["failed"] == ["RuntimeError: out of memory on device 0"]
    assert "no node offers CPU=4" in by_status["infeasible"][0]
    assert by_status["completed"] == ["completed after 1 retry"]
    assert problems["status"].iloc[0] == "failed"


def test_device_mismatch_uses_resources_not_node_type_names():
    records = [make_record("cnn", 2, "gpu", device_kind="cpu", device_name="Xeon"),       # asked for a GPU, got CPU
               make_record("cnn", 2, "a100", mismatch_flag=True),                          # GPU node type on a GPU
               make_record("cnn", 4, "gpu", device_kind="cpu", simulated="gpu")]           # a simulated accelerator
    df = trial_table(records)
    assert df["device_check"].tolist() == ["ok", "MISMATCH", "simulated"]
    devices = table_devices(df)
    assert devices["check"].iloc[0] == "MISMATCH" and records[0]["trial_id"] in devices["trial_ids"].iloc[0]
    # Timings of a trial that ran on other hardware say nothing about its node type: left out of hardware and cost.
    hw = table_hardware(df)
    assert hw["trials"].sum() == 2 and table_cost(df)["trials"].sum() == 2


def _history(values, wall):
    return [{"epoch": i + 1, "val_balanced_accuracy": v, "wall_s": w, "val_s": 0.1}
            for i, (v, w) in enumerate(zip(values, wall))]


def test_time_to_target_from_hand_made_histories():
    from orchestrator.report.tables import time_to_target

    target = {"metric": "val_balanced_accuracy", "value": 0.75, "mode": "max"}
    # the first epoch at or above the target counts, with its wall clock since the trial started
    assert time_to_target(_history([0.5, 0.75, 0.9], [12.0, 20.5, 29.0]), target) == (2, 20.5)
    assert time_to_target(_history([0.5, 0.74, 0.6], [12.0, 20.5, 29.0]), target) == (None, None)
    assert time_to_target([{"epoch": 1, "val_balanced_accuracy": float("nan"), "wall_s": 3.0},
                           {"epoch": 2, "val_balanced_accuracy": 0.8, "wall_s": 6.0}], target) == (2, 6.0)
    assert time_to_target([{"epoch": 1, "val_balanced_accuracy": 0.8}], target) == (1, None)  # no clock recorded
    loss = {"metric": "val_loss", "value": 0.5, "mode": "min"}
    assert time_to_target([{"epoch": 1, "val_loss": 0.9, "wall_s": 4.0},
                           {"epoch": 2, "val_loss": 0.4, "wall_s": 7.5}], loss) == (2, 7.5)
    assert time_to_target([], target) == (None, None)


def _reaching(node, repeat, seconds, epochs=3):
    """A record whose history reaches the 0.75 target at its last epoch, ``seconds`` after the trial started
    (or never, for ``seconds=None``)."""
    record = make_record("cnn", epochs, node, repeat, acc=0.8, ips=100 if node == "cpu" else 1000, framework="jax")
    final = 0.8 if seconds is not None else 0.7
    record["history"] = _history([0.3] * (epochs - 1) + [final], [1.0] * (epochs - 1) + [seconds or 50.0])
    return record


def test_time_to_target_table_mlperf_mean_not_reached_and_speedups():
    from orchestrator.report.tables import mlperf_mean, table_time_to_target

    cpu = [10.0, 20.0, 30.0, 40.0, 50.0, 1000.0]
    gpu = [2.0, 3.0, 4.0]
    records = [_reaching("cpu", i, s) for i, s in enumerate(cpu)] + [_reaching("cpu", 9, None)]
    records += [_reaching("gpu", i, s) for i, s in enumerate(gpu)]
    ttt = table_time_to_target(trial_table(records)).set_index("node_type")
    assert ttt.loc["cpu", "repeats"] == 7 and ttt.loc["cpu", "reached"] == 6 and ttt.loc["cpu", "not_reached"] == 1
    assert ttt.loc["cpu", "time_to_target_s"] == pytest.approx(np.mean(cpu))
    assert ttt.loc["cpu", "time_to_target_s_sd"] == pytest.approx(np.std(cpu, ddof=1))
    # MLPerf: the run that missed the target is the slowest, dropped with the fastest (10)
    assert ttt.loc["cpu", "time_to_target_mlperf_s"] == pytest.approx(np.mean([20.0, 30.0, 40.0, 50.0, 1000.0]))
    assert pd.isna(ttt.loc["gpu", "time_to_target_mlperf_s"])                # fewer than 5 runs
    assert "too few runs for an MLPerf score (3 of 5)" in ttt.loc["gpu", "mlperf"]
    assert ttt.loc["cpu", "cost_to_target_usd"] == pytest.approx(np.mean(cpu) * PRICES["cpu"] / 3600)
    assert ttt.loc["gpu", "speedup_time_to_target"] == pytest.approx(228.0 / 3.0)  # MLPerf score vs plain mean
    assert ttt.loc["gpu", "speedup_images_per_s"] == pytest.approx(10.0)
    assert ttt.loc["cpu", "val_epoch_s"] == pytest.approx(0.1)
    assert mlperf_mean(pd.Series([5.0, 1.0, 3.0, 2.0, 4.0])) == pytest.approx(3.0)


def test_estimate_vs_actual_puts_the_plan_beside_the_run():
    from orchestrator.report.tables import table_estimate_vs_actual

    table = table_estimate_vs_actual(RUN_INFO["estimate"], trial_table(study_records()), 600.0).set_index("node_type")
    assert table.loc["cpu", "trials_planned"] == 5 and table.loc["cpu", "trials_ran"] == 4
    assert table.loc["cpu", "trial_hours_actual"] == pytest.approx((36 + 36 + 72 + 72) / 3600)
    assert table.loc["gpu", "cost_usd_actual"] == pytest.approx(3.6 * (10 + 20) / 3600)
    assert table.loc["total", "wall_hours_actual"] == pytest.approx(600 / 3600)
    assert table.loc["total", "cost_usd_est"] == pytest.approx(0.09)
    assert table_estimate_vs_actual(None, trial_table(study_records()), None).empty


# ------------------------------------------------------------------------------------------------ rendering
def test_report_has_every_file_section_and_embedded_figure(report_files):
    for name in REPORT_FILES:
        assert report_files[name], name
    page = report_files["index.html"].decode()
    for text in ("Table I", "Tables II/III", "Hardware comparison", "Cost and Pareto front", "Devices",
                 "Failed, infeasible and retried trials", "Learning curves and confusion matrices", "All trials",
                 "SYNTHETIC", "20260101-000000-abcd", "2026-01-01 00:00:00 UTC", "abc1234", "ray 2.60.0",
                 "10.0.0.1:abcdef01", "out of memory on device 0", "no node offers CPU=4", "speedup_vs_cpu",
                 "usd_per_accuracy_point", "melanoma", "Time and cost to target", "val_balanced_accuracy &gt;= 0.75",
                 "speedup_time_to_target", "not_reached", "val_epoch_s", "ISIC challenge metrics",
                 "balanced_multiclass_accuracy", "isic-challenge-scoring 5.6.0", "Estimate vs actual",
                 "cost_usd_est", "reference (5 trials)",
                 "Augmentor stage", "add: 5 generated images added to every training class"):
        assert text in page, text
    assert SYNTHETIC_NOTE in page
    pngs = {k: v for k, v in report_files.items() if k.startswith("plots/")}
    assert {"plots/accuracy_vs_epochs.png", "plots/time_by_hardware.png", "plots/f1_vs_cost.png",
            "plots/time_to_target.png"} <= set(pngs)
    assert any(k.startswith("plots/curves_") for k in pngs) and any(k.startswith("plots/confusion_") for k in pngs)
    assert all(v.startswith(b"\x89PNG\r\n\x1a\n") for v in pngs.values())
    assert page.count("src='data:image/png;base64,") == len(pngs)
    md = report_files["report.md"].decode()
    assert "SYNTHETIC" in md and "| cnn | 60.00 | 80.00 |" in md and "![" in md


def _without_table_script(page: str) -> str:
    """The page less its one allowed script, which must be exactly ``TABLE_SCRIPT`` and allowed by its hash."""
    import base64
    import hashlib

    from orchestrator.report.render import TABLE_SCRIPT

    digest = base64.b64encode(hashlib.sha256(TABLE_SCRIPT.encode()).digest()).decode()
    assert f"script-src 'sha256-{digest}'" in page and "unsafe-inline' ; script" not in page
    assert page.count(f"<script>{TABLE_SCRIPT}</script>") == 1
    return page.replace(f"<script>{TABLE_SCRIPT}</script>", "")


def test_html_is_self_contained():
    page = _without_table_script(build_report(study_records(), RUN_INFO)["index.html"].decode())
    assert not re.search(r"<(script|link|iframe|object|embed)\b", page, re.I)
    links = re.findall(r"""\b(?:src|href|action|srcset|poster)\s*=\s*['"]?([^'"\s>]*)""", page, re.I)
    assert links and all(v.startswith(("data:image/png;base64,", "#")) for v in links)  # data: URIs and anchors
    assert not re.search(r"url\(|@import", page, re.I)
    assert "Content-Security-Policy" in page


def test_user_strings_are_escaped_in_html_and_markdown():
    evil = '<script>alert("x")</script>'
    records = [make_record("cnn", 2, "cpu", experiment=evil, classes=["melanoma", f"nevus{evil}", "a$b$c"]),
               make_record("cnn", 2, "gpu", status="failed", error=f"boom <img src=x onerror=alert(1)> & {evil}")]
    run_info = {**RUN_INFO, "experiment": evil, "run_id": "r<b>1</b>"}
    files = build_report(records, run_info, generated=FIXED_TIME)
    page, md = _without_table_script(files["index.html"].decode()), files["report.md"].decode()
    for text in (page, md):
        assert "<script" not in text.lower() and "<img src=x" not in text and "<b>1" not in text
        assert "&lt;script&gt;alert(" in text and "&lt;img src=x onerror=alert(1)&gt;" in text
    assert "nevus&lt;script&gt;" in page  # the class name is shown, escaped
    assert not re.search(r"<(script|img src=x)", page, re.I)


def test_summary_json_names_the_best_trials(report_files):
    summary = json.loads(report_files["summary.json"])
    records = study_records()
    best_f1 = max((r for r in records if r["status"] == "completed"), key=lambda r: r["metrics"]["f1_macro"])
    assert summary["best_by_f1"]["trial_id"] == best_f1["trial_id"]
    assert summary["best_by_f1"]["f1_macro"] == pytest.approx(0.8)
    assert summary["best_by_accuracy"]["architecture"] == "lstm" and summary["best_by_accuracy"]["epochs"] == 4
    assert summary["counts"] == {"completed": 6, "failed": 1, "infeasible": 1}
    assert summary["synthetic_data"] is True
    assert summary["selected_on"] == "validation" and summary["best_by_f1"]["selected_on"] == "validation f1_macro"
    # Table I per node type: cnn at 2 epochs is 0.5 and 0.7 on cpu (60 %), 0.6 on gpu
    assert summary["table_i_accuracy_pct"]["augmentation none, node type cpu"]["cnn"]["2 epochs (%)"] == \
        pytest.approx(60.0)
    assert summary["table_i_accuracy_pct"]["augmentation none, node type gpu"]["cnn"]["2 epochs (%)"] == \
        pytest.approx(60.0)
    assert {p["status"] for p in summary["problems"]} == {"failed", "infeasible", "completed"}
    assert summary["pareto_front"] and len(summary["trials"]) == 8


def test_results_parquet_and_csv_are_readable_with_pandas(report_files):
    pq = pd.read_parquet(io.BytesIO(report_files["results.parquet"]))
    csv = pd.read_csv(io.BytesIO(report_files["results.csv"]))
    assert len(pq) == len(csv) == 8
    assert list(pq.columns) == list(csv.columns)
    assert pq["accuracy"].tolist() == pytest.approx(csv["accuracy"].tolist(), nan_ok=True)
    assert set(pq["status"]) == {"completed", "failed", "infeasible"}


def test_minimal_records_still_give_a_report():
    records = [{"trial_id": "sleep-1", "status": "completed"}, {"trial_id": "x", "status": "failed"},
               make_record("cnn", 2, "cpu")]
    files = build_report(records, {})
    assert set(REPORT_FILES) <= set(files)
    assert build_report([], {})["index.html"].startswith(b"<!doctype html>")


def test_mismatch_is_flagged_visibly_in_the_page():
    records = [make_record("cnn", 2, "gpu", device_kind="cpu", device_name="Xeon"), make_record("cnn", 2, "cpu")]
    files = build_report(records, RUN_INFO)
    page = files["index.html"].decode()
    assert "DEVICE MISMATCH" in page
    assert re.search(r"<tr class='bad'>(?:(?!</tr>).)*MISMATCH", page)
    assert json.loads(files["summary.json"])["device_mismatches"] == [records[0]["trial_id"]]
    assert "DEVICE MISMATCH" in files["report.md"].decode()


# -------------------------------------------------------------------------------------- stored records, rebuild
def _store_run(store, paths: RunPaths, records: list[dict], run_info: dict) -> None:
    store.put_text(paths.run_info, json.dumps(run_info))
    for record in records:
        write_trial_record(store, paths, TrialRecord.model_validate(record))


def _without_generated(page: bytes) -> str:
    return re.sub(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", "T", page.decode())


def test_rebuild_from_stored_records_gives_identical_tables(tmp_path):
    paths = RunPaths("study", RUN_INFO["run_id"])
    first = LocalStore(tmp_path / "a")
    records = study_records()
    _store_run(first, paths, records[:2] + records[3:4] + records[-2:], RUN_INFO)
    first.put_bytes(paths.report("plots/curves_stale.png"), b"old")
    url = write_report(first, paths)
    assert url.endswith("study/20260101-000000-abcd/report/index.html")
    built = {k: first.get_bytes(k) for k in first.list(paths.report(""))}
    assert paths.report("plots/curves_stale.png") not in built
    assert {paths.report(n) for n in REPORT_FILES} <= set(built)

    # A copy holding only the records (no report) rebuilds the same tables.
    second = LocalStore(tmp_path / "b")
    for key in first.list(paths.root):
        if "/report/" not in key:
            second.put_bytes(key, first.get_bytes(key))
    write_report(second, paths)
    write_report(first, paths)  # and a second build in place
    for store in (first, second):
        assert store.get_bytes(paths.report("results.csv")) == built[paths.report("results.csv")]
        pd.testing.assert_frame_equal(pd.read_parquet(io.BytesIO(store.get_bytes(paths.report("results.parquet")))),
                                      pd.read_parquet(io.BytesIO(built[paths.report("results.parquet")])))
        assert _without_generated(store.get_bytes(paths.report("index.html"))) == \
            _without_generated(built[paths.report("index.html")])
        summary = json.loads(store.get_bytes(paths.report("summary.json")))
        old = json.loads(built[paths.report("summary.json")])
        assert {k: v for k, v in summary.items() if k != "generated"} == \
            {k: v for k, v in old.items() if k != "generated"}


def test_comparison_page_side_by_side_with_differences(tmp_path):
    store = LocalStore(tmp_path / "store")
    a, b = RunPaths("study", "run-a"), RunPaths("study", "run-b")
    _store_run(store, a, [make_record("cnn", 2, "cpu", acc=0.5), make_record("lstm", 2, "cpu", acc=0.4)],
               {**RUN_INFO, "run_id": "run-a"})
    _store_run(store, b, [make_record("cnn", 2, "cpu", acc=0.75, ips=150), make_record("cnn", 4, "cpu", acc=0.8)],
               {**RUN_INFO, "run_id": "run-b", "experiment": "<b>evil</b>"})
    table = comparison_table([make_record("cnn", 2, "cpu", acc=0.5)],
                             [make_record("cnn", 2, "cpu", acc=0.75, sharing=2)])
    assert table["accuracy_diff"].iloc[0] == pytest.approx(0.25)
    assert table["timing_a"].iloc[0] == "isolated" and table["timing_b"].iloc[0] == "shared node"
    url = write_comparison(store, a, b)
    page = store.get_text(url[len(store.uri) + 1:])
    assert "run-a" in page and "run-b" in page and "+0.2500" in page
    assert "accuracy Δ" in page and "<td class='num up'>+0.2500</td>" in page
    assert "A only" in page and "B only" in page
    assert "&lt;b&gt;evil&lt;/b&gt;" in page and "<b>evil" not in page
    assert "SYNTHETIC" in page and "--bad-bg" in page  # same stylesheet as the report
    assert "data:image/png;base64," in page
    csv = pd.read_csv(io.BytesIO(store.get_bytes(a.report("compare-study-run-b.csv"))))
    assert set(csv["present"]) == {"both", "A only", "B only"}


# --------------------------------------------------------------------------------------------- headless browser
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _chromium(tmp_path, *args) -> subprocess.CompletedProcess:
    return subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                           "--disable-background-networking", "--disable-component-update", "--disable-sync",
                           "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'profile'}", *args],
                          capture_output=True, text=True, timeout=120)


def _written(files: dict[str, bytes], folder: Path) -> Path:
    """The report's files written under ``folder`` as a store would lay them out; returns ``folder``."""
    for name, data in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    return folder


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install -y chromium)")
def test_headless_browser_renders_tables_and_figures(tmp_path, report_files):
    folder = _written(report_files, tmp_path / "report")
    url = (folder / "index.html").as_uri()
    dom = _chromium(tmp_path, "--dump-dom", url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    html = dom.stdout
    n_figures = sum(1 for k in report_files if k.startswith("plots/"))
    assert html.count("<table") >= 10
    assert len(re.findall(r"<img [^>]*src=\"data:image/png;base64,", html)) == n_figures
    assert "Table I: accuracy by architecture and epochs" in html and "SYNTHETIC" in html
    for title in ("Time and cost to target", "ISIC challenge metrics", "Estimate vs actual"):
        assert re.search(rf"<h2[^>]*>{title}</h2>", html), title
    assert "speedup_time_to_target" in html and "balanced_multiclass_accuracy" in html

    shot = tmp_path / "shot.png"
    res = _chromium(tmp_path, "--hide-scrollbars", "--window-size=1280,2000", f"--screenshot={shot}", url)
    assert res.returncode == 0 and shot.exists(), res.stderr[-2000:]
    from PIL import Image

    image = np.asarray(Image.open(shot).convert("RGB"), dtype=float)
    assert image.shape[0] == 2000 and image.shape[1] == 1280
    assert shot.stat().st_size > 50_000
    assert image.std() > 20                                     # not a blank page
    assert len(np.unique(image.reshape(-1, 3)[::50], axis=0)) > 100  # text, tables and plot colours


# ------------------------------------------------------------------------------------------ tiny study on S3
@pytest.mark.slow
def test_tiny_study_on_s3_writes_every_report_file_under_the_run(ray_session, s3_endpoint, s3_bucket, tiny_spec,
                                                                  tmp_path):
    import boto3

    from orchestrator import Study

    spec = tiny_spec(storage={"uri": f"s3://{s3_bucket}/studies", "endpoint_url": s3_endpoint})
    outcome = Study(spec).run(show_progress=False, notify=lambda m: None)
    assert outcome.counts == {"completed": 1}
    url = outcome.report_url
    prefix = f"studies/tiny/{outcome.paths.run_id}/report/"
    assert url == f"s3://{s3_bucket}/{prefix}index.html"

    client = boto3.client("s3", endpoint_url=s3_endpoint)
    keys = {o["Key"] for page in client.get_paginator("list_objects_v2").paginate(Bucket=s3_bucket, Prefix=prefix)
            for o in page.get("Contents", [])}
    assert {prefix + n for n in REPORT_FILES} <= keys
    assert {prefix + "plots/accuracy_vs_epochs.png", prefix + "plots/f1_vs_cost.png"} <= keys
    assert any(k.startswith(prefix + "plots/confusion_") for k in keys)
    head = client.head_object(Bucket=s3_bucket, Key=prefix + "index.html")
    assert head["ContentType"].startswith("text/html")
    page = client.get_object(Bucket=s3_bucket, Key=prefix + "index.html")["Body"].read().decode()
    assert "SYNTHETIC" in page and outcome.paths.run_id in page

    # The records alone, copied out of S3, rebuild the same tables.
    local = LocalStore(tmp_path / "copy")
    for key in outcome.store.list(outcome.paths.root):
        if "/report/" not in key and "/tune/" not in key:
            local.put_bytes(key, outcome.store.get_bytes(key))
    write_report(local, outcome.paths)
    assert local.get_bytes(outcome.paths.report("results.csv")) == \
        outcome.store.get_bytes(outcome.paths.report("results.csv"))


# ------------------------------------------------------------------------------------------------- statistics
def test_best_trial_is_chosen_on_validation_where_test_disagrees():
    from orchestrator.report.tables import best_trial

    records = [make_record("cnn", 2, "cpu", 0, acc=0.9, f1=0.9, val_f1=0.2),   # best on test
               make_record("lstm", 2, "cpu", 0, acc=0.5, f1=0.4, val_f1=0.7)]  # best on validation
    best = best_trial(trial_table(records), "f1_macro")
    assert best["architecture"] == "lstm" and best["selected_on"] == "validation f1_macro"
    assert best["val_f1_macro"] == pytest.approx(0.7) and best["f1_macro"] == pytest.approx(0.4)
    md = build_report(records, RUN_INFO, generated=FIXED_TIME)["report.md"].decode()
    assert "Selected on the validation split" in md and "lstm" in md.split("## Best trial")[1][:400]
    assert "Selection basis" in md and "validation split" in md


def test_table_i_of_a_two_stage_study_gives_one_table_per_stage():
    records = [make_record("cnn", 2, "cpu", r, acc=acc, augmentation=aug)
               for aug, accs in (("none", (0.4, 0.4)), ("augmentor", (0.5, 0.5)), ("random", (0.8, 0.8)))
               for r, acc in enumerate(accs)]
    files = build_report(records, RUN_INFO, generated=FIXED_TIME)
    summary = json.loads(files["summary.json"])
    tables = summary["table_i_accuracy_pct"]
    assert set(tables) == {f"augmentation {a}, node type cpu" for a in ("augmentor", "none", "random")}
    assert tables["augmentation none, node type cpu"]["cnn"]["2 epochs (%)"] == pytest.approx(40.0)  # not 56.67
    assert tables["augmentation random, node type cpu"]["cnn"]["2 epochs (%)"] == pytest.approx(80.0)
    md = files["report.md"].decode()
    table_i = md.split("## Table I")[1].split("\n## ")[0]
    assert table_i.count("| cnn |") == 3 and "56.67" not in table_i
    assert "mean over repeats only" in table_i
    scores = md.split("## Tables II/III")[1].split("\n## ")[0]
    assert "augmentation none" in scores and "augmentation random" in scores and "95 % t-interval" in scores


def test_hardware_and_cost_notes_say_what_they_pool():
    """Hardware and cost rows are per setting and stack: they average repeats only, never epoch budgets."""
    records = [make_record("cnn", e, "cpu", r) for e in (2, 4) for r in (0, 1)]
    md = build_report(records, RUN_INFO, generated=FIXED_TIME)["report.md"].decode()
    for section in ("## Hardware comparison", "## Cost and Pareto front"):
        note = md.split(section)[1].split("\n## ")[0]
        assert "mean over repeats only" in note and "pooled over epochs" not in note


def test_tables_ii_iii_carry_a_t_interval_over_repeats():
    from scipy import stats

    scores = table_scores(trial_table(study_records()))
    row = scores[(scores["node_type"] == "cpu") & (scores["epochs"] == 2) & (scores["architecture"] == "cnn")].iloc[0]
    low, high = stats.t.interval(0.95, 1, loc=0.6, scale=stats.sem([0.5, 0.7]))
    assert (row["accuracy_ci_low"], row["accuracy_ci_high"]) == (pytest.approx(low), pytest.approx(high))


def test_report_says_how_each_dataset_was_split():
    record = make_record("cnn", 2, "cpu", 0)
    record["data"].update({"grouped_split": True, "grouped_by_lesion": False, "split_warnings": [],
                           "leakage": {"grouped": True, "duplicate_groups": 3, "across_split": 0, "max_distance": 4}})
    files = build_report([record], RUN_INFO, generated=FIXED_TIME)
    md = files["report.md"].decode()
    section = md.split("## Selection, uncertainty and split")[1].split("\n## ")[0]
    assert "validation split" in section and "bootstrap" in section and "t-interval" in section
    assert "| synthetic |" in section and "| no | yes | 3 | 0 |" in section
    assert "vary only the initialisation seed" in section
    split = json.loads(files["summary.json"])["split"][0]
    assert split["grouped_by_lesion"] is False and split["grouped_by_duplicates"] is True


# ------------------------------------------------------------------------------------------ summary first
def test_summary_names_the_best_architecture_per_node_type_by_validation(report_files):
    summary = json.loads(report_files["summary.json"])["summary_by_node_type"]
    by_node = {row["node_type"]: row for row in summary}
    assert set(by_node) == {"cpu", "gpu"}  # a100 never ran
    assert (by_node["cpu"]["best_architecture"], by_node["cpu"]["epochs"]) == ("cnn", 4)
    assert (by_node["gpu"]["best_architecture"], by_node["gpu"]["epochs"]) == ("lstm", 4)
    assert by_node["cpu"]["validation"] == pytest.approx(0.8) and by_node["cpu"]["time_to_target_s"] > 0
    assert by_node["gpu"]["cost_to_target_usd"] == pytest.approx(3.6 * by_node["gpu"]["time_to_target_s"] / 3600)
    page = report_files["index.html"].decode()
    assert page.index("<h2>Summary</h2>") < page.index("<h2>Run</h2>")  # the answer comes first
    assert "Best by validation: lstm (4 epochs) on gpu" in page


def test_summary_marks_times_and_costs_from_a_shared_node():
    """A quick-start-like run (two trials at once on one machine): the summary's time and cost to target carry
    the 'shared node' mark, as every hardware table does."""
    records = [make_record("cnn", 4, "cpu", 0, acc=0.8, sharing=2), make_record("lstm", 4, "cpu", 0, acc=0.6, sharing=2)]
    files = build_report(records, RUN_INFO, generated=FIXED_TIME)
    (row,) = json.loads(files["summary.json"])["summary_by_node_type"]
    assert row["timing"] == "shared node" and row["time_to_target_s"] is not None
    summary = files["report.md"].decode().split("## Summary")[1].split("\n## ")[0]
    table_rows = [line for line in summary.splitlines() if line.startswith("| cpu |")]
    assert table_rows and all("shared node" in line for line in table_rows)


def test_summary_chooses_on_validation_never_on_test():
    from orchestrator.report.summary import table_summary
    from orchestrator.report.tables import table_time_to_target

    good_val = make_record("cnn", 2, "gpu", 0, acc=0.9)
    good_test = make_record("lstm", 2, "gpu", 0, acc=0.6)
    good_val["metrics"]["accuracy"], good_test["metrics"]["accuracy"] = 0.5, 0.95  # test disagrees with validation
    records = [good_val, good_test]
    df = trial_table(records)
    from orchestrator.report.tables import DEFAULT_TARGET

    table = table_summary(records, df, table_time_to_target(df), DEFAULT_TARGET)
    (row,) = table.to_dict(orient="records")
    assert row["best_architecture"] == "cnn" and row["test_accuracy"] == pytest.approx(0.5)


def test_summary_explains_a_target_nobody_reached():
    records = [make_record("cnn", 2, "cpu", 0, acc=0.5)]
    page = build_report(records, {**RUN_INFO, "target": {"metric": "val_balanced_accuracy", "value": 0.99,
                                                         "mode": "max"}})["index.html"].decode()
    assert "No setting reached the target val_balanced_accuracy &gt;= 0.99" in page and "not reached" in page


def test_all_trials_table_lists_infeasible_trials_once(report_files):
    page = report_files["index.html"].decode()
    infeasible = next(r["trial_id"] for r in study_records() if r["status"] == "infeasible")
    assert page.count(f">{infeasible}<") == 1
    assert "class='interactive'" in page and "<input type='search'" in page


def _cdp_session(tmp_path, url: str, width: int = 1280, height: int = 1800):
    """Headless Chromium driven over the DevTools protocol (aiohttp's websocket client): returns
    ``(evaluate(js) -> value, screenshot(path), close())``."""
    profile = tmp_path / "cdp-profile"
    (profile / "DevToolsActivePort").unlink(missing_ok=True)
    proc = subprocess.Popen([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                             "--disable-background-networking", "--disable-component-update", "--disable-sync",
                             "--disable-dev-shm-usage", "--hide-scrollbars", f"--window-size={width},{height}",
                             f"--user-data-dir={profile}", "--remote-debugging-port=0", url],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        return _cdp_connect(proc, profile, url)
    except BaseException:
        proc.kill()
        proc.wait(timeout=30)
        raise


def _cdp_connect(proc, profile, url: str):
    import asyncio
    import base64 as b64
    import itertools
    import time as _time

    import aiohttp

    port_file = profile / "DevToolsActivePort"
    deadline = _time.monotonic() + 60
    while not port_file.exists() or not port_file.read_text().strip():
        assert _time.monotonic() < deadline and proc.poll() is None, "chromium did not start"
        _time.sleep(0.2)
    port = int(port_file.read_text().split()[0])
    loop = asyncio.new_event_loop()
    ids = itertools.count(1)

    async def connect():
        session = aiohttp.ClientSession()
        for _ in range(100):
            async with session.get(f"http://127.0.0.1:{port}/json/list") as resp:
                pages = [p for p in await resp.json() if p.get("type") == "page" and p.get("url") == url]
            if pages:
                break
            await asyncio.sleep(0.2)
        ws = await session.ws_connect(pages[0]["webSocketDebuggerUrl"], max_msg_size=0)
        return session, ws

    session, ws = loop.run_until_complete(connect())

    async def call(method, **params):
        n = next(ids)
        await ws.send_json({"id": n, "method": method, "params": params})
        while True:
            msg = await ws.receive_json()
            if msg.get("id") == n:
                assert "error" not in msg, msg
                return msg["result"]

    def evaluate(js: str):
        result = loop.run_until_complete(call("Runtime.evaluate", expression=js, returnByValue=True))
        assert "exceptionDetails" not in result, result
        return result["result"].get("value")

    def screenshot(path):
        data = loop.run_until_complete(call("Page.captureScreenshot", format="png"))["data"]
        path.write_bytes(b64.b64decode(data))

    def close():
        loop.run_until_complete(ws.close())
        loop.run_until_complete(session.close())
        loop.close()
        proc.terminate()
        proc.wait(timeout=30)

    deadline = _time.monotonic() + 60
    while evaluate("location.href + ' ' + document.readyState") != f"{url} complete":
        assert _time.monotonic() < deadline
        _time.sleep(0.2)
    return evaluate, screenshot, close


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install -y chromium)")
def test_browser_sorts_and_filters_the_trial_table(tmp_path, report_files):
    folder = _written(report_files, tmp_path / "report")
    evaluate, screenshot, close = _cdp_session(tmp_path, (folder / "index.html").as_uri())
    try:
        table = "document.querySelector('#trials table.interactive')"
        column = ("(function(name){var t=" + table + ";var i=Array.prototype.findIndex.call(t.tHead.rows[0].cells,"
                  "function(c){return c.textContent===name;});return Array.prototype.filter.call(t.tBodies[0].rows,"
                  "function(r){return !r.hidden;}).map(function(r){return r.cells[i].textContent;});})")
        click = "(function(name){Array.prototype.find.call(" + table + ".tHead.rows[0].cells,function(c){" \
                "return c.textContent===name;}).click();return true;})"
        box = f"document.getElementById({table}.getAttribute('data-filter'))"
        assert evaluate(f"!{box}.hidden")  # the script ran (allowed by its hash)
        before = evaluate(f"{column}('accuracy')")
        assert len(before) == 7  # every trial that ran; the infeasible one is listed once, elsewhere
        evaluate(f"{click}('accuracy')")
        ascending = evaluate(f"{column}('accuracy')")
        numbers = [float(v) for v in ascending if v]
        assert numbers == sorted(numbers) and ascending[-1] == ""  # blanks (the failed trial) last
        evaluate(f"{click}('accuracy')")
        descending = [float(v) for v in evaluate(f"{column}('accuracy')") if v]
        assert descending == sorted(numbers, reverse=True) and descending[0] == 0.9
        evaluate("(function(){var b=" + box + ";b.value='gpu completed';"
                 "b.dispatchEvent(new Event('input'));return true;})()")
        assert sorted(evaluate(f"{column}('node_type')")) == ["gpu", "gpu"]
        shot = tmp_path / "top.png"
        screenshot(shot)
        width = evaluate("document.documentElement.scrollWidth")
    finally:
        close()
    assert width <= 1280  # nothing wider than the window
    from PIL import Image

    assert Image.open(shot).size[0] == 1280

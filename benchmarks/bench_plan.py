"""Plan error before and after calibration: the quick start (or any experiment file) planned from the reference
figures, then calibrated on this machine (``Study.calibrate``, what ``submit --calibrate`` runs) and planned again,
then run; the error of each plan against the actual trial-hours and cost, per node type.

    python benchmarks/bench_plan.py --out benchmarks/results/plan.md [--file experiments/quickstart.yaml]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import append_result, md_table  # noqa: E402


def _error(est, actual):
    return None if est is None or not actual else 100 * (est - actual) / actual


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--file", default="experiments/quickstart.yaml")
    p.add_argument("--out", default="benchmarks/results/plan.md")
    p.add_argument("--note", default="", help="a line about the machine's load, written with the result")
    args = p.parse_args(argv)

    from orchestrator import Study
    from orchestrator.report.tables import trial_table

    with tempfile.TemporaryDirectory() as tmp:
        study = Study.from_file(args.file, store=str(Path(tmp) / "store"))
        reference = study.plan().estimate
        t = time.perf_counter()
        study.calibrate(notify=lambda m: None)
        calibration_s = time.perf_counter() - t
        calibrated = study.plan().estimate
        t = time.perf_counter()
        result = study.run(show_progress=False, notify=lambda m: None)
        run_s = time.perf_counter() - t
        df = trial_table([r.to_dict() for r in result.records])

    rows = []
    for ref_row, cal_row in zip(reference["rows"], calibrated["rows"]):
        ran = df[(df["node_type"] == cal_row["node_type"]) & df["total_s"].notna()]
        if ran.empty:
            rows.append([cal_row["node_type"], cal_row["trials"], 0, "-", "-", "-", "-", "-", "not runnable here"])
            continue
        hours, cost = float(ran["total_s"].sum()) / 3600, float(ran["cost_usd"].sum())
        e_ref, e_cal = _error(ref_row["trial_hours"], hours), _error(cal_row["trial_hours"], hours)
        rows.append([cal_row["node_type"], cal_row["trials"], len(ran), hours,
                     ref_row["trial_hours"] if ref_row["trial_hours"] is not None else "-",
                     f"{e_ref:+.0f} %" if e_ref is not None else "-", cal_row["trial_hours"],
                     f"{e_cal:+.0f} %" if e_cal is not None else "-",
                     f"cost {cost:.5f} USD est {cal_row['cost_usd']:.5f} ({_error(cal_row['cost_usd'], cost):+.0f} %)"])
    body = (f"`{args.file}` on the embedded local Ray. Calibration took {calibration_s:.0f} s "
            f"({calibrated.get('calibrated', 0)} setting(s), {study.spec.plan.calibration_epochs} epochs each); "
            f"the study {run_s:.0f} s.\n\n"
            + md_table(["node type", "trials", "ran", "actual trial h", "reference est h", "reference error",
                        "calibrated est h", "calibrated error", "cost (calibrated)"], rows)
            + "\nError = (estimate - actual) / actual, trial-hours summed over the trials that ran. "
            + (args.note or ""))
    append_result(args.out, "Plan error: reference figures vs calibration", body)
    print(body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

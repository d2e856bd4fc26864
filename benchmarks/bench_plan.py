"""Plan error before and after calibration: the quick start (or any experiment file) planned from the reference
figures, then calibrated on this machine (``Study.calibrate``, what ``submit --calibrate`` runs) and planned again,
then run; the error of each plan against the actual trial-hours and cost, per node type.

    python benchmarks/bench_plan.py --out benchmarks/results/plan.md [--file experiments/quickstart.yaml]
"""
from __future__ import annotations

import argparse
import os
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
    p.add_argument("--address", help="a running Ray cluster (e.g. infra/local_cluster.sh's GCS address); default: "
                   "an embedded local Ray")
    p.add_argument("--architectures", help="comma-separated: run only these of the file's grid architectures")
    args = p.parse_args(argv)

    from orchestrator import Study
    from orchestrator.report.tables import trial_table

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        file = args.file
        if args.architectures:
            import yaml

            spec = yaml.safe_load(Path(args.file).read_text())
            spec["grid"]["architectures"] = args.architectures.split(",")
            file = Path(tmp) / Path(args.file).name
            file.write_text(yaml.safe_dump(spec))
        study = Study.from_file(file, store=str(Path(tmp) / "store"), address=args.address)
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
    where = f"the Ray cluster at {args.address}" if args.address else "the embedded local Ray"
    grid = f" (architectures {args.architectures} only)" if args.architectures else ""
    body = (f"`{args.file}`{grid} on {where}. Calibration took {calibration_s:.0f} s "
            f"({calibrated.get('calibrated', 0)} setting(s), {study.spec.plan.calibration_epochs} epochs of at most "
            f"{study.spec.plan.calibration_steps} steps each); the study {run_s:.0f} s. Load average (1, 5, 15 min) "
            f"before: {' / '.join(f'{v:.1f}' for v in load_before)}, after: "
            f"{' / '.join(f'{v:.1f}' for v in os.getloadavg())} on {os.cpu_count()} CPUs.\n\n"
            + md_table(["node type", "trials", "ran", "actual trial h", "reference est h", "reference error",
                        "calibrated est h", "calibrated error", "cost (calibrated)"], rows)
            + "\nError = (estimate - actual) / actual, trial-hours summed over the trials that ran. "
            + (args.note or ""))
    append_result(args.out, "Plan error: reference figures vs calibration", body)
    print(body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""``orchestrator tune FILE [--dry-run] [--then-study] [--resume RUN_ID]``: a thin wrapper over ``Search``."""
from __future__ import annotations

import json

from orchestrator.cli.arguments import text
from orchestrator.cli.output import error_line, out, print_json, say


def _print_plan(search) -> None:
    from rich.table import Table

    from orchestrator.execution.placement import trial_bundle
    from orchestrator.search.space import asha_rungs, base_trials, n_trials

    s = search.spec.search
    table = Table(title=f"{search.spec.name}: search space (dry run, nothing started)")
    for col in ("setting", "distribution", "values", "Tune domain"):
        table.add_column(col)
    for row in search.plan():
        table.add_row(row.setting, row.distribution, json.dumps(row.values), row.tune_domain)
    out.print(table)
    kinds = {}
    for base in base_trials(search.spec):
        resources = ", ".join(f"{k}={v:g}" for k, v in trial_bundle(base.resources).items())
        kinds.setdefault(base.node_type, f"{base.node_type} ({resources}, {base.framework})")
    out.print(f"architecture {', '.join(s.architecture_choices())}, node type {', '.join(kinds.values())}, "
              f"{n_trials(s)} trials of up to {s.epochs} epochs")
    out.print(f"algorithm {s.algorithm}, scheduler {s.scheduler}"
              + (f" (grace period {s.grace_period}, reduction factor {s.reduction_factor:g}, rungs at epochs "
                 f"{asha_rungs(s) or 'none'})" if s.scheduler == "asha" else "")
              + (f", objectives {', '.join(f'{k} ({v})' for k, v in s.objectives.items())}; best.json ranks by {s.metric}"
                 if s.objectives else f", metric {s.metric} ({s.mode})")
              + f", max concurrent {s.max_concurrent_trials or 'auto'}, "
              f"time budget {f'{s.time_budget_s:g} s' if s.time_budget_s else 'none'}, "
              f"then-study repeats {s.then_study_repeats}")


def _print_outcome(result) -> None:
    from orchestrator.search.space import short

    counts = ", ".join(f"{k}: {v}" for k, v in sorted(result.counts.items()))
    out.print(f"Search {result.paths.run_id} {'stopped' if result.interrupted else 'finished'} ({counts}).")
    if result.best_trial:
        b = result.best_trial
        out.print(f"Best: {b['trial_id']} {b['metric']}={b['value']:.4f} after {b['epochs_run']} epochs, "
                  + ", ".join(f"{k}={short(v)}" for k, v in b["hyperparameters"].items()))
    for point in result.front:
        values = ", ".join(f"{k}={v if isinstance(v, str) else short(v)}" for k, v in point["objectives"].items())
        out.print(f"Pareto front: {point['trial_id']} ({point['architecture']} on {point['node_type']}) {values}")
    out.print(f"Report: {result.report_url}")


def cmd_tune(args) -> int:
    from orchestrator.search.api import Search
    from orchestrator.study import Study

    search = Search.from_file(args.file, store=args.store, address=args.address)
    if args.dry_run and args.json:
        from dataclasses import asdict

        print_json({"experiment": search.spec.name, "search": search.spec.search.model_dump(mode="json"),
                    "space": [asdict(row) for row in search.plan()]})
        return 0
    if args.dry_run:
        _print_plan(search)
        return 0
    Study(search.spec).check_inputs()
    result = search.resume(args.resume, notify=say) if args.resume else search.run(notify=say)
    _print_outcome(result)
    if result.interrupted:
        error_line(f"the search was interrupted; continue it with 'orchestrator tune {args.file} --resume "
                   f"{result.paths.run_id}'")
        return 130
    if args.then_study:
        search.study_best(result, notify=say)
        counts = ", ".join(f"{k}: {v}" for k, v in sorted(result.study.counts.items()))
        what = "the Pareto front" if search.spec.search.objectives else "the best configuration"
        out.print(f"Study of {what} {result.study.paths.run_id} finished ({counts}).")
        out.print(f"Report: {result.study_report_url}")
        if result.study.counts.get("failed"):
            return 1
    return 1 if result.counts.get("failed") or not result.best_trial else 0


def add_commands(sub) -> None:
    t = sub.add_parser("tune", help="hyperparameter search over an experiment file's 'search:' block (Ray Tune)")
    t.add_argument("file", type=text, help="experiment file (YAML) with a 'search:' block")
    t.add_argument("--dry-run", action="store_true", help="validate, print the search space and plan, run nothing")
    t.add_argument("--json", action="store_true", help="with --dry-run: print the search space as JSON on stdout")
    t.add_argument("--then-study", action="store_true",
                   help="afterwards re-run the best configuration (a multi-objective search: every point of its "
                        "Pareto front) full-length, search.then_study_repeats repeats")
    t.add_argument("--resume", metavar="RUN_ID", type=text, help="continue a stopped search; finished trials are kept")
    t.add_argument("--store", type=text, help="override storage.uri (a directory or s3://bucket/prefix)")
    t.add_argument("--address", type=text, help="Ray cluster to join as the driver (ray://HOST:10001 or auto)")
    t.set_defaults(func=cmd_tune)

"""Scale on paper: wall time and cost of the full seed 000 study on a cluster of N cpu + M gpu (+ K tpu) nodes.

    python benchmarks/estimate_scale.py --cpu-nodes 8 --gpu-nodes 2 --out benchmarks/results/scale.md

Inputs are measured numbers: images/s per architecture and node type (CPU: this repository's trial benchmark at
120x120, scaled by cores; GPU: the H100 figures in DESIGN.md) and the per-trial orchestration overhead from
bench_overhead.py. Trials are placed longest-first on the earliest free node of their type (LPT list scheduling).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import append_result, md_table  # noqa: E402
from orchestrator.execution.plan import makespan  # noqa: E402  (LPT list scheduling, shared with the product's plan)

# images/s at 120x120, batch 32. cpu: one 2-vCPU AMD EPYC VM through the worker path (bench_trial.py, recorded in
# results/trial_throughput.md), scaled linearly to the cpu node's cores. gpu: one H100, JAX backend, plain fit
# (DESIGN.md: ResNet-50 13,100 with mixed bfloat16, CNN-LSTM 12,900); cnn and lstm_cnn are assumed equal to
# cnn_lstm (not measured on a GPU yet). tpu: assumed equal to gpu (not measured).
THROUGHPUT = {
    "cpu": {"cnn": 141.0, "cnn_lstm": 116.0, "lstm_cnn": 395.0, "resnet50": 12.9},
    "gpu": {"cnn": 12900.0, "cnn_lstm": 12900.0, "lstm_cnn": 12900.0, "resnet50": 13100.0},
    "tpu": {"cnn": 12900.0, "cnn_lstm": 12900.0, "lstm_cnn": 12900.0, "resnet50": 13100.0},
}
PRICE = {"cpu": 0.38, "gpu": 2.93, "tpu": 4.20}  # USD/hour, ray-cluster.yaml machine types
MEASURED_CORES = 2


def trial_seconds(arch: str, node: str, epochs: int, train_images: int, overhead_s: float, cpu_cores: int,
                  warmup_s: float) -> float:
    rate = THROUGHPUT[node][arch] * (cpu_cores / MEASURED_CORES if node == "cpu" else 1)
    return overhead_s + warmup_s + epochs * train_images / rate


def estimate(args) -> tuple[list[list], float, float]:
    archs = ["cnn", "cnn_lstm", "lstm_cnn", "resnet50"]
    epochs = [10, 20, 50, 100]
    nodes = {"cpu": args.cpu_nodes, "gpu": args.gpu_nodes, "tpu": args.tpu_nodes}
    rows, total_cost, wall = [], 0.0, 0.0
    for node, count in nodes.items():
        durations = [trial_seconds(a, node, e, args.train_images, args.overhead_s, args.cpu_cores, args.warmup_s)
                     for a in archs for e in epochs for _ in range(args.repeats)]
        span = makespan(durations, count)
        cost = count * span / 3600 * PRICE[node] if count else 0.0
        total_cost += cost
        if count:
            wall = max(wall, span)
        rows.append([node, count, len(durations), round(sum(durations) / 3600, 2),
                     round(span / 3600, 2) if count else "not run (no nodes)", round(cost, 2)])
    return rows, wall, total_cost


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--cpu-nodes", type=int, default=8)
    p.add_argument("--gpu-nodes", type=int, default=2)
    p.add_argument("--tpu-nodes", type=int, default=0)
    p.add_argument("--cpu-cores", type=int, default=8, help="cores per cpu node")
    p.add_argument("--train-images", type=int, default=4500, help="training images per epoch (9 classes x 500 after Augmentor)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--overhead-s", type=float, default=0.054, help="per-trial orchestration overhead (bench_overhead.py)")
    p.add_argument("--warmup-s", type=float, default=30.0, help="first-epoch compile/warm-up per trial")
    p.add_argument("--out", default="benchmarks/results/scale.md")
    args = p.parse_args(argv)
    rows, wall, cost = estimate(args)
    body = md_table(["node type", "nodes", "trials", "node-hours of work", "wall hours", "cost USD"], rows)
    body += (f"\nWhole study (4 architectures x epochs 10/20/50/100 x node types x {args.repeats} repeats, 120x120, "
             f"{args.train_images} training images): wall time {wall / 3600:.1f} h (node pools run in parallel), "
             f"cost about {cost:.0f} USD. Inputs: {THROUGHPUT}, per-trial overhead {args.overhead_s} s, warm-up "
             f"{args.warmup_s} s, cpu nodes of {args.cpu_cores} cores.\n")
    print(body)
    append_result(args.out, f"Scale on paper: {args.cpu_nodes} cpu + {args.gpu_nodes} gpu + {args.tpu_nodes} tpu nodes", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())

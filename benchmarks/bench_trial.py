"""Trial throughput vs plain Keras: steady-state images/s of the worker path (``workers.train.run_trial``)
against a plain ``model.fit`` on the same model, data, batch size and device. Runs without Ray.

    python benchmarks/bench_trial.py --size 64 --batch 32 --epochs 4 --out benchmarks/results/trial_throughput.md
    python benchmarks/bench_trial.py --size 120 --batch 256 --framework jax     # GPU arm, on a GPU machine

    python benchmarks/bench_trial.py --streamed --out benchmarks/results/data.md   # shards vs in-memory arrays
    python benchmarks/make_isic2019.py benchmarks/_work/isic2019-small --fraction 0.005
    python benchmarks/bench_trial.py --isic2019 benchmarks/_work/isic2019-small --size 224 --epochs 3 --rounds 1

The first epoch (compile + warm-up) is excluded on both sides; the median of the remaining epochs is used.
With ``--streamed`` both sides are the worker path on the quick-start data (experiments/quickstart.yaml's data
set and Augmentor stage): batches streamed from shards (``ShardedDataset``) against today's in-memory arrays.
With ``--isic2019 FOLDER`` (from benchmarks/make_isic2019.py) the worker path streams that folder's shards,
prepared at ``--size``, against a plain ``model.fit`` on the same rows as in-memory arrays.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import append_result, md_table  # noqa: E402

SEED_000 = ["cnn", "cnn_lstm", "lstm_cnn", "resnet50"]


def plain_fit_epoch_times(keras, arch: str, data, batch: int, epochs: int, lr: float) -> list[float]:
    """Steady-state epoch times (first epoch dropped) of a plain ``model.fit`` on the same model and data."""
    from workers.models import create_model

    keras.utils.set_random_seed(0)
    model = create_model(arch, input_shape=data.x_train.shape[1:], num_classes=data.num_classes)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=lr), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    times: list[float] = []

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.t = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            times.append(time.perf_counter() - self.t)

    model.fit(data.x_train, data.y_train, batch_size=batch, epochs=epochs, shuffle=True, verbose=0, callbacks=[Timer()])
    return times[1:]


def streamed_vs_in_memory(args) -> int:
    """Steady-state images/s of run_trial on shards vs on in-memory arrays of the same quick-start data."""
    import tempfile

    os.environ.setdefault("KERAS_BACKEND", args.framework)
    from orchestrator.spec.grid import expand_grid
    from orchestrator.spec.schema import load_spec
    from workers.data import open_sharded, prepare_shards
    from workers.data.prepare import in_memory as prepared_in_memory
    from workers.train import run_trial

    spec = load_spec(Path(__file__).resolve().parent.parent / "experiments" / "quickstart.yaml")
    spec = spec.model_copy(update={"grid": spec.grid.model_copy(update={
        "architectures": args.architectures, "epochs": [args.epochs], "node_types": ["cpu"]})})
    trials = expand_grid(spec)
    first = trials[0]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        prepare_shards(*first.preparation_args(), Path(tmp) / "d")
        sharded = open_sharded(Path(tmp) / "d")
        in_memory = prepared_in_memory(sharded)
        for trial in trials:
            times = {"streamed": [], "in-memory": []}
            for _ in range(args.rounds):
                for name, data in (("in-memory", in_memory), ("streamed", sharded)):
                    record = run_trial(trial, data=data).record
                    times[name] += [row["epoch_train_s"] for row in record.history[1:]]
            n = len(sharded.y_train)
            best = {k: n / min(v) for k, v in times.items()}
            med = {k: n / statistics.median(v) for k, v in times.items()}
            rows.append([trial.architecture, first.dataset.image_size[0], trial.hparam("batch_size"), n,
                         len(times["streamed"]), round(best["streamed"], 1), round(best["in-memory"], 1),
                         round(best["streamed"] / best["in-memory"], 3),
                         f"{med['streamed']:.0f} / {med['in-memory']:.0f} = {med['streamed'] / med['in-memory']:.2f}"])
            print(rows[-1], flush=True)
    body = md_table(["architecture", "size", "batch", "train images", "steady epochs each", "streamed img/s (best epoch)",
                     "in-memory img/s (best epoch)", "ratio", "medians: streamed / in-memory"], rows)
    body += ("\nGoal: ratio >= 0.95. Both sides are `run_trial` on the quick-start data (experiments/quickstart.yaml: "
             "synthetic, Augmentor top_up to 60); streamed = batches read from shards by `TrainStream` (read-ahead "
             "thread, per-epoch block shuffle), in-memory = the same rows as NumPy arrays given to `model.fit`. "
             "Alternating rounds, steady-state epochs only.\n")
    print(body)
    append_result(args.out, f"Streamed vs in-memory trial throughput{' (smoke)' if args.smoke else ''}", body)
    return 0


def worker_vs_plain(keras, trial, worker_data, plain_data, args, lr: float) -> tuple[list[float], list[float], str]:
    """Steady epoch times (the first epoch of each run dropped) of the worker path (``run_trial`` on
    ``worker_data``) and of a plain ``fit`` (on ``plain_data``), alternating for ``args.rounds`` rounds, and the
    device the worker ran on."""
    from workers.train import run_trial

    worker_times, plain_times, device = [], [], None
    for _ in range(args.rounds):
        plain_times += plain_fit_epoch_times(keras, trial.architecture, plain_data, args.batch, args.epochs, lr)
        record = run_trial(trial, data=worker_data).record
        device = record.device.used["name"]
        worker_times += [row["epoch_train_s"] for row in record.history[1:]]
    return worker_times, plain_times, device


def ratio_row(trial, args, n: int, worker_times: list[float], plain_times: list[float], device: str, *,
              median_digits: int) -> list:
    """One result row: images/s of each path's best epoch, their ratio, and the medians' ratio."""
    worker, plain = n / min(worker_times), n / min(plain_times)
    worker_med, plain_med = n / statistics.median(worker_times), n / statistics.median(plain_times)
    return [trial.architecture, args.framework, device, args.size, args.batch, n, len(worker_times),
            round(worker, 1), round(plain, 1), round(worker / plain, 3),
            f"{worker_med:.{median_digits}f} / {plain_med:.{median_digits}f} = {worker_med / plain_med:.2f}"]


def streamed_isic_vs_plain(args) -> int:
    """Worker path streaming shards of an ISIC-2019-shaped folder vs a plain ``model.fit`` of the same rows."""
    import tempfile

    os.environ.setdefault("KERAS_BACKEND", args.framework)
    from orchestrator.spec.grid import expand_grid
    from orchestrator.spec.schema import parse_spec
    from workers.data import open_sharded, prepare_shards
    from workers.data.prepare import in_memory as prepared_in_memory
    from workers.device import activate_backend, restrict_devices

    restrict_devices({"GPU": 1} if args.node_type == "gpu" else {"TPU": 1} if args.node_type == "tpu" else {})
    keras = activate_backend(args.framework)
    spec = parse_spec({"name": "bench-isic", "dataset": {"source": "isic2019", "path": str(Path(args.isic2019).resolve()),
                                                         "image_size": [args.size, args.size]},
                       "training": {"batch_size": args.batch, "mixed_precision": "off"},
                       "grid": {"architectures": args.architectures, "epochs": [args.epochs],
                                "node_types": [args.node_type], "frameworks": [args.framework]}})
    trials = expand_grid(spec)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        prepare_shards(*trials[0].preparation_args(), Path(tmp) / "d")
        prepare_s = time.perf_counter() - t
        sharded = open_sharded(Path(tmp) / "d")
        in_memory = prepared_in_memory(sharded)
        n = len(sharded.y_train)
        for trial in trials:
            times = worker_vs_plain(keras, trial, sharded, in_memory, args, float(trial.hparam("learning_rate")))
            rows.append(ratio_row(trial, args, n, *times, median_digits=1))
            print(rows[-1], flush=True)
    load = " / ".join(f"{v:.1f}" for v in os.getloadavg())
    body = md_table(["architecture", "backend", "device", "size", "batch", "train images", "steady epochs each",
                     "worker img/s streamed (best epoch)", "plain fit img/s in memory (best epoch)", "ratio",
                     "medians: worker / plain"], rows)
    body += (f"\nData: ISIC-2019-shaped folder `{Path(args.isic2019).name}` (benchmarks/make_isic2019.py: synthetic "
             f"600x450 JPEGs with ISIC 2019's class proportions) prepared once at {args.size}x{args.size} "
             f"({prepare_s:.1f} s; split 70/10/20, no Augmentor stage), {n} training images. Worker path = "
             "`run_trial` streaming the shards (`TrainStream`: read-ahead thread, per-epoch block shuffle); plain "
             "fit = `model.fit` of the same model on the same training rows as NumPy arrays, same batch, backend "
             "and learning rate. Alternating rounds, first epoch of each run dropped. Goal: ratio >= 0.95. "
             f"Load average (1/5/15 min) at the end: {load}.\n")
    print(body)
    append_result(args.out, "Trial throughput, streamed ISIC-2019-shaped shards vs plain Keras fit", body)
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--architectures", nargs="+", default=SEED_000)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--epochs", type=int, default=4, help="epochs per measurement (the first is warm-up)")
    p.add_argument("--samples", type=int, default=120, help="synthetic images of the largest class")
    p.add_argument("--rounds", type=int, default=2, help="alternating rounds of plain fit and worker path")
    p.add_argument("--framework", default="tensorflow")
    p.add_argument("--node-type", default="cpu")
    p.add_argument("--out", default="benchmarks/results/trial_throughput.md")
    p.add_argument("--streamed", action="store_true", help="shards vs in-memory arrays on the quick-start data")
    p.add_argument("--isic2019", help="folder from benchmarks/make_isic2019.py: stream its shards (worker) vs plain fit")
    p.add_argument("--smoke", action="store_true")
    args = p.parse_args(argv)
    if args.smoke:
        args.architectures, args.size, args.epochs, args.samples, args.rounds = ["cnn"], 16, 3, 10, 1
    if args.streamed:
        return streamed_vs_in_memory(args)
    if args.isic2019:
        return streamed_isic_vs_plain(args)

    os.environ.setdefault("KERAS_BACKEND", args.framework)
    from orchestrator.spec.grid import expand_grid
    from orchestrator.spec.schema import parse_spec
    from workers.data import prepare_data
    from workers.device import activate_backend, restrict_devices

    restrict_devices({"GPU": 1} if args.node_type == "gpu" else {"TPU": 1} if args.node_type == "tpu" else {})
    keras = activate_backend(args.framework)
    spec = parse_spec({"name": "bench", "dataset": {"image_size": [args.size, args.size], "samples_per_class": args.samples},
                       "split": {"val_fraction": 0.05}, "training": {"batch_size": args.batch, "mixed_precision": "off"},
                       "grid": {"architectures": args.architectures, "epochs": [args.epochs], "node_types": [args.node_type],
                                "frameworks": [args.framework]}})
    trials = expand_grid(spec)
    data = prepare_data(*trials[0].replace(augmentation="none").preparation_args())
    rows = []
    for trial in trials:
        # Alternate the two paths over several rounds and take the median steady epoch of each, so that order
        # effects and the occasional slow epoch on a shared CPU do not decide the ratio.
        rows.append(ratio_row(trial, args, len(data.y_train), *worker_vs_plain(keras, trial, data, data, args, 1e-3),
                              median_digits=0))
        print(rows[-1], flush=True)
    body = md_table(["architecture", "backend", "device", "size", "batch", "train images", "steady epochs each",
                     "worker img/s (best epoch)", "plain fit img/s (best epoch)", "ratio", "medians: worker / plain"], rows)
    body += ("\nGoal: ratio >= 0.95. Steady-state epochs only (the first epoch of each run is dropped), over alternating "
             "rounds of both paths. On this shared 2-vCPU VM single epochs are bimodal (about 1x or 2x the fastest, "
             "in plain fit as well), so the ratio uses each path's best epoch and the medians are shown beside it. "
             "The worker path validates after each epoch, outside the timed training pass.\n")
    print(body)
    append_result(args.out, f"Trial throughput vs plain Keras fit{' (smoke)' if args.smoke else ''}", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())

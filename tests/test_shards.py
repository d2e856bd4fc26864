"""Sharded prepared data: exact round trip, checksums, corrupt shards prepared again, deterministic parallel
preparation, streamed training equal for one shard or many, Augmentor modes. Tiny 16x16 images throughout."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from workers.data import DiskSpaceError, ShardError, open_sharded, prepare_shards
from workers.data.shards import ShardWriter, epoch_order

SIZE = [16, 16]
SYNTHETIC = {"source": "synthetic", "image_size": SIZE, "samples_per_class": 12}
SPLIT = {"test_fraction": 0.25, "val_fraction": 0.15, "seed": 3}


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SKINLESION_CACHE", str(tmp_path / "cache"))


def _rows(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 4, 5, 3), dtype=np.uint8)


def test_shards_round_trip_exactly(tmp_path):
    images = {"train": _rows(23, 1), "val": _rows(5, 2), "test": _rows(0, 3)}
    writer = ShardWriter(tmp_path / "d", (4, 5, 3), expected_rows=28, rows_per_shard=8, shuffle_block=4)
    for split, x in images.items():
        for start in range(0, len(x), 3):  # chunks that do not line up with shards
            part = x[start:start + 3]
            writer.append(split, part, np.arange(start, start + len(part)) % 4, [f"{split}{i}" for i in range(start, start + len(part))])
    writer.finish(["a", "b", "c", "d"], {"note": "meta survives", "n": np.int64(3)})
    data = open_sharded(tmp_path / "d")
    assert sorted(p.name for p in (tmp_path / "d").glob("train-0*.npy")) == ["train-00000.npy", "train-00001.npy", "train-00002.npy"]
    for split, x in images.items():
        assert np.array_equal(data.split_images(split).read_all(), x)
        assert getattr(data, f"y_{split}").tolist() == (np.arange(len(x)) % 4).tolist()
        assert getattr(data, f"ids_{split}") == [f"{split}{i}" for i in range(len(x))]
    rows = np.array([22, 0, 9, 8, 15])
    assert np.array_equal(data.images_train.take(rows), images["train"][rows])
    assert data.class_names == ["a", "b", "c", "d"] and data.meta == {"note": "meta survives", "n": 3}
    assert isinstance(np.load(tmp_path / "d" / "train-00001.npy", mmap_mode="r"), np.memmap)


def test_corrupt_or_missing_shard_is_detected(tmp_path):
    writer = ShardWriter(tmp_path / "d", (4, 5, 3), expected_rows=20, rows_per_shard=8, shuffle_block=4)
    writer.append("train", _rows(20), np.zeros(20, np.int64), [str(i) for i in range(20)])
    writer.finish(["a"], {})
    shard = tmp_path / "d" / "train-00001.npy"
    raw = bytearray(shard.read_bytes())
    raw[-7] ^= 0xFF  # one flipped byte, same size
    shard.write_bytes(bytes(raw))
    with pytest.raises(ShardError, match="train-00001.npy' does not match its sha256"):
        open_sharded(tmp_path / "d")
    shard.unlink()
    with pytest.raises(ShardError, match="train-00001.npy' is missing"):
        open_sharded(tmp_path / "d")


def test_no_room_is_one_line_naming_the_path(tmp_path):
    with pytest.raises(DiskSpaceError) as err:
        ShardWriter(tmp_path / "big", (224, 224, 3), expected_rows=10**9)
    text = str(err.value)
    assert "\n" not in text and str(tmp_path / "big") in text and "GB free" in text
    assert not (tmp_path / "big").exists()


def test_epoch_order_is_a_seeded_block_shuffle():
    orders = [epoch_order(50, seed=1, epoch=e, block=4, window=2) for e in range(3)]
    for order in orders:
        assert sorted(order.tolist()) == list(range(50))
    assert not np.array_equal(orders[0], orders[1])
    assert np.array_equal(orders[0], epoch_order(50, seed=1, epoch=0, block=4, window=2))
    # rows stay within windows of 2 blocks (8 rows): each run of 8 positions holds rows from exactly 2 blocks
    full = epoch_order(48, seed=1, epoch=0, block=4, window=2)
    assert all(len(set(full[i:i + 8] // 4)) == 2 for i in range(0, 48, 8))


def _file_checksums(directory: Path) -> dict:
    index = json.loads((directory / "index.json").read_text())
    return {name: entry["sha256"] for name, entry in index["files"].items()}


def test_augmentor_modes_add_and_top_up(tmp_path):
    top = prepare_shards(SYNTHETIC, SPLIT, "augmentor", {"augmentor": {"mode": "top_up", "samples_per_class": 9}}, tmp_path / "t")
    add = prepare_shards(SYNTHETIC, SPLIT, "augmentor", {"augmentor": {"mode": "add", "samples_per_class": 4}}, tmp_path / "a")
    before = np.array(top["meta"]["train_counts_before_augmentation"])
    assert top["meta"]["train_counts"] == np.maximum(before, 9).tolist()
    assert add["meta"]["train_counts"] == (before + 4).tolist()
    assert add["meta"]["augmentor"] == {"mode": "add", "samples_per_class": 4}
    assert add["meta"]["augmented_images"] == 4 * len(before)


@pytest.mark.slow
def test_identical_shards_whatever_the_number_of_workers(ray_session, tmp_path):
    from orchestrator.execution.data_preparation import RayExecutor
    from workers.data.prepare import InProcess

    args = (SYNTHETIC, SPLIT, "augmentor", {"augmentor": {"mode": "top_up", "samples_per_class": 10}})
    options = {"rows_per_shard": 8, "shuffle_block": 4}
    import workers.data.prepare as prepare

    chunk = prepare.DECODE_CHUNK, prepare.AUGMENT_CHUNK
    prepare.DECODE_CHUNK, prepare.AUGMENT_CHUNK = 3, 2  # many chunks per class on tiny data
    try:
        runs = {
            "in-process": prepare_shards(*args, tmp_path / "one", executor=InProcess(), **options),
            "ray, 1 CPU per task": prepare_shards(*args, tmp_path / "two", executor=RayExecutor(1), **options),
            "ray, 2 CPUs per task": prepare_shards(*args, tmp_path / "three", executor=RayExecutor(2), **options),
        }
    finally:
        prepare.DECODE_CHUNK, prepare.AUGMENT_CHUNK = chunk
    assert [r["meta"]["prepare_workers"] for r in runs.values()] == [1, 2, 1]
    sums = [_file_checksums(tmp_path / name) for name in ("one", "two", "three")]
    assert sums[0] == sums[1] == sums[2] and len(sums[0]) > 6
    assert runs["in-process"]["meta"]["augmented_images"] > 0


def test_corrupt_cached_shard_is_prepared_again(ray_session, tmp_path):
    from orchestrator.execution.data_preparation import prepare_settings
    from orchestrator.spec.grid import expand_grid
    from orchestrator.execution.run_steps import store_settings
    from orchestrator.spec.schema import parse_spec
    from tests.conftest import tiny_spec_dict

    spec = parse_spec(tiny_spec_dict(store=str(tmp_path / "store")))
    trials = expand_grid(spec)
    messages: list[str] = []
    first = prepare_settings(trials, store_settings(spec), messages.append)
    (key, result), = first.items()
    assert not result["hit"] and any("decoded chunks" in m for m in messages)
    folder = tmp_path / "store" / "cache" / "prepared" / key
    assert (folder / "index.json").is_file() and list(folder.glob("train-*.npy"))
    assert prepare_settings(trials, store_settings(spec), messages.append)[key]["hit"]

    shard = sorted(folder.glob("val-0*.npy"))[0]
    good = shard.read_bytes()
    shard.write_bytes(good[:-1] + bytes([good[-1] ^ 1]))
    again = prepare_settings(trials, store_settings(spec), messages.append)[key]
    assert not again["hit"]
    assert shard.read_bytes() == good
    open_sharded(folder)  # sound again


def _trial(tmp_path, **training):
    from orchestrator.spec.grid import expand_grid
    from orchestrator.spec.schema import parse_spec
    from tests.conftest import tiny_spec_dict

    spec = parse_spec(tiny_spec_dict(store=str(tmp_path / "store"), training={"batch_size": 8, **training},
                                     grid={"architectures": ["cnn"], "epochs": [2], "node_types": ["cpu"],
                                           "augmentation": ["augmentor"]}))
    return expand_grid(spec)[0]


@pytest.mark.slow
def test_trial_result_is_the_same_from_one_shard_or_many(tmp_path):
    from workers.train import run_trial

    trial = _trial(tmp_path)
    args = trial.preparation_args()
    prepare_shards(*args, tmp_path / "one", rows_per_shard=4096, shuffle_block=4)
    prepare_shards(*args, tmp_path / "many", rows_per_shard=8, shuffle_block=4)
    one, many = open_sharded(tmp_path / "one"), open_sharded(tmp_path / "many")
    assert len(one.index["splits"]["train"]["shards"]) == 1 and len(many.index["splits"]["train"]["shards"]) > 3
    a, b = run_trial(trial, data=one), run_trial(trial, data=many)
    assert a.predictions_csv == b.predictions_csv
    assert [r["loss"] for r in a.record.history] == [r["loss"] for r in b.record.history]
    assert a.record.data["n_train"] == len(one.y_train) and a.record.completed
    assert a.record.data["augmentor"] == trial.augmentation_settings.augmentor.model_dump()


def test_streamed_training_sees_every_row_once_per_epoch(tmp_path):
    from workers.data.stream import TrainStream

    prepare_shards(SYNTHETIC, SPLIT, "none", {}, tmp_path / "d", rows_per_shard=8, shuffle_block=4)
    data = open_sharded(tmp_path / "d")
    stream = TrainStream(data.images_train, data.y_train, 5, seed=0, block=4)
    n, steps = len(data.y_train), stream.steps_per_epoch
    for epoch in range(2):
        rows = np.concatenate([stream.rows(epoch * steps + i) for i in range(steps)])
        assert sorted(rows.tolist()) == list(range(n))
    x, y = stream[steps + 1]  # a batch of the second epoch, read ahead or not
    rows = stream.rows(steps + 1)
    assert np.array_equal(x, data.images_train.read_all()[rows]) and np.array_equal(y, data.y_train[rows])
    resumed = TrainStream(data.images_train, data.y_train, 5, seed=0, block=4, start_epoch=1)
    assert np.array_equal(resumed.rows(0), stream.rows(steps))

    # rows left out so batches split over devices are never served; predictions pad the last batch per device
    keep = np.delete(np.arange(n), [0, 7, 11])
    kept = TrainStream(data.images_train, data.y_train, 4, seed=0, block=4, keep=keep)
    served = np.concatenate([kept.rows(i) for i in range(kept.steps_per_epoch)])
    assert sorted(served.tolist()) == keep.tolist()
    predict = data.predict_inputs("test", 8, devices=4)  # a global batch is a multiple of the devices
    batches = [predict[i][0] for i in range(predict.num_batches)]
    assert all(len(b) % 4 == 0 for b in batches) and predict.n_rows == len(data.y_test) and predict.n_rows % 4
    assert np.array_equal(np.concatenate(batches)[:predict.n_rows], data.images_test.read_all())


def test_s3_store_shards_are_fetched_once_per_node(ray_session, tmp_path, s3_endpoint, s3_bucket):
    from orchestrator.execution.data_preparation import open_prepared, prepare_settings
    from orchestrator.spec.grid import expand_grid
    from orchestrator.spec.schema import parse_spec
    from tests.conftest import tiny_spec_dict
    from workers.data.synthetic import default_cache_root

    settings = {"uri": f"s3://{s3_bucket}/study", "endpoint_url": s3_endpoint, "region": None}
    trials = expand_grid(parse_spec(tiny_spec_dict(store=str(tmp_path / "unused"))))
    (key, _), = prepare_settings(trials, settings, lambda m: None).items()
    local = default_cache_root() / "prepared" / key
    shutil_rmtree(local)  # as on a node that did not prepare it
    data = open_prepared(settings, key)
    assert (local / "index.json").is_file() and len(data.y_train) > 0
    expected = data.split_images("train").read_all()
    shard = sorted(local.glob("train-0*.npy"))[0]
    shard.write_bytes(b"\0" * shard.stat().st_size)  # a corrupt local copy is fetched again
    again = open_prepared(settings, key)
    assert np.array_equal(again.split_images("train").read_all(), expected)
    digest = hashlib.sha256(shard.read_bytes()).hexdigest()
    assert digest == again.index["files"][shard.name]["sha256"]


def shutil_rmtree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


_FOUR_DEVICES = r"""
import json, sys, tempfile
from pathlib import Path
from orchestrator.spec.grid import expand_grid
from orchestrator.spec.schema import parse_spec
from workers.data import open_sharded, prepare_shards
from workers.train import run_trial

trial = expand_grid(parse_spec(json.loads(sys.argv[1])))[0]
with tempfile.TemporaryDirectory() as tmp:
    prepare_shards(*trial.preparation_args(), Path(tmp) / "d", rows_per_shard=8, shuffle_block=4)
    result = run_trial(trial, data=open_sharded(Path(tmp) / "d"))
rows = result.predictions_csv.strip().splitlines()[1:]
print("RESULT " + json.dumps({"record": result.record.to_dict(), "predictions": len(rows)}, default=str))
"""


@pytest.mark.slow
def test_streamed_trial_runs_data_parallel_over_four_devices(tmp_path):
    import os
    import subprocess
    import sys

    from tests.conftest import tiny_spec_dict

    pytest.importorskip("jax")
    spec = tiny_spec_dict(node_types={"gpu4": {"resources": {"CPU": 1, "GPU": 4}, "framework": "jax"}},
                          grid={"architectures": ["cnn"], "epochs": [2], "node_types": ["gpu4"]},
                          training={"batch_size": 16})
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", KERAS_BACKEND="jax",
               JAX_PLATFORMS="cpu", SKINLESION_SIMULATED_DEVICE="gpu", SKINLESION_CACHE=str(tmp_path / "cache"))
    proc = subprocess.run([sys.executable, "-c", _FOUR_DEVICES, json.dumps(spec)], env=env,
                          cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True, timeout=600)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stdout[-3000:] + proc.stderr[-5000:]
    out = json.loads(lines[-1][len("RESULT "):])
    record = out["record"]
    assert record["status"] == "completed", record.get("error")
    assert record["device"]["devices_used"] == 4 and record["data"]["n_train"] % 4 == 0
    assert out["predictions"] == record["data"]["n_test"] == record["metrics"]["n_test"]  # padding dropped

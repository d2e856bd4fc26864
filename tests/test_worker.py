"""One trial through ``workers.train.run_trial`` without Ray: learning, timings, device record, resume."""
from __future__ import annotations

import csv
import io
import os
import statistics
import pytest

from orchestrator.spec.grid import expand_grid
from orchestrator.spec.schema import parse_spec
from tests.conftest import tiny_spec_dict
from workers.data import prepare_data
from workers.train import class_weight_map, run_trial


def _trial(**overrides):
    return expand_grid(parse_spec(tiny_spec_dict(**overrides)))[0]


def _data(trial):
    return prepare_data(*trial.preparation_args())


@pytest.mark.slow
def test_cnn_learns_the_synthetic_set_well_above_chance():
    trial = _trial(dataset={"image_size": [32, 32], "samples_per_class": 60},
                   augmentation={"augmentor": {"samples_per_class": 60}},
                   grid={"architectures": ["cnn"], "epochs": [12], "augmentation": ["augmentor"]})
    record = run_trial(trial).record
    chance = 1 / len(record.class_names)
    majority = max(record.data["train_counts_before_augmentation"]) / sum(record.data["train_counts_before_augmentation"])
    assert record.metrics["accuracy"] > max(3 * chance, majority + 0.15), record.metrics["accuracy"]
    assert record.history[-1]["accuracy"] > record.history[0]["accuracy"]


def test_a_step_bound_cuts_each_epoch_to_that_many_batches():
    """A calibration trial's ``overrides.steps_per_epoch``: every epoch trains on that many batches of the split."""
    trial = _trial(grid={"architectures": ["cnn"], "epochs": [2]}, training={"batch_size": 4})
    full = run_trial(trial).record.data
    cut = run_trial(trial.replace(overrides={"steps_per_epoch": 2})).record.data
    assert full["n_train"] == full["n_train_split"] > 8
    assert cut["n_train"] == 8 and cut["n_train_split"] == full["n_train_split"]


def test_record_has_timings_device_and_predictions(monkeypatch):
    # run in this process, the trial sets its accelerator's isolation variables here; monkeypatch puts them back
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    trial = _trial(grid={"architectures": ["cnn"], "epochs": [3]})
    seen = []
    result = run_trial(trial, on_epoch=lambda row, save: seen.append(row["epoch"]))
    record = result.record
    assert seen == [1, 2, 3]
    t = record.timings
    for key in ("data_load_s", "build_s", "first_epoch_s", "steady_epoch_s", "images_per_s", "eval_s", "total_s"):
        assert getattr(t, key) is not None and getattr(t, key) >= 0, key
    steady = [row["epoch_train_s"] for row in record.history[1:]]
    assert t.images_per_s == pytest.approx(record.data["n_train"] / statistics.median(steady), rel=1e-3)  # steady epochs only
    assert t.throughput_includes_warmup is False
    # what the node was doing: its load average during every epoch, their mean and its CPU count
    assert all(row["cpu_load_1m"] >= 0 for row in record.history) and t.cpu_load_1m >= 0 and t.node_cpus >= 1
    dev = record.device
    assert dev.requested == "cpu" and dev.used["kind"] == "cpu" and dev.mismatch is False
    assert os.environ["CUDA_VISIBLE_DEVICES"] == ""  # a cpu trial never sees a GPU
    rows = list(csv.DictReader(io.StringIO(result.predictions_csv)))
    assert len(rows) == record.metrics["n_test"]
    assert set(rows[0]) >= {"image_id", "true_class", "predicted_class", f"p_{record.class_names[0]}"}
    assert sum(float(rows[0][f"p_{c}"]) for c in record.class_names) == pytest.approx(1, abs=1e-3)


def test_single_epoch_throughput_is_flagged_as_including_warmup():
    record = run_trial(_trial()).record
    assert record.timings.throughput_includes_warmup is True


def test_resume_from_checkpoint_trains_only_the_remaining_epochs(tmp_path):
    trial = _trial(grid={"architectures": ["cnn"], "epochs": [2]})
    data = _data(trial)
    run_trial(trial, data=data, checkpoint_dir=tmp_path / "ckpt")
    epochs_run = []
    record = run_trial(trial.replace(epochs=3), data=data, resume_dir=tmp_path / "ckpt",
                       on_epoch=lambda row, save: epochs_run.append(row["epoch"])).record
    assert epochs_run == [3]
    assert [row["epoch"] for row in record.history] == [1, 2, 3]


def test_random_augmentation_runs_on_device_layers():
    from workers.device import activate_backend
    from workers.train import build_model

    trial = _trial(grid={"architectures": ["cnn"], "epochs": [1], "augmentation": ["random"]})
    keras = activate_backend("tensorflow")
    model = build_model(keras, trial, (16, 16, 3), 9)
    names = [layer.name for layer in model.layers]
    assert {"aug_flip", "aug_rotate", "aug_zoom"} <= set(names)
    assert run_trial(trial).record.completed


def test_combined_stage_rebalances_with_augmentor_and_adds_random_layers():
    from workers.device import activate_backend
    from workers.train import build_model

    trial = _trial(grid={"architectures": ["cnn"], "epochs": [1], "augmentation": ["augmentor_random"]},
                   augmentation={"augmentor": {"mode": "add", "samples_per_class": 3}})
    data = _data(trial)
    assert data.meta["augmented_images"] == 3 * data.num_classes  # the Augmentor stage ran on the training split
    assert data.meta["augmentor"] == {"mode": "add", "samples_per_class": 3}
    names = [layer.name for layer in build_model(activate_backend("tensorflow"), trial, (16, 16, 3), 9).layers]
    assert {"aug_flip", "aug_rotate", "aug_zoom"} <= set(names)  # and random layers in front of the model


def test_class_weights_are_balanced():
    import numpy as np

    weights = class_weight_map(np.array([0, 0, 0, 1]), 3)
    assert weights[1] == pytest.approx(3 * weights[0]) and weights[2] == 1.0


def test_unavailable_framework_is_a_clear_error(monkeypatch):
    from workers import device

    monkeypatch.setattr("importlib.util.find_spec", lambda name: None if name == "jax" else object())
    with pytest.raises(device.BackendUnavailable, match="framework 'jax' is not installed"):
        device.activate_backend("jax")


def test_a_tpu_trial_refuses_a_backend_that_cannot_drive_a_tpu(monkeypatch):
    monkeypatch.delenv("SKINLESION_SIMULATED_DEVICE", raising=False)
    trial = _trial(grid={"architectures": ["cnn"], "epochs": [1], "node_types": ["tpu"], "frameworks": ["tensorflow"]})
    record = run_trial(trial).record
    assert record.status == "misconfigured" and "TPU trials run on the jax backend" in record.error
    assert not record.metrics and not record.history  # nothing was trained


@pytest.mark.slow  # trains a trial (about 14 s)
def test_multi_device_mismatch_is_misconfigured_unless_the_spec_allows_it(monkeypatch):
    monkeypatch.delenv("SKINLESION_SIMULATED_DEVICE", raising=False)
    grid = {"architectures": ["cnn"], "epochs": [1], "node_types": ["gpu"], "frameworks": ["tensorflow"]}
    record = run_trial(_trial(grid=grid)).record  # this machine has no GPU
    assert record.status == "misconfigured" and "asks for a gpu" in record.error, record.error
    assert "allow_device_mismatch" in record.error and not record.metrics
    allowed = run_trial(_trial(grid=grid, execution={"allow_device_mismatch": True})).record
    assert allowed.completed and allowed.device.mismatch is True
    device = allowed.to_dict()["device"]
    assert device["devices_used"] == 1 and device["steps_per_execution"] == 1


def test_rescoring_the_stored_predictions_reproduces_the_record_metrics(tmp_path):
    import json
    import time

    from orchestrator.run_store import RunPaths, write_trial_record
    from workers.metrics import rescore_predictions_csv
    from workers.storage import LocalStore

    trial = _trial(grid={"architectures": ["cnn"], "epochs": [2]})
    started = time.perf_counter() - 5.0  # the caller spent 5 s (loading data) before run_trial
    result = run_trial(trial, started=started)
    history = result.record.history
    assert history[0]["wall_s"] >= 5.0 and history[1]["wall_s"] > history[0]["wall_s"]
    assert all(row["val_s"] > 0 and 0 <= row["val_balanced_accuracy"] <= 1 for row in history)
    # one clock: the trial's cost basis (total_s) counts from the same start as every epoch's wall_s
    assert 5.0 <= history[-1]["wall_s"] <= result.record.timings.total_s

    store, paths = LocalStore(tmp_path), RunPaths("tiny", "run")
    write_trial_record(store, paths, result.record, {"predictions.csv": result.predictions_csv,
                                                     "val_predictions.csv": result.val_predictions_csv})
    stored = json.loads(store.get_text(paths.trial(trial.trial_id, "record.json")))
    rescored = rescore_predictions_csv(store.get_text(paths.trial(trial.trial_id, "predictions.csv")))
    validation = stored["metrics"].pop("validation")
    assert json.loads(json.dumps(rescored)) == stored["metrics"]
    val_rescored = rescore_predictions_csv(store.get_text(paths.trial(trial.trial_id, "val_predictions.csv")),
                                           confidence_intervals=False)
    assert json.loads(json.dumps(val_rescored)) == validation  # the validation scores that select trials
    assert stored["metrics"]["isic"]["scorer"].startswith("isic-challenge-scoring")
